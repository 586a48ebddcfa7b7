"""Simple points: voxels whose flip changes no topology of a binary image.

Connectivity: foreground 8-connected / background 4-connected in 2D, foreground
26-connected / background 6-connected in 3D. A point is *simple* when adding it to,
or removing it from, the foreground changes neither the foreground nor the
background components, holes, tunnels or cavities; this only depends on its
3x3 (3x3x3) neighbourhood.

Neighbour codes: bit b is set when neighbour b is foreground, neighbours numbered
in raster order of their offsets with the centre left out (2D: 8 neighbours,
``OFFSETS_2D``; 3D: 26 neighbours, ``OFFSETS_3D``).

- 2D: a 256-entry table, built by brute force: the centre is simple iff switching it
  on or off changes neither the number of 8-connected foreground components nor the
  number of 4-connected background components of the 3x3 patch (equivalently, the
  topological numbers T8(fg) = 1 and T4(bg) = 1).
- 3D: tested on the fly with the topological numbers of Bertrand & Malandain (1994):
  T26 = number of 26-components of the foreground among the 26 neighbours must be 1,
  and T6 = number of 6-components of the background among the 18 face/edge
  neighbours that are 6-adjacent to the centre must be 1.
"""

from __future__ import annotations

import itertools

import numpy as np
from numba import njit
from scipy import ndimage

from nnunet_ext.skeleton.thinning import grow_component

OFFSETS_2D = np.array([o for o in itertools.product((-1, 0, 1), repeat=2) if o != (0, 0)], dtype=np.int64)
OFFSETS_3D = np.array([o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)], dtype=np.int64)


def _patch_2d(code: int, centre: bool) -> np.ndarray:
    """(3, 3) bool patch of a 2D neighbour code with the given centre value."""
    patch = np.zeros((3, 3), dtype=bool)
    for b, (dr, dc) in enumerate(OFFSETS_2D):
        patch[1 + dr, 1 + dc] = bool((code >> b) & 1)
    patch[1, 1] = centre
    return patch


def _component_counts_2d(patch: np.ndarray) -> tuple[int, int]:
    """(8-connected foreground, 4-connected background) component counts of a 3x3 patch."""
    fg = ndimage.label(patch, structure=np.ones((3, 3), dtype=bool))[1]
    bg = ndimage.label(~patch, structure=ndimage.generate_binary_structure(2, 1))[1]
    return int(fg), int(bg)


def _build_simple_table_2d() -> np.ndarray:
    """(256,) uint8: 1 where the centre pixel of the neighbour code is simple (8/4 connectivity)."""
    table = np.zeros(256, dtype=np.uint8)
    for code in range(256):
        on = _component_counts_2d(_patch_2d(code, True))
        off = _component_counts_2d(_patch_2d(code, False))
        table[code] = on == off
    return table


SIMPLE_TABLE_2D = _build_simple_table_2d()


def _adjacency_3d(max_city_block: int, allowed: np.ndarray) -> np.ndarray:
    """(26,) int64 bitmasks: for neighbour k, the ``allowed`` neighbours adjacent to it.

    Two neighbours are adjacent when their offsets differ by at most one per axis and
    by at most ``max_city_block`` in city-block distance (3: 26-, 1: 6-adjacency).
    """
    masks = np.zeros(26, dtype=np.int64)
    for k in range(26):
        for j in range(26):
            diff = np.abs(OFFSETS_3D[k] - OFFSETS_3D[j])
            if k != j and allowed[j] and diff.max() <= 1 and diff.sum() <= max_city_block:
                masks[k] |= 1 << j
    return masks


def _bits(selected: np.ndarray) -> int:
    return int(sum(1 << int(b) for b in np.flatnonzero(selected)))


_CITY = np.abs(OFFSETS_3D).sum(axis=1)
ADJACENCY_26 = _adjacency_3d(3, np.ones(26, dtype=bool))
ADJACENCY_6_IN_N18 = _adjacency_3d(1, _CITY <= 2)
N6_BITS = _bits(_CITY == 1)
N18_BITS = _bits(_CITY <= 2)


@njit(cache=True)
def is_simple_code_3d(code, adjacency_26, adjacency_6, n6_bits, n18_bits):
    """Whether the centre of a 26-neighbour code is simple (26-connected fg, 6-connected bg)."""
    if code == 0:
        return False  # T26 = 0: an isolated voxel, or a voxel that would be one
    if grow_component(code & -code, code, adjacency_26) != code:
        return False  # T26 > 1
    background = ~code & n18_bits
    touching = background & n6_bits
    if touching == 0:
        return False  # T6 = 0: an interior voxel, or one that would close a cavity
    component = grow_component(touching & -touching, background, adjacency_6)
    return (touching & ~component) == 0  # T6 == 1


def neighbour_code(patch: np.ndarray) -> int:
    """Neighbour code of the centre of a (3, 3) or (3, 3, 3) patch (the centre value is ignored)."""
    patch = np.asarray(patch) != 0
    if patch.shape not in ((3, 3), (3, 3, 3)):
        raise ValueError(f"expected a (3, 3) or (3, 3, 3) patch, got shape {patch.shape}")
    offsets = OFFSETS_2D if patch.ndim == 2 else OFFSETS_3D
    return int(sum(1 << b for b, o in enumerate(offsets) if patch[tuple(o + 1)]))


def is_simple(patch: np.ndarray) -> bool:
    """Whether the centre of a (3, 3) or (3, 3, 3) patch is a simple point.

    Foreground (nonzero) 8-connected / background 4-connected in 2D, 26 / 6 in 3D;
    the centre's own value does not matter (simplicity is the same for adding and
    removing it).
    """
    code = neighbour_code(patch)
    if np.ndim(patch) == 2:
        return bool(SIMPLE_TABLE_2D[code])
    return bool(is_simple_code_3d(code, ADJACENCY_26, ADJACENCY_6_IN_N18, N6_BITS, N18_BITS))
