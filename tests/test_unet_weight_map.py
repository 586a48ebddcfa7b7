"""U-Net weight map and weighted cross entropy: hand-computed cases, many objects, the brute-force definition,
bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from nnunet_ext.losses import WeightedCrossEntropyLoss, unet_weight_map
from nnunet_ext.losses.unet_weight_map import (
    _add_border_terms,
    border_radius,
    two_nearest_object_distances,
    two_nearest_squared_distances,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def border(d1: float, d2: float, w0: float = 10.0, sigma: float = 5.0) -> float:
    return w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))


def two_squares() -> np.ndarray:
    """12 x 20 labels: 4x4 squares at rows 2-5, columns 2-5 and 11-14 (a 5-voxel gap, columns 6-10)."""
    labels = np.zeros((12, 20), dtype=np.int16)
    labels[2:6, 2:6] = 1
    labels[2:6, 11:15] = 1
    return labels


def test_two_squares_at_a_known_distance() -> None:
    weights = unet_weight_map(two_squares())
    background, foreground = 240 / (2 * 208), 240 / (2 * 32)  # N / (K N_c): 240 voxels, 2 classes
    # the middle of the gap, column 8: 3 voxels to column 5 and to column 11
    assert weights[4, 8] == pytest.approx(background + border(3, 3), rel=1e-6)
    # left of the first square: 2 to it, 11 to the second
    assert weights[4, 0] == pytest.approx(background + border(2, 11), rel=1e-6)
    # diagonal: (0, 8) is sqrt(3^2 + 2^2) from the corners (2, 5) and (2, 11)
    assert weights[0, 8] == pytest.approx(background + border(math.sqrt(13), math.sqrt(13)), rel=1e-6)
    # no border term on the objects: the class weight alone
    np.testing.assert_allclose(weights[two_squares() == 1], foreground, rtol=1e-6)
    assert weights.dtype == np.float32 and weights.shape == (12, 20)


def test_one_object_has_no_border_term() -> None:
    labels = two_squares()
    labels[2:6, 6:11] = 1  # the gap filled: one object
    weights = unet_weight_map(labels)
    np.testing.assert_allclose(weights[labels == 0], 240 / (2 * (240 - 52)), rtol=1e-6)
    # background only: one class, w_c = N / (1 * N) = 1 everywhere
    np.testing.assert_allclose(unet_weight_map(np.zeros((5, 5), dtype=np.int16)), 1.0)


def test_class_weights_on_a_hand_made_patch() -> None:
    labels = np.zeros((4, 4), dtype=np.int64)
    labels[0, :4] = 1
    labels[1, 0:2] = 2  # touching class 1: one object, no border term
    weights = unet_weight_map(labels)
    # N = 16, K = 3 classes present; N_0 = 10, N_1 = 4, N_2 = 2
    expected = np.choose(labels, [16 / 30, 16 / 12, 16 / 6])
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 2].sum())  # each class weighs N / K


def test_diagonal_neighbours_are_one_object_full_connectivity() -> None:
    labels = np.zeros((9, 9), dtype=np.int16)
    labels[2, 2] = labels[3, 3] = 1  # touching at a corner: one object, no border term
    weights = unet_weight_map(labels)
    assert len(np.unique(weights[labels == 0])) == 1
    labels3d = np.zeros((6, 6, 6), dtype=np.int16)
    labels3d[1, 1, 1] = labels3d[2, 2, 2] = 1  # a corner in 3D: 26-connectivity
    assert len(np.unique(unet_weight_map(labels3d)[labels3d == 0])) == 1


def test_the_ignore_label_gets_no_weight_and_counts_in_no_class() -> None:
    labels = two_squares()
    labels[:, 17:] = 4  # ignored: 36 voxels
    weights = unet_weight_map(labels, ignore_label=4)
    assert not weights[:, 17:].any()
    background = 204 / (2 * 172)  # N = 240 - 36, background 208 - 36
    assert weights[4, 8] == pytest.approx(background + border(3, 3), rel=1e-6)
    labels[:, 6:11] = 4  # the gap ignored too (96 voxels in all): no object, the squares stay two
    weights = unet_weight_map(labels, ignore_label=4)
    assert weights[0, 0] == pytest.approx(144 / (2 * 112) + border(math.sqrt(8), math.sqrt(125)), rel=1e-6)


def test_negative_labels_are_background() -> None:
    labels = two_squares().astype(np.int16)
    labels[10:, :] = -1  # nnU-Net's outside-the-image label
    np.testing.assert_allclose(unet_weight_map(labels), unet_weight_map(np.maximum(labels, 0)))


def brute_force_weight_map(labels: np.ndarray, w0: float, sigma: float, ignore_label: int | None = None) -> np.ndarray:
    """The definition without truncation: every object's full distance field, the two smallest per voxel."""
    known = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    classes = np.where(labels > 0, labels, 0)
    weights = np.zeros(labels.shape)
    present = np.unique(classes[known])
    for c in present:
        weights[known & (classes == c)] = known.sum() / (len(present) * (known & (classes == c)).sum())
    objects, count = ndimage.label(known & (classes > 0), np.ones((3,) * labels.ndim))
    if count >= 2:
        distances = np.sort(np.stack([ndimage.distance_transform_edt(objects != i) for i in range(1, count + 1)]), 0)
        background = known & (classes == 0)
        weights[background] += w0 * np.exp(-((distances[0] + distances[1])[background] ** 2) / (2 * sigma ** 2))
    return weights


