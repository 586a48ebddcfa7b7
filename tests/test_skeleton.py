"""Tubed skeletons and the thinning behind them, checked against scikit-image.

``reference_tubed_skeleton`` (scikit-image's ``skeletonize`` + two grey dilations
with the cross, times the labels) is the definition. The fast path must equal it
bit for bit with ``fallback=False``, and everywhere away from objects that
scikit-image's 3D thinning deletes entirely with the default ``fallback=True``.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from nnunet_ext.data.synthetic import TreeParams, vessel_tree
from nnunet_ext.skeleton import (
    dilate_diamond,
    principal_axis_centreline,
    skeletonize_mask,
    tubed_skeleton,
)
from nnunet_ext.skeleton.thinning import thin_2d, thin_3d
from tests.reference_skeleton import reference_tubed_skeleton

TREE_2D = TreeParams(n_roots=2, root_radius=4.0, branch_probability=0.04, max_points=1500)
TREE_3D = TreeParams(n_roots=2, root_radius=3.0, branch_probability=0.05, max_points=1500)


# --------------------------------------------------------------------------- helpers


def cross(ndim: int) -> np.ndarray:
    """The 1-step cross (city-block radius 1) structuring element."""
    return ndimage.generate_binary_structure(ndim, 1)


def full(ndim: int) -> np.ndarray:
    """The full 3x3(x3) structuring element: 8-connectivity (2D), 26-connectivity (3D)."""
    return np.ones((3,) * ndim, dtype=bool)


def diamond(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by ``radius`` crosses, independent of the code under test."""
    mask = np.asarray(mask, dtype=bool)
    if radius == 0:  # scipy's iterations=0 means "until nothing changes"
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=cross(mask.ndim), iterations=radius)


def as_labels(seg: np.ndarray) -> np.ndarray:
    """The label map the reference should see: negatives are background."""
    seg = np.asarray(seg)
    return np.where(seg > 0, seg, 0).astype(np.int64)


