"""Activation memory in the units of nnU-Net's planner (``compute_conv_feature_map_size``).

nnU-Net plans patch and batch size with ``network.compute_conv_feature_map_size(patch)``, a count per sample
of the feature maps the network keeps for the backward pass, compared with reference values calibrated on
PlainConvUNet (560e6 units for 3D at batch 2, 85e6 for 2D at batch 12 <-> 8 GB). dynamic_network_architectures
counts, per sample:

* 1 unit per output element of every conv -> norm -> nonlin block. Autograd keeps two tensors of that size:
  the conv output (for the norm's backward) and the normalised, activated output (the next conv's input).
* 1 unit per element of each transposed-conv output, where autograd keeps the concatenation with the skip:
  a tensor of twice as many channels, so a kept tensor of one element is half a unit.
* 1 unit per element of each segmentation output that is returned.

Our networks count with the same rules, so one unit means the same memory as one unit of PlainConvUNet's
count and nnU-Net's reference values apply unchanged:

* conv blocks: the block's own ``compute_conv_feature_map_size`` (1 unit per output element);
* every other tensor autograd keeps (pooled and interpolated inputs, concatenations, attention maps, SDI
  factors and partial products, dropout outputs): ``KEPT_TENSOR_UNITS`` = 1/2 unit per element;
* int64 max-pool indices: twice the bytes of a float32 element, ``INDEX_TENSOR_UNITS`` = 1 unit per element;
* segmentation outputs: ``SEGMENTATION_UNITS`` = 1 unit per element, as dynamic_network_architectures.

Tensors smaller than a feature map (per-channel attention vectors, norm statistics) are left out, as
dynamic_network_architectures leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from torch import nn

KEPT_TENSOR_UNITS = 0.5
INDEX_TENSOR_UNITS = 1.0
SEGMENTATION_UNITS = 1.0


def voxels(size: Sequence[int]) -> int:
    """Number of elements of one channel of a map of spatial ``size``."""
    return int(np.prod(np.asarray(size, dtype=np.int64)))


def kept_tensor(channels: int, size: Sequence[int], units: float = KEPT_TENSOR_UNITS) -> float:
    """Units of a ``(channels, *size)`` tensor (one sample) that autograd keeps for the backward pass."""
    return channels * voxels(size) * units


def conv_blocks(blocks: Iterable[nn.Module], size: Sequence[int]) -> float:
    """Units of stride-1 conv -> norm -> nonlin blocks at spatial ``size``, by their own count."""
    return float(sum(block.compute_conv_feature_map_size(list(size)) for block in blocks))
