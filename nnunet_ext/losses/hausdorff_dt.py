"""Hausdorff distance loss, distance-transform version (Karimi & Salcudean, "Reducing the Hausdorff Distance in
Medical Image Segmentation with Convolutional Neural Networks", IEEE TMI 2020).

For every sample and foreground class (or region)::

    HD_DT = mean_x (p(x) - g(x))^2 * (d_g(x)^alpha + d_p(x)^alpha)

with p the predicted probability, g the ground-truth mask, and d_g / d_p every voxel's Euclidean distance to the
boundary of the ground-truth mask / of the thresholded prediction ``p > 0.5`` (``edt(mask) + edt(~mask)``, 0 for
an empty or a full mask). A wrong voxel costs more the farther it lies from either boundary: the loss targets
the far-off errors that make the Hausdorff distance. The loss is the mean over samples and classes.

d_p changes every step and is computed on the loss's device with the exact torch EDT (``nnunet_ext.distance``),
without host syncs; it carries no gradient (the threshold is not differentiable, as in the paper). d_g comes from
the data pipeline (``DistanceFieldTransform``, scipy in the workers, as the ``distance`` target block) or, when
not given, is computed on the device as well.

Distances are in the units of ``spacing``; at a deep-supervision scale whose output is coarser than the full
patch, the voxel size of that output is ``spacing * patch_size / output size`` per axis. ``distance_scale``
divides every distance before the power (1: the definition's units; the trainer uses the patch diagonal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nnunet_ext.distance import boundary_distance
from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_positive,
    check_region_values,
)
from nnunet_ext.losses.prepare import as_float_logits


def _check_geometry(spacing: Sequence[float] | None, patch_size: Sequence[int] | None
                    ) -> tuple[tuple[float, ...] | None, tuple[int, ...] | None]:
    spacing = None if spacing is None else tuple(check_positive("every spacing value", s) for s in spacing)
    if patch_size is not None:
        if any(isinstance(p, bool) or int(p) != p or p < 1 for p in patch_size):
            raise ValueError(f"patch_size must hold positive integers, got {patch_size!r}")
        patch_size = tuple(int(p) for p in patch_size)
        if spacing is not None and len(spacing) != len(patch_size):
            raise ValueError(f"spacing {spacing} and patch_size {patch_size} must have one value per spatial axis")
    return spacing, patch_size


def patch_diagonal(spacing: Sequence[float], patch_size: Sequence[int]) -> float:
    """Length of the patch's diagonal in the units of ``spacing``: ``sqrt(sum_i (patch_size_i * spacing_i)^2)``."""
    return math.sqrt(sum((p * s) ** 2 for p, s in zip(patch_size, spacing)))


def check_distance_values(distance: torch.Tensor, name: str = "distance") -> None:
    """Distance fields are finite and >= 0; one host sync. Raises ValueError otherwise."""
    bad = (~torch.isfinite(distance) | (distance < 0)).any()
    if bad.item():
        raise ValueError(f"{name} must hold finite distances >= 0 (the ground-truth fields of DistanceFieldTransform), "
                         f"found negative, NaN or infinite values; pass the 'distance' target block, not labels")


def scale_spacing(spacing: tuple[float, ...] | None, patch_size: tuple[int, ...] | None,
                  shape: Sequence[int]) -> tuple[float, ...]:
    """Voxel size of an output of spatial ``shape``: ``spacing * patch_size / shape`` per axis (a coarser
    deep-supervision output has larger voxels); ``spacing`` (default 1) when no ``patch_size`` is given."""
    spacing = (1.0,) * len(shape) if spacing is None else spacing
    if len(spacing) != len(shape) or (patch_size is not None and len(patch_size) != len(shape)):
        raise ValueError(f"spacing {spacing} / patch_size {patch_size} do not match an output with spatial shape "
                         f"{tuple(shape)}: give one value per spatial axis of the configuration")
    if patch_size is None:
        return spacing
    return tuple(s * p / n for s, p, n in zip(spacing, patch_size, shape))


class _HausdorffDT(ValueCheckOnce, nn.Module):
    """What the softmax and the region forms share: arguments, the per-voxel term, the reduction."""

    def __init__(self, alpha: float = 2.0, spacing: Sequence[float] | None = None,
                 patch_size: Sequence[int] | None = None, distance_scale: float = 1.0, batch_dice: bool = False,
                 ddp: bool = False) -> None:
        super().__init__()
        self.alpha = check_positive("alpha", alpha, "the paper uses 2")
        self.spacing, self.patch_size = _check_geometry(spacing, patch_size)
        self.distance_scale = check_positive("distance_scale", distance_scale)
        self.batch_dice = batch_dice
        self.ddp = ddp

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha:g}, spacing={self.spacing}, patch_size={self.patch_size}, "
                f"distance_scale={self.distance_scale:g}, batch_dice={self.batch_dice}, ddp={self.ddp}")

    def _weight(self, distance: torch.Tensor) -> torch.Tensor:
        return (distance / self.distance_scale) ** self.alpha

    def _loss(self, probs: torch.Tensor, truth: torch.Tensor, truth_distance: torch.Tensor | None,
              valid: torch.Tensor | None) -> torch.Tensor:
        """Mean HD_DT from probabilities and masks (B, K, *spatial); ``valid`` (B, 1, *spatial) or None."""
        spacing = scale_spacing(self.spacing, self.patch_size, probs.shape[2:])
        unknown = None if valid is None else ~valid
        if truth_distance is None:
            truth_distance = boundary_distance(truth, spacing, unknown=unknown)
        predicted_distance = boundary_distance(probs.detach() > 0.5, spacing)
        term = (probs - truth.to(probs.dtype)) ** 2 * (self._weight(truth_distance) + self._weight(predicted_distance))
        if valid is None:
            sums = term.flatten(2).sum(-1)  # (B, K)
            counts = torch.full_like(sums, term[0, 0].numel())
        else:
            sums = torch.where(valid, term, 0).flatten(2).sum(-1)
            counts = valid.flatten(2).sum(-1, dtype=sums.dtype).expand_as(sums)
        if self.batch_dice:
            sums, counts = sums.sum(0), counts.sum(0)
            if self.ddp:
                sums, counts = all_gather_sums(sums, counts)
        return (sums / counts.clamp_min(1)).mean()


