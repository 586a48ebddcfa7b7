"""Label problems surface when training starts, in the training process, with the value, the cases and the fix;
and the topology summary never turns a finished training into a failure."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.utilities.crossval_split import generate_crossval_split

from nnunet_ext.commands.nnunet_runs import nnunet_command
from tests.cli_runs import TINY, fold_folder
from tests.conftest import NnunetWorkspace

# full tier: nnUNetv2_train runs on broken datasets
pytestmark = pytest.mark.full

FRACTIONAL = 907
UNDEFINED = 908


def _edit_labels(path: Path, edit) -> None:
    image = sitk.ReadImage(str(path))
    out = sitk.GetImageFromArray(edit(sitk.GetArrayFromImage(image)))
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _copy_dataset(ws: NnunetWorkspace, source: Path, dataset_id: int, name: str, preprocessed: bool) -> Path:
    """The raw dataset (and, with ``preprocessed``, its planned and preprocessed folder) under a new id."""
    new_name = f"Dataset{dataset_id:03d}_{name}"
    raw = shutil.copytree(source, ws.raw / new_name)
    target = ws.preprocessed / new_name
    if preprocessed:
        shutil.copytree(ws.preprocessed / source.name, target)
    else:  # nnU-Net's plans only: nnUNetv2_preprocess writes the data
        target.mkdir()
        for name_ in ("dataset.json", "dataset_fingerprint.json", "nnUNetPlans.json"):
            shutil.copy(ws.preprocessed / source.name / name_, target / name_)
    cases = sorted(p.name.removesuffix(".nii.gz") for p in (raw / "labelsTr").glob("*.nii.gz"))
    (target / "splits_final.json").write_text(json.dumps(generate_crossval_split(cases, seed=12345, n_splits=5)))
    plans = json.loads((target / "nnUNetPlans.json").read_text())
    plans["dataset_name"] = new_name
    (target / "nnUNetPlans.json").write_text(json.dumps(plans))
    return raw


def test_non_integer_validation_labels_warn_at_start_and_training_still_succeeds(nnunet_workspace: NnunetWorkspace,
                                                                                  dataset_2d_small: Path):
    ws = nnunet_workspace
    raw = _copy_dataset(ws, dataset_2d_small, FRACTIONAL, "Fractional2D", preprocessed=True)
    splits = json.loads((ws.preprocessed / raw.name / "splits_final.json").read_text())
    edited = ws.preprocessed / raw.name / "gt_segmentations" / f"{splits[0]['val'][0]}.nii.gz"
    _edit_labels(edited, lambda a: a.astype(np.float32) * 0.5)  # 0.5 where there is vessel
    result = ws.run("nnUNetv2_train", str(FRACTIONAL), "2d", "0", "-tr", TINY, "-device", "cpu",
                    extra_env={"NNUNET_EXT_TEST_EPOCHS": "1", "nnUNet_n_proc_DA": "0"})  # exit 0, or the test fails
    fold = fold_folder(ws, raw, "2d")
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    start, end = log.index("validation label file(s) hold non-integer values"), log.index("topology validation skipped")
    assert start < log.index("Epoch 0") < end  # reported when training starts, skipped at the end
    assert str(edited) in log[start:start + 2000] and "--verify_dataset_integrity" in log[start:start + 2000]
    assert str(edited) in log[end:end + 2000] and "non-integer" in log[end:end + 2000]
    assert (fold / "validation" / "summary.json").is_file()  # nnU-Net's own validation stands
    assert not (fold / "validation" / "summary_topology.json").exists()
    assert "topology validation skipped" in result.stdout


def test_an_undefined_label_stops_training_in_the_main_process_naming_value_cases_and_fix(
        nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path):
    ws = nnunet_workspace
    raw = _copy_dataset(ws, dataset_2d_small, UNDEFINED, "Undefined2D", preprocessed=False)
    bad_cases = sorted(p.name.removesuffix(".nii.gz") for p in (raw / "labelsTr").glob("*.nii.gz"))[:3]
    block = np.pad(np.ones((4, 4), bool), 6)  # the middle of a 16 x 16 image, in every patch
    for case in bad_cases:  # label 3: dataset.json defines 0, 1, 2
        _edit_labels(raw / "labelsTr" / f"{case}.nii.gz", lambda a: np.where(block.reshape(a.shape), 3, a))
    ws.run("nnUNetv2_preprocess", "-d", str(UNDEFINED), "-c", "2d", "-np", "1")  # nnU-Net does not check labels here
    # two data-loader worker processes: the check fails in a worker, the training process names the problem
    train = [nnunet_command("nnUNetv2_train"), str(UNDEFINED), "2d", "0", "-tr", TINY, "-device", "cpu"]
    result = subprocess.run(train, env={**ws.env, "NNUNET_EXT_TEST_EPOCHS": "1", "nnUNet_n_proc_DA": "2",
                                        "NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]  # the training process's own last word
    assert error.startswith("nnunet_ext.transforms.label_check_transform.LabelValueError: a label map holds value(s) 3")
    assert "allowed values [0, 1, 2]" in error and f"nnUNetv2_plan_and_preprocess -d {UNDEFINED}" in error
    named = error.split("Cases holding them: ")[1].split(".")[0].split(", ")
    assert named and set(named) <= set(bad_cases)
