"""Comparison of methods trained several times (repeats: other seeds): the paired statistics of the per-case means
over repeats, with the spread between repeats beside each difference.

A difference is called better/worse only when the paired test says so (p < 0.05 over cases) *and* it clears the
run-to-run spread (``statistics.clears_the_spread``): a gain smaller than what a second seed moves is noise.
"""

from __future__ import annotations

import math

import numpy as np

from nnunet_ext.evaluation.compare.report import ComparisonError, compare_summaries, paired_cases
from nnunet_ext.evaluation.compare.statistics import clears_the_spread, repeat_spread
from nnunet_ext.evaluation.compare.summaries import PerCase

REPEAT_RULE = ("better/worse only where p < 0.05, every repeat's mean difference has the same sign, and the mean "
               "difference exceeds the run-to-run spread (the larger range of the two methods' per-repeat means)")


def mean_over_repeats(runs: list[PerCase], chill: bool = False) -> PerCase:
    """Per case and metric the NaN-ignoring mean over the repeats (cases every repeat has; ``ComparisonError``
    naming the unpaired ones unless ``chill``); metrics every repeat has for the case."""
    if not runs:
        raise ComparisonError("a method has no repeat to average")
    cases = paired_cases({f"repeat {r}": run for r, run in enumerate(runs)}, chill) if len(runs) > 1 else sorted(
        runs[0])
    out: PerCase = {}
    for case in cases:
        metrics = set.intersection(*(set(run[case]) for run in runs))
        out[case] = {m: _nanmean([run[case][m] for run in runs]) for m in sorted(metrics)}
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def compare_repeats(repeats: dict[str, list[PerCase]], chill: bool = False) -> dict:
    """``compare_summaries`` of the per-case means over repeats (the first method is the baseline), with, per
    metric and method, ``versus_baseline[name]["repeats"] = repeat_spread(...)`` and the verdict withheld
    (``better`` None, ``"verdict_withheld"`` saying why) where the difference does not clear the spread.

    Every method needs the same number of repeats: repeat r of a method is paired with repeat r of the baseline.
    """
    counts = {name: len(runs) for name, runs in repeats.items()}
    if len(set(counts.values())) != 1 or min(counts.values()) < 1:
        raise ComparisonError(f"every method needs the same number of repeats, got {counts}; give each method one "
                              f"summary per repeat")
    means = {name: mean_over_repeats(runs, chill) for name, runs in repeats.items()}
    comparison = compare_summaries(means, chill)
    names, cases = comparison["methods"], comparison["case_names"]
    baseline = names[0]

    def values(name: str, r: int, metric: str) -> np.ndarray:
        return np.array([repeats[name][r][case].get(metric, math.nan) for case in cases], dtype=float)

    n = counts[baseline]
    for metric, result in comparison["metrics"].items():
        for name in names[1:]:
            spread = repeat_spread([values(baseline, r, metric) for r in range(n)],
                                   [values(name, r, metric) for r in range(n)])
            difference = result["versus_baseline"][name]
            difference["repeats"] = spread
            if difference["better"] is not None and not clears_the_spread(difference["mean_difference"], spread):
                difference["better"] = None
                difference["verdict_withheld"] = "within the run-to-run spread of the repeats"
    comparison["repeats"] = n
    comparison["repeat_rule"] = REPEAT_RULE
    return comparison
