"""Benchmark: how to compute the prediction's boundary distance field d_p of the Hausdorff DT loss every step.

d_p is the distance of every voxel to the boundary of the thresholded prediction ``p > 0.5``, one field per
sample and foreground class, recomputed at every step (and every deep-supervision scale). Four ways, on the same
masks, side by side:

1. ``scipy (CPU)``: the masks to the CPU (``.cpu().numpy()``: on a GPU a host sync and a device-to-host copy),
   ``scipy.ndimage.distance_transform_edt`` per map (inside pass on the mask's bounding box), back to the
   device. Exact.
2. ``torch exact``: ``nnunet_ext.distance.boundary_distance``, the separable EDT in plain tensor ops on the
   loss's device (first axis O(N), later axes a brute-force lower envelope, O(N n)). Exact, no sync.
3. ``torch truncated (K)``: the same separable transform with the envelope restricted to a window of K voxels
   per axis: O(N K) per axis; exactly ``min(exact, K * smallest spacing)``, i.e. far errors capped. No sync.
4. ``erosion steps (K)``: the idea of Karimi's erosion variant (HD-ER): count morphological steps instead of
   measuring distances; K dilations of the mask and of its complement with the 3x3(x3) cube (max-pooling),
   each voxel's distance = the step that reaches it (chessboard metric, in voxels, capped at K). No sync.

For each: the median wall time of one step's fields (all samples and classes), and the error against the exact
field (max and mean absolute, in voxels). Inputs as in ``bench_losses.py`` (smooth random class fields, argmax).
Wall clock on this machine's CPU: on a GPU the torch variants are a handful of large kernels, scipy additionally
stops the GPU stream (sync) and copies the masks both ways.

Every run's time goes to benchmarks/results/distance_fields.json (``--no-save``: not; a ``--quick`` run is not
saved).

Run:  .venv/bin/python benchmarks/bench_distance_fields.py [--repeats 3] [--quick] [--cases 2D] [--no-save]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import results_io
import torch
import torch.nn.functional as F

from nnunet_ext.distance import boundary_distance, boundary_distance_field

# name: (batch, foreground classes, spatial)
CASES = {
    "3D 2x64^3, 3 classes": (2, 3, (64, 64, 64)),
    "3D 2x64^3, 14 classes": (2, 14, (64, 64, 64)),
    "2D 12x256^2, 3 classes": (12, 3, (256, 256)),
}
QUICK_CASES = {"3D 2x32^3, 3 classes": (2, 3, (32, 32, 32))}
TRUNCATION = 8


def prediction_masks(batch: int, classes: int, spatial: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """(B, classes, *spatial) bool: ``p_c > 0.5`` of softmax outputs as in bench_losses.py."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, classes + 1, *(max(2, s // 8) for s in spatial), generator=gen)
    fields = F.interpolate(coarse, size=spatial, mode="bilinear" if len(spatial) == 2 else "trilinear")
    fields[:, 0] += 0.8
    probs = torch.softmax(3 * fields + torch.randn(fields.shape, generator=gen), 1)
    return probs[:, 1:] > 0.5


def scipy_fields(masks: torch.Tensor) -> torch.Tensor:
    """To the CPU, scipy per map, back to the masks' device."""
    host = masks.cpu().numpy()
    out = np.stack([[boundary_distance_field(m) for m in sample] for sample in host])
    return torch.from_numpy(out).to(masks.device)


def _truncated_pass(d2: torch.Tensor, dim: int, window: int) -> torch.Tensor:
    """``min_{|i - x| <= window} d2(i) + (x - i)^2`` along ``dim`` (unit spacing)."""
    moved = d2.movedim(dim, -1)
    padded = F.pad(moved, (window, window), value=float("inf"))
    windows = padded.unfold(-1, 2 * window + 1, 1)  # (..., n, 2K + 1)
    offsets = (torch.arange(-window, window + 1, dtype=d2.dtype, device=d2.device)) ** 2
    return (windows + offsets).amin(-1).movedim(-1, dim)


