"""Soft Skeleton Recall loss (Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving
and Resource Efficient Segmentation of Thin Tubular Structures", ECCV 2024).

For every foreground class c the loss measures how much of the (tubed) skeleton of c the softmax
prediction covers::

    recall_c = (sum(p_c * S_c) + smooth) / (sum(S_c) + smooth)

and returns ``-mean_c(recall_c)``. The sign follows nnU-Net's ``SoftDiceLoss`` (which returns
``-dice``): the loss lies in [-1, 0] and a perfect recall gives -1.

The per-class sums come from one of four formulations, all equal to the one-hot definition and free of
device-to-host syncs; ``sum_formulation`` picks one from the device type and the number of channels
(see ``own_class_sums``):

* ``"skeleton_voxels"`` (CPU): the softmax on the skeleton's voxels only (a data-dependent selection: no sync on
  the CPU, but a graph break for ``torch.compile``, so not while compiling).
* ``"masked_product"`` (CPU while compiling, few classes): softmax times the skeleton compared with every class.
* ``"own_class_binned"`` (CPU while compiling, many classes): each voxel's own-class probability (a gather)
  scatter-added into per-class bins, with a hand-written backward.
* ``"own_class_compared"`` (CUDA and other devices): the same own-class gather, summed per class by comparison
  in chunks of classes whose temporaries stay within ``COMPARE_CHUNK_BYTES`` (``compared_sums_extra_bytes``).
"""

from __future__ import annotations

from collections.abc import Callable

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

# While compiling on the CPU, from this many channels (background included) on, the own-class gather/scatter
# replaces the masked product: set by ``benchmarks/bench_losses.py --sr-formulations`` (benchmarks/results/
# losses.json, "sr_formulations"; eager timings): at 2x64^3 the masked product won up to 9 channels, the two
# were level at 15 (2 threads; with 1 thread the gather/scatter won at 15).
CPU_OWN_CLASS_MIN_CHANNELS = 15
# Bytes of the per-chunk temporaries of ``"own_class_compared"`` (a bool map and one 4- or 8-byte map per class
# and voxel): 64 MiB keeps the whole SR term's extra memory at 2x128^3, 14 classes, under 160 MB, 2% of the 8 GB
# nnU-Net targets (``compared_sums_extra_bytes``).
COMPARE_CHUNK_BYTES = 64 * 2**20
INDEX_BYTES = 8  # int64 class index


def sum_formulation(num_channels: int, device_type: str) -> str:
    """The formulation ``own_class_sums`` uses for logits with ``num_channels`` channels on ``device_type``.

    CUDA (and meta, mps, ...) take the own-class gather with chunked comparisons: a scatter-add into C bins
    serializes its atomics there, and the chunks bound the memory. The CPU takes the skeleton's voxels only (at
    every class count measured, 3 to 14 foreground classes, the fastest: ``bench_losses.py --sr-formulations``);
    while ``torch.compile`` traces, where that selection would break the graph, the masked product below
    ``CPU_OWN_CLASS_MIN_CHANNELS`` channels and the binned gather from there on.
    """
    if device_type != "cpu":
        return "own_class_compared"
    if not torch.compiler.is_compiling():
        return "skeleton_voxels"
    return "masked_product" if num_channels < CPU_OWN_CLASS_MIN_CHANNELS else "own_class_binned"


