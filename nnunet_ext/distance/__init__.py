"""Exact Euclidean distance transforms: torch (on the training device, no sync) and numpy (data pipeline)."""

from nnunet_ext.distance.label_fields import boundary_distance_field, class_boundary_distances
from nnunet_ext.distance.torch_edt import boundary_distance, euclidean_distance_transform

__all__ = ["boundary_distance", "boundary_distance_field", "class_boundary_distances", "euclidean_distance_transform"]
