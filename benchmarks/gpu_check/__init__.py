"""GPU check: s/iteration and peak GPU memory of every nnunet_ext trainer next to stock nnU-Net, one command.

On a CUDA GPU: writes a small synthetic 3D thin-structure dataset (8 cases of 128^3, nnunet_ext's
generator) into --workdir, plans and preprocesses it with nnU-Net's own ``nnUNetv2_plan_and_preprocess
-c 3d_fullres`` (nnU-Net's patch and batch size for ~8 GB), then trains each trainer for --iterations
iterations through ``nnUNetv2_train`` with nnU-Net's defaults on the GPU (AMP with a GradScaler,
torch.compile on; validation skipped) and prints a table: s/iteration, peak GPU memory (allocated and
reserved) and their ratios to nnUNetTrainer. On CUDA, nnUNetTrainerHausdorffDTDeviceFields (the ground-truth
distance fields on the GPU) also runs right after nnUNetTrainerHausdorffDT (the fields in the data-loader workers)
whenever that runs, and a note compares the two. With two or more GPUs also nnUNetTrainer and Skeleton Recall
with ``-num_gpus 2`` (DDP over NCCL). A trainer that fails (out of memory, ...) is reported with the
tail of its log; the check goes on and exits non-zero. Finished trainers stay in the work folder:
``--resume`` continues a check that stopped at the --time-budget (default 540 s, to fit a 10-minute
command) or had failures.

    python benchmarks/gpu_check.py --workdir gpu_check_output                 # all trainers (CUDA)
    python benchmarks/gpu_check.py --workdir gpu_check_output --resume        # continue / retry
    python benchmarks/gpu_check.py --workdir W --trainers nnUNetTrainerSkeletonRecall nnUNetTrainerUNetV2
    python benchmarks/gpu_check.py --workdir W --device cpu --tiny            # CPU smoke test, ~1 min
    cd benchmarks && python -m gpu_check --help                                # the same command

On CUDA the results also go to benchmarks/results/gpu_check.json (the date, commit and machine with them; --no-save:
not), which benchmarks/report.py renders into docs/gpu.md; a CPU run is saved only where --output names a file.

Exit codes: 0 every run finished; 1 a run failed; 2 nothing ran (no CUDA GPU, bad arguments or work
folder); 3 no failure, but runs are left for ``--resume`` (time budget).
"""

# The package (benchmarks/gpu_check/; benchmarks/gpu_check.py is the script that runs it): config (names, settings,
# what a run is and what it measured), arguments, trainers (which trainers, their timed subclasses), workdir (folders,
# state, environment), data (dataset, planning), runs (process control, time budget, timing records), reporting
# (table, notes, results files; results_record is the one place the results are put together), main, and timed_run
# (the mixin inside the training processes, the only module that imports torch or nnunet_ext at import). Importing
# the package imports the standard library only (benchmarks/report.py renders the table with it).

from .comparisons import comparison_lines, with_comparisons
from .config import RunResult, RunSpec, Settings, pending
from .main import main
from .reporting import exit_code, final_line, notes, results_record, results_table
from .runs import execute, failure_reason
from .trainers import UsageError, default_trainers, run_specs, select_trainers

__all__ = ["RunResult", "RunSpec", "Settings", "UsageError", "comparison_lines", "default_trainers", "execute",
           "exit_code", "failure_reason", "final_line", "main", "notes", "pending", "results_record", "results_table",
           "run_specs", "select_trainers", "with_comparisons"]
