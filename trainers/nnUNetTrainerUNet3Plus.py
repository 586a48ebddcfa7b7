"""UNet 3+ (Huang et al., ICASSP 2020) built from the nnU-Net plans, with nnU-Net's or our losses.

- ``nnUNetTrainerUNet3Plus``: UNet 3+ with nnU-Net's CE + Dice at every decoder stage (full-scale
  deep supervision restricted to nnU-Net's scales).
- ``nnUNetTrainerUNet3PlusCGM``: with the classification-guided module and the paper's hybrid loss
  (focal + MS-SSIM + IoU at every scale, plus the CGM's BCE once per step).
- ``nnUNetTrainerUNet3PlusSkeletonRecall``: UNet 3+ with the Skeleton Recall loss.

``cat_channels`` comes from the plans (``nnunet-ext plan-network -n UNet3Plus`` writes the width that fits
the GPU memory target), else it is the paper's 64. To force a width, set the class attribute
``unet3plus_cat_channels`` in a subclass in your own nnUNet_extTrainer folder.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from nnunet_ext.losses import ClassificationGuidedLoss, HybridLoss
from nnunet_ext.networks import UNet3Plus
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase
from nnunet_ext.trainers.nnUNetTrainerSkeletonRecall import nnUNetTrainerSkeletonRecall
from nnunet_ext.trainers.plans_network_mixin import PlansNetworkMixin, bare_network
from nnunet_ext.trainers.region_checks import RegionDefinitionError


class UNet3PlusNetworkMixin(PlansNetworkMixin):
    """Network choice: UNet 3+ from the plans; ``unet3plus_cat_channels`` (None: the plans' value, else 64)."""

    network_class = UNet3Plus
    unet3plus_cat_channels: ClassVar[int | None] = None

    @classmethod
    def network_kwargs(cls) -> dict:
        return {} if cls.unet3plus_cat_channels is None else {"cat_channels": cls.unet3plus_cat_channels}


class nnUNetTrainerUNet3Plus(UNet3PlusNetworkMixin, ExtTrainerBase):
    """UNet 3+ trained with nnU-Net's CE + Dice."""


class nnUNetTrainerUNet3PlusSkeletonRecall(UNet3PlusNetworkMixin, nnUNetTrainerSkeletonRecall):
    """UNet 3+ trained with CE + Dice + Skeleton Recall."""


class nnUNetTrainerUNet3PlusCGM(UNet3PlusNetworkMixin, ExtTrainerBase):
    """UNet 3+ with the CGM, trained with the hybrid loss (focal + MS-SSIM + IoU) and the CGM's BCE.

    The CGM suppresses the segmentation of patches it classifies as empty at inference (eval mode). The loss
    reads the classification logits the network stores on itself in forward, also under torch.compile.
    """

    cgm_weight: ClassVar[float] = 1.0

    @classmethod
    def network_kwargs(cls) -> dict:
        return {**super().network_kwargs(), "cgm": True}

    def replacement_base_loss(self) -> nn.Module:
        if self.label_manager.has_regions:
            raise RegionDefinitionError(
                f"{type(self).__name__} does not support region-based training (dataset.json 'regions'): the "
                "classification-guided module and the hybrid loss need softmax outputs with a background channel. "
                "Use nnUNetTrainerUNet3Plus or nnUNetTrainerUNet3PlusSkeletonRecall for this dataset")
        return HybridLoss(batch_dice=self.configuration_manager.batch_dice,
                          ignore_label=self.label_manager.ignore_label, ddp=self.is_ddp)

    def _build_loss(self) -> nn.Module:
        network = bare_network(self.network)
        return ClassificationGuidedLoss(super()._build_loss(), lambda: network.classification_logits,
                                        weight=self.cgm_weight, ignore_label=self.label_manager.ignore_label)
