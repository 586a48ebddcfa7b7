"""``nnunet-ext make-dataset`` through a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_ext.data.image_io import read_image, read_labels

NNUNET_EXT = str(Path(sys.executable).parent / "nnunet-ext")


def _make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, "make-dataset", *args], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.parametrize("dim, classes, regions", [(2, 1, False), (3, 2, True)])
def test_writes_a_valid_nnunet_raw_dataset(tmp_path: Path, dim: int, classes: int, regions: bool):
    raw = tmp_path / "raw"
    size = "64" if dim == 2 else "32"
    done = _make("77", "--dim", str(dim), "--cases", "5", "--test-cases", "2", "--classes", str(classes),
                 "--size", size, "--raw", str(raw), *(["--regions"] if regions else []))
    assert done.returncode == 0, done.stderr
    folder = raw / f"Dataset077_ThinStructures{dim}D"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["numTraining"] == 5 and len(dataset_json["labels"]) == classes + 1
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == 5
    assert len(list((folder / "labelsTs").glob("*.nii.gz"))) == 2
    if regions:  # the whole tree, then its class-2 branches
        assert dataset_json["labels"]["vessels"] == [1, 2] and dataset_json["regions_class_order"] == [1, 2]

    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)  # nnU-Net's own check raises on any problem

    image = read_image(folder / "imagesTr" / f"ThinStructures{dim}D_000_0000.nii.gz")
    labels = read_labels(folder / "labelsTr" / f"ThinStructures{dim}D_000.nii.gz")
    assert image.shape == labels.shape == (int(size),) * dim
    assert set(np.unique(labels)) <= set(range(classes + 1)) and (labels > 0).any()
    vessels, background = image[labels > 0], image[labels == 0]
    assert vessels.mean() > background.mean(), "vessels are brighter on average"
    assert np.percentile(background, 99) > np.percentile(vessels, 25), "but low contrast: they overlap"


def test_refuses_a_taken_id_anywhere_and_writes_nothing(tmp_path: Path):
    raw, results = tmp_path / "raw", tmp_path / "results"
    (results / "Dataset078_Mine").mkdir(parents=True)
    env = {**os.environ, "nnUNet_results": str(results)}
    env.pop("nnUNet_preprocessed", None)
    done = _make("78", "--dim", "2", "--raw", str(raw), env=env)
    assert done.returncode == 1 and "Dataset078_Mine" in done.stderr and "pick another id" in done.stderr
    assert not raw.exists()

    assert _make("79", "--dim", "2", "--cases", "5", "--size", "32", "--raw", str(raw)).returncode == 0
    written = sorted(p.name for p in (raw / "Dataset079_ThinStructures2D" / "labelsTr").iterdir())
    again = _make("79", "--dim", "2", "--cases", "6", "--size", "32", "--raw", str(raw), "--name", "Other")
    assert again.returncode == 1 and "taken" in again.stderr
    assert sorted(p.name for p in (raw / "Dataset079_ThinStructures2D" / "labelsTr").iterdir()) == written
    assert not (raw / "Dataset079_Other").exists()


@pytest.mark.parametrize("args, message", [
    (("--cases", "3"), "at least 5"),
    (("--size", "8"), "size must be >= 16"),
    (("--noise", "-1"), "noise must be a finite number >= 0"),
    (("--name", "bad name"), "letters, digits"),
    (("--regions",), "regions need n_classes >= 2"),
    (("--classes", "0"), "n_classes must be >= 1"),
    (("--seed", "-1"), "seed must be >= 0"),
    (("--size", "0"), "size must be >= 16"),
    (("--contrast", "nan"), "contrast must be a finite number"),
    (("--noise", "inf"), "noise must be a finite number"),
])
def test_bad_arguments_are_refused(tmp_path: Path, args: tuple[str, ...], message: str):
    done = _make("80", "--dim", "2", "--raw", str(tmp_path / "raw"), *args)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_needs_nnunet_raw(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_raw"}
    done = _make("81", "--dim", "2", env=env)
    assert done.returncode == 2 and "nnUNet_raw is not set" in done.stderr


def test_an_unwritable_raw_folder_is_one_clear_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = _make("82", "--dim", "2", "--cases", "5", "--size", "32", "--raw", str(blocker / "raw"))
    assert done.returncode == 2 and "cannot write the dataset" in done.stderr and "Traceback" not in done.stderr


def test_classes_that_occur_in_no_case_are_reported(tmp_path: Path):
    done = _make("83", "--dim", "2", "--cases", "5", "--test-cases", "0", "--size", "16", "--classes", "300",
                 "--raw", str(tmp_path / "raw"))
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "classes occur in no training case" in done.stderr
    labels = json.loads((tmp_path / "raw" / "Dataset083_ThinStructures2D" / "dataset.json").read_text())["labels"]
    assert len(labels) == 301  # as asked, and the labels survive past 255 (uint16 files)
