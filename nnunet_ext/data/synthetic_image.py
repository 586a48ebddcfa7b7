"""Hard synthetic images for thin-structure label maps: where connectivity needs context.

The image of a label map (X, Y[, Z]) is built as

    image = bias · (clutter + Σ_c brightness_c · blur(vessel_c without gaps)) + noise

- ``blur`` (Gaussian, ``partial_volume_sigma``) makes one-voxel vessels fainter than thick ones;
- ``gaps``: balls centred on random centreline voxels where the vessel signal is removed from the
  image while the label continues (occlusions, signal drop-out);
- ``clutter``: smooth background blobs of about the vessels' brightness scale;
- ``bias``: a smooth multiplicative intensity inhomogeneity in [1 − bias, 1 + bias];
- ``noise``: white Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize


@dataclass(frozen=True)
class ImageParams:
    """How hard the image is (intensities in units of the thickest vessel's brightness)."""

    contrast: float = 0.6
    noise: float = 0.25
    bias: float = 0.4
    clutter: float = 0.25
    partial_volume_sigma: float = 0.7
    gaps_per_case: int = 4
    gap_radius: float = 2.5

    def __post_init__(self) -> None:
        for name in ("contrast", "noise", "bias", "clutter", "partial_volume_sigma", "gap_radius"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"ImageParams.{name} must be a finite number >= 0, got {value}")
        if self.bias >= 1:
            raise ValueError(f"ImageParams.bias must be < 1 (the field is 1 ± bias), got {self.bias}")
        if self.gaps_per_case < 0:
            raise ValueError(f"ImageParams.gaps_per_case must be >= 0, got {self.gaps_per_case}")


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, scale: float) -> np.ndarray:
    """Smooth random field with values in [-1, 1] varying over ``scale`` voxels: (X, Y[, Z]) float32."""
    coarse_shape = tuple(max(2, int(np.ceil(s / scale)) + 1) for s in shape)
    coarse = rng.uniform(-1.0, 1.0, size=coarse_shape)
    field = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse_shape)], order=3, mode="nearest")
    field = field[tuple(slice(0, s) for s in shape)]
    peak = np.abs(field).max()
    return (field / peak if peak > 0 else field).astype(np.float32)


def gap_mask(labels: np.ndarray, rng: np.random.Generator, n_gaps: int, radius: float) -> np.ndarray:
    """Balls of ``radius`` around ``n_gaps`` random centreline voxels of the foreground: bool (X, Y[, Z])."""
    mask = np.zeros(labels.shape, dtype=bool)
    centreline = np.argwhere(skeletonize(labels > 0)) if n_gaps and labels.any() else np.zeros((0, labels.ndim))
    if len(centreline) == 0:
        return mask
    centres = centreline[rng.choice(len(centreline), size=min(n_gaps, len(centreline)), replace=False)]
    grids = np.ogrid[tuple(slice(0, s) for s in labels.shape)]
    for centre in centres:
        mask |= sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2
    return mask


def thin_structure_image(labels: np.ndarray, seed: int = 0, params: ImageParams | None = None,
                         n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A hard image of a label map and where its gaps are.

    Args:
        labels: (X, Y) or (X, Y, Z) integer label map, 0 = background.
        seed: random seed (the same seed gives the same image).
        params: difficulty (``ImageParams()`` by default).
        n_classes: the dataset's number of foreground classes K (default: ``labels.max()``); pass it so
            that a class looks the same in every case, whichever classes the case holds.

    Returns:
        ``(image, gaps)``: float32 image and the bool mask of the occluded regions, both of
        ``labels.shape``. Class c of K is drawn with brightness ``contrast · (0.5 + 0.5·c/K)``.
    """
    params = params or ImageParams()
    if labels.ndim not in (2, 3):
        raise ValueError(f"thin_structure_image takes 2D or 3D label maps, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    if n_classes is None:
        n_classes = int(labels.max()) if labels.size else 0
    if labels.size and labels.max() > n_classes:
        raise ValueError(f"labels hold class {int(labels.max())} but n_classes is {n_classes}")
    brightness = np.zeros(n_classes + 1, dtype=np.float32)
    if n_classes:
        brightness[1:] = params.contrast * (0.5 + 0.5 * np.arange(1, n_classes + 1) / n_classes)
    gaps = gap_mask(labels, rng, params.gaps_per_case, params.gap_radius)
    signal = np.where(gaps, 0.0, brightness[np.clip(labels, 0, None).astype(np.intp)]).astype(np.float32)
    if params.partial_volume_sigma > 0:
        signal = ndimage.gaussian_filter(signal, params.partial_volume_sigma)
    scale = max(labels.shape) / 4
    clutter = params.clutter * np.clip(smooth_field(labels.shape, rng, scale / 2), 0, None)
    bias = 1.0 + params.bias * smooth_field(labels.shape, rng, scale)
    noise = rng.normal(scale=params.noise, size=labels.shape).astype(np.float32)
    return (bias * (clutter + signal) + noise).astype(np.float32), gaps
