"""Throughput of nnU-Net's real training data pipeline with each extra target, side by side.

Writes a synthetic 3D vessel dataset, plans and preprocesses it with nnU-Net's own command
(3d_fullres: the patch size, batch size and default augmentation come from the plans), then draws
training batches from ``get_dataloaders()`` of stock ``nnUNetTrainer`` and of the trainers whose targets
ride along in the segmentation — ``nnUNetTrainerSkeletonRecall`` (tubed skeleton),
``nnUNetTrainerHausdorffDT`` (ground-truth distance fields, scipy) and ``nnUNetTrainerUNetWeightedCE`` (U-Net
weight map) — the same data, the same number of worker processes, and prints batches per second side by
side. Rounds alternate between the pipelines to cancel drift; the median counts.

    python benchmarks/bench_pipeline_throughput.py [--size 128] [--batches 30] [--rounds 3] [--workers 2]
        [--trainers nnUNetTrainerSkeletonRecall nnUNetTrainerHausdorffDT nnUNetTrainerUNetWeightedCE]
        [--no-save] [--output FILE]

Every round's rate goes to benchmarks/results/pipeline_throughput.json (``--no-save``: not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_io

DATASET_ID = 902
# trainer -> the target it adds
EXTRA_TARGET_TRAINERS = {"nnUNetTrainerSkeletonRecall": "skeleton", "nnUNetTrainerHausdorffDT": "distance fields",
                         "nnUNetTrainerUNetWeightedCE": "weight map"}


def prepare(workdir: Path, size: int, cases: int) -> dict:
    """Raw dataset + nnU-Net planning/preprocessing in ``workdir``; sets the nnU-Net env vars here too."""
    from nnunet_ext.commands.nnunet_runs import nnunet_command
    from nnunet_ext.data.synthetic import write_raw_dataset
    from nnunet_ext.data.synthetic_image import ImageParams

    env = {"nnUNet_raw": str(workdir / "raw"), "nnUNet_preprocessed": str(workdir / "preprocessed"),
           "nnUNet_results": str(workdir / "results")}
    os.environ.update(env)
    dataset = write_raw_dataset(workdir / "raw", DATASET_ID, "Throughput3D", dim=3, n_train=cases, n_test=0,
                                size=size, image_params=ImageParams())
    subprocess.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                    "-np", "2"], check=True, env={**os.environ, **env}, capture_output=True)
    return {"name": dataset.name, "preprocessed": workdir / "preprocessed" / dataset.name}


def batches_per_second(trainer_class: type, data: dict, batches: int, warmup: int) -> float:
    """Draw ``warmup`` then ``batches`` training batches from the trainer's own data loader.

    The warm-up empties the loader's prefetch cache (6 batches), so the timed batches arrive at the rate
    the workers produce them."""
    import torch

    plans = json.loads((data["preprocessed"] / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # what nnUNetv2_train puts in
    dataset_json = json.loads((data["preprocessed"] / "dataset.json").read_text())
    trainer = trainer_class(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()  # sets the batch size (and builds network and loss, as nnUNetv2_train does)
    train_loader, val_loader = trainer.get_dataloaders()
    try:
        for _ in range(warmup):
            next(train_loader)
        started = time.perf_counter()
        for _ in range(batches):
            next(train_loader)
        return batches / (time.perf_counter() - started)
    finally:
        for loader in (train_loader, val_loader):
            if hasattr(loader, "_finish"):
                loader._finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="edge of the generated 3D images (default 128)")
    parser.add_argument("--cases", type=int, default=6, help="training cases (default 6)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per round (default 30)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed batches first, more than the loader's prefetch cache of 6 (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pipeline (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="nnUNet_n_proc_DA (default 2; 0: in process)")
    parser.add_argument("--trainers", nargs="+", default=list(EXTRA_TARGET_TRAINERS),
                        help="trainers measured next to nnUNetTrainer (default: one per extra target)")
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.rounds < 1 or args.batches < 1:
        parser.error("--rounds and --batches must be >= 1")
    os.environ["nnUNet_n_proc_DA"] = str(args.workers)
    recording = results_io.Recording("pipeline_throughput", {
        "size": args.size, "cases": args.cases, "batches": args.batches, "warmup": args.warmup,
        "rounds": args.rounds, "workers": args.workers, "trainers": args.trainers, "rotated": True}, args,
        own_load=args.workers + 1)  # its workers and the process drawing the batches

    with tempfile.TemporaryDirectory(prefix="nnunet_ext_throughput_") as tmp:
        data = prepare(Path(tmp), args.size, args.cases)
        # nnunetv2 reads the nnUNet_* variables at import: import the trainers only now
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        import nnunet_ext.trainers as trainers

        plans = json.loads((data["preprocessed"] / "nnUNetPlans.json").read_text())
        configuration = plans["configurations"]["3d_fullres"]
        plan = {"patch_size": configuration["patch_size"], "batch_size": configuration["batch_size"]}
        print(f"3d_fullres: patch {configuration['patch_size']}, batch {configuration['batch_size']}, "
              f"images {args.size}^3, {args.workers} worker processes, {os.cpu_count()} CPUs")
        classes = [nnUNetTrainer, *(getattr(trainers, name) for name in args.trainers)]
        rates: dict[str, list[float]] = {c.__name__: [] for c in classes}
        for round_index in range(args.rounds):
            shift = round_index % len(classes)  # each round starts with another pipeline: no order bias
            for trainer_class in classes[shift:] + classes[:shift]:
                rate = batches_per_second(trainer_class, data, args.batches, args.warmup)
                rates[trainer_class.__name__].append(rate)
                print(f"round {round_index + 1}: {trainer_class.__name__:<30} {rate:6.3f} batches/s", flush=True)
    plain = statistics.median(rates["nnUNetTrainer"])
    print("\nmedian batches/s (ratio to stock nnUNetTrainer; the skeleton's goal: >= 0.85)")
    print(f"  {'nnUNetTrainer (stock)':<44} {plain:6.3f}")
    for name in args.trainers:
        rate = statistics.median(rates[name])
        target = EXTRA_TARGET_TRAINERS.get(name, "?")
        print(f"  {name + ' (' + target + ')':<44} {rate:6.3f}   ratio {rate / plain:.3f}")
    recording.save({"plan": plan, "targets": {name: EXTRA_TARGET_TRAINERS.get(name) for name in args.trainers},
                    "batches_per_second": {name: [round(r, 4) for r in runs] for name, runs in rates.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
