"""The command line: arguments, the settings they give, the GPUs there are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEFAULT_ITERATIONS, FULL_DATA, TINY_DATA, Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=sys.modules[__package__].__doc__,  # the package's docstring
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--no-save", action="store_true",
                        help="do not write benchmarks/results/gpu_check.json (written by default on CUDA only)")
    parser.add_argument("--output", type=Path, default=None, metavar="JSON",
                        help="write the repository's results file here instead (also for a CPU run)")
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

