"""End-to-end smoke demo through nnU-Net's own commands, on a synthetic 2D vessel dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnunet_ext.synthetic import write_raw_dataset

DEMO_DATASET_ID = 901
DEMO_TRAINER = "nnUNetTrainerSkeletonRecallDemo"

# The demo shows the documented way to change a trainer without editing installed code:
# a subclass in a folder of your own, listed in nnUNet_extTrainer next to ours.
_DEMO_TRAINER_SOURCE = '''\
"""Short Skeleton Recall run for the nnunet_ext demo (written by `nnunet-ext demo`)."""
import torch

from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall


class {name}(nnUNetTrainerSkeletonRecall):
    skeleton_recall_weight = 1.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 5
'''


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script, preferring the one beside this Python."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: is nnunetv2 installed in this environment?")
    return found


def _run(args: list[str], env: dict, log: Path) -> None:
    print("$", " ".join(args), flush=True)
    with open(log, "a") as out:
        result = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed (exit {result.returncode}); see {log}")


def run_demo(workdir: Path, epochs: int = 2, iterations: int = 25, cases: int = 10) -> int:
    """Write data, plan, train briefly on the CPU and predict, all with nnU-Net's commands."""
    from nnunet_ext.cli import trainers_path  # noqa: PLC0415 - avoid a cycle at import

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
    (my_trainers / f"{DEMO_TRAINER}.py").write_text(
        _DEMO_TRAINER_SOURCE.format(name=DEMO_TRAINER, epochs=epochs, iterations=iterations))
    dataset = write_raw_dataset(raw, DEMO_DATASET_ID, "DemoVessels2D", dim=2, n_train=cases, n_test=2, size=128)
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results),
           "nnUNet_extTrainer": os.pathsep.join([str(my_trainers), str(trainers_path())]),
           "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "2"),
           "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "1")}
    log = workdir / "demo.log"
    predictions = workdir / "predictions"
    did = str(DEMO_DATASET_ID)
    _run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "2d", "-np", "2",
          "--verify_dataset_integrity"], env, log)
    _run([nnunet_command("nnUNetv2_train"), did, "2d", "0", "-tr", DEMO_TRAINER, "-device", "cpu"], env, log)
    _run([nnunet_command("nnUNetv2_predict"), "-i", str(dataset / "imagesTs"), "-o", str(predictions), "-d", did,
          "-c", "2d", "-f", "0", "-tr", DEMO_TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1"], env, log)
    _report(results, predictions, time.perf_counter() - started)
    return 0


def _report(results: Path, predictions: Path, seconds: float) -> None:
    import SimpleITK as sitk  # noqa: PLC0415

    summary = next(results.rglob("validation/summary.json"))
    mean = json.loads(summary.read_text())["foreground_mean"]
    print(f"\nvalidation (fold 0): Dice {mean['Dice']:.3f}  ({summary})")
    for prediction in sorted(predictions.glob("*.nii.gz")):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction)))
        print(f"prediction {prediction.name}: shape {array.shape}, labels {np.unique(array).tolist()}, "
              f"foreground {np.mean(array > 0):.1%}")
    print(f"demo finished in {seconds:.0f} s. This short CPU run is a smoke test of the whole pipeline, "
          "not a trained model.")
