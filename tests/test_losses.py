"""Tests of nnunet_ext.losses on hand-made cases whose answers are known by construction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.losses import CompoundLoss, LossTerm, SoftSkeletonRecallLoss, TargetLayout
from nnunet_ext.losses.distributed import all_gather_sum

SMOOTH = 1e-5
BIG = 60.0  # softmax of +-BIG logits is 1/0 to far below float64 resolution of the checks


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def logits_for(prob_class: torch.Tensor, num_classes: int,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Logits (B, C, *spatial) putting probability ~1 on class ``prob_class`` (B, *spatial) per voxel."""
    one_hot = F.one_hot(prob_class.long(), num_classes).movedim(-1, 1).to(dtype)
    return (2 * one_hot - 1) * BIG


def recall(k: float, n: float) -> float:
    return (k + SMOOTH) / (n + SMOOTH)


# ---------------------------------------------------------------------------------------------------
# SoftSkeletonRecallLoss: values


def test_perfect_prediction_gives_minus_one() -> None:
    torch.manual_seed(0)
    skel = torch.randint(0, 4, (2, 1, 9, 11))
    labels = torch.randint(0, 4, (2, 9, 11))
    labels[skel[:, 0] > 0] = skel[:, 0][skel[:, 0] > 0]  # correct on the skeleton, anything elsewhere
    for batch_dice in (False, True):
        loss = SoftSkeletonRecallLoss(batch_dice=batch_dice)(logits_for(labels, 4, torch.float32), skel)
        assert loss.item() == pytest.approx(-1.0, abs=1e-4)


def _vessel_2d() -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """A 'Y' vessel skeleton of class 1 (trunk + two branches); prediction misses one branch."""
    skel = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    skel[0, 0, 8:16, 8] = 1  # trunk: 8 voxels
    for i in range(1, 6):
        skel[0, 0, 8 - i, 8 - i] = 1  # left branch: 5 voxels (predicted)
        skel[0, 0, 8 - i, 8 + i] = 1  # right branch: 5 voxels (missed)
    pred = (skel[:, 0] == 1).long()
    for i in range(1, 6):
        pred[0, 8 - i, 8 + i] = 0
    pred[0, 0, 0] = 1  # a false positive far away does not matter for recall
    return skel, pred, 13, 18


def test_missing_branch_2d() -> None:
    skel, pred, k, n = _vessel_2d()
    loss = SoftSkeletonRecallLoss()(logits_for(pred, 2), skel)
    assert loss.item() == pytest.approx(-recall(k, n), abs=1e-5)
    assert k / n < 0.75  # the missing branch is clearly penalised


def test_float_skeleton_and_low_precision_logits() -> None:
    skel, pred, k, n = _vessel_2d()
    for dtype in (torch.float16, torch.bfloat16):
        logits = logits_for(pred, 2, dtype)
        loss = SoftSkeletonRecallLoss()(logits, skel.float())
        assert loss.dtype == torch.float32  # softmax and sums are done in float32
        assert loss.item() == pytest.approx(-recall(k, n), abs=1e-5)


def test_missing_segment_3d() -> None:
    skel = torch.zeros(1, 1, 6, 7, 8, dtype=torch.uint8)
    skel[0, 0, 3, 3, :] = 1  # a tube along the last axis: 8 voxels
    skel[0, 0, 1:5, 3, 4] = 1  # a crossing one: +3 new voxels -> 11
    pred = skel[:, 0].clone()
    pred[0, 3, 3, 6:] = 0  # the tube's end (2 voxels) is missed
    loss = SoftSkeletonRecallLoss()(logits_for(pred, 2), skel)
    assert loss.item() == pytest.approx(-recall(9, 11), abs=1e-5)


def test_multiclass_mean_of_class_recalls() -> None:
    skel = torch.zeros(1, 1, 10, 10, dtype=torch.long)
    skel[0, 0, 2, 0:8] = 1  # class 1: 8 voxels
    skel[0, 0, 6, 0:4] = 2  # class 2: 4 voxels
    pred = skel[:, 0].clone()
    pred[0, 2, 0:2] = 2  # class 1: 6 of 8 found (2 called class 2)
    pred[0, 6, 0:3] = 0  # class 2: 1 of 4 found
    loss = SoftSkeletonRecallLoss()(logits_for(pred, 3), skel)
    assert loss.item() == pytest.approx(-(recall(6, 8) + recall(1, 4)) / 2, abs=1e-5)


