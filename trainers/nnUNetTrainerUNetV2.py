"""U-Net v2 (Peng et al., 2023) built from the nnU-Net plans: SDI skips on nnU-Net's conv encoder.

- ``nnUNetTrainerUNetV2``: U-Net v2 with nnU-Net's CE + Dice at every deep-supervision scale.
- ``nnUNetTrainerUNetV2SkeletonRecall``: U-Net v2 with the Skeleton Recall loss.

``sdi_channels`` comes from the plans (``nnunet-ext plan-network -n UNetV2`` writes the width that fits
the GPU memory target), else it is the paper's c = 32. To force a width, set the class attribute
``unetv2_sdi_channels`` in a subclass in your own nnUNet_extTrainer folder.
"""

from __future__ import annotations

from typing import ClassVar

from nnunet_ext.networks import UNetV2
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase
from nnunet_ext.trainers.nnUNetTrainerSkeletonRecall import nnUNetTrainerSkeletonRecall
from nnunet_ext.trainers.plans_network_mixin import PlansNetworkMixin


class UNetV2NetworkMixin(PlansNetworkMixin):
    """Network choice: U-Net v2 from the plans; ``unetv2_sdi_channels`` (None: the plans' value, else 32)."""

    network_class = UNetV2
    unetv2_sdi_channels: ClassVar[int | None] = None

    @classmethod
    def network_kwargs(cls) -> dict:
        return {} if cls.unetv2_sdi_channels is None else {"sdi_channels": cls.unetv2_sdi_channels}


class nnUNetTrainerUNetV2(UNetV2NetworkMixin, ExtTrainerBase):
    """U-Net v2 trained with nnU-Net's CE + Dice."""


class nnUNetTrainerUNetV2SkeletonRecall(UNetV2NetworkMixin, nnUNetTrainerSkeletonRecall):
    """U-Net v2 trained with CE + Dice + Skeleton Recall."""
