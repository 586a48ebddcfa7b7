"""Peak-memory measurement in fresh processes, shared by the benchmark scripts.

A benchmark script re-invokes itself with ``--worker ...`` for every (case, variant) pair, so that no
earlier computation has raised the process's resident-set high-water mark; the worker prints one
JSON line as its last output. The peak memory of a computation is the rise of ``ru_maxrss``
across it (KiB on Linux), which counts whatever allocates: torch's CPU allocator keeps no
statistics of its own. glibc returns large freed blocks to the OS, so the figure follows the live
memory (an upper bound: fragmentation included).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

MIB = 1024 * 1024


def max_rss_mib() -> float:
    """High-water mark of this process's resident set, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Current resident set of this process, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_worker(script: str, worker_args: list[str], env: dict | None = None) -> dict:
    """Run ``script --worker *worker_args`` in a fresh interpreter; return its last stdout line as JSON."""
    command = [sys.executable, os.path.abspath(script), "--worker", *worker_args]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"worker {' '.join(worker_args)} failed (exit code {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
