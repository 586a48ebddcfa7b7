"""Hausdorff DT loss (Karimi & Salcudean): hand-computed cases, the fields against scipy and the brute-force
definition, the loss against a straightforward formulation (values and gradients), and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from nnunet_ext.distance import boundary_distance, boundary_distance_field, class_boundary_distances
from nnunet_ext.losses import HausdorffDTLoss, RegionHausdorffDTLoss
from nnunet_ext.losses.hausdorff_dt import patch_diagonal, scale_spacing
from tests.test_distance_transform import CountMinima

BIG = 60.0  # softmax of +-BIG logits is 0/1 far below float64 resolution

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def hard_logits(classes: np.ndarray, num_classes: int) -> torch.Tensor:
    """(1, C, *spatial) float64 logits with probability ~1 on ``classes`` (X, Y[, Z])."""
    one_hot = F.one_hot(torch.from_numpy(classes).long(), num_classes).movedim(-1, 0)[None].double()
    return (2 * one_hot - 1) * BIG


def as_labels(classes: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(classes)[None, None].long()


# --------------------------------------------------------------------------- hand-computed cases


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    x, y = np.indices(shape)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2


def test_a_disc_with_one_false_positive_and_one_false_negative() -> None:
    truth = disc((15, 15), (7, 7), 3).astype(np.int64)
    predicted = truth.copy()
    predicted[14, 7] = 1  # false positive: 4 from the disc's nearest voxel (10, 7); 1 from its own boundary
    predicted[7, 7] = 0  # false negative at the centre: sqrt(10) to the nearest outside voxel (10, 8), 1 to (8, 7)
    loss = HausdorffDTLoss()(hard_logits(predicted, 2), as_labels(truth))
    # each wrong voxel: (p - g)^2 (d_g^2 + d_p^2): 1 * (16 + 1) and 1 * (10 + 1); mean over the 225 voxels
    assert loss.item() == pytest.approx((17 + 11) / 225, abs=1e-12)
    assert HausdorffDTLoss()(hard_logits(truth, 2), as_labels(truth)).item() == pytest.approx(0, abs=1e-12)


def two_squares(gap_axis_spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Truth: a 3x3 square at rows 2-4, cols 2-4 of an 8x16 image; prediction: it and a second one at cols 10-12."""
    truth = np.zeros((8, 16), dtype=np.int64)
    truth[2:5, 2:5] = 1
    predicted = truth.copy()
    predicted[2:5, 10:13] = 1
    return truth, predicted


@pytest.mark.parametrize(("spacing", "expected_sum"), [
    # d_g of the spurious square's columns 10, 11, 12: 6, 7, 8 (to column 4), on 3 rows: 3 * (36 + 49 + 64) = 447;
    # d_p: 1 on its 8 rim voxels, 2 at its centre: 8 + 4 = 12
    ((1.0, 1.0), 447 + 12),
    # columns 2 mm apart: d_g 12, 14, 16 -> 3 * (144 + 196 + 256) = 1788; d_p: 1 on the top and bottom rows
    # (rows 1 mm apart), 2 on the middle row (two rows or one column away): 6 * 1 + 3 * 4 = 18
    ((1.0, 2.0), 1788 + 18),
])
def test_two_squares_at_a_known_distance(spacing: tuple[float, float], expected_sum: float) -> None:
    truth, predicted = two_squares()
    loss = HausdorffDTLoss(spacing=spacing)(hard_logits(predicted, 2), as_labels(truth))
    assert loss.item() == pytest.approx(expected_sum / 128, abs=1e-12)


def test_alpha_and_distance_scale() -> None:
    truth, predicted = two_squares()
    # alpha = 1: d_g 3 * (6 + 7 + 8) = 63, d_p 8 + 2 = 10; distances / 2 before the power
    loss = HausdorffDTLoss(alpha=1.0, distance_scale=2.0)(hard_logits(predicted, 2), as_labels(truth))
    assert loss.item() == pytest.approx((63 + 10) / 2 / 128, abs=1e-12)


