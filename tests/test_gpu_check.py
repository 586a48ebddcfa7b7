"""benchmarks/gpu_check.py (the package benchmarks/gpu_check/): the message without a GPU, the CPU smoke mode end
to end (as subprocesses), and the report of failed and unfinished runs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer_matrix import TRAINERS

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"  # runs the package benchmarks/gpu_check/
SMOKE_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerSkeletonRecall")


def run_script(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def gpu_check():
    """The check's package benchmarks/gpu_check/ (not part of the installed package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(BENCHMARKS))


def table_row(output: str, trainer: str) -> list[str]:
    """The cells of the markdown table row of ``trainer``."""
    rows = [line for line in output.splitlines() if line.startswith(f"| {trainer} |")]
    assert len(rows) == 1, output
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_without_cuda_it_says_so_and_runs_nothing(tmp_path: Path):
    workdir = tmp_path / "check"
    result = run_script("--workdir", str(workdir), env={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert result.returncode == 2
    message = result.stdout + result.stderr
    assert len(message.strip().splitlines()) == 1, message
    assert "no CUDA GPU is available" in message
    assert "--device cpu --tiny" in message
    assert not workdir.exists()


@pytest.mark.full
def test_cpu_tiny_smoke_run_prints_table_writes_json_and_resumes(tmp_path: Path):
    workdir = tmp_path / "check"
    args = ("--workdir", str(workdir), "--device", "cpu", "--tiny")
    result = run_script(*args, "--trainers", *SMOKE_TRAINERS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for trainer in SMOKE_TRAINERS:
        cells = table_row(result.stdout, trainer)
        # trainer | s/iteration | x | peak RSS | x | first iteration | compile | AMP | status
        numbers = [float(cells[i]) for i in (1, 2, 3, 4, 5)]
        assert all(math.isfinite(n) and n > 0 for n in numbers), cells
        assert cells[6:] == ["no", "no", "ok"], cells
    assert table_row(result.stdout, "nnUNetTrainer")[2] == "1.00"
    assert "nnU-Net neither compiles the network (torch.compile) nor uses AMP on the CPU" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("gpu_check: 2/2 runs finished")

    report = json.loads((workdir / "gpu_check_results.json").read_text())
    assert report["settings"]["iterations"] == 3 and report["settings"]["warmup"] == 1
    runs = {run["trainer"]: run for run in report["runs"]}
    assert set(runs) == set(SMOKE_TRAINERS)
    for run in runs.values():
        assert run["status"] == "ok"
        assert run["measured_iterations"] == 2
        assert math.isfinite(run["seconds_per_iteration"]) and run["seconds_per_iteration"] > 0
        assert run["memory_bytes"]["peak_rss"] > 0
        assert run["compiled"] is False and run["amp"] is False and run["finite_losses"] is True
        assert run["patch_size"] == [32, 32, 32]
    assert (workdir / "gpu_check_results.md").read_text().startswith("| trainer |")

    # an existing work folder is refused without --resume; with it, finished runs are kept, nothing is trained
    refused = run_script(*args, timeout=120)
    assert refused.returncode == 2 and "pass --resume" in refused.stderr
    resumed = run_script(*args, "--resume", "--trainers", *SMOKE_TRAINERS, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    assert resumed.stdout.count("finished in an earlier invocation, kept") == 2
    assert "nnUNetv2_train" not in resumed.stdout


def test_default_trainers_are_ours_without_variants(gpu_check):
    # nnU-Net's first (the reference), then ours in nnunet_ext.trainers' (alphabetical) order, no variant
    assert gpu_check.default_trainers() == ["nnUNetTrainer", *sorted(case.name for case in TRAINERS)]
    assert gpu_check.select_trainers(["nnUNetTrainerUNetV2"]) == ["nnUNetTrainer", "nnUNetTrainerUNetV2"]
    with pytest.raises(gpu_check.UsageError, match="nnUNetTrainerNope"):
        gpu_check.select_trainers(["nnUNetTrainerNope"])


def test_the_timed_trainers_are_short_runs_written_by_the_shared_writer(gpu_check, tmp_path: Path):
    from nnunet_ext.commands.short_runs import ShortRun
    from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall

    path = gpu_check.trainers.write_trainer_module(tmp_path, ["nnUNetTrainerSkeletonRecall"], iterations=4)
    spec = importlib.util.spec_from_file_location("nnunet_ext_test_gpu_check_trainers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timed = module.nnUNetTrainerSkeletonRecallGpuCheck
    assert timed.__bases__ == (gpu_check.timed_run.TimedRunMixin, nnUNetTrainerSkeletonRecall)
    assert issubclass(timed, ShortRun)
    assert (timed.short_epochs, timed.short_iterations, timed.short_val_iterations) == (1, 4, 0)
    assert timed.skip_final_validation == "timed run"


def test_on_cuda_the_device_fields_variant_is_compared_with_its_trainer(gpu_check):
    trainers = gpu_check.default_trainers()
    assert gpu_check.with_comparisons(trainers, "cpu") == trainers  # the CPU smoke test runs what it is given
    on_cuda = gpu_check.with_comparisons(trainers, "cuda")
    at = on_cuda.index("nnUNetTrainerHausdorffDT")
    assert on_cuda[at + 1] == "nnUNetTrainerHausdorffDTDeviceFields" and len(on_cuda) == len(trainers) + 1
    assert gpu_check.with_comparisons(["nnUNetTrainer"], "cuda") == ["nnUNetTrainer"]  # only with its trainer
    runs = [gpu_check.RunResult(label=name, trainer=name, num_gpus=1, status="ok", seconds_per_iteration=seconds,
                                memory_bytes={"peak_allocated": memory})
            for name, seconds, memory in (("nnUNetTrainerHausdorffDT", 0.5, 4), ("nnUNetTrainerHausdorffDTDeviceFields",
                                                                                0.4, 5))]
    assert gpu_check.comparison_lines(runs) == [
        "nnUNetTrainerHausdorffDTDeviceFields vs nnUNetTrainerHausdorffDT (Hausdorff DT ground-truth fields on the "
        "GPU, not in the data-loader workers): s/iteration 0.80×, peak memory (peak_allocated) 1.25×."]
    assert gpu_check.comparison_lines(runs[:1]) == []


def test_ddp_runs_only_with_two_gpus(gpu_check):
    trainers = gpu_check.default_trainers()
    assert [s.label for s in gpu_check.run_specs(trainers, 1, "cuda", ddp=True)] == trainers
    ddp = [s.label for s in gpu_check.run_specs(trainers, 2, "cuda", ddp=True)][len(trainers):]
    assert ddp == ["nnUNetTrainer (DDP, 2 GPUs)", "nnUNetTrainerSkeletonRecall (DDP, 2 GPUs)"]


def test_failed_and_unfinished_runs_are_reported_with_their_reason(gpu_check, tmp_path: Path):
    ok = gpu_check.RunResult(label="nnUNetTrainer", trainer="nnUNetTrainer", num_gpus=1, status="ok",
                             seconds_per_iteration=0.2, first_iteration_seconds=60.0, device_name="GPU",
                             memory_bytes={"peak_allocated": 4 * 2**30, "peak_reserved": 5 * 2**30},
                             compiled=True, amp=True)
    slower = gpu_check.RunResult(**{**ok.__dict__, "label": "nnUNetTrainerUNetV2", "trainer": "nnUNetTrainerUNetV2",
                                    "seconds_per_iteration": 0.3,
                                    "memory_bytes": {"peak_allocated": 6 * 2**30, "peak_reserved": 7 * 2**30}})
    failed = gpu_check.RunResult(label="nnUNetTrainerUNet3Plus", trainer="nnUNetTrainerUNet3Plus", num_gpus=1,
                                 status="failed", reason="exit 1: torch.OutOfMemoryError: CUDA out of memory.")
    left = gpu_check.pending(gpu_check.RunSpec("nnUNetTrainerClDice"), "not started: time budget spent")
    results = [ok, slower, failed, left]
    table = gpu_check.results_table(results, "cuda")
    assert table_row(table, "nnUNetTrainerUNetV2")[1:6] == ["0.300", "1.50", "6.00", "1.50", "7.00"]
    assert "FAILED: exit 1: torch.OutOfMemoryError: CUDA out of memory." in table_row(table, "nnUNetTrainerUNet3Plus")
    assert table_row(table, "nnUNetTrainerClDice")[-1].startswith("PENDING: not started")
    line = gpu_check.final_line(results, tmp_path)
    assert "2/4 runs finished on GPU" in line and "s/iteration 1.50x" in line
    assert "FAILED: nnUNetTrainerUNet3Plus" in line and "left for --resume: nnUNetTrainerClDice" in line
    assert gpu_check.exit_code(results) == 1
    assert gpu_check.exit_code([ok, left]) == 3
    assert gpu_check.exit_code([ok]) == 0
    assert gpu_check.failure_reason("Traceback\n  File x\ntorch.OutOfMemoryError: CUDA out of memory\n\n") == \
        "torch.OutOfMemoryError: CUDA out of memory"


def _running(pid: int) -> bool:
    """Whether a process is alive (a zombie waiting to be reaped counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_run_past_the_time_budget_is_stopped_with_its_children(gpu_check, tmp_path: Path):
    child = ("import subprocess, sys, time\n"
             "sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
             "print('grandchild', sleeper.pid, flush=True)\n"
             "time.sleep(60)\n")
    started = time.monotonic()
    code, output = gpu_check.execute([sys.executable, "-c", child], dict(os.environ), tmp_path / "run.log", timeout=3)
    assert code is None
    assert time.monotonic() - started < 30
    grandchild = int(output.rsplit("grandchild", 1)[1].split()[0])
    deadline = time.monotonic() + 10
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(grandchild)
