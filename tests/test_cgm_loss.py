"""ClassificationGuidedLoss (UNet 3+'s CGM term) on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_ext.losses.classification_guided import ClassificationGuidedLoss, patch_contains_foreground


class ConstantLoss(torch.nn.Module):
    def forward(self, output, target):
        return torch.tensor(0.25)


def labels_with(foreground_per_sample: list[bool], value: int = 1) -> torch.Tensor:
    labels = torch.zeros(len(foreground_per_sample), 1, 4, 5, dtype=torch.long)
    for i, fg in enumerate(foreground_per_sample):
        if fg:
            labels[i, 0, 2, 3] = value
    return labels


def test_patch_contains_foreground_ignores_ignore_label_and_negative_labels() -> None:
    labels = labels_with([True, False, True])
    labels[1, 0, 0, 0] = -1  # nnU-Net's outside-the-mask label
    labels[2, 0, 2, 3] = 3  # only the ignore label
    assert patch_contains_foreground(labels, ignore_label=3).tolist() == [True, False, False]
    assert patch_contains_foreground(labels).tolist() == [True, False, True]


def test_zero_logits_give_ln2_per_output() -> None:
    logits = torch.zeros(3, 2)
    loss = ClassificationGuidedLoss(ConstantLoss(), lambda: logits, weight=2.0)
    assert loss(None, labels_with([True, False, True])).item() == pytest.approx(0.25 + 2 * math.log(2))


def test_confident_right_and_wrong_classifications() -> None:
    target = labels_with([True, False])
    right = torch.tensor([[-20.0, 20.0], [20.0, -20.0]])
    loss_right = ClassificationGuidedLoss(ConstantLoss(), lambda: right)(None, target)
    assert loss_right.item() == pytest.approx(0.25, abs=1e-7)
    loss_wrong = ClassificationGuidedLoss(ConstantLoss(), lambda: -right)(None, target)
    assert loss_wrong.item() == pytest.approx(0.25 + 20.0, rel=1e-6)  # BCE of a logit 20 on the wrong side


def test_deep_supervision_list_uses_the_full_resolution_target_and_gradients_flow() -> None:
    logits = torch.zeros(2, 2, requires_grad=True)
    full = labels_with([True, False])
    coarse = torch.zeros(2, 1, 2, 2, dtype=torch.long)  # lost the foreground voxel when downsampled
    loss = ClassificationGuidedLoss(ConstantLoss(), lambda: logits)(None, [full, coarse])
    loss.backward()
    # d/dz BCE(sigmoid(z), y) / 4 elements = (sigmoid(0) - y) / 4
    expected = torch.tensor([[0.5, -0.5], [-0.5, 0.5]]) / 4
    torch.testing.assert_close(logits.grad, expected)


def test_missing_classification_logits() -> None:
    with pytest.raises(RuntimeError, match="cgm=True"):
        ClassificationGuidedLoss(ConstantLoss(), lambda: None)(None, labels_with([True]))


def test_wrong_logits_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        ClassificationGuidedLoss(ConstantLoss(), lambda: torch.zeros(2, 3))(None, labels_with([True, False]))


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan"), True, "1"])
def test_bad_weight(bad: object) -> None:
    with pytest.raises(ValueError, match="weight"):
        ClassificationGuidedLoss(ConstantLoss(), lambda: None, weight=bad)