def test_an_empty_class_adds_zero_and_counts_in_the_mean() -> None:
    truth, predicted = two_squares()
    # 3 outputs; class 2 absent from truth and prediction: its term is 0, the mean over classes halves the loss
    loss = HausdorffDTLoss()(hard_logits(predicted, 3), as_labels(truth))
    assert loss.item() == pytest.approx((447 + 12) / 128 / 2, abs=1e-12)
    # class 2 predicted (the spurious square) but absent from the truth: d_g = 0 (empty mask), only d_p counts
    predicted[2:5, 10:13] = 2
    loss = HausdorffDTLoss()(hard_logits(predicted, 3), as_labels(truth))
    class_1 = 0.0  # now exact
    class_2 = 12 / 128  # d_p of the square: 8 * 1 + 4
    assert loss.item() == pytest.approx((class_1 + class_2) / 2, abs=1e-12)


def test_the_ignore_label_is_left_out_and_is_no_boundary() -> None:
    truth, predicted = two_squares()
    labels = truth.copy()
    labels[:, 14:] = 3  # ignore: no error there, and not counted in the mean
    predicted[0, 15] = 1  # a wrong prediction on an ignored voxel costs nothing
    loss = HausdorffDTLoss(ignore_label=3)(hard_logits(predicted, 2), as_labels(labels))
    # d_p of the spurious square unchanged; (0, 15) is ignored; 112 voxels count
    assert loss.item() == pytest.approx((447 + 12) / 112, abs=1e-12)


# --------------------------------------------------------------------------- the fields


def brute_force_boundary_distance(mask: np.ndarray, spacing: tuple[float, ...],
                                  unknown: np.ndarray | None = None) -> np.ndarray:
    """The definition: inside voxels to the nearest known outside voxel, outside voxels to the nearest inside one."""
    unknown = np.zeros_like(mask) if unknown is None else unknown
    inside, outside = mask & ~unknown, ~mask & ~unknown
    out = np.zeros(mask.shape)
    if not inside.any() or not outside.any():
        return out
    for source, target in ((inside, outside), (outside, inside)):
        sources = np.argwhere(source)
        targets = np.argwhere(target) * np.asarray(spacing)
        distance = np.sqrt(((sources[:, None, :] * np.asarray(spacing) - targets[None]) ** 2).sum(-1)).min(1)
        out[tuple(sources.T)] = distance
    return out


@pytest.mark.parametrize(("shape", "spacing"), [((9, 11), (1.0, 1.0)), ((6, 7, 5), (2.0, 0.7, 1.3))])
@pytest.mark.parametrize("with_unknown", [False, True])
def test_fields_equal_the_brute_force_definition_in_numpy_and_torch(shape, spacing, with_unknown: bool) -> None:
    rng = np.random.default_rng(len(shape) + with_unknown)
    for _ in range(3):
        mask = rng.random(shape) < 0.3
        unknown = (rng.random(shape) < 0.15) if with_unknown else None
        expected = brute_force_boundary_distance(mask, spacing, unknown)
        ours = boundary_distance_field(mask, spacing, unknown)
        np.testing.assert_allclose(ours, expected, atol=1e-5)
        mask_t = torch.from_numpy(mask)[None, None]
        unknown_t = None if unknown is None else torch.from_numpy(unknown)[None, None]
        np.testing.assert_allclose(boundary_distance(mask_t, spacing, unknown=unknown_t)[0, 0].numpy(), expected,
                                   atol=1e-5)


def test_class_fields_equal_scipy_per_class() -> None:
    labels = np.random.default_rng(3).integers(0, 4, (20, 18, 9))
    spacing = (0.8, 0.8, 2.5)
    fields = class_boundary_distances(labels, [1, 2, 3], spacing)
    assert fields.shape == (3, 20, 18, 9) and fields.dtype == np.float32
    for k, c in enumerate((1, 2, 3)):
        mask = labels == c
        expected = distance_transform_edt(mask, sampling=spacing) + distance_transform_edt(~mask, sampling=spacing)
        np.testing.assert_allclose(fields[k], expected, rtol=1e-6)
    assert not class_boundary_distances(labels, [7], spacing).any()  # an absent class: 0 everywhere


