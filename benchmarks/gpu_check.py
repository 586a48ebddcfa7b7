"""GPU check: s/iteration and peak GPU memory of every nnunet_ext trainer next to stock nnU-Net, one command.

On a CUDA GPU: writes a small synthetic 3D thin-structure dataset (8 cases of 128^3, nnunet_ext's
generator) into --workdir, plans and preprocesses it with nnU-Net's own ``nnUNetv2_plan_and_preprocess
-c 3d_fullres`` (nnU-Net's patch and batch size for ~8 GB), then trains each trainer for --iterations
iterations through ``nnUNetv2_train`` with nnU-Net's defaults on the GPU (AMP with a GradScaler,
torch.compile on; validation skipped) and prints a table: s/iteration, peak GPU memory (allocated and
reserved) and their ratios to nnUNetTrainer. With two or more GPUs also nnUNetTrainer and Skeleton Recall
with ``-num_gpus 2`` (DDP over NCCL). A trainer that fails (out of memory, ...) is reported with the
tail of its log; the check goes on and exits non-zero. Finished trainers stay in the work folder:
``--resume`` continues a check that stopped at the --time-budget (default 540 s, to fit a 10-minute
command) or had failures.

    python benchmarks/gpu_check.py --workdir gpu_check_output                 # all trainers (CUDA)
    python benchmarks/gpu_check.py --workdir gpu_check_output --resume        # continue / retry
    python benchmarks/gpu_check.py --workdir W --trainers nnUNetTrainerSkeletonRecall nnUNetTrainerUNetV2
    python benchmarks/gpu_check.py --workdir W --device cpu --tiny            # CPU smoke test, ~1 min

Exit codes: 0 every run finished; 1 a run failed; 2 nothing ran (no CUDA GPU, bad arguments or work
folder); 3 no failure, but runs are left for ``--resume`` (time budget).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

DATASET_ID = 903
DATASET_NAME = "GpuCheck3D"
CONFIGURATION = "3d_fullres"
BASELINE = "nnUNetTrainer"
DDP_TRAINERS = (BASELINE, "nnUNetTrainerSkeletonRecall")
TRAINER_MODULE = "nnunet_ext_gpu_check_trainers.py"
STATE_FILE = "gpu_check_state.json"
RESULTS_JSON = "gpu_check_results.json"
RESULTS_MD = "gpu_check_results.md"
COMPILE_LOG_LINE = "Using torch.compile..."
GIB = 1024 ** 3
NO_CUDA_MESSAGE = ("gpu_check: no CUDA GPU is available (torch.cuda.is_available() is False), nothing was run; "
                   "for the CPU smoke test run: python benchmarks/gpu_check.py --device cpu --tiny --workdir FOLDER")


@dataclass(frozen=True)
class Settings:
    """What the dataset and the measurements depend on; stored in the work folder, compared on --resume."""

    device: str
    tiny: bool
    cases: int
    size: int
    iterations: int
    warmup: int


FULL_DATA = {"cases": 8, "size": 128}   # nnU-Net plans patch 128^3, batch 2 for it (its ~8 GB default)
TINY_DATA = {"cases": 5, "size": 32}    # 5 cases: the fewest nnU-Net's 5-fold split accepts
DEFAULT_ITERATIONS = {False: (30, 5), True: (3, 1)}  # tiny -> (iterations, warm-up iterations)
FIRST_RUN_ESTIMATE_S = {"cuda": 150.0, "cpu": 30.0}  # time budget: guess for a run before one has finished


@dataclass(frozen=True)
class RunSpec:
    """One ``nnUNetv2_train`` run of the check."""

    trainer: str
    num_gpus: int = 1

    @property
    def label(self) -> str:
        return self.trainer if self.num_gpus == 1 else f"{self.trainer} (DDP, {self.num_gpus} GPUs)"

    @property
    def slug(self) -> str:
        return self.trainer if self.num_gpus == 1 else f"{self.trainer}_ddp{self.num_gpus}"


@dataclass
class RunResult:
    """What one run measured (``status`` ok), or why it has no numbers (failed, pending)."""

    label: str
    trainer: str
    num_gpus: int
    status: str
    seconds_per_iteration: float | None = None
    median_seconds_per_iteration: float | None = None
    first_iteration_seconds: float | None = None
    measured_iterations: int = 0
    memory_bytes: dict[str, int] = field(default_factory=dict)
    compiled: bool | None = None
    compile_logged: bool | None = None
    amp: bool | None = None
    finite_losses: bool | None = None
    batch_size: int | None = None
    patch_size: list[int] | None = None
    device_name: str | None = None
    wall_seconds: float | None = None
    reason: str = ""
    log: str = ""
    log_tail: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("gpu_check_output"),
                        help="work folder (default gpu_check_output); must not exist or be empty, unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue a check in --workdir: keep its finished runs, run the others")
    parser.add_argument("--trainers", nargs="+", metavar="TRAINER",
                        help="trainers to run (default: nnUNetTrainer and every nnunet_ext trainer that is not a "
                             "weight/setting variant); nnUNetTrainer is always added: it is the ratios' reference")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="default cuda; cpu is meant for --tiny (128^3 patches take minutes per iteration and "
                             "10-20 GiB of RAM on a CPU)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"smoke mode: {TINY_DATA['cases']} cases of {TINY_DATA['size']}^3, "
                             f"{DEFAULT_ITERATIONS[True][0]} iterations, cheaper fingerprint")
    parser.add_argument("--iterations", type=int, help="training iterations per run (default 30; --tiny: 3)")
    parser.add_argument("--warmup", type=int,
                        help="first iterations left out of s/iteration: torch.compile, data loader start "
                             "(default 5; --tiny: 1)")
    parser.add_argument("--time-budget", type=float, default=540.0, metavar="SECONDS",
                        help="stop starting runs (and stop a running one) when this many seconds have passed, "
                             "leaving them for --resume (default 540: fits a 10-minute command; 0: no limit)")
    parser.add_argument("--no-ddp", action="store_true", help="skip the -num_gpus 2 runs on a multi-GPU machine")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings of this invocation; raises ValueError for impossible iteration counts."""
    iterations, warmup = DEFAULT_ITERATIONS[args.tiny]
    iterations = args.iterations if args.iterations is not None else iterations
    warmup = args.warmup if args.warmup is not None else warmup
    if warmup < 0 or iterations <= warmup:
        raise ValueError(f"need 0 <= --warmup < --iterations, got warmup {warmup} and {iterations} iterations")
    return Settings(device=args.device, tiny=args.tiny, iterations=iterations, warmup=warmup,
                    **(TINY_DATA if args.tiny else FULL_DATA))


