"""Trainer mixin: the tubed skeleton rides along in nnU-Net's target, after the labels.

nnU-Net's data loader passes only ``image`` and ``segmentation`` through the
transforms. So ``SkeletonTransform`` appends the tubed skeleton to the
segmentation, *before* nnU-Net's deep-supervision downsampling, which then
carries it to every output scale: each deep-supervision output gets a skeleton
target at its own resolution. Label maps: the target is (labels, skeleton), 2
channels. Region-based training: nnU-Net's region conversion gives R binary
region channels and ``RegionSkeletonTransform`` appends R skeletons, 2R channels.
The loss reads the skeleton block; nnU-Net's online Dice in ``validation_step``
must only see the label block.

Mix in before the nnU-Net trainer class: ``class T(SkeletonTargetMixin, nnUNetTrainer)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_ext.regions import check_region_definitions, refuse_ignore_label_with_regions
from nnunet_ext.trainers.pipeline_edits import (
    edited_pipeline,
    insert_after_region_conversion,
    insert_before_target_conversion,
)
from nnunet_ext.transforms import RegionSkeletonTransform, SkeletonTransform


def labels_channels(target: torch.Tensor | list[torch.Tensor],
                    count: int = 1) -> torch.Tensor | list[torch.Tensor]:
    """The first ``count`` channels (labels, or the R regions) of a target, or of each deep-supervision
    target: (B, count, ...)."""
    if isinstance(target, (list, tuple)):
        return [t[:, :count] for t in target]
    return target[:, :count]


class _LossWithFixedTarget:
    """Calls ``loss(output, target)`` with a stored target, whatever target it is handed."""

    def __init__(self, loss: Callable, target: torch.Tensor | list[torch.Tensor]):
        self.loss, self.target = loss, target

    def __call__(self, output, _labels_only):
        first = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(self.target, (list, tuple)):
            target = [t.to(first.device, non_blocking=True) for t in self.target]
        else:
            target = self.target.to(first.device, non_blocking=True)
        return self.loss(output, target)


class SkeletonTargetMixin:
    """Adds ``SkeletonTransform`` to nnU-Net's training and validation pipelines.

    Class attributes (override in a subclass to change them):
        skeleton_tube_radius: dilations of the skeleton with the 1-step cross (paper: 2).
        skeleton_per_class: skeletonize each class on its own (touching classes).
        skeleton_fallback: repair 3D objects that Lee's thinning deletes entirely.
    """

    skeleton_tube_radius: int = 2
    skeleton_per_class: bool = False
    skeleton_fallback: bool = True

    @classmethod
    def skeleton_transform(cls, ignore_label: int | None) -> SkeletonTransform:
        return SkeletonTransform(tube_radius=cls.skeleton_tube_radius, per_class=cls.skeleton_per_class,
                                 fallback=cls.skeleton_fallback, ignore_label=ignore_label)

    @classmethod
    def region_skeleton_transform(cls, num_regions: int) -> RegionSkeletonTransform:
        return RegionSkeletonTransform(num_regions, tube_radius=cls.skeleton_tube_radius,
                                       fallback=cls.skeleton_fallback)

    @classmethod
    def _with_skeleton(cls, pipeline: ComposeTransforms, arguments: dict) -> ComposeTransforms:
        """nnU-Net's pipeline with the skeleton transform inserted (in place)."""
        regions, ignore_label = arguments["regions"], arguments["ignore_label"]
        deep_supervision = arguments["deep_supervision_scales"] is not None
        if regions is None:
            return insert_before_target_conversion(pipeline, cls.skeleton_transform(ignore_label), deep_supervision)
        refuse_ignore_label_with_regions(ignore_label, cls.__name__)  # regions_class_order: in initialize()
        return insert_after_region_conversion(pipeline, cls.region_skeleton_transform(len(regions)), deep_supervision)

    @classmethod
    def get_training_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, SkeletonTargetMixin, "get_training_transforms", args, kwargs, cls._with_skeleton)

    @classmethod
    def get_validation_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, SkeletonTargetMixin, "get_validation_transforms", args, kwargs,
                               cls._with_skeleton)

    def initialize(self) -> None:
        if self.label_manager.has_regions:
            check_region_definitions(self.label_manager.foreground_regions, self.label_manager.regions_class_order,
                                     self.label_manager.ignore_label, type(self).__name__)
        super().initialize()
        self.print_to_log_file(
            f"nnunet_ext skeleton target: tube_radius={self.skeleton_tube_radius}, "
            f"per_class={self.skeleton_per_class}, fallback={self.skeleton_fallback}")

    def validation_step(self, batch: dict) -> dict:
        # nnU-Net's validation step uses the target twice: for the loss (which needs the
        # skeleton channel) and for the online Dice (which must see labels only).
        full_target = batch["target"]
        loss = self.loss
        self.loss = _LossWithFixedTarget(loss, full_target)
        try:
            labels = labels_channels(full_target, self.label_manager.num_segmentation_heads
                                     if self.label_manager.has_regions else 1)
            return super().validation_step({**batch, "target": labels})
        finally:
            self.loss = loss
