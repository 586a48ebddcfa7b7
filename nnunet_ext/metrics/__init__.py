"""Topology-aware evaluation metrics for binary masks and label maps (2D and 3D).

Connectivity everywhere: foreground 8-connected in 2D / 26-connected in 3D,
background 4-connected in 2D / 6-connected in 3D.
"""

from nnunet_ext.metrics.betti import betti_errors, betti_numbers
from nnunet_ext.metrics.overlap import cldice, dice, hard_skeleton, pixel_error
from nnunet_ext.metrics.per_class import topology_metrics
from nnunet_ext.metrics.rand import rand_error, rand_scores
from nnunet_ext.metrics.simple_points import is_simple
from nnunet_ext.metrics.warping import warp_mask, warping_error

__all__ = [
    "betti_numbers",
    "betti_errors",
    "dice",
    "cldice",
    "hard_skeleton",
    "pixel_error",
    "rand_error",
    "rand_scores",
    "is_simple",
    "warp_mask",
    "warping_error",
    "topology_metrics",
]