def _two_sample_batch() -> tuple[torch.Tensor, torch.Tensor]:
    skel = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    skel[0, 0, 1, 0:4] = 1  # sample 0: 4 voxels, 1 found
    skel[1, 0, 5, 0:8] = 1  # sample 1: 8 voxels, 8 found
    pred = skel[:, 0].clone()
    pred[0, 1, 1:4] = 0
    return logits_for(pred, 2), skel


def test_batch_dice_vs_per_sample() -> None:
    logits, skel = _two_sample_batch()
    per_sample = SoftSkeletonRecallLoss(batch_dice=False)(logits, skel)
    batch = SoftSkeletonRecallLoss(batch_dice=True)(logits, skel)
    assert per_sample.item() == pytest.approx(-(recall(1, 4) + recall(8, 8)) / 2, abs=1e-5)  # ~ -0.625
    assert batch.item() == pytest.approx(-recall(9, 12), abs=1e-5)  # 0.75


def test_ignore_label_voxels_do_not_count() -> None:
    skel, pred, k, n = _vessel_2d()
    skel[0, 0, 3, 13] = 7  # one missed voxel of the right branch becomes "ignore"
    skel[0, 0, 0, 0:5] = 7  # and some voxels elsewhere, predicted background or vessel
    loss = SoftSkeletonRecallLoss(ignore_label=7)(logits_for(pred, 2), skel)
    assert loss.item() == pytest.approx(-recall(k, n - 1), abs=1e-5)


def test_ignore_label_inside_class_range() -> None:
    skel = torch.zeros(1, 1, 6, 6, dtype=torch.long)
    skel[0, 0, 0, :] = 1
    skel[0, 0, 3, :] = 2  # class 2 ignored entirely -> counted as absent (recall 1)
    pred = torch.zeros(1, 6, 6, dtype=torch.long)
    pred[0, 0, :3] = 1
    loss = SoftSkeletonRecallLoss(ignore_label=2)(logits_for(pred, 3), skel)
    assert loss.item() == pytest.approx(-(recall(3, 6) + 1.0) / 2, abs=1e-5)


def test_absent_class_gives_recall_one_and_zero_gradient() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    skel = torch.zeros(2, 1, 5, 6, dtype=torch.long)
    for batch_dice in (False, True):
        loss = SoftSkeletonRecallLoss(batch_dice=batch_dice)(logits, skel)
        assert loss.item() == pytest.approx(-1.0, abs=1e-12)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(grad).all() and (grad == 0).all()

    # Class 2 absent, class 1 present: the loss is the class-1 term averaged with a constant 1.
    skel[0, 0, 2, 1:5] = 1
    loss = SoftSkeletonRecallLoss()(logits, skel)
    p1 = torch.softmax(logits, 1)[0, 1, 2, 1:5]
    r = (p1.sum().item() + SMOOTH) / (4 + SMOOTH)
    # Terms (sample 0: class 1, class 2; sample 1: class 1, class 2) = (r, 1, 1, 1).
    assert loss.item() == pytest.approx(-(r + 3) / 4, abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# SoftSkeletonRecallLoss: gradients


@pytest.mark.parametrize("batch_dice", [False, True])
def test_gradcheck(batch_dice: bool) -> None:
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    skel = torch.randint(0, 3, (2, 1, 4, 5))
    skel[0, 0, 0, 0] = 9
    loss = SoftSkeletonRecallLoss(batch_dice=batch_dice, smooth=1e-3, ignore_label=9)
    assert torch.autograd.gradcheck(lambda x: loss(x, skel), (logits,))


def test_gradient_only_on_skeleton_voxels_of_samples_with_skeleton() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    skel = torch.zeros(3, 1, 7, 7, dtype=torch.long)
    skel[0, 0, 3, :] = 1
    skel[2, 0, :, 2] = 2
    skel[2, 0, 0, 0] = 5  # ignored
    for batch_dice in (False, True):
        loss = SoftSkeletonRecallLoss(batch_dice=batch_dice, ignore_label=5)(logits, skel)
        (grad,) = torch.autograd.grad(loss, logits)
        on_skel = ((skel > 0) & (skel != 5)).expand_as(grad)
        assert (grad[~on_skel] == 0).all()
        assert (grad[1] == 0).all()  # sample without skeleton
        assert (grad[on_skel] != 0).all()
        # Raising the logit of the skeleton's own class lowers the loss.
        own = grad.gather(1, torch.where(skel == 5, 0, skel))
        assert (own[(skel > 0) & (skel != 5)] < 0).all()


# ---------------------------------------------------------------------------------------------------
# SoftSkeletonRecallLoss: bad inputs


def _ok_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long)


