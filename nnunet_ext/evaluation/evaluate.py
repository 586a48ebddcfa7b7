"""Topology-aware evaluation of a prediction folder, the way ``nnUNetv2_evaluate_folder`` evaluates one.

Reads ground truth and predictions with nnU-Net's own reader/writer (any format nnU-Net reads), computes
``nnunet_ext.metrics.topology_metrics`` per case and foreground class (per foreground region for
region-based datasets, as nnU-Net), and writes a JSON in the shape of nnU-Net's summary.json:
``metric_per_case`` (reference_file, prediction_file, metrics per class), ``mean`` (per class,
NaN-ignoring mean over cases, as nnU-Net) and ``foreground_mean`` (mean over classes). Classes and
regions are keyed as nnU-Net keys them (``label_or_region_to_key``: ``"1"``, ``"(1, 2)"``).
"""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_ext.data.image_io import spatial
from nnunet_ext.metrics import topology_metrics

DEFAULT_OUTPUT_NAME = "summary_topology.json"


class EvaluationError(ValueError):
    """Bad input to the evaluation: the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class EvaluationSetup:
    """What every case needs: reader/writer, classes (or regions), ignore label, file ending, and whether the
    dataset's images are volumes (one-slice cases are then scored in 3D too, with the same metrics)."""

    reader_writer: object
    labels: tuple[int | tuple[int, ...], ...]
    allowed_values: frozenset[int]
    ignore_label: int | None
    file_ending: str
    volumes: bool = True


def _load_json(path: Path | dict, what: str) -> dict:
    if isinstance(path, dict):
        return path
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} {path} does not exist")
    return json.loads(path.read_text())


def check_dataset_json_and_plans(dataset_json: dict, plans: dict) -> None:
    """EvaluationError unless ``dataset_json`` is a dataset.json and ``plans`` an nnU-Net plans file (not swapped)."""
    if "configurations" in dataset_json and "labels" not in dataset_json:
        raise EvaluationError("the dataset.json given (-djfile) is a plans file (it has 'configurations'): pass the "
                              "dataset's dataset.json with -djfile and nnUNetPlans.json with -pfile")
    if "labels" not in dataset_json or "file_ending" not in dataset_json:
        raise EvaluationError("the dataset.json given (-djfile) has no 'labels' or 'file_ending': pass the dataset's "
                              "dataset.json (from nnUNet_raw or nnUNet_preprocessed)")
    if "configurations" not in plans:
        hint = " (it looks like dataset.json: the two files are swapped)" if "labels" in plans else ""
        raise EvaluationError(f"the plans file given (-pfile) has no 'configurations'{hint}: pass nnUNetPlans.json "
                              f"from nnUNet_preprocessed with -pfile")


def is_3d_dataset(plans: dict) -> bool:
    """Whether the dataset's images are volumes: nnU-Net stores 2D images as one-slice volumes, so a 3D dataset
    is one whose median image has more than one slice (then a one-slice case is still scored in 3D)."""
    median_shape = plans.get("original_median_shape_after_transp")
    return median_shape is None or len(median_shape) != 3 or int(median_shape[0]) > 1


def _setup(dataset_json_file: Path | dict, plans_file: Path | dict, example: Path) -> EvaluationSetup:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = _load_json(dataset_json_file, "dataset.json file")
    plans = _load_json(plans_file, "plans file")
    check_dataset_json_and_plans(dataset_json, plans)
    label_manager = PlansManager(plans).get_label_manager(dataset_json)
    reader_writer = determine_reader_writer_from_dataset_json(dataset_json, str(example))()
    # all_labels: background and every value of every class or region, without the ignore label
    values = {int(v) for v in label_manager.all_labels}
    if label_manager.ignore_label is not None:
        values.add(int(label_manager.ignore_label))
    if label_manager.has_regions:  # the files hold plain labels; each region is evaluated as isin(labels, region)
        entries = tuple(tuple(int(v) for v in r) if isinstance(r, (tuple, list)) else int(r)
                        for r in label_manager.foreground_regions)
    else:
        entries = tuple(int(c) for c in label_manager.foreground_labels)
    return EvaluationSetup(reader_writer, entries, frozenset(values), label_manager.ignore_label,
                           dataset_json["file_ending"], is_3d_dataset(plans))


