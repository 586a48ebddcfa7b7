"""nnUNetTrainerHausdorffDTDeviceFields (``distance_fields_on_device``): no ``distance`` block in the data pipeline,
the ground-truth fields computed by the loss on the training device, inside nnU-Net's own trainer, in process.

At full resolution it gives the pipeline version's loss; at a coarser deep-supervision scale the definition applied
to that scale's (downsampled) labels with that scale's voxel size, where the pipeline version samples the
full-resolution fields (nearest neighbour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunet_ext.distance import class_boundary_distances
from nnunet_ext.losses import CompoundLoss, HausdorffDTLoss, TargetLayout
from nnunet_ext.losses.hausdorff_dt import scale_spacing
from nnunet_ext.trainers import (
    nnUNetTrainerHausdorffDT,
    nnUNetTrainerHausdorffDTDeviceFields,
    nnUNetTrainerSkeletonRecall,
)
from nnunet_ext.trainers.distance_target_mixin import DistanceTargetMixin
from nnunet_ext.trainers.extra_target_mixin import TargetContext
from nnunet_ext.transforms import DistanceFieldTransform
from tests.conftest import NnunetWorkspace, make_trainer
from tests.test_loss_hot_path import no_host_sync


def _initialized(ws: NnunetWorkspace, dataset: Path, trainer_class: type, configuration: str = "2d"):
    trainer = make_trainer(ws, dataset, trainer_class, configuration=configuration)
    trainer.initialize()
    return trainer


def _hausdorff_term(trainer) -> tuple[HausdorffDTLoss, str | tuple[str, ...]]:
    """The trainer's HD_DT loss and the blocks it reads."""
    inner = trainer.loss.loss
    assert isinstance(inner, CompoundLoss)
    return inner.losses[1], inner.targets[1]


def test_device_fields_trainer_adds_no_block_and_trains_sync_free(trainer_env: NnunetWorkspace,
                                                                  dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, nnUNetTrainerHausdorffDTDeviceFields)
    assert trainer.target_layout() == TargetLayout([("labels", 1)])
    pipeline = trainer.get_training_transforms((32, 32), (0, 0), [[1, 1], [0.5, 0.5]], (0, 1), False,
                                               foreground_labels=[1, 2], ignore_label=3).transforms
    assert not any(isinstance(t, DistanceFieldTransform) for t in pipeline)  # the workers compute no field
    hd, blocks = _hausdorff_term(trainer)
    assert blocks == "labels" and "HausdorffDTLoss(labels)" in repr(trainer.loss)
    assert isinstance(hd, HausdorffDTLoss) and hd.ignore_label == 3

    loader, val_loader = trainer.get_dataloaders()
    batch = next(loader)
    assert [t.shape[1] for t in batch["target"]] == [1] * len(batch["target"])  # labels only, every scale
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(batch)["loss"])  # nnU-Net's own step; the label check ran once
    trainer.network.eval()
    result = trainer.validation_step(next(val_loader))
    assert np.isfinite(result["loss"]) and result["tp_hard"].shape == (2,)
    trainer.network.train()

    # the HD term at every scale (nnU-Net's own Dice + CE syncs with an ignore label; not ours to change)
    outputs = [torch.randn(t.shape[0], 3, *t.shape[2:], requires_grad=True) for t in batch["target"]]
    with no_host_sync():
        value = sum(hd(output, labels) for output, labels in zip(outputs, batch["target"]))
        value.backward()
    assert torch.isfinite(value) and all(output.grad.abs().sum() > 0 for output in outputs)


@pytest.mark.parametrize(("dataset", "configuration"), [("dataset_2d", "2d"), ("dataset_3d", "3d_fullres")])
def test_device_fields_equal_the_pipeline_at_full_resolution_and_the_definition_when_coarser(
        trainer_env: NnunetWorkspace, request: pytest.FixtureRequest, dataset: str, configuration: str) -> None:
    folder = request.getfixturevalue(dataset)
    pipeline = _initialized(trainer_env, folder, nnUNetTrainerHausdorffDT, configuration)
    device = _initialized(trainer_env, folder, nnUNetTrainerHausdorffDTDeviceFields, configuration)
    (hd_pipeline, _), (hd_device, _) = _hausdorff_term(pipeline), _hausdorff_term(device)
    assert repr(hd_pipeline) == repr(hd_device)  # same settings: spacing, patch, scale, ignore label
    target = next(pipeline.get_dataloaders()[0])["target"]  # labels and the workers' fields, every scale
    num_classes = pipeline.label_manager.num_segmentation_heads
    ignore_label = pipeline.label_manager.ignore_label
    generator = torch.Generator().manual_seed(3)

    full = target[0]
    assert ignore_label is None or (full[:, 0] == ignore_label).any()  # the 2D data: ignored voxels in the batch
    logits = 3 * torch.randn(full.shape[0], num_classes, *full.shape[2:], generator=generator)
    torch.testing.assert_close(hd_device(logits, full[:, :1]), hd_pipeline(logits, full[:, :1], full[:, 1:]),
                               rtol=1e-5, atol=1e-6)

    coarse = target[1]
    labels = coarse[:, :1]
    logits = 3 * torch.randn(coarse.shape[0], num_classes, *coarse.shape[2:], generator=generator)
    spacing = scale_spacing(hd_device.spacing, hd_device.patch_size, coarse.shape[2:])
    assert spacing == tuple(2 * s for s in hd_device.spacing)  # the first coarser scale: voxels twice as large
    own_fields = torch.from_numpy(np.stack([
        class_boundary_distances(sample[0].numpy(), range(1, num_classes), spacing, ignore_label)
        for sample in labels]))  # the workers' numpy fields (not the torch EDT) of the downsampled labels
    torch.testing.assert_close(hd_device(logits, labels), hd_pipeline(logits, labels, own_fields),
                               rtol=1e-5, atol=1e-6)
    assert not torch.allclose(own_fields, coarse[:, 1:])  # the pipeline's sampled full-resolution fields differ


def test_the_coarse_labels_are_nnunets_downsampling_of_the_full_labels() -> None:
    """What the device fields at a coarser scale are computed from: nnU-Net's nearest-neighbour downsampling of the
    labels, the same voxels the pipeline samples its full-resolution fields at."""
    labels = torch.zeros(1, 16, 16, dtype=torch.int16)
    labels[0, 4:9, 3:12] = 1
    full, half = DownsampleSegForDSTransform([[1, 1], [0.5, 0.5]])(segmentation=labels)["segmentation"]
    expected = torch.nn.functional.interpolate(labels[None].float(), (8, 8), mode="nearest-exact")[0]
    assert torch.equal(full, labels) and torch.equal(half.float(), expected)


def test_the_option_combines_with_other_targets() -> None:
    """architecture.md's Skeleton Recall + Hausdorff trainer with the option: the skeleton block stays, the distance
    block goes."""
    class WithFields(DistanceTargetMixin, nnUNetTrainerSkeletonRecall):
        pass

    class OnDevice(WithFields):
        distance_fields_on_device = True

    context = TargetContext(foreground_labels=(1, 2))
    assert WithFields.layout_of(context) == TargetLayout([("labels", 1), ("skeleton", 1), ("distance", 2)])
    assert OnDevice.layout_of(context) == TargetLayout([("labels", 1), ("skeleton", 1)])
