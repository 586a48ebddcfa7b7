"""Region-based training (dataset.json ``regions``, sigmoid outputs): losses, skeleton target, checks, trainers.

The region losses are checked against their softmax definitions: one sigmoid output z is the
two-class softmax of logits (0, z), so on every region channel the region loss equals the softmax
loss on (0, z_r) with the region as class 1, and over R regions it is the mean of those.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from torch import nn

from nnunet_ext.data.synthetic import vessel_tree, write_raw_dataset
from nnunet_ext.distance import boundary_distance_field
from nnunet_ext.losses import (
    CbDiceLoss,
    ClCELoss,
    ComboLoss,
    CompoundLoss,
    LossTerm,
    RegionCbDiceLoss,
    RegionClCELoss,
    RegionClDiceLoss,
    RegionComboLoss,
    RegionHausdorffDTLoss,
    RegionSkeletonRecallLoss,
    SoftClDiceLoss,
    SoftSkeletonRecallLoss,
)
from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.trainers import (
    nnUNetTrainerClDice,
    nnUNetTrainerCombo,
    nnUNetTrainerHausdorffDT,
    nnUNetTrainerHausdorffDTDeviceFields,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerUNet3PlusCGM,
    nnUNetTrainerUNetWeightedCE,
)
from nnunet_ext.trainers.region_checks import RegionDefinitionError, check_regions_class_order
from nnunet_ext.transforms import RegionSkeletonTransform
from tests.conftest import NnunetWorkspace, make_trainer, prepared_dataset
from tests.trainer_matrix import cases

# region loss -> (its softmax counterpart, keyword arguments for both)
# (clDice computes in float32 like nnU-Net's other losses; the others keep float64 inputs.)
PAIRS = {
    "skeleton_recall": (RegionSkeletonRecallLoss, SoftSkeletonRecallLoss, {}),
    "cldice": (RegionClDiceLoss, SoftClDiceLoss, {"iterations": 2}),
    "combo": (RegionComboLoss, ComboLoss, {"alpha": 0.3, "beta": 0.7}),
    "cbdice": (RegionCbDiceLoss, CbDiceLoss, {"iterations": 4}),
    "clce": (RegionClCELoss, ClCELoss, {"iterations": 2}),
}


def _overlapping_regions(seeds: tuple[int, ...] = (6, 7)) -> torch.Tensor:
    """(B, 2, 40, 36) bool: region 0 = a vessel tree, region 1 = its class-2 branches (inside region 0).

    These seeds grow trees with class-2 branches."""
    trees = [vessel_tree((40, 36), seed=seed, n_classes=2) for seed in seeds]
    assert all((t == 2).any() for t in trees)
    return torch.from_numpy(np.stack([np.stack([t > 0, t == 2]) for t in trees]))


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("name", PAIRS)
def test_region_loss_is_the_mean_of_softmax_losses_on_each_region(name: str, batch_dice: bool) -> None:
    region_class, softmax_class, kwargs = PAIRS[name]
    regions = _overlapping_regions()
    logits = (3 * torch.randn(regions.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    logits.requires_grad_(True)
    loss = region_class(batch_dice=batch_dice, **kwargs)(logits, regions)
    softmax = softmax_class(batch_dice=batch_dice, **kwargs)
    per_region = [softmax(torch.cat([torch.zeros_like(logits[:, r:r + 1]), logits[:, r:r + 1]], 1),
                          regions[:, r:r + 1].long()) for r in range(regions.shape[1])]
    expected = torch.stack(per_region).mean()
    float32 = name in ("cldice", "cbdice")
    tolerance = {"atol": 1e-6, "rtol": 1e-5} if float32 else {"atol": 1e-10, "rtol": 1e-7}
    torch.testing.assert_close(loss, expected.to(loss.dtype), **tolerance)
    grad, = torch.autograd.grad(loss, logits)
    expected_grad, = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, **tolerance)
    assert grad.abs().max() > 1e-4


def test_region_recall_counts_each_region_skeleton() -> None:
    skeleton = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    skeleton[0, 0, 2:6, 3] = True
    skeleton[0, 1, 4, 1:7] = True  # overlaps region 0's skeleton at (4, 3)
    logits = torch.full((1, 2, 8, 8), -30.0)
    logits[0, 0][skeleton[0, 0]] = 30.0  # region 0's skeleton fully covered, region 1's not at all
    loss = RegionSkeletonRecallLoss(smooth=0.0)(logits, skeleton)
    torch.testing.assert_close(loss, torch.tensor(-0.5))


@pytest.mark.parametrize("loss_class", [RegionSkeletonRecallLoss, RegionClDiceLoss, RegionComboLoss, RegionCbDiceLoss,
                                        RegionClCELoss])
def test_region_losses_refuse_bad_targets(loss_class: type) -> None:
    logits = torch.zeros(1, 2, 8, 8)
    loss = loss_class()
    with pytest.raises(ValueError, match="one binary mask per region"):
        loss(logits, torch.zeros(1, 1, 8, 8))  # a label map's shape
    with pytest.raises(ValueError, match="binary region masks"):
        loss(logits, torch.full((1, 2, 8, 8), 2))
    assert not torch.isfinite(loss(torch.full((1, 2, 8, 8), float("nan")), torch.ones(1, 2, 8, 8)))


class _Recorder(nn.Module):
    """A loss that records the target block it is handed and returns its sum."""

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen = target
        return target.float().sum()


def test_compound_loss_reads_blocks_of_region_channels() -> None:
    labels, skeleton = _Recorder(), _Recorder()
    loss = CompoundLoss([LossTerm(labels, 1.0, "labels"), LossTerm(skeleton, 2.0, "skeleton")], label_channels=2)
    target = torch.arange(4).view(1, 4, 1, 1).expand(1, 4, 3, 3)
    total = loss(torch.zeros(1, 2, 3, 3), target)
    assert labels.seen[0, :, 0, 0].tolist() == [0, 1] and skeleton.seen[0, :, 0, 0].tolist() == [2, 3]
    assert total.item() == 9 * (0 + 1) + 2 * 9 * (2 + 3)
    with pytest.raises(ValueError, match="no skeleton channel"):
        loss(torch.zeros(1, 2, 3, 3), target[:, :3])
    with pytest.raises(ValueError, match="label_channels"):
        CompoundLoss([LossTerm(labels)], label_channels=0)


@pytest.mark.parametrize("as_torch", [True, False])
def test_region_skeleton_transform_appends_the_skeleton_of_each_whole_region(as_torch: bool) -> None:
    regions = _overlapping_regions((7,))[0]
    segmentation = regions if as_torch else regions.numpy().astype(np.uint8)
    out = RegionSkeletonTransform(2)(segmentation=segmentation)["segmentation"]
    assert type(out) is type(segmentation) and out.dtype == segmentation.dtype and out.shape[0] == 4
    out = np.asarray(out).astype(bool)
    np.testing.assert_array_equal(out[:2], regions.numpy())
    for r in range(2):
        expected = tubed_skeleton(regions[r].numpy().astype(np.uint8)) > 0
        np.testing.assert_array_equal(out[2 + r], expected)
        assert out[2 + r].any() and not (out[2 + r] & ~out[r]).any()  # tube inside its region
    # the tree's centreline is not the union of its labels' centrelines: it runs through the trunk
    assert not np.array_equal(out[2], out[3])


def test_region_skeleton_transform_refuses_label_maps_and_wrong_region_counts() -> None:
    with pytest.raises(ValueError, match="2 region masks"):
        RegionSkeletonTransform(2)(segmentation=torch.zeros(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="binary region masks.*ConvertSegmentationToRegionsTransform"):
        RegionSkeletonTransform(1)(segmentation=torch.full((1, 8, 8), 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_regions"):
        RegionSkeletonTransform(0)


@pytest.mark.parametrize("with_ds", [True, False])
def test_region_pipelines_put_the_skeleton_right_after_the_region_conversion(with_ds: bool) -> None:
    ds_scales = [[1, 1], [0.5, 0.5]] if with_ds else None
    regions = [(1, 2), 2]
    training = nnUNetTrainerSkeletonRecall.get_training_transforms(
        (32, 32), (0, 0), ds_scales, (1, 2), False, regions=regions)
    validation = nnUNetTrainerSkeletonRecall.get_validation_transforms(ds_scales, False, (1, 2), regions)
    for pipeline in (training, validation):
        kinds = [type(t) for t in pipeline.transforms]
        position = kinds.index(RegionSkeletonTransform)
        assert kinds.index(ConvertSegmentationToRegionsTransform) == position - 1
        assert kinds[position + 1:] == ([DownsampleSegForDSTransform] if with_ds else [])
    labels = torch.from_numpy(vessel_tree((32, 32), seed=7, n_classes=2)[None].astype(np.int16))
    out = validation(image=torch.zeros(1, 32, 32), segmentation=labels)["segmentation"]
    targets = out if with_ds else [out]
    assert [tuple(t.shape) for t in targets] == [(4, 32, 32), (4, 16, 16)][:len(targets)]
    np.testing.assert_array_equal(targets[0][0].numpy(), labels[0].numpy() > 0)
    np.testing.assert_array_equal(targets[0][3].numpy(), tubed_skeleton((labels[0] == 2).numpy()) > 0)


def test_regions_with_an_ignore_label_are_refused() -> None:
    with pytest.raises(RegionDefinitionError, match="ignore label.*nnUNetTrainer"):
        nnUNetTrainerSkeletonRecall.get_training_transforms(
            (32, 32), (0, 0), None, (1, 2), False, regions=[(1, 2), 2], ignore_label=3)


@pytest.mark.parametrize(("order", "message"), [
    (None, "'regions_class_order' is missing"),
    ([1], "has 1 entries"),
    ([2, 1], "region 2 is exported as label 1, which is not one of its labels"),
])
def test_regions_class_order_must_match_the_regions(order, message: str) -> None:
    with pytest.raises(RegionDefinitionError, match=message):
        check_regions_class_order([(1, 2), 2], order)
    check_regions_class_order([(1, 2), 2], [1, 2])  # the right order passes


def _regions_dataset_json(dataset_json: dict, **changes) -> dict:
    return json.loads(json.dumps({**dataset_json, **changes}))


def test_region_dataset_json_paths(tmp_path: Path) -> None:
    """write_raw_dataset(regions=True) declares the tree and its branches as nnU-Net regions."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    folder = write_raw_dataset(tmp_path, 950, "Regions", dim=2, n_train=1, n_test=0, size=32, n_classes=2,
                               regions=True)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    manager = LabelManager(dataset_json["labels"], dataset_json["regions_class_order"])
    assert manager.has_regions and manager.foreground_regions == [(1, 2), 2]
    check_regions_class_order(manager.foreground_regions, dataset_json["regions_class_order"])
    with pytest.raises(ValueError, match="n_classes >= 2"):
        write_raw_dataset(tmp_path, 951, "Regions", dim=2, n_train=1, regions=True)


