"""Paired statistics of two methods on the same cases: mean difference, bootstrap CI, Wilcoxon signed-rank."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import wilcoxon

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05
MIN_CASES_FOR_A_TEST = 6  # below, no two-sided Wilcoxon p-value can fall under 0.05 (n = 5: p >= 0.0625)


def bootstrap_ci95(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``differences`` (n,), resampling cases with replacement."""
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences, scipy's defaults; 1 if all are zero."""
    if not np.any(differences != 0):
        return 1.0
    return float(wilcoxon(differences).pvalue)


def paired_difference(baseline: np.ndarray, method: np.ndarray, higher_is_better: bool) -> dict:
    """``method`` against ``baseline`` on the same cases (NaN pairs left out).

    Returns ``{"mean_difference": mean(method - baseline), "ci95": [lo, hi], "wilcoxon_p": p, "better": bool or
    None, "cases": n}``; ``better`` is True / False when p < 0.05 with the mean difference in the good / bad
    direction, else None (also when fewer than ``MIN_CASES_FOR_A_TEST`` pairs leave the test without power).
    """
    baseline, method = np.asarray(baseline, dtype=float), np.asarray(method, dtype=float)
    keep = ~(np.isnan(baseline) | np.isnan(method))
    differences = method[keep] - baseline[keep]
    n = len(differences)
    if n == 0:
        return {"mean_difference": math.nan, "ci95": [math.nan, math.nan], "wilcoxon_p": math.nan, "better": None,
                "cases": 0}
    mean = float(differences.mean())
    p = wilcoxon_p(differences)
    better = None
    if n >= MIN_CASES_FOR_A_TEST and p < SIGNIFICANCE and mean != 0:
        better = (mean > 0) == higher_is_better
    return {"mean_difference": mean, "ci95": list(bootstrap_ci95(differences)), "wilcoxon_p": p, "better": better,
            "cases": n}


def repeat_spread(baseline_runs: list[np.ndarray], method_runs: list[np.ndarray]) -> dict:
    """How much a difference moves between repeated trainings: repeat r of the method against repeat r of the
    baseline, each a (cases,) array of one metric on the same cases (NaN pairs left out).

    Returns ``{"per_repeat_mean_differences": [d_r], "range": [min d_r, max d_r], "run_to_run_spread": s}`` with
    ``s`` the larger of the two methods' ranges (max − min) of their per-repeat means over cases.
    """
    if len(baseline_runs) != len(method_runs) or not baseline_runs:
        raise ValueError(f"need the same number (>= 1) of repeats of both methods, got {len(baseline_runs)} and "
                         f"{len(method_runs)}")
    differences, baseline_means, method_means = [], [], []
    for baseline, method in zip(baseline_runs, method_runs):
        baseline, method = np.asarray(baseline, dtype=float), np.asarray(method, dtype=float)
        keep = ~(np.isnan(baseline) | np.isnan(method))
        if not keep.any():
            return {"per_repeat_mean_differences": [math.nan] * len(baseline_runs), "range": [math.nan, math.nan],
                    "run_to_run_spread": math.nan}
        differences.append(float((method[keep] - baseline[keep]).mean()))
        baseline_means.append(float(baseline[keep].mean()))
        method_means.append(float(method[keep].mean()))
    spread = max(max(baseline_means) - min(baseline_means), max(method_means) - min(method_means))
    return {"per_repeat_mean_differences": differences, "range": [min(differences), max(differences)],
            "run_to_run_spread": float(spread)}


def clears_the_spread(mean_difference: float, spread: dict) -> bool:
    """Whether a mean difference stands out of the run-to-run noise: every repeat's difference has its sign and
    it is larger than the run-to-run spread (``repeat_spread``)."""
    lo, hi = spread["range"]
    if math.isnan(mean_difference) or math.isnan(lo) or mean_difference == 0:
        return False
    same_sign = lo > 0 if mean_difference > 0 else hi < 0
    return same_sign and abs(mean_difference) > spread["run_to_run_spread"]
