"""Label values checked in the data pipeline, on the CPU, for every training and validation sample.

nnU-Net's cross entropy indexes its logits with the label values: a value that dataset.json does not
define crashes inside a data-loader worker's batch on the GPU ("index 3 is out of bounds") or, worse,
trains on the wrong class. The losses cannot check every batch without a device-to-host sync, so the
check happens here, where the labels are still a CPU array.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform

REPORT_PATH_VARIABLE = "NNUNET_EXT_LABEL_REPORT"
"""Environment variable naming a file that a failing check appends its finding to (one JSON line), so that the
training process can report what a data-loader worker found (a dying worker only says that it died)."""


class LabelValueError(ValueError):
    """A label map holds a value that the dataset does not define."""


class LabelCheckTransform(SegOnlyTransform):
    """Raise ``LabelValueError`` if a sample's label map holds a value outside ``allowed_labels``.

    Per sample: ``segmentation`` (C, X, Y[, Z]), torch tensor or numpy array, returned unchanged. Cost: one
    min/max pass when the allowed labels are consecutive integers (nnU-Net requires that), plus a search
    for the offending values only when the check fails.

    Args:
        allowed_labels: the label values that may occur (background, classes, ignore label).
        labels_description: what to show the user as the dataset's labels (e.g. dataset.json's ``labels``).
    """

    def __init__(self, allowed_labels: Sequence[int], labels_description: str = "") -> None:
        super().__init__()
        allowed = sorted({int(v) for v in allowed_labels})
        if not allowed:
            raise ValueError("allowed_labels must name at least one label value")
        self.allowed_labels = tuple(allowed)
        self.labels_description = labels_description or str(list(self.allowed_labels))
        self._consecutive = allowed == list(range(allowed[0], allowed[-1] + 1))

    def _apply_to_segmentation(self, segmentation: torch.Tensor | np.ndarray, **params) -> torch.Tensor | np.ndarray:
        values = segmentation.detach().cpu().numpy() if isinstance(segmentation, torch.Tensor) else np.asarray(
            segmentation)
        if values.size and not self._holds_only_allowed(values):
            bad = self._bad_values(values)
            error = self._error(bad)
            report = os.environ.get(REPORT_PATH_VARIABLE)
            if report:
                with open(report, "a") as f:
                    f.write(json.dumps({"values": bad, "message": str(error)}) + "\n")
            raise error
        return segmentation

    def _holds_only_allowed(self, values: np.ndarray) -> bool:
        if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
            return False  # NaN fails this too
        if self._consecutive:
            return bool(values.min() >= self.allowed_labels[0] and values.max() <= self.allowed_labels[-1])
        return bool(np.isin(values, self.allowed_labels).all())

    def _bad_values(self, values: np.ndarray) -> list[float]:
        """The distinct values outside the allowed labels (at most 5), as Python numbers."""
        return [v for v in np.unique(values).tolist() if v not in self.allowed_labels][:5]

    def _error(self, bad: list[float]) -> LabelValueError:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in bad)
        return LabelValueError(
            f"a label map holds value(s) {shown} that the dataset does not define (labels: {self.labels_description};"
            f" allowed values {list(self.allowed_labels)}). Fix: run `nnUNetv2_plan_and_preprocess -d DATASET_ID "
            f"--verify_dataset_integrity` to find the case, correct its label file (or the labels in "
            f"dataset.json) and preprocess again")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(allowed_labels={list(self.allowed_labels)})"
