"""The one target mechanism: extra-target transforms (distance fields, weight map, skeleton) appended to nnU-Net's
segmentation, their layout, and the Hausdorff DT and U-Net weighted-CE trainers inside nnU-Net."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss

from nnunet_ext.data.synthetic import vessel_tree
from nnunet_ext.distance import boundary_distance_field, class_boundary_distances
from nnunet_ext.losses import (
    CompoundLoss,
    HausdorffDTLoss,
    LossTerm,
    TargetLayout,
    WeightedCrossEntropyLoss,
    unet_weight_map,
)
from nnunet_ext.losses.hausdorff_dt import patch_diagonal
from nnunet_ext.trainers import (
    hausdorff_term,
    nnUNetTrainerHausdorffDT,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerUNetWeightedCE,
)
from nnunet_ext.trainers.distance_target_mixin import DistanceTargetMixin
from nnunet_ext.trainers.region_checks import RegionDefinitionError
from nnunet_ext.transforms import (
    DistanceFieldTransform,
    RegionDistanceFieldTransform,
    SkeletonTransform,
    UNetWeightMapTransform,
)
from tests.conftest import NnunetWorkspace, make_trainer

LABELS = vessel_tree((32, 28), seed=7, n_classes=2).astype(np.int16)
assert set(np.unique(LABELS)) == {0, 1, 2}


# --------------------------------------------------------------------------- the transforms


@pytest.mark.parametrize("as_torch", [True, False])
def test_distance_and_weight_blocks_make_the_segmentation_float32(as_torch: bool) -> None:
    seg = torch.from_numpy(LABELS[None]) if as_torch else LABELS[None]
    distance = DistanceFieldTransform(3, spacing=(0.5, 2.0))(segmentation=seg)["segmentation"]
    weights = UNetWeightMapTransform()(segmentation=seg)["segmentation"]
    for out in (distance, weights):
        assert type(out) is type(seg) and out.dtype in (torch.float32, np.float32)
        np.testing.assert_array_equal(np.asarray(out[0]), LABELS)  # the labels stay exact in float32
    assert distance.shape == (3, 32, 28) and weights.shape == (2, 32, 28)
    np.testing.assert_array_equal(np.asarray(distance[1:]), class_boundary_distances(LABELS, [1, 2], (0.5, 2.0)))
    np.testing.assert_array_equal(np.asarray(weights[1]), unet_weight_map(LABELS))


def test_blocks_chain_in_the_layouts_order_and_reach_every_scale() -> None:
    skeleton = SkeletonTransform()
    distance = DistanceFieldTransform(3, ignore_label=4).placed_after(2)
    weights = UNetWeightMapTransform(ignore_label=4).placed_after(4)
    pipeline = ComposeTransforms([skeleton, distance, weights, DownsampleSegForDSTransform([1, 0.5])])
    labels = LABELS.copy()
    labels[:4] = 4
    full, half = pipeline(segmentation=torch.from_numpy(labels[None]))["segmentation"]
    layout = TargetLayout([("labels", 1), ("skeleton", 1), ("distance", 2), ("weights", 1)])
    assert full.shape == (layout.channels, 32, 28) and full.dtype == torch.float32
    np.testing.assert_array_equal(full[layout.slice("distance")].numpy(), class_boundary_distances(labels, [1, 2],
                                                                                                  ignore_label=4))
    np.testing.assert_array_equal(full[layout.slice("weights")][0].numpy(), unet_weight_map(labels, ignore_label=4))
    assert not full[layout.slice("weights")][:, :4].any()  # ignored voxels: weight 0
    expected = torch.nn.functional.interpolate(full[None], (16, 14), mode="nearest-exact")[0]
    assert torch.equal(half, expected)  # every block sampled at the same voxels as the labels
    with pytest.raises(ValueError, match=r"shaped \(2, X, Y\)"):
        distance(segmentation=torch.from_numpy(labels[None]))


def test_region_distance_fields() -> None:
    regions = np.stack([LABELS > 0, LABELS == 2])
    out = RegionDistanceFieldTransform(2, spacing=(1.0, 3.0))(segmentation=torch.from_numpy(regions))["segmentation"]
    assert out.shape == (4, 32, 28) and out.dtype == torch.float32
    for r in range(2):
        np.testing.assert_array_equal(out[2 + r].numpy(), boundary_distance_field(regions[r], (1.0, 3.0)))
    with pytest.raises(ValueError, match="binary region masks"):
        RegionDistanceFieldTransform(1)(segmentation=torch.full((1, 4, 4), 2, dtype=torch.int16))


@pytest.mark.parametrize("transform", [DistanceFieldTransform(3, (1.0, 2.0), ignore_label=4),
                                       RegionDistanceFieldTransform(2, (1.0, 1.0)),
                                       UNetWeightMapTransform(w0=5, sigma=3, ignore_label=4)],
                         ids=lambda t: type(t).__name__)
def test_pickle_round_trip_and_repr(transform) -> None:
    clone = pickle.loads(pickle.dumps(transform))
    assert type(clone) is type(transform) and vars(clone) == vars(transform) and repr(clone) == repr(transform)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: DistanceFieldTransform(1), "num_classes must be >= 2"),
    (lambda: DistanceFieldTransform(3, spacing=(1.0, 0.0)), "spacing must give 2 or 3 positive values"),
    (lambda: UNetWeightMapTransform(w0=-1), "w0 must be a finite number >= 0"),
    (lambda: UNetWeightMapTransform(sigma=0), "sigma must be a finite number > 0"),
])
def test_bad_transform_settings(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_transform_inputs() -> None:
    with pytest.raises(ValueError, match="spacing .* one value per spatial axis"):
        DistanceFieldTransform(3, spacing=(1.0, 1.0, 1.0))(segmentation=LABELS[None])
    with pytest.raises(ValueError, match="UNetWeightMapTransform: labels must hold integer class labels"):
        UNetWeightMapTransform()(segmentation=LABELS[None] + 0.5)


# --------------------------------------------------------------------------- layout and compound loss


def test_layout_blocks_and_errors() -> None:
    layout = TargetLayout([("labels", 1), ("distance", 2), ("weights", 1)])
    assert layout.slice("weights") == slice(3, 4) and layout.channels == 4 and "distance" in layout
    assert str(layout) == "labels: 1, distance: 2, weights: 1"
    with pytest.raises(ValueError, match="starts with the 'labels' block"):
        TargetLayout([("skeleton", 1)])
    with pytest.raises(ValueError, match="each block may appear once"):
        TargetLayout([("labels", 1), ("skeleton", 1), ("skeleton", 1)])
    with pytest.raises(ValueError, match="integer number of channels >= 1"):
        TargetLayout([("labels", 0)])


def test_compound_hands_a_term_several_blocks_in_order() -> None:
    hd = HausdorffDTLoss()
    layout = TargetLayout([("labels", 1), ("distance", 2)])
    with pytest.raises(ValueError, match="reads the 'distance' block, which the target layout .* does not have"):
        CompoundLoss([LossTerm(hd, 1.0, ("labels", "distance"))])  # the default layout: labels, skeleton
    loss = CompoundLoss([LossTerm(hd, 0.5, ("labels", "distance"))], layout=layout)
    assert "0.5 * HausdorffDTLoss(labels, distance) [target: labels: 1, distance: 2]" in repr(loss)
    labels = torch.from_numpy(LABELS)[None, None].long()
    fields = torch.from_numpy(class_boundary_distances(LABELS, [1, 2]))[None]
    logits = torch.randn(1, 3, 32, 28)
    target = torch.cat([labels.float(), fields], 1)
    torch.testing.assert_close(loss(logits, target), 0.5 * hd(logits, labels, fields))
    with pytest.raises(ValueError, match="no distance channel: add nnunet_ext.transforms.DistanceFieldTransform"):
        loss(logits, target[:, :2])
    loss.set_weight(0, 0.0)
    with pytest.raises(ValueError, match="every term .* has weight 0"):
        loss(logits, target)


# --------------------------------------------------------------------------- the trainers inside nnU-Net


class SkeletonRecallPlusHausdorff(DistanceTargetMixin, nnUNetTrainerSkeletonRecall):
    """The README's example: two extra targets through the same mechanism, skeleton and distance fields."""

    def extra_loss_terms(self) -> list[LossTerm]:
        return super().extra_loss_terms() + [hausdorff_term(self, weight=0.1)]