# --------------------------------------------------------------------------- against a straightforward formulation


def straightforward_loss(logits: torch.Tensor, labels: np.ndarray, spacing: tuple[float, ...], alpha: float,
                         batch_dice: bool, ignore_label: int | None = None) -> torch.Tensor:
    """The definition with scipy fields and loops over samples and classes (float64)."""
    probs = torch.softmax(logits, 1)
    terms, counts = [], []
    for b in range(logits.shape[0]):
        known = np.ones(labels.shape[2:], bool) if ignore_label is None else labels[b, 0] != ignore_label
        unknown = None if ignore_label is None else ~known
        sample_terms, sample_counts = [], []
        for c in range(1, logits.shape[1]):
            truth = (labels[b, 0] == c) & known
            predicted = (probs[b, c] > 0.5).numpy()
            d_g = brute_force_boundary_distance(truth, spacing, unknown)
            d_p = brute_force_boundary_distance(predicted, spacing)
            weight = torch.from_numpy(d_g ** alpha + d_p ** alpha)
            term = (probs[b, c] - torch.from_numpy(truth).double()) ** 2 * weight * torch.from_numpy(known)
            sample_terms.append(term.sum())
            sample_counts.append(float(known.sum()))
        terms.append(torch.stack(sample_terms))
        counts.append(torch.tensor(sample_counts, dtype=torch.float64))
    terms, counts = torch.stack(terms), torch.stack(counts)
    if batch_dice:
        return (terms.sum(0) / counts.sum(0)).mean()
    return (terms / counts).mean()


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize(("shape", "spacing", "alpha"), [((2, 4, 9, 8), (1.0, 1.0), 2.0),
                                                         ((2, 3, 5, 6, 4), (2.0, 1.0, 0.5), 1.5)])
def test_equals_the_straightforward_definition_with_gradients(shape, spacing, alpha: float, batch_dice: bool) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    logits = 2 * torch.randn(shape, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen)
    labels[0, 0].view(-1)[:5] = 9  # the ignore label
    ours_z, ref_z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    loss = HausdorffDTLoss(alpha=alpha, spacing=spacing, batch_dice=batch_dice, ignore_label=9)
    ours = loss(ours_z, labels)
    ref = straightforward_loss(ref_z, labels.numpy(), spacing, alpha, batch_dice, ignore_label=9)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_z.grad, ref_z.grad, rtol=1e-6, atol=1e-9)
    assert ref_z.grad.abs().max() > 1e-3
    # with the ground-truth fields given (as the data pipeline delivers them), the same value
    fields = np.stack([class_boundary_distances(labels[b, 0].numpy(), range(1, shape[1]), spacing, 9)
                       for b in range(shape[0])])
    torch.testing.assert_close(loss(logits, labels, torch.from_numpy(fields)), ref.detach(), rtol=1e-6, atol=1e-7)


def test_coarser_deep_supervision_outputs_use_their_own_voxel_size() -> None:
    spacing, patch = (1.0, 3.0), (16, 12)
    assert scale_spacing(spacing, patch, (8, 6)) == (2.0, 6.0)
    assert scale_spacing(spacing, patch, (16, 12)) == spacing
    assert patch_diagonal((1.0, 3.0), (4, 1)) == 5.0
    truth, predicted = two_squares()
    coarse = HausdorffDTLoss(spacing=(0.5, 0.5), patch_size=(16, 32))  # this 8 x 16 output: voxels of 1 x 1
    assert coarse(hard_logits(predicted, 2), as_labels(truth)).item() == pytest.approx((447 + 12) / 128, abs=1e-12)


