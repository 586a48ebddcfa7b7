"""clDice (Shit et al., CVPR 2021) on stock nnU-Net: CE + Dice + λ * clDice.

λ = 1 by default: clDice weighted like nnU-Net's Dice term, the equal balance the clDice
paper recommends (its α = 0.5 between soft Dice and clDice). Change λ or the number of
soft-skeleton iterations k without editing this file: named variants
(``nnUNetTrainerClDice_w0p5``, ``_w2``) or a subclass in your own nnUNet_extTrainer folder
setting ``cldice_weight`` / ``cldice_iterations``.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.losses import LossTerm, RegionClDiceLoss, SoftClDiceLoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase


def cldice_term(trainer: nnUNetTrainer, weight: float, iterations: int = 3) -> LossTerm:
    """A clDice loss term configured from a trainer's plans (batch_dice, DDP, ignore label, regions)."""
    settings = dict(iterations=iterations, smooth=1.0, batch_dice=trainer.configuration_manager.batch_dice,
                    ddp=trainer.is_ddp)
    if trainer.label_manager.has_regions:
        loss = RegionClDiceLoss(**settings)
    else:
        loss = SoftClDiceLoss(**settings, ignore_label=trainer.label_manager.ignore_label)
    return LossTerm(loss, weight, "labels")


class nnUNetTrainerClDice(ExtTrainerBase):
    """nnU-Net's CE + Dice plus soft clDice (weight 1, k = 3 iterations)."""

    cldice_weight: float = 1.0
    cldice_iterations: int = 3

    def extra_loss_terms(self) -> list[LossTerm]:
        return [cldice_term(self, self.cldice_weight, self.cldice_iterations)]


class nnUNetTrainerClDice_w0p5(nnUNetTrainerClDice):
    cldice_weight = 0.5


class nnUNetTrainerClDice_w2(nnUNetTrainerClDice):
    cldice_weight = 2.0
