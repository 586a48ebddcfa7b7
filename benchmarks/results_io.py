"""What every benchmark records with its figures, and how figures are summarized: shared by the scripts and report.py.

A benchmark script builds a ``Recording`` when it starts (the UTC date, the git commit, the machine and its load
average) and calls ``Recording.save(results)`` at the end, which adds the load average at the end and writes

    benchmarks/results/<name>.json = {"benchmark", "date", "git": {"commit", "dirty"}, "machine": {...},
                                      "command", "settings", "wall_seconds", "results"}

``results`` holds the raw per-run figures (every repeat, not only the medians); ``report.py`` renders them into
the documentation's generated blocks. Noisy figures are summarized by their median and range over the runs
(``summary``, ``median_range``), never by the best run.

The load average is recorded because the development machine has 2 cores shared with other jobs: timings taken
while it was busy are slower and scatter more, and the reader should see that next to the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
RESULTS_DIR = BENCHMARKS / "results"
RANGE_DASH = "–"  # en dash between the smallest and the largest run


# ---------------------------------------------------------------------------------------------- summaries


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max", "runs"}`` of the runs' values (NaNs are not allowed)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summary of no runs")
    if any(math.isnan(v) for v in values):
        raise ValueError("summary of a NaN run")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def format_number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals (thousands separated by commas when ``digits`` is 0)."""
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def median_range(values: Sequence[float], digits: int = 1, suffix: str = "") -> str:
    """``"median (min–max)"`` of the runs, e.g. ``"12.3 (11.0–15.2)"``; one run: its value alone.

    ``suffix`` follows every number (``"×"``). When min and max round to the median, the range is left out.
    """
    s = summary(values)
    median, low, high = (format_number(s[k], digits) + suffix for k in ("median", "min", "max"))
    if s["runs"] == 1 or low == high:
        return median
    return f"{median} ({low}{RANGE_DASH}{high})"


def ratios(values: Sequence[float], references: Sequence[float]) -> list[float]:
    """Per-run ratios ``values[i] / references[i]`` of two interleaved series (run i of each side by side)."""
    if len(values) != len(references):
        raise ValueError(f"{len(values)} runs against {len(references)} reference runs")
    return [v / r for v, r in zip(values, references)]


# ---------------------------------------------------------------------------------------------- the recording


def git_state(root: Path = REPOSITORY) -> dict:
    """``{"commit": short hash or None, "dirty": tracked files changed (results files not counted) or None}``."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = None if status is None else [line for line in status.splitlines()
                                           if not line[3:].startswith("benchmarks/results/")]
    return {"commit": commit.strip() if commit else None, "dirty": None if changed is None else bool(changed)}


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded to 2 decimals."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """The machine and software the figures were measured on (the load averages are added by ``Recording``)."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model()}
    for package in ("torch", "nnunetv2", "numpy", "scipy", "scikit-image"):
        info[package] = package_version(package)
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-save`` and ``--output`` for a benchmark script."""
    parser.add_argument("--no-save", action="store_true",
                        help="do not write the results file (benchmarks/results/<name>.json)")
    parser.add_argument("--output", type=Path, default=None, metavar="JSON",
                        help="write the results here instead of benchmarks/results/<name>.json")


def case_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """``--repeats``, ``--quick``, ``--cases`` and the results options, for a script timing named cases."""
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--quick", action="store_true", help="a small case: a check of the script")
    parser.add_argument("--cases", nargs="+", help="run the cases whose name contains one of these strings")
    add_arguments(parser)


def selected_cases(parser: argparse.ArgumentParser, cases: dict, quick_cases: dict) -> tuple[argparse.Namespace, dict]:
    """Parse ``case_arguments``; the arguments and the cases to run (the quick ones with ``--quick``)."""
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = {name: case for name, case in (quick_cases if args.quick else cases).items()
              if not args.cases or any(part in name for part in args.cases)}
    return args, chosen


def results_path(name: str, results_dir: Path = RESULTS_DIR) -> Path:
    return results_dir / f"{name}.json"


class Recording:
    """One benchmark run: call ``save(results)`` at the end.

    ``save`` writes nothing when ``--no-save`` was given, or when the run is a check of the script (``quick``)
    and no ``--output`` was named: a quick run must not replace the measured figures. ``own_load``: how many
    busy processes the benchmark itself runs (its data-loader workers, say), part of the load at its end.
    """

    def __init__(self, name: str, settings: dict, args: argparse.Namespace | None = None, quick: bool = False,
                 own_load: int = 1):
        self.name = name
        self.settings = settings
        self.no_save = bool(getattr(args, "no_save", False))
        self.output = getattr(args, "output", None)
        self.quick = quick
        self.started = time.perf_counter()
        self.record = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "git": git_state(), "machine": {**machine(), "load_average_start": load_average()},
                       "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "settings": settings}
        if own_load != 1:
            self.record["own_load"] = own_load

    def save(self, results: dict) -> Path | None:
        """Write the record with ``results``; returns the path written, or None (and says why)."""
        if self.no_save:
            return None
        if self.quick and self.output is None:
            print("results not saved: a quick run (name a file with --output to keep it)")
            return None
        record = dict(self.record)
        record["machine"] = {**record["machine"], "load_average_end": load_average()}
        if "torch" in sys.modules:
            record["machine"]["torch_threads"] = sys.modules["torch"].get_num_threads()
        record["wall_seconds"] = round(time.perf_counter() - self.started, 1)
        record["results"] = results
        path = Path(self.output) if self.output is not None else results_path(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(record) + "\n")
        print(f"results written to {path}")
        return path


def dumps(value, indent: int = 0) -> str:
    """JSON with one key per line and lists of numbers or strings on one line (short, diff-friendly files)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())