def test_pipelines_hold_each_trainers_blocks_before_deep_supervision() -> None:
    ds = [[1, 1], [0.5, 0.5]]
    for trainer_class, kinds in [(nnUNetTrainerHausdorffDT, [DistanceFieldTransform]),
                                 (nnUNetTrainerUNetWeightedCE, [UNetWeightMapTransform]),
                                 (SkeletonRecallPlusHausdorff, [SkeletonTransform, DistanceFieldTransform])]:
        pipeline = trainer_class.get_validation_transforms(ds, foreground_labels=[1, 2], ignore_label=3).transforms
        types = [type(t) for t in pipeline]
        assert types[-len(kinds) - 1:] == [*kinds, DownsampleSegForDSTransform]


def _initialized(trainer_env: NnunetWorkspace, dataset: Path, trainer_class: type):
    trainer = make_trainer(trainer_env, dataset, trainer_class)
    trainer.initialize()
    return trainer


def test_hausdorff_trainer_targets_loss_and_validation(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, nnUNetTrainerHausdorffDT)
    configuration = trainer.configuration_manager
    assert trainer.target_layout() == TargetLayout([("labels", 1), ("distance", 2)])
    loader, val_loader = trainer.get_dataloaders()
    target = next(loader)["target"]
    full = target[0]
    assert full.dtype == torch.float32 and full.shape[1] == 3
    labels = full[:, :1].numpy()
    for b in range(full.shape[0]):  # the fields in mm with the configuration's spacing, 0 on the ignore label
        expected = class_boundary_distances(labels[b, 0], [1, 2], configuration.spacing, ignore_label=3)
        np.testing.assert_allclose(full[b, 1:].numpy(), expected, rtol=1e-6)

    inner = trainer.loss.loss
    assert isinstance(inner, CompoundLoss) and inner.targets[1] == ("labels", "distance")
    hd = inner.losses[1]
    assert isinstance(hd, HausdorffDTLoss) and hd.ignore_label == 3 and hd.alpha == 2
    assert hd.spacing == tuple(configuration.spacing) and hd.patch_size == tuple(configuration.patch_size)
    assert hd.distance_scale == pytest.approx(patch_diagonal(configuration.spacing, configuration.patch_size) / 100)
    assert inner.weights[1] == pytest.approx(1 / 100)  # epoch 0 of 1000: the ramp's first step
    trainer.current_epoch = 120
    trainer.on_train_epoch_start()
    assert inner.weights[1] == 1.0
    trainer.current_epoch = 49
    trainer.on_train_epoch_start()
    assert inner.weights[1] == pytest.approx(0.5)

    torch.manual_seed(0)
    outputs = [torch.randn(t.shape[0], 3, *t.shape[2:], requires_grad=True) for t in target]
    total = trainer.loss(outputs, target)
    by_hand = sum(w * (inner.losses[0](o, t[:, :1]) + 0.5 * hd(o, t[:, :1], t[:, 1:]))
                  for w, o, t in zip(trainer.loss.weight_factors, outputs, target) if w != 0)
    torch.testing.assert_close(total, by_hand)
    total.backward()
    assert all((o.grad is not None) == (w != 0) for w, o in zip(trainer.loss.weight_factors, outputs))

    batch = next(val_loader)
    trainer.network.eval()
    with torch.no_grad():
        expected = trainer.loss(trainer.network(batch["data"]), [t.clone() for t in batch["target"]])
    result = trainer.validation_step(batch)  # the online Dice sees the labels only, the ignore label zeroed
    assert result["tp_hard"].shape == (2,)
    np.testing.assert_allclose(result["loss"], expected.numpy(), rtol=1e-5)


