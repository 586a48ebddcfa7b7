"""The runs: ``nnUNetv2_train`` in its own process group within the time budget, stopped with everything it started
when the budget is spent, and the timing records its trainer wrote, summarized."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

from .config import (
    COMPILE_LOG_LINE,
    CONFIGURATION,
    DATASET_ID,
    DATASET_NAME,
    TIMING_FILE,
    RunResult,
    RunSpec,
    Settings,
    pending,
)
from .reporting import load_finished, ordered, save_results
from .trainers import timed_class_name


class TimeBudget:
    """Wall-clock budget of this invocation; a run starts only if the previous run's duration still fits."""

    def __init__(self, seconds: float, first_estimate: float):
        self.deadline = time.monotonic() + seconds if seconds > 0 else None
        self.estimate = first_estimate

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def allows_a_run(self) -> bool:
        remaining = self.remaining()
        return remaining is None or remaining >= self.estimate

    def record(self, seconds: float) -> None:
        self.estimate = seconds


def stop_process_group(process: subprocess.Popen) -> None:
    """Terminate a run and everything it started (its own process group), then kill what is left."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def train_command(spec: RunSpec, device: str) -> list[str]:
    from nnunet_ext.commands.nnunet_runs import nnunet_command

    args = [nnunet_command("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, "0",
            "-tr", timed_class_name(spec.trainer), "-device", device, "--disable_checkpointing"]
    return args + (["-num_gpus", str(spec.num_gpus)] if spec.num_gpus > 1 else [])


def fold_folder(workdir: Path, trainer: str) -> Path:
    results = workdir / "nnUNet_results" / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
    return results / f"{timed_class_name(trainer)}__nnUNetPlans__{CONFIGURATION}" / "fold_0"


def execute(args: list[str], env: dict, log: Path, timeout: float | None) -> tuple[int | None, str]:
    """Run a command into ``log`` (appended) in its own process group; (exit code or None on timeout, its output)."""
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "a") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(args)}\n")
        out.flush()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(process)
            code = None
        except BaseException:
            stop_process_group(process)
            raise
    with open(log, errors="replace") as text:
        text.seek(offset)
        return code, text.read()


def failure_reason(output: str) -> str:
    """The line that says why a run failed: the last line naming an error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line or "error:" in line]
    reason = (errors or lines or ["no output"])[-1]
    return reason if len(reason) <= 200 else reason[:197] + "..."


def read_timings(folder: Path, num_gpus: int, not_before: float) -> list[dict] | None:
    """Every rank's timing record written by this run (not an older one), or None if one is missing."""
    paths = [folder / TIMING_FILE.format(rank=rank) for rank in range(num_gpus)]
    if not all(path.is_file() and path.stat().st_mtime >= not_before for path in paths):
        return None
    return [json.loads(path.read_text()) for path in paths]


def summarize(spec: RunSpec, records: list[dict], warmup: int, output: str) -> RunResult:
    """Numbers of a finished run: rank 0's iteration times, the largest peak memory over the ranks."""
    seconds = records[0]["iteration_seconds"]
    measured = seconds[warmup:]
    memory_keys = [key for key in records[0] if key.startswith("peak_") and key.endswith("_bytes")]
    losses = [loss for record in records for loss in record["train_losses"]]
    return RunResult(
        label=spec.label, trainer=spec.trainer, num_gpus=spec.num_gpus, status="ok",
        seconds_per_iteration=statistics.fmean(measured), median_seconds_per_iteration=statistics.median(measured),
        first_iteration_seconds=seconds[0], measured_iterations=len(measured),
        memory_bytes={key.removesuffix("_bytes"): max(r[key] for r in records) for key in memory_keys},
        compiled=records[0]["compiled"], compile_logged=COMPILE_LOG_LINE in output, amp=records[0]["amp"],
        finite_losses=all(math.isfinite(loss) for loss in losses), batch_size=records[0]["batch_size"],
        patch_size=records[0]["patch_size"], device_name=records[0]["device_name"])


def run_one(spec: RunSpec, workdir: Path, settings: Settings, env: dict, timeout: float | None) -> RunResult:
    """Train one run through nnUNetv2_train and read what its timed trainer recorded."""
    log = workdir / "logs" / f"{spec.slug}.log"
    args = train_command(spec, settings.device)
    print("$", " ".join(args), flush=True)
    started, clock = time.time(), time.monotonic()
    code, output = execute(args, env, log, timeout)
    wall = time.monotonic() - clock
    tail = output.splitlines()[-15:]
    common = {"label": spec.label, "trainer": spec.trainer, "num_gpus": spec.num_gpus, "wall_seconds": wall,
              "log": str(log)}
    if code is None:
        return RunResult(**common, status="pending", log_tail=tail,
                         reason=f"stopped at the time budget after {wall:.0f} s; rerun with --resume "
                                "(or a larger --time-budget)")
    records = read_timings(fold_folder(workdir, spec.trainer), spec.num_gpus, started) if code == 0 else None
    if records is None:
        reason = failure_reason(output) if code else "finished without writing its timing file"
        return RunResult(**common, status="failed", reason=f"exit {code}: {reason}", log_tail=tail)
    result = summarize(spec, records, settings.warmup, output)
    result.wall_seconds, result.log = wall, str(log)
    return result



def run_all(workdir: Path, settings: Settings, specs: list[RunSpec], env: dict, budget: TimeBudget,
            resume: bool) -> list[RunResult]:
    """Every run not finished before (--resume), within the time budget; results saved after each run."""
    results = load_finished(workdir) if resume else {}
    for spec in specs:
        if spec.label in results:
            print(f"{spec.label}: finished in an earlier invocation, kept", flush=True)
            continue
        if not budget.allows_a_run():
            results[spec.label] = pending(spec, "not started: time budget spent; rerun with --resume")
            continue
        result = run_one(spec, workdir, settings, env, budget.remaining())
        budget.record(result.wall_seconds or 0.0)
        results[spec.label] = result
        print(f"{spec.label}: {_progress(result)}", flush=True)
        save_results(workdir, settings, ordered(results))
    return ordered(results)


def _progress(result: RunResult) -> str:
    if result.status != "ok":
        return f"{result.status}: {result.reason} (log: {result.log})"
    return f"{result.seconds_per_iteration:.3f} s/iteration, {result.wall_seconds:.0f} s in all (log: {result.log})"

