"""Tests of ComboLoss on hand-made cases whose answers are known by construction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_ext.losses.combo import ComboLoss

S = 1e-5  # the default Dice smoothing


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def logits_from_probs(probs: list[list[float]], shape: tuple[int, ...]) -> torch.Tensor:
    """float64 logits (1, C, *shape) whose softmax is ``probs`` (one row of C probabilities per voxel)."""
    p = torch.tensor(probs, dtype=torch.float64)  # (voxels, C)
    return p.log().T.reshape(1, p.shape[1], *shape)


# A 2x2 image with 3 classes: probabilities per voxel (rows) and labels.
PROBS = [[0.7, 0.2, 0.1],
         [0.1, 0.6, 0.3],
         [0.2, 0.3, 0.5],
         [0.1, 0.5, 0.4]]
LABELS = [0, 1, 2, 2]


def small_case() -> tuple[torch.Tensor, torch.Tensor]:
    return logits_from_probs(PROBS, (2, 2)), torch.tensor(LABELS).reshape(1, 1, 2, 2)


def hand_dice_loss() -> float:
    # class 1: intersection 0.6, sum p = 0.2+0.6+0.3+0.5 = 1.6, |t| = 1
    # class 2: intersection 0.5+0.4 = 0.9, sum p = 0.1+0.3+0.5+0.4 = 1.3, |t| = 2
    dice1 = (2 * 0.6 + S) / (1.6 + 1 + S)
    dice2 = (2 * 0.9 + S) / (1.3 + 2 + S)
    return 1 - (dice1 + dice2) / 2


def hand_wce(beta: float) -> float:
    fn_side = -(math.log(0.6) + math.log(0.5) + math.log(0.4))  # t = 1: class 1 at v1, class 2 at v2, v3
    fp_side = -(math.log(1 - 0.2) + math.log(1 - 0.3) + math.log(1 - 0.5)  # class 1 at v0, v2, v3
                + math.log(1 - 0.1) + math.log(1 - 0.3))  # class 2 at v0, v1
    return (beta * fn_side + (1 - beta) * fp_side) / 8  # 4 voxels x 2 foreground classes


# ---------------------------------------------------------------------------------------------------
# Values


def test_alpha_zero_is_one_minus_dice() -> None:
    logits, target = small_case()
    loss = ComboLoss(alpha=0.0, beta=0.3)(logits, target)
    assert loss.item() == pytest.approx(hand_dice_loss(), abs=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_alpha_one_is_weighted_cross_entropy(beta: float) -> None:
    logits, target = small_case()
    loss = ComboLoss(alpha=1.0, beta=beta)(logits, target)
    assert loss.item() == pytest.approx(hand_wce(beta), abs=1e-12)


def test_alpha_between_is_the_convex_combination() -> None:
    logits, target = small_case()
    loss = ComboLoss(alpha=0.3, beta=0.7)(logits, target)
    assert loss.item() == pytest.approx(0.3 * hand_wce(0.7) + 0.7 * hand_dice_loss(), abs=1e-12)


@pytest.mark.parametrize("ignore_label", [None, 4])
def test_beta_half_is_half_the_binary_cross_entropy(ignore_label: int | None) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6) * 2
    target = torch.randint(0, 4, (2, 1, 5, 6))
    if ignore_label is not None:
        target[:, :, :2] = ignore_label
    loss = ComboLoss(alpha=1.0, beta=0.5, ignore_label=ignore_label)(logits, target)

    keep = torch.ones(2, 5, 6, dtype=torch.bool) if ignore_label is None else target[:, 0] != ignore_label
    probs = torch.softmax(logits, 1).movedim(1, -1)[keep][:, 1:]  # (valid voxels, foreground classes)
    onehot = F.one_hot(target[:, 0][keep], 4)[:, 1:].float()
    assert loss.item() == pytest.approx(0.5 * F.binary_cross_entropy(probs, onehot).item(), abs=1e-6)


def _fn_and_fp_cases() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Binary, 3 voxels; the last one is a false negative (t=1, p=0.1) or false positive (t=0, p=0.9)."""
    shared = [[0.2, 0.8], [0.8, 0.2]]  # a true positive and a true negative, labels 1 and 0
    fn = logits_from_probs([*shared, [0.9, 0.1]], (3,)), torch.tensor([[[1, 0, 1]]])
    fp = logits_from_probs([*shared, [0.1, 0.9]], (3,)), torch.tensor([[[1, 0, 0]]])
    return fn, fp


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_beta_trades_false_negatives_against_false_positives(beta: float) -> None:
    fn, fp = _fn_and_fp_cases()
    loss = ComboLoss(alpha=1.0, beta=beta)
    fn_loss, fp_loss = loss(*fn).item(), loss(*fp).item()
    # The shared voxels cost the same in both cases; the odd voxel costs beta resp. 1 - beta times -ln(0.1).
    assert fn_loss - fp_loss == pytest.approx((2 * beta - 1) * math.log(10) / 3, abs=1e-12)
    if beta > 0.5:
        assert fn_loss > fp_loss
    elif beta < 0.5:
        assert fp_loss > fn_loss


