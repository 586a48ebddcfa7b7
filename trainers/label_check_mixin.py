"""Trainer mixin: every sample's label values are checked in the data pipeline (on the CPU).

Mix in before the nnU-Net trainer class. ``LabelCheckTransform`` goes into nnU-Net's training and
validation pipelines after its label clean-up (-1 -> 0) and before region conversion and
deep-supervision downsampling, so a label that dataset.json does not define stops training with a
message naming the value and the fix, instead of an index error inside nnU-Net's cross entropy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

from nnunet_ext.trainers.pipeline_edits import edited_pipeline, insert_before_target_conversion
from nnunet_ext.transforms import LabelCheckTransform, LabelValueError
from nnunet_ext.transforms.label_check_transform import REPORT_PATH_VARIABLE


def _with_label_check(pipeline: ComposeTransforms, arguments: dict) -> ComposeTransforms:
    foreground = arguments.get("foreground_labels")
    if foreground is None:  # a caller that does not say which labels exist: nothing to check against
        return pipeline
    ignore = arguments.get("ignore_label")
    allowed = [0, *foreground, *([] if ignore is None else [ignore])]
    return insert_before_target_conversion(pipeline, LabelCheckTransform(allowed),
                                           arguments.get("deep_supervision_scales") is not None)


REPORT_NAME = "label_check_failures.jsonl"
MAX_LISTED_CASES = 5


class LabelCheckMixin:
    """Adds ``LabelCheckTransform`` to nnU-Net's training and validation pipelines, and makes what it finds in a
    data-loader worker the training process's error: the values, the cases that hold them, and the fix."""

    @classmethod
    def get_training_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, LabelCheckMixin, "get_training_transforms", args, kwargs, _with_label_check)

    @classmethod
    def get_validation_transforms(cls, *args, **kwargs) -> ComposeTransforms:
        return edited_pipeline(cls, LabelCheckMixin, "get_validation_transforms", args, kwargs, _with_label_check)

    def run_training(self) -> None:
        report = Path(self.output_folder) / REPORT_NAME
        report.unlink(missing_ok=True)
        os.environ[REPORT_PATH_VARIABLE] = str(report)  # inherited by the workers (fork and spawn)
        try:
            super().run_training()
        except (RuntimeError, LabelValueError) as error:
            findings = [json.loads(line) for line in report.read_text().splitlines()] if report.is_file() else []
            if not findings:
                raise
            raise LabelValueError(self.label_problem(findings)) from error

    def label_problem(self, findings: list[dict]) -> str:
        """The checks' message with the cases that hold the values (found by scanning the preprocessed labels)."""
        values = sorted({v for finding in findings for v in finding["values"]}, key=str)
        cases = self.cases_holding(values)
        where = (f"Cases holding them: {', '.join(cases[:MAX_LISTED_CASES])}"
                 f"{' ...' if len(cases) > MAX_LISTED_CASES else ''}. " if cases else "")
        dataset = self.plans_manager.dataset_name
        message = findings[0]["message"].replace("DATASET_ID", str(convert_dataset_name_to_id(dataset)))
        return f"{message}. {where}(found by nnunet_ext's label check in nnU-Net's data pipeline, {dataset})"

    def cases_holding(self, values: list[float]) -> list[str]:
        """The training and validation cases of this fold whose preprocessed labels hold any of ``values``."""
        tr_keys, val_keys = self.do_split()
        dataset = self.dataset_class(self.preprocessed_dataset_folder, sorted(set(tr_keys) | set(val_keys)))
        targets = np.asarray([v for v in values if not (isinstance(v, float) and np.isnan(v))], dtype=np.float64)
        found = []
        for case in dataset.identifiers:
            seg = np.asarray(dataset.load_case(case)[1][:], dtype=np.float64)
            if np.isin(seg, targets).any() or (len(targets) < len(values) and np.isnan(seg).any()):
                found.append(case)
        return found
