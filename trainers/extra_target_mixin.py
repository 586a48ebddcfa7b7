"""Trainer mixin: extra training targets ride along in nnU-Net's segmentation, after the labels.

nnU-Net's data loader passes only ``image`` and ``segmentation`` through the transforms. A trainer that needs
more than the labels (a tubed skeleton, ground-truth distance fields, a pixel weight map) lists
``ExtraTargetTransform``s in ``extra_target_transforms``; this mixin inserts them into nnU-Net's training and
validation pipelines *before* its deep-supervision downsampling (label maps: before the region conversion too;
region-based training: right after it), which then carries every appended channel to every output scale. The
target is then the ``TargetLayout`` labels, then each transform's block in order; ``target_layout()`` hands it to
``CompoundLoss`` (``LossTermsMixin``), and ``validation_step`` gives nnU-Net's online Dice the labels only.

Mix in before the nnU-Net trainer class: ``class T(SkeletonTargetMixin, ExtTrainerBase)``; the specific mixins
(skeleton, distance fields, weight map) override ``extra_target_transforms`` cooperatively, so they combine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_ext.losses import TargetLayout
from nnunet_ext.trainers.pipeline_edits import (
    edited_pipeline,
    insert_after_region_conversion,
    insert_before_target_conversion,
    pipeline_method,
)
from nnunet_ext.trainers.region_checks import refuse_ignore_label_with_regions
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform


@dataclass(frozen=True)
class TargetContext:
    """What the extra-target transforms of a pipeline are built from.

    Attributes:
        foreground_labels: the label values of the foreground classes (None when the caller does not say).
        regions: nnU-Net's foreground regions, or None for label maps.
        ignore_label: the dataset's ignore label, or None.
        spacing: the configuration's voxel spacing (None when a pipeline is built from the class, without a
            trainer's configuration: unit spacing).
    """

    foreground_labels: Sequence[int] | None = None
    regions: Sequence | None = None
    ignore_label: int | None = None
    spacing: tuple[float, ...] | None = None

    @property
    def label_channels(self) -> int:
        """Channels of the labels block: 1, or one per region."""
        return 1 if self.regions is None else len(self.regions)


def labels_block(target: torch.Tensor | list[torch.Tensor], count: int = 1) -> torch.Tensor | list[torch.Tensor]:
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


def _trainer_class(trainer: object) -> type:
    return trainer if isinstance(trainer, type) else type(trainer)


def _spacing(trainer: object) -> tuple[float, ...] | None:
    """The configuration's spacing of a trainer instance; None for a class."""
    if isinstance(trainer, type):
        return None
    return tuple(float(s) for s in trainer.configuration_manager.spacing)


def _pipeline_with_extra_targets(trainer: object, method_name: str, args: tuple, kwargs: dict) -> ComposeTransforms:
    """nnU-Net's pipeline ``method_name(*args, **kwargs)`` with the trainer's extra-target transforms inserted."""
    cls = _trainer_class(trainer)
    return edited_pipeline(cls, ExtraTargetMixin, method_name, args, kwargs,
                           lambda pipeline, arguments: cls._with_extra_targets(pipeline, arguments, _spacing(trainer)))


class ExtraTargetMixin:
    """Inserts the trainer's ``extra_target_transforms`` into nnU-Net's training and validation pipelines."""

    @classmethod
    def extra_target_transforms(cls, context: TargetContext) -> list[ExtraTargetTransform]:
        """The transforms appending this trainer's target blocks, in order (default: none). Override
        cooperatively: ``return [*super().extra_target_transforms(context), MyTransform(...)]``."""
        return []

    @classmethod
    def placed_target_transforms(cls, context: TargetContext) -> list[ExtraTargetTransform]:
        """``extra_target_transforms``, each told how many channels precede it."""
        transforms = cls.extra_target_transforms(context)
        if transforms and context.regions is not None:
            refuse_ignore_label_with_regions(context.ignore_label, cls.__name__, transforms)
        channels = context.label_channels
        for transform in transforms:
            if transform.label_channels != context.label_channels:
                raise ValueError(f"{transform!r} reads {transform.label_channels} label channel(s), but the target has "
                                 f"{context.label_channels}")
            transform.placed_after(channels)
            channels += transform.block_channels
        return transforms

    @classmethod
    def layout_of(cls, context: TargetContext) -> TargetLayout:
        """The target layout the pipelines built for ``context`` deliver."""
        layout = TargetLayout([("labels", context.label_channels)])
        for transform in cls.extra_target_transforms(context):
            layout = layout.appended(transform.block_name, transform.block_channels)
        return layout

    def target_context(self) -> TargetContext:
        """The context of this trainer's own pipelines (its label manager and configuration)."""
        manager = self.label_manager
        return TargetContext(foreground_labels=tuple(manager.foreground_labels),
                             regions=manager.foreground_regions if manager.has_regions else None,
                             ignore_label=manager.ignore_label, spacing=_spacing(self))

    def target_layout(self) -> TargetLayout:
        """Labels, then the blocks of ``extra_target_transforms``: what ``CompoundLoss`` reads."""
        return self.layout_of(self.target_context())

    @classmethod
    def _with_extra_targets(cls, pipeline: ComposeTransforms, arguments: dict,
                            spacing: tuple[float, ...] | None) -> ComposeTransforms:
        """nnU-Net's pipeline with the extra-target transforms inserted (in place)."""
        context = TargetContext(foreground_labels=arguments.get("foreground_labels"), regions=arguments["regions"],
                                ignore_label=arguments["ignore_label"], spacing=spacing)
        deep_supervision = arguments["deep_supervision_scales"] is not None
        for transform in cls.placed_target_transforms(context):
            if context.regions is None:
                insert_before_target_conversion(pipeline, transform, deep_supervision)
            else:
                insert_after_region_conversion(pipeline, transform, deep_supervision)
        return pipeline

    @pipeline_method
    def get_training_transforms(trainer, *args, **kwargs) -> ComposeTransforms:
        return _pipeline_with_extra_targets(trainer, "get_training_transforms", args, kwargs)

    @pipeline_method
    def get_validation_transforms(trainer, *args, **kwargs) -> ComposeTransforms:
        return _pipeline_with_extra_targets(trainer, "get_validation_transforms", args, kwargs)

    def initialize(self) -> None:
        super().initialize()  # (LossTermsMixin checks the region definitions while it builds the loss)
        transforms = self.placed_target_transforms(self.target_context())
        appended = ", ".join(map(repr, transforms)) or "nothing (nnU-Net's own target)"
        self.print_to_log_file(f"nnunet_ext target: {self.target_layout()}; appended in the data pipeline by "
                               f"{appended}")

    def validation_step(self, batch: dict) -> dict:
        # nnU-Net's validation step uses the target twice: for the loss (which needs the
        # extra blocks) and for the online Dice (which must see labels only).
        full_target = batch["target"]
        loss = self.loss
        self.loss = _LossWithFixedTarget(loss, full_target)
        try:
            labels = labels_block(full_target, self.label_manager.num_segmentation_heads
                                  if self.label_manager.has_regions else 1)
            return super().validation_step({**batch, "target": labels})
        finally:
            self.loss = loss