def random_objects(shape: tuple[int, ...], seed: int, count: int, classes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int16)
    for _ in range(count):
        corner = [rng.integers(0, s - 3) for s in shape]
        size = [rng.integers(1, 4) for _ in shape]
        labels[tuple(slice(c, c + s) for c, s in zip(corner, size))] = rng.integers(1, classes + 1)
    return labels


@pytest.mark.parametrize(("shape", "count"), [((40, 36), 8), ((50, 44), 20), ((14, 16, 12), 6)])
@pytest.mark.parametrize("sigma", [2.0, 5.0])
def test_equals_the_brute_force_definition_within_the_truncation_bound(shape, count: int, sigma: float) -> None:
    for seed in range(3):
        labels = random_objects(shape, seed, count)
        labels[0, :] = 3 if seed == 1 else labels[0, :]  # an ignored row in one case
        ignore = 3 if seed == 1 else None
        expected = brute_force_weight_map(labels, 10.0, sigma, ignore)
        for truncation in (1e-2, 1e-4):
            ours = unet_weight_map(labels, 10.0, sigma, ignore, truncation)
            assert np.abs(ours - expected).max() <= 10.0 * truncation + 1e-5
        np.testing.assert_allclose(unet_weight_map(labels, 10.0, sigma, ignore, truncation=1e-300), expected,
                                   rtol=1e-6, atol=1e-6)


def test_the_truncation_radius() -> None:
    assert border_radius(5.0, 1e-4) == pytest.approx(5.0 * math.sqrt(2 * math.log(1e4)))
    assert border(0, border_radius(5.0, 1e-4)) == pytest.approx(10 * 1e-4)


def test_hundreds_of_small_objects_weigh_the_gaps_between_neighbours() -> None:
    labels = np.zeros((256, 256), dtype=np.int16)
    labels[2::12, 2::12] = 1  # 22 x 22 = 484 objects of 2 x 2 voxels, 10 voxels apart
    labels[3::12, 2::12] = labels[2::12, 3::12] = labels[3::12, 3::12] = 1
    weights = unet_weight_map(labels)
    # in the 10-voxel gap between two neighbours in a row (columns 3 and 14): 5 from one, 6 from the other
    background = 256 ** 2 / (2 * (256 ** 2 - 4 * 484))
    assert weights[2, 9] == pytest.approx(background + border(5, 6), rel=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"w0": -1.0}, r"w0 must be a finite number >= 0 \(the paper: 10\)"),
    ({"sigma": 0.0}, r"sigma must be a finite number > 0 \(in voxels"),
    ({"sigma": -2.0}, "sigma must be a finite number > 0"),
    ({"truncation": 0.0}, r"truncation must lie in \(0, 1\)"),
])
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unet_weight_map(two_squares(), **kwargs)


def test_bad_labels() -> None:
    with pytest.raises(ValueError, match="integer class labels.*nearest-neighbour"):
        unet_weight_map(two_squares() + 0.5)
    with pytest.raises(ValueError, match=r"\(X, Y\) or \(X, Y, Z\)"):
        unet_weight_map(two_squares()[None, None])


# --------------------------------------------------------------------------- the two nearest objects' distances

NONE = 2**30  # two_nearest_squared_distances: no object within the radius


def brute_force_squared(objects: np.ndarray) -> np.ndarray:
    """(2, *shape): every voxel's two smallest squared distances to distinct objects (large where < 2 objects)."""
    count = int(objects.max())
    fields = [np.rint(ndimage.distance_transform_edt(objects != i) ** 2) for i in range(1, count + 1)]
    fields += [np.full(objects.shape, float(NONE))] * max(0, 2 - count)
    return np.sort(np.stack(fields), 0)