def test_weighted_ce_trainer_targets_loss_and_validation(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, nnUNetTrainerUNetWeightedCE)
    assert trainer.target_layout() == TargetLayout([("labels", 1), ("weights", 1)])
    loader, val_loader = trainer.get_dataloaders()
    target = next(loader)["target"]
    full = target[0]
    for b in range(full.shape[0]):
        np.testing.assert_allclose(full[b, 1].numpy(), unet_weight_map(full[b, 0].numpy(), ignore_label=3), rtol=1e-6)
    inner = trainer.loss.loss
    dice, weighted = inner.losses
    assert isinstance(dice, DC_and_CE_loss) and dice.weight_ce == 0 and dice.weight_dice == 1
    assert isinstance(weighted, WeightedCrossEntropyLoss) and weighted.ignore_label == 3
    torch.manual_seed(0)
    outputs = [torch.randn(t.shape[0], 3, *t.shape[2:], requires_grad=True) for t in target]
    total = trainer.loss(outputs, target)
    by_hand = sum(w * (dice.dc(o, torch.where(t[:, :1] == 3, 0, t[:, :1]), loss_mask=t[:, :1] != 3)
                       + weighted(o, t[:, :1], t[:, 1:]))
                  for w, o, t in zip(trainer.loss.weight_factors, outputs, target) if w != 0)
    torch.testing.assert_close(total, by_hand)

    batch = next(val_loader)
    trainer.network.eval()
    result = trainer.validation_step(batch)
    assert result["tp_hard"].shape == (2,) and np.isfinite(result["loss"])


def test_two_targets_through_one_mechanism(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, SkeletonRecallPlusHausdorff)
    layout = trainer.target_layout()
    assert layout == TargetLayout([("labels", 1), ("skeleton", 1), ("distance", 2)])
    target = next(trainer.get_dataloaders()[0])["target"][0]
    assert target.shape[1] == 4
    skeleton = target[:, layout.slice("skeleton")]
    assert ((skeleton == 0) | (skeleton == target[:, :1])).all() and (skeleton > 0).any()
    inner = trainer.loss.loss
    assert [t.target for t in inner.terms] == ["labels", "skeleton", ("labels", "distance")]
    logits = torch.randn(target.shape[0], 3, *target.shape[2:])
    by_hand = (inner.losses[0](logits, target[:, :1]) + inner.losses[1](logits, target[:, 1:2])
               + 0.1 * inner.losses[2](logits, target[:, :1], target[:, 2:]))
    torch.testing.assert_close(inner(logits, target), by_hand)


def test_weighted_ce_trainer_refuses_regions() -> None:
    with pytest.raises(RegionDefinitionError, match="nnUNetTrainerUNetWeightedCE does not support region-based.*"
                                                    "nnUNetTrainerHausdorffDT"):
        nnUNetTrainerUNetWeightedCE.get_training_transforms((32, 32), (0, 0), None, (0, 1), False,
                                                            foreground_labels=[1, 2], regions=[(1, 2), 2])
