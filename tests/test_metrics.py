"""Topology metrics checked on shapes whose answer is known by construction.

Connectivity everywhere: foreground 8-connected (2D) / 26-connected (3D),
background 4-connected (2D) / 6-connected (3D).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import euler_number
from skimage.metrics import adapted_rand_error
from skimage.morphology import skeletonize

from nnunet_ext.metrics import (
    betti_errors,
    betti_numbers,
    cldice,
    dice,
    hard_skeleton,
    is_simple,
    pixel_error,
    rand_error,
    rand_scores,
    topology_metrics,
    warp_mask,
    warping_error,
)
from nnunet_ext.metrics.simple_points import OFFSETS_2D, OFFSETS_3D, SIMPLE_TABLE_2D
from nnunet_ext.skeleton.thinning import _ADJACENCY, _EDGE_MASKS, _FACE_MASKS, _VERTEX_MASKS, _is_euler_invariant
from nnunet_ext.skeleton.thinning import _is_simple as _lee_one_component

# --------------------------------------------------------------------------- shapes


def disk(shape=(40, 40), centre=(20, 20), radius=8.0) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def ring(shape=(40, 40), centre=(20, 20), outer=10.0, inner=6.0) -> np.ndarray:
    return disk(shape, centre, outer) & ~disk(shape, centre, inner)


def ball(shape=(20, 20, 20), centre=(10, 10, 10), radius=7.0) -> np.ndarray:
    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


def shell(shape=(20, 20, 20), outer=7.0, inner=4.0) -> np.ndarray:
    return ball(shape, radius=outer) & ~ball(shape, radius=inner)


def solid_torus(shape=(16, 30, 30), major=8.0, minor=3.0) -> np.ndarray:
    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
    r = np.hypot(yy - shape[1] / 2, xx - shape[2] / 2)
    return (r - major) ** 2 + (zz - shape[0] / 2) ** 2 <= minor ** 2


def vessel_with_gap() -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred): a horizontal line of width 3; the prediction misses one column of it."""
    gt = np.zeros((20, 60), dtype=bool)
    gt[8:11, 5:55] = True
    pred = gt.copy()
    pred[8:11, 30] = False
    return gt, pred


def random_blobs(shape, seed: int, sigma: float = 1.5, level: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field > level * field.std()


# --------------------------------------------------------------------------- Betti numbers


def test_betti_numbers_2d_known_shapes():
    cut = ring()
    cut[18:23, 25:] = False  # one cut through the right side of the ring
    two = ring((40, 80), (20, 20)) | ring((40, 80), (20, 60))
    assert betti_numbers(ring()) == (1, 1)
    assert betti_numbers(cut) == (1, 0)
    assert betti_numbers(two) == (2, 2)
    assert betti_numbers(disk()) == (1, 0)
    assert betti_numbers(np.zeros((5, 5))) == (0, 0)
    for mask in (ring(), cut, two, disk()):  # χ = β0 − β1 (skimage, 8-connected foreground)
        b0, b1 = betti_numbers(mask)
        assert euler_number(np.pad(mask, 1), connectivity=2) == b0 - b1


def test_betti_numbers_2d_connectivity_conventions():
    diagonal = np.zeros((4, 4), dtype=bool)
    diagonal[1, 1] = diagonal[2, 2] = True
    assert betti_numbers(diagonal) == (1, 0)  # foreground 8-connected
    diamond = np.zeros((5, 5), dtype=bool)
    diamond[1, 2] = diamond[2, 1] = diamond[2, 3] = diamond[3, 2] = True
    assert betti_numbers(diamond) == (1, 1)  # background 4-connected: the centre is a hole
    touching_border = np.ones((5, 5), dtype=bool)
    touching_border[2, 2] = False
    assert betti_numbers(touching_border) == (1, 1)  # the image is surrounded by background


def test_betti_numbers_3d_known_shapes():
    assert betti_numbers(solid_torus()) == (1, 1, 0)
    assert betti_numbers(shell()) == (1, 0, 1)
    assert betti_numbers(ball()) == (1, 0, 0)
    two_tori = np.concatenate([solid_torus(), solid_torus()], axis=2)
    assert betti_numbers(two_tori) == (2, 2, 0)
    assert betti_numbers(np.zeros((3, 3, 3))) == (0, 0, 0)
    corners = np.zeros((4, 4, 4), dtype=bool)
    corners[1, 1, 1] = corners[2, 2, 2] = True
    assert betti_numbers(corners) == (1, 0, 0)  # foreground 26-connected


def test_betti_errors():
    assert betti_errors(disk(), ring()) == (0, 1)
    assert betti_errors(ring((40, 80), (20, 20)) | ring((40, 80), (20, 60)), ring((40, 80))) == (1, 1)
    assert betti_errors(ball(), shell()) == (0, 0, 1)
    assert betti_errors(np.zeros((4, 4)), np.zeros((4, 4))) == (0, 0)


# --------------------------------------------------------------------------- overlap metrics


def test_dice_and_pixel_error_values_and_empty_conventions():
    a = np.zeros((4, 5), dtype=bool)
    b = a.copy()
    a[0, :4] = True
    b[0, 2:] = True
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 3))
    assert pixel_error(a, b) == pytest.approx(3 / 20)
    empty = np.zeros((4, 5))
    assert math.isnan(dice(empty, empty))
    assert dice(a, empty) == 0.0
    assert pixel_error(empty, empty) == 0.0


