"""Soft Skeleton Recall loss (Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving
and Resource Efficient Segmentation of Thin Tubular Structures", ECCV 2024).

For every foreground class c the loss measures how much of the (tubed) skeleton of c the softmax
prediction covers::

    recall_c = (sum(p_c * S_c) + smooth) / (sum(S_c) + smooth)

and returns ``-mean_c(recall_c)``. The sign follows nnU-Net's ``SoftDiceLoss`` (which returns
``-dice``): the loss lies in [-1, 0] and a perfect recall gives -1.

Computed without a one-hot of the skeleton (see ``own_class_sums``) and without device-to-host syncs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_region_values,
)
from nnunet_ext.losses.prepare import as_float_logits, class_index


class _OwnClassSums(torch.autograd.Function):
    """Per-class sums of each voxel's own-class softmax probability, and the voxel counts per class.

    forward(logits (B, C, N) float, index (B, 1, N) int64 in [0, C)) -> (intersection, counts), both
    (B, C - 1) for the classes 1..C-1: ``intersection[b, c-1] = sum_{i: index = c} softmax(logits)[b, c, i]``.

    A skeleton voxel of class c is 1 in channel c only, so the recall's numerator needs one probability per
    voxel (a gather), not a one-hot: fewer bytes moved than softmax + one-hot + masked sums, and the
    backward writes ``d/dz_k = coef * ([k = own] - p_k)`` with ``coef = g_own * p_own`` directly instead of
    going through the softmax's generic backward. The per-class sums: on a GPU, compare the index with each class
    (a (B, C - 1, N) bool map), since scatter-adding into C bins serializes its atomics there; on the CPU, where a
    scatter-add is one serial pass, scatter into C float64 bins (one pass instead of C - 1; 5x faster at 14
    classes, and exact).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num_classes = logits.shape[1]
        probs = torch.softmax(logits, 1)
        own = probs.gather(1, index)  # (B, 1, N)
        intersection, counts = (_binned_sums if index.device.type == "cpu" else _compared_sums)(own, index,
                                                                                               num_classes)
        ctx.save_for_backward(probs, index, own)
        ctx.mark_non_differentiable(counts)
        return intersection, counts

    @staticmethod
    def backward(ctx, grad_intersection: torch.Tensor, _grad_counts: torch.Tensor | None
                 ) -> tuple[torch.Tensor, None]:
        probs, index, own = ctx.saved_tensors
        coef = F.pad(grad_intersection, (1, 0)).gather(1, index[:, 0]).unsqueeze(1) * own  # background: 0
        grad = probs * coef.neg()
        return grad.scatter_add_(1, index, coef), None


def _compared_sums(own: torch.Tensor, index: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of ``own`` (B, 1, N) and voxel counts, classes 1..C-1, through a (B, C - 1, N) bool map."""
    on_class = index == torch.arange(1, num_classes, device=index.device).view(1, -1, 1)
    intersection = torch.where(on_class, own, 0).sum(-1)
    # a bool sum would widen the whole map to int64 first; as uint8 with an int32 accumulator it does not
    counts = on_class.view(torch.uint8).sum(-1, dtype=torch.int32).to(own.dtype)
    return intersection, counts


def _binned_sums(own: torch.Tensor, index: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same sums by one scatter-add of every voxel into its class's float64 bin (CPU)."""
    batch, flat_index = own.shape[0], index[:, 0]
    bins = own.new_zeros(batch, num_classes, dtype=torch.float64)
    intersection = bins.scatter_add(1, flat_index, own[:, 0].double())[:, 1:]
    counts = bins.scatter_add(1, flat_index, bins.new_ones(()).expand(flat_index.shape))[:, 1:]
    return intersection.to(own.dtype), counts.to(own.dtype)


def own_class_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i p_c(i) [label_i = c]`` and ``sum_i [label_i = c]`` per sample, for the classes 1..C-1.

    logits (B, C, *spatial), integer labels (B, 1, *spatial) -> two (B, C - 1) tensors of the logits'
    dtype (float32 for half-precision logits). Labels outside [0, C) count for no class.
    """
    batch, num_classes = logits.shape[:2]
    flat = as_float_logits(logits).reshape(batch, num_classes, -1)
    return _OwnClassSums.apply(flat, class_index(labels.reshape(batch, 1, -1), num_classes))


class SoftSkeletonRecallLoss(ValueCheckOnce, nn.Module):
    """Negative mean soft recall of the foreground skeleton classes.

    Args:
        batch_dice: sum over batch and spatial axes (one recall per class) instead of one recall per
            sample and class.
        smooth: added to numerator and denominator; a class absent from the skeleton gets recall 1.
        ddp: with ``batch_dice`` and an initialized process group, sum the per-class sums over all
            ranks (differentiably, one collective) before dividing, so every rank sees the global recall.
        ignore_label: skeleton voxels with this value belong to no class.

    The skeleton's values (integers in [0, C) or the ignore label) are checked on the first call only.
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
        unless ``batch_dice``). Non-finite logits on the skeleton give a non-finite loss.
        """
        check_logits_and_labels(net_output, skeleton, name="skeleton")
        batch, num_classes = net_output.shape[:2]
        self.check_values_once(check_label_values, skeleton, num_classes, self.ignore_label, name="skeleton")

        if self.ignore_label is not None and 0 <= self.ignore_label < num_classes:
            # (an ignore label >= C, nnU-Net's case, counts for no class anyway)
            skeleton = skeleton.masked_fill(skeleton == self.ignore_label, 0)
        intersection, skeleton_size = own_class_sums(net_output, skeleton)
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
        if ddp:
            intersection, skeleton_size = all_gather_sums(intersection, skeleton_size)
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
        self.check_values_once(check_region_values, skeleton, name="skeleton")
        probs = torch.sigmoid(as_float_logits(net_output)).flatten(2)
        on_skeleton = skeleton.flatten(2).bool()
        intersection = torch.where(on_skeleton, probs, 0).sum(-1)  # (B, R)
        skeleton_size = on_skeleton.sum(-1).to(intersection.dtype)
        return negative_mean_recall(intersection, skeleton_size, self.batch_dice, self.ddp, self.smooth)
