"""UNet 3+ hybrid loss (Huang et al., "UNet 3+: A Full-Scale Connected UNet for Medical Image
Segmentation", ICASSP 2020) for nnU-Net's multi-class (logits, integer labels) pair::

    loss = focal_weight * focal + ms_ssim_weight * (1 - MS-SSIM) + iou_weight * (1 - IoU)

* focal (Lin et al., ICCV 2017), multi-class on the softmax: the mean over valid voxels of
  ``-(1 - p_t)^gamma * ln p_t`` with p_t the probability of the true class (background included);
  gamma = 0 is the cross entropy.
* soft IoU: ``(sum p*t + smooth) / (sum (p + t - p*t) + smooth)`` per foreground class (and per
  sample unless batch_dice), averaged over the foreground classes (background excluded as in
  nnU-Net's Dice).
* MS-SSIM (see ``nnunet_ext.losses.ms_ssim``): between each foreground class's probability map and
  its one-hot map, per sample and class (batch_dice does not apply), averaged.

Ignored voxels (ignore_label) count in neither the focal mean nor the IoU sums. MS-SSIM is a
windowed statistic, so it cannot simply drop voxels: there, prediction and target are both set to 0
at ignored voxels (a masked SSIM is out of scope). The windows around ignored regions therefore still
compare the prediction next to them with an "edge" to 0 in both maps.
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_label_values,
    check_logits_and_labels,
    check_non_negative,
)
from nnunet_ext.losses.ms_ssim import ms_ssim
from nnunet_ext.losses.prepare import as_float_logits, class_index


def _prepare(net_output: torch.Tensor, target: torch.Tensor, ignore_label: int | None, check_values: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check (label values only with ``check_values``: a host sync); return float log-probabilities
    (B, C, *spatial), labels (B, 1, *spatial) with ignored voxels set to background (0), and the valid
    mask (B, 1, *spatial) or None."""
    check_logits_and_labels(net_output, target)
    if check_values:
        check_label_values(target, net_output.shape[1], ignore_label)
    valid = None if ignore_label is None else target != ignore_label
    labels = class_index(target if valid is None else torch.where(valid, target, 0), net_output.shape[1])
    return torch.log_softmax(as_float_logits(net_output), dim=1), labels, valid


