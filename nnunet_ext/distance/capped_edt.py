"""Euclidean distance transform capped at a small distance: ``min(edt(mask), cap)``, exact, in voxel units.

The same separable lower envelope as ``euclidean_distance_transform`` (along each spatial axis in turn,
``D(x) = min_i D_prev(i) + (x - i)^2``), but only over the offsets ``|x - i| <= cap``: one shifted-slice
minimum per offset instead of a comparison with every position of the line. Work per axis is
O(N * cap) instead of O(N * n) (n the axis length), no (lines, n, n) block is built, and the squared
distances, integers, are kept in int16 (int32 for caps of 128 and more).

Why it is exact below the cap: if a voxel's distance to the nearest False voxel y is d <= cap, then
every coordinate difference |x_a - y_a| <= d <= cap, so each pass still sees the offset of the optimal
path and the result is d. Where d > cap the windowed minimum runs over fewer candidates, so it is
>= d > cap, and the cap returns exactly ``cap``. Used by losses that clamp distances anyway (cbDice
clamps at the largest skeleton radius, which its soft skeleton bounds).
"""

from __future__ import annotations

import math

import torch


def _capped_pass(d2: torch.Tensor, dim: int, reach: int) -> torch.Tensor:
    """``min_{|s| <= reach} d2[x + s] + s^2`` along ``dim`` (positions outside the array skipped); same shape."""
    out = d2.clone()
    n = d2.shape[dim]
    for shift in range(1, min(reach, n - 1) + 1):
        cost, m = shift * shift, n - shift
        towards_start = out.narrow(dim, 0, m)  # x takes x + shift
        torch.minimum(towards_start, d2.narrow(dim, shift, m) + cost, out=towards_start)
        towards_end = out.narrow(dim, shift, m)  # x takes x - shift
        torch.minimum(towards_end, d2.narrow(dim, 0, m) + cost, out=towards_end)
    return out


def capped_distance_transform(mask: torch.Tensor, cap: float) -> torch.Tensor:
    """``min(distance of every True voxel to the nearest False voxel, cap)``, 0 on False voxels.

    Args:
        mask: (B, C, X, Y) or (B, C, X, Y, Z), bool (or 0/1).
        cap: the largest distance returned, > 0, in voxels.

    Returns:
        float32 tensor of ``mask``'s shape, equal to ``euclidean_distance_transform(mask).clamp_max(cap)``
        (a (B, C) map without False voxels is ``cap`` everywhere). No host sync.
    """
    if mask.ndim not in (4, 5):
        raise ValueError(f"mask must be (B, C, X, Y) or (B, C, X, Y, Z), got shape {tuple(mask.shape)}")
    if not (isinstance(cap, (int, float)) and math.isfinite(cap) and cap > 0):
        raise ValueError(f"cap must be a finite number > 0, got {cap!r}")
    # Squared distances are integers: exact in int16 (half the bytes of float32) while they fit. "Far" starts
    # at a value above cap^2; a pass only lowers values, so sums stay below far + reach^2.
    reach, far = math.floor(cap), math.floor(cap * cap) + 1
    dtype = torch.int16 if far + reach * reach <= torch.iinfo(torch.int16).max else torch.int32
    d2 = torch.where(mask.bool(), far, 0).to(dtype)
    for dim in range(2, mask.ndim):
        d2 = _capped_pass(d2, dim, reach)
    return d2.to(torch.float32).sqrt().clamp_max(cap)
