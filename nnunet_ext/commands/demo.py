"""End-to-end smoke demo through nnU-Net's own commands: plain nnU-Net vs Skeleton Recall on hard 2D vessels."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_ext.commands.nnunet_runs import nnunet_command, trainers_path
from nnunet_ext.data.image_io import read_image, read_labels
from nnunet_ext.data.synthetic import write_raw_dataset
from nnunet_ext.data.synthetic_image import ImageParams
from nnunet_ext.pictures.figures import normalize_intensities, overlay, save_panels
from nnunet_ext.skeleton import tubed_skeleton

if TYPE_CHECKING:
    from nnunet_ext.commands.short_runs import ShortTrainer

DEMO_DATASET_ID = 901
PLAIN_TRAINER = "nnUNetTrainerDemoPlain"
SKELETON_RECALL_TRAINER = "nnUNetTrainerSkeletonRecallDemo"
DEMO_TRAINERS = {PLAIN_TRAINER: "nnU-Net (CE+Dice)", SKELETON_RECALL_TRAINER: "Skeleton Recall"}
TABLE_METRICS = ("Dice", "clDice", "Betti0_error", "Betti1_error", "pixel_error", "rand_error", "warping_error")

# The demo shows the documented way to change a trainer without editing installed code: subclasses in a folder of
# your own, listed in nnUNet_extTrainer next to ours. The plain trainer adds the topology metrics to its validation.
DEMO_MODULE = "demo_trainers"
DEMO_DOCSTRING = "Short runs for the nnunet_ext demo (written by `nnunet-ext demo`): plain nnU-Net and Skeleton Recall."
DEMO_VALIDATION_ITERATIONS = 5


def demo_trainers(epochs: int, iterations: int) -> list[ShortTrainer]:
    """The demo's two short trainers: the same budget for plain nnU-Net and Skeleton Recall."""
    from nnunet_ext.commands.short_runs import ShortTrainer  # noqa: PLC0415 - imports torch: not for a refusal

    budget = {"epochs": epochs, "iterations": iterations, "val_iterations": DEMO_VALIDATION_ITERATIONS}
    return [ShortTrainer(PLAIN_TRAINER, "nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer", **budget,
                         mixins=("nnunet_ext.trainers.topology_validation_mixin.TopologyValidationMixin",)),
            ShortTrainer(SKELETON_RECALL_TRAINER, "nnunet_ext.trainers.nnUNetTrainerSkeletonRecall", **budget,
                         attributes={"skeleton_recall_weight": 1.0})]


def _run(args: list[str], env: dict, log: Path) -> None:
    print("$", " ".join(args), flush=True)
    with open(log, "a") as out:
        result = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed (exit {result.returncode}); see {log}")


def run_demo(workdir: Path, epochs: int = 5, iterations: int = 40, cases: int = 10) -> int:
    """Write hard 2D data, plan, train plain nnU-Net and Skeleton Recall briefly on the CPU, predict the
    test images, evaluate both (table) and draw them (PNG), all with nnU-Net's own commands."""
    from nnunet_ext.evaluation.evaluate import evaluate_folders  # noqa: PLC0415

    workdir = workdir.resolve()
    if workdir.exists():
        print(f"error: {workdir} exists; the demo never overwrites. Remove it or pass --workdir NEW_FOLDER.",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    raw, preprocessed, results = workdir / "nnUNet_raw", workdir / "nnUNet_preprocessed", workdir / "nnUNet_results"
    my_trainers = workdir / "my_trainers"
    for folder in (raw, preprocessed, results, my_trainers):
        folder.mkdir(parents=True)
    from nnunet_ext.commands.short_runs import write_short_trainers  # noqa: PLC0415

    write_short_trainers(my_trainers, DEMO_MODULE, demo_trainers(epochs, iterations), DEMO_DOCSTRING)
    dataset = write_raw_dataset(raw, DEMO_DATASET_ID, "DemoVessels2D", dim=2, n_train=cases, n_test=4, size=128,
                                image_params=ImageParams())
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results),
           "nnUNet_extTrainer": os.pathsep.join([str(my_trainers), str(trainers_path())]),
           "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "2"),
           "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "1")}
    log = workdir / "demo.log"
    did = str(DEMO_DATASET_ID)
    # nnU-Net's planner hands nnUNet_n_proc_DA to torch.set_num_threads, which refuses 0 (0 is fine for training:
    # the data loader then runs in the training process)
    plan_env = {**env, "nnUNet_n_proc_DA": "1"} if env["nnUNet_n_proc_DA"] == "0" else env
    _run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "2d", "-np", "2",
          "--verify_dataset_integrity"], plan_env, log)
    plans = preprocessed / dataset.name / "nnUNetPlans.json"
    summaries, predictions = {}, {}
    for trainer in DEMO_TRAINERS:
        predictions[trainer] = workdir / "predictions" / trainer
        _run([nnunet_command("nnUNetv2_train"), did, "2d", "0", "-tr", trainer, "-device", "cpu"], env, log)
        # nnU-Net's sequential prediction: its worker processes would each import torch and nnU-Net again
        _run([nnunet_command("nnUNetv2_predict"), "-i", str(dataset / "imagesTs"), "-o", str(predictions[trainer]),
              "-d", did, "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "0", "-nps", "0"], env, log)
        summaries[trainer] = evaluate_folders(dataset / "labelsTs", predictions[trainer], dataset / "dataset.json",
                                              plans, num_processes=0, progress=False)
    table = results_table(summaries)
    (workdir / "results.md").write_text(table + "\n")
    figure = demo_figure(dataset, predictions, workdir / "demo.png")
    seconds = time.perf_counter() - started
    print(f"\ntest images ({len(summaries[PLAIN_TRAINER]['metric_per_case'])} cases), foreground mean:\n\n{table}\n")
    print(f"figure: {figure}\ntable: {workdir / 'results.md'}\nevaluations: summary_topology.json in "
          f"{workdir / 'predictions'}/*/\ndemo finished in {seconds:.0f} s. A short CPU run is a smoke test of the "
          "whole pipeline, not a trained model: the numbers say that everything runs, not which loss is better.")
    return 0


def results_table(summaries: dict[str, dict]) -> str:
    """Markdown table: one row per metric, one column per trainer (foreground means)."""
    header = "| metric | " + " | ".join(DEMO_TRAINERS[t] for t in summaries) + " |"
    rows = [header, "|" + " --- |" * (len(summaries) + 1)]
    for metric in TABLE_METRICS:
        better = "higher" if metric in ("Dice", "clDice") else "lower"
        values = " | ".join(f"{s['foreground_mean'][metric]:.3f}" for s in summaries.values())
        rows.append(f"| {metric} ({better} is better) | {values} |")
    return "\n".join(rows)


def demo_figure(dataset: Path, predictions: dict[str, Path], output: Path) -> Path:
    """PNG of the first test case: image, label, each trainer's prediction, the label's tubed skeleton."""
    case = sorted((dataset / "labelsTs").glob("*.nii.gz"))[0]
    image = normalize_intensities(read_image(dataset / "imagesTs" / case.name.replace(".nii.gz", "_0000.nii.gz")))
    labels = read_labels(case)
    row = [("image", image), ("label", overlay(image, labels))]
    row += [(DEMO_TRAINERS[t], overlay(image, read_labels(folder / case.name))) for t, folder in predictions.items()]
    row.append(("tubed skeleton of the label", overlay(image, labels, alpha=0.3, skeleton=tubed_skeleton(labels))))
    return save_panels([row], output, title=f"{case.name}: short CPU runs (smoke demo)")
