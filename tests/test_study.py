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


def _study(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}
    return subprocess.run([sys.executable, "-m", "nnunet_ext.commands.cli", "study", "--workdir", str(workdir), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _refused_study(capsys: pytest.CaptureFixture, workdir: Path, *args: str) -> tuple[int, str]:
    """``nnunet-ext study`` through the command's own ``main`` in this process, for refusals (nothing trains):
    its exit code (argparse's 2 included) and what it wrote to stderr."""
    from nnunet_ext.commands.cli import main

    capsys.readouterr()
    try:
        code = main(["study", "--workdir", str(workdir), *args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.full
def test_tiny_study_with_repeats_runs_end_to_end_compares_means_and_resumes(tmp_path: Path) -> None:
    """The whole study in its smoke mode with two repeats (four short trainings): steps, the comparison of the
    means over repeats with the run-to-run spread, then a resume that keeps everything, and a refusal."""
    workdir = tmp_path / "study"
    first = _study(workdir, "--tiny", "--repeats", "2", "-tr", *TRAINERS, "--device", "cpu", timeout=2400)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for step in ("dataset: writing 5 training and 6 test cases", "plan and preprocess (2d)",
                 "train nnUNetTrainerSkeletonRecall seed 0: starting (1 epochs x 2 iterations",
                 "train nnUNetTrainer seed 1: starting", "epoch 1/1", "evaluate nnUNetTrainerSkeletonRecall"):
        assert step in first.stdout, step
    comparison = json.loads((workdir / "comparison" / "comparison.json").read_text())
    assert comparison["methods"] == list(TRAINERS) and comparison["cases"] == TINY.n_test
    assert comparison["repeats"] == 2
    assert {"Dice", "clDice", "Betti0_error"} <= set(comparison["metrics"])
    d = comparison["metrics"]["Dice"]["versus_baseline"][TRAINERS[1]]
    assert len(d["repeats"]["per_repeat_mean_differences"]) == 2
    assert "spread" in (workdir / "comparison" / "comparison.md").read_text()
    for name in ("comparison.md", "comparison.png"):
        assert (workdir / "comparison" / name).stat().st_size > 0
    state = json.loads((workdir / "study.json").read_text())
    assert state["settings"]["repeats"] == 2 and "train nnUNetTrainerSkeletonRecall seed 1" in state["wall_seconds"]

    again = _study(workdir, "--tiny", "--repeats", "2", "-tr", *TRAINERS, "--device", "cpu")  # everything is kept
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout and "kept (finished)" in again.stdout
    assert "starting" not in again.stdout and "$" not in again.stdout

    other = _study(workdir, "--tiny", "-tr", "nnUNetTrainer", "nnUNetTrainerClDice", "--device", "cpu")
    assert other.returncode == 1 and "other settings" in other.stderr


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    code, err = _refused_study(capsys, foreign, "--tiny", "--device", "cpu")
    assert code == 1 and "not a study folder" in err
    assert (foreign / "mine.txt").read_text() == "user data" and len(list(foreign.iterdir())) == 1
    for args, message in ((("--full", "--epochs", "3"), "--full is nnU-Net's own budget"),
                          (("--tiny", "--epochs", "0"), "epochs and iterations must be >= 1"),
                          (("--tiny", "--repeats", "0"), "--repeats must be >= 1"),
                          (("--tiny", "-tr", "nnUNetTrainer"), "at least two distinct trainers")):
        code, err = _refused_study(capsys, tmp_path / "refused", *args)
        assert code == 2 and message in err, (args, err)
        assert not (tmp_path / "refused").exists()
    code, err = _refused_study(capsys, tmp_path / "d", "--tiny", "-tr", "nnUNetTrainer", "nnUNetTrainerNoSuchThing",
                               "--device", "cpu")
    assert code == 1 and "unknown trainer 'nnUNetTrainerNoSuchThing'" in err


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


# --- issue 21: resume after a killed final validation, study.json, repeats, the 3D benchmark ---------------------

def _settings(repeats: int = 1):
    from nnunet_ext.commands.study import StudySettings

    return StudySettings(TINY, Budget(1, 2), TRAINERS, "cpu", repeats)


def _recording_study(tmp_path: Path, repeats: int = 1):
    """A claimed study whose nnU-Net commands are recorded instead of run."""
    from nnunet_ext.commands.study import Study

    study = Study(tmp_path / "study", _settings(repeats))
    study.claim_workdir()
    study.commands = []
    study.run = lambda args, **_: study.commands.append(args)
    return study


def test_a_training_killed_in_its_final_validation_is_completed_with_val(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    from nnunet_ext.commands.study import training_state

    study = _recording_study(tmp_path)
    fold = study.fold_folder("nnUNetTrainer")
    (fold / "validation").mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"weights")
    (fold / "validation" / "TopologyStudy2D_000.nii.gz").write_bytes(b"one prediction of five")
    assert training_state(fold) == "validate"
    study.train("nnUNetTrainer")
    assert len(study.commands) == 1 and study.commands[0][-1] == "--val" and "--c" not in study.commands[0]
    assert "-tr" in study.commands[0] and "nnUNetTrainer__study_1x2" in study.commands[0]
    assert "final validation did not finish" in capsys.readouterr().out
    (fold / "validation" / "summary.json").write_text("{}")  # what --val writes last
    study.train("nnUNetTrainer")
    assert len(study.commands) == 1 and "kept (finished)" in capsys.readouterr().out
    (fold / "checkpoint_final.pth").unlink()
    (fold / "checkpoint_latest.pth").write_bytes(b"weights")
    assert training_state(fold) == "continue" and training_state(tmp_path / "nothing") == "start"
    study.train("nnUNetTrainer")
    assert study.commands[-1][-1] == "--c"
    state = json.loads((study.workdir / "study.json").read_text())
    assert set(state["wall_seconds"]) == {"train nnUNetTrainer"}, "wall time of the steps that ran"


def test_study_json_records_settings_versions_and_accepts_an_older_flat_one(tmp_path: Path) -> None:
    from nnunet_ext.commands.study import Study

    study = _recording_study(tmp_path)
    state = json.loads((study.workdir / "study.json").read_text())
    assert state["settings"] == _settings().to_json() and "repeats" not in state["settings"]
    assert state["settings"]["benchmark"] == {"dim": 2, "size": 32, "n_train": 5, "n_test": 6, "n_classes": 1,
                                              "seed": 2026}
    versions = state["runs"][0]["versions"]
    assert versions["nnunetv2"] and versions["torch"] and "commit" in versions
    old = tmp_path / "old"
    old.mkdir()
    (old / "study.json").write_text(json.dumps(_settings().to_json()))  # as written before study.json had sections
    assert Study(old, _settings()).claim_workdir() is True
    assert json.loads((old / "study.json").read_text())["settings"] == _settings().to_json()
    from nnunet_ext.commands.study import StudyError

    with pytest.raises(StudyError, match="other settings"):
        Study(old, _settings(repeats=2)).claim_workdir()


def test_repeats_train_seeded_trainers_into_their_own_folders(tmp_path: Path) -> None:
    from nnunet_ext.commands.study import SeededShortRun

    study = _recording_study(tmp_path, repeats=2)
    assert study.trainer_to_run("nnUNetTrainer", 1) == "nnUNetTrainer__study_1x2_seed1"
    assert study.fold_folder("nnUNetTrainer", 0) != study.fold_folder("nnUNetTrainer", 1)
    assert study.predictions("nnUNetTrainer", 1).name == "seed_1"
    for repeat in (0, 1):
        study.train("nnUNetTrainer", repeat)
    assert [c[c.index("-tr") + 1] for c in study.commands] == [f"nnUNetTrainer__study_1x2_seed{r}" for r in (0, 1)]
    path = write_study_trainers(tmp_path / "trainers", TRAINERS, Budget(1, 2), repeats=2)
    spec = importlib.util.spec_from_file_location("nnunet_ext_test_seeded_study_trainers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seeded = module.nnUNetTrainerSkeletonRecall__study_1x2_seed1
    assert issubclass(seeded, SeededShortRun) and seeded.repeat_seed == 1 and seeded.short_epochs == 1


def test_merged_dataset_json_evaluates_every_class_as_one_region() -> None:
    from nnunet_ext.commands.study import merged_dataset_json

    merged = merged_dataset_json({"labels": {"background": 0, "vessel1": 1, "vessel2": 2}, "file_ending": ".nii.gz"})
    assert merged["labels"] == {"background": 0, "vessels": [1, 2]} and merged["regions_class_order"] == [1]


def test_3d_defaults_and_repeats_option() -> None:
    from nnunet_ext.commands.study import BENCHMARKS, DEFAULT_BUDGETS, DEFAULT_TRAINERS

    b = BENCHMARKS[3]
    assert (b.dim, b.n_classes, b.crossing_trees) == (3, 2, True) and b.n_test >= 12
    assert DEFAULT_TRAINERS == ("nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerClDice")
    from nnunet_ext.commands.cli import build_parser

    study_help = build_parser()._subparsers._group_actions[0].choices["study"].format_help()
    assert f"{DEFAULT_BUDGETS[3].epochs} in 3D" in study_help and f"{DEFAULT_BUDGETS[3].iterations} in 3D" in study_help
    assert "--repeats REPEATS" in study_help


def test_the_wall_time_estimate_adds_up_the_timed_steps() -> None:
    from nnunet_ext.commands.study import (
        BENCHMARKS,
        DEFAULT_BUDGETS,
        ESTIMATED_CPU_MINUTES,
        MEASURED_3D_CPU,
        Benchmark,
        StepTimes,
        estimated_minutes,
    )

    times = StepTimes(train_step={"a": 2.0, "b": 3.0}, validation_step={"a": 1.0, "b": 1.0}, predict_case=4.0,
                      dataset=10.0, preprocess=50.0, process_start=5.0, evaluate_case=0.5)
    benchmark = Benchmark(dim=3, size=32, n_train=10, n_test=4, n_classes=2)
    # per trainer: train (5 s start + 2 epochs x (10 x step + 50 x 1 s) + 2 validation cases x 4 s),
    # predict (5 s + 4 cases x 4 s), evaluate (4 cases x 0.5 s, per class and merged)
    expected = 60 + sum(5 + 2 * (10 * step + 50) + 8 + 5 + 16 + 4 for step in (2.0, 3.0))
    assert estimated_minutes(benchmark, Budget(2, 10), times) == pytest.approx(expected / 60)
    assert set(MEASURED_3D_CPU.train_step) == {"nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerClDice"}
    assert ESTIMATED_CPU_MINUTES[3] == round(estimated_minutes(BENCHMARKS[3], DEFAULT_BUDGETS[3], MEASURED_3D_CPU))
    assert ESTIMATED_CPU_MINUTES[3] <= 150


def test_the_study_compares_the_means_over_repeats(tmp_path: Path) -> None:
    """The study's last step with made-up per-case values of two repeats (the trainings are tested above)."""
    import numpy as np

    study = _recording_study(tmp_path, repeats=2)
    base = np.linspace(0.4, 0.8, 8)

    def runs(*shifts: float) -> list[dict]:
        return [{f"c{i}.nii.gz": {"Dice": float(v + s), "merged clDice": float(v)} for i, v in enumerate(base)}
                for s in shifts]

    out = study.compare({TRAINERS[0]: runs(0.0, 0.01), TRAINERS[1]: runs(0.3, 0.32)})
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["repeats"] == 2 and list(comparison["metrics"]) == ["Dice", "merged clDice"]
    d = comparison["metrics"]["Dice"]["versus_baseline"][TRAINERS[1]]
    assert d["mean_difference"] == pytest.approx(0.305) and d["repeats"]["range"] == pytest.approx([0.3, 0.31])
    assert "compare" in json.loads((study.workdir / "study.json").read_text())["wall_seconds"]
