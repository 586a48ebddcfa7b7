"""The Skeleton Recall trainer inside nnU-Net: pipelines, deep-supervision targets, loss, discovery."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.commands.nnunet_runs import trainers_path
from nnunet_ext.losses import ComboLoss, CompoundLoss, SoftClDiceLoss, SoftSkeletonRecallLoss
from nnunet_ext.trainers import (
    cldice_term,
    nnUNetTrainerClDice,
    nnUNetTrainerCombo,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerSkeletonRecall_w2,
    nnUNetTrainerSkeletonRecallPerClass,
)
from nnunet_ext.transforms import SkeletonTransform
from tests.conftest import NnunetWorkspace, make_trainer


def test_constructor_signature_is_nnunets():
    # nnU-Net records init args from the signature and re-creates trainers from them
    assert (inspect.signature(nnUNetTrainerSkeletonRecall.__init__)
            == inspect.signature(nnUNetTrainer.__init__))


def test_weight_is_a_class_attribute_with_named_variants():
    assert nnUNetTrainerSkeletonRecall.skeleton_recall_weight == 1.0
    assert nnUNetTrainerSkeletonRecall_w2.skeleton_recall_weight == 2.0


@pytest.mark.parametrize("with_ds", [True, False])
def test_skeleton_transform_sits_after_label_cleanup_and_before_ds(with_ds: bool):
    ds_scales = [[1, 1], [0.5, 0.5], [0.25, 0.25]] if with_ds else None
    training = nnUNetTrainerSkeletonRecall.get_training_transforms(
        (64, 64), (0, 0), ds_scales, (0, 1), False, ignore_label=3).transforms
    validation = nnUNetTrainerSkeletonRecall.get_validation_transforms(ds_scales, ignore_label=3).transforms
    for pipeline in (training, validation):
        kinds = [type(t) for t in pipeline]
        position = kinds.index(SkeletonTransform)
        assert kinds.count(SkeletonTransform) == 1
        assert kinds.index(RemoveLabelTransform) < position
        if with_ds:
            assert kinds.index(DownsampleSegForDSTransform) == position + 1
        else:
            assert position == len(kinds) - 1
        assert pipeline[position].ignore_label == 3


def _skeleton_target(trainer_class, labels: np.ndarray) -> np.ndarray:
    """The skeleton channel the trainer's validation pipeline makes from a (X, Y) label map."""
    pipeline = trainer_class.get_validation_transforms(None)
    out = pipeline(image=torch.zeros((1, *labels.shape)), segmentation=torch.from_numpy(labels[None]))
    return out["segmentation"][1].numpy()


def test_per_class_variant_keeps_the_skeleton_of_a_thin_class_touching_a_thick_one():
    labels = np.zeros((64, 64), dtype=np.int16)
    labels[10:31, 4:60] = 1  # a thick vessel
    labels[31, 4:60] = 2  # a one-pixel class along its edge
    binarized = _skeleton_target(nnUNetTrainerSkeletonRecall, labels)
    per_class = _skeleton_target(nnUNetTrainerSkeletonRecallPerClass, labels)
    assert (binarized == 1).any() and not (binarized == 2).any(), "the union's centreline misses class 2"
    assert (per_class == 2).sum() >= 50 and (per_class == 1).any(), "each class keeps its own centreline"
    assert nnUNetTrainerSkeletonRecallPerClass.skeleton_per_class and not nnUNetTrainerSkeletonRecall.skeleton_per_class


def test_every_deep_supervision_output_gets_its_own_skeleton_term(trainer_env: NnunetWorkspace, dataset_2d: Path):
    trainer = make_trainer(trainer_env, dataset_2d)
    trainer.initialize()
    scales = trainer._get_deep_supervision_scales()
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    target = batch["target"]
    assert len(target) == len(scales) >= 3
    patch = np.array(trainer.configuration_manager.patch_size)
    for scale, t in zip(scales, target):
        assert t.shape[1] == 2, "channel 0 = labels, channel 1 = tubed skeleton"
        assert list(t.shape[2:]) == [round(p * s) for p, s in zip(patch, scale)]
        labels, tube = t[:, 0], t[:, 1]
        assert (tube[tube > 0] == labels[tube > 0]).all()  # tube voxels carry their class at every scale
        assert (tube != 3).all()  # the ignore label is never a skeleton target
    assert (target[0][:, 1] > 0).any(), "the oversampled foreground patch has a skeleton"

    # The loss is nnU-Net's own deep-supervision wrapper around CE+Dice and the recall term,
    # so each scale's output is scored against that scale's skeleton.
    loss = trainer.loss
    inner = loss.loss
    assert isinstance(inner, CompoundLoss)
    assert isinstance(inner.terms[1].loss, SoftSkeletonRecallLoss)
    torch.manual_seed(0)
    outputs = [torch.randn(t.shape[0], 3, *t.shape[2:], requires_grad=True) for t in target]
    total = loss(outputs, target)
    recall = inner.terms[1].loss
    by_hand = sum(w * (inner.terms[0].loss(o, t[:, :1]) + recall(o, t[:, 1:]))
                  for w, o, t in zip(loss.weight_factors, outputs, target) if w != 0)
    torch.testing.assert_close(total, by_hand)
    total.backward()
    for w, o in zip(loss.weight_factors, outputs):
        if w != 0:
            assert o.grad is not None and o.grad.abs().sum() > 0
    # the recall term alone reaches every weighted scale
    for w, o, t in zip(loss.weight_factors, outputs, target):
        if w != 0 and (t[:, 1] > 0).any():
            o_leaf = o.detach().clone().requires_grad_(True)
            recall(o_leaf, t[:, 1:]).backward()
            assert o_leaf.grad.abs().sum() > 0