def test_cldice_matches_definition_with_skimage_skeletons():
    gt, pred = vessel_with_gap()
    sp, sg = skeletonize(pred), skeletonize(gt)
    t_prec = (sp & gt).sum() / sp.sum()
    t_sens = (sg & pred).sum() / sg.sum()
    expected = 2 * t_prec * t_sens / (t_prec + t_sens)
    assert cldice(pred, gt) == pytest.approx(expected)
    assert cldice(pred, gt) < 1.0
    assert np.array_equal(hard_skeleton(gt), sg)


def test_cldice_edge_cases():
    empty = np.zeros((10, 10))
    blob = np.zeros((10, 10))
    blob[2:6, 2:6] = 1
    far = np.zeros((10, 10))
    far[8:, 8:] = 1
    assert math.isnan(cldice(empty, empty))
    assert cldice(blob, empty) == 0.0
    assert cldice(empty, blob) == 0.0
    assert cldice(blob, far) == 0.0  # skeletons outside the other mask: Tprec = Tsens = 0
    assert cldice(blob, blob) == 1.0
    rod = np.zeros((8, 8, 8), dtype=bool)
    rod[1:7, 3:5, 3:5] = True  # skimage's 3D thinning deletes a 2x2 rod; the fallback keeps a centreline
    assert hard_skeleton(rod).any()
    assert cldice(rod, rod) == 1.0


# --------------------------------------------------------------------------- Rand error


def two_squares() -> tuple[np.ndarray, np.ndarray]:
    """(gt, merged): two 5x5 squares one column apart, and their bounding rectangle."""
    gt = np.zeros((9, 15), dtype=bool)
    gt[2:7, 2:7] = gt[2:7, 8:13] = True
    merged = np.zeros_like(gt)
    merged[2:7, 2:13] = True
    return gt, merged


def test_rand_error_identical_and_merge():
    gt, merged = two_squares()
    assert rand_error(gt, gt) == 0.0
    shifted = np.roll(gt, 1, axis=0)  # the top row of each square is missed: singletons
    assert rand_error(shifted, gt) > 0.0
    # merge: S = A = 2·C(25, 2) pairs together in both, B = C(50, 2) pairs together in the prediction
    s, b = 2 * math.comb(25, 2), math.comb(50, 2)
    assert rand_error(merged, gt) == pytest.approx(1 - 2 * s / (s + b))
    _, precision, recall = rand_scores(merged, gt)
    assert precision == pytest.approx(s / b) and recall == pytest.approx(1.0)
    # the prediction covers the gt foreground: scikit-image's convention gives the same number
    gt_instances = ndimage.label(gt, np.ones((3, 3)))[0]
    pred_instances = ndimage.label(merged, np.ones((3, 3)))[0]
    assert rand_error(merged, gt) == pytest.approx(adapted_rand_error(gt_instances, pred_instances)[0])
    # split: the gt is the rectangle (55 voxels); the 5 in the gap column are predicted singletons
    _, p_split, r_split = rand_scores(gt, merged)
    assert p_split == pytest.approx(1.0) and r_split == pytest.approx(s / math.comb(55, 2))


