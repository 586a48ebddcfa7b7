"""Networks built from nnU-Net plans (PlainConvUNet's constructor arguments), 2D and 3D."""

from nnunet_ext.networks.plans_network import PlansNetwork, StageLayout, stage_layout
from nnunet_ext.networks.unet3plus import UNet3Plus
from nnunet_ext.networks.unetv2 import UNetV2

__all__ = ["PlansNetwork", "StageLayout", "UNet3Plus", "UNetV2", "stage_layout"]
