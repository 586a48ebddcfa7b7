"""``nnunet-ext show-skeleton`` through a subprocess, and the picture helpers on known inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.commands.cli import main
from nnunet_ext.data.synthetic import write_raw_dataset
from nnunet_ext.pictures.figures import CLASS_COLOURS, SKELETON_COLOUR, overlay, views

NNUNET_EXT = str(Path(sys.executable).parent / "nnunet-ext")


def _show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, "show-skeleton", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    write_raw_dataset(root, 11, "Show2D", dim=2, n_train=2, n_test=0, size=64, n_classes=2)
    write_raw_dataset(root, 12, "Show3D", dim=3, n_train=1, n_test=0, size=32)
    write_raw_dataset(root, 14, "Ignore2D", dim=2, n_train=1, n_test=0, size=64, n_classes=2, ignore_label=True)
    return root


def _png(path: Path) -> np.ndarray:
    picture = matplotlib.image.imread(path)
    return picture[..., :3]


def _has_colour(picture: np.ndarray, colour: np.ndarray, at_least: int) -> bool:
    return int(np.all(np.abs(picture - colour) < 0.02, axis=-1).sum()) >= at_least


def test_2d_case_of_a_dataset(raw: Path, tmp_path: Path):
    out = tmp_path / "case.png"
    done = _show("-d", "11", "Show2D_000", "--raw", str(raw), "-o", str(out))
    assert done.returncode == 0, done.stderr
    picture = _png(out)
    assert picture.shape[1] > 2 * picture.shape[0], "one row of three panels"
    assert _has_colour(picture, SKELETON_COLOUR, 200), "the tube is drawn"
    assert picture.std() > 0.1, "not a blank picture"


def test_3d_files_give_projections_and_slices(raw: Path, tmp_path: Path):
    folder = raw / "Dataset012_Show3D"
    out = tmp_path / "deep" / "case3d.png"
    done = _show(str(folder / "imagesTr" / "Show3D_000_0000.nii.gz"), str(folder / "labelsTr" / "Show3D_000.nii.gz"),
                 "-o", str(out), "--tube-radius", "1", "--per-class")
    assert done.returncode == 0, done.stderr
    picture = _png(out)
    assert picture.shape[0] > 1.5 * picture.shape[1], "six rows: three projections, three slices"
    assert _has_colour(picture, SKELETON_COLOUR, 100)


def test_existing_output_and_bad_inputs_are_refused(raw: Path, tmp_path: Path):
    out = tmp_path / "mine.png"
    out.write_bytes(b"user picture")
    folder = raw / "Dataset011_Show2D"
    image, label = folder / "imagesTr" / "Show2D_000_0000.nii.gz", folder / "labelsTr" / "Show2D_001.nii.gz"
    done = _show(str(image), str(label), "-o", str(out))
    assert done.returncode == 1 and "--overwrite" in done.stderr
    assert out.read_bytes() == b"user picture"
    assert _show(str(image), str(label), "-o", str(out), "--overwrite").returncode == 0
    assert out.read_bytes() != b"user picture"

    other = raw / "Dataset012_Show3D" / "labelsTr" / "Show3D_000.nii.gz"
    fractional = tmp_path / "fractional.nii.gz"  # probabilities instead of labels
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(label))).astype(np.float32) * 0.5
    sitk.WriteImage(sitk.GetImageFromArray(array), str(fractional))
    cases = [((str(image), str(other)), "shape"), ((str(image), str(folder / "nope.nii.gz")), "does not exist"),
             ((str(label), str(image)), "non-integer values"),  # IMAGE and LABEL swapped
             ((str(image), str(fractional)), "no label map"),
             (("-d", "11", "Show2D_999", "--raw", str(raw)), "Show2D_000"),
             (("-d", "13", "x", "--raw", str(raw)), "no dataset"),
             ((str(image),), "IMAGE LABEL")]
    for args, message in cases:
        done = _show(*args, "-o", str(tmp_path / "x.png"))
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
    assert _show(str(image), str(label), "-o", str(tmp_path / "x.jpg")).returncode == 1
    assert not (tmp_path / "x.png").exists()


def test_a_dataset_case_takes_the_ignore_label_from_dataset_json(raw: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """Issue 22: `show-skeleton -d ID CASE` pictures what the trainers train on, without --ignore-label."""
    folder = raw / "Dataset014_Ignore2D"
    assert json.loads((folder / "dataset.json").read_text())["labels"]["ignore"] == 3
    files = [str(folder / "imagesTr" / "Ignore2D_000_0000.nii.gz"), str(folder / "labelsTr" / "Ignore2D_000.nii.gz")]
    pictures = {"dataset": tmp_path / "dataset.png", "given": tmp_path / "given.png", "none": tmp_path / "none.png"}
    assert main(["show-skeleton", "-d", "14", "Ignore2D_000", "--raw", str(raw), "-o", str(pictures["dataset"])]) == 0
    assert main(["show-skeleton", *files, "--ignore-label", "3", "-o", str(pictures["given"])]) == 0
    assert main(["show-skeleton", *files, "-o", str(pictures["none"])]) == 0
    np.testing.assert_array_equal(_png(pictures["dataset"]), _png(pictures["given"]))
    assert not np.array_equal(_png(pictures["dataset"]), _png(pictures["none"]))

    capsys.readouterr()
    out = tmp_path / "contradiction.png"
    assert main(["show-skeleton", "-d", "14", "Ignore2D_000", "--raw", str(raw), "--ignore-label", "2",
                 "-o", str(out)]) == 1
    assert capsys.readouterr().err == ("error: --ignore-label 2 contradicts Dataset014_Ignore2D's dataset.json "
                                       "('ignore': 3), which the trainers use; leave out --ignore-label with -d\n")
    assert not out.exists()


def test_overlay_colours_known_pixels():
    gray = np.full((4, 4), 0.5, dtype=np.float32)
    labels = np.zeros((4, 4), dtype=int)
    labels[0, 0], labels[1, 1] = 1, 2
    skeleton = np.zeros((4, 4), dtype=bool)
    skeleton[1, 1] = True
    rgb = overlay(gray, labels, alpha=1.0, skeleton=skeleton)
    np.testing.assert_allclose(rgb[0, 0], CLASS_COLOURS[0])
    np.testing.assert_allclose(rgb[1, 1], SKELETON_COLOUR)
    np.testing.assert_allclose(rgb[2, 2], [0.5, 0.5, 0.5])


def test_views_of_a_volume():
    volume = np.zeros((3, 4, 5))
    volume[0, 2, 2] = 7
    projections = views(volume, "max")
    assert [p.shape for _, p in projections] == [(4, 5), (3, 5), (3, 4)]
    assert all(p.max() == 7 for _, p in projections)
    slices = views(volume, "middle")
    assert [s.max() for _, s in slices] == [0, 7, 7]  # (0, 2, 2) lies on the middle slices across axes 1 and 2
    assert views(np.ones((2, 2)), "max")[0][1].shape == (2, 2)
