"""What each extra target costs in a data-loader worker, against nnU-Net's own augmentation of the same patch.

One thread (one nnU-Net data-loader worker). Per sample: a synthetic 3D vessel volume (background + 2 classes)
of nnU-Net's initial patch size for a 128³ patch (enlarged for rotation, as the data loader crops it) goes
through nnU-Net's stock 3D training transforms (``nnUNetTrainer.get_training_transforms``: spatial, intensity,
mirroring, deep-supervision downsampling); then each of our target transforms runs on the same augmented
128³ label map, where nnU-Net's pipeline runs it (before the deep-supervision downsampling):

* ``SkeletonTransform`` (tubed skeleton, Skeleton Recall),
* ``UNetWeightMapTransform`` (U-Net border weight map), also on its real workload: 50–300 touching cells,
* ``DistanceFieldTransform`` (HD-DT ground-truth boundary distance fields, 2 classes).

A round times ``--samples`` samples; a target's ratio in a round is its mean time over the stock mean of the
same samples. The table gives the median and range over ``--rounds`` rounds; the goals are issue 20's.

Run:  .venv/bin/python benchmarks/bench_worker_targets.py [--rounds 3] [--samples 16] [--quick] [--no-save]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one worker = one thread, before numpy / torch load

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import results_io  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from nnunet_ext.data.synthetic import vessel_image, vessel_tree  # noqa: E402
from nnunet_ext.transforms import DistanceFieldTransform, SkeletonTransform, UNetWeightMapTransform  # noqa: E402

PATCH = (128, 128, 128)
CLASSES = 2  # foreground classes of the vessel trees
ROTATION = (-30.0 / 360 * 2 * math.pi, 30.0 / 360 * 2 * math.pi)  # nnU-Net's default for isotropic 3D patches
DEEP_SUPERVISION = [[1.0] * 3, [0.5] * 3, [0.25] * 3, [0.125] * 3, [0.0625] * 3]
GOALS = {"skeleton": 0.20, "weight map": 0.50, "distance fields": 1.00}
CELL_COUNTS = (50, 150, 300)


def stock_transforms(patch: tuple[int, ...]) -> tuple[Callable, Callable, tuple[int, ...]]:
    """nnU-Net's 3D training transforms for ``patch``, split before the deep-supervision downsampling (where our
    targets go), and the initial patch size the data loader hands them."""
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms as Compose
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    pipeline = nnUNetTrainer.get_training_transforms(patch, ROTATION, DEEP_SUPERVISION, (0, 1, 2), False,
                                                     use_mask_for_norm=[False],
                                                     foreground_labels=list(range(1, CLASSES + 1)))
    steps = list(pipeline.transforms)
    split = next(i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform))
    initial = tuple(int(s) for s in get_patch_size(patch, ROTATION, ROTATION, ROTATION, (0.85, 1.25)))
    return Compose(steps[:split]), Compose(steps[split:]), initial


def vessel_samples(shape: tuple[int, ...], count: int, seed: int) -> list[dict]:
    """``count`` volumes of ``shape``: {"image": (1, *shape) float32, "segmentation": (1, *shape) int16}."""
    samples = []
    for k in range(count):
        labels = vessel_tree(shape, seed=seed + k, n_classes=CLASSES).astype(np.int16)
        image = vessel_image(labels, seed=seed + k).astype(np.float32)
        image = (image - image.mean()) / max(float(image.std()), 1e-8)  # nnU-Net's z-score normalization
        samples.append({"image": torch.from_numpy(image[None]), "segmentation": torch.from_numpy(labels[None])})
    return samples


def touching_cells(shape: tuple[int, ...], count: int, seed: int, radius: float = 9.0) -> np.ndarray:
    """(X, Y, Z) int16: ``count`` cells (one class) packed around random centres, each the voxels within
    ``radius`` of their nearest centre, neighbours split by a gap of about two voxels (separate objects)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=bool)
    seeds[tuple(rng.integers(0, n, count) for n in shape)] = True
    distance, nearest = ndimage.distance_transform_edt(~seeds, return_indices=True)
    owner = np.ravel_multi_index(tuple(nearest), shape)
    boundary = (ndimage.maximum_filter(owner, size=3) != ndimage.minimum_filter(owner, size=3))
    return ((distance <= radius) & ~boundary).astype(np.int16)