def test_rand_error_predicted_background_is_singletons_and_empty_conventions():
    gt = np.zeros((6, 14), dtype=bool)
    gt[1:4, 2:12] = True  # 30 voxels, one component
    half = gt.copy()
    half[:, 7:] = False  # 15 voxels kept; the 15 missed ones are singletons
    s = math.comb(15, 2)
    assert rand_error(half, gt) == pytest.approx(1 - 2 * s / (math.comb(30, 2) + s))
    empty = np.zeros_like(gt)
    assert rand_error(empty, gt) == 1.0
    assert rand_error(gt, empty) == 1.0
    assert math.isnan(rand_error(empty, empty))
    dots = np.zeros((5, 5), dtype=bool)
    dots[1, 1] = dots[3, 3] = True  # two one-pixel gt components
    other = np.zeros((5, 5), dtype=bool)
    other[1, 1] = other[0, 4] = True  # no counted voxel pair shares a segment in either labeling
    assert rand_error(other, dots) == 0.0


# --------------------------------------------------------------------------- simple points


def _components_touching(mask: np.ndarray, structure: np.ndarray, touching: np.ndarray) -> int:
    """Number of components of ``mask`` (``structure`` connectivity) holding a voxel of ``touching``."""
    labels = ndimage.label(mask, structure=structure)[0]
    return len(set(labels[touching & mask].tolist()) - {0})


def _patch(code: int, offsets: np.ndarray) -> np.ndarray:
    patch = np.zeros((3,) * offsets.shape[1], dtype=bool)
    for b, o in enumerate(offsets):
        patch[tuple(o + 1)] = bool((code >> b) & 1)
    return patch


def test_simple_table_2d_matches_brute_force_and_topological_numbers():
    rng = np.random.default_rng(0)
    eight, four = np.ones((3, 3), dtype=bool), ndimage.generate_binary_structure(2, 1)
    for _ in range(300):  # direct count on random patches, with the centre on and off
        patch = rng.random((3, 3)) < 0.5
        on, off = patch.copy(), patch.copy()
        on[1, 1], off[1, 1] = True, False
        counts_on = (ndimage.label(on, eight)[1], ndimage.label(~on, four)[1])
        counts_off = (ndimage.label(off, eight)[1], ndimage.label(~off, four)[1])
        assert is_simple(patch) == (counts_on == counts_off)
    edge = np.zeros((3, 3), dtype=bool)
    edge[[0, 1, 1, 2], [1, 0, 2, 1]] = True
    for code in range(256):  # T8(fg) = 1 and T4(bg 4-adjacent to the centre) = 1
        ring_fg = _patch(code, OFFSETS_2D)
        t8 = ndimage.label(ring_fg, eight)[1]
        t4 = _components_touching(~ring_fg & (np.arange(9).reshape(3, 3) != 4), four, edge)
        assert bool(SIMPLE_TABLE_2D[code]) == (t8 == 1 and t4 == 1), code
    line = np.zeros((3, 3))
    line[1, :] = 1
    assert not is_simple(line)  # middle of a line
    line[1, 2] = 0
    assert is_simple(line)  # end of a line
    assert not is_simple(np.zeros((3, 3)))  # isolated point
    assert not is_simple(np.ones((3, 3)))  # interior point


def test_simple_points_3d_known_cases_and_topological_numbers():
    full26, six = np.ones((3, 3, 3), dtype=bool), ndimage.generate_binary_structure(3, 1)
    city = np.abs(np.indices((3, 3, 3)) - 1).sum(axis=0)
    n6, n18 = city == 1, (city <= 2) & (city > 0)
    rng = np.random.default_rng(1)
    for p_on in (0.3, 0.5, 0.7, 0.85):
        for _ in range(100):
            patch = rng.random((3, 3, 3)) < p_on
            patch[1, 1, 1] = False
            t26 = ndimage.label(patch, full26)[1]
            t6 = _components_touching(~patch & n18, six, n6)
            assert is_simple(patch) == (t26 == 1 and t6 == 1)
    b = ball((9, 9, 9), (4, 4, 4), 3.0)
    assert is_simple(b[3:6, 3:6, 0:3])  # on the surface of a ball
    assert not is_simple(b[3:6, 3:6, 3:6])  # inside it
    line = np.zeros((3, 3, 3))
    line[1, 1, :] = 1
    assert not is_simple(line)
    line[1, 1, 2] = 0
    assert is_simple(line)
    plate = np.zeros((3, 3, 3))
    plate[1] = 1
    assert not is_simple(plate)  # removing it punches a hole through a one-voxel-thick surface
    assert not is_simple(np.zeros((3, 3, 3)))
    # background faces (1,1,2), (1,2,1) joined only via edges (2,1,2), (2,2,1) and corner (2,2,2); T6 (in N18) = 2
    tunnel = np.ones((3, 3, 3), dtype=bool)
    for v in [(1, 1, 2), (1, 2, 1), (2, 1, 2), (2, 2, 1), (2, 2, 2)]:
        tunnel[v] = False
    assert not is_simple(tunnel)


