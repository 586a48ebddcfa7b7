"""Benchmark: clDice loss forward+backward, straightforward vs ours, time and peak memory on the CPU.

Compares, on the same logits and integer labels:

- straightforward: ``torch.softmax`` + one-hot (``scatter_``, as nnU-Net does) +
  ``reference_cldice_loss`` (max_pool2d/3d, soft skeletons of ALL channels, every intermediate kept
  by autograd), the way a straightforward implementation computes clDice;
- ours: ``SoftClDiceLoss`` (input checks, softmax, one-hot, ``soft_cldice``: foreground channels
  only, the target's skeleton without autograd, the fast ``soft_skeletonize``).

Both give the same loss value; the script prints both values and their difference.

Cases: 2D batch 12, 256x256 and 3D batch 2, 64^3, each with C = 3 and C = 15 network outputs
(2 and 14 foreground classes), 3 skeleton iterations (``--quick``: 2D batch 2, 64x64 and 3D batch 1,
24^3, for a fast check of the script).

How peak memory is measured. Every (case, implementation) pair runs in its own fresh Python process
(this script re-invoked with ``--worker``), so no earlier computation has raised the process's memory
high-water mark. The worker first runs one forward+backward on a tiny input (loads libraries and
kernels, costs almost nothing), then allocates the inputs (logits, labels), then reads the high-water
mark of its resident set size, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux), runs ONE
forward+backward, and reads it again. The difference is the peak extra memory of that computation
(activations kept for backward, temporaries, gradients), whatever allocates it (torch's CPU allocator
keeps no statistics of its own). The current RSS before the run (/proc/self/statm) is printed too, as
a check that the high-water mark was not already above it. After the memory measurement, the same
worker times ``--repeats`` forward+backward runs (wall clock; the median is reported).

Why the RSS follows the tensors: glibc malloc serves large blocks with mmap and returns them to the
OS on free. Its mmap threshold is dynamic, though: it starts at 128 KiB and rises to the size of any
mmapped block that is freed (up to 32 MiB), after which blocks below it come from the heap, where
freed space is reused but not always returned. So with the default allocator the figure is the
memory the process really takes, an upper bound of the live tensor memory (fragmentation included).
``--malloc-mmap-threshold 65536`` runs the workers with ``MALLOC_MMAP_THRESHOLD_=65536``: a fixed
threshold, every block >= 64 KiB is mmapped and unmapped on free, and the RSS follows the live
memory closely (timings get slower then: every large allocation faults its pages in anew).

The machine's load average is printed at the start and the end: the timings are only meaningful on
an otherwise idle machine.

Every measurement (each timed run) goes to benchmarks/results/cldice.json (``--no-save``: not; a ``--quick`` run
is not saved).

Run:  .venv/bin/python benchmarks/bench_cldice.py [--repeats 3] [--threads N] [--quick]
                                                  [--malloc-mmap-threshold BYTES] [--cases "C=3"]
                                                  [--no-save] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import results_io
import torch
from fresh_process import MIB, current_rss_mib, load_average, max_rss_mib, run_worker
from references import reference_cldice_loss

from nnunet_ext.losses import SoftClDiceLoss

ITERATIONS = 3
IMPLEMENTATIONS = ("straightforward", "ours")
# name: (batch, channels, spatial)
CASES = {
    "2D C=3": (12, 3, (256, 256)),
    "2D C=15": (12, 15, (256, 256)),
    "3D C=3": (2, 3, (64, 64, 64)),
    "3D C=15": (2, 15, (64, 64, 64)),
}
QUICK_CASES = {
    "2D C=3": (2, 3, (64, 64)),
    "2D C=15": (2, 15, (64, 64)),
    "3D C=3": (1, 3, (24, 24, 24)),
    "3D C=15": (1, 15, (24, 24, 24)),
}


def make_inputs(batch: int, channels: int, spatial: tuple[int, ...], seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C, *spatial) float32 and labels (B, 1, *spatial) int64 with blob-shaped classes.

    Labels are the argmax of smooth random fields (upsampled coarse noise), the logits a noisy,
    scaled copy of those fields: the prediction is partly right, as during training.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, channels, *(max(2, n // 8) for n in spatial), generator=gen)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    fields = torch.nn.functional.interpolate(coarse, size=spatial, mode=mode, align_corners=False)
    labels = fields.argmax(1, keepdim=True)
    logits = 4 * fields + torch.randn(fields.shape, generator=gen)
    return logits.contiguous(), labels


def straightforward_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits, 1)
    onehot = torch.zeros_like(probs).scatter_(1, labels, 1)
    return reference_cldice_loss(probs, onehot, iterations=ITERATIONS)


def loss_function(impl: str):
    return straightforward_loss if impl == "straightforward" else SoftClDiceLoss(iterations=ITERATIONS)


def forward_backward(fn, logits: torch.Tensor, labels: torch.Tensor) -> float:
    logits.grad = None
    loss = fn(logits, labels)
    loss.backward()
    return loss.item()


def worker(case: str, impl: str, repeats: int, quick: bool, threads: int | None) -> dict:
    """One (case, implementation) measurement; meant to run in a fresh process."""
    if threads:
        torch.set_num_threads(threads)
    batch, channels, spatial = (QUICK_CASES if quick else CASES)[case]
    fn = loss_function(impl)

    tiny = make_inputs(1, channels, (5,) * len(spatial), seed=1)
    forward_backward(fn, tiny[0].requires_grad_(True), tiny[1])  # load libraries and kernels
    del tiny

    logits, labels = make_inputs(batch, channels, spatial)
    logits.requires_grad_(True)
    rss_before = current_rss_mib()
    peak_before = max_rss_mib()
    start = time.perf_counter()
    value = forward_backward(fn, logits, labels)
    first_ms = (time.perf_counter() - start) * 1e3
    peak_after = max_rss_mib()

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(fn, logits, labels)
        times.append((time.perf_counter() - start) * 1e3)
    return {"case": case, "impl": impl, "value": value, "peak_mib": peak_after - peak_before,
            "rss_before_mib": rss_before, "max_rss_before_mib": peak_before, "first_ms": first_ms,
            "median_ms": statistics.median(times), "times_ms": times, "threads": torch.get_num_threads(),
            "input_mib": logits.numel() * logits.element_size() / MIB}


def run_case(case: str, impl: str, args: argparse.Namespace) -> dict:
    worker_args = [case, impl, "--repeats", str(args.repeats)]
    if args.quick:
        worker_args.append("--quick")
    if args.threads:
        worker_args += ["--threads", str(args.threads)]
    env = dict(os.environ)
    if args.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    return run_worker(__file__, worker_args, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case and implementation (>= 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check of the script")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="run the workers with MALLOC_MMAP_THRESHOLD_=BYTES (fixed glibc mmap threshold)")
    parser.add_argument("--cases", nargs="+", help="run the cases whose name contains one of these strings")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.quick, args.threads)))
        return

    cases = {name: case for name, case in (QUICK_CASES if args.quick else CASES).items()
             if not args.cases or any(part in name for part in args.cases)}
    if not cases:
        parser.error(f"--cases {' '.join(args.cases)} matches none of {', '.join(CASES)}")
    recording = results_io.Recording("cldice", {
        "repeats": args.repeats, "quick": args.quick, "threads": args.threads, "iterations": ITERATIONS,
        "malloc_mmap_threshold": args.malloc_mmap_threshold,
        "cases": {name: {"batch": b, "channels": c, "spatial": list(sp)} for name, (b, c, sp) in cases.items()}},
        args, quick=args.quick)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, iterations={ITERATIONS}, repeats={args.repeats}"
          f"{', quick sizes' if args.quick else ''}, malloc mmap threshold "
          f"{args.malloc_mmap_threshold if args.malloc_mmap_threshold is not None else 'glibc default (dynamic)'}, "
          f"load average {load_average()}")
    results = {}
    for case, (batch, channels, spatial) in cases.items():
        print(f"{case}: batch {batch}, {'x'.join(map(str, spatial))}, {channels} outputs ...", flush=True)
        for impl in IMPLEMENTATIONS:
            results[case, impl] = res = run_case(case, impl, args)
            print(f"  {impl:15s} threads {res['threads']}  loss {res['value']:.8f}  first run {res['first_ms']:.0f} ms"
                  f"  timed runs {', '.join(f'{t:.0f}' for t in res['times_ms'])} ms  peak +{res['peak_mib']:.0f} MiB"
                  f"  (RSS before {res['rss_before_mib']:.0f} MiB, high-water mark before "
                  f"{res['max_rss_before_mib']:.0f} MiB)", flush=True)

    print()
    header = (f"{'case':9s} {'input MiB':>9s} | {'time ms':>9s} {'ours ms':>9s} {'ratio':>6s} | "
              f"{'peak MiB':>9s} {'ours MiB':>9s} {'ratio':>6s} | {'loss':>10s} {'ours loss':>10s} {'|diff|':>8s}")
    print("straightforward (reference_cldice_loss, all channels) vs ours (SoftClDiceLoss); ratio = ours / "
          "straightforward")
    print(header)
    print("-" * len(header))
    time_ratios, mem_ratios = [], []
    for case in cases:
        ref, ours = results[case, "straightforward"], results[case, "ours"]
        t_ratio, m_ratio = ours["median_ms"] / ref["median_ms"], ours["peak_mib"] / ref["peak_mib"]
        time_ratios.append(t_ratio)
        mem_ratios.append(m_ratio)
        print(f"{case:9s} {ref['input_mib']:9.1f} | {ref['median_ms']:9.1f} {ours['median_ms']:9.1f} {t_ratio:6.2f} | "
              f"{ref['peak_mib']:9.1f} {ours['peak_mib']:9.1f} {m_ratio:6.2f} | {ref['value']:10.7f} "
              f"{ours['value']:10.7f} {abs(ref['value'] - ours['value']):8.1e}")
    met = sum(t <= 0.5 and m <= 0.6 for t, m in zip(time_ratios, mem_ratios))
    print()
    print(f"summary: ours/straightforward time {min(time_ratios):.2f}-{max(time_ratios):.2f}x "
          f"(speed-up {1 / max(time_ratios):.1f}-{1 / min(time_ratios):.1f}x), peak memory "
          f"{min(mem_ratios):.2f}-{max(mem_ratios):.2f}x; goal (>= 2x faster and <= 0.6x memory) met in "
          f"{met}/{len(time_ratios)} cases; torch threads {results[next(iter(cases)), 'ours']['threads']}; "
          f"load average at the end {load_average()}")
    recording.save({"cases": {case: {impl: results[case, impl] for impl in IMPLEMENTATIONS} for case in cases}})


if __name__ == "__main__":
    main()