def test_error_net_output_not_3d() -> None:
    with pytest.raises(ValueError, match=r"at least 3 dims"):
        SoftSkeletonRecallLoss()(torch.zeros(2, 3), torch.zeros(2, 1))


def test_error_single_channel_output() -> None:
    with pytest.raises(ValueError, match=r"C >= 2"):
        SoftSkeletonRecallLoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize("shape", [(2, 4, 4), (2, 2, 4, 4), (1, 1, 4, 4), (2, 1, 4, 5)])
def test_error_skeleton_shape(shape: tuple[int, ...]) -> None:
    logits, _ = _ok_inputs()
    with pytest.raises(ValueError, match=r"skeleton must be shaped \(B, 1, \*spatial\)"):
        SoftSkeletonRecallLoss()(logits, torch.zeros(shape))


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_error_non_integer_skeleton(bad: float) -> None:
    logits, skel = _ok_inputs()
    skel = skel.float()
    skel[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=r"non-integer"):
        SoftSkeletonRecallLoss()(logits, skel)


@pytest.mark.parametrize("bad", [3, 4, -1])
def test_error_label_out_of_range(bad: int) -> None:
    logits, skel = _ok_inputs()
    skel[0, 0, 1, 1] = bad
    with pytest.raises(ValueError) as info:
        SoftSkeletonRecallLoss(ignore_label=10)(logits, skel)
    msg = str(info.value)
    assert f"label {bad}" in msg and "C=3" in msg and "< 3" in msg and "dataset.json" in msg


def test_ignore_label_outside_class_range_is_accepted() -> None:
    logits, skel = _ok_inputs()
    skel[0, 0, 1, 1] = 3  # == C, as in nnU-Net where the ignore label is the last label
    assert torch.isfinite(SoftSkeletonRecallLoss(ignore_label=3)(logits, skel))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])  # (-inf: a probability of 0, finite)
def test_non_finite_net_output_on_the_skeleton_gives_a_non_finite_loss(bad: float) -> None:
    logits, skel = _ok_inputs()
    skel[1, 0, 3, 0] = 2
    logits[1, 2, 3, 0] = bad
    assert not torch.isfinite(SoftSkeletonRecallLoss()(logits, skel))  # as nnU-Net's loss: no exception


# ---------------------------------------------------------------------------------------------------
# CompoundLoss


class LabelCE(nn.Module):
    """Cross-entropy of logits (B, C, *spatial) against labels (B, 1, *spatial)."""

    def forward(self, net_output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net_output, labels[:, 0].long())


def _compound_inputs(seed: int = 4, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    logits = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, size, size))
    skel = torch.where(torch.rand(2, 1, size, size) < 0.3, labels, torch.zeros_like(labels))
    return logits, torch.cat([labels, skel], 1).double()


