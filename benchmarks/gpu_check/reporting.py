"""The report: the markdown table, how to read it, the final line, the exit code, and the results files.

``results_record`` is the one place the check's results are put together: the work folder's
gpu_check_results.json and the repository's benchmarks/results/gpu_check.json both hold it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from .comparisons import comparison_lines, with_comparisons
from .config import BASELINE, COMPILE_LOG_LINE, CONFIGURATION, GIB, RESULTS_JSON, RESULTS_MD, RunResult, Settings
from .trainers import default_trainers

MEMORY_NAMES = {"peak_allocated": "peak GPU memory allocated", "peak_reserved": "peak GPU memory reserved",
                "peak_rss": "peak RSS"}


def memory_columns(device: str) -> list[tuple[str, str]]:
    """(memory key, column title) pairs; the first is the one compared with nnUNetTrainer."""
    if device == "cuda":
        return [("peak_allocated", "peak GPU memory allocated (GiB)"), ("peak_reserved", "reserved (GiB)")]
    return [("peak_rss", "peak RSS of the training process (GiB)")]


def ratio(value: float | None, reference: float | None) -> str:
    return "—" if value is None or not reference else f"{value / reference:.2f}"


def yes_no(flag: bool | None) -> str:
    return "—" if flag is None else ("yes" if flag else "no")


def results_table(results: list[RunResult], device: str) -> str:
    """Markdown table: one row per run; ratios against nnUNetTrainer with the same number of GPUs."""
    columns = memory_columns(device)
    header = ["trainer", "s/iteration", "× nnU-Net", columns[0][1], "× nnU-Net", *[title for _, title in columns[1:]],
              "first iteration (s)", "torch.compile", "AMP", "status"]
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    baselines = {r.num_gpus: r for r in results if r.trainer == BASELINE and r.status == "ok"}
    for r in results:
        base = baselines.get(r.num_gpus)
        memory = [r.memory_bytes.get(key, math.nan) / GIB if r.status == "ok" else None for key, _ in columns]
        base_memory = base.memory_bytes.get(columns[0][0], math.nan) / GIB if base else None
        cells = [r.label, _number(r.seconds_per_iteration, 3),
                 ratio(r.seconds_per_iteration, base.seconds_per_iteration if base else None),
                 _number(memory[0], 2), ratio(memory[0], base_memory), *[_number(m, 2) for m in memory[1:]],
                 _number(r.first_iteration_seconds, 1), yes_no(r.compiled), yes_no(r.amp),
                 "ok" if r.status == "ok" else f"{r.status.upper()}: {r.reason}"]
        rows.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(rows)


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def notes(settings: Settings, results: list[RunResult]) -> list[str]:
    """How to read the table."""
    done = [r for r in results if r.status == "ok"]
    shape = f"patch {done[0].patch_size}, batch {done[0].batch_size} (nnU-Net's plans)" if done else "nnU-Net's plans"
    lines = [f"{CONFIGURATION} on {settings.cases} synthetic cases of {settings.size}^3, {shape}, "
             f"{settings.iterations} iterations per run.",
             f"s/iteration: mean wall time of {_iterations(settings.warmup + 1, settings.iterations)} (waiting for "
             f"the data loader included); {_iterations(1, settings.warmup)} left out (torch.compile, data-loader "
             "start); "
             "the first iteration alone is its own column (it depends on torch's compile cache)."]
    if settings.device == "cpu":
        lines.append("device cpu: nnU-Net neither compiles the network (torch.compile) nor uses AMP on the CPU; "
                     "memory is the training process's peak resident set (data-loader workers not included).")
    else:
        lines.append("device cuda: nnU-Net's defaults (AMP with GradScaler; torch.compile unless a trainer turns it "
                     "off); memory is torch.cuda.max_memory_allocated / max_memory_reserved (the largest over ranks).")
        if "nnUNet_compile" in os.environ:
            lines.append(f"nnUNet_compile={os.environ['nnUNet_compile']} is set: not nnU-Net's default.")
    missing_compile = [r.label for r in done if r.compiled and not r.compile_logged]
    if missing_compile:
        lines.append(f"warning: '{COMPILE_LOG_LINE}' not in the log of {', '.join(missing_compile)}")
    lines += comparison_lines(done)
    unstable = [r.label for r in done if not r.finite_losses]
    if unstable:
        lines.append(f"non-finite training losses (AMP overflow steps the GradScaler skips): {', '.join(unstable)}")
    return lines


def ratio_range(values: list[float], reference: float) -> str:
    low, high = min(values) / reference, max(values) / reference
    return f"{low:.2f}x" if math.isclose(low, high) else f"{low:.2f}-{high:.2f}x"


def _iterations(first: int, last: int) -> str:
    return f"iteration {first}" if first == last else f"iterations {first}-{last}"


def final_line(results: list[RunResult], workdir: Path) -> str:
    """One line: how many runs finished, the spread of the ratios to nnUNetTrainer, failures, what is left."""
    done = [r for r in results if r.status == "ok"]
    failed = [r.label for r in results if r.status == "failed"]
    left = [r.label for r in results if r.status == "pending"]
    line = f"gpu_check: {len(done)}/{len(results)} runs finished"
    if done:
        line += f" on {done[0].device_name}"
    base = next((r for r in done if r.trainer == BASELINE and r.num_gpus == 1), None)
    others = [r for r in done if r.num_gpus == 1 and r is not base]
    if base is not None and others:
        memory_key = next(iter(base.memory_bytes))
        time_ratios = ratio_range([r.seconds_per_iteration for r in others], base.seconds_per_iteration)
        memory_ratios = ratio_range([r.memory_bytes[memory_key] for r in others], base.memory_bytes[memory_key])
        line += f"; vs nnUNetTrainer: s/iteration {time_ratios}, {MEMORY_NAMES[memory_key]} {memory_ratios}"
    if failed:
        line += f"; FAILED: {', '.join(failed)}"
    if left:
        line += f"; left for --resume: {', '.join(left)}"
    return line + f"; table: {workdir / RESULTS_MD}"


def exit_code(results: list[RunResult]) -> int:
    if any(r.status == "failed" for r in results):
        return 1
    return 3 if any(r.status == "pending" for r in results) else 0


def load_finished(workdir: Path) -> dict[str, RunResult]:
    """Finished runs of an earlier invocation in this work folder, by label."""
    path = workdir / RESULTS_JSON
    if not path.is_file():
        return {}
    runs = [RunResult(**run) for run in json.loads(path.read_text())["runs"]]
    return {run.label: run for run in runs if run.status == "ok"}


def results_record(settings: Settings, results: list[RunResult]) -> dict:
    """The check's results: every run's numbers or reason, how to read them, whether every run finished."""
    return {"runs": [asdict(r) for r in results], "notes": notes(settings, results),
            "complete": exit_code(results) == 0}


def save_results(workdir: Path, settings: Settings, results: list[RunResult]) -> None:
    """gpu_check_results.json (the settings and ``results_record``) and gpu_check_results.md (the table and its
    notes)."""
    payload = {"settings": asdict(settings), **results_record(settings, results)}
    (workdir / RESULTS_JSON).write_text(json.dumps(payload, indent=2))
    report = [results_table(results, settings.device), "", *notes(settings, results), "", final_line(results, workdir)]
    (workdir / RESULTS_MD).write_text("\n".join(report) + "\n")


def ordered(results: dict[str, RunResult]) -> list[RunResult]:
    """Runs in the default order (nnUNetTrainer first, compared variants after their trainers, single-GPU runs
    before DDP runs)."""
    order = with_comparisons(default_trainers(), "cuda")  # a compared variant right after its trainer

    def key(run: RunResult) -> tuple:
        return run.num_gpus, order.index(run.trainer) if run.trainer in order else len(order), run.label

    return sorted(results.values(), key=key)


def print_report(results: list[RunResult], settings: Settings, workdir: Path) -> None:
    """The table, how to read it, the log tails of failed runs, and the final line."""
    print("\n" + results_table(results, settings.device) + "\n\n" + "\n".join(notes(settings, results)))
    for r in results:
        if r.status == "failed":
            print(f"\n--- {r.label}: last lines of {r.log} ---\n" + "\n".join(r.log_tail))
    print("\n" + final_line(results, workdir))

