"""The U-Net paper's pixel-weighted cross entropy (Ronneberger et al., MICCAI 2015) on stock nnU-Net:
weighted CE + nnU-Net's Dice.

The weight map ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` (class balance plus a border term in the thin
background gaps between touching objects) is computed in the data-loader workers and rides along in the target
as the ``weights`` block. nnU-Net's cross entropy is replaced by ``mean(w * CE)``; its Dice term is kept. For
touching instances (cells, glands, nuclei) whose separating background must not be lost. w0 = 10, sigma = 5
voxels (the paper); change ``unet_w0`` / ``unet_sigma`` in a subclass. Region-based datasets are refused.
"""

from __future__ import annotations

from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from torch import nn

from nnunet_ext.losses import LossTerm, WeightedCrossEntropyLoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase
from nnunet_ext.trainers.weight_map_target_mixin import WeightMapTargetMixin


class nnUNetTrainerUNetWeightedCE(WeightMapTargetMixin, ExtTrainerBase):
    """nnU-Net's Dice plus the U-Net weight-map cross entropy (w0 = 10, sigma = 5) instead of its plain CE."""

    def adjust_nnunet_loss(self, loss: nn.Module) -> None:
        if not isinstance(loss, DC_and_CE_loss):
            raise TypeError(f"{type(self).__name__} replaces the cross entropy of nnU-Net's DC_and_CE_loss, but "
                            f"nnU-Net built a {type(loss).__name__}")
        loss.weight_ce = 0  # nnU-Net's Dice alone: DC_and_CE_loss skips its CE when weight_ce == 0
        self.print_to_log_file("nnunet_ext: nnU-Net's cross entropy replaced by WeightedCrossEntropyLoss "
                               "(DC_and_CE_loss.weight_ce = 0, its Dice kept)")

    def extra_loss_terms(self) -> list[LossTerm]:
        weighted = WeightedCrossEntropyLoss(ignore_label=self.label_manager.ignore_label)
        return [LossTerm(weighted, 1.0, ("labels", "weights"))]
