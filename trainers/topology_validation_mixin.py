"""Trainer mixin: topology metrics next to nnU-Net's Dice after the final validation.

After nnU-Net's own ``perform_actual_validation`` (which writes the fold's ``validation/``
predictions and ``summary.json``), the mixin evaluates the same predictions with
``nnunet_ext.evaluation.evaluate`` and writes ``validation/summary_topology.json`` (Dice, clDice, Betti
errors, pixel, Rand and warping errors; nnU-Net's summary.json shape; per region for region-based
trainings, keyed as in nnU-Net's summary.json), so a finished
``nnUNetv2_train`` (or ``--val``) already says whether connectivity improved. Like nnU-Net's
summary.json it is rewritten whenever the validation runs again.

The summary is an addition: it never turns a finished training into a failure. Label files it cannot
score (e.g. non-integer values, which nnU-Net's preprocessing silently truncates) are reported when
training starts, and at the end the summary is skipped with a warning naming the file and the fix.

Set the class attribute ``topology_validation = False`` in a subclass to skip it.
Mix in before the nnU-Net trainer class.
"""

from __future__ import annotations

from pathlib import Path

from nnunetv2.configuration import default_num_processes

from nnunet_ext.evaluation.evaluate import DEFAULT_OUTPUT_NAME, evaluate_folders, non_integer_label_files

LOGGED_METRICS = ("Dice", "clDice", "Betti0_error", "Betti1_error", "Betti2_error")
MAX_LISTED_FILES = 5


class TopologyValidationMixin:
    """Adds ``validation/summary_topology.json`` to nnU-Net's final validation."""

    topology_validation: bool = True

    @property
    def ground_truth_folder(self) -> Path:
        return Path(self.preprocessed_dataset_folder_base) / "gt_segmentations"

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.topology_validation and self.local_rank == 0:
            self.warn_about_unscorable_labels()

    def warn_about_unscorable_labels(self) -> None:
        """Log a warning, at the start, if the fold's validation label files hold non-integer values."""
        _, val_keys = self.do_split()
        ending = self.dataset_json["file_ending"]
        bad = non_integer_label_files([self.ground_truth_folder / f"{case}{ending}" for case in sorted(val_keys)])
        if bad:
            listed = ", ".join(str(p) for p in bad[:MAX_LISTED_FILES]) + (" ..." if len(bad) > MAX_LISTED_FILES else "")
            self.print_to_log_file(
                f"WARNING: {len(bad)} validation label file(s) hold non-integer values: {listed}. nnU-Net's "
                f"preprocessing truncated them to integers for training, and the topology summary of the final "
                f"validation cannot score them (it will be skipped). Fix the label files (integer classes; check with "
                f"nnUNetv2_plan_and_preprocess -d {self.plans_manager.dataset_name} --verify_dataset_integrity) and "
                f"preprocess again", also_print_to_console=True)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        super().perform_actual_validation(save_probabilities)
        if not self.topology_validation or self.local_rank != 0:
            return
        validation = Path(self.output_folder) / "validation"
        self.print_to_log_file(f"topology validation (summary_topology.json) of {validation}",
                               also_print_to_console=True)
        processes = default_num_processes if default_num_processes > 1 else 0
        try:
            summary = evaluate_folders(self.ground_truth_folder, validation, self.dataset_json,
                                       self.plans_manager.plans, validation / DEFAULT_OUTPUT_NAME,
                                       num_processes=processes, overwrite=True, progress=True, chill=True)
        except Exception as error:  # noqa: BLE001 - an addition to nnU-Net's validation must not fail the training
            self.print_to_log_file(f"WARNING: topology validation skipped, nnU-Net's summary.json stands: {error}",
                                   also_print_to_console=True)
            return
        mean = summary["foreground_mean"]
        self.print_to_log_file("Mean validation topology: " + ", ".join(
            f"{name} {mean[name]:.4f}" for name in LOGGED_METRICS if name in mean), also_print_to_console=True)
