"""Warping error (Jain et al., "Boundary learning by optimization with topological constraints", CVPR 2010).

The ground-truth mask is warped towards the prediction by flipping only *simple*
points (see ``nnunet_ext.metrics.simple_points``: foreground 8-connected /
background 4-connected in 2D, 26 / 6 in 3D), so the warped mask keeps the
topology of the ground truth. Where it still differs from the prediction when no
disagreeing simple point is left, the difference is topological (a split, merge,
missing or extra object, hole, tunnel or cavity); the warping error is the fraction
of such voxels. Both 2D and 3D are implemented.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnunet_ext.metrics._validation import as_mask_pair
from nnunet_ext.metrics.simple_points import (
    ADJACENCY_6_IN_N18,
    ADJACENCY_26,
    N6_BITS,
    N18_BITS,
    OFFSETS_2D,
    OFFSETS_3D,
    SIMPLE_TABLE_2D,
    is_simple_code_3d,
)


@njit(cache=True)
def _warp_kernel(warped, target, offsets, table_2d, is_3d, adjacency_26, adjacency_6, n6_bits, n18_bits):
    """Flip simple disagreeing voxels of ``warped`` (in place) until none is left.

    ``warped`` and ``target`` are flattened uint8 arrays of a volume padded by one
    background voxel (the padding always agrees, so it is never visited). Returns the
    number of flips.
    """
    n = warped.size
    n_neighbours = offsets.shape[0]
    queue = np.empty(n, dtype=np.int64)  # ring buffer; a voxel is in it at most once at a time
    queued = np.zeros(n, dtype=np.uint8)
    head = 0
    size = 0
    for i in range(n):
        if warped[i] != target[i]:
            queue[size] = i
            queued[i] = 1
            size += 1
    flips = 0
    while size > 0:
        i = queue[head]
        head = (head + 1) % n
        size -= 1
        queued[i] = 0
        code = 0
        for b in range(n_neighbours):
            if warped[i + offsets[b]]:
                code |= 1 << b
        if is_3d:
            simple = is_simple_code_3d(code, adjacency_26, adjacency_6, n6_bits, n18_bits)
        else:
            simple = table_2d[code] != 0
        if not simple:
            continue
        warped[i] = target[i]
        flips += 1
        for b in range(n_neighbours):  # their neighbourhood changed: check them again
            j = i + offsets[b]
            if warped[j] != target[j] and queued[j] == 0:
                queue[(head + size) % n] = j
                queued[j] = 1
                size += 1
    return flips


def warp_mask(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The ground-truth mask warped towards the prediction by simple-point flips.

    Order (deterministic): all disagreeing voxels are visited once in raster order;
    a simple one is flipped to the prediction's value at once, and its disagreeing
    neighbours are queued again (first in, first out). This stops when the queue is
    empty, i.e. when a full pass over the remaining disagreeing voxels would flip
    nothing. Each flip keeps the topology, so the result has the ground truth's
    topology (foreground 8-/26-connected, background 4-/6-connected; the image is
    surrounded by fixed background).

    Args:
        gt, pred: (X, Y) or (X, Y, Z) masks of the same shape, nonzero = foreground.

    Returns:
        bool array of ``gt.shape``.
    """
    p, g = as_mask_pair(pred, gt)
    warped = np.pad(g, 1).astype(np.uint8)
    target = np.pad(p, 1).astype(np.uint8)
    strides = np.array([int(np.prod(warped.shape[d + 1:])) for d in range(warped.ndim)], dtype=np.int64)
    offsets = (OFFSETS_2D if g.ndim == 2 else OFFSETS_3D) @ strides
    flat = warped.reshape(-1)
    _warp_kernel(flat, target.reshape(-1), offsets.astype(np.int64), SIMPLE_TABLE_2D, g.ndim == 3,
                 ADJACENCY_26, ADJACENCY_6_IN_N18, N6_BITS, N18_BITS)
    return warped[(slice(1, -1),) * g.ndim].astype(bool)


def warping_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of voxels where the warped ground truth (``warp_mask``) still differs from the prediction.

    Foreground 8-connected / background 4-connected in 2D, 26 / 6 in 3D. 0 means the
    masks differ only by non-topological (simple-point) changes. Two empty masks give
    0.0; an empty ground truth cannot grow (an isolated voxel is not simple), so then
    every predicted voxel is an error.

    Args:
        pred, gt: (X, Y) or (X, Y, Z) masks of the same shape, nonzero = foreground.

    Returns:
        value in [0, 1].
    """
    p, g = as_mask_pair(pred, gt)
    return int(np.count_nonzero(warp_mask(g, p) != p)) / p.size