def cuda_gpu_count() -> int:
    """Number of CUDA GPUs torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------------------------------- trainers


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


def trainer_module_source(trainers: list[str], iterations: int) -> str:
    """Python source of one timed subclass per trainer (``TimedRunMixin`` in front of it)."""
    ours = [name for name in trainers if name != BASELINE]
    lines = ['"""Timed short runs for benchmarks/gpu_check.py (written by it into its work folder)."""',
             "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer", "",
             "from nnunet_ext.commands.timed_run import TimedRunMixin"]
    if ours:
        lines.append(f"from nnunet_ext.trainers import {', '.join(ours)}")
    lines.append("")
    for name in trainers:
        lines += ["", f"class {timed_class_name(name)}(TimedRunMixin, {name}):",
                  f"    timed_iterations = {iterations}", ""]
    return "\n".join(lines)


def run_specs(trainers: list[str], gpus: int, device: str, ddp: bool) -> list[RunSpec]:
    """Every trainer on one device; with 2+ GPUs also the DDP runs of nnUNetTrainer and Skeleton Recall."""
    specs = [RunSpec(name) for name in trainers]
    if device == "cuda" and ddp and gpus >= 2:
        specs += [RunSpec(name, num_gpus=2) for name in DDP_TRAINERS if name in trainers]
    return specs


# ---------------------------------------------------------------------------------------------- work folder


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
    (workdir / "trainers" / TRAINER_MODULE).write_text(trainer_module_source(trainers, settings.iterations))
    save_state(workdir, state)
    return state


def training_env(workdir: Path) -> dict[str, str]:
    """The environment of nnU-Net's commands: this work folder's nnU-Net folders and the timed trainers."""
    from nnunet_ext.commands.nnunet_runs import trainers_path

    return {**os.environ, **nnunet_paths(workdir), "PYTHONUNBUFFERED": "1",
            "nnUNet_extTrainer": os.pathsep.join([str(workdir / "trainers"), str(trainers_path())])}


# ---------------------------------------------------------------------------------------------- data


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


# ---------------------------------------------------------------------------------------------- runs


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
    from nnunet_ext.commands.timed_run import TIMING_FILE

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


def pending(spec: RunSpec, reason: str) -> RunResult:
    return RunResult(label=spec.label, trainer=spec.trainer, num_gpus=spec.num_gpus, status="pending", reason=reason)


# ---------------------------------------------------------------------------------------------- report


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


def save_results(workdir: Path, settings: Settings, results: list[RunResult]) -> None:
    """gpu_check_results.json (every number and reason) and gpu_check_results.md (the table and its notes)."""
    payload = {"settings": asdict(settings), "runs": [asdict(r) for r in results]}
    (workdir / RESULTS_JSON).write_text(json.dumps(payload, indent=2))
    report = [results_table(results, settings.device), "", *notes(settings, results), "", final_line(results, workdir)]
    (workdir / RESULTS_MD).write_text("\n".join(report) + "\n")


def ordered(results: dict[str, RunResult]) -> list[RunResult]:
    """Runs in the default order (nnUNetTrainer first, single-GPU runs before DDP runs)."""
    order = default_trainers()

    def key(run: RunResult) -> tuple:
        return run.num_gpus, order.index(run.trainer) if run.trainer in order else len(order), run.label

    return sorted(results.values(), key=key)


# ---------------------------------------------------------------------------------------------- main


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    gpus = cuda_gpu_count() if settings.device == "cuda" else 0
    if settings.device == "cuda" and gpus == 0:
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    problem = check_workdir(workdir, args.resume, settings)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    os.environ.update(nnunet_paths(workdir))  # nnunetv2 reads its folders when it is first imported
    try:
        trainers = select_trainers(args.trainers)
    except UsageError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    specs = run_specs(trainers, gpus, settings.device, ddp=not args.no_ddp)
    budget = TimeBudget(args.time_budget, FIRST_RUN_ESTIMATE_S[settings.device])
    print(f"gpu_check: {len(specs)} runs ({', '.join(s.label for s in specs)}) on {settings.device}"
          f"{f' ({gpus} GPUs)' if gpus else ''}, work folder {workdir}", flush=True)
    state = prepare_workdir(workdir, settings, trainers)
    env = training_env(workdir)
    try:
        prepare_data(workdir, settings, state, env)
    except Exception as error:  # noqa: BLE001 - any failure here stops the check with its reason
        print(f"gpu_check: preparing the dataset failed: {error}; logs in {workdir / 'logs'}", file=sys.stderr)
        return 2
    results = run_all(workdir, settings, specs, env, budget, args.resume)
    save_results(workdir, settings, results)
    print_report(results, settings, workdir)
    return exit_code(results)


def print_report(results: list[RunResult], settings: Settings, workdir: Path) -> None:
    """The table, how to read it, the log tails of failed runs, and the final line."""
    print("\n" + results_table(results, settings.device) + "\n\n" + "\n".join(notes(settings, results)))
    for r in results:
        if r.status == "failed":
            print(f"\n--- {r.label}: last lines of {r.log} ---\n" + "\n".join(r.log_tail))
    print("\n" + final_line(results, workdir))


if __name__ == "__main__":
    sys.exit(main())
