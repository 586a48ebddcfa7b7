"""Benchmark: the training losses' forward+backward against their straightforward forms and nnU-Net's CE+Dice.

Two ratios the GPU issue asks for, measured side by side in one run on the same inputs:

1. Skeleton Recall alone: ``SoftSkeletonRecallLoss`` vs the straightforward one-hot formulation
   (softmax, one-hot of the skeleton by ``scatter_``, masked sums over the foreground channels).
   Goal: ours / one-hot <= 1.0, same value to 1e-6.
2. Whole trainer losses vs nnU-Net's own ``DC_and_CE_loss`` (CE + MemoryEfficientSoftDiceLoss, as
   ``nnUNetTrainer._build_loss`` builds it): CE + Dice + Skeleton Recall (goal <= 1.3x), and, for
   information, CE + Dice + clDice, CE + Dice + cbDice, CE + Dice + clCE (the trainers' defaults: cbDice
   with k = 10 on the hard masks, clCE with k = 3), Combo, and UNet 3+'s hybrid loss; in the 3D cases also
   CE + Dice + Hausdorff DT (the ground-truth fields given, as the data pipeline delivers them; the
   prediction's field computed in the step by the exact torch EDT) and the U-Net weighted CE + Dice (the
   weight map given).

Cases (``--quick``: small shapes, a check of the script): 3D batch 2, 64^3 with 14 and 3 foreground
classes, 2D batch 12, 512^2 with 3 (nnU-Net's 2D batch size). Inputs: logits are a noisy copy of smooth
random class fields, labels their argmax, the skeleton a sparse subset of the labels (~6% of the voxels),
as the data pipeline delivers them. Every variant runs once to warm up, then ``--repeats`` times,
interleaved (each repeat runs every variant once), on the machine's default torch threads; the median
is reported. Wall clock on the CPU: ratios are what carries over, not milliseconds.

``--sr-formulations`` also times each of Skeleton Recall's sum formulations (``skeleton_recall.FORMULATIONS``)
against the one-hot form at 3D 2x64^3 with 3, 5, 8 and 14 foreground classes and 2D 12x512^2 with 3: the
measurement behind ``skeleton_recall.CPU_OWN_CLASS_MIN_CHANNELS`` (the crossover ``sum_formulation`` uses).

Every run's time goes to benchmarks/results/losses.json (``--no-save``: not; a ``--quick`` run is not saved).

Run:  .venv/bin/python benchmarks/bench_losses.py [--repeats 5] [--quick] [--skip-cldice] [--cases 3D]
          [--only "CE+Dice+cbDice" "CE+Dice+clCE"]   (--only: these variants next to nnU-Net's CE+Dice)
          [--sr-formulations] [--no-save] [--output FILE]
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
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_ext.distance import class_boundary_distances
from nnunet_ext.losses import (
    CbDiceLoss,
    ClCELoss,
    ComboLoss,
    CompoundLoss,
    HausdorffDTLoss,
    HybridLoss,
    LossTerm,
    SoftClDiceLoss,
    SoftSkeletonRecallLoss,
    TargetLayout,
    WeightedCrossEntropyLoss,
    unet_weight_map,
)
from nnunet_ext.losses.hausdorff_dt import patch_diagonal
from nnunet_ext.losses.skeleton_recall import FORMULATIONS, negative_mean_recall, own_class_sums, sum_formulation

NOT_TRAINER_LOSSES = {"CE+Dice (nnU-Net)", "SR ours", "SR one-hot"}  # (baselines and the SR-alone pair)
# name: (batch, foreground classes, spatial, nnU-Net's batch_dice for such a configuration)
CASES = {
    "3D 2x64^3, 14 classes": (2, 14, (64, 64, 64), False),
    "3D 2x64^3, 3 classes": (2, 3, (64, 64, 64), False),
    "2D 12x512^2, 3 classes": (12, 3, (512, 512), True),
}
QUICK_CASES = {
    "3D 2x24^3, 14 classes": (2, 14, (24, 24, 24), False),
    "2D 4x64^2, 3 classes": (4, 3, (64, 64), True),
}
# the crossover sweep of --sr-formulations: name -> (batch, foreground classes, spatial, batch_dice)
SR_SWEEP = {
    **{f"3D 2x64^3, {k} classes": (2, k, (64, 64, 64), False) for k in (3, 5, 8, 14)},
    "2D 12x512^2, 3 classes": (12, 3, (512, 512), True),
}
QUICK_SR_SWEEP = {f"3D 2x24^3, {k} classes": (2, k, (24, 24, 24), False) for k in (3, 14)}
SKELETON_FRACTION = 0.06


def make_inputs(batch: int, classes: int, spatial: tuple[int, ...], seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (B, C, *spatial) float32, labels and skeleton (B, 1, *spatial) int64; C = classes + 1."""
    gen = torch.Generator().manual_seed(seed)
    channels = classes + 1
    coarse = torch.randn(batch, channels, *(max(2, s // 8) for s in spatial), generator=gen)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    fields = F.interpolate(coarse, size=spatial, mode=mode, align_corners=False)
    fields[:, 0] += 0.8  # background is the most frequent class, as in thin-structure data
    labels = fields.argmax(1, keepdim=True)
    logits = 3 * fields + torch.randn(fields.shape, generator=gen)
    on_skeleton = torch.rand(labels.shape, generator=gen) < SKELETON_FRACTION
    skeleton = torch.where(on_skeleton, labels, 0)
    return logits, labels, skeleton


def one_hot_skeleton_recall(logits: torch.Tensor, skeleton: torch.Tensor, batch_dice: bool,
                            smooth: float = 1e-5) -> torch.Tensor:
    """The straightforward formulation: softmax, one-hot of the skeleton by scatter, masked sums."""
    probs = torch.softmax(logits, 1)
    onehot = torch.zeros_like(probs).scatter_(1, skeleton, 1)
    axes = (0, *range(2, logits.ndim)) if batch_dice else tuple(range(2, logits.ndim))
    intersection = (probs[:, 1:] * onehot[:, 1:]).sum(axes)
    size = onehot[:, 1:].sum(axes)
    return -((intersection + smooth) / (size + smooth)).mean()


def nnunet_ce_dice(batch_dice: bool, weight_ce: float = 1) -> torch.nn.Module:
    """nnU-Net's loss as nnUNetTrainer builds it (no ignore label, no DDP); ``weight_ce=0``: its Dice alone."""
    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=weight_ce, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


def extra_targets(labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distance fields (B, classes, ...) and the U-Net weight map (B, 1, ...) of the labels, as the data
    pipeline computes them (scipy / numpy, not timed)."""
    fields = np.stack([class_boundary_distances(sample[0], range(1, classes + 1)) for sample in labels.numpy()])
    weights = np.stack([unet_weight_map(sample[0])[None] for sample in labels.numpy()])
    return torch.from_numpy(fields), torch.from_numpy(weights)


def distance_variants(batch_dice: bool, spatial: tuple[int, ...], classes: int, fields: torch.Tensor,
                      weights: torch.Tensor) -> dict[str, Callable]:
    """CE + Dice + HD_DT and weighted CE + Dice as the trainers compose them (HD at full weight)."""
    hd = HausdorffDTLoss(spacing=(1.0,) * len(spatial), patch_size=spatial, batch_dice=batch_dice,
                         distance_scale=patch_diagonal((1.0,) * len(spatial), spatial) / 100)
    with_hd = CompoundLoss([LossTerm(nnunet_ce_dice(batch_dice), 1.0, "labels"),
                            LossTerm(hd, 1.0, ("labels", "distance"))],
                           layout=TargetLayout([("labels", 1), ("distance", classes)]))
    weighted = CompoundLoss([LossTerm(nnunet_ce_dice(batch_dice, weight_ce=0), 1.0, "labels"),
                             LossTerm(WeightedCrossEntropyLoss(), 1.0, ("labels", "weights"))],
                            layout=TargetLayout([("labels", 1), ("weights", 1)]))
    return {"CE+Dice+HD-DT": lambda z, y, s: with_hd(z, torch.cat([y.float(), fields], 1)),
            "wCE+Dice (U-Net)": lambda z, y, s: weighted(z, torch.cat([y.float(), weights], 1))}


def with_labels_term(ce_dice: torch.nn.Module, extra: torch.nn.Module) -> Callable:
    """CE + Dice + 1 * extra, as the trainers compose it (both terms read the labels)."""
    loss = CompoundLoss([LossTerm(ce_dice, 1.0, "labels"), LossTerm(extra, 1.0, "labels")])
    return lambda z, y, s: loss(z, y)


def variants(batch_dice: bool, skip_cldice: bool) -> dict[str, Callable[[torch.Tensor, torch.Tensor,
                                                                          torch.Tensor], torch.Tensor]]:
    """name -> loss(logits, labels, skeleton)."""
    ce_dice = nnunet_ce_dice(batch_dice)
    recall = SoftSkeletonRecallLoss(batch_dice=batch_dice)
    with_recall = CompoundLoss([LossTerm(ce_dice, 1.0, "labels"), LossTerm(recall, 1.0, "skeleton")])
    out = {
        "SR one-hot": lambda z, y, s: one_hot_skeleton_recall(z, s, batch_dice),
        "SR ours": lambda z, y, s: recall(z, s),
        "CE+Dice (nnU-Net)": lambda z, y, s: ce_dice(z, y),
        "CE+Dice+SR": lambda z, y, s: with_recall(z, torch.cat([y, s], 1)),
        "CE+Dice+cbDice": with_labels_term(ce_dice, CbDiceLoss(batch_dice=batch_dice)),
        "CE+Dice+clCE": with_labels_term(ce_dice, ClCELoss(batch_dice=batch_dice)),
        "Combo": lambda z, y, s: ComboLoss(batch_dice=batch_dice)(z, y),
        "Hybrid (UNet 3+)": lambda z, y, s: HybridLoss(batch_dice=batch_dice)(z, y),
    }
    if not skip_cldice:
        cldice = CompoundLoss([LossTerm(ce_dice, 1.0, "labels"),
                               LossTerm(SoftClDiceLoss(batch_dice=batch_dice), 1.0, "labels")])
        out["CE+Dice+clDice"] = lambda z, y, s: cldice(z, y)
    return out


def forward_backward(loss: Callable, logits: torch.Tensor, labels: torch.Tensor, skeleton: torch.Tensor
                     ) -> tuple[float, float]:
    """Seconds of one forward+backward, and the loss value."""
    z = logits.detach().requires_grad_(True)
    start = time.perf_counter()
    value = loss(z, labels, skeleton)
    value.backward()
    return time.perf_counter() - start, value.item()


def run_case(name: str, batch: int, classes: int, spatial: tuple[int, ...], batch_dice: bool, repeats: int,
             skip_cldice: bool, only: list[str] | None = None) -> tuple[dict[str, float], dict]:
    """(ratios of the medians, the record: every run's ms per variant, the values, the baselines)."""
    logits, labels, skeleton = make_inputs(batch, classes, spatial)
    losses = variants(batch_dice, skip_cldice)
    if len(spatial) == 3:
        losses.update(distance_variants(batch_dice, spatial, classes, *extra_targets(labels, classes)))
    if only:
        losses = {k: f for k, f in losses.items() if k in {"CE+Dice (nnU-Net)", *only}}
    times: dict[str, list[float]] = {k: [] for k in losses}
    values = {k: forward_backward(f, logits, labels, skeleton)[1] for k, f in losses.items()}  # warm-up
    for _ in range(repeats):
        for k, f in losses.items():
            times[k].append(forward_backward(f, logits, labels, skeleton)[0])
    median = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"\n{name} (batch_dice={batch_dice}, skeleton {skeleton.gt(0).float().mean().item():.1%} of voxels)")
    print(f"  {'loss':<20} {'ms':>9}  {'ratio':>20}  value")
    record = {"batch": batch, "classes": classes, "spatial": list(spatial), "batch_dice": batch_dice,
              "times_ms": {k: [round(t * 1000, 3) for t in v] for k, v in times.items()},
              "baseline": {k: baseline_of(k) for k in losses}, "values": values}
    for k in losses:
        base = baseline_of(k)
        ratio = median[k] / median[base]
        print(f"  {k:<20} {median[k]:9.1f}  {ratio:6.2f}x {base:<13}  {values[k]:.8f}")
    if "SR ours" not in losses:
        return {k: median[k] / median["CE+Dice (nnU-Net)"] for k in losses if k not in NOT_TRAINER_LOSSES}, record
    diff = abs(values["SR ours"] - values["SR one-hot"])
    record["sr_value_difference"] = diff
    print(f"  |SR ours - SR one-hot| = {diff:.2e}")
    if diff > 1e-6:
        raise SystemExit(f"{name}: Skeleton Recall differs from the one-hot formulation by {diff:.2e} > 1e-6")
    return {"sr": median["SR ours"] / median["SR one-hot"],
            **{k: median[k] / median["CE+Dice (nnU-Net)"] for k in losses if k not in NOT_TRAINER_LOSSES}}, record


def baseline_of(variant: str) -> str:
    """What a variant's ratio is taken against: the one-hot form for Skeleton Recall alone, else CE + Dice."""
    return "SR one-hot" if variant.startswith("SR ") else "CE+Dice (nnU-Net)"


def formulation_loss(name: str, batch_dice: bool) -> Callable:
    """Skeleton Recall with the sums of formulation ``name`` (a key of ``FORMULATIONS``)."""
    return lambda z, y, s: negative_mean_recall(*own_class_sums(z, s, name), batch_dice, False, 1e-5)


def run_sr_formulations(sweep: dict, repeats: int) -> dict:
    """Every SR sum formulation and the one-hot form, forward+backward, interleaved (the order alternates per
    repeat); returns the record: per case the channels, the dispatched formulation, every run's ms."""
    print("\nSkeleton Recall's sum formulations / one-hot (forward+backward)")
    records = {}
    for name, (batch, classes, spatial, batch_dice) in sweep.items():
        logits, labels, skeleton = make_inputs(batch, classes, spatial)
        losses = {"one-hot": lambda z, y, s, bd=batch_dice: one_hot_skeleton_recall(z, s, bd),
                  **{k: formulation_loss(k, batch_dice) for k in FORMULATIONS}}
        values = {k: forward_backward(f, logits, labels, skeleton)[1] for k, f in losses.items()}  # warm-up
        times: dict[str, list[float]] = {k: [] for k in losses}
        for repeat in range(repeats):
            for k in (list(losses) if repeat % 2 == 0 else list(losses)[::-1]):
                times[k].append(forward_backward(losses[k], logits, labels, skeleton)[0] * 1000)
        chosen = sum_formulation(classes + 1, "cpu")
        records[name] = {"batch": batch, "classes": classes, "channels": classes + 1, "spatial": list(spatial),
                         "dispatched": chosen, "times_ms": {k: [round(t, 3) for t in v] for k, v in times.items()},
                         "values": values}
        reference = statistics.median(times["one-hot"])
        cells = [f"{k} {statistics.median(v) / reference:.2f}x{'*' if k == chosen else ''}"
                 for k, v in times.items() if k != "one-hot"]
        print(f"  {name:<24} one-hot {reference:7.1f} ms   " + "   ".join(cells) + "   (*: dispatched)")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small shapes: a check of the script")
    parser.add_argument("--skip-cldice", action="store_true", help="leave out CE+Dice+clDice (the slowest)")
    parser.add_argument("--cases", nargs="+", help="run the cases whose name contains one of these strings")
    parser.add_argument("--only", nargs="+", help="run only these variants (and nnU-Net's CE+Dice)")
    parser.add_argument("--sr-formulations", action="store_true",
                        help="also time every Skeleton Recall sum formulation against the one-hot form (the crossover)")
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = {name: case for name, case in (QUICK_CASES if args.quick else CASES).items()
             if not args.cases or any(part in name for part in args.cases)}
    recording = results_io.Recording("losses", {"repeats": args.repeats, "quick": args.quick,
                                                "skip_cldice": args.skip_cldice, "cases": list(cases),
                                                "only": args.only, "skeleton_fraction": SKELETON_FRACTION,
                                                "sr_formulations": args.sr_formulations},
                                     args, quick=args.quick)
    ratios, records = {}, {}
    for name, case in cases.items():
        ratios[name], records[name] = run_case(name, *case, args.repeats, args.skip_cldice, args.only)
    print("\nsummary (goals: Skeleton Recall / one-hot <= 1.0x; CE+Dice+SR / CE+Dice <= 1.3x; the others: x CE+Dice)")
    for name, r in ratios.items():
        parts = [f"SR/one-hot {r['sr']:.2f}x"] if "sr" in r else []
        parts += [f"{k} {v:.2f}x" for k, v in r.items() if k != "sr"]
        print(f"  {name:<24} " + "   ".join(parts))
    results = {"cases": records}
    if args.sr_formulations:
        results["sr_formulations"] = run_sr_formulations(QUICK_SR_SWEEP if args.quick else SR_SWEEP, args.repeats)
    recording.save(results)


if __name__ == "__main__":
    main()
