"""Our trainers through nnU-Net's own commands: plan, train (2d, 3d_fullres), resume, predict (3d_lowres:
tests/test_cascade.py). The full tier's further 3D and plans-file runs train through nnU-Net's run_training
(nnUNetv2_train's code) in the test process and predict through nnUNetv2_predict.

The compiled runs of every trainer and the model selection over them: tests/test_compiled_{losses,networks}.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.cli_runs import (
    LEAN_PREDICTION,
    LEAN_TRAINING,
    TINY,
    check_topology_validation,
    check_training,
    checkpoint_epoch,
    fold_folder,
    predict_and_check,
    train,
    train_in_process,
)
from tests.conftest import DATASET_2D, DATASET_3D, NnunetWorkspace, prepared_dataset


def test_2d_with_ignore_label_trains_resumes_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_2d: Path):
    stdout = train(nnunet_workspace, DATASET_2D, "2d", 1)
    assert "Using trainer 'nnUNetTrainerSkeletonRecallTiny'" in stdout  # found via nnUNet_extTrainer
    fold = fold_folder(nnunet_workspace, dataset_2d, "2d")
    assert (fold / "validation" / "summary.json").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "SoftSkeletonRecallLoss" in log and "nnunet_ext skeleton target" in log
    check_topology_validation(fold, {"1", "2"}, ndim=2)
    assert "Mean validation topology: Dice" in log
    assert "evaluating: 100%" in stdout  # the topology validation shows its progress
    first_epoch = checkpoint_epoch(fold)

    stdout = train(nnunet_workspace, DATASET_2D, "2d", 2, "--c",
                    extra_env={"NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1"})
    assert "Epoch 1" in stdout and "Epoch 0\n" not in stdout  # continued, did not start over
    assert checkpoint_epoch(fold) == first_epoch + 1
    resumed_log = max(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime).read_text()
    assert "SoftSkeletonRecallLoss" in resumed_log  # with the same loss

    # labels 1 and 2 only: the ignore label (3) is never predicted
    predict_and_check(nnunet_workspace, dataset_2d, DATASET_2D, "2d", {0, 1, 2})


def test_3d_fullres_trains_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_3d: Path):
    train(nnunet_workspace, DATASET_3D, "3d_fullres", 1)
    fold = fold_folder(nnunet_workspace, dataset_3d, "3d_fullres")
    assert (fold / "checkpoint_final.pth").is_file()
    check_topology_validation(fold, {"1"}, ndim=3)
    predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_fullres", {0, 1})


DATASET_THICK_SLICES = 903


@pytest.fixture(scope="module")
def dataset_thick_slices(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """3D vessels in 4-voxel-thick slices (spacing 1 x 1 x 4), planned for 3d_fullres."""
    return prepared_dataset(nnunet_workspace, dataset_cache, DATASET_THICK_SLICES, "ThickSlices3D", ("3d_fullres",),
                            dim=3, n_train=5, n_test=1, size=48, slice_step=4, seed=30)


@pytest.mark.full
def test_anisotropic_3d_trains_with_dummy_2d_augmentation(nnunet_workspace: NnunetWorkspace,
                                                          dataset_thick_slices: Path):
    configuration = nnunet_workspace.plans(dataset_thick_slices.name)["configurations"]["3d_fullres"]
    assert configuration["spacing"] == [4.0, 1.0, 1.0]
    train_in_process(nnunet_workspace, DATASET_THICK_SLICES, "3d_fullres", TINY, 1, extra_env=LEAN_TRAINING)
    fold = fold_folder(nnunet_workspace, dataset_thick_slices, "3d_fullres")
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "do_dummy_2d_data_aug: True" in log  # nnU-Net chose its 2D augmentation of 3D patches
    assert (fold / "checkpoint_final.pth").is_file()
    predict_and_check(nnunet_workspace, dataset_thick_slices, DATASET_THICK_SLICES, "3d_fullres", {0, 1},
                       processes=LEAN_PREDICTION)


# 3d_fullres (besides Skeleton Recall above) for clDice's 3D soft skeleton and UNet 3+'s 3D full-scale decoder,
# eager, trained through nnU-Net's run_training in this process and predicted through the CLI; the other
# trainers' 3D networks and losses are built and run in-process (test_network_trainers.py, test_losses.py).
@pytest.mark.full
@pytest.mark.parametrize("trainer", ["nnUNetTrainerClDiceTiny", "nnUNetTrainerUNet3PlusTiny"])
def test_trainers_train_and_predict_3d(nnunet_workspace: NnunetWorkspace, dataset_3d: Path, trainer: str):
    train_in_process(nnunet_workspace, DATASET_3D, "3d_fullres", trainer, 1, extra_env=LEAN_TRAINING)
    check_training(fold_folder(nnunet_workspace, dataset_3d, "3d_fullres", trainer), trainer)
    predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_fullres", {0, 1}, trainer, LEAN_PREDICTION)


@pytest.mark.full
def test_network_named_in_a_plans_file_trains_and_predicts_with_stock_nnunet(nnunet_workspace: NnunetWorkspace,
                                                                              dataset_2d: Path):
    """The README's route without our trainers: a plans copy whose 2d architecture is UNetV2."""
    plans = nnunet_workspace.plans(dataset_2d.name)
    plans["plans_name"] = "nnUNetPlansUNetV2"
    architecture = plans["configurations"]["2d"]["architecture"]
    architecture["network_class_name"] = "nnunet_ext.networks.UNetV2"
    architecture["arch_kwargs"]["sdi_channels"] = 8
    (nnunet_workspace.preprocessed / dataset_2d.name / "nnUNetPlansUNetV2.json").write_text(json.dumps(plans))

    trainer = "nnUNetTrainerPlainTiny"
    train_in_process(nnunet_workspace, DATASET_2D, "2d", trainer, 1, extra_env=LEAN_TRAINING, plans="nnUNetPlansUNetV2")
    fold = nnunet_workspace.results / dataset_2d.name / f"{trainer}__nnUNetPlansUNetV2__2d" / "fold_0"
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(key.startswith("decoder.sdi") for key in weights)
    out = nnunet_workspace.root / "pred_plans_unetv2"
    nnunet_workspace.run("nnUNetv2_predict", "-i", str(dataset_2d / "imagesTs"), "-o", str(out), "-d",
                         str(DATASET_2D), "-c", "2d", "-f", "0", "-tr", trainer, "-p", "nnUNetPlansUNetV2",
                         "-device", "cpu", *LEAN_PREDICTION)
    assert len(list(out.glob("*.nii.gz"))) == len(list((dataset_2d / "imagesTs").glob("*_0000.nii.gz")))