def _case_files(gt_folder: Path, pred_folder: Path, file_ending: str, chill: bool) -> list[tuple[Path, Path]]:
    gt = {p.name for p in gt_folder.iterdir() if p.name.endswith(file_ending)}
    pred = {p.name for p in pred_folder.iterdir() if p.name.endswith(file_ending)}
    if not gt:
        raise EvaluationError(f"no ground-truth files ending in {file_ending!r} in {gt_folder}")
    missing, extra = sorted(gt - pred), sorted(pred - gt)
    if chill:
        gt -= set(missing)
        missing = []
        if not gt:
            raise EvaluationError(f"no prediction in {pred_folder} matches a ground-truth file in {gt_folder}")
    if missing:
        raise EvaluationError(f"{len(missing)} case(s) have no prediction in {pred_folder}: {missing[:10]}; predict "
                              f"them, or evaluate against a ground-truth folder holding only the predicted cases")
    if extra:
        raise EvaluationError(f"{len(extra)} prediction(s) in {pred_folder} have no ground truth in {gt_folder}: "
                              f"{extra[:10]}; remove them or point to the matching ground-truth folder")
    return [(gt_folder / name, pred_folder / name) for name in sorted(gt)]


def check_gzip_stream(path: Path) -> None:
    """EvaluationError unless a ``.gz`` file is a complete gzip stream (a truncated file reads as zeros in
    SimpleITK, a non-gzip one as a long traceback). Decompresses once, without keeping the data."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except EOFError:
        raise EvaluationError(f"{path} is truncated (its gzip stream ends early): copy or export it again") from None
    except (OSError, zlib.error) as error:
        raise EvaluationError(f"{path} is not a valid gzip file ({error}): a {path.name[path.name.find('.'):]} file "
                              f"must be gzip-compressed; export it again") from None


def _integer_typed(path: Path) -> bool | None:
    """Whether SimpleITK reads ``path``'s pixels as integers from the header alone; None if it cannot tell."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32,
                                   sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)


def non_integer_label_files(paths: list[Path]) -> list[Path]:
    """The label files among ``paths`` that hold non-integer values; integer-typed files are known from their
    header (cheap), others are read. Missing or unreadable files are left to the evaluation to report."""
    from nnunet_ext.data.image_io import reader_for

    bad = []
    for path in paths:
        if not path.is_file() or _integer_typed(path):
            continue
        try:
            values = np.unique(reader_for(path).read_seg(str(path))[0])
        except Exception:  # noqa: BLE001 - unreadable files are the evaluation's to report
            continue
        if not np.array_equal(values, np.round(values)):
            bad.append(path)
    return bad


def read_segmentation(path: Path, setup: EvaluationSetup, what: str) -> tuple[np.ndarray, dict]:
    """``reader_writer.read_seg`` of a checked file: (1, Z, Y, X) array and properties; EvaluationError naming the
    file when it cannot be read."""
    if path.name.endswith(".gz"):
        check_gzip_stream(path)
    try:
        return setup.reader_writer.read_seg(str(path))
    except Exception as error:  # the readers raise RuntimeError, OSError, ValueError, ... with long traces
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvaluationError(f"{path}: the {what} cannot be read ({message}); check that it is a segmentation "
                              f"file of this dataset's format") from None


def evaluate_case(gt_file: Path, pred_file: Path, setup: EvaluationSetup) -> dict:
    """One case: ``{"reference_file", "prediction_file", "metrics": {key: {metric: value}}}``.

    Keys are nnU-Net's ``label_or_region_to_key`` of each class or region (``"1"``, ``"(1, 2)"``).
    """
    gt, gt_properties = read_segmentation(gt_file, setup, "ground truth")
    pred, pred_properties = read_segmentation(pred_file, setup, "prediction")
    if gt.shape != pred.shape:
        raise EvaluationError(f"{pred_file.name}: prediction shape {pred.shape[1:]} differs from the ground truth's "
                              f"{gt.shape[1:]}")
    gt_spacing, pred_spacing = gt_properties.get("spacing"), pred_properties.get("spacing")
    if gt_spacing is not None and pred_spacing is not None and not np.allclose(gt_spacing, pred_spacing, rtol=1e-4):
        raise EvaluationError(f"{pred_file.name}: prediction spacing {tuple(pred_spacing)} differs from the ground "
                              f"truth's {tuple(gt_spacing)}; predictions must be in the original image geometry")
    for name, seg, path in (("ground truth", gt, gt_file), ("prediction", pred, pred_file)):
        values = np.unique(seg)
        if not np.array_equal(values, np.round(values)):
            fractional = [f"{v:g}" for v in values[values != np.round(values)][:5]]
            raise EvaluationError(f"{path}: the {name} holds non-integer value(s) {fractional}; a segmentation must "
                                  f"hold integer labels (re-export it as a label map, e.g. nearest-neighbour "
                                  f"resampling or the argmax of probabilities)")
        unknown = sorted(set(values.astype(int).tolist()) - setup.allowed_values)
        if unknown:
            raise EvaluationError(f"{path}: the {name} holds label value(s) {unknown} that are not in "
                                  f"dataset.json's labels {sorted(setup.allowed_values)}")
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key

    as_array = (lambda seg: seg[0]) if setup.volumes else spatial
    metrics = topology_metrics(as_array(pred), as_array(gt), setup.labels, setup.ignore_label)
    return {"reference_file": str(gt_file), "prediction_file": str(pred_file),
            "metrics": {label_or_region_to_key(c): values for c, values in metrics.items()}}


