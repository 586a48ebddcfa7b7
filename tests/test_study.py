"""`nnunet-ext study`: the whole comparison through nnU-Net's commands in its smoke mode, resumed, and refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_ext.commands.study import TINY, Budget, write_study_trainers

TRAINERS = ("nnUNetTrainer", "nnUNetTrainerSkeletonRecall")


def _study(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}
    return subprocess.run([sys.executable, "-m", "nnunet_ext.commands.cli", "study", "--workdir", str(workdir), *args],
                          capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.full
def test_tiny_study_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    workdir = tmp_path / "study"
    first = _study(workdir, "--tiny", "-tr", *TRAINERS, "--device", "cpu")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for step in ("dataset: writing 5 training and 6 test cases", "plan and preprocess (2d)",
                 "train nnUNetTrainerSkeletonRecall: starting (1 epochs x 2 iterations", "epoch 1/1",
                 "predict nnUNetTrainer: 6 test images", "evaluate nnUNetTrainerSkeletonRecall"):
        assert step in first.stdout, step
    comparison = json.loads((workdir / "comparison" / "comparison.json").read_text())
    assert comparison["methods"] == list(TRAINERS) and comparison["cases"] == TINY.n_test
    assert {"Dice", "clDice", "Betti0_error"} <= set(comparison["metrics"])
    for name in ("comparison.md", "comparison.png"):
        assert (workdir / "comparison" / name).stat().st_size > 0

    again = _study(workdir, "--tiny", "-tr", *TRAINERS, "--device", "cpu")  # everything is kept
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout and "train nnUNetTrainer: kept (finished)" in again.stdout
    assert "predict nnUNetTrainerSkeletonRecall: kept" in again.stdout and "$" not in again.stdout

    other = _study(workdir, "--tiny", "-tr", "nnUNetTrainer", "nnUNetTrainerClDice", "--device", "cpu")
    assert other.returncode == 1 and "other settings" in other.stderr


def test_refusals(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    result = _study(foreign, "--tiny", "--device", "cpu")
    assert result.returncode == 1 and "not a study folder" in result.stderr
    assert (foreign / "mine.txt").read_text() == "user data" and len(list(foreign.iterdir())) == 1
    for args, message in ((("--full", "--epochs", "3"), "--full is nnU-Net's own budget"),
                          (("--tiny", "--epochs", "0"), "epochs and iterations must be >= 1"),
                          (("--tiny", "-tr", "nnUNetTrainer"), "at least two distinct trainers")):
        result = _study(tmp_path / "refused", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert not (tmp_path / "refused").exists()
    unknown = _study(tmp_path / "d", "--tiny", "-tr", "nnUNetTrainer", "nnUNetTrainerNoSuchThing", "--device", "cpu")
    assert unknown.returncode == 1 and "unknown trainer 'nnUNetTrainerNoSuchThing'" in unknown.stderr


def test_study_trainers_get_the_same_budget(tmp_path: Path) -> None:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_ext.commands.short_runs import ShortRun
    from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall

    path = write_study_trainers(tmp_path, TRAINERS, Budget(3, 7))
    assert path == tmp_path / "study_trainers.py"
    spec = importlib.util.spec_from_file_location("nnunet_ext_test_study_trainers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for trainer, base in zip(TRAINERS, (nnUNetTrainer, nnUNetTrainerSkeletonRecall)):
        short = getattr(module, f"{trainer}__study_3x7")
        assert short.__bases__ == (ShortRun, base)
        # nnU-Net's validation iterations are kept: only the training budget is the study's
        assert (short.short_epochs, short.short_iterations, short.short_val_iterations) == (3, 7, None)
