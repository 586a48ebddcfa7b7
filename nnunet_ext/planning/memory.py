"""nnU-Net's memory reference: planner units of a patch and batch, in GB of GPU memory.

nnU-Net's ``ExperimentPlanner`` compares ``network.compute_conv_feature_map_size(patch)`` (units per sample,
see ``nnunet_ext.networks.feature_map_size``) with reference values calibrated on PlainConvUNet: a plan fits
the memory target ``T`` GB when ``units * batch_size <= reference * reference_batch * T / 8``. The reference
values below are ``ExperimentPlanner``'s (``UNet_reference_val_2d/3d``, ``..._corresp_bs_2d/3d``,
``..._corresp_GB``); a test checks them against the installed nnU-Net.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

REFERENCE_UNITS = {2: 85_000_000, 3: 560_000_000}
REFERENCE_BATCH = {2: 12, 3: 2}
REFERENCE_GB = 8.0
MIN_BATCH_SIZE = 2  # ExperimentPlanner.UNet_min_batch_size
DEFAULT_TARGET_GB = 8.0  # nnU-Net's default gpu_memory_target_in_gb
PLANS_KEY = "nnunet_ext"  # extra top-level key of plans written by plan-network: network, memory target


def budget_units(dim: int, target_gb: float) -> float:
    """Units (per sample times batch size) that fill ``target_gb`` for a ``dim``-D plan."""
    return REFERENCE_UNITS[dim] * REFERENCE_BATCH[dim] * target_gb / REFERENCE_GB


def estimated_gb(units_per_sample: float, batch_size: int, dim: int) -> float:
    """GPU memory (GB) nnU-Net's reference ascribes to ``batch_size`` samples of ``units_per_sample``."""
    return units_per_sample * batch_size / budget_units(dim, REFERENCE_GB) * REFERENCE_GB


def feature_map_units(network_class_name: str, arch_kwargs: dict, requires_import: Sequence[str],
                      patch_size: Sequence[int], input_channels: int = 1, output_channels: int = 2) -> float:
    """``compute_conv_feature_map_size(patch_size)`` of a network described by plans' architecture entries.

    The network is built on PyTorch's meta device (no memory, no initialisation), without deep
    supervision as nnU-Net's planner builds it.
    """
    with torch.device("meta"):
        network = get_network_from_plans(network_class_name, arch_kwargs, list(requires_import), input_channels,
                                         output_channels, allow_init=False)
    return float(network.compute_conv_feature_map_size(list(patch_size)))
