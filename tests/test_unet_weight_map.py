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
from nnunet_ext.losses.unet_weight_map import border_radius

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
