"""``comparison.png``: per metric, each case's value under every method, joined by a line per case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nnunet_ext.evaluation.compare.summaries import PerCase


def draw_comparison(comparison: dict, summaries: dict[str, PerCase], path: Path) -> None:
    """One panel per metric: methods on the x axis, a grey line per case through its values, the means in black,
    and the difference to the baseline with its CI and p in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, cases = comparison["methods"], comparison["case_names"]
    metrics = list(comparison["metrics"])
    columns = min(4, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    x = np.arange(len(names))
    for ax, metric in zip(axes.flat, metrics):
        values = np.array([[summaries[n][c][metric] for n in names] for c in cases], dtype=float)
        for row in values:
            ax.plot(x, row, color="0.6", alpha=0.5, linewidth=0.8, marker="o", markersize=2)
        ax.plot(x, np.nanmean(values, axis=0), color="black", linewidth=2, marker="s", label="mean")
        result = comparison["metrics"][metric]
        title = f"{metric} ({'higher' if result['higher_is_better'] else 'lower'} is better)"
        if len(names) == 2:
            d = result["versus_baseline"][names[1]]
            title += f"\nΔ {d['mean_difference']:.3g} [{d['ci95'][0]:.3g}, {d['ci95'][1]:.3g}], p {d['wilcoxon_p']:.2g}"
        ax.set_title(title, fontsize=8)
        ax.set_xticks(x, names, fontsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{comparison['cases']} paired cases, baseline {comparison['baseline']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
