"""Losses of nnunet_ext (torch only; usable without nnU-Net)."""

from nnunet_ext.losses.compound import CompoundLoss, LossTerm, channel_index
from nnunet_ext.losses.skeleton_recall import SoftSkeletonRecallLoss

__all__ = ["CompoundLoss", "LossTerm", "SoftSkeletonRecallLoss", "channel_index"]