def test_simple_points_3d_match_lee_characterization():
    """Independent oracle: Lee et al. (1994), Euler invariance + one 26-component (nnunet_ext.skeleton).

    (Both agree on all 2^26 neighbour codes; checked once offline, sampled here.)
    """
    rng = np.random.default_rng(2)
    codes = [int(c) for c in rng.integers(0, 1 << 26, 3000)]
    for p_on in (0.2, 0.8, 0.95):  # sparse and dense neighbourhoods, where the rare cases live
        bits = rng.random((1000, 26)) < p_on
        codes += [int(c) for c in bits.astype(np.int64) @ (1 << np.arange(26, dtype=np.int64))]
    for code in codes:
        lee = (code != 0 and _is_euler_invariant(code, _VERTEX_MASKS, _EDGE_MASKS, _FACE_MASKS)
               and _lee_one_component(code, _ADJACENCY))
        assert is_simple(_patch(code, OFFSETS_3D)) == lee, code


@pytest.mark.parametrize("shape", [(14, 14), (7, 7, 7)])
def test_simple_flips_preserve_global_topology(shape):
    rng = np.random.default_rng(len(shape))
    for trial in range(4):
        mask = random_blobs(shape, seed=trial, sigma=1.0, level=0.0)
        reference = betti_numbers(mask)
        padded = np.pad(mask, 1)
        flipped = 0
        for idx in rng.permutation(np.argwhere(np.ones(shape, dtype=bool)))[:60]:
            centre = tuple(idx + 1)
            if is_simple(padded[tuple(slice(c - 1, c + 2) for c in centre)]):
                padded[centre] = not padded[centre]
                flipped += 1
                assert betti_numbers(padded[(slice(1, -1),) * len(shape)]) == reference
        assert flipped > 0


# --------------------------------------------------------------------------- warping error


def test_warping_error_gap_is_topological_bump_is_not():
    gt, pred = vessel_with_gap()
    assert warping_error(pred, gt) == pytest.approx(1 / gt.size)  # one pixel of the gap must stay
    assert pixel_error(pred, gt) == pytest.approx(3 / gt.size)
    assert betti_errors(pred, gt) == (1, 0)
    blob = disk()
    bump = blob.copy()
    assert not bump[20, 29] and bump[20, 28]
    bump[20, 29] = True  # one pixel on the boundary
    assert warping_error(bump, blob) == 0.0
    assert pixel_error(bump, blob) == pytest.approx(1 / blob.size)
    assert betti_errors(bump, blob) == (0, 0)


def test_warping_keeps_gt_topology_and_known_residuals():
    # filling the hole of a ring: everything but the last pixel of the hole
    warped = warp_mask(ring(), disk(radius=10.0))
    assert (warped != disk(radius=10.0)).sum() == 1
    assert betti_numbers(warped) == (1, 1)
    # 3D: filling the cavity of a shell leaves one voxel
    warped = warp_mask(shell(), ball())
    assert (warped != ball()).sum() == 1
    assert betti_numbers(warped) == (1, 0, 1)
    # an empty ground truth cannot grow: every predicted voxel is an error
    assert warping_error(disk(), np.zeros((40, 40))) == pytest.approx(disk().sum() / disk().size)
    assert warping_error(np.zeros((40, 40)), np.zeros((40, 40))) == 0.0
    for seed in range(3):
        gt, pred = random_blobs((40, 40), seed), random_blobs((40, 40), seed + 10)
        assert betti_numbers(warp_mask(gt, pred)) == betti_numbers(gt)
        gt3, pred3 = random_blobs((12, 12, 12), seed), random_blobs((12, 12, 12), seed + 10)
        assert betti_numbers(warp_mask(gt3, pred3)) == betti_numbers(gt3)
        assert 0 < warping_error(pred3, gt3) <= pixel_error(pred3, gt3)


