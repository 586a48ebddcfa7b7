"""The comparison of several methods against a baseline on paired cases: ``comparison.json``, ``.md``, ``.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from nnunet_ext.evaluation.compare.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MIN_CASES_FOR_A_TEST,
    SIGNIFICANCE,
    paired_difference,
)
from nnunet_ext.evaluation.compare.summaries import (
    METRIC_DIRECTIONS,
    PerCase,
    SummaryError,
    abbreviated,
    compared_metrics,
    higher_is_better,
)

OUTPUT_FILES = ("comparison.json", "comparison.md", "comparison.png")


class ComparisonError(SummaryError):
    """The summaries cannot be compared as given: the message names the problem and the fix."""


def paired_cases(summaries: dict[str, PerCase], chill: bool) -> list[str]:
    """The cases every summary has, sorted; ``ComparisonError`` naming the unpaired ones unless ``chill``."""
    common = set.intersection(*(set(s) for s in summaries.values()))
    if not common:
        examples = "; ".join(f"{name}: {abbreviated(sorted(cases), 3)}" for name, cases in summaries.items())
        raise ComparisonError(f"the summaries share no case ({examples}); cases pair up by the reference file's "
                              f"name: evaluate every method on the same cases")
    every = set().union(*(set(s) for s in summaries.values()))
    missing = {name: sorted(every - set(cases)) for name, cases in summaries.items() if every - set(cases)}
    if missing and not chill:
        listed = "; ".join(f"from {name}'s summary: {abbreviated(cases)}" for name, cases in missing.items())
        raise ComparisonError(f"cases do not pair up, missing {listed}; evaluate every method on the same cases, or "
                              f"pass --chill to compare only the {len(common)} common ones")
    return sorted(common)


def compare_summaries(summaries: dict[str, PerCase], chill: bool = False) -> dict:
    """The comparison dict (``comparison.json``); the first method is the baseline.

    ``{"baseline", "methods", "cases", "bootstrap": {...}, "note", "metrics": {METRIC: {"higher_is_better",
    "per_method": {name: {"mean", "std"}}, "versus_baseline": {name: paired_difference(...)}}}}``, for the metrics
    of ``METRIC_DIRECTIONS`` (and their ``merged`` versions) that every summary has. Means and stds over the
    paired cases, NaN-ignoring.
    """
    if len(summaries) < 2:
        raise ComparisonError(f"need at least two summaries to compare (the first is the baseline), got "
                              f"{len(summaries)}")
    names = list(summaries)
    cases = paired_cases(summaries, chill)
    present = [m for m in compared_metrics()
               if all(m in summaries[name][case] for name in names for case in cases)]
    if not present:
        raise ComparisonError(f"the summaries share no metric of {list(METRIC_DIRECTIONS)}")
    baseline = names[0]
    metrics = {}
    for metric in present:
        values = {name: np.array([summaries[name][case][metric] for case in cases]) for name in names}
        metrics[metric] = {
            "higher_is_better": higher_is_better(metric),
            "per_method": {name: {"mean": _nan_stat(np.nanmean, v), "std": _nan_stat(np.nanstd, v)}
                           for name, v in values.items()},
            "versus_baseline": {name: paired_difference(values[baseline], values[name], higher_is_better(metric))
                                for name in names[1:]},
        }
    note = None
    if len(cases) < MIN_CASES_FOR_A_TEST:
        note = (f"only {len(cases)} paired cases: below {MIN_CASES_FOR_A_TEST} no two-sided Wilcoxon test can reach "
                f"p < {SIGNIFICANCE}, so this comparison has no power; evaluate more cases")
    return {"baseline": baseline, "methods": names, "cases": len(cases), "case_names": cases,
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "interval": "percentile 95%"},
            "test": f"two-sided Wilcoxon signed-rank (scipy defaults); better when p < {SIGNIFICANCE}",
            "note": note, "metrics": metrics}


def _nan_stat(function, values: np.ndarray) -> float:
    return float(function(values)) if not np.all(np.isnan(values)) else math.nan


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"


def markdown_table(comparison: dict) -> str:
    """The table a user pastes into a paper or an issue: mean ± std per method, difference [CI], p per method."""
    names, baseline = comparison["methods"], comparison["baseline"]
    head = ["metric", *[f"{n} (mean ± std)" for n in names], *[f"{n} − {baseline} [95% CI], p" for n in names[1:]]]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for metric, result in comparison["metrics"].items():
        arrow = "↑" if result["higher_is_better"] else "↓"
        cells = [f"{metric} {arrow}"]
        cells += [f"{_fmt(result['per_method'][n]['mean'])} ± {_fmt(result['per_method'][n]['std'])}" for n in names]
        for n in names[1:]:
            d = result["versus_baseline"][n]
            verdict = {True: " **better**", False: " **worse**", None: ""}[d["better"]]
            if d.get("verdict_withheld"):
                verdict = " (within run-to-run spread)"
            spread = ""
            if "repeats" in d:
                lo, hi = d["repeats"]["range"]
                spread = f"; repeats [{_fmt(lo)}, {_fmt(hi)}], spread {_fmt(d['repeats']['run_to_run_spread'])}"
            cells.append(f"{_fmt(d['mean_difference'])} [{_fmt(d['ci95'][0])}, {_fmt(d['ci95'][1])}], "
                         f"p = {_fmt(d['wilcoxon_p'])}{spread}{verdict}")
        rows.append("| " + " | ".join(cells) + " |")
    lines = [f"Paired comparison on {comparison['cases']} cases, baseline {baseline}. Differences are "
             f"method − baseline (mean over cases; ↑ higher is better, ↓ lower is better), 95% CI by a percentile "
             f"bootstrap ({comparison['bootstrap']['resamples']} resamples, seed {comparison['bootstrap']['seed']}), "
             f"p from a two-sided Wilcoxon signed-rank test; **better**/**worse** where p < {SIGNIFICANCE}.", ""]
    if comparison.get("repeats"):
        lines += [f"Every method was trained {comparison['repeats']} times (seeds): values are per-case means over "
                  f"the repeats; 'repeats [lo, hi]' is the range of the per-repeat mean differences and 'spread' the "
                  f"run-to-run spread (the larger range of the two methods' per-repeat means); "
                  f"{comparison['repeat_rule']}.", ""]
    if comparison["note"]:
        lines += [f"**Note:** {comparison['note']}.", ""]
    return "\n".join(lines + rows) + "\n"


def write_comparison(comparison: dict, summaries: dict[str, PerCase], out_dir: str | Path,
                     overwrite: bool = False) -> list[Path]:
    """Write ``comparison.json``, ``comparison.md`` and ``comparison.png`` into ``out_dir``.

    An ``out_dir`` that is (or lies under) a file is refused, and one that already holds any of them unless
    ``overwrite``; nothing else there is touched.
    """
    out_dir = Path(out_dir)
    not_a_folder = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if not_a_folder is not None:
        raise ComparisonError(f"{not_a_folder} is a file, not a folder; -o names the folder for "
                              f"{', '.join(OUTPUT_FILES)}: choose another (nothing was written)")
    existing = [out_dir / n for n in OUTPUT_FILES if (out_dir / n).exists()]
    if existing and not overwrite:
        raise ComparisonError(f"{out_dir} already holds {', '.join(p.name for p in existing)}; choose another "
                              f"output folder or pass --overwrite to replace them")
    from nnunet_ext.evaluation.compare.figure import draw_comparison  # matplotlib only when writing

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / n for n in OUTPUT_FILES]
    paths[0].write_text(json.dumps(comparison, indent=2, allow_nan=True) + "\n")
    paths[1].write_text(markdown_table(comparison))
    draw_comparison(comparison, summaries, paths[2])
    return paths
