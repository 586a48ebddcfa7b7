"""Combo loss (Taghanaki et al., 2019) in place of nnU-Net's Dice + CE.

``α·wCE + (1−α)·(1 − Dice)`` with the β-weighted cross entropy; α = 0.5 (equal parts),
β = 0.5 (false positives and false negatives cost the same) by default. For thin
structures, where a missed voxel breaks a vessel, β > 0.5 penalises false negatives more:
``nnUNetTrainerCombo_b0p7``. Other values: subclass in your own nnUNet_extTrainer folder and
set ``combo_alpha`` / ``combo_beta``.
"""

from __future__ import annotations

from torch import nn

from nnunet_ext.losses import ComboLoss, RegionComboLoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase


class nnUNetTrainerCombo(ExtTrainerBase):
    """nnU-Net trained with the Combo loss (α = 0.5, β = 0.5) at every deep-supervision scale."""

    combo_alpha: float = 0.5
    combo_beta: float = 0.5

    def replacement_base_loss(self) -> nn.Module:
        settings = dict(alpha=self.combo_alpha, beta=self.combo_beta, batch_dice=self.configuration_manager.batch_dice,
                        ddp=self.is_ddp)
        if self.label_manager.has_regions:
            return RegionComboLoss(**settings)
        return ComboLoss(**settings, ignore_label=self.label_manager.ignore_label)


class nnUNetTrainerCombo_b0p7(nnUNetTrainerCombo):
    combo_beta = 0.7
