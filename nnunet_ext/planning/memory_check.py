"""Does a network fit the memory its plans were made for? The check our network trainers run in ``initialize``.

The estimate is nnU-Net's (``compute_conv_feature_map_size`` of the network at the plans' patch, times the
batch size, in GB by nnU-Net's reference). The target is the one the plans were made for:

* plans written by ``nnunet-ext plan-network``: the target recorded under ``"nnunet_ext"``;
* nnU-Net's PlainConvUNet plans (``nnUNetPlans``): what nnU-Net planned PlainConvUNet for, i.e. its own
  estimate on these plans, at least nnU-Net's default 8 GB (plans made with a larger
  ``-gpu_memory_target`` get a larger target);
* anything else: nnU-Net's default 8 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import nn

from nnunet_ext.planning.memory import (
    DEFAULT_TARGET_GB,
    PLANS_KEY,
    estimated_gb,
    feature_map_units,
)
from nnunet_ext.planning.networks import PLAIN_CONV_UNET, network_for_class


class PlansMemoryError(RuntimeError):
    """The network needs far more memory on these plans than they were made for."""


@dataclass(frozen=True)
class PlansMemoryEstimate:
    """nnU-Net's memory estimate of a network on a configuration, and the target of those plans."""

    units_per_sample: float
    batch_size: int
    patch_size: tuple[int, ...]
    target_gb: float
    target_source: str

    @property
    def gb(self) -> float:
        return estimated_gb(self.units_per_sample, self.batch_size, len(self.patch_size))

    @property
    def times_target(self) -> float:
        return self.gb / self.target_gb


def plans_target_gb(plans: dict, arch_class_name: str, arch_kwargs: dict, requires_import: Sequence[str],
                    patch_size: Sequence[int], batch_size: int) -> tuple[float, str]:
    """The memory target (GB) a configuration was planned for, and where that number comes from."""
    recorded = plans.get(PLANS_KEY, {}).get("gpu_memory_target_gb")
    if recorded is not None:
        return float(recorded), "recorded by nnunet-ext plan-network"
    if arch_class_name == PLAIN_CONV_UNET:
        plain = estimated_gb(feature_map_units(arch_class_name, arch_kwargs, requires_import, patch_size),
                             batch_size, len(patch_size))
        return max(DEFAULT_TARGET_GB, plain), "what nnU-Net planned its PlainConvUNet for"
    return DEFAULT_TARGET_GB, "nnU-Net's default target"


def estimate_plans_memory(network: nn.Module, plans: dict, configuration_manager: ConfigurationManager,
                          batch_size: int) -> PlansMemoryEstimate:
    """Estimate ``network`` (built from the configuration, e.g. on the meta device) at the plans' patch."""
    patch = tuple(int(v) for v in configuration_manager.patch_size)
    target, source = plans_target_gb(plans, configuration_manager.network_arch_class_name,
                                     configuration_manager.network_arch_init_kwargs,
                                     configuration_manager.network_arch_init_kwargs_req_import, patch,
                                     configuration_manager.batch_size)
    return PlansMemoryEstimate(float(network.compute_conv_feature_map_size(list(patch))), int(batch_size), patch,
                               target, source)


def describe_network(network: nn.Module) -> str:
    """``UNet3Plus (cat_channels 64)``: the class and its planned width."""
    entry = network_for_class(type(network))
    name = type(network).__name__
    return name if entry is None else f"{name} ({entry.width_key} {getattr(network, entry.width_key)})"


def refusal_message(trainer_name: str, network: nn.Module, plans: dict, configuration_name: str,
                    estimate: PlansMemoryEstimate, limit: float) -> str:
    """Why the trainer stops, and the two commands that fix it."""
    entry = network_for_class(type(network))
    network_name = entry.name if entry is not None else type(network).__name__
    plans_name = entry.plans_identifier if entry is not None else f"nnUNetPlans{network_name}"
    dataset_id = convert_dataset_name_to_id(plans["dataset_name"])
    return (f"{trainer_name}: {describe_network(network)} on plans {plans['plans_name']!r}, configuration "
            f"{configuration_name!r} (patch {'x'.join(map(str, estimate.patch_size))}, batch {estimate.batch_size}) "
            f"needs about {estimate.gb:.1f} GB of GPU memory by nnU-Net's estimate, {estimate.times_target:.1f}x the "
            f"{estimate.target_gb:.1f} GB these plans were made for ({estimate.target_source}; the limit is "
            f"{limit:g}x). Plan the network for this dataset with `nnunet-ext plan-network -d {dataset_id} -n "
            f"{network_name}` and train with `-p {plans_name}`; to train on these plans anyway, set "
            f"max_memory_over_target = None in a subclass of {trainer_name}.")