def milliseconds(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = function()
    return 1000 * (time.perf_counter() - started), out


def target_transforms() -> dict[str, Callable]:
    return {"skeleton": SkeletonTransform(),
            "weight map": UNetWeightMapTransform(),
            "distance fields": DistanceFieldTransform(CLASSES + 1)}


def one_round(samples: list[dict], cells: dict[int, np.ndarray], seed: int) -> dict[str, list[float]]:
    """Times (ms) of every sample of one round: stock augmentation, then each target on its output; the weight
    map on each cell volume once."""
    before_ds, ds, _ = stock_transforms(PATCH)
    targets = target_transforms()
    times: dict[str, list[float]] = {"stock": [], **{name: [] for name in targets}}
    torch.manual_seed(seed)
    np.random.seed(seed)
    for sample in samples:
        batch = {key: value.clone() for key, value in sample.items()}
        augment_ms, augmented = milliseconds(lambda b=batch: before_ds(**b))
        labels = {key: value.clone() for key, value in augmented.items()}
        downsample_ms, _ = milliseconds(lambda a=augmented: ds(**a))
        times["stock"].append(augment_ms + downsample_ms)
        for name, transform in targets.items():
            ms, _ = milliseconds(lambda t=transform, a=labels: t(**{k: v.clone() for k, v in a.items()}))
            times[name].append(ms)
    weight_map = targets["weight map"]
    for count, cell_labels in cells.items():
        sample = {"image": torch.zeros((1, *cell_labels.shape)), "segmentation": torch.from_numpy(cell_labels[None])}
        ms, _ = milliseconds(lambda s=sample: weight_map(**s))
        times[f"weight map, {count} cells"] = [ms]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --samples samples (median reported)")
    parser.add_argument("--samples", type=int, default=16, help="samples per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 samples: a check of the script, not saved")
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.rounds < 1 or args.samples < 1:
        parser.error("--rounds and --samples must be >= 1")
    if args.quick:
        args.rounds, args.samples = 2, 2
    torch.set_num_threads(1)
    _, _, initial = stock_transforms(PATCH)
    recording = results_io.Recording("worker_targets", {
        "patch": list(PATCH), "initial_patch": list(initial), "classes": CLASSES, "rounds": args.rounds,
        "samples": args.samples, "seed": args.seed, "cell_counts": list(CELL_COUNTS), "goals": GOALS,
        "threads": 1}, args, quick=args.quick)
    print(f"one thread; patch {PATCH}, the data loader's crop {initial}; {args.rounds} rounds of {args.samples} "
          f"samples")
    samples = vessel_samples(initial, args.samples, args.seed)
    cells = {count: touching_cells(PATCH, count, args.seed + count) for count in CELL_COUNTS}
    rounds = []
    for r in range(args.rounds):
        times = one_round(samples, cells, args.seed + r)
        rounds.append(times)
        stock = statistics.mean(times["stock"])
        summary = ", ".join(f"{name} {statistics.mean(ms):.0f} ms ({statistics.mean(ms) / stock:.2f}×)"
                            for name, ms in times.items() if name != "stock")
        print(f"round {r + 1}: stock augmentation {stock:.0f} ms per sample; {summary}", flush=True)

    met = True
    print(f"\n{'target':<28}{'ms per sample':>22}{'× stock augmentation':>28}{'goal':>8}")
    stock_means = [statistics.mean(t["stock"]) for t in rounds]
    print(f"{'stock augmentation':<28}{results_io.median_range(stock_means, 0):>22}")
    for name in rounds[0]:
        if name == "stock":
            continue
        means = [statistics.mean(t[name]) for t in rounds]
        ratio = results_io.ratios(means, stock_means)
        goal = GOALS.get(name) or GOALS["weight map"]
        ok = statistics.median(ratio) <= goal
        met &= ok
        goal_text = f"≤ {goal:.2f}×"
        print(f"{name:<28}{results_io.median_range(means, 0):>22}{results_io.median_range(ratio, 2, '×'):>28}"
              f"{goal_text:>8} {'met' if ok else 'NOT met'}")
    recording.save({"rounds": [{name: [round(ms, 2) for ms in values] for name, values in t.items()}
                               for t in rounds]})
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
