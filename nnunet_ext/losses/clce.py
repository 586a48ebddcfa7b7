"""Centerline cross entropy (clCE; Acebes et al., "The centerline-Cross Entropy loss for vessel-like structure
segmentation", MICCAI 2024): the voxel-wise cross entropy, restricted to skeletons in the clDice manner.

With ``CE_i`` the cross entropy of voxel i and the clDice soft skeletons (``soft_skeletonize``, k iterations)
of the one-hot target T and of the softmax prediction P::

    tprec = mean_i CE_i * w_T(i),   w_T(i) = sum over foreground classes c of skel(T_c)(i)
    tsens = mean_i CE_i * w_P(i),   w_P(i) = sum over foreground classes c of skel(P_c)(i)
    clCE  = tprec + tsens

With one foreground class this is the authors' code (their ``CE_clCE_loss`` / ``clCELoss``: channel 1's
skeletons); with several, each voxel's cross entropy is weighted by the skeletons of every foreground class
(the classes' skeletons overlap only where classes touch). The gradient flows through the cross entropy and
through the prediction's skeleton, as in the authors' code; the target's skeleton is a constant (computed in
bool by ``binary_skeletonize``: the soft skeleton of a one-hot map is 0/1).

The means run over the voxels that carry a label: ignore-label voxels contribute nothing and are not
counted, as in nnU-Net's own cross entropy (``ignore_index``), so a sparsely annotated patch is not scaled
down by its unlabelled part. Without an ignore label the denominator is every voxel, as in the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.losses.binary_skeleton import binary_skeletonize
from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_iterations,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_region_values,
    check_spatial_2d_3d,
)
from nnunet_ext.losses.prepare import as_float_logits, class_index
from nnunet_ext.losses.soft_skeleton import soft_skeletonize


def clce_from_weights(ce: torch.Tensor, true_weight: torch.Tensor, pred_weight: torch.Tensor,
                      labelled: torch.Tensor, batch_dice: bool, ddp: bool) -> torch.Tensor:
    """``mean(CE * w_T) + mean(CE * w_P)`` over the labelled voxels; no checks, no device sync.

    Args:
        ce: (B, K, *spatial) cross entropy per voxel (K = 1 for softmax outputs, K = R for regions), 0 where
            unlabelled.
        true_weight, pred_weight: skeleton weights w_T, w_P of ``ce``'s shape.
        labelled: (B,) number of labelled voxels per sample (float).
        batch_dice: one mean over the whole batch (and, with ``ddp``, over all ranks: one collective) instead
            of one mean per sample; the same unless samples have different numbers of labelled voxels.
        ddp: see ``batch_dice``.

    Returns:
        Scalar >= 0: the mean over samples (unless batch_dice) and over the K channels.
    """
    axes = tuple(range(2, ce.ndim))
    sums = [(ce * true_weight).sum(axes), (ce * pred_weight).sum(axes), labelled[:, None].expand(-1, ce.shape[1])]
    if batch_dice:
        sums = [s.sum(0) for s in sums]
        if ddp:
            sums = all_gather_sums(*sums)
    prec, sens, count = sums
    return ((prec + sens) / count.clamp_min(1.0)).mean()


def _check_spatial(net_output: torch.Tensor) -> None:
    check_spatial_2d_3d(net_output, "clCE needs 2D or 3D outputs (B, C, X, Y[, Z])")


class ClCELoss(ValueCheckOnce, nn.Module):
    """clCE on nnU-Net's (logits, integer labels) pair, background excluded from the skeleton weights.

    Args:
        iterations: soft-skeleton iterations k (the authors' 3).
        batch_dice: nnU-Net's batch_dice: one mean over the batch's labelled voxels (all-gathered across
            ranks with ``ddp``) instead of one per sample.
        ddp: all-gather the sums and the voxel count across ranks (with batch_dice), one collective.
        ignore_label: voxels with this label have no cross entropy, are not counted, and are background
            in both skeletons' inputs.

    The labels' values are checked on the first call only (no device sync afterwards).
    """

    def __init__(self, iterations: int = 3, batch_dice: bool = False, ddp: bool = False,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        check_iterations(iterations)
        self.iterations, self.batch_dice, self.ddp, self.ignore_label = iterations, batch_dice, ddp, ignore_label

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, batch_dice={self.batch_dice}"

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits (B, C, X, Y[, Z]) and integer labels (B, 1, X, Y[, Z]); a scalar >= 0."""
        check_logits_and_labels(net_output, target)
        _check_spatial(net_output)
        num_classes = net_output.shape[1]
        self.check_values_once(check_label_values, target, num_classes, self.ignore_label)
        log_probs = torch.log_softmax(as_float_logits(net_output), 1)
        ce = -log_probs.gather(1, class_index(target, num_classes))  # (B, 1, ...)
        probs = log_probs[:, 1:].exp()
        classes = torch.arange(1, num_classes, device=target.device).view(1, -1, *([1] * (target.ndim - 2)))
        true = target == classes
        if self.ignore_label is None:
            labelled = torch.full((target.shape[0],), target[0].numel(), dtype=ce.dtype, device=ce.device)
        else:
            valid = target != self.ignore_label
            ce, probs, true = torch.where(valid, ce, 0.0), torch.where(valid, probs, 0.0), true & valid
            labelled = valid.flatten(1).sum(1).to(ce.dtype)
        pred_weight = soft_skeletonize(probs, self.iterations).sum(1, keepdim=True)
        true_weight = binary_skeletonize(true, self.iterations).sum(1, keepdim=True, dtype=ce.dtype)
        return clce_from_weights(ce, true_weight, pred_weight, labelled, self.batch_dice, self.ddp)


class RegionClCELoss(ClCELoss):
    """clCE for region-based training: sigmoid outputs and binary region masks, every region scored.

    Region r is the authors' binary clCE of the two-class softmax of (0, z_r): the binary cross entropy of
    ``z_r`` weighted by the skeletons of the region mask and of ``sigmoid(z_r)``; the loss is the mean over
    regions. Same arguments as ``ClCELoss`` except ``ignore_label`` (regions come without one here).
    """

    def __init__(self, iterations: int = 3, batch_dice: bool = False, ddp: bool = False) -> None:
        super().__init__(iterations=iterations, batch_dice=batch_dice, ddp=ddp)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for region logits (B, R, X, Y[, Z]) and binary region masks of the same shape; a scalar >= 0."""
        check_logits_and_regions(net_output, target)
        _check_spatial(net_output)
        self.check_values_once(check_region_values, target)
        logits = as_float_logits(net_output)
        ce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
        pred_weight = soft_skeletonize(torch.sigmoid(logits), self.iterations)
        true_weight = binary_skeletonize(target, self.iterations).to(ce.dtype)
        labelled = torch.full((target.shape[0],), target[0, 0].numel(), dtype=ce.dtype, device=ce.device)
        return clce_from_weights(ce, true_weight, pred_weight, labelled, self.batch_dice, self.ddp)