# --- trainers on a planned region dataset --------------------------------------------------------

DATASET_REGIONS = 905


@pytest.fixture(scope="module")
def dataset_regions(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """2D vessel trees with regions 'vessels' = (1, 2) and 'vessel2' = 2, planned and preprocessed."""
    return prepared_dataset(nnunet_workspace, dataset_cache, DATASET_REGIONS, "Regions2D", ("2d",), verify=True,
                            dim=2, n_train=5, n_test=1, size=64, n_classes=2, regions=True, seed=40)


# every trainer that trains on regions (the network trainers with narrow full-scale / SDI channels: the same code,
# faster on the CPU)
REGION_TRAINERS = [case.fast_class() for case in cases(regions=True)]


@pytest.mark.parametrize("trainer_class", REGION_TRAINERS, ids=lambda c: c.__name__)
def test_every_trainer_takes_a_training_and_a_validation_step_on_regions(trainer_env: NnunetWorkspace,
                                                                        dataset_regions: Path,
                                                                        trainer_class: type) -> None:
    trainer = make_trainer(trainer_env, dataset_regions, trainer_class)
    trainer.initialize()
    assert trainer.label_manager.foreground_regions == [(1, 2), 2]
    train_loader, val_loader = trainer.get_dataloaders()
    batch = next(train_loader)
    target = batch["target"][0]
    skeleton_target = issubclass(trainer_class, nnUNetTrainerSkeletonRecall)
    distance_target = issubclass(trainer_class, nnUNetTrainerHausdorffDT)
    # regions (+ one skeleton or one distance field per region)
    assert target.shape[1] == (4 if skeleton_target or distance_target else 2)
    if skeleton_target:
        assert (target[:, 2:] <= target[:, :2]).all() and target[:, 2].any()  # tubes inside their regions
    if distance_target:
        for b in range(target.shape[0]):
            for r in range(2):
                expected = boundary_distance_field(target[b, r].numpy(), trainer.configuration_manager.spacing)
                np.testing.assert_allclose(target[b, 2 + r].numpy(), expected, rtol=1e-6)
    trainer.on_train_epoch_start()
    result = trainer.train_step(batch)
    assert np.isfinite(result["loss"])
    trainer.network.eval()
    result = trainer.validation_step(next(val_loader))
    assert np.isfinite(result["loss"]) and result["tp_hard"].shape == (2,)  # one online Dice per region


def test_skeleton_recall_trainer_scores_each_region_with_the_sigmoid_recall(trainer_env: NnunetWorkspace,
                                                                           dataset_regions: Path) -> None:
    trainer = make_trainer(trainer_env, dataset_regions)
    trainer.initialize()
    inner = trainer.loss.loss
    assert isinstance(inner, CompoundLoss) and inner.label_channels == 2
    assert isinstance(inner.terms[1].loss, RegionSkeletonRecallLoss)
    target = next(trainer.get_dataloaders()[0])["target"][0]
    logits = torch.randn(target.shape[0], 2, *target.shape[2:], requires_grad=True)
    by_hand = inner.terms[0].loss(logits, target[:, :2]) + inner.terms[1].loss(logits, target[:, 2:])
    torch.testing.assert_close(inner(logits, target), by_hand)


def test_the_region_definitions_are_checked_once_per_trainer(trainer_env: NnunetWorkspace, dataset_regions: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from nnunet_ext.trainers import region_checks

    calls = []
    original = region_checks.check_region_definitions

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):  # every module that imported the check by name
        if getattr(module, "check_region_definitions", None) is original:
            monkeypatch.setattr(module, "check_region_definitions", counted)
    trainer = make_trainer(trainer_env, dataset_regions)  # Skeleton Recall: a target block and a loss term
    trainer.initialize()
    next(trainer.get_dataloaders()[0])
    assert len(calls) == 1


@pytest.mark.parametrize(("changes", "trainer_class", "message"), [
    ({"regions_class_order": [2, 1]}, nnUNetTrainerSkeletonRecall, "region 2 is exported as label 1"),
    ({"regions_class_order": [2, 1]}, nnUNetTrainerCombo, "region 2 is exported as label 1"),
    ({"labels": {"background": 0, "vessels": [1, 2], "vessel2": 2, "ignore": 3}}, nnUNetTrainerClDice,
     "ignore label"),
    ({}, nnUNetTrainerUNet3PlusCGM, "nnUNetTrainerUNet3PlusCGM does not support region-based training"),
    ({}, nnUNetTrainerUNetWeightedCE, "nnUNetTrainerUNetWeightedCE does not support region-based training.*overlap"
                                      ".*nnUNetTrainerHausdorffDT"),
])
def test_bad_region_definitions_are_refused_at_initialize(trainer_env: NnunetWorkspace, dataset_regions: Path,
                                                          changes: dict, trainer_class: type, message: str) -> None:
    dataset_json = json.loads((dataset_regions / "dataset.json").read_text())
    trainer = make_trainer(trainer_env, dataset_regions, trainer_class, dataset_json={**dataset_json, **changes})
    with pytest.raises(RegionDefinitionError, match=message):
        trainer.initialize()


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerHausdorffDT, nnUNetTrainerHausdorffDTDeviceFields],
                         ids=lambda c: c.__name__)
