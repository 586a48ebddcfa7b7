"""Exact Euclidean distance transform in torch, on whatever device the mask lives, without host syncs.

Separable squared-distance transform (as in Felzenszwalb & Huttenlocher 2012): along each spatial axis in
turn, ``D(x) = min_i D_prev(i) + (s * (x - i))^2`` over the positions i of the same line, with ``D = 0`` on
background voxels and ``inf`` on foreground voxels before the first axis. The first axis is a plain 1-D
distance to the nearest background voxel of the line (running maxima/minima of background positions, O(N));
the later axes take the lower envelope by brute force, a (lines, n, n) minimum over all lines at once, or in as
few equal chunks as keep that block within ``chunk_elements``: O(N * n) work per axis (n the axis length), exact,
and made of plain tensor ops, so it runs on a GPU inside the loss (no transfer to the CPU, no ``.item()``). Used
for the prediction's distance fields, which change every step; the ground truth's come from the data pipeline
(scipy, in the workers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# elements of the largest (lines, n, n) block of a pass: 256 MiB in float32, ~3% of the 8 GB nnU-Net plans for
# (a 1 GiB block would halve the launches again but risks running a planned patch out of memory).
# boundary_distance of (2, C, 128^3) masks (two EDTs in one call) takes 16 C chunks per axis, of (2, C, 64^3)
# masks one pass per axis up to C = 4.
CHUNK_ELEMENTS = 1 << 26


def chunk_count(lines: int, n: int, chunk_elements: int) -> int:
    """Fewest chunks of ``lines`` for which one (lines / chunks, n, n) block holds at most ``chunk_elements``
    elements (one line per chunk at least)."""
    per_chunk = max(1, chunk_elements // max(1, n * n))
    return max(1, -(-lines // per_chunk))


def _squared_distance_along(d2: torch.Tensor, dim: int, step: float, chunk_elements: int) -> torch.Tensor:
    """One separable pass: ``min_i d2[..., i, ...] + (step * (x - i))^2`` along ``dim``; same shape."""
    n = d2.shape[dim]
    lines = d2.movedim(dim, -1).reshape(-1, n)
    position = torch.arange(n, device=d2.device, dtype=d2.dtype)
    offsets = (step * (position[:, None] - position[None, :])) ** 2  # (x, i)
    chunks = chunk_count(lines.shape[0], n, chunk_elements)
    out = torch.empty_like(lines)
    for rows, result in zip(lines.tensor_split(chunks), out.tensor_split(chunks)):  # equal chunks
        torch.amin(rows[:, None, :] + offsets, -1, out=result)
    return out.reshape(d2.movedim(dim, -1).shape).movedim(-1, dim)


def _squared_distance_to_background_along(mask: torch.Tensor, dim: int, step: float) -> torch.Tensor:
    """First pass: squared distance along ``dim`` from every voxel to the nearest False voxel of its line
    (0 on False voxels, inf on lines without one); float32, ``mask``'s shape."""
    n = mask.shape[dim]
    shape = [1] * mask.ndim
    shape[dim] = n
    position = torch.arange(n, device=mask.device, dtype=torch.float32).view(shape)
    before = torch.where(mask, -torch.inf, position).cummax(dim).values  # last background position at or before
    after = torch.where(mask, torch.inf, position).flip(dim).cummin(dim).values.flip(dim)  # first at or after
    distance = torch.minimum(position - before, after - position)
    return (step * distance) ** 2


def euclidean_distance_transform(mask: torch.Tensor, spacing: Sequence[float] | None = None,
                                 chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Distance of every True voxel to the nearest False voxel, 0 on False voxels, exact.

    Args:
        mask: (B, C, *spatial) bool (or 0/1), 2 or 3 spatial axes.
        spacing: voxel size per spatial axis (distances in those units); default 1.
        chunk_elements: bound on the temporary (lines, n, n) block of each pass (memory vs. number of kernels);
            every axis after the first takes ``chunk_count(B * C * N / n, n, chunk_elements)`` chunks, N the
            spatial size, n the axis length.

    Returns:
        float32 tensor of ``mask``'s shape; ``inf`` where a (B, C) map has no False voxel at all.
    """
    spatial = mask.ndim - 2
    if spatial not in (2, 3):
        raise ValueError(f"mask must be (B, C, X, Y) or (B, C, X, Y, Z), got shape {tuple(mask.shape)}")
    spacing = [1.0] * spatial if spacing is None else [float(s) for s in spacing]
    if len(spacing) != spatial or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing must give {spatial} positive values, got {spacing}")
    d2 = _squared_distance_to_background_along(mask.bool(), 2, spacing[0])
    for axis, step in enumerate(spacing[1:], start=1):
        d2 = _squared_distance_along(d2, 2 + axis, step, chunk_elements)
    return d2.sqrt()


def boundary_distance(mask: torch.Tensor, spacing: Sequence[float] | None = None,
                      chunk_elements: int = CHUNK_ELEMENTS, unknown: torch.Tensor | None = None) -> torch.Tensor:
    """Unsigned distance of every voxel to the mask's boundary: ``edt(mask) + edt(~mask)``; 0 for an empty or a
    full (B, C) map. Shapes as ``euclidean_distance_transform``.

    ``unknown`` (bool, broadcastable to ``mask``; e.g. nnU-Net's ignore label): voxels known to be neither
    inside nor outside. They are no boundary: a mask voxel's distance is to the nearest *known* outside voxel,
    an outside voxel's to the nearest mask voxel; unknown voxels get 0, and a map counts as empty (full) when
    it has no mask (no known outside) voxel.
    """
    mask = mask.bool()
    if unknown is None:
        sources_of_inside = mask
    else:
        unknown = unknown.bool().expand_as(mask)
        mask = mask & ~unknown
        sources_of_inside = mask | unknown  # unknown voxels are no outside: not a boundary for the inside
    # both transforms in one call (fewer, larger kernels); per voxel the distance on its own side
    inside, outside = euclidean_distance_transform(torch.cat([sources_of_inside, ~mask]), spacing,
                                                   chunk_elements).split(mask.shape[0])
    # inf on a side: that map has no voxel of the other side (an empty or a full mask)
    invalid = torch.isinf(inside) | torch.isinf(outside)
    if unknown is not None:
        invalid = invalid | unknown
    return torch.where(invalid, 0.0, torch.where(mask, inside, outside))