def _foreground_maps(log_probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground probabilities and one-hot target, both (B, C - 1, *spatial), 0 at ignored voxels."""
    num_classes = log_probs.shape[1]
    probs = torch.exp(log_probs[:, 1:])
    if valid is not None:
        probs = torch.where(valid, probs, 0)
    fg = torch.arange(1, num_classes, device=labels.device).view(1, num_classes - 1, *([1] * (labels.ndim - 2)))
    # Ignored voxels carry label 0 here, which is on for no foreground class.
    return probs, (labels == fg).to(probs.dtype)


def _focal(log_probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None, gamma: float) -> torch.Tensor:
    log_pt = log_probs.gather(1, labels)  # (B, 1, *spatial)
    loss = -log_pt
    if gamma > 0:
        # 1 - p_t without cancellation near p_t = 1; the double where keeps the gradient of
        # (1 - p_t)^gamma finite (no inf * 0) where p_t rounds to exactly 1 and gamma < 1.
        q = -torch.expm1(log_pt)
        positive = q > 0
        loss = loss * torch.where(positive, torch.where(positive, q, 1) ** gamma, 0)
    if valid is None:
        return loss.mean()
    return torch.where(valid, loss, 0).sum() / valid.sum().clamp(min=1)


def _soft_iou(probs: torch.Tensor, onehot: torch.Tensor, batch_dice: bool, smooth: float,
              ddp: bool = False) -> torch.Tensor:
    axes = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    intersection = (probs * onehot).sum(axes)
    pred_size = probs.sum(axes)
    true_size = onehot.sum(axes)
    if batch_dice and ddp:
        intersection, pred_size, true_size = all_gather_sums(intersection, pred_size, true_size)
    iou = (intersection + smooth) / (pred_size + true_size - intersection + smooth)
    return 1 - iou.mean()


def focal_loss(net_output: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               ignore_label: int | None = None) -> torch.Tensor:
    """Multi-class focal loss of logits (B, C, *spatial) and labels (B, 1, *spatial); a scalar.

    Mean over the valid voxels of ``-(1 - p_t)^gamma * ln p_t``; gamma = 0 gives
    ``F.cross_entropy(net_output, target[:, 0], ignore_index=ignore_label)``. 0 if all voxels are ignored.
    """
    gamma = check_non_negative("gamma", gamma, "the focusing exponent; 0 gives the cross entropy")
    log_probs, labels, valid = _prepare(net_output, target, ignore_label)
    return _focal(log_probs, labels, valid, gamma)


def soft_iou_loss(net_output: torch.Tensor, target: torch.Tensor, batch_dice: bool = False, smooth: float = 1e-5,
                  ignore_label: int | None = None, ddp: bool = False) -> torch.Tensor:
    """``1 - mean soft IoU`` over the foreground classes (and samples unless batch_dice); a scalar in [0, 1].

    Logits (B, C, *spatial), labels (B, 1, *spatial); ignored voxels count in no sum. With batch_dice
    the sums run over batch and spatial axes (one IoU per class).
    """
    log_probs, labels, valid = _prepare(net_output, target, ignore_label)
    probs, onehot = _foreground_maps(log_probs, labels, valid)
    return _soft_iou(probs, onehot, batch_dice, smooth, ddp)


def ms_ssim_loss(net_output: torch.Tensor, target: torch.Tensor, ignore_label: int | None = None) -> torch.Tensor:
    """``1 - mean MS-SSIM`` between the foreground probability maps and one-hot maps; a scalar in [0, 1].

    Logits (B, C, *spatial) with 2 or 3 (or 1) spatial axes, labels (B, 1, *spatial). Ignored voxels
    are set to 0 in both maps before the MS-SSIM (see the module docstring).
    """
    log_probs, labels, valid = _prepare(net_output, target, ignore_label)
    probs, onehot = _foreground_maps(log_probs, labels, valid)
    return 1 - ms_ssim(probs, onehot).mean()


class HybridLoss(ValueCheckOnce, nn.Module):
    """UNet 3+ hybrid loss ``focal + (1 - MS-SSIM) + (1 - IoU)``, each term weighted, on logits and labels.

    Args:
        focal_weight, ms_ssim_weight, iou_weight: weights of the three terms, finite and >= 0, not all 0.
            A term with weight 0 is not computed.
        gamma: focal exponent (>= 0; 0 gives the cross entropy).
        batch_dice: one IoU per class over the whole batch instead of one per sample and class (as
            nnU-Net's batch Dice); the focal mean and the per-sample MS-SSIM are unaffected.
        smooth: added to numerator and denominator of the IoU.
        ignore_label: target voxels with this value (may be >= C) are excluded from the focal and IoU
            terms and set to 0 in both maps of the MS-SSIM.
        ddp: with batch_dice and an initialized process group, sum the IoU sums over all ranks
            (differentiably, one collective) before dividing, as nnU-Net's own Dice does.

    The labels' values are checked on the first call only (no device sync afterwards).
    """

    def __init__(self, focal_weight: float = 1.0, ms_ssim_weight: float = 1.0, iou_weight: float = 1.0,
                 gamma: float = 2.0, batch_dice: bool = False, smooth: float = 1e-5,
                 ignore_label: int | None = None, ddp: bool = False) -> None:
        super().__init__()
        self.focal_weight = check_non_negative("focal_weight", focal_weight, "the weight of the focal term")
        self.ms_ssim_weight = check_non_negative("ms_ssim_weight", ms_ssim_weight,
                                                  "the weight of the 1 - MS-SSIM term")
        self.iou_weight = check_non_negative("iou_weight", iou_weight, "the weight of the 1 - IoU term")
        if self.focal_weight == self.ms_ssim_weight == self.iou_weight == 0:
            raise ValueError("focal_weight, ms_ssim_weight and iou_weight are all 0: the loss would be constant; "
                             "give at least one term a positive weight")
        self.gamma = check_non_negative("gamma", gamma, "the focusing exponent; 0 gives the cross entropy")
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.ignore_label = ignore_label
        self.ddp = ddp

    def extra_repr(self) -> str:
        return (f"focal_weight={self.focal_weight}, ms_ssim_weight={self.ms_ssim_weight}, "
                f"iou_weight={self.iou_weight}, gamma={self.gamma}, batch_dice={self.batch_dice}, "
                f"smooth={self.smooth}, ignore_label={self.ignore_label}")

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``net_output`` (B, C, *spatial) and labels ``target`` (B, 1, *spatial).

        Returns a scalar (float32, or float64 for float64 logits), >= 0; 0 for a perfect prediction
        (up to the smoothing and the saturation of the softmax).
        """
        log_probs, labels, valid = _prepare(net_output, target, self.ignore_label, check_values=False)
        self.check_values_once(check_label_values, target, net_output.shape[1], self.ignore_label)
        terms = []
        if self.focal_weight > 0:
            terms.append(self.focal_weight * _focal(log_probs, labels, valid, self.gamma))
        if self.ms_ssim_weight > 0 or self.iou_weight > 0:
            probs, onehot = _foreground_maps(log_probs, labels, valid)
            if self.ms_ssim_weight > 0:
                terms.append(self.ms_ssim_weight * (1 - ms_ssim(probs, onehot).mean()))
            if self.iou_weight > 0:
                terms.append(self.iou_weight * _soft_iou(probs, onehot, self.batch_dice, self.smooth, self.ddp))
        return sum(terms[1:], terms[0])