def truncated_edt(mask: torch.Tensor, window: int) -> torch.Tensor:
    """min(exact EDT of ``mask`` (True voxels to the nearest False), window), unit spacing."""
    d2 = torch.where(mask, float("inf"), 0.0)
    for dim in range(2, mask.ndim):
        d2 = _truncated_pass(d2, dim, window)
    return d2.sqrt().clamp(max=window)


def truncated_fields(masks: torch.Tensor) -> torch.Tensor:
    inside, outside = truncated_edt(masks, TRUNCATION), truncated_edt(~masks, TRUNCATION)
    empty_or_full = ~masks.flatten(2).any(-1) | masks.flatten(2).all(-1)
    return torch.where(empty_or_full.view(*masks.shape[:2], *[1] * (masks.ndim - 2)), 0.0, inside + outside)


def _steps_to_reach(sources: torch.Tensor, steps: int) -> torch.Tensor:
    """Per voxel, the number of cube dilations of ``sources`` that reach it (0 on sources), capped at ``steps``."""
    pool = F.max_pool2d if sources.ndim == 4 else F.max_pool3d
    reached = sources.float()
    distance = torch.full_like(reached, float(steps))
    distance[sources] = 0
    for step in range(1, steps + 1):
        grown = pool(reached, 3, stride=1, padding=1)
        distance = torch.where((grown > reached), float(step), distance)
        reached = grown
    return distance


def erosion_fields(masks: torch.Tensor) -> torch.Tensor:
    inside = _steps_to_reach(~masks, TRUNCATION) * masks  # steps from the outside into the mask
    outside = _steps_to_reach(masks, TRUNCATION) * ~masks
    empty_or_full = ~masks.flatten(2).any(-1) | masks.flatten(2).all(-1)
    return torch.where(empty_or_full.view(*masks.shape[:2], *[1] * (masks.ndim - 2)), 0.0, inside + outside)


VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "scipy (CPU)": scipy_fields,
    "torch exact": boundary_distance,
    f"torch truncated ({TRUNCATION})": truncated_fields,
    f"erosion steps ({TRUNCATION})": erosion_fields,
}


def run_case(name: str, batch: int, classes: int, spatial: tuple[int, ...], repeats: int) -> dict:
    """The record of one case: every run's ms per variant, the errors against the exact field."""
    masks = prediction_masks(batch, classes, spatial)
    exact = boundary_distance(masks)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    errors = {}
    for k, f in VARIANTS.items():  # warm-up, and the error against the exact field
        difference = (f(masks).float() - exact).abs()
        errors[k] = (difference.max().item(), difference.mean().item())
    for _ in range(repeats):
        for k, f in VARIANTS.items():
            started = time.perf_counter()
            f(masks)
            times[k].append(time.perf_counter() - started)
    median = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"\n{name}: {batch * classes} maps, {masks.float().mean().item():.1%} of the voxels predicted foreground")
    print(f"  {'variant':<22} {'ms/step':>9} {'x exact':>8}  {'max |err|':>9} {'mean |err|':>10}")
    for k in VARIANTS:
        print(f"  {k:<22} {median[k]:9.1f} {median[k] / median['torch exact']:8.2f}  {errors[k][0]:9.3f} "
              f"{errors[k][1]:10.4f}")
    return {"batch": batch, "classes": classes, "spatial": list(spatial), "maps": batch * classes,
            "foreground_fraction": masks.float().mean().item(),
            "times_ms": {k: [round(t * 1000, 3) for t in v] for k, v in times.items()},
            "max_error": {k: e[0] for k, e in errors.items()}, "mean_error": {k: e[1] for k, e in errors.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    results_io.case_arguments(parser, repeats=3)
    args, cases = results_io.selected_cases(parser, CASES, QUICK_CASES)
    recording = results_io.Recording("distance_fields", {"repeats": args.repeats, "quick": args.quick,
                                                         "truncation": TRUNCATION, "cases": list(cases)},
                                     args, quick=args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    records = {name: run_case(name, *case, args.repeats) for name, case in cases.items()}
    recording.save({"cases": records})


if __name__ == "__main__":
    main()
