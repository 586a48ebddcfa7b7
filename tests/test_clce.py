"""clCE against its definition: the cross entropy weighted by clDice soft skeletons, written in the test the
straightforward way (nnU-Net-style cross entropy, max-pool soft skeleton on every channel), and hand-built cases
with known answers (uniform predictions, the ignore label's denominator, batch_dice, perfect predictions).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnunet_ext.data.synthetic import vessel_tree
from nnunet_ext.losses import ClCELoss
from tests.reference_cldice import reference_soft_skeleton

BIG = 60.0

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def straightforward_clce(logits: torch.Tensor, labels: torch.Tensor, iterations: int, batch_dice: bool,
                         ignore_label: int | None = None) -> torch.Tensor:
    """(sum CE * sum_c skel(T_c) + sum CE * sum_c skel(P_c)) / labelled voxels, per sample or over the batch."""
    num_classes = logits.shape[1]
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_label is None else labels != ignore_label
    target = torch.where(valid, labels, 0)[:, 0]
    ce = F.cross_entropy(logits, target, reduction="none") * valid[:, 0]
    probs = torch.softmax(logits, 1) * valid
    onehot = F.one_hot(target, num_classes).movedim(-1, 1).to(logits.dtype) * valid
    skel_pred = reference_soft_skeleton(probs, iterations)[:, 1:].sum(1)
    skel_true = reference_soft_skeleton(onehot, iterations)[:, 1:].sum(1)
    per_sample = (ce * (skel_true + skel_pred)).flatten(1).sum(1)
    count = valid.flatten(1).sum(1).to(logits.dtype)
    if batch_dice:
        return per_sample.sum() / count.sum()
    return (per_sample / count).mean()


def vessel_case(shape: tuple[int, ...], classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.stack([vessel_tree(shape, seed=seed + b, n_classes=classes - 1) for b in range(2)]).astype(np.int64)
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


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize(("shape", "classes", "seed"), [((40, 36), 3, 0), ((40, 36), 2, 1), ((16, 18, 14), 4, 2)])
def test_equals_the_straightforward_formulation(shape: tuple[int, ...], classes: int, seed: int, batch_dice: bool,
                                                ignore: bool) -> None:
    logits, labels = vessel_case(shape, classes, seed)
    ignore_label = classes + 1 if ignore else None
    if ignore:
        labels[1, 0, : shape[0] // 2] = ignore_label
    ours = ClCELoss(iterations=3, batch_dice=batch_dice, ignore_label=ignore_label)
    value, grad = value_and_grad(ours, logits, labels)
    expected, expected_grad = value_and_grad(
        lambda z, y: straightforward_clce(z, y, 3, batch_dice, ignore_label), logits, labels)
    assert expected > 0.01
    torch.testing.assert_close(value, expected, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=1e-7)
    assert expected_grad.abs().max() > 1e-4


def test_the_gradient_flows_through_the_predicted_skeleton_too() -> None:
    logits, labels = vessel_case((30, 28), 2, 3)
    _, grad = value_and_grad(ClCELoss(), logits, labels)

    def skeleton_detached(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(z, y[:, 0], reduction="none")
        probs = torch.softmax(z, 1)
        weight = reference_soft_skeleton(F.one_hot(y[:, 0], 2).movedim(-1, 1).double(), 3)[:, 1]
        weight = weight + reference_soft_skeleton(probs.detach(), 3)[:, 1]
        return (ce * weight).mean()

    _, grad_without = value_and_grad(skeleton_detached, logits, labels)
    assert (grad - grad_without).abs().max() > 1e-4


def _lines(shape: tuple[int, int] = (12, 20)) -> torch.Tensor:
    """(1, 1, 12, 20) labels: a one-voxel line of class 1 on row 3 and of class 2 on row 8 (20 voxels each)."""
    labels = torch.zeros(1, 1, *shape, dtype=torch.long)
    labels[0, 0, 3], labels[0, 0, 8] = 1, 2
    return labels


def test_a_uniform_prediction_costs_log_c_on_the_true_skeleton() -> None:
    # CE = log 3 everywhere, the uniform prediction has an empty soft skeleton, each line is its own skeleton
    labels = _lines()
    loss = ClCELoss()(torch.zeros(1, 3, 12, 20), labels)
    torch.testing.assert_close(loss, torch.tensor(math.log(3) * 40 / 240))


def test_ignored_voxels_count_in_no_mean_and_batch_dice_pools_the_counts() -> None:
    labels = _lines()
    labels[0, 0, 6:] = 9  # the class-2 line and half the voxels are ignored
    single = ClCELoss(ignore_label=9)(torch.zeros(1, 3, 12, 20), labels)
    torch.testing.assert_close(single, torch.tensor(math.log(3) * 20 / 120))
    batch = torch.cat([labels, _lines()])  # sample 0: 20 skeleton voxels / 120 labelled; sample 1: 40 / 240
    per_sample = ClCELoss(ignore_label=9)(torch.zeros(2, 3, 12, 20), batch)
    pooled = ClCELoss(ignore_label=9, batch_dice=True)(torch.zeros(2, 3, 12, 20), batch)
    torch.testing.assert_close(per_sample, torch.tensor(math.log(3) * (20 / 120 + 40 / 240) / 2))
    torch.testing.assert_close(pooled, torch.tensor(math.log(3) * 60 / 360))
    everything_ignored = torch.full_like(labels, 9)
    assert ClCELoss(ignore_label=9)(torch.zeros(1, 3, 12, 20), everything_ignored) == 0


def test_ignored_voxels_carry_no_gradient_and_change_nothing() -> None:
    logits, labels = vessel_case((30, 28), 3, 5)
    labels[:, :, :10] = 7
    loss = ClCELoss(ignore_label=7)
    value, grad = value_and_grad(loss, logits, labels)
    changed = logits.clone()
    changed[:, :, :10] = torch.randn(changed[:, :, :10].shape, dtype=changed.dtype)
    value2, grad2 = value_and_grad(loss, changed, labels)
    torch.testing.assert_close(value2, value)
    torch.testing.assert_close(grad2, grad)
    assert (grad[:, :, :10] == 0).all() and grad.abs().max() > 1e-4
    changed[0, 1, 2, 3] = float("nan")
    torch.testing.assert_close(loss(changed, labels), value)


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 14)])
def test_a_perfect_prediction_costs_nothing(shape: tuple[int, ...]) -> None:
    labels = torch.from_numpy(vessel_tree(shape, seed=1, n_classes=2).astype(np.int64))[None, None]
    logits = BIG * F.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    assert ClCELoss()(logits, labels) == 0
    assert ClCELoss()(-logits, labels) > 0.1  # confidently wrong everywhere: CE = 60 + log 2 on the skeletons


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_upcast(dtype: torch.dtype) -> None:
    logits, labels = vessel_case((24, 20), 3, 6)
    half = logits.to(dtype)
    loss = ClCELoss()(half, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ClCELoss()(half.float(), labels))


def test_bad_arguments_are_refused() -> None:
    for iterations in (0, True, 2.0):
        with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
            ClCELoss(iterations=iterations)
    with pytest.raises(ValueError, match="2D or 3D"):
        ClCELoss()(torch.zeros(1, 2, 8), torch.zeros(1, 1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="contains label 5 but the network has C=3"):
        ClCELoss()(torch.zeros(1, 3, 8, 8), torch.full((1, 1, 8, 8), 5))