def _evaluate_case_args(args: tuple[Path, Path, EvaluationSetup]) -> dict:
    return evaluate_case(*args)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(per_case: list[dict], labels: tuple[int | tuple[int, ...], ...]) -> dict:
    """nnU-Net's summary.json shape: per case, NaN-ignoring mean per class (or region), and the mean over them.

    ``labels`` are the classes or regions of ``EvaluationSetup.labels``, keyed with nnU-Net's
    ``label_or_region_to_key`` as in ``evaluate_case``.
    """
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key

    mean = {}
    for c in map(label_or_region_to_key, labels):
        names = sorted({m for case in per_case for m in case["metrics"][c]})
        mean[c] = {m: _nanmean([case["metrics"][c][m] for case in per_case if m in case["metrics"][c]])
                   for m in names}
    names = sorted({m for values in mean.values() for m in values})
    foreground_mean = {m: float(np.mean([mean[c][m] for c in mean if m in mean[c]])) for m in names}
    return {"metric_per_case": per_case, "mean": mean, "foreground_mean": foreground_mean}


def evaluate_folders(gt_folder: str | Path, pred_folder: str | Path, dataset_json_file: str | Path | dict,
                     plans_file: str | Path | dict, output_file: str | Path | None = None, num_processes: int = 2,
                     overwrite: bool = False, progress: bool = True, chill: bool = False) -> dict:
    """Evaluate every case of ``pred_folder`` against ``gt_folder``; write and return the summary.

    ``dataset_json_file`` and ``plans_file`` are paths or the loaded dicts. With ``chill`` (as in
    nnU-Net) ground-truth cases without a prediction are skipped instead of refused. ``output_file``
    defaults to ``pred_folder/summary_topology.json`` (next to nnU-Net's summary.json, never over it);
    an existing file is refused unless ``overwrite``. ``num_processes`` 0 evaluates in
    this process. Raises ``EvaluationError`` for missing/extra predictions, shape or spacing mismatches,
    label values not in dataset.json, and an existing output file.
    """
    gt_folder, pred_folder = Path(gt_folder), Path(pred_folder)
    for folder, what in ((gt_folder, "ground-truth folder"), (pred_folder, "prediction folder")):
        if not folder.is_dir():
            raise EvaluationError(f"{what} {folder} does not exist")
    output = Path(output_file) if output_file is not None else pred_folder / DEFAULT_OUTPUT_NAME
    if output.suffix != ".json":
        raise EvaluationError(f"the output file must end in .json, got {output}")
    if output.exists() and not overwrite:
        raise EvaluationError(f"{output} exists; choose another output file (-o) or pass --overwrite to replace it")
    if num_processes < 0:
        raise EvaluationError(f"the number of processes must be >= 0, got {num_processes}")

    dataset_json = _load_json(dataset_json_file, "dataset.json file")
    plans = _load_json(plans_file, "plans file")
    check_dataset_json_and_plans(dataset_json, plans)
    pairs = _case_files(gt_folder, pred_folder, dataset_json["file_ending"], chill)
    setup = _setup(dataset_json, plans, pairs[0][0])
    jobs = [(gt, pred, setup) for gt, pred in pairs]

    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="evaluating", unit="case", disable=not progress)
    if num_processes == 0 or len(jobs) == 1:
        per_case = [evaluate_case(*job) for job in tqdm(jobs, **bar)]
    else:
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            per_case = list(tqdm(pool.imap(_evaluate_case_args, jobs), **bar))

    summary = summarize(per_case, setup.labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "x" if not overwrite else "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    return summary