def test_hausdorff_dt_on_regions_with_an_ignore_label_names_its_own_loss(trainer_env: NnunetWorkspace,
                                                                        dataset_regions: Path,
                                                                        trainer_class: type) -> None:
    """Issue 22: the refusal spoke of "the skeleton and topology losses" to a Hausdorff DT user."""
    dataset_json = json.loads((dataset_regions / "dataset.json").read_text())
    dataset_json["labels"] = {**dataset_json["labels"], "ignore": 3}
    trainer = make_trainer(trainer_env, dataset_regions, trainer_class, dataset_json=dataset_json)
    with pytest.raises(RegionDefinitionError) as refused:
        trainer.initialize()
    message = str(refused.value)
    assert message.startswith(f"{trainer_class.__name__} does not support region-based training combined with an "
                              "ignore label (dataset.json 'ignore': 3): its RegionHausdorffDTLoss reads the region "
                              "channels only"), message
    assert "skeleton" not in message and "\n" not in message


def test_hausdorff_device_fields_on_regions_equal_the_pipeline_fields(trainer_env: NnunetWorkspace,
                                                                     dataset_regions: Path) -> None:
    """distance_fields_on_device: the regions alone in the target; at full resolution the loss of the workers'
    region fields."""
    device = make_trainer(trainer_env, dataset_regions, nnUNetTrainerHausdorffDTDeviceFields)
    device.initialize()
    pipeline = make_trainer(trainer_env, dataset_regions, nnUNetTrainerHausdorffDT)
    pipeline.initialize()
    hd_device, hd_pipeline = device.loss.loss.losses[1], pipeline.loss.loss.losses[1]
    assert isinstance(hd_device, RegionHausdorffDTLoss) and device.loss.loss.targets[1] == "labels"
    batch = next(device.get_dataloaders()[0])
    assert [t.shape[1] for t in batch["target"]] == [2] * len(batch["target"])  # the regions, no fields
    device.on_train_epoch_start()
    assert np.isfinite(device.train_step(batch)["loss"])
    full = next(pipeline.get_dataloaders()[0])["target"][0]  # regions, then the workers' fields
    logits = 3 * torch.randn(full.shape[0], 2, *full.shape[2:], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(hd_device(logits, full[:, :2]), hd_pipeline(logits, full[:, :2], full[:, 2:]),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.full
def test_skeleton_recall_trains_validates_and_predicts_regions_with_nnunet(nnunet_workspace: NnunetWorkspace,
                                                                          dataset_regions: Path) -> None:
    trainer = "nnUNetTrainerSkeletonRecallTiny"
    nnunet_workspace.run("nnUNetv2_train", str(DATASET_REGIONS), "2d", "0", "-tr", trainer, "-device", "cpu",
                         extra_env={"nnUNet_n_proc_DA": "0"})
    fold = nnunet_workspace.results / dataset_regions.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "RegionSkeletonRecallLoss" in log and "2 channels per target block" in log
    nnunet_summary = json.loads((fold / "validation" / "summary.json").read_text())
    topology = json.loads((fold / "validation" / "summary_topology.json").read_text())
    assert set(nnunet_summary["mean"]) == set(topology["mean"]) == {"(1, 2)", "2"}  # keyed like nnU-Net's
    for ours, theirs in zip(topology["metric_per_case"], nnunet_summary["metric_per_case"]):
        for region in ("(1, 2)", "2"):
            np.testing.assert_allclose(ours["metrics"][region]["Dice"], theirs["metrics"][region]["Dice"], rtol=1e-6)

    out = nnunet_workspace.root / "pred_regions"
    nnunet_workspace.run("nnUNetv2_predict", "-i", str(dataset_regions / "imagesTs"), "-o", str(out), "-d",
                         str(DATASET_REGIONS), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu",
                         "-npp", "0", "-nps", "0")
    image = next((dataset_regions / "imagesTs").glob("*_0000.nii.gz"))
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / image.name.replace("_0000", ""))))
    assert prediction.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(image))).shape
    assert set(np.unique(prediction).tolist()) <= {0, 1, 2}  # regions_class_order labels
