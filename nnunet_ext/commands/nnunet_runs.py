"""Running nnU-Net's own console scripts with our trainers: where they are and where nnU-Net finds our trainers."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def trainers_path() -> Path:
    """The folder to put in ``nnUNet_extTrainer`` (where nnU-Net finds our trainers); imports no trainer."""
    spec = importlib.util.find_spec("nnunet_ext.trainers")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nnunet_ext.trainers is not installed: reinstall nnunet_ext (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script, preferring the one beside this Python."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: is nnunetv2 installed in this environment?")
    return found
