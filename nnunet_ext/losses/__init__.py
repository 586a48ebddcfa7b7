"""Losses of nnunet_ext (torch only; usable without nnU-Net)."""

from nnunet_ext.losses.cldice import SoftClDiceLoss, soft_cldice
from nnunet_ext.losses.combo import ComboLoss
from nnunet_ext.losses.compound import CompoundLoss, LossTerm, channel_index
from nnunet_ext.losses.skeleton_recall import SoftSkeletonRecallLoss
from nnunet_ext.losses.soft_skeleton import soft_skeletonize

__all__ = [
    "ComboLoss",
    "CompoundLoss",
    "LossTerm",
    "SoftClDiceLoss",
    "SoftSkeletonRecallLoss",
    "channel_index",
    "soft_cldice",
    "soft_skeletonize",
]
