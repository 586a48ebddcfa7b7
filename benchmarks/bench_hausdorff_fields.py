"""Benchmark: the Hausdorff DT trainer's ground-truth fields d_g in the data-loader workers or on the training device.

``nnUNetTrainerHausdorffDT`` computes d_g in the workers (``DistanceFieldTransform``, scipy) and hands it to the
loss as the ``distance`` target block; ``nnUNetTrainerHausdorffDTDeviceFields`` (``distance_fields_on_device``)
leaves the workers alone and the loss computes d_g from the labels of every deep-supervision scale with the exact
torch EDT, like the prediction's field d_p. Side by side, in one process, on the same inputs:

1. the per-step cost of the trainer's loss, forward + backward: nnU-Net's CE + Dice alone, CE + Dice + HD-DT with
   d_g given (the workers' fields, sampled at the coarser scales as nnU-Net's downsampling does), and
   CE + Dice + HD-DT computing d_g on the device; each inside nnU-Net's ``DeepSupervisionWrapper`` over four
   scales (1, 1/2, 1/4, 1/8; nnU-Net's weights 1/2^i, the coarsest 0), HD at full weight;
2. the worker-side cost the device variant saves: ``DistanceFieldTransform`` on one sample's label map.

Inputs as in ``bench_losses.py`` (smooth random class fields, labels their argmax, unit spacing). Every variant
runs once to warm up, then ``--repeats`` rounds, each timing every variant once in turn (interleaved: the
machine's load hits all of them alike); medians and per-round ratios. Wall clock on this machine's CPU with its
default torch threads (the transform: one worker, single-threaded): on a GPU the loss's EDT is a few large
memory-bound kernels (the docs give an estimate), so only the CPU ratios are measured here.

Every run's time goes to benchmarks/results/hausdorff_fields.json (``--no-save``: not; a ``--quick`` run is not
saved).

Run:  .venv/bin/python benchmarks/bench_hausdorff_fields.py [--repeats 5] [--quick] [--cases 64^3] [--no-save]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import results_io
import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from bench_losses import make_inputs, nnunet_ce_dice
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_ext.losses import CompoundLoss, HausdorffDTLoss, LossTerm, TargetLayout
from nnunet_ext.losses.hausdorff_dt import patch_diagonal
from nnunet_ext.transforms import DistanceFieldTransform

# name: (batch, foreground classes, spatial); batch_dice False (nnU-Net's 3d_fullres default)
CASES = {
    "3D 2x64^3, 3 classes": (2, 3, (64, 64, 64)),
    "3D 2x64^3, 14 classes": (2, 14, (64, 64, 64)),
    "3D 2x128^3, 3 classes": (2, 3, (128, 128, 128)),
}
QUICK_CASES = {"3D 2x24^3, 3 classes": (2, 3, (24, 24, 24))}
SCALES = (1.0, 0.5, 0.25, 0.125)
BASELINE, GIVEN, DEVICE, WORKER = ("CE+Dice (nnU-Net)", "CE+Dice+HD-DT, d_g given (workers)",
                                   "CE+Dice+HD-DT, d_g on the device", "DistanceFieldTransform per sample")


def scale_weights() -> list[float]:
    """nnU-Net's deep-supervision weights: 1 / 2^i, the coarsest 0, normalized to sum 1."""
    weights = [1 / 2 ** i for i in range(len(SCALES))]
    weights[-1] = 0.0
    return [w / sum(weights) for w in weights]