def test_warping_error_3d_tube_gap_and_bump():
    gt = np.zeros((9, 9, 30), dtype=bool)
    gt[3:6, 3:6, 3:27] = True
    gap = gt.copy()
    gap[:, :, 15] = False
    assert warping_error(gap, gt) > 0.0
    bump = gt.copy()
    bump[6, 4, 10] = True
    assert warping_error(bump, gt) == 0.0 < pixel_error(bump, gt)


# --------------------------------------------------------------------------- per-class metrics


def test_identical_prediction_gives_perfect_scores_2d_and_3d():
    seg2 = np.zeros((40, 80), dtype=np.int16)
    seg2[ring((40, 80), (20, 20))] = 1
    seg2[disk((40, 80), (20, 60))] = 2
    seg3 = np.zeros((16, 30, 30), dtype=np.uint8)
    seg3[solid_torus()] = 1
    for seg in (seg2, seg3):
        result = topology_metrics(seg, seg.copy(), labels=[1, 2] if seg.ndim == 2 else [1])
        for metrics in result.values():
            assert metrics["Dice"] == metrics["clDice"] == 1.0
            errors = {k: v for k, v in metrics.items() if k not in ("Dice", "clDice")}
            assert all(v == 0.0 for v in errors.values()), errors


def test_per_class_keys_values_and_empty_class():
    gt, pred = vessel_with_gap()
    keys2 = {"Dice", "clDice", "Betti0_error", "Betti1_error", "pixel_error", "rand_error", "warping_error"}
    result = topology_metrics(pred.astype(np.uint8), gt.astype(np.uint8), labels=[1, 3])
    assert set(result) == {1, 3} and set(result[1]) == keys2
    assert result[1]["Betti0_error"] == 1.0 and result[1]["warping_error"] > 0 and result[1]["clDice"] < 1
    assert all(isinstance(v, float) for v in result[1].values())
    absent = result[3]  # class 3 is in neither map
    assert math.isnan(absent["Dice"]) and math.isnan(absent["clDice"]) and math.isnan(absent["rand_error"])
    assert absent["Betti0_error"] == absent["pixel_error"] == absent["warping_error"] == 0.0
    seg3 = ball().astype(np.int32)
    result3 = topology_metrics(seg3, shell().astype(np.int32), labels=[1])
    assert set(result3[1]) == keys2 | {"Betti2_error"}
    assert result3[1]["Betti2_error"] == 1.0 and result3[1]["Betti1_error"] == 0.0
    only_gt = topology_metrics(np.zeros_like(seg3), seg3, labels=[1])[1]
    assert only_gt["Dice"] == only_gt["clDice"] == 0.0 and only_gt["rand_error"] == 1.0


def test_ignore_label_counts_as_background_in_both_maps():
    gt = np.zeros((30, 30), dtype=np.int64)
    gt[5:25, 5:10] = 1
    pred = gt.copy()
    pred[5:25, 20:25] = 1  # a spurious vessel ...
    gt[:, 18:28] = 9  # ... inside the ignore region
    result = topology_metrics(pred, gt, labels=[1], ignore_label=9)[1]
    assert result["Dice"] == 1.0 and result["Betti0_error"] == 0.0 and result["pixel_error"] == 0.0
    without = topology_metrics(pred, gt, labels=[1])[1]
    assert without["Betti0_error"] == 1.0 and without["pixel_error"] > 0.0
    with pytest.raises(ValueError, match="ignore label"):
        topology_metrics(pred, gt, labels=[1, 9], ignore_label=9)


def tree() -> np.ndarray:
    """A trunk (label 1) with two branches (label 2) touching it on opposite sides, far apart."""
    seg = np.zeros((30, 30), dtype=np.int64)
    seg[14:16, 2:28] = 1  # the trunk
    seg[4:14, 6:8] = 2  # branch A, above the trunk
    seg[16:26, 20:22] = 2  # branch B, below the trunk
    return seg


