"""Helpers of the tests that run our trainers through nnU-Net's own commands (nnUNetv2_train, nnUNetv2_predict,
nnUNetv2_find_best_configuration) in subprocesses, or through nnU-Net's ``run_training`` in the test process:
tests/test_nnunet_cli.py and the compiled matrices (tests/test_compiled_losses.py, tests/test_compiled_networks.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.conftest import DATASET_2D_SMALL, NnunetWorkspace
from tests.trainer_matrix import BY_NAME, TrainerCase, cases

TINY = "nnUNetTrainerSkeletonRecallTiny"

# For the trainer matrices: no final validation, the data loader in the training process (both are covered by
# tests/test_nnunet_cli.py), and nnUNetv2_predict's sequential mode (-npp 0 -nps 0): each spawned process
# re-imports torch and nnU-Net, which dominates these tiny runs on 2 cores.
LEAN_TRAINING = {"NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1", "nnUNet_n_proc_DA": "0"}
LEAN_PREDICTION = ("-npp", "0", "-nps", "0")


def read_image(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def train(ws: NnunetWorkspace, dataset_id: int, configuration: str, epochs: int, *extra: str,
          trainer: str = TINY, extra_env: dict | None = None) -> str:
    """``nnUNetv2_train`` fold 0 on the CPU for ``epochs`` short epochs; returns its stdout + stderr."""
    result = ws.run("nnUNetv2_train", str(dataset_id), configuration, "0", "-tr", trainer, "-device", "cpu", *extra,
                    extra_env={"NNUNET_EXT_TEST_EPOCHS": str(epochs), **(extra_env or {})})
    return result.stdout + result.stderr


# what an nnU-Net command reads from the environment (the workspace's paths and settings)
NNUNET_SETTINGS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_n_proc_DA",
                   "nnUNet_def_n_proc", "TORCHINDUCTOR_CACHE_DIR")


def train_in_process(ws: NnunetWorkspace, dataset_id: int, configuration: str, trainer: str, epochs: int,
                     extra_env: dict | None = None, plans: str = "nnUNetPlans") -> None:
    """Fold 0 on the CPU through nnU-Net's ``run_training``, what ``nnUNetv2_train`` runs after parsing its
    arguments (the trainer found by name on nnUNet_extTrainer, trained, then nnU-Net's final validation), in
    this process: no ~15 s of importing torch and nnU-Net again. torch.compile's in-memory state is reset after
    the run (the next trainer's graphs come from inductor's disk cache, as in a new process)."""
    from nnunetv2.run.run_training import run_training

    env = {**{key: ws.env[key] for key in NNUNET_SETTINGS}, "NNUNET_EXT_TEST_EPOCHS": str(epochs), **(extra_env or {})}
    threads = torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            run_training(str(dataset_id), configuration, 0, trainer, plans, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()


def fold_folder(ws: NnunetWorkspace, dataset_folder: Path, configuration: str, trainer: str = TINY) -> Path:
    return ws.results / dataset_folder.name / f"{trainer}__nnUNetPlans__{configuration}" / "fold_0"


def checkpoint_epoch(fold: Path) -> int:
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"]


def predict_and_check(ws: NnunetWorkspace, dataset_folder: Path, dataset_id: int, configuration: str,
                      allowed_labels: set[int], trainer: str = TINY,
                      processes: tuple[str, ...] = ("-npp", "1", "-nps", "1")) -> None:
    """``nnUNetv2_predict`` the test images: one prediction per image, its shape, only ``allowed_labels``."""
    out = ws.root / f"pred_{trainer}_{dataset_id}_{configuration}"
    ws.run("nnUNetv2_predict", "-i", str(dataset_folder / "imagesTs"), "-o", str(out), "-d", str(dataset_id),
           "-c", configuration, "-f", "0", "-tr", trainer, "-device", "cpu", *processes)
    images = sorted((dataset_folder / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    for image in images:
        prediction = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert prediction.is_file(), f"missing prediction {prediction}"
        labels = read_image(prediction)
        assert labels.shape == read_image(image).shape
        assert set(np.unique(labels).tolist()) <= allowed_labels


def check_topology_validation(fold: Path, classes: set[str], ndim: int) -> None:
    """The final validation wrote our topology summary for the same cases as nnU-Net's summary.json."""
    nnunet_summary = json.loads((fold / "validation" / "summary.json").read_text())
    topology = json.loads((fold / "validation" / "summary_topology.json").read_text())
    cases_ = [Path(c["prediction_file"]).name for c in nnunet_summary["metric_per_case"]]
    assert [Path(c["prediction_file"]).name for c in topology["metric_per_case"]] == cases_
    assert set(topology["mean"]) == classes
    expected = {"Dice", "clDice", "Betti0_error", "Betti1_error", "pixel_error", "rand_error", "warping_error"}
    assert set(topology["foreground_mean"]) == expected | ({"Betti2_error"} if ndim == 3 else set())
    for ours, theirs in zip(topology["metric_per_case"], nnunet_summary["metric_per_case"]):
        for c in classes:  # the same Dice as nnU-Net's own evaluation (NaN where both are empty)
            np.testing.assert_allclose(ours["metrics"][c]["Dice"], theirs["metrics"][c]["Dice"], rtol=1e-6)


def case_of(trainer: str) -> TrainerCase:
    """The matrix entry of a test trainer (``<name>Tiny``, ``<name>CompiledTiny``)."""
    return BY_NAME[trainer.removesuffix("CompiledTiny").removesuffix("Tiny")]


def check_training(fold: Path, trainer: str) -> str:
    """The fold's checkpoint holds the trainer's network, its log names its loss or network; returns the log."""
    assert (fold / "checkpoint_final.pth").is_file()
    case = case_of(trainer)
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert case.log_text in log
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(key.startswith(case.checkpoint_key) for key in weights)
    return log


# ---------------------------------------------------------------------------------------------- compiled matrices


def compiled_trainers(family: str) -> list[str]:
    """The compiled test trainers of a family ('losses' or 'networks', see ``TrainerCase.family``)."""
    return [f"{case.name}CompiledTiny" for case in cases(family=family)]


def first_of_each_network(trainers: list[str]) -> set[str]:
    """The trainers that build a network the ones before them do not: ``nnUNetv2_predict`` rebuilds the network
    from the trainer and loads the compiled run's checkpoint strictly, so that is what differs between trainers
    at prediction (the loss trainers all predict with nnU-Net's PlainConvUNet)."""
    seen, first = set(), set()
    for trainer in trainers:
        case = case_of(trainer)
        if (case.network, case.checkpoint_key) not in seen:
            seen.add((case.network, case.checkpoint_key))
            first.add(trainer)
    return first


def train_compiled(ws: NnunetWorkspace, trainer: str) -> None:
    """2d fold 0 of the small dataset through nnU-Net's compile path, in this process, with nnU-Net's final
    validation (what nnUNetv2_find_best_configuration reads)."""
    train_in_process(ws, DATASET_2D_SMALL, "2d", trainer, 1, extra_env={"nnUNet_n_proc_DA": "0"})


def check_compiled_run(ws: NnunetWorkspace, dataset_folder: Path, trainer: str, predict: bool) -> None:
    """A trainer on nnU-Net's GPU path: torch.compile (inductor, C++ on the CPU), train, validate (nnU-Net's
    final validation predicts the validation case in the training process), and ``nnUNetv2_predict`` if
    ``predict``; the compiled network's outputs equal the eager module's on the first batch."""
    train_compiled(ws, trainer)
    fold = fold_folder(ws, dataset_folder, "2d", trainer)
    log = check_training(fold, trainer)
    assert "Using torch.compile..." in log
    difference, scale = map(float, re.search(r"compiled vs eager: max \|difference\| (\S+) of max \|output\| (\S+)",
                                             log).groups())
    assert difference <= 1e-4 * max(1.0, scale), (difference, scale)
    assert (fold / "validation" / "summary_topology.json").is_file()
    if predict:
        predict_and_check(ws, dataset_folder, DATASET_2D_SMALL, "2d", {0, 1, 2}, trainer, LEAN_PREDICTION)


def check_model_selection(ws: NnunetWorkspace, dataset_folder: Path, trainers: list[str]) -> None:
    """nnU-Net's model selection over ``trainers`` at once, from their compiled runs' 2d folds (trained here when
    missing, i.e. when the test runs alone): every one is scored from its own validation."""
    for trainer in trainers:
        if not (fold_folder(ws, dataset_folder, "2d", trainer) / "validation" / "summary.json").is_file():
            train_compiled(ws, trainer)
    result = ws.run("nnUNetv2_find_best_configuration", str(DATASET_2D_SMALL), "-c", "2d", "-tr", *trainers,
                    "-f", "0", "--disable_ensembling")
    for trainer in trainers:
        assert f"{trainer}__nnUNetPlans__2d" in result.stdout
    instructions = (ws.results / dataset_folder.name / "inference_instructions.txt").read_text()
    assert any(f"-tr {trainer} " in instructions or instructions.rstrip().endswith(f"-tr {trainer}")
               for trainer in trainers)


def compiled_matrix_test(family: str) -> Callable:
    """The compiled matrix of a family as a test function, for a test module to bind to a test name: every
    trainer of the family compiled, trained and validated, the first of each network also through
    ``nnUNetv2_predict``."""
    trainers = compiled_trainers(family)
    predicted = first_of_each_network(trainers)

    @pytest.mark.full
    @pytest.mark.parametrize("trainer", trainers)
    def compiled_run(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path, trainer: str) -> None:
        check_compiled_run(nnunet_workspace, dataset_2d_small, trainer, trainer in predicted)

    return compiled_run


def model_selection_test(family: str) -> Callable:
    """nnU-Net's model selection over a family's compiled runs, as a test function. It reads each fold's
    validation folder (summary.json, the validation segmentations) and the plans, never the network or the loss,
    so one family shows it for all of our trainers."""

    @pytest.mark.full
    def model_selection(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path) -> None:
        check_model_selection(nnunet_workspace, dataset_2d_small, compiled_trainers(family))

    return model_selection
