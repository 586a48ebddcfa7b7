"""Trainer mixin: the ground-truth boundary distance fields ride along in nnU-Net's target (``distance`` block).

Label maps: ``DistanceFieldTransform`` appends one field per foreground class (target: labels, C - 1 fields);
region-based training: ``RegionDistanceFieldTransform`` appends one field per region after nnU-Net's region
conversion (R regions, R fields). Distances are in mm: the configuration's spacing. The fields are computed with
the edt package in the data-loader workers, at full resolution, before nnU-Net's deep-supervision downsampling, which
samples them (nearest neighbour) at every output scale.

``distance_fields_on_device = True`` (a class attribute of the trainer) adds no block: the workers compute no
field, and the loss computes the fields of the labels it is given on the training device, at every scale from
that scale's (downsampled) labels.
"""

from __future__ import annotations

from nnunet_ext.trainers.extra_target_mixin import ExtraTargetMixin, TargetContext
from nnunet_ext.transforms import DistanceFieldTransform, RegionDistanceFieldTransform
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform


class DistanceTargetMixin(ExtraTargetMixin):
    """Adds the ``distance`` target block: ``DistanceFieldTransform`` (or ``RegionDistanceFieldTransform``),
    unless ``distance_fields_on_device``."""

    distance_fields_on_device: bool = False

    @classmethod
    def extra_target_transforms(cls, context: TargetContext) -> list[ExtraTargetTransform]:
        transforms = super().extra_target_transforms(context)
        if cls.distance_fields_on_device:
            return transforms
        if context.regions is not None:
            distance = RegionDistanceFieldTransform(len(context.regions), context.spacing)
        elif context.foreground_labels is None:
            raise ValueError(f"{cls.__name__} needs the dataset's foreground labels to build its distance fields (one "
                             "per class): pass foreground_labels= to get_training_transforms / "
                             "get_validation_transforms, as nnU-Net's get_dataloaders does")
        else:
            distance = DistanceFieldTransform(len(context.foreground_labels) + 1, context.spacing,
                                              context.ignore_label)
        return [*transforms, distance]
