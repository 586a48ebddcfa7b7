"""The work folder: nnU-Net's folders in it, the state of a check (for --resume), the environment of its runs."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .config import STATE_FILE, Settings
from .trainers import write_trainer_module

BENCHMARKS = Path(__file__).resolve().parents[1]  # on PYTHONPATH of the runs: their trainers import gpu_check


def nnunet_paths(workdir: Path) -> dict[str, str]:
    return {"nnUNet_raw": str(workdir / "nnUNet_raw"), "nnUNet_preprocessed": str(workdir / "nnUNet_preprocessed"),
            "nnUNet_results": str(workdir / "nnUNet_results")}


def load_state(workdir: Path) -> dict | None:
    path = workdir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def save_state(workdir: Path, state: dict) -> None:
    (workdir / STATE_FILE).write_text(json.dumps(state, indent=2))


def check_workdir(workdir: Path, resume: bool, settings: Settings) -> str | None:
    """Why this work folder cannot be used (None: it can). Never deletes or changes anything."""
    if workdir.exists() and not workdir.is_dir():
        return f"{workdir} is not a folder"
    if not workdir.exists() or not any(workdir.iterdir()):
        return None
    if not resume:
        return (f"{workdir} exists and is not empty; pass --resume to continue a check there, or a new --workdir "
                "(nothing is ever deleted)")
    state = load_state(workdir)
    if state is None:
        return f"{workdir} is not a gpu_check work folder (no {STATE_FILE}); pass a new --workdir"
    differences = [f"{key} {state['settings'].get(key)} there, {value} now"
                   for key, value in asdict(settings).items() if state["settings"].get(key) != value]
    if differences:
        return f"--resume with other settings than {workdir} was started with: {'; '.join(differences)}"
    return None


def prepare_workdir(workdir: Path, settings: Settings, trainers: list[str]) -> dict:
    """Create the folders and the timed trainer module; returns the state (stages done so far)."""
    state = load_state(workdir) or {"settings": asdict(settings), "dataset": False, "planned": False}
    for folder in (*map(Path, nnunet_paths(workdir).values()), workdir / "trainers", workdir / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    write_trainer_module(workdir / "trainers", trainers, settings.iterations)
    save_state(workdir, state)
    return state


def training_env(workdir: Path) -> dict[str, str]:
    """The environment of nnU-Net's commands: this work folder's nnU-Net folders and the timed trainers (which
    import ``gpu_check.timed_run``: benchmarks/ goes on PYTHONPATH)."""
    from nnunet_ext.commands.nnunet_runs import trainers_path

    python_path = os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **nnunet_paths(workdir), "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path,
            "nnUNet_extTrainer": os.pathsep.join([str(workdir / "trainers"), str(trainers_path())])}