class _OwnClassSums(torch.autograd.Function):
    """Per-class sums of each voxel's own-class softmax probability, and the voxel counts per class.

    forward(logits (B, C, N) float, index (B, 1, N) int64 in [0, C), binned: bool) -> (intersection, counts), both
    (B, C - 1) for the classes 1..C-1: ``intersection[b, c-1] = sum_{i: index = c} softmax(logits)[b, c, i]``.

    A skeleton voxel of class c is 1 in channel c only, so the recall's numerator needs one probability per
    voxel (a gather), not a one-hot, and the backward writes ``d/dz_k = coef * ([k = own] - p_k)`` with
    ``coef = g_own * p_own`` directly instead of going through the softmax's generic backward. The per-class sums:
    ``binned`` (CPU) scatters every voxel into C float64 bins in one serial pass (exact); else compared with each
    class (``_compared_sums``).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor, binned: bool) -> tuple[torch.Tensor, torch.Tensor]:
        num_classes = logits.shape[1]
        probs = torch.softmax(logits, 1)
        own = probs.gather(1, index)  # (B, 1, N)
        intersection, counts = (_binned_sums if binned else _compared_sums)(own, index, num_classes)
        ctx.save_for_backward(probs, index, own)
        ctx.mark_non_differentiable(counts)
        return intersection, counts

    @staticmethod
    def backward(ctx, grad_intersection: torch.Tensor, _grad_counts: torch.Tensor | None
                 ) -> tuple[torch.Tensor, None, None]:
        probs, index, own = ctx.saved_tensors
        # one (B, 1, N) buffer: coef, negated for the product and back for the scatter; background: coef 0
        coef = F.pad(grad_intersection, (1, 0)).gather(1, index[:, 0]).unsqueeze(1).mul_(own)
        grad = probs * coef.neg_()
        return grad.scatter_add_(1, index, coef.neg_()), None, None


def compare_chunk(batch: int, voxels: int, itemsize: int) -> int:
    """Classes per chunk of ``_compared_sums``: its (B, chunk, N) bool map and 4- or ``itemsize``-byte map fit
    ``COMPARE_CHUNK_BYTES`` (at least one class)."""
    return max(1, COMPARE_CHUNK_BYTES // (batch * voxels * (1 + max(itemsize, 4))))


def _compared_sums(own: torch.Tensor, index: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of ``own`` (B, 1, N) and voxel counts, classes 1..C-1, through (B, chunk, N) bool maps."""
    batch, _, voxels = own.shape
    chunk = compare_chunk(batch, voxels, own.element_size())
    classes = torch.arange(1, num_classes, device=index.device).view(1, -1, 1)
    intersections, counts = [], []
    for first in range(0, num_classes - 1, chunk):
        on_class = index == classes[:, first:first + chunk]
        intersections.append(torch.where(on_class, own, 0).sum(-1))
        # a bool sum would widen the whole map to int64 first; as uint8 it becomes int32 (4 bytes), as counted
        counts.append(on_class.view(torch.uint8).sum(-1, dtype=torch.int32).to(own.dtype))
    return torch.cat(intersections, 1), torch.cat(counts, 1)


