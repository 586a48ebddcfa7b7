"""batchgenerators transforms of nnunet_ext (picklable; safe in spawn/fork workers)."""

from nnunet_ext.transforms.classic_skeleton_transform import ClassicSkeletonTransform
from nnunet_ext.transforms.distance_field_transform import DistanceFieldTransform, RegionDistanceFieldTransform
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform
from nnunet_ext.transforms.label_check_transform import LabelCheckTransform, LabelValueError
from nnunet_ext.transforms.region_skeleton_transform import RegionSkeletonTransform
from nnunet_ext.transforms.skeleton_transform import SkeletonTransform
from nnunet_ext.transforms.unet_weight_map_transform import UNetWeightMapTransform

__all__ = [
    "ClassicSkeletonTransform",
    "DistanceFieldTransform",
    "ExtraTargetTransform",
    "LabelCheckTransform",
    "LabelValueError",
    "RegionDistanceFieldTransform",
    "RegionSkeletonTransform",
    "SkeletonTransform",
    "UNetWeightMapTransform",
]
