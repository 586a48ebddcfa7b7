"""The nnunet-ext command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from nnunet_ext.commands.nnunet_runs import nnunet_command

NNUNET_EXT = str(Path(sys.executable).parent / "nnunet-ext")


def _run(*args: str, timeout: int = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# nnU-Net's own trainer lookup (what nnUNetv2_train and nnUNetv2_predict call), in a fresh process that sees only the
# environment variable
FIND_TRAINER = """
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

found = recursive_find_trainer_class_by_name("nnUNetTrainerSkeletonRecall")
assert issubclass(found, nnUNetTrainer)
print("found", found.__name__, found.__module__)
"""


def test_trainers_path_lets_nnunet_find_our_trainers():
    result = _run("trainers-path")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert not (folder / "conftest.py").exists()
    found = subprocess.run([sys.executable, "-c", FIND_TRAINER], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "nnUNet_extTrainer": str(folder)})
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]
    assert f"Using trainer 'nnUNetTrainerSkeletonRecall' from: {folder}" in found.stdout
    assert "found nnUNetTrainerSkeletonRecall nnUNetTrainerSkeletonRecall" in found.stdout


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


@pytest.mark.full
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
    # the demo ran nnU-Net's own commands, with its trainers from its own folder (the printed commands)
    for trainer in ("nnUNetTrainerDemoPlain", "nnUNetTrainerSkeletonRecallDemo"):
        assert f"$ {nnunet_command('nnUNetv2_train')} 901 2d 0 -tr {trainer} -device cpu" in result.stdout
    assert (workdir / "my_trainers" / "demo_trainers.py").is_file()