def touching_objects(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Labels 1..: ``count`` random seeds, each grown to its Voronoi cell, cells split by a one-voxel gap (many
    objects touching across thin background gaps, concave cells, cells crossing a line twice)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=bool)
    seeds[tuple(rng.integers(0, n, count) for n in shape)] = True
    _, nearest = ndimage.distance_transform_edt(~seeds, return_indices=True)
    owner = np.ravel_multi_index(tuple(nearest), shape)
    gap = ndimage.maximum_filter(owner, size=3) != ndimage.minimum_filter(owner, size=3)
    holes = rng.random(shape) < 0.3  # ragged cells, some split in several objects
    objects, _ = ndimage.label(~gap & ~holes, np.ones((3,) * len(shape)))
    return objects


def test_two_nearest_objects_known_by_construction() -> None:
    objects = np.zeros((3, 5, 21), dtype=np.int32)
    objects[1, 2, 0] = 1
    objects[1, 2, 10:12] = 2  # two voxels of object 2: the second-nearest is object 1, never object 2 again
    objects[0, 0, 20] = 3
    nearest, second = two_nearest_squared_distances(objects, 100.0)
    assert (nearest[1, 2, 4], second[1, 2, 4]) == (16, 36)  # 4 to object 1, 6 to object 2
    assert (nearest[1, 2, 13], second[1, 2, 13]) == (4, 1 + 4 + 49)  # 2 to object 2, (1, 2, 7) to object 3
    assert (nearest[1, 2, 10], second[1, 2, 10]) == (0, 100)  # on object 2: 0, then 10 to object 1
    # a U-shaped object around a second one: along the line, object 1 on both sides of object 2
    u_shape = np.zeros((7, 9), dtype=np.int32)
    u_shape[1:6, 1] = u_shape[1:6, 7] = u_shape[5, 1:8] = 1
    u_shape[2, 4] = 2
    nearest, second = two_nearest_squared_distances(u_shape, 50.0)
    assert (nearest[2, 3], second[2, 3]) == (1, 4)  # next to object 2; 2 to the left arm of object 1
    assert (nearest[2, 2], second[2, 2]) == (1, 4)
    np.testing.assert_array_equal(np.stack(two_nearest_squared_distances(u_shape, 1e6)), brute_force_squared(u_shape))


@pytest.mark.parametrize("shape", [(40, 36), (57, 9), (1, 40), (16, 14, 12), (30, 6, 11), (1, 1, 30), (5, 1, 20)])
def test_two_nearest_objects_equal_the_brute_force_on_touching_objects(shape: tuple[int, ...]) -> None:
    for seed, count in enumerate((1, 2, 3, 12, 40)):
        objects = touching_objects(shape, count, seed)
        expected = brute_force_squared(objects)
        for radius in (1e6, 2.5, 6.0):
            cap = min(math.floor(radius ** 2), sum((n - 1) ** 2 for n in shape))
            nearest, second = two_nearest_squared_distances(objects, radius)
            for ours, exact in ((nearest, expected[0]), (second, expected[1])):
                np.testing.assert_array_equal(ours, np.where(exact <= cap, exact, NONE))
            # asked only on some voxels: the second-nearest there, where the nearest is within radius / 2
            where = np.random.default_rng(seed).random(shape) < 0.6
            near, other = two_nearest_squared_distances(objects, radius, where)
            np.testing.assert_array_equal(near, nearest)
            asked = where & (nearest <= min(cap, math.floor(radius ** 2 / 4)))
            np.testing.assert_array_equal(other, np.where(asked, second, NONE))
        distances = two_nearest_object_distances(objects, int(objects.max()), 6.0)
        assert all(d.dtype == np.float32 for d in distances)
        np.testing.assert_allclose(distances[1], np.where(expected[1] <= 36, np.sqrt(expected[1]), np.inf), rtol=1e-6)


def test_no_or_one_object_has_no_second_distance() -> None:
    empty = np.zeros((6, 7, 5), dtype=np.int32)
    assert (np.stack(two_nearest_squared_distances(empty, 10.0)) == NONE).all()
    one = empty.copy()
    one[2, 3, 1] = 1
    nearest, second = two_nearest_squared_distances(one, 100.0)
    np.testing.assert_array_equal(nearest, brute_force_squared(one)[0])
    assert (second == NONE).all()


