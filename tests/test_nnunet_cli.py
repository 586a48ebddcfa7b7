"""Our trainers through nnU-Net's own commands: plan, train (2d, 3d_fullres, 3d_lowres), resume, predict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.conftest import DATASET_2D, DATASET_2D_SMALL, DATASET_3D, NnunetWorkspace, prepared_dataset
from tests.trainer_matrix import BY_NAME, TRAINERS, TrainerCase

TINY = "nnUNetTrainerSkeletonRecallTiny"


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


# For the trainer matrix: no final validation, the data loader in the training process (both are
# covered by the tests above), and nnUNetv2_predict's sequential mode (-npp 0 -nps 0): each spawned
# process re-imports torch and nnU-Net, which dominates these tiny runs on 2 cores.
LEAN_TRAINING = {"NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1", "nnUNet_n_proc_DA": "0"}
LEAN_PREDICTION = ("-npp", "0", "-nps", "0")


def _train(ws: NnunetWorkspace, dataset_id: int, configuration: str, epochs: int, *extra: str,
           trainer: str = TINY, extra_env: dict | None = None) -> str:
    result = ws.run("nnUNetv2_train", str(dataset_id), configuration, "0", "-tr", trainer, "-device", "cpu", *extra,
                    extra_env={"NNUNET_EXT_TEST_EPOCHS": str(epochs), **(extra_env or {})})
    return result.stdout + result.stderr


def _fold_folder(ws: NnunetWorkspace, dataset_folder: Path, configuration: str, trainer: str = TINY) -> Path:
    return ws.results / dataset_folder.name / f"{trainer}__nnUNetPlans__{configuration}" / "fold_0"


def _checkpoint_epoch(fold: Path) -> int:
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"]


def _predict_and_check(ws: NnunetWorkspace, dataset_folder: Path, dataset_id: int, configuration: str,
                       allowed_labels: set[int], trainer: str = TINY,
                       processes: tuple[str, ...] = ("-npp", "1", "-nps", "1")) -> None:
    out = ws.root / f"pred_{trainer}_{dataset_id}_{configuration}"
    ws.run("nnUNetv2_predict", "-i", str(dataset_folder / "imagesTs"), "-o", str(out), "-d", str(dataset_id),
           "-c", configuration, "-f", "0", "-tr", trainer, "-device", "cpu", *processes)
    images = sorted((dataset_folder / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    for image in images:
        prediction = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert prediction.is_file(), f"missing prediction {prediction}"
        labels = _read(prediction)
        assert labels.shape == _read(image).shape
        assert set(np.unique(labels).tolist()) <= allowed_labels


def _check_topology_validation(fold: Path, classes: set[str], ndim: int) -> None:
    """The final validation wrote our topology summary for the same cases as nnU-Net's summary.json."""
    nnunet_summary = json.loads((fold / "validation" / "summary.json").read_text())
    topology = json.loads((fold / "validation" / "summary_topology.json").read_text())
    cases = [Path(c["prediction_file"]).name for c in nnunet_summary["metric_per_case"]]
    assert [Path(c["prediction_file"]).name for c in topology["metric_per_case"]] == cases
    assert set(topology["mean"]) == classes
    expected = {"Dice", "clDice", "Betti0_error", "Betti1_error", "pixel_error", "rand_error", "warping_error"}
    assert set(topology["foreground_mean"]) == expected | ({"Betti2_error"} if ndim == 3 else set())
    for ours, theirs in zip(topology["metric_per_case"], nnunet_summary["metric_per_case"]):
        for c in classes:  # the same Dice as nnU-Net's own evaluation (NaN where both are empty)
            np.testing.assert_allclose(ours["metrics"][c]["Dice"], theirs["metrics"][c]["Dice"], rtol=1e-6)


