"""Combo loss (Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ
segmentation", Computerized Medical Imaging and Graphics 2019).

::

    loss = alpha * wCE + (1 - alpha) * (1 - Dice)
    wCE  = -mean[beta * t * ln(p) + (1 - beta) * (1 - t) * ln(1 - p)]

Multi-class, one-vs-rest over the foreground classes 1..C-1 (background excluded from both terms, as
nnU-Net excludes it from its Dice). beta > 0.5 penalises false negatives more, beta < 0.5 false
positives. ln(p) and ln(1 - p) are computed from the logits without forming 1 - p, so they stay exact
in float32 for saturated logits (see ``_log_p_and_log_not_p``).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_region_values,
    check_unit_interval,
)
from nnunet_ext.losses.prepare import as_float_logits


def _log_p_and_log_not_p(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ln(softmax) and ln(1 - softmax) along dim 1 of logits (B, C, *spatial); both (B, C, *spatial).

    ln(1 - p_c) = logsumexp_{k != c}(z_k) - logsumexp_k(z_k). Each "all but c" sum is shifted by the
    largest logit other than c (the overall max m1, or the runner-up m2 for the argmax class), so it is
    >= 1 and the subtraction below never cancels catastrophically: no -inf where p rounds to 1.
    """
    num_classes = logits.shape[1]
    m1, argmax = logits.max(1, keepdim=True)
    channel = torch.arange(num_classes, device=logits.device).view(1, num_classes, *([1] * (logits.ndim - 2)))
    is_max = channel == argmax
    others = logits.masked_fill(is_max, float("-inf"))
    m2 = others.max(1, keepdim=True).values  # finite: C >= 2

    shifted = torch.exp(logits - m1)
    total = shifted.sum(1, keepdim=True)  # >= 1
    lse = m1 + torch.log(total)
    log_p = logits - lse
    # For c != argmax the argmax term (= 1) stays in total - shifted_c. For the argmax the where() keeps
    # that unused branch at log(total) so its gradient cannot be inf * 0 = NaN.
    log_all_but_c = torch.where(
        is_max,
        m2 + torch.log(torch.exp(others - m2).sum(1, keepdim=True)),
        m1 + torch.log(total - torch.where(is_max, 0, shifted)),
    )
    return log_p, log_all_but_c - lse