def vanished_components(fg: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Components (26/8-connected) of ``fg`` that scikit-image's skeleton misses entirely."""
    components, n = ndimage.label(fg, structure=full(fg.ndim))
    kept = np.unique(components[skeletonize(fg)])
    vanished = np.setdiff1d(np.arange(1, n + 1), kept)
    return components, n, vanished


def check_against_reference(seg: np.ndarray, **kwargs) -> int:
    """Assert the fast path against the reference; return the number of vanished objects.

    - ``fallback=False`` equals the reference bit for bit;
    - the default equals the reference outside the tube's reach of vanished objects,
      and contains the reference's tube everywhere (it only adds centrelines);
    - the default leaves no connected foreground component without tube voxels.
    """
    labels = as_labels(seg)
    ref = reference_tubed_skeleton(labels)
    exact = tubed_skeleton(seg, fallback=False, **kwargs)
    assert exact.dtype == np.int16 and exact.shape == labels.shape
    np.testing.assert_array_equal(exact, ref)

    default = tubed_skeleton(seg, **kwargs)
    assert default.dtype == np.int16 and default.shape == labels.shape
    fg = labels > 0
    components, n, vanished = vanished_components(fg)
    reach = diamond(np.isin(components, vanished), 2)
    np.testing.assert_array_equal(default[~reach], ref[~reach])
    np.testing.assert_array_equal(default[ref != 0], ref[ref != 0])
    np.testing.assert_array_equal(default[default != 0], labels[default != 0])
    assert set(np.unique(components[default != 0])) >= set(range(1, n + 1))
    if labels.ndim == 2:
        assert vanished.size == 0, "2D thinning must never delete a whole object"
    return int(vanished.size)


def noisy_blobs(shape: tuple[int, ...], seed: int, sigma: float = 1.5, fraction: float = 0.3,
                n_classes: int = 3) -> np.ndarray:
    """Thresholded smoothed noise, split into classes by a second smooth field."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    fg = field > np.quantile(field, 1.0 - fraction)
    classes = ndimage.gaussian_filter(rng.standard_normal(shape), 2 * sigma)
    edges = np.quantile(classes, np.linspace(0, 1, n_classes + 1)[1:-1])
    return (fg * (1 + np.digitize(classes, edges))).astype(np.uint8)


@functools.cache
def _tree(shape: tuple[int, ...], seed: int, n_classes: int) -> np.ndarray:
    tree = vessel_tree(shape, seed=seed, n_classes=n_classes, params=TREE_2D if len(shape) == 2 else TREE_3D)
    tree.flags.writeable = False
    return tree


def tree_2d(seed: int = 0, n_classes: int = 2) -> np.ndarray:
    """A 96x96 multi-class vessel tree (built once per session, returned as a copy)."""
    return _tree((96, 96), seed, n_classes).copy()


def tree_3d(seed: int = 0, n_classes: int = 2) -> np.ndarray:
    """A 48^3 multi-class vessel tree (built once per session, returned as a copy)."""
    return _tree((48, 48, 48), seed, n_classes).copy()


def rod(shape: tuple[int, ...], axis: int, side: int, start: int, length: int,
        corner: tuple[int, ...]) -> tuple[slice, ...]:
    """Index of a rod with a ``side`` x ``side`` cross-section along ``axis``."""
    box = [slice(c, c + side) for c in corner]
    box.insert(axis, slice(start, start + length))
    assert all(s.stop <= n for s, n in zip(box, shape))
    return tuple(box)


# ------------------------------------------------------------- equality with the reference


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vessel_tree_2d_matches_reference(seed, n_classes):
    seg = tree_2d(seed, n_classes)
    assert len(np.unique(seg)) >= 3, "the tree should hold at least two classes"
    assert check_against_reference(seg) == 0
    np.testing.assert_array_equal(tubed_skeleton(seg), reference_tubed_skeleton(seg))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vessel_tree_3d_matches_reference(seed, n_classes):
    seg = tree_3d(seed, n_classes)
    assert len(np.unique(seg)) >= 3, "the tree should hold at least two classes"
    assert (reference_tubed_skeleton(seg) != 0).any()
    check_against_reference(seg)


@pytest.mark.parametrize("corner", [(10, 10, 10), (5, 15, 20)])
def test_tree_cut_by_the_patch_faces_matches_reference(corner):
    """A training patch is a crop of a volume: vessels cross its faces, where the tube is clipped."""
    seg = tree_3d(1, 3)[tuple(slice(c, c + 28) for c in corner)]
    touched = sum((np.take(seg, i, axis=a) > 0).any() for a in range(3) for i in (0, -1))
    assert touched >= 4, "the crop should cut vessels on most faces"
    check_against_reference(seg)


@pytest.mark.parametrize("shape", [(17, 23), (9, 10, 11)])
def test_empty_map(shape):
    seg = np.zeros(shape, dtype=np.uint8)
    for fallback in (True, False):
        out = tubed_skeleton(seg, fallback=fallback)
        assert out.dtype == np.int16 and out.shape == shape and not out.any()
    np.testing.assert_array_equal(tubed_skeleton(seg), reference_tubed_skeleton(seg))


@pytest.mark.parametrize("shape", [(16, 16), (15, 20), (8, 8, 8), (6, 9, 12), (12, 12, 12)])
@pytest.mark.parametrize("label", [1, 3])
def test_all_foreground_map(shape, label):
    seg = np.full(shape, label, dtype=np.uint8)
    check_against_reference(seg)
    assert (tubed_skeleton(seg) == label).any()


@pytest.mark.parametrize("shape", [(7, 9), (5, 7, 9)])
def test_single_voxel(shape):
    for where in ([s // 2 for s in shape], [0] * len(shape), [s - 1 for s in shape]):
        seg = np.zeros(shape, dtype=np.int16)
        seg[tuple(where)] = 2
        check_against_reference(seg)
        out = tubed_skeleton(seg)
        expected = np.zeros(shape, dtype=np.int16)
        expected[tuple(where)] = 2  # the tube is cut to the foreground: just the voxel
        np.testing.assert_array_equal(out, expected)


def test_objects_touching_the_border_2d():
    seg = np.zeros((40, 50), dtype=np.uint8)
    seg[:4, :] = 1  # full-width band along the top edge
    seg[10:30, -6:] = 2  # block on the right edge
    seg[-3:, 5:20] = 3  # thin band on the bottom edge
    seg[15:25, :2] = 1  # 2-wide strip on the left edge
    seg[-5:, -5:] = 2  # corner block
    assert check_against_reference(seg) == 0
    out = tubed_skeleton(seg)
    assert out[0].any() or out[1].any()
    assert out[:, -1].any() or out[:, -2].any()


def test_objects_touching_the_border_3d():
    seg = np.zeros((20, 24, 28), dtype=np.uint8)
    seg[:3, :, :] = 1  # slab on a face
    seg[8:14, -4:, 10:20] = 2  # block on another face
    seg[-5:, -5:, :] = 3  # bar along an edge, spanning the array
    seg[10:13, 2:5, -3:] = 1  # stub on the last face
    seg[-3:, :3, :3] = 2  # corner cube
    check_against_reference(seg)


@pytest.mark.parametrize("seed", range(4))
def test_noisy_blobs_2d(seed):
    for sigma, fraction in ((1.0, 0.3), (2.0, 0.5)):
        seg = noisy_blobs((64, 72), seed, sigma=sigma, fraction=fraction)
        assert check_against_reference(seg) == 0


@pytest.mark.parametrize("seed", range(4))
def test_noisy_blobs_3d(seed):
    for sigma, fraction in ((1.0, 0.2), (1.5, 0.35)):
        seg = noisy_blobs((28, 30, 32), seed, sigma=sigma, fraction=fraction)
        check_against_reference(seg)


def test_noisy_blobs_3d_with_vanishing_objects():
    """Small blobs are exactly what scikit-image deletes; make sure the repair path runs."""
    seg = np.zeros((40, 40, 40), dtype=np.uint8)
    seg[4:32, 4:32, 4:32] = noisy_blobs((28, 28, 28), 7, sigma=1.5, fraction=0.25)
    seg[35:37, 35:37, 35:37] = 2  # 2x2x2 blob, well away from the rest
    assert check_against_reference(seg) >= 1


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_dtypes(dtype, ndim):
    seg = tree_2d(1, 3) if ndim == 2 else tree_3d(2, 3)
    expected = reference_tubed_skeleton(seg.astype(np.int64))
    out = tubed_skeleton(seg.astype(dtype))
    assert out.dtype == np.int16 and out.shape == seg.shape
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(tubed_skeleton(seg.astype(dtype), fallback=False), expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_bool_input(ndim):
    seg = (tree_2d(0) if ndim == 2 else tree_3d(0)) > 0
    out = tubed_skeleton(seg)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, reference_tubed_skeleton(seg))
    assert set(np.unique(out)) == {0, 1}


def test_list_input_is_accepted():
    seg = tree_2d(0)
    np.testing.assert_array_equal(tubed_skeleton(seg.tolist()), reference_tubed_skeleton(seg))


@pytest.mark.parametrize("ndim", [2, 3])
def test_non_contiguous_views(ndim):
    seg = tree_2d(2, 3) if ndim == 2 else tree_3d(1, 3)
    views = [seg[::-1], seg[:, ::2], seg[1:-3, 2:]]
    if ndim == 3:
        views += [seg.transpose(2, 0, 1), seg[:, :, ::-1]]
    for view in views:
        check_against_reference(view)


@pytest.mark.parametrize("ndim", [2, 3])
def test_fortran_ordered_input(ndim):
    """BUG: Fortran-ordered input (e.g. ``seg.T``) is not thinned at all.

    ``thinning._padded`` keeps the input's memory order (np.pad of an F-contiguous array is
    F-contiguous), so ``padded.reshape(-1)`` is a C-order *copy*: the kernel thins the copy
    and ``thin_2d``/``thin_3d`` return the untouched input.
    """
    seg = tree_2d(1, 2) if ndim == 2 else tree_3d(1, 2)
    fortran = np.asfortranarray(seg)
    np.testing.assert_array_equal(tubed_skeleton(fortran, fallback=False), reference_tubed_skeleton(seg))
    np.testing.assert_array_equal(tubed_skeleton(seg.T, fallback=False), reference_tubed_skeleton(seg.T))


@pytest.mark.parametrize("ndim", [2, 3])
def test_thinning_fortran_ordered_mask(ndim):
    """BUG (same cause as above), at the kernel level."""
    mask = np.asfortranarray(noisy_blobs((40, 44) if ndim == 2 else (16, 18, 20), 3, fraction=0.4) > 0)
    thin = thin_2d(mask) if ndim == 2 else thin_3d(mask)[0]
    np.testing.assert_array_equal(thin, skeletonize(mask))


def test_thin_3d_singleton_first_axis():
    """BUG: ``thin_3d`` differs from scikit-image on (1, Y, Z) volumes.

    scikit-image's Lee thinning runs only the 4 in-plane border directions when the padded
    volume's first axis has length 3 (``num_borders = 4 if img.shape[0] == 3``); ``thin_3d``
    always runs all 6. E.g. a 20x12 plate in a (1, 30, 30) volume: scikit-image keeps 8
    voxels, ``thin_3d`` deletes the plate entirely.
    """
    plate = np.zeros((1, 30, 30), dtype=bool)
    plate[0, 5:25, 8:20] = True
    np.testing.assert_array_equal(thin_3d(plate)[0], skeletonize(plate))
    rng = np.random.default_rng(0)
    for density in (0.6, 0.9):
        mask = rng.random((1, 30, 30)) < density
        np.testing.assert_array_equal(thin_3d(mask)[0], skeletonize(mask))


def test_tubed_skeleton_singleton_first_axis():
    """BUG (same cause): tubed_skeleton(fallback=False) != reference on a (1, Y, Z) label map.

    A fix must key the 4-direction rule on the *full* array's first axis, not on the
    foreground box that ``skeletonize_mask`` crops to: see the next test.
    """
    seg = np.zeros((1, 30, 30), dtype=np.uint8)
    seg[0, 5:25, 8:20] = 1
    np.testing.assert_array_equal(tubed_skeleton(seg, fallback=False), reference_tubed_skeleton(seg))


def test_single_slice_foreground_in_thicker_volume():
    """The foreground box is (1, Y, Z) here but the volume is not: all 6 directions apply."""
    seg = np.zeros((5, 30, 30), dtype=np.uint8)
    seg[2, 5:25, 8:20] = 1
    seg[2, 2:4, 2:28] = 2
    check_against_reference(seg)


@pytest.mark.parametrize("shape", [(30, 1, 30), (30, 30, 1), (1, 1, 30), (1, 30, 1)])
def test_thin_3d_other_singleton_axes(shape):
    rng = np.random.default_rng(1)
    for density in (0.5, 0.8, 1.0):
        mask = rng.random(shape) < density
        np.testing.assert_array_equal(thin_3d(mask)[0], skeletonize(mask))


# ------------------------------------------------------------------------ 2D thinning


def all_patterns(shape: tuple[int, ...]) -> np.ndarray:
    """Every binary pattern of ``shape``: (2**n, *shape) bool."""
    n = int(np.prod(shape))
    codes = np.arange(2**n, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(n)) & 1
    return bits.astype(bool).reshape(-1, *shape)


def tile(patterns: np.ndarray, gap: int = 1) -> np.ndarray:
    """Lay patterns out on a grid with ``gap`` background pixels between them.

    Thinning decides from the 8-neighbourhood only, and objects of different tiles are
    never 8-adjacent, so each tile is thinned exactly as it would be on its own.
    """
    n, h, w = patterns.shape
    per_row = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / per_row))
    out = np.zeros((rows * (h + gap) + gap, per_row * (w + gap) + gap), dtype=bool)
    for k, pattern in enumerate(patterns):
        top, left = gap + (k // per_row) * (h + gap), gap + (k % per_row) * (w + gap)
        out[top:top + h, left:left + w] = pattern
    return out


def test_thin_2d_all_3x4_patterns():
    for pattern in all_patterns((3, 4)):
        expected = skeletonize(pattern)
        got = thin_2d(pattern)
        assert got.dtype == bool
        if not np.array_equal(got, expected):
            pytest.fail(f"thin_2d differs from skimage on\n{pattern.astype(int)}")


def test_thin_2d_all_4x4_patterns_tiled():
    image = tile(all_patterns((4, 4)))
    np.testing.assert_array_equal(thin_2d(image), skeletonize(image))


def test_thin_2d_random_masks():
    rng = np.random.default_rng(12)
    for k in range(120):
        shape = tuple(rng.integers(3, 40, size=2))
        mask = rng.random(shape) < rng.choice([0.2, 0.5, 0.7, 0.9])
        if k % 2:
            mask = ndimage.binary_opening(mask)
        np.testing.assert_array_equal(thin_2d(mask), skeletonize(mask), err_msg=f"case {k}")


def test_thin_2d_empty_and_full():
    for shape in ((1, 1), (1, 7), (7, 1), (5, 6)):
        for mask in (np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)):
            np.testing.assert_array_equal(thin_2d(mask), skeletonize(mask))


def test_thin_2d_never_deletes_an_object_all_4x4_patterns():
    image = tile(all_patterns((4, 4)))
    components, n = ndimage.label(image, structure=full(2))
    kept = np.unique(components[thin_2d(image)])
    assert set(kept) - {0} == set(range(1, n + 1))


def test_thin_2d_never_deletes_an_object_random():
    rng = np.random.default_rng(5)
    for _ in range(60):
        mask = rng.random((48, 48)) < rng.choice([0.3, 0.6, 0.85])
        components, n = ndimage.label(mask, structure=full(2))
        kept = np.unique(components[thin_2d(mask)])
        assert set(kept) - {0} == set(range(1, n + 1))


def test_thinning_nonbinary_masks():
    """BUG: ``thin_2d``/``thin_3d`` document "nonzero = foreground" but cast with astype(uint8).

    256 (or 512, ...) wraps to 0 and 0.5 truncates to 0, so such voxels become background.
    scikit-image casts to bool: e.g. a 3x7 bar of value 256 gives a 6-pixel skeleton there,
    but ``thin_2d`` returns nothing.
    """
    bar = np.zeros((7, 9), dtype=np.int64)
    bar[2:5, 1:8] = 256
    np.testing.assert_array_equal(thin_2d(bar), skeletonize(bar))
    np.testing.assert_array_equal(thin_2d(bar * 0.5 / 256), skeletonize(bar * 0.5 / 256))
    block = np.zeros((7, 9, 9), dtype=np.int32)
    block[2:5, 1:8, 3:6] = 512
    np.testing.assert_array_equal(thin_3d(block)[0], skeletonize(block))


def test_thinning_accepts_small_nonzero_integers():
    bar = np.zeros((7, 9), dtype=np.int64)
    bar[2:5, 1:8] = 3
    np.testing.assert_array_equal(thin_2d(bar), skeletonize(bar))
    np.testing.assert_array_equal(thin_3d(bar[None].repeat(3, 0))[0], skeletonize(bar[None].repeat(3, 0)))


# ------------------------------------------------------------------------ 3D thinning


def check_vanished_contract(mask: np.ndarray, thin: np.ndarray, vanished: np.ndarray) -> None:
    """``vanished`` holds exactly one voxel of each object that lost all its voxels."""
    assert vanished.ndim == 2 and vanished.shape[1] == 3
    components, n = ndimage.label(mask, structure=full(3))
    lost = set(range(1, n + 1)) - set(np.unique(components[thin]))
    assert np.all(mask[tuple(vanished.T)]) if len(vanished) else True
    ids = components[tuple(vanished.T)] if len(vanished) else np.zeros(0, dtype=int)
    assert sorted(ids.tolist()) == sorted(lost)


def test_thin_3d_all_2x2x2_patterns():
    for pattern in all_patterns((2, 2, 2)):
        thin, vanished = thin_3d(pattern)
        np.testing.assert_array_equal(thin, skeletonize(pattern), err_msg=str(pattern.astype(int)))
        check_vanished_contract(pattern, thin, vanished)


def test_thin_3d_random_3x3x3_patterns():
    rng = np.random.default_rng(3)
    for _ in range(400):
        pattern = rng.random((3, 3, 3)) < rng.choice([0.3, 0.5, 0.7, 0.9])
        thin, vanished = thin_3d(pattern)
        np.testing.assert_array_equal(thin, skeletonize(pattern), err_msg=str(pattern.astype(int)))
        check_vanished_contract(pattern, thin, vanished)


@pytest.mark.parametrize("opening", [False, True])
@pytest.mark.parametrize("density", [0.15, 0.4, 0.65, 0.9])
def test_thin_3d_random_volumes(density, opening):
    rng = np.random.default_rng(int(density * 100) + opening)
    for k in range(25):
        shape = tuple(rng.integers(2, 13, size=3))
        mask = rng.random(shape) < density
        if opening:
            mask = ndimage.binary_opening(mask)
        thin, vanished = thin_3d(mask)
        assert thin.dtype == bool and thin.shape == mask.shape
        np.testing.assert_array_equal(thin, skeletonize(mask), err_msg=f"case {k}, shape {shape}")
        check_vanished_contract(mask, thin, vanished)


def test_thin_3d_empty():
    thin, vanished = thin_3d(np.zeros((4, 5, 6), dtype=bool))
    assert not thin.any() and thin.shape == (4, 5, 6) and vanished.shape == (0, 3)


# -------------------------------------------------- the known defect: objects that vanish


ROD_SIDES = [2, 4, 6]


@pytest.mark.parametrize("side", ROD_SIDES)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rods_vanish_in_skimage_but_keep_a_tube(axis, side):
    shape = (26, 26, 26)
    label = 2
    start, length = 4, 18
    seg = np.zeros(shape, dtype=np.uint8)
    box = rod(shape, axis, side, start, length, (7, 9))
    seg[box] = label
    obj = seg > 0

    # the defect we beat (scikit-image #3757 / #6513)
    assert not skeletonize(obj).any()
    assert not reference_tubed_skeleton(seg).any()
    thin, vanished = thin_3d(obj)
    assert not thin.any() and len(vanished) == 1 and obj[tuple(vanished[0])]
    assert not tubed_skeleton(seg, fallback=False).any()

    out = tubed_skeleton(seg)
    tube = out != 0
    assert tube.any()
    assert np.all(out[tube] == label)
    assert not np.any(tube & ~obj)
    along = tube.any(axis=tuple(a for a in range(3) if a != axis))
    assert along[start] and along[start + length - 1], "the tube must span the rod's full length"
    assert along[start:start + length].all()


def test_2x2x2_blob_vanishes_in_skimage_but_keeps_a_tube():
    seg = np.zeros((8, 9, 10), dtype=np.int16)
    seg[3:5, 4:6, 5:7] = 4
    assert not skeletonize(seg > 0).any()
    assert not tubed_skeleton(seg, fallback=False).any()
    out = tubed_skeleton(seg)
    assert (out == 4).any() and np.all(out[out != 0] == 4)
    assert not np.any((out != 0) & (seg == 0))


@pytest.mark.parametrize("side", ROD_SIDES)
def test_rods_next_to_a_vessel_tree(side):
    tree = tree_3d(1, 2)
    seg = np.zeros((48, 48, 76), dtype=np.uint8)
    seg[:, :, :48] = tree
    # rods along each axis and a blob, all >= 4 voxels from the tree and from each other
    rods = {
        0: (rod(seg.shape, 0, side, 4, 16, (4, 53)), 3),
        1: (rod(seg.shape, 1, side, 4, 16, (26, 53)), 1),
        2: (rod(seg.shape, 2, side, 54, 18, (37, 30)), 2),
    }
    for box, label in rods.values():
        seg[box] = label
    seg[8:10, 30:32, 62:64] = 2  # 2x2x2 blob

    components, n = ndimage.label(seg > 0, structure=full(3))
    tree_part = np.zeros(seg.shape, dtype=bool)
    tree_part[:, :, :48] = True
    tree_ids = set(np.unique(components[tree_part])) - {0}
    extra_ids = set(range(1, n + 1)) - tree_ids
    assert len(extra_ids) == 4, "rods and blob must not touch the tree or each other"

    ref = reference_tubed_skeleton(seg)
    np.testing.assert_array_equal(tubed_skeleton(seg, fallback=False), ref)
    np.testing.assert_array_equal(ref[:, :, :48], reference_tubed_skeleton(tree))
    assert not ref[:, :, 48:].any(), "scikit-image deletes every rod and the blob"

    out = tubed_skeleton(seg)
    np.testing.assert_array_equal(out[:, :, :48], ref[:, :, :48])
    assert set(np.unique(components[out != 0])) - {0} == set(range(1, n + 1))
    for axis, (box, label) in rods.items():
        in_rod = np.zeros(seg.shape, dtype=bool)
        in_rod[box] = True
        tube = (out != 0) & in_rod
        assert np.all(out[tube] == label)
        along = tube.any(axis=tuple(a for a in range(3) if a != axis))
        assert along[box[axis]].all(), f"rod along axis {axis} is not covered end to end"


# ------------------------------------------------------------- principal_axis_centreline


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_centreline_of_straight_rod(axis, side):
    obj = np.zeros((20, 22, 24), dtype=bool)
    box = rod(obj.shape, axis, side, 3, 14, (5, 6))
    obj[box] = True
    line = principal_axis_centreline(obj)
    assert line.dtype == bool and line.shape == obj.shape
    assert not np.any(line & ~obj)
    per_slice = line.sum(axis=tuple(a for a in range(3) if a != axis))
    expected = np.zeros(obj.shape[axis], dtype=int)
    expected[box[axis]] = 1
    np.testing.assert_array_equal(per_slice, expected)
    if side % 2:  # odd cross-section: the exact centre
        coords = np.argwhere(line)
        other = [a for a in range(3) if a != axis]
        centre = [box[a].start + side // 2 for a in other]
        np.testing.assert_array_equal(coords[:, other], np.tile(centre, (len(coords), 1)))


def test_centreline_of_straight_rod_2d():
    obj = np.zeros((12, 30), dtype=bool)
    obj[4:9, 3:27] = True
    line = principal_axis_centreline(obj)
    assert line.sum() == 24 and line[6, 3:27].all()


def test_centreline_of_diagonal_rod_3d():
    size, half_length, radius = 30, 12, 1.5
    grid = np.indices((size,) * 3).reshape(3, -1).T.astype(float)
    direction = np.ones(3) / np.sqrt(3)
    centre = np.full(3, size / 2)
    rel = grid - centre
    t = rel @ direction
    dist = np.linalg.norm(rel - np.outer(t, direction), axis=1)
    obj = ((dist <= radius) & (np.abs(t) <= half_length)).reshape((size,) * 3)

    line = principal_axis_centreline(obj)
    assert not np.any(line & ~obj)
    pts = np.argwhere(line) - centre
    tp = pts @ direction
    assert np.linalg.norm(pts - np.outer(tp, direction), axis=1).max() <= 1.0
    assert tp.min() <= -half_length + 1.5 and tp.max() >= half_length - 1.5
    assert line.sum() >= 2 * half_length - 2
    assert ndimage.label(line, structure=full(3))[1] == 1


def test_centreline_of_diagonal_rod_2d():
    obj = np.zeros((20, 20), dtype=bool)
    for i in range(2, 18):
        obj[i, i] = obj[i, i + 1] = True
    line = principal_axis_centreline(obj)
    assert not np.any(line & ~obj)
    coords = np.argwhere(line)
    assert coords[:, 0].min() <= 3 and coords[:, 0].max() >= 16


@pytest.mark.parametrize("shape", [(5, 6), (4, 5, 6)])
def test_centreline_of_single_voxel_and_empty(shape):
    empty = np.zeros(shape, dtype=bool)
    out = principal_axis_centreline(empty)
    assert out.shape == shape and out.dtype == bool and not out.any()
    single = empty.copy()
    single[(1,) * len(shape)] = True
    np.testing.assert_array_equal(principal_axis_centreline(single), single)


def test_centreline_of_2x2x2_blob():
    obj = np.zeros((5, 5, 5), dtype=bool)
    obj[1:3, 2:4, 2:4] = True
    line = principal_axis_centreline(obj)
    assert line.any() and not np.any(line & ~obj)


# ----------------------------------------------------------------------------- per_class


def two_bars() -> np.ndarray:
    seg = np.zeros((40, 80), dtype=np.uint8)
    seg[10:20, 5:75] = 1
    seg[20:30, 5:75] = 2
    return seg


def test_per_class_two_touching_bars():
    seg = two_bars()
    middle = slice(20, 60)

    binarized = tubed_skeleton(seg, tube_radius=0) != 0
    rows = np.argwhere(binarized[:, middle])[:, 0]
    assert binarized[:, middle].sum(axis=0).tolist() == [1] * 40, "one centreline"
    assert rows.min() >= 19 and rows.max() <= 20, "near the shared border"

    own = tubed_skeleton(seg, tube_radius=0, per_class=True)
    assert (own[:, middle] != 0).sum(axis=0).tolist() == [2] * 40, "two centrelines"
    rows1 = np.argwhere(own[:, middle] == 1)[:, 0]
    rows2 = np.argwhere(own[:, middle] == 2)[:, 0]
    assert len(rows1) == len(rows2) == 40
    assert rows1.min() >= 13 and rows1.max() <= 16, "class 1's centreline inside its bar"
    assert rows2.min() >= 23 and rows2.max() <= 26, "class 2's centreline inside its bar"


def test_per_class_keeps_a_thin_line_next_to_a_thick_region():
    seg = np.zeros((40, 80), dtype=np.uint8)
    seg[10:20, 5:75] = 1
    seg[20, 5:75] = 2  # one-pixel line along the thick class-1 bar
    assert not (tubed_skeleton(seg) == 2).any(), "the binarized skeleton misses the line"
    assert not (reference_tubed_skeleton(seg) == 2).any()
    own = tubed_skeleton(seg, per_class=True)
    assert (own[20, 20:60] == 2).all()


@pytest.mark.parametrize("ndim", [2, 3])
def test_per_class_is_union_of_class_skeletons(ndim):
    seg = tree_2d(1, 3) if ndim == 2 else tree_3d(2, 3)
    labels = seg.astype(np.int64)
    skeleton = np.zeros(seg.shape, dtype=bool)
    for c in np.unique(labels[labels > 0]):
        skeleton |= skeletonize(labels == c)
    expected = (diamond(skeleton, 2) * labels).astype(np.int16)
    np.testing.assert_array_equal(tubed_skeleton(seg, per_class=True, fallback=False), expected)


def test_per_class_repairs_vanished_objects():
    seg = np.zeros((20, 20, 30), dtype=np.uint8)
    seg[5:9, 5:9, 4:26] = 1
    seg[9:13, 5:9, 4:26] = 2  # touching 4x4 rods of two classes: an 8x4 bar together
    out = tubed_skeleton(seg, per_class=True)
    assert (out == 1).any() and (out == 2).any()
    assert not tubed_skeleton(seg, per_class=True, fallback=False).any()


# ------------------------------------------------------------ labels, radii, invariants


@pytest.mark.parametrize("ndim", [2, 3])
def test_negative_labels_are_background(ndim):
    seg = (tree_2d(0, 3) if ndim == 2 else tree_3d(0, 3)).astype(np.int16)
    padded = seg.copy()
    outside = np.zeros(seg.shape, dtype=bool)
    outside[: seg.shape[0] // 4] = True
    padded[outside & (seg == 0)] = -1  # nnU-Net's padding outside the nonzero mask
    padded[-2:] = -1  # also over foreground
    out = tubed_skeleton(padded)
    assert out.min() >= 0
    np.testing.assert_array_equal(out, reference_tubed_skeleton(as_labels(padded)))
    check_against_reference(padded)


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("ndim", [2, 3])
def test_ignore_label_is_background(ndim, per_class):
    seg = (tree_2d(1, 3) if ndim == 2 else tree_3d(2, 3)).astype(np.int16)
    ignore = 3
    assert (seg == ignore).any()
    out = tubed_skeleton(seg, ignore_label=ignore, per_class=per_class)
    assert not (out == ignore).any()
    cleaned = np.where(seg == ignore, 0, seg)
    np.testing.assert_array_equal(out, tubed_skeleton(cleaned, per_class=per_class))
    if not per_class:
        np.testing.assert_array_equal(out, reference_tubed_skeleton(cleaned))


def test_ignore_label_with_negative_padding():
    seg = tree_2d(0, 2).astype(np.int64)
    seg[:10] = -1
    seg[seg == 2] = 5
    out = tubed_skeleton(seg, ignore_label=5)
    assert set(np.unique(out)) <= {0, 1}
    np.testing.assert_array_equal(out, reference_tubed_skeleton(np.where(seg == 1, 1, 0)))


def test_ignore_label_applies_to_bool_input():
    """BUG: bool input skips the ignore label: with ignore_label=1 every True voxel is the
    ignore label, so the output should be empty; it is the full tube of label 1."""
    seg = np.zeros((20, 20), dtype=bool)
    seg[5:15, 5:15] = True
    assert not tubed_skeleton(seg, ignore_label=1).any()


@pytest.mark.parametrize("ndim", [2, 3])
def test_invariants(ndim):
    seg = tree_2d(2, 3) if ndim == 2 else tree_3d(0, 3)
    labels = seg.astype(np.int64)
    fg = labels > 0
    for radius in range(4):
        out = tubed_skeleton(seg, tube_radius=radius)
        assert out.dtype == np.int16 and out.shape == seg.shape
        tube = out != 0
        assert not np.any(tube & ~fg), "tube must lie inside the foreground"
        np.testing.assert_array_equal(out[tube], labels[tube])
        assert not np.any(skeletonize_mask(fg) & ~tube), "skeleton must lie inside the tube"


@pytest.mark.parametrize("ndim", [2, 3])
def test_tube_radius_0_is_skeleton_times_labels(ndim):
    seg = tree_2d(1, 3) if ndim == 2 else tree_3d(1, 3)
    expected = (skeletonize(seg > 0) * seg.astype(np.int64)).astype(np.int16)
    np.testing.assert_array_equal(tubed_skeleton(seg, tube_radius=0), expected)


@pytest.mark.parametrize("radius", [1, 3])
@pytest.mark.parametrize("ndim", [2, 3])
def test_tube_radius_matches_iterated_cross_dilation(ndim, radius):
    seg = tree_2d(0, 3) if ndim == 2 else tree_3d(2, 3)
    skel = skeletonize(seg > 0)
    expected = (ndimage.binary_dilation(skel, structure=cross(ndim), iterations=radius)
                * seg.astype(np.int64)).astype(np.int16)
    np.testing.assert_array_equal(tubed_skeleton(seg, tube_radius=radius, fallback=False), expected)
    np.testing.assert_array_equal(tubed_skeleton(seg, tube_radius=np.int64(radius), fallback=False), expected)


def test_default_radius_is_reference_tube():
    seg = tree_2d(0, 2)
    np.testing.assert_array_equal(tubed_skeleton(seg), tubed_skeleton(seg, tube_radius=2))


@pytest.mark.parametrize("ndim", [2, 3])
def test_dilate_diamond(ndim):
    rng = np.random.default_rng(ndim)
    shape = (30, 31) if ndim == 2 else (14, 15, 16)
    mask = rng.random(shape) < 0.02
    mask[(0,) * ndim] = mask[(-1,) * ndim] = True  # touch the corners
    for radius in range(5):
        got = dilate_diamond(mask, radius)
        np.testing.assert_array_equal(got, diamond(mask, radius))
    same = dilate_diamond(mask, 0)
    assert same is not mask
    assert not dilate_diamond(np.zeros(shape, dtype=bool), 3).any()


@pytest.mark.parametrize("ndim", [2, 3])
def test_skeletonize_mask(ndim):
    mask = noisy_blobs((50, 52) if ndim == 2 else (22, 24, 26), 4, fraction=0.3) > 0
    np.testing.assert_array_equal(skeletonize_mask(mask, fallback=False), skeletonize(mask))
    np.testing.assert_array_equal(skeletonize_mask(np.zeros_like(mask)), np.zeros_like(mask))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("seg, match", [
    (np.zeros(10, dtype=np.uint8), r"2D .*3D|shape"),
    (np.zeros((1, 8, 8, 8), dtype=np.uint8), r"2D .*3D|shape"),
    (np.uint8(1), r"2D .*3D|shape"),
    (np.full((8, 8), 0.5), r"integer"),
    (np.array([[0.0, 1.0], [2.0, 1.5]]), r"integer"),
    (np.array([[0.0, np.nan], [1.0, 1.0]]), r"non-finite|NaN|nan"),
    (np.array([[0.0, np.inf], [1.0, 1.0]]), r"non-finite|inf"),
    (np.array([["a", "b"], ["c", "d"]]), r"dtype"),
    (np.array([[1, 0], [0, 1]], dtype=object), r"dtype"),
    (np.array([[1 + 0j, 0], [0, 1]]), r"dtype"),
])
def test_bad_segmentation_raises(seg, match):
    with pytest.raises(ValueError, match=match):
        tubed_skeleton(seg)


@pytest.mark.parametrize("radius", [-1, 1.5, 2.0, True, False, "2", None])
def test_bad_tube_radius_raises(radius):
    with pytest.raises(ValueError, match="tube_radius"):
        tubed_skeleton(np.ones((5, 5), dtype=np.uint8), tube_radius=radius)


# keep the helpers honest


def test_tile_keeps_patterns_apart():
    patterns = all_patterns((2, 2))
    image = tile(patterns)
    assert ndimage.label(image, structure=full(2))[1] == sum(
        ndimage.label(p, structure=full(2))[1] for p in patterns)


def test_all_patterns_is_exhaustive():
    patterns = all_patterns((2, 3))
    assert len({p.tobytes() for p in patterns}) == 64
    assert list(itertools.islice((int(p.sum()) for p in patterns), 4)) == [0, 1, 1, 2]
