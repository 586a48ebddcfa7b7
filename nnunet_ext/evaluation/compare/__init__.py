"""Paired comparison of methods on the same cases: per-case topology/Dice summaries, statistics, report, figure."""

from nnunet_ext.evaluation.compare.repeats import compare_repeats, mean_over_repeats
from nnunet_ext.evaluation.compare.report import ComparisonError, compare_summaries, markdown_table, write_comparison
from nnunet_ext.evaluation.compare.statistics import paired_difference, repeat_spread
from nnunet_ext.evaluation.compare.summaries import (
    PerCase,
    SummaryError,
    cross_validation_summary,
    load_summary,
    refuse_repeated_files,
)

__all__ = ["ComparisonError", "PerCase", "SummaryError", "compare_repeats", "compare_summaries",
           "cross_validation_summary", "load_summary", "markdown_table", "mean_over_repeats", "paired_difference",
           "refuse_repeated_files", "repeat_spread", "write_comparison"]
