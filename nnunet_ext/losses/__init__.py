"""Losses of nnunet_ext (torch only; usable without nnU-Net)."""

from nnunet_ext.losses.cbdice import CbDiceLoss, RegionCbDiceLoss
from nnunet_ext.losses.classification_guided import ClassificationGuidedLoss, patch_contains_foreground
from nnunet_ext.losses.clce import ClCELoss, RegionClCELoss
from nnunet_ext.losses.cldice import RegionClDiceLoss, SoftClDiceLoss, soft_cldice
from nnunet_ext.losses.combo import ComboLoss, RegionComboLoss
from nnunet_ext.losses.compound import CompoundLoss, LossTerm, channel_index
from nnunet_ext.losses.hybrid import HybridLoss, focal_loss, ms_ssim_loss, soft_iou_loss
from nnunet_ext.losses.ms_ssim import ms_ssim, ms_ssim_plan
from nnunet_ext.losses.skeleton_recall import RegionSkeletonRecallLoss, SoftSkeletonRecallLoss
from nnunet_ext.losses.soft_skeleton import soft_skeletonize

__all__ = [
    "CbDiceLoss",
    "ClCELoss",
    "ClassificationGuidedLoss",
    "ComboLoss",
    "CompoundLoss",
    "HybridLoss",
    "LossTerm",
    "RegionCbDiceLoss",
    "RegionClCELoss",
    "RegionClDiceLoss",
    "RegionComboLoss",
    "RegionSkeletonRecallLoss",
    "SoftClDiceLoss",
    "SoftSkeletonRecallLoss",
    "channel_index",
    "focal_loss",
    "ms_ssim",
    "ms_ssim_loss",
    "ms_ssim_plan",
    "patch_contains_foreground",
    "soft_cldice",
    "soft_iou_loss",
    "soft_skeletonize",
]
