"""Trainer mixin: a cascade stage refuses to start without the previous stage's segmentations.

A cascaded configuration (``3d_cascade_fullres``, ``"previous_stage": "3d_lowres"`` in the plans)
reads, for every case, the previous stage's segmentation from
``nnUNet_results/<dataset>/<trainer>__<plans>__3d_lowres/predicted_next_stage/3d_cascade_fullres/``.
nnU-Net writes that folder at the end of each 3d_lowres fold's final validation (its validation
cases only), so all lowres folds whose validation cases the cascade fold uses must have been trained
with the same trainer class and plans. Without them nnU-Net fails with a ``FileNotFoundError`` inside
a data-loader worker; this mixin checks before the network is built (the validation cases, which
training and ``--val`` read) and when training starts (the training cases, which ``--val`` does not
need) and says what to run instead.

Mix in before the nnU-Net trainer class.
"""

from __future__ import annotations

import json
from pathlib import Path

PREVIOUS_STAGE_SUFFIXES = (".b2nd", ".npz", ".npy")  # nnU-Net's dataset classes read these
MAX_LISTED_CASES = 5


class PreviousStageMissingError(RuntimeError):
    """A cascaded configuration lacks segmentations of its previous stage."""


class PreviousStageCheckMixin:
    """Checks that the fold's cases have previous-stage segmentations: the validation cases in ``initialize()``
    (training and ``--val`` need them), the training cases too when training starts (``--val`` does not)."""

    def initialize(self) -> None:
        if not self.was_initialized and self.is_cascaded:
            self.check_previous_stage(training=False)
        super().initialize()

    def on_train_start(self) -> None:
        if self.is_cascaded:
            self.check_previous_stage(training=True)
        super().on_train_start()

    def check_previous_stage(self, training: bool = True) -> None:
        """Raise ``PreviousStageMissingError`` naming what to train if a previous-stage file is missing for the
        fold's validation cases (and, with ``training``, its training cases)."""
        folder = Path(self.folder_with_segs_from_previous_stage)
        tr_keys, val_keys = self.do_split()
        cases = sorted(set(val_keys) | (set(tr_keys) if training else set()))
        if folder.is_dir():
            present = {p.stem for p in folder.iterdir() if p.suffix in PREVIOUS_STAGE_SUFFIXES}
            missing = [case for case in cases if case not in present]
            if not missing:
                return
            listed = ", ".join(missing[:MAX_LISTED_CASES]) + (", ..." if len(missing) > MAX_LISTED_CASES else "")
            kind = "cases" if training else "validation cases"
            problem = f"{len(missing)} of the fold's {len(cases)} {kind} have no segmentation in {folder}: {listed}"
        else:
            missing = cases
            problem = f"the folder {folder} does not exist"
        previous, trainer, plans = (self.configuration_manager.previous_stage_name, type(self).__name__,
                                    self.plans_manager.plans_name)
        folds = self._folds_validating(missing)
        which = "all folds" if folds is None else ("fold " if len(folds) == 1 else "folds ") + ", ".join(
            map(str, folds))
        raise PreviousStageMissingError(
            f"Configuration {self.configuration_name} (fold {self.fold}) is a cascade stage and needs the "
            f"segmentations of its previous stage {previous}, but {problem}. Fix: train {previous} {which} first "
            f"with the same trainer ({trainer}) and plans ({plans}), e.g. `nnUNetv2_train "
            f"{self.plans_manager.dataset_name} {previous} {'FOLD' if folds is None else folds[0]} -tr {trainer} "
            f"-p {plans}`; nnU-Net writes them at the end of its final validation (for a finished fold, "
            f"--val writes them again).")

    def _folds_validating(self, cases: list[str]) -> list[int] | None:
        """The folds of splits_final.json whose validation sets hold ``cases``; None if some case has none."""
        splits_file = Path(self.preprocessed_dataset_folder_base) / "splits_final.json"
        splits = json.loads(splits_file.read_text()) if splits_file.is_file() else []
        folds = set()
        for case in cases:
            fold = next((i for i, split in enumerate(splits) if case in split["val"]), None)
            if fold is None:
                return None
            folds.add(fold)
        return sorted(folds)
