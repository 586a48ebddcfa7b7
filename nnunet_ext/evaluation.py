"""Topology-aware evaluation of a prediction folder, the way ``nnUNetv2_evaluate_folder`` evaluates one.

Reads ground truth and predictions with nnU-Net's own reader/writer (any format nnU-Net reads), computes
``nnunet_ext.metrics.topology_metrics`` per case and foreground class (per foreground region for
region-based datasets, as nnU-Net), and writes a JSON in the shape of nnU-Net's summary.json:
``metric_per_case`` (reference_file, prediction_file, metrics per class), ``mean`` (per class,
NaN-ignoring mean over cases, as nnU-Net) and ``foreground_mean`` (mean over classes). Classes and
regions are keyed as nnU-Net keys them (``label_or_region_to_key``: ``"1"``, ``"(1, 2)"``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_ext.image_io import spatial
from nnunet_ext.metrics import topology_metrics

DEFAULT_OUTPUT_NAME = "summary_topology.json"


class EvaluationError(ValueError):
    """Bad input to the evaluation: the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class EvaluationSetup:
    """What every case needs: reader/writer, classes (or regions), ignore label, file ending."""

    reader_writer: object
    labels: tuple[int | tuple[int, ...], ...]
    allowed_values: frozenset[int]
    ignore_label: int | None
    file_ending: str


def _load_json(path: Path | dict, what: str) -> dict:
    if isinstance(path, dict):
        return path
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} {path} does not exist")
    return json.loads(path.read_text())


def _setup(dataset_json_file: Path | dict, plans_file: Path | dict, example: Path) -> EvaluationSetup:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = _load_json(dataset_json_file, "dataset.json file")
    plans = _load_json(plans_file, "plans file")
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
                           dataset_json["file_ending"])


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


def evaluate_case(gt_file: Path, pred_file: Path, setup: EvaluationSetup) -> dict:
    """One case: ``{"reference_file", "prediction_file", "metrics": {key: {metric: value}}}``.

    Keys are nnU-Net's ``label_or_region_to_key`` of each class or region (``"1"``, ``"(1, 2)"``).
    """
    gt, gt_properties = setup.reader_writer.read_seg(str(gt_file))
    pred, pred_properties = setup.reader_writer.read_seg(str(pred_file))
    if gt.shape != pred.shape:
        raise EvaluationError(f"{pred_file.name}: prediction shape {pred.shape[1:]} differs from the ground truth's "
                              f"{gt.shape[1:]}")
    gt_spacing, pred_spacing = gt_properties.get("spacing"), pred_properties.get("spacing")
    if gt_spacing is not None and pred_spacing is not None and not np.allclose(gt_spacing, pred_spacing, rtol=1e-4):
        raise EvaluationError(f"{pred_file.name}: prediction spacing {tuple(pred_spacing)} differs from the ground "
                              f"truth's {tuple(gt_spacing)}; predictions must be in the original image geometry")
    for name, seg in (("ground truth", gt), ("prediction", pred)):
        unknown = sorted(set(np.unique(seg).astype(int).tolist()) - setup.allowed_values)
        if unknown:
            raise EvaluationError(f"{pred_file.name}: the {name} holds label value(s) {unknown} that are not in "
                                  f"dataset.json's labels {sorted(setup.allowed_values)}")
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key

    metrics = topology_metrics(spatial(pred), spatial(gt), setup.labels, setup.ignore_label)
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
    pairs = _case_files(gt_folder, pred_folder, dataset_json.get("file_ending", ""), chill)
    setup = _setup(dataset_json, plans_file, pairs[0][0])
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
