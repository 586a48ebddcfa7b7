"""Our trainers through nnU-Net's own commands: plan, train (2d, 3d_fullres, 3d_lowres), resume, predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.conftest import DATASET_2D, DATASET_3D, NnunetWorkspace

TINY = "nnUNetTrainerSkeletonRecallTiny"


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _train(ws: NnunetWorkspace, dataset_id: int, configuration: str, epochs: int, *extra: str,
           trainer: str = TINY) -> str:
    result = ws.run("nnUNetv2_train", str(dataset_id), configuration, "0", "-tr", trainer, "-device", "cpu", *extra,
                    extra_env={"NNUNET_EXT_TEST_EPOCHS": str(epochs)})
    return result.stdout


def _fold_folder(ws: NnunetWorkspace, dataset_folder: Path, configuration: str, trainer: str = TINY) -> Path:
    return ws.results / dataset_folder.name / f"{trainer}__nnUNetPlans__{configuration}" / "fold_0"


def _checkpoint_epoch(fold: Path) -> int:
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"]


def _predict_and_check(ws: NnunetWorkspace, dataset_folder: Path, dataset_id: int, configuration: str,
                       allowed_labels: set[int], trainer: str = TINY) -> None:
    out = ws.root / f"pred_{trainer}_{dataset_id}_{configuration}"
    ws.run("nnUNetv2_predict", "-i", str(dataset_folder / "imagesTs"), "-o", str(out), "-d", str(dataset_id),
           "-c", configuration, "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1")
    images = sorted((dataset_folder / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    for image in images:
        prediction = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert prediction.is_file(), f"missing prediction {prediction}"
        labels = _read(prediction)
        assert labels.shape == _read(image).shape
        assert set(np.unique(labels).tolist()) <= allowed_labels


def test_2d_with_ignore_label_trains_resumes_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_2d: Path):
    stdout = _train(nnunet_workspace, DATASET_2D, "2d", 1)
    assert "Using trainer 'nnUNetTrainerSkeletonRecallTiny'" in stdout  # found via nnUNet_extTrainer
    fold = _fold_folder(nnunet_workspace, dataset_2d, "2d")
    assert (fold / "validation" / "summary.json").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "SoftSkeletonRecallLoss" in log and "nnunet_ext skeleton target" in log
    first_epoch = _checkpoint_epoch(fold)

    stdout = _train(nnunet_workspace, DATASET_2D, "2d", 2, "--c")
    assert "Epoch 1" in stdout and "Epoch 0\n" not in stdout  # continued, did not start over
    assert _checkpoint_epoch(fold) == first_epoch + 1

    # labels 1 and 2 only: the ignore label (3) is never predicted
    _predict_and_check(nnunet_workspace, dataset_2d, DATASET_2D, "2d", {0, 1, 2})


def test_3d_fullres_trains_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_3d: Path):
    _train(nnunet_workspace, DATASET_3D, "3d_fullres", 1)
    assert (_fold_folder(nnunet_workspace, dataset_3d, "3d_fullres") / "checkpoint_final.pth").is_file()
    _predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_fullres", {0, 1})


def test_3d_lowres_trains_and_predicts(nnunet_workspace: NnunetWorkspace, dataset_3d: Path):
    _train(nnunet_workspace, DATASET_3D, "3d_lowres", 1)
    assert (_fold_folder(nnunet_workspace, dataset_3d, "3d_lowres") / "checkpoint_final.pth").is_file()
    _predict_and_check(nnunet_workspace, dataset_3d, DATASET_3D, "3d_lowres", {0, 1})


@pytest.mark.parametrize("trainer", ["nnUNetTrainerClDiceTiny", "nnUNetTrainerComboTiny"])
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_loss_trainers_train_and_predict(nnunet_workspace: NnunetWorkspace, request, trainer: str,
                                         configuration: str):
    if configuration == "2d":
        dataset, dataset_id, labels = request.getfixturevalue("dataset_2d"), DATASET_2D, {0, 1, 2}
    else:
        dataset, dataset_id, labels = request.getfixturevalue("dataset_3d"), DATASET_3D, {0, 1}
    _train(nnunet_workspace, dataset_id, configuration, 1, trainer=trainer)
    fold = _fold_folder(nnunet_workspace, dataset, configuration, trainer)
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert ("SoftClDiceLoss" if "ClDice" in trainer else "ComboLoss") in log
    _predict_and_check(nnunet_workspace, dataset, dataset_id, configuration, labels, trainer)
