"""Betti numbers of binary masks and the Betti-number errors between two masks.

Connectivity: foreground 8-connected in 2D / 26-connected in 3D, background
4-connected in 2D / 6-connected in 3D (the dual pairs, for which the Euler
characteristic and the Betti numbers are consistent). The image is surrounded by
background: a hole or cavity is a background component that does not touch the
image border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import euler_number

from nnunet_ext.metrics._validation import as_mask, as_mask_pair


def _padded(mask: np.ndarray) -> np.ndarray:
    """The mask with a one-voxel background border."""
    return np.pad(mask, 1, mode="constant", constant_values=False)


def _count_components(mask: np.ndarray, connectivity: int) -> int:
    """Number of connected components of a bool mask; connectivity as in ``generate_binary_structure``."""
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return int(ndimage.label(mask, structure=structure)[1])


def betti_numbers(mask: np.ndarray) -> tuple[int, ...]:
    """Betti numbers of a 2D or 3D binary mask.

    2D: (β0, β1). β0 = number of 8-connected foreground components; β1 = number of
    holes = number of 4-connected background components of the mask padded by one
    background pixel, minus 1 (the outer background).

    3D: (β0, β1, β2). β0 = number of 26-connected foreground components; β2 =
    number of cavities = number of 6-connected background components of the padded
    mask, minus 1; β1 = β0 + β2 − χ (tunnels), with χ the Euler characteristic of the
    padded mask for 26-connected foreground (``skimage.measure.euler_number``,
    connectivity 3).

    Args:
        mask: (X, Y) or (X, Y, Z) array, nonzero = foreground.

    Returns:
        tuple of 2 (2D) or 3 (3D) non-negative ints.
    """
    m = as_mask(mask)
    padded = _padded(m)
    b0 = _count_components(padded, connectivity=m.ndim)
    background = _count_components(~padded, connectivity=1) - 1
    if m.ndim == 2:
        return b0, background
    chi = int(euler_number(padded, connectivity=3))
    return b0, b0 + background - chi, background


def betti_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[int, ...]:
    """Absolute Betti-number differences |β_k(pred) − β_k(gt)|, per dimension k.

    Conventions as in ``betti_numbers`` (foreground 8-/26-connected, background
    4-/6-connected in 2D/3D). Two empty masks give all zeros.

    Args:
        pred, gt: (X, Y) or (X, Y, Z) masks of the same shape, nonzero = foreground.

    Returns:
        (e0, e1) in 2D, (e0, e1, e2) in 3D.
    """
    p, g = as_mask_pair(pred, gt)
    return tuple(abs(a - b) for a, b in zip(betti_numbers(p), betti_numbers(g)))
