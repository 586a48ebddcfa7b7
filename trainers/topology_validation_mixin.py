"""Trainer mixin: topology metrics next to nnU-Net's Dice after the final validation.

After nnU-Net's own ``perform_actual_validation`` (which writes the fold's ``validation/``
predictions and ``summary.json``), the mixin evaluates the same predictions with
``nnunet_ext.evaluation`` and writes ``validation/summary_topology.json`` (Dice, clDice, Betti
errors, pixel, Rand and warping errors; nnU-Net's summary.json shape; per region for region-based
trainings, keyed as in nnU-Net's summary.json), so a finished
``nnUNetv2_train`` (or ``--val``) already says whether connectivity improved. Like nnU-Net's
summary.json it is rewritten whenever the validation runs again.

Set the class attribute ``topology_validation = False`` in a subclass to skip it.
Mix in before the nnU-Net trainer class.
"""

from __future__ import annotations

from pathlib import Path

from nnunetv2.configuration import default_num_processes

from nnunet_ext.evaluation import DEFAULT_OUTPUT_NAME, EvaluationError, evaluate_folders

LOGGED_METRICS = ("Dice", "clDice", "Betti0_error", "Betti1_error", "Betti2_error")


class TopologyValidationMixin:
    """Adds ``validation/summary_topology.json`` to nnU-Net's final validation."""

    topology_validation: bool = True

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        super().perform_actual_validation(save_probabilities)
        if not self.topology_validation or self.local_rank != 0:
            return
        validation = Path(self.output_folder) / "validation"
        try:
            summary = evaluate_folders(
                Path(self.preprocessed_dataset_folder_base) / "gt_segmentations", validation, self.dataset_json,
                self.plans_manager.plans, validation / DEFAULT_OUTPUT_NAME,
                num_processes=default_num_processes if default_num_processes > 1 else 0,
                overwrite=True, progress=False, chill=True)
        except EvaluationError as error:
            self.print_to_log_file(f"topology validation failed: {error}", also_print_to_console=True)
            return
        mean = summary["foreground_mean"]
        self.print_to_log_file("Mean validation topology: " + ", ".join(
            f"{name} {mean[name]:.4f}" for name in LOGGED_METRICS if name in mean), also_print_to_console=True)
