"""U-Net weight-map target: ``unet_weight_map`` of the label map, appended as the ``weights`` target block.

Per sample: (1, X, Y[, Z]) -> (2, X, Y[, Z]) float32: the labels, then the weight map (class balance plus the
border term between touching objects; see ``nnunet_ext.losses.unet_weight_map``). Computed in the data-loader
workers on each augmented patch; nnU-Net's deep-supervision downsampling samples it at every scale.
"""

from __future__ import annotations

import numpy as np

from nnunet_ext.losses.unet_weight_map import unet_weight_map
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform
from nnunet_ext.transforms.skeleton_transform import check_ignore_label


class UNetWeightMapTransform(ExtraTargetTransform):
    """Append the U-Net weight map of a single-channel label map.

    Args:
        w0: height of the border term (the paper: 10).
        sigma: width of the border term in voxels (the paper: about 5).
        ignore_label: voxels with this label get weight 0 and count in no class.
        truncation: see ``unet_weight_map`` (the border term is exact to ``w0 * truncation``).
    """

    block_name = "weights"

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, ignore_label: int | None = None,
                 truncation: float = 1e-4) -> None:
        super().__init__(label_channels=1, block_channels=1)
        unet_weight_map(np.zeros((1, 1), dtype=np.int16), w0, sigma, truncation=truncation)  # checks the arguments
        self.w0 = float(w0)
        self.sigma = float(sigma)
        self.ignore_label = check_ignore_label(ignore_label)
        self.truncation = float(truncation)

    def _compute(self, labels: np.ndarray) -> np.ndarray:
        try:
            return unet_weight_map(labels[0], self.w0, self.sigma, self.ignore_label, self.truncation)[None]
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from e

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(w0={self.w0:g}, sigma={self.sigma:g}, ignore_label={self.ignore_label}, "
                f"truncation={self.truncation:g})")
