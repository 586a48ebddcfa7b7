"""The synthetic dataset and nnU-Net's planning and preprocessing of it (nnU-Net's commands, or its API in --tiny)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .config import CONFIGURATION, DATASET_ID, DATASET_NAME, Settings
from .workdir import save_state


def write_dataset(workdir: Path, settings: Settings) -> Path:
    """The synthetic thin-structure dataset (hard images: low contrast, clutter, occluded gaps)."""
    from nnunet_ext.data.synthetic import write_raw_dataset
    from nnunet_ext.data.synthetic_image import ImageParams

    return write_raw_dataset(workdir / "nnUNet_raw", DATASET_ID, DATASET_NAME, dim=3, n_train=settings.cases,
                             n_test=0, size=settings.size, image_params=ImageParams())


def run_logged(args: list[str], env: dict, log: Path) -> None:
    """Run a command with its output appended to ``log``; RuntimeError naming the log if it fails."""
    print("$", " ".join(args), flush=True)
    with open(log, "a") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed (exit {result.returncode}); see {log}")


def plan_default(env: dict, log: Path) -> None:
    """nnU-Net's own planning and preprocessing, all defaults."""
    from nnunet_ext.commands.nnunet_runs import nnunet_command

    env = {**env, "nnUNet_n_proc_DA": "1"} if env.get("nnUNet_n_proc_DA") == "0" else env  # see planner_threads_env
    run_logged([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION],
               env, log)


@contextlib.contextmanager
def planner_threads_env() -> Iterator[None]:
    """nnU-Net's planner hands nnUNet_n_proc_DA to torch.set_num_threads, which refuses 0 (fine for training: the
    data loader then runs in the training process); plan with 1 then."""
    value = os.environ.get("nnUNet_n_proc_DA")
    if value == "0":
        os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        yield
    finally:
        if value is not None:
            os.environ["nnUNet_n_proc_DA"] = value


def plan_tiny(log: Path) -> None:
    """Smoke mode, in this process through nnU-Net's planning API (the functions its commands call): the
    fingerprint with 1e4 instead of 1e8 intensity samples (~40 s less; z-scored images do not use them), nnU-Net's
    default experiment planner, preprocessing of 3d_fullres."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset, preprocess_dataset

    print(f"planning and preprocessing (in process, fingerprint with 1e4 intensity samples; log: {log})", flush=True)
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            planner_threads_env():
        extractor = DatasetFingerprintExtractor(DATASET_ID, num_processes=1)
        extractor.num_foreground_voxels_for_intensitystats = 10_000
        extractor.run()
        plan_experiment_dataset(DATASET_ID)
        preprocess_dataset(DATASET_ID, configurations=[CONFIGURATION], num_processes=[1], show_progress_bar=False)


def prepare_data(workdir: Path, settings: Settings, state: dict, env: dict) -> None:
    """Dataset, then planning/preprocessing; stages already done (state) are skipped."""
    log = workdir / "logs" / "plan_and_preprocess.log"
    if not state["dataset"]:
        if (workdir / "nnUNet_raw" / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}").exists():
            raise RuntimeError("the dataset was left incomplete by an interrupted run; use a new --workdir")
        started = time.perf_counter()
        folder = write_dataset(workdir, settings)
        print(f"dataset: {settings.cases} cases of {settings.size}^3 in {folder} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        state["dataset"] = True
        save_state(workdir, state)
    if not state["planned"]:
        started = time.perf_counter()
        if settings.tiny:
            plan_tiny(log)
        else:
            plan_default(env, log)
        print(f"planned and preprocessed in {time.perf_counter() - started:.0f} s (log: {log})", flush=True)
        state["planned"] = True
        save_state(workdir, state)

