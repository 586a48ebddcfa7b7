"""Our transforms inside nnU-Net's pipelines: the label check on every sample, and clear errors when a
trainer's pipeline does not have the layout they are inserted into."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall
from nnunet_ext.trainers.pipeline_edits import PipelineLayoutError
from nnunet_ext.trainers.skeleton_target_mixin import SkeletonTargetMixin
from nnunet_ext.transforms import ExtraTargetTransform, LabelCheckTransform, LabelValueError, SkeletonTransform
from tests.trainer_matrix import trainer_classes

TRAINERS = trainer_classes()
DS_SCALES = [[1, 1], [0.5, 0.5], [0.25, 0.25]]


def _pipelines(trainer_class: type, ds_scales=DS_SCALES, **kwargs) -> tuple[list, list]:
    training = trainer_class.get_training_transforms((32, 32), (0, 0), ds_scales, (0, 1), False,
                                                     foreground_labels=[1, 2], **kwargs)
    validation = trainer_class.get_validation_transforms(ds_scales, foreground_labels=[1, 2], **kwargs)
    return training.transforms, validation.transforms


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda c: c.__name__)
def test_every_trainer_checks_labels_after_cleanup_and_before_the_skeleton_and_ds(trainer_class: type) -> None:
    for pipeline in _pipelines(trainer_class, ignore_label=3):
        kinds = [type(t) for t in pipeline]
        assert kinds.count(LabelCheckTransform) == 1
        check = kinds.index(LabelCheckTransform)
        assert kinds.index(RemoveLabelTransform) < check < kinds.index(DownsampleSegForDSTransform)
        for position, transform in enumerate(pipeline):
            if isinstance(transform, ExtraTargetTransform):  # skeleton, distance fields, weight map
                assert check < position < kinds.index(DownsampleSegForDSTransform)
        assert pipeline[check].allowed_labels == (0, 1, 2, 3)  # background, classes, ignore label


def test_the_validation_pipeline_stops_on_an_undefined_label() -> None:
    pipeline = nnUNetTrainerSkeletonRecall.get_validation_transforms(None, foreground_labels=[1, 2])
    labels = torch.zeros(1, 16, 16, dtype=torch.int16)
    labels[0, 3:6, 4] = 2
    out = pipeline(image=torch.zeros(1, 16, 16), segmentation=labels.clone())
    assert out["segmentation"].shape[0] == 2  # labels + skeleton
    labels[0, 8, 8] = 3
    with pytest.raises(LabelValueError, match=r"value\(s\) 3 .*--verify_dataset_integrity"):
        pipeline(image=torch.zeros(1, 16, 16), segmentation=labels)


@pytest.mark.parametrize("bad", [5, -2, 0.5, float("nan")])
@pytest.mark.parametrize("as_torch", [True, False])
def test_label_check_refuses_values_outside_the_labels(bad: float, as_torch: bool) -> None:
    seg = np.zeros((1, 6, 6), dtype=np.float32)
    seg[0, 1, 1] = 2
    check = LabelCheckTransform([0, 1, 2])
    ok = torch.from_numpy(seg.copy()) if as_torch else seg.copy()
    assert check(segmentation=ok)["segmentation"] is ok  # unchanged, not copied
    seg[0, 2, 2] = bad
    with pytest.raises(LabelValueError, match="does not define"):
        check(segmentation=torch.from_numpy(seg) if as_torch else seg)


def test_label_check_with_labels_that_are_not_consecutive() -> None:
    check = LabelCheckTransform([0, 1, 4], labels_description="{'background': 0, 'a': 1, 'b': 4}")
    check(segmentation=np.array([[[0, 1, 4]]], dtype=np.int16))
    with pytest.raises(LabelValueError, match=r"value\(s\) 2 .*'b': 4"):
        check(segmentation=np.array([[[0, 2, 4]]], dtype=np.int16))


class WithoutDeepSupervisionDownsampling(nnUNetTrainer):
    """A user's trainer whose training pipeline lost nnU-Net's DS downsampling at the top level (wrapped)."""

    @staticmethod
    def get_training_transforms(*args, **kwargs) -> BasicTransform:
        pipeline = nnUNetTrainer.get_training_transforms(*args, **kwargs)
        for i, t in enumerate(pipeline.transforms):
            if isinstance(t, DownsampleSegForDSTransform):
                pipeline.transforms[i] = ComposeTransforms([t])
        return pipeline


def test_a_wrapped_ds_downsampling_is_a_clear_error_when_the_pipeline_is_built() -> None:
    trainer_class = type("T", (SkeletonTargetMixin, WithoutDeepSupervisionDownsampling), {})
    with pytest.raises(PipelineLayoutError, match="no top-level DownsampleSegForDSTransform.*deep supervision"):
        trainer_class.get_training_transforms((32, 32), (0, 0), DS_SCALES, (0, 1), False)
    # without deep supervision the skeleton simply goes last
    assert isinstance(trainer_class.get_training_transforms((32, 32), (0, 0), None, (0, 1), False).transforms[-1],
                      SkeletonTransform)


class WithAnExtraPipelineArgument(nnUNetTrainer):
    """A user's trainer whose validation pipeline takes an extra argument (nnUNetTrainer's signature differs)."""

    @staticmethod
    def get_validation_transforms(extra_blur: bool, deep_supervision_scales, is_cascaded: bool = False,
                                  foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        return nnUNetTrainer.get_validation_transforms(deep_supervision_scales, is_cascaded, foreground_labels,
                                                       regions, ignore_label)


def test_arguments_are_bound_with_the_next_classs_signature() -> None:
    trainer_class = type("T", (SkeletonTargetMixin, WithAnExtraPipelineArgument), {})
    pipeline = trainer_class.get_validation_transforms(True, DS_SCALES, False, [1], None, 4).transforms
    skeleton = next(t for t in pipeline if isinstance(t, SkeletonTransform))
    assert skeleton.ignore_label == 4
    assert isinstance(pipeline[pipeline.index(skeleton) + 1], DownsampleSegForDSTransform)