def worker_targets(labels: torch.Tensor, classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """What each pipeline delivers, per scale: labels alone (B, 1, ...), and labels with the workers' fields
    (B, 1 + classes, ...): ``DistanceFieldTransform`` then nnU-Net's deep-supervision downsampling, per sample."""
    transform = DistanceFieldTransform(classes + 1)
    downsample = DownsampleSegForDSTransform(list(SCALES))
    with_fields = [downsample(segmentation=transform(segmentation=sample.short())["segmentation"])["segmentation"]
                   for sample in labels]
    alone = [downsample(segmentation=sample.short())["segmentation"] for sample in labels]
    stack = lambda per_sample: [torch.stack(scale) for scale in zip(*per_sample)]  # noqa: E731
    return stack(alone), stack(with_fields)


def pyramid(logits: torch.Tensor) -> list[torch.Tensor]:
    """The network's outputs at every scale (average-pooled logits; not timed)."""
    return [logits if s == 1 else F.avg_pool3d(logits, round(1 / s)) for s in SCALES]


def trainer_losses(classes: int, spatial: tuple[int, ...]) -> dict[str, Callable]:
    """name -> loss(outputs, targets) as the trainers compose it inside nnU-Net's deep-supervision wrapper."""
    spacing = (1.0,) * len(spatial)
    hd = HausdorffDTLoss(spacing=spacing, patch_size=spatial, distance_scale=patch_diagonal(spacing, spatial) / 100)
    ce_dice = nnunet_ce_dice(batch_dice=False)
    given = CompoundLoss([LossTerm(ce_dice, 1.0, "labels"), LossTerm(hd, 1.0, ("labels", "distance"))],
                         layout=TargetLayout([("labels", 1), ("distance", classes)]))
    device = CompoundLoss([LossTerm(ce_dice, 1.0, "labels"), LossTerm(hd, 1.0, "labels")],
                          layout=TargetLayout([("labels", 1)]))
    weights = scale_weights()
    return {BASELINE: DeepSupervisionWrapper(ce_dice, weights), GIVEN: DeepSupervisionWrapper(given, weights),
            DEVICE: DeepSupervisionWrapper(device, weights)}


def timed_step(loss: Callable, logits: torch.Tensor, targets: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds of one forward + backward over the scales, and the loss value."""
    z = logits.detach().requires_grad_(True)
    outputs = pyramid(z)
    started = time.perf_counter()
    value = loss(outputs, targets)
    value.backward()
    return time.perf_counter() - started, value.item()


def timed_transform(labels: torch.Tensor, classes: int) -> float:
    """Seconds of ``DistanceFieldTransform`` on one sample's label map (1, X, Y, Z), as a worker runs it."""
    transform = DistanceFieldTransform(classes + 1)
    sample = labels[0].short()
    started = time.perf_counter()
    transform(segmentation=sample)
    return time.perf_counter() - started


def full_resolution_difference(classes: int, spatial: tuple[int, ...], logits: torch.Tensor,
                               with_fields: torch.Tensor) -> float:
    """|HD-DT with the workers' fields - HD-DT with d_g on the device| at full resolution (equal by definition)."""
    spacing = (1.0,) * len(spatial)
    hd = HausdorffDTLoss(spacing=spacing, patch_size=spatial, distance_scale=patch_diagonal(spacing, spatial) / 100)
    labels, fields = with_fields[:, :1], with_fields[:, 1:]
    return abs(hd(logits, labels, fields).item() - hd(logits, labels).item())


def worker_fields_implementation() -> dict:
    """Which code computes the workers' fields (their cost depends on it): the module, and the ``edt`` package."""
    from nnunet_ext.distance import class_boundary_distances

    return {"module": class_boundary_distances.__module__, "edt": results_io.package_version("edt")}


def run_case(name: str, batch: int, classes: int, spatial: tuple[int, ...], repeats: int) -> dict:
    """The record of one case: every round's ms per variant, the loss values, the full-resolution difference."""
    logits, labels, _ = make_inputs(batch, classes, spatial)
    alone, with_fields = worker_targets(labels, classes)
    losses = trainer_losses(classes, spatial)
    targets = {BASELINE: alone, GIVEN: with_fields, DEVICE: alone}
    values = {k: timed_step(f, logits, targets[k])[1] for k, f in losses.items()}  # warm-up
    timed_transform(labels, classes)
    times: dict[str, list[float]] = {k: [] for k in (*losses, WORKER)}
    for _ in range(repeats):
        for k, f in losses.items():
            times[k].append(timed_step(f, logits, targets[k])[0])
        times[WORKER].append(timed_transform(labels, classes))
    difference = full_resolution_difference(classes, spatial, logits, with_fields[0])
    median = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"\n{name}: {len(SCALES)} deep-supervision scales")
    for k in times:
        print(f"  {k:<36} {median[k]:10.1f} ms" + (f"   {values[k]:.6f}" if k in values else ""))
    device_vs_given = statistics.median(results_io.ratios(times[DEVICE], times[GIVEN]))
    print(f"  d_g on the device / given: {device_vs_given:.2f}x per step; |difference| at full resolution "
          f"{difference:.1e}")
    return {"batch": batch, "classes": classes, "spatial": list(spatial), "scales": list(SCALES),
            "scale_weights": scale_weights(),
            "times_ms": {k: [round(t * 1000, 3) for t in v] for k, v in times.items()},
            "values": values, "full_resolution_difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    results_io.case_arguments(parser, repeats=5)
    args, cases = results_io.selected_cases(parser, CASES, QUICK_CASES)
    worker_fields = worker_fields_implementation()
    recording = results_io.Recording("hausdorff_fields", {"repeats": args.repeats, "quick": args.quick,
                                                          "cases": list(cases), "worker_fields": worker_fields},
                                     args, quick=args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu; workers' fields: "
          f"{worker_fields}")
    records: dict[str, dict] = {}
    for name, case in cases.items():  # saved after every case: a long run stopped half-way keeps what it measured
        records[name] = run_case(name, *case, args.repeats)
        recording.save({"cases": records, "complete": len(records) == len(cases)})


if __name__ == "__main__":
    main()