def test_a_3d_step_runs_few_edt_chunks() -> None:
    loss = HausdorffDTLoss()
    loss(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4, dtype=torch.long))  # the label check, on the host
    logits = torch.zeros(2, 3, 128, 128, 128, device="meta")  # shapes only
    labels = torch.zeros(2, 1, 128, 128, 128, dtype=torch.long, device="meta")
    with CountMinima() as with_fields:
        loss(logits, labels, torch.zeros(2, 2, 128, 128, 128, device="meta"))
    with CountMinima() as without:
        loss(logits, labels)
    # the prediction's fields (and the truth's when not given): 16 chunks per class and axis (before: 256 and 512)
    assert (with_fields.count, without.count) == (64, 128)


def test_region_form_equals_the_softmax_form_on_each_region() -> None:
    gen = torch.Generator().manual_seed(7)
    regions = torch.rand(2, 2, 10, 9, generator=gen) < 0.35
    logits = 3 * torch.randn(2, 2, 10, 9, generator=gen, dtype=torch.float64)
    loss = RegionHausdorffDTLoss(spacing=(1.0, 2.0))(logits, regions)
    softmax = HausdorffDTLoss(spacing=(1.0, 2.0))
    per_region = [softmax(torch.cat([torch.zeros_like(logits[:, r:r + 1]), logits[:, r:r + 1]], 1),
                          regions[:, r:r + 1].long()) for r in range(2)]
    torch.testing.assert_close(loss, torch.stack(per_region).mean(), rtol=1e-10, atol=1e-12)
    fields = torch.from_numpy(np.stack([[boundary_distance_field(m, (1.0, 2.0)) for m in sample]
                                        for sample in regions.numpy()]))
    torch.testing.assert_close(RegionHausdorffDTLoss(spacing=(1.0, 2.0))(logits, regions, fields), loss,
                               rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), "two"])
def test_alpha_must_be_positive(alpha) -> None:
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0 \(the paper uses 2\)"):
        HausdorffDTLoss(alpha=alpha)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"distance_scale": 0}, "distance_scale must be a finite number > 0"),
    ({"spacing": (1.0, -1.0)}, "every spacing value must be a finite number > 0"),
    ({"spacing": (1.0, 1.0), "patch_size": (8, 8, 8)}, "one value per spatial axis"),
])
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HausdorffDTLoss(**kwargs)


def test_bad_inputs_name_the_fix() -> None:
    logits, labels = torch.zeros(1, 3, 6, 6), torch.zeros(1, 1, 6, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"must be shaped \(B, 1, \*spatial\)"):
        HausdorffDTLoss()(logits, torch.zeros(1, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="contains label 3 but the network has C=3"):
        HausdorffDTLoss()(logits, labels + 3)
    with pytest.raises(ValueError, match="non-integer values"):
        HausdorffDTLoss()(logits, labels + 0.5)
    with pytest.raises(ValueError, match=r"one field per foreground class, shaped \(1, 2\)"):
        HausdorffDTLoss()(logits, labels, torch.zeros(1, 3, 6, 6))
    with pytest.raises(ValueError, match="finite distances >= 0"):
        HausdorffDTLoss()(logits, labels, torch.full((1, 2, 6, 6), -1.0))
    with pytest.raises(ValueError, match="spatial shape"):
        HausdorffDTLoss(spacing=(1.0, 1.0, 1.0))(logits, labels)
    with pytest.raises(ValueError, match="one field per region"):
        RegionHausdorffDTLoss()(logits, labels.expand(1, 3, 6, 6), torch.zeros(1, 2, 6, 6))


def test_every_field_option_is_exact_on_tiny_masks() -> None:
    """All 2^9 masks of a 3x3 image: torch and numpy fields equal the definition."""
    for bits in itertools.product([False, True], repeat=9):
        mask = np.array(bits).reshape(3, 3)
        expected = brute_force_boundary_distance(mask, (1.0, 1.0))
        np.testing.assert_allclose(boundary_distance_field(mask), expected, atol=1e-6)
        np.testing.assert_allclose(boundary_distance(torch.from_numpy(mask)[None, None])[0, 0].numpy(), expected,
                                   atol=1e-6)