def test_2d_with_ignore_label_trains_resumes_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_2d: Path):
    stdout = _train(nnunet_workspace, DATASET_2D, "2d", 1)
    assert "Using trainer 'nnUNetTrainerSkeletonRecallTiny'" in stdout  # found via nnUNet_extTrainer
    fold = _fold_folder(nnunet_workspace, dataset_2d, "2d")
    assert (fold / "validation" / "summary.json").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "SoftSkeletonRecallLoss" in log and "nnunet_ext skeleton target" in log
    _check_topology_validation(fold, {"1", "2"}, ndim=2)
    assert "Mean validation topology: Dice" in log
    assert "evaluating: 100%" in stdout  # the topology validation shows its progress
    first_epoch = _checkpoint_epoch(fold)

    stdout = _train(nnunet_workspace, DATASET_2D, "2d", 2, "--c",
                    extra_env={"NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1"})
    assert "Epoch 1" in stdout and "Epoch 0\n" not in stdout  # continued, did not start over
    assert _checkpoint_epoch(fold) == first_epoch + 1
    resumed_log = max(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime).read_text()
    assert "SoftSkeletonRecallLoss" in resumed_log  # with the same loss

    # labels 1 and 2 only: the ignore label (3) is never predicted
    _predict_and_check(nnunet_workspace, dataset_2d, DATASET_2D, "2d", {0, 1, 2})


def test_3d_fullres_trains_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_3d: Path):
    _train(nnunet_workspace, DATASET_3D, "3d_fullres", 1)
    fold = _fold_folder(nnunet_workspace, dataset_3d, "3d_fullres")
    assert (fold / "checkpoint_final.pth").is_file()
    _check_topology_validation(fold, {"1"}, ndim=3)
    _predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_fullres", {0, 1})


@pytest.mark.full
def test_3d_lowres_trains_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_3d: Path):
    _train(nnunet_workspace, DATASET_3D, "3d_lowres", 1, extra_env={"NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1"})
    assert (_fold_folder(nnunet_workspace, dataset_3d, "3d_lowres") / "checkpoint_final.pth").is_file()
    _predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_lowres", {0, 1})


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
    _train(nnunet_workspace, DATASET_THICK_SLICES, "3d_fullres", 1, extra_env=LEAN_TRAINING)
    fold = _fold_folder(nnunet_workspace, dataset_thick_slices, "3d_fullres")
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "do_dummy_2d_data_aug: True" in log  # nnU-Net chose its 2D augmentation of 3D patches
    assert (fold / "checkpoint_final.pth").is_file()
    _predict_and_check(nnunet_workspace, dataset_thick_slices, DATASET_THICK_SLICES, "3d_fullres", {0, 1},
                       processes=LEAN_PREDICTION)


COMPILED = [f"{case.name}CompiledTiny" for case in TRAINERS]


def _case(trainer: str) -> TrainerCase:
    """The matrix entry of a test trainer (``<name>Tiny``, ``<name>CompiledTiny``)."""
    return BY_NAME[trainer.removesuffix("CompiledTiny").removesuffix("Tiny")]


def _check_training(fold: Path, trainer: str) -> str:
    """The fold's checkpoint holds the trainer's network, its log names its loss or network; returns the log."""
    assert (fold / "checkpoint_final.pth").is_file()
    case = _case(trainer)
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert case.log_text in log
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(key.startswith(case.checkpoint_key) for key in weights)
    return log


def _train_compiled(ws: NnunetWorkspace, trainer: str) -> None:
    """2d fold 0 of the small dataset through nnU-Net's compile path, with nnU-Net's final validation (what
    nnUNetv2_find_best_configuration reads)."""
    _train(ws, DATASET_2D_SMALL, "2d", 1, trainer=trainer, extra_env={"nnUNet_n_proc_DA": "0"})


