"""The nnunet-ext command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image

from nnunet_ext.commands.nnunet_runs import nnunet_command

NNUNET_EXT = str(Path(sys.executable).parent / "nnunet-ext")


def _run(*args: str, timeout: int = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_trainers_path_points_at_the_trainer_modules():
    result = _run("trainers-path")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert (folder / "nnUNetTrainerSkeletonRecall.py").is_file()
    assert not (folder / "conftest.py").exists()


def test_help_explains_the_setup():
    for args in ((), ("--help",)):
        result = _run(*args)
        assert result.returncode == 0
        assert "nnUNet_extTrainer" in result.stdout and "trainers-path" in result.stdout
        assert "nnUNetv2_train" in result.stdout
    assert "nnUNet_extTrainer" in _run("trainers-path", "--help").stdout


def test_unknown_command_fails_clearly():
    result = _run("frobnicate")
    assert result.returncode != 0 and "invalid choice" in result.stderr


def test_demo_refuses_an_existing_folder(tmp_path: Path):
    (tmp_path / "mine.txt").write_text("user data")
    result = _run("demo", "--workdir", str(tmp_path))
    assert result.returncode == 2 and "never overwrites" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_demo_rejects_too_few_cases(tmp_path: Path):
    result = _run("demo", "--workdir", str(tmp_path / "d"), "--cases", "3")
    assert result.returncode == 2 and "at least 5" in result.stderr
    assert not (tmp_path / "d").exists()


def test_demo_runs_end_to_end(tmp_path: Path):
    workdir = tmp_path / "demo"
    # the data loader in the training process: worker start-up would dominate 2 iterations
    result = _run("demo", "--workdir", str(workdir), "--epochs", "1", "--iterations", "2", "--cases", "5",
                  timeout=900, env={"nnUNet_n_proc_DA": "0"})
    log = (workdir / "demo.log").read_text() if (workdir / "demo.log").exists() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + log[-3000:]
    # both trainers predicted the 4 test images and were evaluated; the table compares them
    for trainer in ("nnUNetTrainerDemoPlain", "nnUNetTrainerSkeletonRecallDemo"):
        folder = workdir / "predictions" / trainer
        assert len(list(folder.glob("*.nii.gz"))) == 4
        summary = json.loads((folder / "summary_topology.json").read_text())
        assert len(summary["metric_per_case"]) == 4
        fold = next((workdir / "nnUNet_results").glob(f"*/{trainer}__nnUNetPlans__2d/fold_0"))
        assert (fold / "validation" / "summary_topology.json").is_file()  # topology in nnU-Net's validation
    table = (workdir / "results.md").read_text()
    assert "| metric | nnU-Net (CE+Dice) | Skeleton Recall |" in table and "| clDice (higher is better) |" in table
    assert table.strip() in result.stdout
    picture = matplotlib.image.imread(workdir / "demo.png")
    assert picture.shape[1] > 4 * picture.shape[0] and picture[..., :3].std() > 0.1  # five panels, not blank
    assert nnunet_command("nnUNetv2_train")  # the demo used nnU-Net's own commands