def test_regions_are_unions_of_labels():
    gt = tree()
    assert ndimage.label(gt == 2, np.ones((3, 3)))[1] == 2 and ndimage.label(gt > 0, np.ones((3, 3)))[1] == 1
    pred = gt.copy()
    pred[16:26, 20:22] = 0  # branch B missing: class 2 loses a component, the tree stays one piece
    result = topology_metrics(pred, gt, labels=[(1, 2), 2])
    assert set(result) == {(1, 2), 2}
    assert result[2]["Betti0_error"] == 1.0 and result[(1, 2)]["Betti0_error"] == 0.0
    assert 0.0 < result[2]["Dice"] < result[(1, 2)]["Dice"] < 1.0
    assert result[2] == topology_metrics(pred, gt, labels=[2])[2]  # an int region is the plain class
    # a region is exactly the int class 1 of the binarized maps
    binary = topology_metrics(np.isin(pred, (1, 2)).astype(int), np.isin(gt, (1, 2)).astype(int), labels=[1])[1]
    assert result[(1, 2)] == binary
    # trunk and branches swapped in the prediction: every class is wrong, the region is perfect
    swapped = np.where(gt == 1, 2, np.where(gt == 2, 1, 0))
    swap = topology_metrics(swapped, gt, labels=[1, 2, [1, 2]])  # a list region is keyed as its tuple
    assert set(swap) == {1, 2, (1, 2)}
    assert swap[1]["Dice"] == swap[2]["Dice"] == 0.0 and swap[2]["Betti0_error"] == 1.0
    assert swap[(1, 2)]["Dice"] == swap[(1, 2)]["clDice"] == 1.0
    assert all(v == 0.0 for k, v in swap[(1, 2)].items() if k not in ("Dice", "clDice"))


def test_regions_with_the_ignore_label():
    gt, pred = tree(), tree()
    pred[16:26, 20:22] = 0  # branch B missing ...
    gt[16:28, 18:24] = 9  # ... where the gt is unknown
    result = topology_metrics(pred, gt, labels=[(1, 2)], ignore_label=9)[(1, 2)]
    assert result["Dice"] == 1.0 and result["Betti0_error"] == result["pixel_error"] == 0.0
    binary_gt = np.where(gt == 9, 9, np.isin(gt, (1, 2)))
    assert result == topology_metrics(np.isin(pred, (1, 2)).astype(int), binary_gt, labels=[1], ignore_label=9)[1]
    with pytest.raises(ValueError, match="ignore label"):
        topology_metrics(pred, gt, labels=[(1, 9)], ignore_label=9)
    with pytest.raises(ValueError, match="empty"):
        topology_metrics(pred, gt, labels=[()])


def test_bad_inputs():
    a = np.zeros((4, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        topology_metrics(a, np.zeros((4, 6), dtype=np.int64), labels=[1])
    with pytest.raises(ValueError, match="integer"):
        topology_metrics(a + 0.5, a, labels=[1])
    with pytest.raises(ValueError, match="integer"):
        topology_metrics(a.astype(np.complex64), a, labels=[1])
    with pytest.raises(ValueError, match="2D"):
        topology_metrics(np.zeros(5, dtype=int), np.zeros(5, dtype=int), labels=[1])
    with pytest.raises(ValueError, match="2D"):
        topology_metrics(np.zeros((2,) * 4, dtype=int), np.zeros((2,) * 4, dtype=int), labels=[1])
    assert topology_metrics(a.astype(float), a.astype(bool), labels=[1])[1]["pixel_error"] == 0.0
    for metric in (dice, cldice, pixel_error, rand_error, warping_error, betti_errors):
        with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
            metric(a, a.T)
    with pytest.raises(ValueError, match="2D"):
        betti_numbers(np.zeros(7))
    with pytest.raises(ValueError):
        is_simple(np.zeros((3, 4)))


def test_warping_error_of_a_vessel_mask_lies_between_zero_and_the_pixel_error():
    from nnunet_ext.data.synthetic import vessel_tree

    gt = vessel_tree((256, 256), seed=1) > 0
    pred = ndimage.binary_dilation(gt) ^ (np.random.default_rng(0).random(gt.shape) < 0.02)
    assert 0.0 < warping_error(pred, gt) <= pixel_error(pred, gt)
