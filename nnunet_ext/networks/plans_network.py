"""Base of our plans-built networks: PlainConvUNet's constructor arguments, checked, and its encoder.

nnU-Net describes a network by ``arch_kwargs`` (n_stages, features_per_stage, conv_op, kernel_sizes,
strides, ...). ``PlansNetwork`` accepts exactly ``PlainConvUNet``'s keyword arguments, validates them
with messages that name the problem, and builds dynamic-network-architectures' ``PlainConvEncoder``
(strided-conv downsampling, skips returned). Subclasses add ``self.decoder``: a module with a
``deep_supervision`` attribute (nnU-Net's ``set_deep_supervision_enabled`` flips it) that maps the
list of encoder skips (finest first) to the output(s).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

CONV_DIMS = {nn.Conv2d: 2, nn.Conv3d: 3}
MIN_STAGES = 2  # the full resolution and at least one downsampled stage


def check_positive_int(name: str, value: object, meaning: str) -> int:
    """``value`` as int if it is an integer >= 1, else a ValueError naming ``name`` and what it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 ({meaning}), got {value!r}")
    return int(value)


def _per_stage(name: str, value: object, n: int, what: str) -> list:
    """A scalar broadcast to ``n`` entries, or a sequence that must have exactly ``n``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but must have {n} ({what}); got {list(value)!r}")
    return list(value)


def _per_axis(name: str, stage: int, value: object, dim: int) -> tuple[int, ...]:
    values = [value] * dim if not isinstance(value, Sequence) else list(value)
    if len(values) != dim:
        raise ValueError(f"{name}[{stage}] = {value!r} has {len(values)} axes, but conv_op is {dim}D: give "
                         f"{dim} values per stage (e.g. {[1] + [2] * (dim - 1)!r})")
    return tuple(check_positive_int(f"{name}[{stage}]", v, "one positive integer per spatial axis") for v in values)


@dataclass(frozen=True)
class StageLayout:
    """Per-stage layout of a U-Net, as nnU-Net plans it (stage 0 = full resolution)."""

    dim: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]

    @property
    def n_stages(self) -> int:
        return len(self.features)

    @property
    def cumulative_strides(self) -> tuple[tuple[int, ...], ...]:
        """Downsampling factor of stage s against the input, per axis: the product of strides[0..s]."""
        return tuple(tuple(int(v) for v in row) for row in np.cumprod(np.array(self.strides), axis=0))

    def stage_sizes(self, spatial: Sequence[int]) -> list[tuple[int, ...]]:
        """Spatial size of every stage's feature map for an input of size ``spatial``."""
        return [tuple(n // f for n, f in zip(spatial, factors)) for factors in self.cumulative_strides]

    def check_spatial_size(self, spatial: Sequence[int], what: str = "input size") -> None:
        """ValueError unless every axis of ``spatial`` is divisible by the total downsampling factor."""
        total = self.cumulative_strides[-1]
        if len(spatial) != self.dim or any(n % f for n, f in zip(spatial, total)):
            raise ValueError(
                f"{what} {tuple(spatial)} does not fit this {self.dim}D network: every axis must be divisible "
                f"by the product of the strides {total} (strides per stage {[list(s) for s in self.strides]}). "
                f"Choose a patch size that is a multiple of {total}, or fewer stages / smaller strides.")


def stage_layout(n_stages: object, features_per_stage: object, conv_op: object, kernel_sizes: object,
                 strides: object) -> StageLayout:
    """Check PlainConvUNet-style stage arguments; return them expanded per stage and per axis."""
    n = check_positive_int("n_stages", n_stages, "the number of resolution stages")
    if n < MIN_STAGES:
        raise ValueError(f"n_stages must be >= {MIN_STAGES} (an encoder stage and at least one downsampled stage), "
                         f"got {n}")
    if conv_op not in CONV_DIMS:
        raise ValueError(f"conv_op must be torch.nn.Conv2d or torch.nn.Conv3d, got {conv_op!r}")
    dim = CONV_DIMS[conv_op]
    features = tuple(check_positive_int(f"features_per_stage[{i}]", f, "channels of that stage") for i, f in
                     enumerate(_per_stage("features_per_stage", features_per_stage, n, "one per stage")))
    kernels = tuple(_per_axis("kernel_sizes", i, k, dim)
                    for i, k in enumerate(_per_stage("kernel_sizes", kernel_sizes, n, "one per stage")))
    for i, k in enumerate(kernels):
        if any(v % 2 == 0 for v in k):
            raise ValueError(f"kernel_sizes[{i}] = {list(k)} has an even size; use odd sizes (same padding)")
    stride_rows = tuple(_per_axis("strides", i, s, dim)
                        for i, s in enumerate(_per_stage("strides", strides, n, "one per stage")))
    return StageLayout(dim, features, kernels, stride_rows)


class PlansNetwork(nn.Module):
    """PlainConvUNet's constructor and encoder; subclasses define ``self.decoder``.

    forward: (B, input_channels, *spatial) -> (B, num_classes, *spatial), or with deep supervision a
    list of ``n_stages - 1`` tensors, full resolution first (stage s at the size of stage s).
    """

    plans_kwargs: ClassVar[tuple[str, ...]] = ()  # the subclass's own arguments that plans may carry

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: int | Sequence[int],
                 conv_op: type[nn.Module], kernel_sizes: int | Sequence, strides: int | Sequence,
                 n_conv_per_stage: int | Sequence[int], num_classes: int,
                 n_conv_per_stage_decoder: int | Sequence[int], conv_bias: bool = False,
                 norm_op: type[nn.Module] | None = None, norm_op_kwargs: dict | None = None,
                 dropout_op: type[nn.Module] | None = None, dropout_op_kwargs: dict | None = None,
                 nonlin: type[nn.Module] | None = None, nonlin_kwargs: dict | None = None,
                 deep_supervision: bool = False, nonlin_first: bool = False) -> None:
        super().__init__()
        self.layout = stage_layout(n_stages, features_per_stage, conv_op, kernel_sizes, strides)
        n = self.layout.n_stages
        check_positive_int("input_channels", input_channels, "image channels")
        self.num_classes = check_positive_int("num_classes", num_classes, "network outputs")
        self.n_conv_per_stage = [check_positive_int(f"n_conv_per_stage[{i}]", c, "convs per encoder stage") for i, c in
                                 enumerate(_per_stage("n_conv_per_stage", n_conv_per_stage, n, "one per stage"))]
        self.n_conv_per_stage_decoder = [
            check_positive_int(f"n_conv_per_stage_decoder[{i}]", c, "convs per decoder stage") for i, c in
            enumerate(_per_stage("n_conv_per_stage_decoder", n_conv_per_stage_decoder, n - 1,
                                 "one per decoder stage, i.e. n_stages - 1"))]
        self.conv_op = conv_op
        self.block_kwargs = dict(conv_bias=conv_bias, norm_op=norm_op, norm_op_kwargs=norm_op_kwargs,
                                 dropout_op=dropout_op, dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin,
                                 nonlin_kwargs=nonlin_kwargs, nonlin_first=nonlin_first)
        self.encoder = PlainConvEncoder(input_channels, n, list(self.layout.features), conv_op,
                                        [list(k) for k in self.layout.kernel_sizes],
                                        [list(s) for s in self.layout.strides], self.n_conv_per_stage,
                                        return_skips=True, **self.block_kwargs)
        self._initial_deep_supervision = bool(deep_supervision)

    def conv_block(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                   stride: int | Sequence[int] = 1) -> ConvDropoutNormReLU:
        """conv -> (dropout) -> norm -> nonlin with the plans' ops, 'same' padding."""
        return ConvDropoutNormReLU(self.conv_op, in_channels, out_channels, kernel_size, stride, **self.block_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != self.layout.dim + 2:
            raise ValueError(f"{type(self).__name__} is {self.layout.dim}D: expected input (B, C, "
                             f"{', '.join('XYZ'[:self.layout.dim])}), got shape {tuple(x.shape)}")
        self.layout.check_spatial_size(x.shape[2:])
        return self.decoder(self.encoder(x))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's default initialisation (He, negative slope 1e-2); applied by get_network_from_plans."""
        InitWeights_He(1e-2)(module)