def test_validation_step_scores_labels_and_uses_the_skeleton_in_the_loss(trainer_env: NnunetWorkspace,
                                                                        dataset_2d: Path):
    trainer = make_trainer(trainer_env, dataset_2d)
    trainer.initialize()
    _, val_loader = trainer.get_dataloaders()
    batch = next(val_loader)
    trainer.network.eval()
    with torch.no_grad():  # before the step: nnU-Net's step zeroes ignore-label voxels in place afterwards
        expected = trainer.loss(trainer.network(batch["data"]), [t.clone() for t in batch["target"]])
    result = trainer.validation_step(batch)
    assert result["tp_hard"].shape == (2,)  # two foreground classes; the skeleton channel is not a class
    np.testing.assert_allclose(result["loss"], expected.numpy(), rtol=1e-5)


def test_nnunet_finds_the_trainers_through_trainers_path():
    # a subprocess: nnU-Net's lookup imports and then unloads modules from the folder
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "c = f('nnUNetTrainerSkeletonRecall_w0p5')\n"
            "print(c.__name__, c.skeleton_recall_weight)\n")
    env = {**os.environ, "nnUNet_extTrainer": str(trainers_path())}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nnUNetTrainerSkeletonRecall_w0p5 0.5" in out.stdout


class SkeletonRecallPlusClDice(nnUNetTrainerSkeletonRecall):
    """The README's example: a combination of losses in a few lines."""

    def extra_loss_terms(self):
        return super().extra_loss_terms() + [cldice_term(self, weight=0.5)]


def _loss_on_a_batch(trainer) -> tuple[torch.Tensor, list, list]:
    loader, _ = trainer.get_dataloaders()
    target = next(loader)["target"]
    torch.manual_seed(0)
    outputs = [torch.randn(t.shape[0], 3, *t.shape[2:], requires_grad=True) for t in target]
    return trainer.loss(outputs, target), outputs, target


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerClDice, nnUNetTrainerCombo, SkeletonRecallPlusClDice])
def test_loss_trainers_compose_inside_nnunets_deep_supervision(trainer_env: NnunetWorkspace, dataset_2d: Path,
                                                               trainer_class):
    trainer = make_trainer(trainer_env, dataset_2d, trainer_class)
    trainer.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    inner = trainer.loss.loss
    uses_skeleton = issubclass(trainer_class, nnUNetTrainerSkeletonRecall)
    pipeline = [type(t) for t in trainer_class.get_training_transforms(
        (64, 64), (0, 0), [[1, 1], [0.5, 0.5]], (0, 1), False, ignore_label=3).transforms]
    assert (SkeletonTransform in pipeline) == uses_skeleton
    if trainer_class is nnUNetTrainerCombo:
        assert isinstance(inner, ComboLoss) and inner.ignore_label == 3
    else:
        assert isinstance(inner, CompoundLoss)
        kinds = [type(t.loss) for t in inner.terms]
        assert SoftClDiceLoss in kinds and (SoftSkeletonRecallLoss in kinds) == uses_skeleton
        assert [t.loss for t in inner.terms if isinstance(t.loss, SoftClDiceLoss)][0].ignore_label == 3
    total, outputs, target = _loss_on_a_batch(trainer)
    if trainer_class is not nnUNetTrainerCombo:
        by_hand = sum(w * sum(term.weight * term.loss(o, t[:, (1 if term.target == "skeleton" else 0):][:, :1])
                              for term in inner.terms)
                      for w, o, t in zip(trainer.loss.weight_factors, outputs, target) if w != 0)
        torch.testing.assert_close(total, by_hand)
    total.backward()
    for w, o in zip(trainer.loss.weight_factors, outputs):
        assert (o.grad is not None and o.grad.abs().sum() > 0) == (w != 0)


def test_every_trainer_adds_topology_metrics_to_its_final_validation():
    import nnunet_ext.trainers as trainers
    from nnunet_ext.trainers.topology_validation_mixin import TopologyValidationMixin

    classes = [getattr(trainers, name) for name in trainers.__all__ if inspect.isclass(getattr(trainers, name))]
    assert len(classes) >= 14
    for trainer in classes:
        assert issubclass(trainer, TopologyValidationMixin) and trainer.topology_validation, trainer.__name__
