"""cbDice (Shi et al., MICCAI 2024) on stock nnU-Net: CE + Dice + λ * cbDice.

λ = 1 by default, the cbDice weight of the authors' compound loss (their trainer's ``lambda_cbdice``). Their
trainer also doubles the cross entropy (``lambda_ce = lambda_dice + lambda_cbdice = 2``, the paper's
``0.5 CE + 0.25 Dice + 0.25 cbDice``); we keep nnU-Net's CE + Dice as it is and add cbDice, like every other
loss of this package. Soft-skeleton iterations k = 10 and smoothing 1e-3 as in the authors' trainer. Change
them without editing this file: a subclass in your own nnUNet_extTrainer folder setting ``cbdice_weight``,
``cbdice_iterations`` or ``cbdice_smooth``.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.losses import CbDiceLoss, LossTerm, RegionCbDiceLoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase


def cbdice_term(trainer: nnUNetTrainer, weight: float, iterations: int = 10, smooth: float = 1e-3) -> LossTerm:
    """A cbDice loss term configured from a trainer's plans (batch_dice, DDP, ignore label, regions)."""
    settings = dict(iterations=iterations, smooth=smooth, batch_dice=trainer.configuration_manager.batch_dice,
                    ddp=trainer.is_ddp)
    if trainer.label_manager.has_regions:
        loss = RegionCbDiceLoss(**settings)
    else:
        loss = CbDiceLoss(**settings, ignore_label=trainer.label_manager.ignore_label)
    return LossTerm(loss, weight, "labels")


class nnUNetTrainerCbDice(ExtTrainerBase):
    """nnU-Net's CE + Dice plus cbDice (weight 1, k = 10 soft-skeleton iterations of the hard masks)."""

    cbdice_weight: float = 1.0
    cbdice_iterations: int = 10
    cbdice_smooth: float = 1e-3

    def extra_loss_terms(self) -> list[LossTerm]:
        return [cbdice_term(self, self.cbdice_weight, self.cbdice_iterations, self.cbdice_smooth)]
