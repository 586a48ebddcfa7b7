"""clCE (Acebes et al., MICCAI 2024) on stock nnU-Net: CE + Dice + λ * clCE.

The authors train ``CE + clCE`` or ``Dice + clCE`` (weights 1 and 1, no deep supervision); we keep nnU-Net's
CE + Dice and add clCE with λ = 1, the authors' weight, at every deep-supervision scale. k = 3 soft-skeleton
iterations as in their code. Change them without editing this file: a subclass in your own
nnUNet_extTrainer folder setting ``clce_weight`` or ``clce_iterations``.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.losses import ClCELoss, LossTerm, RegionClCELoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase


def clce_term(trainer: nnUNetTrainer, weight: float, iterations: int = 3) -> LossTerm:
    """A clCE loss term configured from a trainer's plans (batch_dice, DDP, ignore label, regions)."""
    settings = dict(iterations=iterations, batch_dice=trainer.configuration_manager.batch_dice, ddp=trainer.is_ddp)
    if trainer.label_manager.has_regions:
        loss = RegionClCELoss(**settings)
    else:
        loss = ClCELoss(**settings, ignore_label=trainer.label_manager.ignore_label)
    return LossTerm(loss, weight, "labels")


class nnUNetTrainerClCE(ExtTrainerBase):
    """nnU-Net's CE + Dice plus clCE (weight 1, k = 3 soft-skeleton iterations)."""

    clce_weight: float = 1.0
    clce_iterations: int = 3

    def extra_loss_terms(self) -> list[LossTerm]:
        return [clce_term(self, self.clce_weight, self.clce_iterations)]