def _binned_sums(own: torch.Tensor, index: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same sums by one scatter-add of every voxel into its class's float64 bin (CPU)."""
    batch, flat_index = own.shape[0], index[:, 0]
    bins = own.new_zeros(batch, num_classes, dtype=torch.float64)
    intersection = bins.scatter_add(1, flat_index, own[:, 0].double())[:, 1:]
    counts = bins.scatter_add(1, flat_index, bins.new_ones(()).expand(flat_index.shape))[:, 1:]
    return intersection.to(own.dtype), counts.to(own.dtype)


def compared_sums_extra_bytes(batch: int, channels: int, voxels: int, dtype: torch.dtype = torch.float32) -> int:
    """Peak bytes that ``"own_class_compared"`` holds besides the softmax probabilities (B, C, N) and the logits'
    gradient (which every softmax formulation has), for logits (B, C, N) of ``dtype`` and non-int64 labels.

    With ``s`` the dtype's bytes and ``K = min(C - 1, compare_chunk(B, N, s))``, the largest of
        * the class index: ``16 B N`` (the labels as int64 and their clamped copy),
        * the forward's sums: ``8 B N`` (index) ``+ s B N`` (own) ``+ (1 + max(s, 4)) B K N`` (one chunk's maps),
        * the backward: ``8 B N + s B N`` (saved) ``+ s B N`` (coef).

    That is ``max(16, 8 + s + (1 + max(s, 4)) K) B N`` (the chunk's term is at most ``COMPARE_CHUNK_BYTES`` when
    one class fits). float32 at 2x128^3, 14 foreground classes (K = 3): 113.2 MB; unchunked, the (B, 14, N) maps
    alone held 294 MB (344 MB in all).
    """
    s = torch.empty((), dtype=dtype).element_size()
    chunk = min(channels - 1, compare_chunk(batch, voxels, s))
    per_voxel = batch * voxels
    indexing = 2 * INDEX_BYTES * per_voxel
    forward = (INDEX_BYTES + s) * per_voxel + (1 + max(s, 4)) * chunk * per_voxel
    backward = (INDEX_BYTES + 2 * s) * per_voxel
    return max(indexing, forward, backward)


def _masked_product_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums by plain autograd: softmax(logits) (B, C, N) where labels (B, 1, N) equal each class, summed.

    Compares the raw labels (any dtype) with 0..C-1: values outside count for no class, no class index needed.
    """
    num_classes = logits.shape[1]
    probs = torch.softmax(logits, 1)
    on_class = labels == torch.arange(num_classes, device=labels.device, dtype=labels.dtype).view(1, -1, 1)
    intersection = torch.where(on_class, probs, 0).sum(-1)[:, 1:]
    counts = on_class.view(torch.uint8).sum(-1, dtype=torch.int32)[:, 1:].to(probs.dtype)
    return intersection, counts


def _skeleton_voxel_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums by plain autograd over the skeleton's voxels only: logits (B, C, N), labels (B, 1, N) of any dtype.

    The gradient is zero off the skeleton, so only its K voxels (labels in 1..C-1) need a softmax: (K, C) instead
    of (B, C, N). The selection's size depends on the data: free on the CPU, a sync on a GPU.
    """
    batch, num_classes, _ = logits.shape
    flat_labels = labels[:, 0]
    sample, voxel = ((flat_labels > 0) & (flat_labels < num_classes)).nonzero(as_tuple=True)
    cls = flat_labels[sample, voxel].long()  # (K,)
    own = torch.softmax(logits[sample, :, voxel], -1).gather(1, cls[:, None])[:, 0]
    bins = sample * num_classes + cls
    sums = own.new_zeros(batch * num_classes, dtype=torch.float64).index_add(0, bins, own.double())  # exact
    counts = torch.bincount(bins, minlength=batch * num_classes)
    return (sums.view(batch, num_classes)[:, 1:].to(logits.dtype),
            counts.view(batch, num_classes)[:, 1:].to(logits.dtype))


def _own_class_binned(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _OwnClassSums.apply(logits, class_index(labels, logits.shape[1]), True)


def _own_class_compared(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _OwnClassSums.apply(logits, class_index(labels, logits.shape[1]), False)


FORMULATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "skeleton_voxels": _skeleton_voxel_sums,
    "masked_product": _masked_product_sums,
    "own_class_binned": _own_class_binned,
    "own_class_compared": _own_class_compared,
}


def own_class_sums(logits: torch.Tensor, labels: torch.Tensor, formulation: str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i p_c(i) [label_i = c]`` and ``sum_i [label_i = c]`` per sample, for the classes 1..C-1.

    logits (B, C, *spatial), integer labels (B, 1, *spatial) -> two (B, C - 1) tensors of the logits'
    dtype (float32 for half-precision logits). Labels outside [0, C) count for no class. ``formulation``
    (a key of ``FORMULATIONS``): the one ``sum_formulation`` picks for these logits unless given.
    """
    batch, num_classes = logits.shape[:2]
    flat = as_float_logits(logits).reshape(batch, num_classes, -1)
    formulation = formulation or sum_formulation(num_classes, logits.device.type)
    return FORMULATIONS[formulation](flat, labels.reshape(batch, 1, -1))


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
