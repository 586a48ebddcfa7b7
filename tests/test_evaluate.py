"""``nnunet-ext evaluate`` / ``evaluate_folders`` on the session's synthetic datasets (nnU-Net's reader/writer)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.evaluation.evaluate import EvaluationError, evaluate_folders
from tests.conftest import NnunetWorkspace

METRICS_2D = {"Dice", "clDice", "Betti0_error", "Betti1_error", "pixel_error", "rand_error", "warping_error"}


def _files(dataset: Path, n: int) -> list[Path]:
    return sorted((dataset / "labelsTr").glob("*.nii.gz"))[:n]


def _copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _edit(path: Path, edit) -> None:
    """Rewrite a label file with ``edit(array)`` applied, keeping its geometry."""
    image = sitk.ReadImage(str(path))
    out = sitk.GetImageFromArray(edit(sitk.GetArrayFromImage(image)))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    sitk.WriteImage(out, str(path))


def _inputs(ws: NnunetWorkspace, dataset: Path) -> tuple[Path, Path]:
    return dataset / "dataset.json", ws.preprocessed / dataset.name / "nnUNetPlans.json"


@pytest.fixture
def folders_2d(nnunet_workspace: NnunetWorkspace, dataset_2d: Path, tmp_path: Path) -> tuple[Path, Path]:
    files = _files(dataset_2d, 3)
    return _copy(files, tmp_path / "gt"), _copy(files, tmp_path / "pred")


def test_identical_prediction_has_no_errors(nnunet_workspace, dataset_2d, folders_2d, tmp_path) -> None:
    gt, pred = folders_2d
    summary = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False)
    assert len(summary["metric_per_case"]) == 3
    assert set(summary["mean"]) == {"1", "2"}  # foreground classes, not the ignore label
    for case in summary["metric_per_case"]:
        for values in case["metrics"].values():
            assert set(values) == METRICS_2D
            assert all(values[m] == 0 for m in METRICS_2D - {"Dice", "clDice", "rand_error"})
            assert values["Dice"] == 1 and values["clDice"] == 1 and values["rand_error"] == 0
    written = json.loads((pred / "summary_topology.json").read_text())
    assert set(written) == {"metric_per_case", "mean", "foreground_mean"}


def test_a_removed_class_and_a_cut_vessel_are_scored(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    first, second = sorted(pred.glob("*.nii.gz"))[:2]
    _edit(first, lambda a: np.where(a == 2, 0, a))  # class 2 missing in case 1

    def cut_class_1(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        columns = np.nonzero((a == 1).any(axis=tuple(range(a.ndim - 1))))[0]
        column = int(np.median(columns))
        a[..., column] = np.where(a[..., column] == 1, 0, a[..., column])  # a one-pixel-wide cut
        return a

    _edit(second, cut_class_1)
    summary = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False)
    case1, case2, case3 = summary["metric_per_case"]
    assert case1["metrics"]["2"]["Dice"] == 0 and case1["metrics"]["1"]["Dice"] == 1
    assert case2["metrics"]["1"]["clDice"] < 1 and case2["metrics"]["1"]["pixel_error"] > 0
    assert case2["metrics"]["1"]["Dice"] < 1  # (Betti errors on known shapes: tests/test_metrics.py)
    assert case3["metrics"]["1"]["Dice"] == 1
    mean_dice_2 = summary["mean"]["2"]["Dice"]
    assert mean_dice_2 == pytest.approx(np.mean([c["metrics"]["2"]["Dice"] for c in (case1, case2, case3)]))


def _region_inputs(ws: NnunetWorkspace, dataset: Path) -> tuple[dict, Path]:
    """Dataset 901 as a region-based dataset: "tree" = labels 1 and 2, "branch" = label 2 (overlapping)."""
    dataset_json_file, plans = _inputs(ws, dataset)
    dataset_json = json.loads(dataset_json_file.read_text())
    assert dataset_json["labels"]["ignore"] == 3
    dataset_json["labels"] = {"background": 0, "tree": [1, 2], "branch": 2, "ignore": 3}
    dataset_json["regions_class_order"] = [1, 2]
    return dataset_json, plans


def test_region_dataset_identical_prediction_is_perfect(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    summary = evaluate_folders(gt, pred, *_region_inputs(nnunet_workspace, dataset_2d), num_processes=0,
                               progress=False)
    assert set(summary["mean"]) == {"(1, 2)", "2"}  # nnU-Net's keys (label_or_region_to_key)
    for case in summary["metric_per_case"]:
        assert set(case["metrics"]) == {"(1, 2)", "2"}
        for values in case["metrics"].values():
            assert set(values) == METRICS_2D
            assert values["Dice"] == 1 and values["clDice"] == 1 and values["rand_error"] == 0
            assert all(values[m] == 0 for m in METRICS_2D - {"Dice", "clDice", "rand_error"})
    assert summary["foreground_mean"]["Dice"] == 1
    assert set(json.loads((pred / "summary_topology.json").read_text())["mean"]) == {"(1, 2)", "2"}


def test_region_dataset_scores_each_region(nnunet_workspace, dataset_2d, folders_2d, tmp_path) -> None:
    gt, pred = folders_2d
    first = sorted(pred.glob("*.nii.gz"))[0]
    _edit(first, lambda a: np.where(a == 2, 0, a))  # class 2 missing in case 1
    regions = evaluate_folders(gt, pred, *_region_inputs(nnunet_workspace, dataset_2d), num_processes=0,
                               progress=False)
    case1, case2, case3 = regions["metric_per_case"]
    assert case1["metrics"]["2"]["Dice"] == 0
    assert 0 < case1["metrics"]["(1, 2)"]["Dice"] < 1  # the tree keeps its label-1 part
    assert case2["metrics"]["(1, 2)"]["Dice"] == case3["metrics"]["(1, 2)"]["Dice"] == 1
    assert regions["mean"]["(1, 2)"]["Dice"] == pytest.approx(
        np.mean([c["metrics"]["(1, 2)"]["Dice"] for c in (case1, case2, case3)]))
    # region "2" is the mask of label 2: the same numbers as the label-based evaluation's class "2"
    labels = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), tmp_path / "labels.json",
                              num_processes=0, progress=False)
    for by_region, by_label in zip(regions["metric_per_case"], labels["metric_per_case"]):
        assert by_region["metrics"]["2"] == by_label["metrics"]["2"]
    # label values outside the regions are still refused
    _edit(first, lambda a: np.where(a == 1, 7, a))
    with pytest.raises(EvaluationError, match=r"label value\(s\) \[7\]"):
        evaluate_folders(gt, pred, *_region_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False,
                         overwrite=True)


def test_cli_multiprocess_and_output_protection(nnunet_workspace, dataset_2d, folders_2d, tmp_path) -> None:
    gt, pred = folders_2d
    dataset_json, plans = _inputs(nnunet_workspace, dataset_2d)
    out = tmp_path / "report" / "topology.json"
    command = [sys.executable, "-m", "nnunet_ext.commands.cli", "evaluate", str(gt), str(pred), "-djfile",
               str(dataset_json), "-pfile", str(plans), "-o", str(out), "-np", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "foreground mean" in done.stdout and out.is_file()
    assert len(json.loads(out.read_text())["metric_per_case"]) == 3

    out.write_text("mine")
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert out.read_text() == "mine"  # untouched
    forced = subprocess.run(command + ["--overwrite"], capture_output=True, text=True)
    assert forced.returncode == 0 and json.loads(out.read_text())["mean"]


def test_missing_and_extra_predictions_are_refused(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    inputs = _inputs(nnunet_workspace, dataset_2d)
    moved = sorted(pred.glob("*.nii.gz"))[0]
    moved.rename(pred.parent / moved.name)
    with pytest.raises(EvaluationError, match="have no prediction"):
        evaluate_folders(gt, pred, *inputs, num_processes=0, progress=False)
    (pred.parent / moved.name).rename(moved)
    shutil.copy(moved, pred / "Vessels2D_999.nii.gz")
    with pytest.raises(EvaluationError, match="have no ground truth"):
        evaluate_folders(gt, pred, *inputs, num_processes=0, progress=False)
    assert not (pred / "summary_topology.json").exists()


def test_chill_evaluates_only_the_predicted_cases(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    kept = sorted(pred.glob("*.nii.gz"))[1]
    for other in set(pred.glob("*.nii.gz")) - {kept}:
        other.unlink()
    summary = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False,
                               chill=True)
    assert [Path(c["prediction_file"]).name for c in summary["metric_per_case"]] == [kept.name]
    kept.unlink()
    with pytest.raises(EvaluationError, match="no prediction"):
        evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False,
                         chill=True, overwrite=True)


def test_unknown_label_and_shape_mismatch_are_refused(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    inputs = _inputs(nnunet_workspace, dataset_2d)
    first, second = sorted(pred.glob("*.nii.gz"))[:2]
    _edit(first, lambda a: np.where(a == 1, 7, a))
    with pytest.raises(EvaluationError, match=r"label value\(s\) \[7\]"):
        evaluate_folders(gt, pred, *inputs, num_processes=0, progress=False)
    shutil.copy(gt / first.name, first)
    _edit(second, lambda a: a[..., :-4].copy())
    with pytest.raises(EvaluationError, match="shape"):
        evaluate_folders(gt, pred, *inputs, num_processes=0, progress=False)


def test_spacing_mismatch_is_refused(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    first = sorted(pred.glob("*.nii.gz"))[0]
    image = sitk.ReadImage(str(first))
    image.SetSpacing([2 * s for s in image.GetSpacing()])
    sitk.WriteImage(image, str(first))
    with pytest.raises(EvaluationError, match="spacing"):
        evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False)


def test_3d_cases_have_betti2(nnunet_workspace, dataset_3d, tmp_path) -> None:
    files = _files(dataset_3d, 2)
    gt, pred = _copy(files, tmp_path / "gt"), _copy(files, tmp_path / "pred")
    _edit(sorted(pred.glob("*.nii.gz"))[1], lambda a: np.zeros_like(a))  # an empty prediction
    summary = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_3d), num_processes=0, progress=False)
    same, empty = (case["metrics"]["1"] for case in summary["metric_per_case"])
    assert set(same) == METRICS_2D | {"Betti2_error"}
    assert same["Betti2_error"] == 0 and same["Dice"] == 1
    assert empty["Dice"] == 0 and empty["rand_error"] == 1 and empty["Betti0_error"] >= 1
    assert not math.isnan(summary["foreground_mean"]["Dice"])


def _cli_evaluate(gt: Path, pred: Path, djfile: Path, pfile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_ext.commands.cli", "evaluate", str(gt), str(pred), "-djfile",
                           str(djfile), "-pfile", str(pfile), "-np", "0", *extra], capture_output=True, text=True)


def _one_error_line(stderr: str) -> bool:
    """One error line and no traceback (the progress bar may share stderr)."""
    return "Traceback" not in stderr and sum("error: " in line for line in stderr.splitlines()) == 1


def test_broken_files_and_swapped_json_files_get_one_line(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    djfile, pfile = _inputs(nnunet_workspace, dataset_2d)
    swapped = _cli_evaluate(gt, pred, pfile, djfile)
    assert swapped.returncode == 1 and "is a plans file" in swapped.stderr and "-djfile" in swapped.stderr
    assert _one_error_line(swapped.stderr)
    wrong_plans = _cli_evaluate(gt, pred, djfile, djfile)
    assert wrong_plans.returncode == 1 and "swapped" in wrong_plans.stderr

    case = sorted(pred.glob("*.nii.gz"))[0]
    data = case.read_bytes()
    case.write_bytes(data[: len(data) * 2 // 3])  # truncated: SimpleITK would read it as partly zeros
    truncated = _cli_evaluate(gt, pred, djfile, pfile, "-o", str(pred / "a.json"))
    assert truncated.returncode == 1 and f"{case} is truncated" in truncated.stderr
    assert _one_error_line(truncated.stderr) and not (pred / "a.json").exists()
    case.write_bytes(b"not a gzip file at all" * 40)
    not_gzip = _cli_evaluate(gt, pred, djfile, pfile, "-o", str(pred / "b.json"))
    assert not_gzip.returncode == 1 and "is not a valid gzip file" in not_gzip.stderr
    assert _one_error_line(not_gzip.stderr)


def test_non_integer_labels_are_named(nnunet_workspace, dataset_2d, folders_2d) -> None:
    gt, pred = folders_2d
    case = sorted(gt.glob("*.nii.gz"))[1]
    _edit(case, lambda a: a.astype(np.float32) * 0.5)
    with pytest.raises(EvaluationError, match=rf"{case}: the ground truth holds non-integer value\(s\) \['0.5'"):
        evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_2d), num_processes=0, progress=False)


def test_a_one_slice_case_of_a_3d_dataset_has_the_same_metrics(nnunet_workspace, dataset_3d, tmp_path) -> None:
    files = _files(dataset_3d, 2)
    gt, pred = _copy(files, tmp_path / "gt"), _copy(files, tmp_path / "pred")
    for folder in (gt, pred):  # the second case becomes a single slice
        _edit(sorted(folder.glob("*.nii.gz"))[1], lambda a: a[a.shape[0] // 2: a.shape[0] // 2 + 1])
    summary = evaluate_folders(gt, pred, *_inputs(nnunet_workspace, dataset_3d), num_processes=0, progress=False)
    volume, one_slice = (case["metrics"]["1"] for case in summary["metric_per_case"])
    assert set(volume) == set(one_slice) == METRICS_2D | {"Betti2_error"}
    assert one_slice["Betti2_error"] == 0 and one_slice["Dice"] == 1