def test_compound_equals_weighted_sum() -> None:
    logits, target = _compound_inputs()
    ce, sr = LabelCE(), SoftSkeletonRecallLoss()
    loss = CompoundLoss([LossTerm(ce, 1.0, "labels"), LossTerm(sr, 2.5, "skeleton")])
    expected = ce(logits, target[:, 0:1]) + 2.5 * sr(logits, target[:, 1:2])
    value = loss(logits, target)
    assert value.item() == pytest.approx(expected.item(), abs=1e-12)
    (g1,) = torch.autograd.grad(value, logits)
    (g2,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(g1, g2)


def test_compound_registers_submodules_and_repr() -> None:
    sr = SoftSkeletonRecallLoss()
    loss = CompoundLoss([LossTerm(LabelCE()), LossTerm(sr, 0.5, "skeleton")])
    assert any(m is sr for m in loss.modules())
    assert "1 * LabelCE(labels) + 0.5 * SoftSkeletonRecallLoss(skeleton)" in repr(loss)
    assert loss.terms[1] == LossTerm(sr, 0.5, "skeleton")
    assert loss.layout == TargetLayout([("labels", 1), ("skeleton", 1)])  # the default: channel 0, channel 1
    assert (loss.layout.slice("labels"), loss.layout.slice("skeleton")) == (slice(0, 1), slice(1, 2))


def test_compound_zero_weight_term_is_skipped() -> None:
    logits, target = _compound_inputs()
    loss = CompoundLoss([LossTerm(LabelCE()), LossTerm(SoftSkeletonRecallLoss(), 0.0, "skeleton")])
    # Weight 0 on the skeleton term: a labels-only target is fine.
    assert loss(logits, target[:, :1]).item() == pytest.approx(LabelCE()(logits, target[:, :1]).item())


def test_compound_missing_skeleton_channel() -> None:
    logits, target = _compound_inputs()
    loss = CompoundLoss([LossTerm(LabelCE()), LossTerm(SoftSkeletonRecallLoss(), 1.0, "skeleton")])
    with pytest.raises(ValueError, match=r"no skeleton channel: add nnunet_ext.transforms.SkeletonTransform"):
        loss(logits, target[:, :1])


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), "heavy"])
def test_loss_term_invalid_weight(weight: object) -> None:
    with pytest.raises(ValueError, match=r"weight must be a finite number >= 0"):
        LossTerm(LabelCE(), weight, "labels")  # type: ignore[arg-type]


def test_loss_term_invalid_target_and_loss() -> None:
    with pytest.raises(ValueError, match=r"target must be one of \['distance', 'labels', 'skeleton', 'weights'\]"):
        LossTerm(LabelCE(), 1.0, "skeletons")
    with pytest.raises(ValueError, match=r"target must be one of .*'skeletons'"):
        LossTerm(LabelCE(), 1.0, ("labels", "skeletons"))
    with pytest.raises(TypeError, match=r"nn.Module"):
        LossTerm(F.cross_entropy, 1.0, "labels")  # type: ignore[arg-type]


def test_compound_needs_terms() -> None:
    with pytest.raises(ValueError, match=r"at least one LossTerm"):
        CompoundLoss([])
    with pytest.raises(ValueError, match=r"weight > 0"):
        CompoundLoss([LossTerm(LabelCE(), 0.0)])


def test_compound_per_scale_under_deep_supervision() -> None:
    logits, target = _compound_inputs(size=8)
    ce, sr = LabelCE(), SoftSkeletonRecallLoss(batch_dice=True)
    loss = CompoundLoss([LossTerm(ce, 1.0, "labels"), LossTerm(sr, 3.0, "skeleton")])
    # Scales as nnU-Net makes them: outputs from the network, targets downsampled by nearest neighbour.
    outputs = [logits, F.avg_pool2d(logits, 2), F.avg_pool2d(logits, 4)]
    targets = [target, target[:, :, ::2, ::2], target[:, :, ::4, ::4]]
    scale_weights = [4 / 7, 2 / 7, 1 / 7]

    total = sum(w * loss(o, t) for w, o, t in zip(scale_weights, outputs, targets))
    expected = sum(w * (ce(o, t[:, :1]) + 3.0 * sr(o, t[:, 1:2]))
                   for w, o, t in zip(scale_weights, outputs, targets))
    assert total.item() == pytest.approx(expected.item(), abs=1e-12)
    (g1,) = torch.autograd.grad(total, logits, retain_graph=True)  # the pooled outputs are shared
    (g2,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(g1, g2)


# ---------------------------------------------------------------------------------------------------
# DDP


def test_all_gather_sum_without_process_group_is_identity() -> None:
    t = torch.arange(3.0)
    assert all_gather_sum(t) is t
