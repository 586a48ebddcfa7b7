"""Soft clDice (Shit et al., CVPR 2021): topology-aware overlap of soft skeletons.

Per foreground class c, with soft skeletons from ``soft_skeletonize``::

    Tprec = (sum skel(P)*L + s) / (sum skel(P) + s)     # how much of the predicted skeleton lies in L
    Tsens = (sum skel(L)*P + s) / (sum skel(L) + s)     # how much of the true skeleton P covers
    clDice = 2 Tprec Tsens / (Tprec + Tsens)

and the loss is ``1 - mean(clDice)`` over foreground classes (and over samples unless batch_dice).
Skeletons are computed for the foreground channels only, the target's without autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_iterations,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_region_values,
)
from nnunet_ext.losses.prepare import as_float_logits
from nnunet_ext.losses.soft_skeleton import soft_skeletonize


def _check_probabilities(probs: torch.Tensor, onehot: torch.Tensor, background_channel: bool) -> None:
    min_channels = 2 if background_channel else 1
    if probs.ndim not in (4, 5) or probs.shape[1] < min_channels:
        what = "C >= 2 (channel 0 = background)" if background_channel else "C >= 1 (one channel per region)"
        raise ValueError(f"probs must be (B, C, X, Y[, Z]) with {what}, got shape {tuple(probs.shape)}")
    if onehot.shape != probs.shape:
        what = "channel count" if onehot.shape[:1] + onehot.shape[2:] == probs.shape[:1] + probs.shape[2:] else "shape"
        raise ValueError(f"one-hot target {what} does not match the prediction: target {tuple(onehot.shape)}, "
                         f"prediction {tuple(probs.shape)}; the target needs one channel per network output "
                         f"(background included, unless region-based)")
    lo_p, hi_p, lo_t, hi_t = torch.stack([*torch.aminmax(probs.detach()), *torch.aminmax(onehot)]).double().tolist()
    if not (0 <= lo_p and hi_p <= 1):
        raise ValueError(f"soft_cldice expects probabilities in [0, 1], got values in [{lo_p:.3g}, {hi_p:.3g}]: "
                         f"these look like logits. Pass torch.softmax(logits, 1) (regions: torch.sigmoid), or "
                         f"use SoftClDiceLoss / RegionClDiceLoss, which take logits")
    if not (0 <= lo_t and hi_t <= 1):
        raise ValueError(f"the one-hot target must hold values in [0, 1], got [{lo_t:.3g}, {hi_t:.3g}]")


def cldice_of_scored_channels(pred: torch.Tensor, true: torch.Tensor, iterations: int, smooth: float,
                              batch_dice: bool, ddp: bool) -> torch.Tensor:
    """``1 - mean clDice`` of probability maps ``pred`` and targets ``true``, both (B, K, X, Y[, Z]), every
    channel scored; no checks, no device sync (the loss modules' hot path)."""
    skel_pred = soft_skeletonize(pred, iterations)
    with torch.no_grad():
        skel_true = soft_skeletonize(true, iterations)
    axes = (0, *range(2, pred.ndim)) if batch_dice else tuple(range(2, pred.ndim))
    sums = [(skel_pred * true).sum(axes), skel_pred.sum(axes), (skel_true * pred).sum(axes), skel_true.sum(axes)]
    if batch_dice and ddp:
        sums = all_gather_sums(*sums)
    pred_in_true, pred_size, true_covered, true_size = sums
    tprec = (pred_in_true + smooth) / (pred_size + smooth)
    tsens = (true_covered + smooth) / (true_size + smooth)
    return 1 - (2 * tprec * tsens / (tprec + tsens)).mean()


def soft_cldice(probs: torch.Tensor, onehot: torch.Tensor, iterations: int = 3, smooth: float = 1.0,
                batch_dice: bool = False, valid: torch.Tensor | None = None, ddp: bool = False,
                background_channel: bool = True) -> torch.Tensor:
    """1 - mean soft clDice over foreground classes (or over all regions), with input checks.

    Args:
        probs: (B, C, X, Y[, Z]) probabilities: softmax with channel 0 = background, or (with
            ``background_channel=False``) sigmoid region probabilities, every channel scored.
        onehot: target of the same shape, values in [0, 1].
        iterations: soft-skeleton iterations k >= 1.
        smooth: the smoothing term s.
        batch_dice: sum over batch and space (one clDice per class) instead of per sample.
        valid: optional (B, 1, X, Y[, Z]) mask; voxels outside it are zeroed in both inputs.
        ddp: with batch_dice, sum the per-class sums over all ranks before dividing.
        background_channel: channel 0 is background and is left out (softmax outputs).

    Returns:
        Scalar loss in [0, 1]. The value checks cost a host sync; the loss modules skip them.
    """
    _check_probabilities(probs, onehot, background_channel)
    first = 1 if background_channel else 0
    pred, true = probs[:, first:], onehot[:, first:].to(probs.dtype)
    if valid is not None:
        pred, true = pred * valid, true * valid
    return cldice_of_scored_channels(pred, true, iterations, smooth, batch_dice, ddp)


class SoftClDiceLoss(ValueCheckOnce, nn.Module):
    """clDice loss on nnU-Net's (logits, integer labels) pair, multi-class, background excluded.

    Args:
        iterations: soft-skeleton iterations k (the reference default 3 reaches ridges of
            vessels up to about 3 voxels radius; raise it for thicker structures).
        smooth: the smoothing term s of Tprec and Tsens.
        batch_dice: nnU-Net's batch_dice (sums over the batch too).
        ddp: all-gather the sums across ranks (with batch_dice), one collective.
        ignore_label: target voxels with this value are zeroed in prediction and target.

    The labels' values are checked on the first call only (no device sync afterwards).
    """

    def __init__(self, iterations: int = 3, smooth: float = 1.0, batch_dice: bool = False, ddp: bool = False,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        self.iterations, self.smooth, self.batch_dice = check_iterations(iterations), smooth, batch_dice
        self.ddp, self.ignore_label = ddp, ignore_label

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, smooth={self.smooth}, batch_dice={self.batch_dice}"

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits (B, C, X, Y[, Z]) and integer labels (B, 1, X, Y[, Z]); a scalar in [0, 1]."""
        check_logits_and_labels(net_output, target)
        num_classes = net_output.shape[1]
        self.check_values_once(check_label_values, target, num_classes, self.ignore_label)
        probs = torch.softmax(as_float_logits(net_output), 1)[:, 1:]
        classes = torch.arange(1, num_classes, device=target.device).view(1, -1, *([1] * (target.ndim - 2)))
        true = (target == classes).to(probs.dtype)  # one-hot without background; other labels: no class
        if self.ignore_label is not None:
            valid = (target != self.ignore_label).to(probs.dtype)
            probs, true = probs * valid, true * valid
        return cldice_of_scored_channels(probs, true, self.iterations, self.smooth, self.batch_dice, self.ddp)


class RegionClDiceLoss(SoftClDiceLoss):
    """clDice loss for region-based training: sigmoid outputs and binary region masks, every region scored.

    Same arguments as ``SoftClDiceLoss`` except ``ignore_label`` (regions come without one here).
    """

    def __init__(self, iterations: int = 3, smooth: float = 1.0, batch_dice: bool = False,
                 ddp: bool = False) -> None:
        super().__init__(iterations=iterations, smooth=smooth, batch_dice=batch_dice, ddp=ddp)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for region logits (B, R, X, Y[, Z]) and binary region masks of the same shape; in [0, 1]."""
        check_logits_and_regions(net_output, target)
        self.check_values_once(check_region_values, target)
        probs = torch.sigmoid(as_float_logits(net_output))
        return cldice_of_scored_channels(probs, target.to(probs.dtype), self.iterations, self.smooth,
                                         self.batch_dice, self.ddp)