def test_batch_dice_sums_over_the_batch() -> None:
    # Binary, two samples of two voxels: sample 0 has p1 = (0.9, 0.2) for t = (1, 0); sample 1 has no
    # foreground and p1 = (0.4, 0.3).
    logits = torch.cat([logits_from_probs([[0.1, 0.9], [0.8, 0.2]], (2,)),
                        logits_from_probs([[0.6, 0.4], [0.7, 0.3]], (2,))])
    target = torch.tensor([[[1, 0]], [[0, 0]]])
    per_sample = ComboLoss(alpha=0.0, batch_dice=False)(logits, target).item()
    batch = ComboLoss(alpha=0.0, batch_dice=True)(logits, target).item()
    dice0 = (2 * 0.9 + S) / (1.1 + 1 + S)
    dice1 = (0 + S) / (0.7 + 0 + S)
    assert per_sample == pytest.approx(1 - (dice0 + dice1) / 2, abs=1e-12)
    assert batch == pytest.approx(1 - (2 * 0.9 + S) / (1.8 + 1 + S), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_perfect_prediction_gives_zero(alpha: float, batch_dice: bool) -> None:
    torch.manual_seed(1)
    target = torch.randint(0, 3, (2, 1, 4, 5, 6))
    target[:, :, 0, 0, :3] = torch.tensor([0, 1, 2])  # every class present in every sample
    logits = 25.0 * F.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    loss = ComboLoss(alpha=alpha, batch_dice=batch_dice)(logits, target)
    assert loss.dtype == torch.float32
    assert 0 <= loss.item() < 1e-6


@pytest.mark.parametrize("eps", [1e-7, 0.0])
@pytest.mark.parametrize("wrong", [False, True])
def test_saturated_logits_give_finite_loss_and_gradient(eps: float, wrong: bool) -> None:
    torch.manual_seed(2)
    target = torch.randint(0, 3, (2, 1, 6, 7))
    predicted = (target[:, 0] + 1) % 3 if wrong else target[:, 0]
    logits = (1e4 * (2 * F.one_hot(predicted, 3).movedim(-1, 1).float() - 1)).requires_grad_()
    loss = ComboLoss(eps=eps)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    if not wrong:
        assert loss.item() < 1e-6
    elif eps == 0:
        # Exact logs: a confidently wrong voxel still gets a cross-entropy gradient.
        assert logits.grad.abs().amax() > 1e-3


@pytest.mark.parametrize("gap", [5.0, 30.0, 80.0])
def test_log_of_one_minus_p_is_exact_in_float32(gap: float) -> None:
    # Foreground logit `gap` above background on true-background voxels: with beta = 0 the loss is
    # -ln(1 - p1) = softplus(gap), which 1 - p in float32 would round to -ln(0) = inf beyond gap ~17.
    logits = torch.tensor([0.0, gap]).view(1, 2, 1).expand(1, 2, 3).contiguous()
    loss = ComboLoss(alpha=1.0, beta=0.0, eps=0.0)(logits, torch.zeros(1, 1, 3, dtype=torch.long))
    assert loss.item() == pytest.approx(gap + math.log1p(math.exp(-gap)), rel=1e-6)


def test_eps_clips_the_probabilities() -> None:
    logits = torch.tensor([0.0, 80.0]).view(1, 2, 1)
    loss = ComboLoss(alpha=1.0, beta=0.0, eps=1e-3)(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(-math.log(1e-3), rel=1e-6)


def test_float_target_with_integer_values_is_accepted() -> None:
    torch.manual_seed(3)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    loss = ComboLoss()
    assert loss(logits, target.float()).item() == loss(logits, target).item()


def test_half_precision_logits_are_computed_in_float32() -> None:
    torch.manual_seed(4)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    low = ComboLoss()(logits.bfloat16(), target)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ComboLoss()(logits.bfloat16().float(), target).item(), abs=1e-7)


# ---------------------------------------------------------------------------------------------------
# ignore_label


@pytest.mark.parametrize("ignore_label", [3, 2])  # == C (no output channel, nnU-Net's case) and < C
@pytest.mark.parametrize("batch_dice", [False, True])
def test_ignored_voxels_change_nothing(ignore_label: int, batch_dice: bool) -> None:
    torch.manual_seed(5)
    num_classes = 3
    target = torch.randint(0, 2, (2, 1, 5, 5))
    target[:, :, :, 3:] = ignore_label
    ignored = (target == ignore_label).expand(-1, num_classes, -1, -1)
    logits = torch.randn(2, num_classes, 5, 5, dtype=torch.float64, requires_grad=True)
    loss_fn = ComboLoss(alpha=0.4, beta=0.7, batch_dice=batch_dice, ignore_label=ignore_label)

    loss = loss_fn(logits, target)
    loss.backward()
    assert (logits.grad[ignored] == 0).all()
    assert (logits.grad[~ignored] != 0).any()

    changed = torch.where(ignored, 100 * torch.randn_like(logits), logits.detach())
    assert loss_fn(changed, target).item() == loss.item()

    # Same as the loss on the crop that holds only the valid voxels, without ignore_label.
    cropped = ComboLoss(alpha=0.4, beta=0.7, batch_dice=batch_dice)(logits[..., :3], target[..., :3])
    assert loss.item() == pytest.approx(cropped.item(), abs=1e-12)


def test_all_voxels_ignored_gives_dice_of_empty_classes() -> None:
    target = torch.full((1, 1, 3, 3), 3)
    logits = torch.randn(1, 3, 3, 3, requires_grad=True)
    loss = ComboLoss(ignore_label=3)(logits, target)
    loss.backward()
    assert loss.item() == 0.0  # wCE over no voxels is 0, Dice of empty classes is smooth / smooth = 1
    assert (logits.grad == 0).all()


# ---------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore_label", [None, 4])
def test_gradcheck(batch_dice: bool, ignore_label: int | None) -> None:
    torch.manual_seed(6)
    logits = (3 * torch.randn(2, 4, 3, 3, 2, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, 4, (2, 1, 3, 3, 2))
    if ignore_label is not None:
        target[0, 0, 0] = ignore_label
    loss_fn = ComboLoss(alpha=0.6, beta=0.7, batch_dice=batch_dice, ignore_label=ignore_label)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, target), (logits,))