class HausdorffDTLoss(_HausdorffDT):
    """HD_DT loss over the foreground classes of softmax outputs (nnU-Net's label maps).

    Args:
        alpha: the power of the distances (the paper: 2).
        spacing: voxel size per spatial axis of the full-resolution patch (nnU-Net: the configuration's
            spacing); distances in its units. Default 1 (voxels).
        patch_size: the full-resolution patch size; outputs of another size (deep supervision) get voxels of
            ``spacing * patch_size / output size``. Default: every output at full resolution.
        distance_scale: every distance is divided by it before the power (default 1).
        batch_dice: one mean per class over all voxels of the batch instead of one per sample and class.
        ddp: with ``batch_dice`` in an initialized process group, pool the sums of all ranks (one collective).
        ignore_label: voxels with this label count for no class and are left out of the means; they are no
            boundary in d_g.

    The label values (and the distance fields) are checked on the first call only.
    """

    def __init__(self, alpha: float = 2.0, spacing: Sequence[float] | None = None,
                 patch_size: Sequence[int] | None = None, distance_scale: float = 1.0, batch_dice: bool = False,
                 ddp: bool = False, ignore_label: int | None = None) -> None:
        super().__init__(alpha, spacing, patch_size, distance_scale, batch_dice, ddp)
        self.ignore_label = ignore_label

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ignore_label={self.ignore_label}"

    @staticmethod
    def _check_values(labels: torch.Tensor, num_classes: int, ignore_label: int | None,
                      distance: torch.Tensor | None) -> None:
        check_label_values(labels, num_classes, ignore_label)
        if distance is not None:
            check_distance_values(distance)

    def forward(self, net_output: torch.Tensor, labels: torch.Tensor,
                distance: torch.Tensor | None = None) -> torch.Tensor:
        """Loss for logits (B, C, *spatial), integer labels (B, 1, *spatial) and, optionally, the ground-truth
        boundary distances of the classes 1..C-1 (B, C - 1, *spatial, in the units of ``spacing``); scalar >= 0.

        Non-finite logits give a non-finite loss.
        """
        check_logits_and_labels(net_output, labels)
        batch, num_classes = net_output.shape[:2]
        if distance is not None and tuple(distance.shape) != (batch, num_classes - 1, *net_output.shape[2:]):
            raise ValueError(
                f"distance must hold one field per foreground class, shaped {(batch, num_classes - 1)} + spatial = "
                f"{(batch, num_classes - 1, *net_output.shape[2:])}, got {tuple(distance.shape)}; pass the "
                f"'distance' block of the target (DistanceFieldTransform) at the scale of net_output")
        self.check_values_once(self._check_values, labels, num_classes, self.ignore_label, distance)
        probs = torch.softmax(as_float_logits(net_output), 1)[:, 1:]
        classes = torch.arange(1, num_classes, device=labels.device).view(1, -1, *([1] * (labels.ndim - 2)))
        truth = labels.long() == classes  # (B, C - 1, *spatial); labels outside [1, C) are in no class
        valid = None if self.ignore_label is None else labels != self.ignore_label
        if valid is not None:
            truth = truth & valid  # an ignore label < C is no class
        return self._loss(probs, truth, distance, valid)


class RegionHausdorffDTLoss(_HausdorffDT):
    """HD_DT loss for region-based training: sigmoid outputs, one (possibly overlapping) binary mask per region.

    ``p = sigmoid(z_r)``, g the region mask, d_g / d_p the boundary distances of region r and of ``p > 0.5``;
    every region is scored (no background channel). Same arguments as ``HausdorffDTLoss`` except
    ``ignore_label`` (our trainers refuse regions combined with an ignore label).
    """

    @staticmethod
    def _check_values(regions: torch.Tensor, distance: torch.Tensor | None) -> None:
        check_region_values(regions)
        if distance is not None:
            check_distance_values(distance)

    def forward(self, net_output: torch.Tensor, regions: torch.Tensor,
                distance: torch.Tensor | None = None) -> torch.Tensor:
        """Loss for region logits (B, R, *spatial), binary region masks (B, R, *spatial) and, optionally, their
        boundary distances (B, R, *spatial); scalar >= 0."""
        check_logits_and_regions(net_output, regions)
        if distance is not None and distance.shape != net_output.shape:
            raise ValueError(f"distance must hold one field per region, shaped {tuple(net_output.shape)} like "
                             f"net_output, got {tuple(distance.shape)}; pass the 'distance' block of the target "
                             f"(RegionDistanceFieldTransform) at the scale of net_output")
        self.check_values_once(self._check_values, regions, distance)
        probs = torch.sigmoid(as_float_logits(net_output))
        return self._loss(probs, regions.bool(), distance, None)
