"""Trainer mixin: every sample's label values are checked in the data pipeline (on the CPU).

Mix in before the nnU-Net trainer class. ``LabelCheckTransform`` goes into nnU-Net's training and
validation pipelines after its label clean-up (-1 -> 0) and before region conversion and
deep-supervision downsampling, so a label that dataset.json does not define stops training with a
message naming the value and the fix, instead of an index error inside nnU-Net's cross entropy.
"""

from __future__ import annotations

from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_ext.trainers.pipeline_edits import edited_pipeline, insert_before_target_conversion
from nnunet_ext.transforms import LabelCheckTransform


def _with_label_check(pipeline: ComposeTransforms, arguments: dict) -> ComposeTransforms:
    foreground = arguments.get("foreground_labels")
    if foreground is None:  # a caller that does not say which labels exist: nothing to check against
        return pipeline
    ignore = arguments.get("ignore_label")
    allowed = [0, *foreground, *([] if ignore is None else [ignore])]
    return insert_before_target_conversion(pipeline, LabelCheckTransform(allowed),
                                           arguments.get("deep_supervision_scales") is not None)


class LabelCheckMixin:
    """Adds ``LabelCheckTransform`` to nnU-Net's training and validation pipelines."""

    @classmethod
    def get_training_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, LabelCheckMixin, "get_training_transforms", args, kwargs, _with_label_check)

    @classmethod
    def get_validation_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, LabelCheckMixin, "get_validation_transforms", args, kwargs, _with_label_check)