@pytest.mark.full
@pytest.mark.parametrize("trainer", COMPILED)
def test_trainers_train_compiled_and_predict(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path,
                                             trainer: str):
    """Every trainer on nnU-Net's GPU path: torch.compile (inductor, C++ on the CPU), train, validate, predict."""
    _train_compiled(nnunet_workspace, trainer)
    fold = _fold_folder(nnunet_workspace, dataset_2d_small, "2d", trainer)
    log = _check_training(fold, trainer)
    assert "Using torch.compile..." in log
    difference, scale = map(float, re.search(r"compiled vs eager: max \|difference\| (\S+) of max \|output\| (\S+)",
                                             log).groups())
    assert difference <= 1e-4 * max(1.0, scale), (difference, scale)
    assert (fold / "validation" / "summary_topology.json").is_file()
    _predict_and_check(nnunet_workspace, dataset_2d_small, DATASET_2D_SMALL, "2d", {0, 1, 2}, trainer,
                       LEAN_PREDICTION)


# 3d_fullres through the CLI (besides Skeleton Recall above) for clDice's 3D soft skeleton and UNet 3+'s 3D
# full-scale decoder, eager; the other trainers' 3D networks and losses are built and run in-process
# (test_network_trainers.py, test_losses.py), which saves CI time.
@pytest.mark.full
@pytest.mark.parametrize("trainer", ["nnUNetTrainerClDiceTiny", "nnUNetTrainerUNet3PlusTiny"])
def test_trainers_train_and_predict_3d(nnunet_workspace: NnunetWorkspace, dataset_3d: Path, trainer: str):
    _train(nnunet_workspace, DATASET_3D, "3d_fullres", 1, trainer=trainer, extra_env=LEAN_TRAINING)
    _check_training(_fold_folder(nnunet_workspace, dataset_3d, "3d_fullres", trainer), trainer)
    _predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_fullres", {0, 1}, trainer, LEAN_PREDICTION)


def compiled_family(trainer: str) -> str:
    """'networks' for the UNet 3+ / U-Net v2 trainers, 'losses' for the others: one model selection per family."""
    return _case(trainer).family


@pytest.mark.full
@pytest.mark.parametrize("family", ["losses", "networks"])
def test_find_best_configuration_compares_every_trainer(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path,
                                                        family: str):
    """nnU-Net's model selection over all our trainers of a family at once (their 2d folds from the compiled runs
    above); the two families together cover every trainer."""
    trainers = [trainer for trainer in COMPILED if compiled_family(trainer) == family]
    for trainer in trainers:  # trained above unless this test runs alone
        if not (_fold_folder(nnunet_workspace, dataset_2d_small, "2d", trainer) / "validation" / "summary.json"
                ).is_file():
            _train_compiled(nnunet_workspace, trainer)
    result = nnunet_workspace.run("nnUNetv2_find_best_configuration", str(DATASET_2D_SMALL), "-c", "2d", "-tr",
                                  *trainers, "-f", "0", "--disable_ensembling")
    for trainer in trainers:  # each one was scored from its own validation
        assert f"{trainer}__nnUNetPlans__2d" in result.stdout
    instructions = (nnunet_workspace.results / dataset_2d_small.name / "inference_instructions.txt").read_text()
    assert any(f"-tr {trainer} " in instructions or instructions.rstrip().endswith(f"-tr {trainer}")
               for trainer in trainers)


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
    _train(nnunet_workspace, DATASET_2D, "2d", 1, "-p", "nnUNetPlansUNetV2", trainer=trainer, extra_env=LEAN_TRAINING)
    fold = nnunet_workspace.results / dataset_2d.name / f"{trainer}__nnUNetPlansUNetV2__2d" / "fold_0"
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(key.startswith("decoder.sdi") for key in weights)
    out = nnunet_workspace.root / "pred_plans_unetv2"
    nnunet_workspace.run("nnUNetv2_predict", "-i", str(dataset_2d / "imagesTs"), "-o", str(out), "-d",
                         str(DATASET_2D), "-c", "2d", "-f", "0", "-tr", trainer, "-p", "nnUNetPlansUNetV2",
                         "-device", "cpu", *LEAN_PREDICTION)
    assert len(list(out.glob("*.nii.gz"))) == len(list((dataset_2d / "imagesTs").glob("*_0000.nii.gz")))