class ComboLoss(ValueCheckOnce, nn.Module):
    """Combo loss ``alpha * wCE + (1 - alpha) * (1 - Dice)`` on nnU-Net's (logits, integer labels) pair.

    Args:
        alpha: weight of the weighted cross entropy; 1 - alpha weights the Dice term. In [0, 1].
        beta: weight of the false-negative side of the cross entropy (1 - beta: false positives).
            In [0, 1]; 0.5 gives half the plain binary cross entropy.
        batch_dice: sum the Dice over batch and spatial axes (one Dice per class) instead of one Dice
            per sample and class.
        smooth: added to numerator and denominator of the Dice.
        ignore_label: target voxels with this value (may be >= C) count in neither term.
        ddp: with batch_dice and an initialized process group, sum the Dice sums over all ranks
            (differentiably, one collective) before dividing, as nnU-Net's own Dice does.
        eps: the logs are clamped at ln(eps), i.e. p is clipped to [eps, 1 - eps] as in the paper.
            This bounds each voxel's term by -ln(eps) but gives voxels that are wrong with p < eps no
            cross-entropy gradient; eps=0 uses the exact (unbounded, always finite) logs. In [0, 0.5).
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, batch_dice: bool = False, smooth: float = 1e-5,
                 ignore_label: int | None = None, eps: float = 1e-7, ddp: bool = False) -> None:
        super().__init__()
        self.alpha = check_unit_interval(
            "alpha", alpha, "the weight of the cross-entropy term; 1 - alpha weights the Dice term")
        self.beta = check_unit_interval(
            "beta", beta, "beta > 0.5 penalises false negatives more, beta < 0.5 false positives")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 <= eps < 0.5:
            raise ValueError(f"eps must be a finite number in [0, 0.5) (p is clipped to [eps, 1 - eps] inside "
                             f"the logs; 0 disables the clipping), got {eps!r}")
        self.eps = float(eps)
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.ignore_label = ignore_label
        self.ddp = ddp

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, batch_dice={self.batch_dice}, smooth={self.smooth}, "
                f"ignore_label={self.ignore_label}, eps={self.eps}")

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``net_output`` (B, C, *spatial) and labels ``target`` (B, 1, *spatial).

        Returns a scalar (float32, or float64 for float64 logits); 0 for a perfect prediction.
        """
        check_logits_and_labels(net_output, target)
        self.check_values_once(check_label_values, target, net_output.shape[1], self.ignore_label)
        valid = None if self.ignore_label is None else target != self.ignore_label

        logits = as_float_logits(net_output)
        log_p, log_not_p = _log_p_and_log_not_p(logits)
        log_p, log_not_p = log_p[:, 1:], log_not_p[:, 1:]  # foreground classes only
        probs = torch.exp(log_p)
        log_p, log_not_p = self._clamped(log_p, log_not_p)

        num_classes = logits.shape[1]
        labels = target.long()
        if valid is not None:
            # Ignored voxels become background, which is on for no foreground class.
            labels = torch.where(valid, labels, 0)
        fg = torch.arange(1, num_classes, device=labels.device).view(1, num_classes - 1, *([1] * (labels.ndim - 2)))
        on_class = labels == fg  # (B, C - 1, *spatial), the one-hot target without background
        return self._combine(log_p, log_not_p, probs, on_class, valid)

    def _combine(self, log_p: torch.Tensor, log_not_p: torch.Tensor, probs: torch.Tensor, on_class: torch.Tensor,
                 valid: torch.Tensor | None) -> torch.Tensor:
        """alpha * wCE + (1 - alpha) * (1 - Dice) from the (clamped) logs, probabilities and binary target
        of the scored channels, all (B, K, *spatial); ``valid`` (B, 1, *spatial) or None."""
        # Weighted cross entropy, mean over valid voxels and scored channels.
        wce = -torch.where(on_class, self.beta * log_p, (1 - self.beta) * log_not_p)
        if valid is None:
            wce = wce.mean()
        else:
            wce = torch.where(valid, wce, 0).sum() / (valid.sum() * on_class.shape[1]).clamp(min=1)

        # Soft Dice per scored channel (and per sample unless batch_dice).
        if valid is not None:
            probs = torch.where(valid, probs, 0)
        axes = (0, *range(2, probs.ndim)) if self.batch_dice else tuple(range(2, probs.ndim))
        intersection = torch.where(on_class, probs, 0).sum(axes)
        pred_size = probs.sum(axes)
        true_size = on_class.sum(axes).to(probs.dtype)
        if self.batch_dice and self.ddp:
            intersection, pred_size, true_size = all_gather_sums(intersection, pred_size, true_size)
        dice = ((2 * intersection + self.smooth) / (pred_size + true_size + self.smooth)).mean()

        return self.alpha * wce + (1 - self.alpha) * (1 - dice)

    def _clamped(self, log_p: torch.Tensor, log_not_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.eps == 0:
            return log_p, log_not_p
        log_eps = math.log(self.eps)
        return log_p.clamp(min=log_eps), log_not_p.clamp(min=log_eps)


class RegionComboLoss(ComboLoss):
    """Combo loss for region-based training: sigmoid outputs, every region scored (no background channel).

    Per region r with p = sigmoid(z_r): ln p = -softplus(-z_r), ln(1 - p) = -softplus(z_r) (exact for
    saturated logits). Same arguments as ``ComboLoss`` except ``ignore_label`` (regions come without one here).
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, batch_dice: bool = False, smooth: float = 1e-5,
                 eps: float = 1e-7, ddp: bool = False) -> None:
        super().__init__(alpha=alpha, beta=beta, batch_dice=batch_dice, smooth=smooth, eps=eps, ddp=ddp)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for region logits (B, R, *spatial) and binary region masks of the same shape; a scalar."""
        check_logits_and_regions(net_output, target)
        self.check_values_once(check_region_values, target)
        logits = as_float_logits(net_output)
        probs = torch.sigmoid(logits)
        log_p, log_not_p = self._clamped(-F.softplus(-logits), -F.softplus(logits))
        return self._combine(log_p, log_not_p, probs, target.bool(), None)
