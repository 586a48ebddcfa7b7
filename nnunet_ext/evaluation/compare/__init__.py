"""Paired comparison of methods on the same cases: per-case topology/Dice summaries, statistics, report, figure."""

from nnunet_ext.evaluation.compare.report import ComparisonError, compare_summaries, markdown_table, write_comparison
from nnunet_ext.evaluation.compare.statistics import paired_difference
from nnunet_ext.evaluation.compare.summaries import (
    PerCase,
    SummaryError,
    cross_validation_summary,
    load_summary,
    refuse_repeated_files,
)

__all__ = ["ComparisonError", "PerCase", "SummaryError", "compare_summaries", "cross_validation_summary",
           "load_summary", "markdown_table", "paired_difference", "refuse_repeated_files", "write_comparison"]
