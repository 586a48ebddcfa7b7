"""The cascade (3d_lowres, then 3d_cascade_fullres) through nnU-Net's commands, and its missing-input error.

nnU-Net writes the lowres segmentations a cascade trains on at the end of each 3d_lowres fold's final
validation, into ``nnUNet_results/<dataset>/<trainer>__<plans>__3d_lowres/predicted_next_stage/
3d_cascade_fullres/`` (validation cases only: every fold whose cases the cascade uses must be trained).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_ext.commands.nnunet_runs import nnunet_command
from nnunet_ext.trainers import (
    nnUNetTrainerClDice,
    nnUNetTrainerCombo,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerUNet3Plus,
    nnUNetTrainerUNet3PlusCGM,
    nnUNetTrainerUNet3PlusSkeletonRecall,
    nnUNetTrainerUNetV2,
    nnUNetTrainerUNetV2SkeletonRecall,
)
from nnunet_ext.trainers.previous_stage_check_mixin import PreviousStageMissingError
from tests.cli_runs import LEAN_PREDICTION, LEAN_TRAINING, TINY, read_image
from tests.conftest import NnunetWorkspace, make_trainer, prepared_dataset

# full tier: trains two 3d_lowres folds and the cascade through nnU-Net's commands
pytestmark = pytest.mark.full

DATASET_CASCADE = 904
CASCADE = "3d_cascade_fullres"
PREDICTION = (*LEAN_PREDICTION, "--disable_tta")


def _cases(dataset_folder: Path) -> list[str]:
    return sorted(p.name.removesuffix(".nii.gz") for p in (dataset_folder / "labelsTr").glob("*.nii.gz"))


def _add_stages(plans: dict) -> None:
    # Tiny images get no lowres stage from the planner; add both stages with the keys its planner
    # writes: 3d_lowres "next_stage", and a 3d_cascade_fullres that inherits 3d_fullres.
    plans["configurations"]["3d_lowres"] = {
        "inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres", "spacing": [1.6, 1.6, 1.6],
        "median_image_size_in_voxels": [20, 20, 20], "patch_size": [24, 24, 24], "next_stage": CASCADE}
    plans["configurations"][CASCADE] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    # a quarter of the planned widths (all three stages inherit them): 3D convolutions dominate on the CPU
    arch_kwargs = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch_kwargs["features_per_stage"] = [f // 4 for f in arch_kwargs["features_per_stage"]]


@pytest.fixture(scope="module")
def dataset_cascade(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """A 3D dataset with 3d_fullres, 3d_lowres and 3d_cascade_fullres in its plans; a 2-fold split."""
    ws = nnunet_workspace
    folder = prepared_dataset(ws, dataset_cache, DATASET_CASCADE, "Cascade3D", ("3d_fullres", "3d_lowres"),
                              edit_plans=_add_stages, dim=3, n_train=4, n_test=1, size=32, seed=40)
    cases = _cases(folder)  # 2 folds: two lowres trainings cover every case's validation
    splits = [{"train": cases[2:], "val": cases[:2]}, {"train": cases[:2], "val": cases[2:]}]
    (ws.preprocessed / folder.name / "splits_final.json").write_text(json.dumps(splits))
    return folder


def _together(ws: NnunetWorkspace, *commands: tuple[str, list[str], dict]) -> None:
    """Run nnU-Net console scripts side by side (as users train folds); fail with the output of any that fails."""
    runs = []
    try:
        for command, args, extra_env in commands:
            log = tempfile.TemporaryFile(mode="w+")
            process = subprocess.Popen([nnunet_command(command), *args], env={**ws.env, **extra_env}, stdout=log,
                                       stderr=subprocess.STDOUT, text=True)
            runs.append((f"{command} {' '.join(args)}", process, log))
        failures = []
        for name, process, log in runs:
            process.wait(timeout=900)
            log.seek(0)
            if process.returncode != 0:
                failures.append(f"{name} failed with exit code {process.returncode}\n{log.read()[-6000:]}")
        if failures:
            pytest.fail("\n".join(failures))
    finally:
        for _, process, log in runs:
            if process.poll() is None:
                process.kill()
            log.close()


def _train(configuration: str, fold: int, extra_env: dict) -> tuple[str, list[str], dict]:
    return ("nnUNetv2_train", [str(DATASET_CASCADE), configuration, str(fold), "-tr", TINY, "-device", "cpu"],
            {"NNUNET_EXT_TEST_EPOCHS": "1", **extra_env})


def _predict(dataset_folder: Path, configuration: str, out: Path, *extra: str) -> tuple[str, list[str], dict]:
    return ("nnUNetv2_predict", ["-i", str(dataset_folder / "imagesTs"), "-o", str(out), "-d", str(DATASET_CASCADE),
                                 "-c", configuration, "-f", "0", "-tr", TINY, "-device", "cpu", *PREDICTION, *extra],
            {})


def _check_predictions(dataset_folder: Path, out: Path) -> None:
    images = sorted((dataset_folder / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    for image in images:
        labels = read_image(out / image.name.replace("_0000.nii.gz", ".nii.gz"))
        assert labels.shape == read_image(image).shape
        assert set(np.unique(labels).tolist()) <= {0, 1}


def test_cascade_trains_on_lowres_validation_and_predicts(nnunet_workspace: NnunetWorkspace,
                                                          dataset_cascade: Path):
    ws = nnunet_workspace
    # both lowres folds with nnU-Net's final validation: it exports the next stage's inputs
    _together(ws, *(_train("3d_lowres", fold, {"nnUNet_n_proc_DA": "0"}) for fold in (0, 1)))
    results = ws.results / dataset_cascade.name
    next_stage = results / f"{TINY}__nnUNetPlans__3d_lowres" / "predicted_next_stage" / CASCADE
    assert sorted(p.name for p in next_stage.iterdir()) == [f"{c}.b2nd" for c in _cases(dataset_cascade)]

    lowres = ws.root / "pred_cascade_3d_lowres"
    _together(ws, _train(CASCADE, 0, LEAN_TRAINING), _predict(dataset_cascade, "3d_lowres", lowres))
    checkpoint = results / f"{TINY}__nnUNetPlans__{CASCADE}" / "fold_0" / "checkpoint_final.pth"
    assert checkpoint.is_file()
    weights = torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    first_conv = next(w for w in weights.values() if w.ndim == 5)
    dataset_json = json.loads((dataset_cascade / "dataset.json").read_text())
    foreground = [v for k, v in dataset_json["labels"].items() if k not in ("background", "ignore")]
    assert first_conv.shape[1] == len(dataset_json["channel_names"]) + len(foreground) == 2  # image + one-hot
    _check_predictions(dataset_cascade, lowres)

    cascade = ws.root / "pred_cascade_3d_cascade_fullres"
    _together(ws, _predict(dataset_cascade, CASCADE, cascade, "-prev_stage_predictions", str(lowres)))
    _check_predictions(dataset_cascade, cascade)


CASCADE_TRAINERS = [nnUNetTrainerSkeletonRecall, nnUNetTrainerClDice, nnUNetTrainerCombo, nnUNetTrainerUNet3Plus,
                    nnUNetTrainerUNet3PlusCGM, nnUNetTrainerUNet3PlusSkeletonRecall, nnUNetTrainerUNetV2,
                    nnUNetTrainerUNetV2SkeletonRecall]


@pytest.mark.parametrize("trainer_class", CASCADE_TRAINERS, ids=lambda c: c.__name__)
def test_cascade_without_lowres_folder_names_the_fix(trainer_env: NnunetWorkspace, dataset_cascade: Path,
                                                     trainer_class: type):
    trainer = make_trainer(trainer_env, dataset_cascade, trainer_class, configuration=CASCADE)
    with pytest.raises(PreviousStageMissingError) as error:
        trainer.initialize()  # the fold's validation cases (fold 0's: validated by lowres fold 0)
    message = str(error.value)
    assert trainer.folder_with_segs_from_previous_stage in message and "does not exist" in message
    assert f"train 3d_lowres fold 0 first with the same trainer ({trainer_class.__name__})" in message
    assert "final validation" in message
    assert trainer.network is None  # refused before building the network
    with pytest.raises(PreviousStageMissingError, match="train 3d_lowres folds 0, 1 first"):
        trainer.on_train_start()  # training reads the training cases too


def test_cascade_validation_needs_only_the_validation_cases(trainer_env: NnunetWorkspace, dataset_cascade: Path):
    """`nnUNetv2_train ... --val` on a cascade fold: its validation cases' lowres files suffice."""
    trainer = make_trainer(trainer_env, dataset_cascade, configuration=CASCADE)
    cases = _cases(dataset_cascade)
    folder = Path(trainer.folder_with_segs_from_previous_stage)
    folder.mkdir(parents=True)
    for case in cases[:2]:  # fold 0's validation cases only
        (folder / f"{case}.b2nd").touch()
    trainer.initialize()  # what --val runs before the validation
    assert trainer.was_initialized
    with pytest.raises(PreviousStageMissingError, match=rf"2 of the fold's 4 cases .*: {cases[2]}, {cases[3]}\. "
                                                        "Fix: train 3d_lowres fold 1 first"):
        trainer.on_train_start()


def test_cascade_with_a_missing_lowres_case_names_the_case_and_its_fold(trainer_env: NnunetWorkspace,
                                                                         dataset_cascade: Path):
    trainer = make_trainer(trainer_env, dataset_cascade, configuration=CASCADE)
    cases = _cases(dataset_cascade)
    folder = Path(trainer.folder_with_segs_from_previous_stage)
    folder.mkdir(parents=True)
    for case in cases[:-1]:  # the last case is validated (and exported) by lowres fold 1
        (folder / f"{case}.b2nd").touch()
    trainer.initialize()  # fold 0's validation cases are there
    with pytest.raises(PreviousStageMissingError, match=f"1 of the fold's 4 cases .*: {cases[-1]}\\. "
                                                        "Fix: train 3d_lowres fold 1 first"):
        trainer.on_train_start()

