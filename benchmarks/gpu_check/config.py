"""The check's names and numbers, and what a run is and what it measured (stdlib only: report.py renders them)."""

from __future__ import annotations

from dataclasses import dataclass, field

DATASET_ID = 903
DATASET_NAME = "GpuCheck3D"
CONFIGURATION = "3d_fullres"
BASELINE = "nnUNetTrainer"
DDP_TRAINERS = (BASELINE, "nnUNetTrainerSkeletonRecall")
TRAINER_MODULE = "nnunet_ext_gpu_check_trainers"  # in the work folder's trainers/ (nnU-Net imports it by this name)
TIMING_FILE = "timed_run_rank{rank}.json"  # written by every rank of a timed run into its fold folder
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


def pending(spec: RunSpec, reason: str) -> RunResult:
    return RunResult(label=spec.label, trainer=spec.trainer, num_gpus=spec.num_gpus, status="pending", reason=reason)

