"""Which trainers the check runs, and the timed short subclass of each (written with nnunet_ext's short-run writer)."""

from __future__ import annotations

from pathlib import Path

from .config import BASELINE, DDP_TRAINERS, TRAINER_MODULE, RunSpec

TIMED_RUN_MIXIN = "gpu_check.timed_run.TimedRunMixin"
TRAINER_MODULE_DOCSTRING = "Timed short runs for benchmarks/gpu_check.py (written by it into its work folder)."


def our_trainer_classes() -> dict[str, type]:
    """The trainer classes nnunet_ext.trainers exports, by name."""
    from nnunet_ext import trainers

    exported = {name: getattr(trainers, name) for name in trainers.__all__}
    return {name: obj for name, obj in exported.items() if isinstance(obj, type)}


def is_variant(cls: type, ours: list[type]) -> bool:
    """A weight/setting variant subclasses exactly one of our trainers and adds class attributes only."""
    own_methods = [value for value in vars(cls).values()
                   if callable(value) or isinstance(value, (classmethod, staticmethod, property))]
    return len(cls.__bases__) == 1 and cls.__bases__[0] in ours and not own_methods


def default_trainers() -> list[str]:
    """nnUNetTrainer, then every nnunet_ext trainer that is not a variant, in nnunet_ext.trainers' order."""
    ours = our_trainer_classes()
    return [BASELINE] + [name for name, cls in ours.items() if not is_variant(cls, list(ours.values()))]


class UsageError(ValueError):
    """Arguments or work folder this check cannot run with; the message says what to change."""


def select_trainers(requested: list[str] | None) -> list[str]:
    """Requested trainers (baseline first, added if missing, duplicates dropped); UsageError for unknown names."""
    if not requested:
        return default_trainers()
    known = {BASELINE, *our_trainer_classes()}
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise UsageError(f"unknown trainer(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return list(dict.fromkeys([BASELINE, *requested]))


def timed_class_name(trainer: str) -> str:
    return f"{trainer}GpuCheck"


def timed_trainers(trainers: list[str], iterations: int) -> list:
    """One ``ShortTrainer`` per trainer: ``<trainer>GpuCheck``, ``TimedRunMixin`` in front of it, ``iterations``
    timed training iterations."""
    from nnunet_ext.commands.short_runs import ShortTrainer  # imports torch: only when the module is written

    return [ShortTrainer(timed_class_name(name), name, iterations=iterations) for name in trainers]


def write_trainer_module(folder: Path, trainers: list[str], iterations: int) -> Path:
    """``folder/nnunet_ext_gpu_check_trainers.py``: the timed subclasses nnU-Net finds through nnUNet_extTrainer."""
    from nnunet_ext.commands.short_runs import write_short_trainers

    return write_short_trainers(folder, TRAINER_MODULE, timed_trainers(trainers, iterations), TRAINER_MODULE_DOCSTRING,
                                run_mixin=TIMED_RUN_MIXIN)


def run_specs(trainers: list[str], gpus: int, device: str, ddp: bool) -> list[RunSpec]:
    """Every trainer on one device; with 2+ GPUs also the DDP runs of nnUNetTrainer and Skeleton Recall."""
    specs = [RunSpec(name) for name in trainers]
    if device == "cuda" and ddp and gpus >= 2:
        specs += [RunSpec(name, num_gpus=2) for name in DDP_TRAINERS if name in trainers]
    return specs

