"""Per-case values of a summary file: the NaN-ignoring mean over foreground classes (regions) of each metric.

Reads our ``summary_topology.json`` and nnU-Net's own ``summary.json`` (same shape: ``metric_per_case``
with ``reference_file`` and ``metrics`` per class key). Cases are named by the reference file's name, so
predictions of different methods pair up whatever folder they were written to. A compared metric's value must be
a number or null (NaN): text is refused, and so is an infinite value, since every compared metric is finite by
definition (a broken evaluation; leaving such cases out as NaN would drop exactly a method's failures).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

# metric -> higher is better; metrics outside this table (counts such as TP, n_ref) are not compared
METRIC_DIRECTIONS: dict[str, bool] = {
    "Dice": True, "IoU": True, "clDice": True, "Betti0_error": False, "Betti1_error": False,
    "Betti2_error": False, "pixel_error": False, "rand_error": False, "warping_error": False,
    "FP": False, "FN": False,
}
SUMMARY_NAMES = ("summary_topology.json", "summary.json")
MERGED_PREFIX = "merged "  # a metric of all foreground classes as one (``nnunet-ext study``), e.g. "merged clDice"


def compared_metrics() -> list[str]:
    """Every metric a comparison may hold, in table order: the class averages, then the merged ones."""
    return [*METRIC_DIRECTIONS, *(MERGED_PREFIX + m for m in METRIC_DIRECTIONS)]


def higher_is_better(metric: str) -> bool:
    """The direction of a compared metric (``merged X`` as ``X``)."""
    return METRIC_DIRECTIONS[metric.removeprefix(MERGED_PREFIX)]

PerCase = dict[str, dict[str, float]]
"""case name -> metric -> value (NaN where every class is NaN for that case)."""


class SummaryError(ValueError):
    """A summary file cannot be read as per-case results: the message names the file and the fix."""


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _metric_value(value: object, where: str) -> float:
    """A metric value as float (null: NaN); ``SummaryError`` naming ``where`` (file, case, class, metric) if it is
    no number."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SummaryError(f"{where} is {value!r}, not a number; fix the file (re-run the evaluation that wrote it)")
    return float(value)


def abbreviated(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` of ``items``, comma-separated, with how many there are when some are left out."""
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def per_case_values(summary: dict, source: str) -> PerCase:
    """``{case: {metric: foreground mean}}`` from a summary dict (``source`` names it in errors)."""
    cases = summary.get("metric_per_case") if isinstance(summary, dict) else None
    if not isinstance(cases, list) or not cases:
        raise SummaryError(f"{source} has no 'metric_per_case' list: give a summary_topology.json written by "
                           f"`nnunet-ext evaluate` (or a trainer's final validation) or nnU-Net's summary.json")
    out: PerCase = {}
    infinite: list[str] = []
    for entry in cases:
        try:
            name = Path(entry["reference_file"]).name
            per_class = entry["metrics"]
        except (KeyError, TypeError):
            raise SummaryError(f"{source}: an entry of 'metric_per_case' lacks 'reference_file' or 'metrics'") from None
        if name in out:
            raise SummaryError(f"{source} lists case {name} twice")
        metrics = sorted({m for values in per_class.values() for m in values if m in METRIC_DIRECTIONS})
        per_metric = {m: [_metric_value(values.get(m), f"{source}: case {name}, class {key}, metric {m}")
                          for key, values in per_class.items()] for m in metrics}
        infinite += [f"case {name} ({m})" for m, values in per_metric.items() if any(map(math.isinf, values))]
        out[name] = {m: _nanmean(values) for m, values in per_metric.items()}
    if infinite:
        raise SummaryError(f"{source} has infinite values in {abbreviated(infinite)}; these metrics are finite by "
                           f"definition, so the evaluation that wrote the file is broken: re-evaluate these cases "
                           f"(nothing was compared)")
    return out


def refuse_repeated_files(files: dict[str, str | Path]) -> None:
    """``SummaryError`` if two methods (name -> summary file) are given the same file or files of the same bytes:
    a method compared with itself shows no difference at all."""
    first_with: dict[str, str] = {}
    for name, path in files.items():
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest in first_with:
            first = first_with[digest]
            same = Path(files[first]).resolve() == Path(path).resolve()
            what = f"the same file {path}" if same else f"files with the same content ({files[first]}, {path})"
            raise SummaryError(f"{first} and {name} are given {what}, so every difference would be 0 (p = 1); give "
                               f"each method the summary of its own predictions")
        first_with[digest] = name


def load_summary(path: str | Path) -> PerCase:
    """Per-case values of a summary file (``summary_topology.json`` or nnU-Net's ``summary.json``)."""
    path = Path(path)
    if not path.is_file():
        raise SummaryError(f"summary file {path} does not exist")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SummaryError(f"{path} is not valid JSON ({error})") from None
    return per_case_values(summary, str(path))


def cross_validation_summary(results: Path, dataset_name: str, configuration: str, trainer: str, plans: str,
                             folds: list[int] | None) -> PerCase:
    """The per-case values of a trainer's cross-validation: the union of its folds' validation summaries.

    Reads ``results/dataset_name/trainer__plans__configuration/fold_F/validation/summary_topology.json``
    (nnU-Net's ``summary.json`` where the topology summary is missing) for ``folds`` (default: every
    ``fold_*`` folder there). Each case is validated in exactly one fold.
    """
    model = results / dataset_name / f"{trainer}__{plans}__{configuration}"
    if not model.is_dir():
        raise SummaryError(f"{model} does not exist: train {trainer} with `nnUNetv2_train {dataset_name} "
                           f"{configuration} FOLD -tr {trainer} -p {plans}` first")
    if folds is None:
        folds = sorted(int(p.name.removeprefix("fold_")) for p in model.glob("fold_*")
                       if p.name.removeprefix("fold_").isdigit())
        if not folds:
            raise SummaryError(f"{model} has no fold_N folders: no fold of {trainer} was trained")
    merged: PerCase = {}
    for fold in folds:
        validation = model / f"fold_{fold}" / "validation"
        summary = next((validation / n for n in SUMMARY_NAMES if (validation / n).is_file()), None)
        if summary is None:
            raise SummaryError(f"{validation} has no summary_topology.json or summary.json: fold {fold} of {trainer} "
                               f"has not finished its final validation (run `nnUNetv2_train {dataset_name} "
                               f"{configuration} {fold} -tr {trainer} -p {plans} --val`)")
        for case, values in load_summary(summary).items():
            if case in merged:
                raise SummaryError(f"case {case} is validated in two folds of {model}; the folds' splits overlap")
            merged[case] = values
    return merged
