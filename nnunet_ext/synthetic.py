"""Synthetic thin-structure data: random branching tubes in 2D or 3D.

Used by the benchmarks, the tests and the demo. A tree grows from a root by a
random walk with smooth curvature; every walker may split into two, and its
radius shrinks along the way down to ``min_radius`` (one voxel by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TreeParams:
    """How a vessel tree grows (lengths and radii in voxels)."""

    n_roots: int = 1
    root_radius: float = 4.0
    min_radius: float = 1.0
    step: float = 1.0
    radius_decay: float = 0.994
    branch_probability: float = 0.02
    turn_sigma: float = 0.12
    max_points: int = 6000


def _random_unit_vectors(rng: np.random.Generator, ndim: int) -> np.ndarray:
    v = rng.normal(size=ndim)
    return v / np.linalg.norm(v)


def _grow_centreline(shape: tuple[int, ...], params: TreeParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random branching walk. Returns points (n, ndim), radii (n,) and branch ids (n,)."""
    ndim = len(shape)
    extent = np.asarray(shape, dtype=float)
    walkers = []
    for _ in range(params.n_roots):
        start = extent * rng.uniform(0.15, 0.85, size=ndim)
        walkers.append([start, _random_unit_vectors(rng, ndim), params.root_radius, len(walkers)])
    points, radii, branch = [], [], []
    n_branches = len(walkers)
    while walkers and len(points) < params.max_points:
        pos, direction, radius, bid = walkers.pop()
        while len(points) < params.max_points:
            inside = np.all(pos >= 0) and np.all(pos <= extent - 1)
            if not inside or radius < params.min_radius * 0.999:
                break
            points.append(pos.copy())
            radii.append(radius)
            branch.append(bid)
            direction = direction + rng.normal(scale=params.turn_sigma, size=ndim)
            direction /= np.linalg.norm(direction)
            pos = pos + params.step * direction
            radius = max(radius * params.radius_decay, params.min_radius)
            if radius <= params.min_radius and rng.uniform() < 0.01:
                break  # thinnest vessels end after a while
            if rng.uniform() < params.branch_probability:
                side = _random_unit_vectors(rng, ndim)
                side -= side.dot(direction) * direction
                side /= max(np.linalg.norm(side), 1e-6)
                child_dir = direction + 0.8 * side
                walkers.append([pos.copy(), child_dir / np.linalg.norm(child_dir),
                                max(radius * 0.7, params.min_radius), n_branches])
                n_branches += 1
    if not points:
        return np.zeros((0, ndim)), np.zeros(0), np.zeros(0, dtype=int)
    return np.asarray(points), np.asarray(radii), np.asarray(branch)


def _rasterize_balls(shape: tuple[int, ...], points: np.ndarray, radii: np.ndarray,
                     values: np.ndarray) -> np.ndarray:
    """Stamp a ball of each radius and value at each point; later points win."""
    out = np.zeros(shape, dtype=np.uint8)
    for p, r, v in zip(points, radii, values):
        lo = np.maximum(np.floor(p - r).astype(int), 0)
        hi = np.minimum(np.ceil(p + r).astype(int) + 1, shape)
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        d2 = sum((g - c) ** 2 for g, c in zip(grids, p))
        # a radius-1 tube has r**2 == 1 but must keep its 1-voxel core only:
        # use r - 0.5 so that r == 1 stamps the nearest voxel and its face neighbours rarely
        ball = d2 <= max(r - 0.5, 0.5) ** 2
        region = out[tuple(slice(a, b) for a, b in zip(lo, hi))]
        region[ball] = v
    return out


def vessel_tree(shape: tuple[int, ...], seed: int = 0, n_classes: int = 1,
                params: TreeParams | None = None) -> np.ndarray:
    """Label map of a random vessel tree.

    Args:
        shape: (X, Y) or (X, Y, Z).
        seed: random seed; the same seed gives the same tree.
        n_classes: number of foreground classes; branches are assigned classes
            1..n_classes in turn (class 1 for the trunk).
        params: growth parameters (``TreeParams()`` by default).

    Returns:
        uint8 array of ``shape`` with values in 0..n_classes.
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"vessel_tree makes 2D or 3D maps, got shape {shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    params = params or TreeParams()
    rng = np.random.default_rng(seed)
    points, radii, branch = _grow_centreline(tuple(shape), params, rng)
    values = (branch % n_classes) + 1
    return _rasterize_balls(tuple(shape), points, radii, values)


def vessel_image(labels: np.ndarray, seed: int = 0, contrast: float = 1.0,
                 noise: float = 0.3) -> np.ndarray:
    """A float32 image in which the vessels of ``labels`` are brighter than background."""
    rng = np.random.default_rng(seed)
    img = contrast * (labels > 0).astype(np.float32)
    img += rng.normal(scale=noise, size=labels.shape).astype(np.float32)
    return img
