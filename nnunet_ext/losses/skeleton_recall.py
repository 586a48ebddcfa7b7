"""Soft Skeleton Recall loss (Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving
and Resource Efficient Segmentation of Thin Tubular Structures", ECCV 2024).

For every foreground class c the loss measures how much of the (tubed) skeleton of c the softmax
prediction covers::

    recall_c = (sum(p_c * S_c) + smooth) / (sum(S_c) + smooth)

and returns ``-mean_c(recall_c)``. The sign follows nnU-Net's ``SoftDiceLoss`` (which returns
``-dice``): the loss lies in [-1, 0] and a perfect recall gives -1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from nnunet_ext.losses.distributed import all_gather_sum
from nnunet_ext.losses.validation import check_logits_and_labels, check_logits_and_regions


class SoftSkeletonRecallLoss(nn.Module):
    """Negative mean soft recall of the foreground skeleton classes.

    Args:
        batch_dice: sum over batch and spatial axes (one recall per class) instead of one recall per
            sample and class.
        smooth: added to numerator and denominator; a class absent from the skeleton gets recall 1.
        ddp: with ``batch_dice`` and an initialized process group, sum the per-class sums over all
            ranks (differentiably) before dividing, so every rank sees the global recall.
        ignore_label: skeleton voxels with this value belong to no class.
    """

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, ddp: bool = False,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.ddp = ddp
        self.ignore_label = ignore_label

    def extra_repr(self) -> str:
        return (f"batch_dice={self.batch_dice}, smooth={self.smooth}, ddp={self.ddp}, "
                f"ignore_label={self.ignore_label}")

    def forward(self, net_output: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``net_output`` (B, C, *spatial) and labels ``skeleton`` (B, 1, *spatial).

        Returns a scalar in [-1, 0]: minus the mean recall over foreground classes (and over samples
        unless ``batch_dice``).
        """
        valid = check_logits_and_labels(net_output, skeleton, self.ignore_label, name="skeleton")

        logits = net_output
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()
        probs = torch.softmax(logits, dim=1)

        batch, num_classes = probs.shape[:2]
        labels = skeleton.long()
        if valid is not None:
            # Ignored voxels become background, which counts for no class.
            labels = torch.where(valid, labels, torch.zeros_like(labels))
        labels = labels.reshape(batch, -1)
        probs = probs.reshape(batch, num_classes, -1)

        # One masked reduction per class instead of a one-hot of the skeleton. (A scatter_add into
        # per-class bins is ~10x slower on GPU: all voxels hit a handful of bins with atomics.)
        intersection_per_class = []
        size_per_class = []
        for c in range(1, num_classes):
            on_class = labels == c
            intersection_per_class.append(torch.where(on_class, probs[:, c], 0).sum(-1))
            size_per_class.append(on_class.sum(-1))
        intersection = torch.stack(intersection_per_class, 1)  # (B, C - 1)
        skeleton_size = torch.stack(size_per_class, 1).to(intersection.dtype)  # counted in int64
        return negative_mean_recall(intersection, skeleton_size, self.batch_dice, self.ddp, self.smooth)


def negative_mean_recall(intersection: torch.Tensor, skeleton_size: torch.Tensor, batch_dice: bool, ddp: bool,
                         smooth: float) -> torch.Tensor:
    """``-mean((intersection + smooth) / (skeleton_size + smooth))`` from per-sample sums (B, K).

    With ``batch_dice`` the sums are first added over the batch (and, with ``ddp`` in an initialized
    process group, over all ranks), giving one recall per class or region.
    """
    if batch_dice:
        intersection = intersection.sum(0)
        skeleton_size = skeleton_size.sum(0)
        if ddp and dist.is_available() and dist.is_initialized():
            intersection = all_gather_sum(intersection)
            skeleton_size = all_gather_sum(skeleton_size)
    return -((intersection + smooth) / (skeleton_size + smooth)).mean()


class RegionSkeletonRecallLoss(SoftSkeletonRecallLoss):
    """Skeleton Recall for region-based training: sigmoid outputs, one binary skeleton per region.

    ``recall_r = (sum(sigmoid(z_r) * S_r) + smooth) / (sum(S_r) + smooth)`` for every region r (no
    background channel: every output is a region), and the loss is ``-mean_r(recall_r)``, in [-1, 0].
    Same arguments as ``SoftSkeletonRecallLoss`` except ``ignore_label`` (regions come without one here).
    """

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, ddp: bool = False) -> None:
        super().__init__(batch_dice=batch_dice, smooth=smooth, ddp=ddp)

    def forward(self, net_output: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        """Loss for region logits ``net_output`` (B, R, *spatial) and binary tubed skeletons (B, R, *spatial)."""
        check_logits_and_regions(net_output, skeleton, name="skeleton")
        logits = net_output if net_output.dtype in (torch.float32, torch.float64) else net_output.float()
        probs = torch.sigmoid(logits).flatten(2)
        on_skeleton = skeleton.flatten(2).bool()
        intersection = torch.where(on_skeleton, probs, 0).sum(-1)  # (B, R)
        skeleton_size = on_skeleton.sum(-1).to(intersection.dtype)
        return negative_mean_recall(intersection, skeleton_size, self.batch_dice, self.ddp, self.smooth)
