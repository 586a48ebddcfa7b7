"""cbDice against its definition: the paper's set formulas written per map in the test (scipy's distance transform,
the max-pool soft skeleton), and hand-built cases with known answers (shifted tubes, thin next to thick vessels,
perfect predictions, empty classes, the ignore label).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from nnunet_ext.data.synthetic import vessel_tree
from nnunet_ext.losses import CbDiceLoss
from tests.reference_cldice import reference_soft_skeleton

BIG = 60.0  # softmax of +-BIG logits is exactly 1/0 in float32

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# ------------------------------------------------------------------------------------------------
# the definition, map by map


def _map_weights(mask: np.ndarray, iterations: int) -> dict[str, np.ndarray]:
    """Skeleton S, normalised distance D_N, radius R_N and inverse radius I of one binary map (paper's notation)."""
    skeleton = reference_soft_skeleton(torch.from_numpy(mask)[None, None].double(), iterations)[0, 0].numpy() > 0.5
    distance = distance_transform_edt(mask) if (~mask).any() else np.full(mask.shape, np.inf)
    radius = np.where(skeleton, distance, 0.0)
    r_max = max(radius.max(), 1.0)
    inverse = np.where(skeleton, (r_max - radius + 1) / r_max, 0.0) ** (2 if mask.ndim == 3 else 1)
    return {"S": skeleton, "D": np.minimum(distance, r_max) / r_max, "R": radius / r_max, "I": inverse}


def _paper_sums(p: torch.Tensor, hard: np.ndarray, true: np.ndarray, iterations: int) -> torch.Tensor:
    """The four sums of Tprec and Tsens for one map, written as the paper's set formulas:
    ``Tprec = |Q_sp Q_vl| / (|Q_sp Q_spvp (U - S_L)| + |Q_sp Q_slvl|)``,
    ``Tsens = |Q_sl Q_vp| / (|Q_sl Q_slvl (U - S_P)| + |Q_sl Q_spvp|)``."""
    lw, pw = _map_weights(true, iterations), _map_weights(hard, iterations)
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    q_vl, q_slvl, q_sl = t(lw["D"]), t(lw["R"]), t(lw["I"])
    q_vp, q_spvp, q_sp = t(pw["D"]) * p, t(pw["R"]) * p, t(pw["I"]) * p
    not_sl, not_sp = t(~lw["S"]), t(~pw["S"])
    return torch.stack([(q_sp * q_vl).sum(), (q_sp * q_spvp * not_sl).sum() + (q_sp * q_slvl).sum(),
                        (q_sl * q_vp).sum(), (q_sl * q_slvl * not_sp).sum() + (q_sl * q_spvp).sum()])


def paper_cbdice_loss(logits: torch.Tensor, labels: torch.Tensor, iterations: int, smooth: float, batch_dice: bool,
                      ignore_label: int | None = None) -> torch.Tensor:
    """-mean cbDice over foreground classes, one class vs. the rest, every map on its own (float64)."""
    probs = torch.softmax(logits.double(), 1)
    hard = logits.argmax(1).numpy()
    lab = labels[:, 0].numpy()
    valid = np.ones_like(lab, dtype=bool) if ignore_label is None else lab != ignore_label
    sums = torch.stack([torch.stack([
        _paper_sums(torch.where(torch.from_numpy(valid[b]), probs[b, c], 0.0), (hard[b] == c) & valid[b],
                    (lab[b] == c) & valid[b], iterations)
        for c in range(1, logits.shape[1])]) for b in range(logits.shape[0])])  # (B, C - 1, 4)
    if batch_dice:
        sums = sums.sum(0)
    tprec = (sums[..., 0] + smooth) / (sums[..., 1] + smooth)
    tsens = (sums[..., 2] + smooth) / (sums[..., 3] + smooth)
    return -(2 * tprec * tsens / (tprec + tsens)).mean()


def vessel_case(shape: tuple[int, ...], classes: int, seed: int, blob: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (2, 1, *shape) of vessel trees (plus a thick blob of class 1) and logits: a noisy, blurred copy."""
    labels = np.stack([vessel_tree(shape, seed=seed + b, n_classes=classes - 1) for b in range(2)]).astype(np.int64)
    if blob:  # radius 6: deeper than the soft skeleton reaches with few iterations
        grid = np.indices(shape)
        centre = [s // 3 for s in shape]
        labels[0][sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 36] = 1
    labels = torch.from_numpy(labels)[:, None]
    onehot = F.one_hot(labels[:, 0], classes).movedim(-1, 1).double()
    pool = F.avg_pool2d if len(shape) == 2 else F.avg_pool3d
    noise = torch.randn(onehot.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return 6 * (pool(onehot, 3, 1, 1) - 0.4) + 1.5 * noise, labels


def value_and_grad(loss, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = logits.clone().requires_grad_(True)
    value = loss(z, labels)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


CASES = [((40, 36), 3, 0), ((40, 36), 2, 1), ((20, 18, 22), 3, 2), ((20, 18, 22), 2, 3)]


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize(("shape", "classes", "seed"), CASES)
def test_equals_the_paper_formulas_map_by_map(shape: tuple[int, ...], classes: int, seed: int, batch_dice: bool,
                                              ignore: bool) -> None:
    logits, labels = vessel_case(shape, classes, seed)
    ignore_label = classes if ignore else None
    if ignore:
        labels[1, 0, : shape[0] // 3] = ignore_label
    # 2 iterations: the distance cap (3 voxels) is below the blob's depth (6), so the cap is exercised
    ours = CbDiceLoss(iterations=2, smooth=1e-3, batch_dice=batch_dice, ignore_label=ignore_label)
    value, grad = value_and_grad(ours, logits, labels)
    expected, expected_grad = value_and_grad(
        lambda z, y: paper_cbdice_loss(z, y, 2, 1e-3, batch_dice, ignore_label), logits, labels)
    assert -1 < expected < -0.05
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad, expected_grad, atol=1e-8, rtol=1e-5)
    assert expected_grad.abs().max() > 1e-4


def test_the_reference_iterations_reach_thicker_vessels_than_few() -> None:
    # the default k = 10 finds the blob's centre (radius 6), k = 2 does not: different losses
    logits, labels = vessel_case((40, 36), 2, 0)
    few, default = CbDiceLoss(iterations=2)(logits, labels), CbDiceLoss()(logits, labels)
    assert CbDiceLoss().iterations == 10 and abs(few - default) > 1e-3
    torch.testing.assert_close(default, paper_cbdice_loss(logits, labels, 10, 1e-3, False), atol=1e-6,
                               rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# known answers


def _logits_of(masks: torch.Tensor) -> torch.Tensor:
    """Two-class logits (B, 2, ...) whose softmax is exactly the bool masks (B, 1, ...)."""
    return torch.cat([torch.zeros(masks.shape), torch.where(masks, BIG, -BIG)], 1)


@pytest.mark.parametrize("half_width", [1, 2, 3])
def test_a_tube_shifted_by_one_voxel_scores_r_over_r_plus_1(half_width: int) -> None:
    # a horizontal band of half-width h (radius r = h + 1 on its centre line), predicted one row lower: the
    # predicted skeleton sits where the true distance map is h / (h + 1), and vice versa
    true = torch.zeros(1, 1, 16, 20, dtype=torch.bool)
    true[0, 0, 8 - half_width: 9 + half_width] = True
    pred = true.roll(1, dims=2)
    loss = CbDiceLoss(smooth=0.0)(_logits_of(pred), true.long())
    r = half_width + 1
    torch.testing.assert_close(loss, torch.tensor(-(r - 1) / r))


@pytest.mark.parametrize(("dim", "expected"), [(2, 2 / 3), (3, 2 / 5)])
def test_a_missed_thin_vessel_counts_as_much_as_the_thick_one_it_runs_beside(dim: int, expected: float) -> None:
    # a one-voxel vessel and a thick one (half-width 2, radius 3) of the same class; the prediction has the thick
    # one only. Tprec = 1; Tsens: both centre lines weigh sum(I * R_N) = 1/3 per voxel in 2D (I_thin = 1,
    # R_thin = 1/3; I_thick = 1/3, R_thick = 1), so Tsens = 1/2, cbDice = 2/3. In 3D I is squared:
    # Tsens = (1/9) / (1/3 + 1/9) = 1/4, cbDice = 2/5.
    shape = (18, 16) if dim == 2 else (18, 11, 9)
    true = torch.zeros(1, 1, *shape, dtype=torch.bool)
    thick = torch.zeros_like(true)
    if dim == 2:
        true[0, 0, 3] = True
        thick[0, 0, 10:15] = True
    else:
        true[0, 0, 3, 5] = True
        thick[0, 0, 10:15, 3:8] = True
    loss = CbDiceLoss(smooth=0.0)(_logits_of(thick), (true | thick).long())
    torch.testing.assert_close(loss, torch.tensor(-expected))


def test_the_loss_is_not_bounded_below_by_minus_one() -> None:
    # a target filling the patch has no skeleton: Tsens = 1, Tprec >= 1, the loss in (-2, -1], -1 only when perfect
    full = torch.ones(1, 1, 16, 16, dtype=torch.long)
    logits = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    value = CbDiceLoss()(logits, full)
    assert value.item() == pytest.approx(-1.4727, abs=1e-4)
    torch.testing.assert_close(value.double(), paper_cbdice_loss(logits.double(), full, 10, 1e-3, False),
                               rtol=1e-6, atol=1e-6)
    assert CbDiceLoss()(_logits_of(full.bool()), full).item() == -1.0
    # both ratios above 1: a thin prediction off the centre of a thick target vessel, and a thick prediction around
    # a thin target vessel, off its centre
    target, predicted = torch.zeros(2, 1, 48, 48, dtype=torch.bool)
    target[0, 4:17, 2:46] = target[0, 30, 2:46] = True
    predicted[0, 8, 2:46] = predicted[0, 25:38, 2:46] = True
    value = CbDiceLoss()(_logits_of(predicted[None]), target[None].long())
    assert value.item() == pytest.approx(-2.8376, abs=1e-4)
    torch.testing.assert_close(value.double(), paper_cbdice_loss(_logits_of(predicted[None]).double(),
                                                                 target[None].long(), 10, 1e-3, False),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(36, 30), (16, 14, 18)])
def test_a_perfect_prediction_and_an_absent_class_score_minus_one(shape: tuple[int, ...]) -> None:
    labels = torch.from_numpy(np.stack([vessel_tree(shape, seed=s, n_classes=2) for s in (3, 4)]).astype(np.int64))
    logits = BIG * F.one_hot(labels, 4).movedim(-1, 1).float()  # class 3: in neither target nor prediction
    for batch_dice in (False, True):
        loss = CbDiceLoss(batch_dice=batch_dice)(logits, labels[:, None])
        torch.testing.assert_close(loss, torch.tensor(-1.0))
    # a confident but wrong class-2 prediction is penalised
    wrong = logits.clone()
    wrong[:, 2] = wrong[:, 1]
    wrong[:, 1] = 0
    assert CbDiceLoss()(wrong, labels[:, None]) > -0.6


def test_ignored_voxels_carry_no_gradient_and_change_nothing() -> None:
    logits, labels = vessel_case((30, 28), 3, 5)
    labels[:, :, :10] = 7
    loss = CbDiceLoss(iterations=3, ignore_label=7)
    value, grad = value_and_grad(loss, logits, labels)
    changed = logits.clone()
    changed[:, :, :10] = torch.randn(changed[:, :, :10].shape, dtype=changed.dtype)
    value2, grad2 = value_and_grad(loss, changed, labels)
    torch.testing.assert_close(value2, value)
    torch.testing.assert_close(grad2, grad)
    assert (grad[:, :, :10] == 0).all() and grad.abs().max() > 1e-4
    changed[0, 1, 2, 3] = float("nan")  # (its gradient is NaN through the softmax, as in nnU-Net's CE)
    torch.testing.assert_close(loss(changed, labels), value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_upcast(dtype: torch.dtype) -> None:
    logits, labels = vessel_case((24, 20), 3, 6)
    half = logits.to(dtype)
    torch.testing.assert_close(CbDiceLoss()(half, labels), CbDiceLoss()(half.float(), labels))


def test_bad_arguments_are_refused() -> None:
    for iterations in (0, True, 2.0):
        with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
            CbDiceLoss(iterations=iterations)
    with pytest.raises(ValueError, match="2D or 3D"):
        CbDiceLoss()(torch.zeros(1, 2, 8), torch.zeros(1, 1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must be shaped \(B, 1, \*spatial\)"):
        CbDiceLoss()(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8, dtype=torch.long))