# ---------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("name", ["alpha", "beta"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5"])
def test_alpha_and_beta_outside_unit_interval_are_rejected(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a finite number in \[0, 1\].*got {value!r}"):
        ComboLoss(**{name: value})


@pytest.mark.parametrize("value", [-1e-3, 0.5, float("nan")])
def test_bad_eps_is_rejected(value: float) -> None:
    with pytest.raises(ValueError, match=r"eps must be .* \[0, 0.5\)"):
        ComboLoss(eps=value)


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (2, 3), (3,)])
def test_bad_logits_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\).*C >= 2"):
        ComboLoss()(torch.zeros(shape), torch.zeros(2, 1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("shape", [(2, 4, 4), (2, 3, 4, 4), (2, 1, 4, 5), (1, 1, 4, 4)])
def test_bad_target_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"target must be shaped \(B, 1, \*spatial\) = \(2, 1, 4, 4\)"):
        ComboLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_non_integer_target(bad: float) -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = bad
    with pytest.raises(ValueError, match="non-integer"):
        ComboLoss()(torch.zeros(1, 3, 4, 4), target)


@pytest.mark.parametrize(("bad", "ignore_label"), [(3, None), (-1, None), (5, 4), (3, 4)])
def test_label_out_of_range(bad: int, ignore_label: int | None) -> None:
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=rf"label {bad} but the network has C=3.*dataset\.json"):
        ComboLoss(ignore_label=ignore_label)(torch.zeros(1, 3, 4, 4), target)


def test_ignore_label_may_be_out_of_range() -> None:
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[0, 0, 0, 0] = 3
    assert torch.isfinite(ComboLoss(ignore_label=3)(torch.zeros(1, 3, 4, 4), target))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_give_a_non_finite_loss(bad: float) -> None:
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 1, 2, 2] = bad
    assert not torch.isfinite(ComboLoss()(logits, torch.zeros(1, 1, 4, 4, dtype=torch.long)))


def test_extra_repr() -> None:
    text = repr(ComboLoss(alpha=0.25, beta=0.75, batch_dice=True))
    assert "alpha=0.25" in text and "beta=0.75" in text and "batch_dice=True" in text
