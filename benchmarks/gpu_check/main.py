"""``main``: the check from the arguments to the report (``python benchmarks/gpu_check.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict

from .arguments import cuda_gpu_count, parse_args, settings_from_args
from .comparisons import with_comparisons
from .config import FIRST_RUN_ESTIMATE_S, NO_CUDA_MESSAGE, Settings
from .data import prepare_data
from .reporting import exit_code, print_report, results_record, save_results
from .runs import TimeBudget, run_all
from .trainers import UsageError, run_specs, select_trainers
from .workdir import BENCHMARKS, check_workdir, nnunet_paths, prepare_workdir, training_env


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
        trainers = with_comparisons(select_trainers(args.trainers), settings.device)
    except UsageError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    recording = repository_recording(args, settings)
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
    if recording is not None:
        recording.save(results_record(settings, results))
    print_report(results, settings, workdir)
    return exit_code(results)


def repository_recording(args: argparse.Namespace, settings: Settings):
    """The ``results_io.Recording`` of benchmarks/results/gpu_check.json: on CUDA unless --no-save, or --output."""
    if args.no_save or (settings.device != "cuda" and args.output is None):
        return None
    if str(BENCHMARKS) not in sys.path:  # the package is also imported by the tests and report.py
        sys.path.insert(0, str(BENCHMARKS))
    import results_io  # noqa: PLC0415 - benchmarks/results_io.py

    return results_io.Recording("gpu_check", {**asdict(settings), "trainers": args.trainers, "resume": args.resume,
                                              "ddp": not args.no_ddp,
                                              "nnUNet_compile": os.environ.get("nnUNet_compile")}, args)