@pytest.mark.parametrize(("shape", "count"), [((60, 52), 30), ((45, 20), 12), ((18, 16, 14), 15), ((24, 8, 13), 9)])
def test_weight_map_on_many_touching_objects_is_within_the_bound(shape: tuple[int, ...], count: int) -> None:
    for seed in range(3):
        labels = (touching_objects(shape, count, seed) > 0).astype(np.int16)
        labels[labels.shape[0] // 2:][labels[labels.shape[0] // 2:] > 0] = 2  # a second class
        ignore = None
        if seed == 1:  # an ignored band (splits objects, hides gaps)
            labels[:, :2] = 5
            ignore = 5
        if seed == 2:  # nnU-Net's -1 outside the image: background
            labels[-3:] = -1
        expected = brute_force_weight_map(labels, 10.0, 3.0, ignore)
        for truncation in (1e-1, 1e-2, 1e-4):
            ours = unet_weight_map(labels, 10.0, 3.0, ignore, truncation)
            assert np.abs(ours - expected).max() <= 10.0 * truncation + 1e-5
        np.testing.assert_allclose(unet_weight_map(labels, 10.0, 3.0, ignore, 1e-300), expected, rtol=1e-6, atol=1e-6)


def test_weight_map_of_one_line() -> None:
    labels = np.zeros((1, 30), dtype=np.int16)
    labels[0, [3, 4, 12, 25]] = 1  # three objects on one line (the first axis' pass alone)
    np.testing.assert_allclose(unet_weight_map(labels, sigma=3.0, truncation=1e-300),
                               brute_force_weight_map(labels, 10.0, 3.0), rtol=1e-6, atol=1e-6)
    ours = unet_weight_map(labels, sigma=3.0, truncation=1e-2)
    assert np.abs(ours - brute_force_weight_map(labels, 10.0, 3.0)).max() <= 10.0 * 1e-2 + 1e-5
    np.testing.assert_allclose(ours[0, [3, 4, 12, 25]], 30 / (2 * 4))  # no border term on the objects


def test_label_dtypes_give_the_same_map() -> None:
    labels = two_squares()
    labels[8:, 14:] = 2
    expected = unet_weight_map(labels.astype(np.int64))
    for dtype in (np.uint8, np.int16, np.int32, np.float32, np.float64):
        np.testing.assert_array_equal(unet_weight_map(labels.astype(dtype)), expected)
    np.testing.assert_array_equal(unet_weight_map(labels > 0), unet_weight_map((labels > 0).astype(np.int16)))


def test_the_tabulated_border_term_equals_the_formula_inside_and_outside_the_table() -> None:
    nearest = np.array([0, 1, 4, 9, 30, 2, 115], dtype=np.int32)
    second = np.array([1, 2, 25, 400, 461, NONE, 115], dtype=np.int32)
    expected = np.full(7, 0.5, dtype=np.float32)
    for k in range(7):
        if second[k] < NONE:
            expected[k] = np.float32(0.5 + border(math.sqrt(nearest[k]), math.sqrt(second[k]), 10.0, 5.0))
    for rows, columns in ((116, 462), (3, 30), (1, 1)):  # every pair in the table, some, none
        out = np.full(7, 0.5, dtype=np.float32)
        _add_border_terms(out, nearest, second, 10.0, 5.0, rows, columns)
        np.testing.assert_allclose(out, expected, rtol=1e-7)
        assert out[5] == np.float32(0.5)  # no second object: no term


# --------------------------------------------------------------------------- the weighted cross entropy


def test_weighted_cross_entropy_equals_its_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 7, 6), generator=gen)
    weights = 5 * torch.rand(2, 1, 7, 6, generator=gen, dtype=torch.float64)
    ours_z, ref_z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = WeightedCrossEntropyLoss()(ours_z, labels, weights)
    ref = (weights[:, 0] * F.cross_entropy(ref_z, labels[:, 0], reduction="none")).mean()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_z.grad, ref_z.grad, rtol=1e-10, atol=1e-12)
    # uniform logits: CE = ln 3 everywhere
    uniform = WeightedCrossEntropyLoss()(torch.zeros(2, 3, 7, 6), labels, weights.float())
    assert uniform.item() == pytest.approx(weights.mean().item() * math.log(3), rel=1e-5)


def test_weighted_cross_entropy_leaves_out_the_ignore_label() -> None:
    logits, weights = torch.zeros(1, 2, 4, 4), torch.full((1, 1, 4, 4), 2.0)
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[0, 0, :2] = 7  # 8 of 16 voxels ignored
    logits[0, 1, :2] = float("nan")  # not even a NaN there counts
    loss = WeightedCrossEntropyLoss(ignore_label=7)(logits, labels, weights)
    assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-6)  # the mean over the 8 voxels that count


def test_weighted_cross_entropy_bad_input() -> None:
    logits, labels = torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)
    loss = WeightedCrossEntropyLoss()
    with pytest.raises(ValueError, match=r"weights must be shaped \(B, 1, \*spatial\)"):
        loss(logits, labels, torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="contains label 3 but the network has C=3"):
        loss(logits, labels + 3, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        loss(logits, labels, -torch.ones(1, 1, 4, 4))
