"""``nnunet-ext show-skeleton``: picture an image, its label and the tubed skeleton nnU-Net trains on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_ext.data.image_io import read_image, read_labels
from nnunet_ext.pictures.figures import save_panels, skeleton_rows
from nnunet_ext.skeleton import tubed_skeleton


class ShowSkeletonError(ValueError):
    """Bad input to show-skeleton: the message names the problem and the fix."""


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: first image channel, label, and the dataset's ignore label if known."""

    image: Path
    label: Path
    ignore_label: int | None = None


def case_from_dataset(dataset: str, case: str, raw_root: str | None = None,
                      ignore_label: int | None = None) -> CaseFiles:
    """Files of training case ``case`` of nnU-Net raw dataset ``dataset`` (id or DatasetXXX_Name), with the ignore
    label of its dataset.json (``labels['ignore']``, as nnU-Net's trainers read it); an ``ignore_label`` given as
    well must be the same."""
    raw_root = raw_root or os.environ.get("nnUNet_raw")
    if not raw_root:
        raise ShowSkeletonError("nnUNet_raw is not set: export nnUNet_raw=... or pass --raw FOLDER")
    pattern = f"Dataset{int(dataset):03d}_*" if dataset.isdigit() else dataset
    folders = sorted(Path(raw_root).glob(pattern))
    if not folders:
        raise ShowSkeletonError(f"no dataset {dataset!r} in {raw_root}")
    folder = folders[0]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    ending = dataset_json["file_ending"]
    dataset_ignore = dataset_json["labels"].get("ignore")
    if ignore_label is not None and ignore_label != dataset_ignore:
        raise ShowSkeletonError(f"--ignore-label {ignore_label} contradicts {folder.name}'s dataset.json ('ignore': "
                                f"{dataset_ignore}), which the trainers use; leave out --ignore-label with -d")
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        image, label = folder / images / f"{case}_0000{ending}", folder / labels / f"{case}{ending}"
        if image.is_file() and label.is_file():
            return CaseFiles(image, label, dataset_ignore)
    known = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").glob(f"*{ending}"))
    raise ShowSkeletonError(f"case {case!r} has no image and label in {folder}; training cases are e.g. {known[:5]}")


def render_skeleton(files: CaseFiles, output: str | Path, tube_radius: int = 2, per_class: bool = False,
                    overwrite: bool = False) -> Path:
    """Write a PNG of image, label and tubed skeleton (2D directly; 3D as projections and middle slices)."""
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ShowSkeletonError(f"the output must be a .png file, got {output}")
    if output.exists() and not overwrite:
        raise ShowSkeletonError(f"{output} exists; choose another file (-o) or pass --overwrite to replace it")
    for path in (files.image, files.label):
        if not path.is_file():
            raise ShowSkeletonError(f"{path} does not exist")
    try:
        image, labels = read_image(files.image), read_labels(files.label)
    except ValueError as error:
        raise ShowSkeletonError(str(error)) from error
    if image.shape != labels.shape:
        raise ShowSkeletonError(f"image {files.image.name} has shape {image.shape} but label {files.label.name} has "
                                f"{labels.shape}; pass the label of this image")
    skeleton = tubed_skeleton(labels, tube_radius=tube_radius, per_class=per_class, ignore_label=files.ignore_label)
    ignored = "" if files.ignore_label is None else f", ignore label {files.ignore_label} shown as background"
    if files.ignore_label is not None:
        labels = np.where(labels == files.ignore_label, 0, labels)  # no class, as in training
    title = (f"{files.label.name}: tubed skeleton (tube radius {tube_radius}"
             f"{', per class' if per_class else ''}{ignored}), {int((skeleton > 0).sum())} of "
             f"{int((labels > 0).sum())} foreground voxels")
    output.parent.mkdir(parents=True, exist_ok=True)
    return save_panels(skeleton_rows(image, labels, skeleton), output, title=title)
