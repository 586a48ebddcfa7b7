"""Benchmark: fast tubed skeleton vs the scikit-image reference recipe.

Builds a sparse multi-class vessel tree in 3D (128^3) and in 2D (512^2), then times
``reference_tubed_skeleton`` (scikit-image skeletonize + two grey dilations, the
definition) against ``tubed_skeleton`` (default, and ``fallback=False``), interleaved,
and reports the median of ``--repeats`` runs. It also checks that the outputs agree
and breaks the reference down into skeletonize vs dilations so one sees where the
time goes.

Run:  .venv/bin/python benchmarks/bench_tubed_skeleton.py [--repeats 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import numba
import numpy as np
import results_io
import scipy
import skimage
from references import reference_tubed_skeleton
from scipy import ndimage
from skimage.morphology import dilation, skeletonize

from nnunet_ext.data.synthetic import TreeParams, vessel_tree
from nnunet_ext.skeleton import tubed_skeleton

N_CLASSES = 3
CASES = {
    "3D": ((128, 128, 128), TreeParams(n_roots=3, root_radius=5, radius_decay=0.998, branch_probability=0.03,
                                       max_points=20000)),
    "2D": ((512, 512), TreeParams(n_roots=3, root_radius=6, radius_decay=0.997, max_points=20000)),
}


def milliseconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def interleaved_times(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall time (ms) of every run of each variant; variants alternate within every repeat."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(milliseconds(fn)[0])
    return times


def warm_up() -> dict[str, float]:
    """First calls on tiny inputs: numba compiles the kernels, or loads them from its cache."""
    timings = {}
    for ndim in (2, 3):
        tiny = np.zeros((6,) * ndim, dtype=np.uint8)
        tiny[(slice(1, 5),) * ndim] = 1
        timings[f"{ndim}D"] = milliseconds(lambda t=tiny: tubed_skeleton(t))[0]
    return timings


def vanished_objects(seg: np.ndarray) -> int:
    """Connected foreground objects with no voxel in scikit-image's skeleton."""
    fg = seg > 0
    components, n = ndimage.label(fg, structure=np.ones((3,) * seg.ndim, dtype=bool))
    return n - int(np.count_nonzero(np.unique(components[skeletonize(fg)])))


def bench_case(name: str, seg: np.ndarray, repeats: int) -> tuple[dict[str, float], dict]:
    """(median ms per variant, the record of the case: every run's ms and the output checks)."""
    binary = seg > 0
    skel = skeletonize(binary).astype(np.int16)
    tube = dilation(dilation(skel))
    labels = seg.astype(np.int16)
    variants = {
        "reference": lambda: reference_tubed_skeleton(seg),
        "fast": lambda: tubed_skeleton(seg),
        "fast_nofallback": lambda: tubed_skeleton(seg, fallback=False),
        # the reference, step by step
        "ref_skeletonize": lambda: skeletonize(binary),
        "ref_dilations": lambda: dilation(dilation(skel)),
        "ref_multiply": lambda: tube * labels,
    }
    for fn in variants.values():  # one untimed round: first-touch allocations, caches
        fn()
    times = interleaved_times(variants, repeats)
    medians = {variant: statistics.median(t) for variant, t in times.items()}

    ref = reference_tubed_skeleton(seg)
    exact_ok = np.array_equal(tubed_skeleton(seg, fallback=False), ref)
    default_ok = np.array_equal(tubed_skeleton(seg), ref)
    n_vanished = vanished_objects(seg)
    print(f"[{name}] outputs equal to the reference: fallback=False {'yes' if exact_ok else 'NO'}, "
          f"default {'yes' if default_ok else 'no'} ({n_vanished} object(s) vanish in scikit-image"
          f"{', repaired by the fallback' if n_vanished else ''})")
    if not exact_ok or (not default_ok and n_vanished == 0):
        print(f"[{name}] ERROR: fast output differs from the reference", file=sys.stderr)
        medians["mismatch"] = 1.0
    record = {"times_ms": {variant: [round(t, 3) for t in runs] for variant, runs in times.items()},
              "equal_fallback_false": bool(exact_ok), "equal_default": bool(default_ok), "vanished_objects": n_vanished}
    return medians, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic vessel trees")
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"scikit-image {skimage.__version__}, numba {numba.__version__}; {os.cpu_count()} CPU(s); "
          f"repeats={args.repeats}, seed={args.seed}")
    recording = results_io.Recording(
        "tubed_skeleton", {"repeats": args.repeats, "seed": args.seed, "classes": N_CLASSES,
                           "cases": {name: {"shape": list(shape), "tree": asdict(params)}
                                     for name, (shape, params) in CASES.items()}}, args)

    segs, cases = {}, {}
    for name, (shape, params) in CASES.items():
        build_ms, seg = milliseconds(lambda s=shape, p=params: vessel_tree(s, seed=args.seed,
                                                                           n_classes=N_CLASSES, params=p))
        segs[name] = seg
        classes = ", ".join(f"{c}: {np.count_nonzero(seg == c)}" for c in range(1, N_CLASSES + 1))
        n_objects = ndimage.label(seg > 0, structure=np.ones((3,) * seg.ndim, dtype=bool))[1]
        cases[name] = {"shape": list(shape), "foreground_fraction": float(np.mean(seg > 0)),
                       "connected_objects": int(n_objects), "build_ms": round(build_ms, 1)}
        print(f"[{name}] vessel tree {'x'.join(map(str, shape))}: foreground {100 * np.mean(seg > 0):.2f}% "
              f"(voxels per class {classes}; {n_objects} connected objects); built in {build_ms:.0f} ms")

    warm = warm_up()
    print(f"warm-up (first call: numba compile or cache load): "
          f"2D {warm['2D']:.0f} ms, 3D {warm['3D']:.0f} ms")
    print()

    results = {}
    for name, seg in segs.items():
        results[name], record = bench_case(name, seg, args.repeats)
        cases[name].update(record)
    print()
    header = (f"{'case':<12}{'reference ms':>14}{'fast ms':>10}{'speed-up':>10}"
              f"{'fast ms (fallback=False)':>26}{'speed-up':>10}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        shape = "x".join(map(str, CASES[name][0]))
        print(f"{name + ' ' + shape:<12}{r['reference']:>14.1f}{r['fast']:>10.1f}"
              f"{r['reference'] / r['fast']:>9.1f}x{r['fast_nofallback']:>26.1f}"
              f"{r['reference'] / r['fast_nofallback']:>9.1f}x")
    print()
    print("reference breakdown (median ms, each step timed on its own):")
    for name, r in results.items():
        steps = {"skeletonize": r["ref_skeletonize"], "2x dilation": r["ref_dilations"],
                 "multiply": r["ref_multiply"]}
        total = sum(steps.values())
        parts = [f"{step} {ms:.1f} ({100 * ms / total:.0f}%)" for step, ms in steps.items()]
        print(f"  {name}: " + ", ".join(parts))
    print()
    print("  ".join(f"speedup {name}: {r['reference'] / r['fast']:.1f}x" for name, r in results.items()))
    recording.save({"warm_up_ms": {k: round(v, 1) for k, v in warm.items()}, "cases": cases})
    return 1 if any("mismatch" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
