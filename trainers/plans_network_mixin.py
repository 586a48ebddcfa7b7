"""Trainer mixin: build one of our plans-driven networks instead of nnU-Net's PlainConvUNet.

The network is built from the plans' ``arch_kwargs`` (the PlainConvUNet description nnU-Net
planned: stages, features, kernels, strides, norm, nonlin) plus the network's own keyword
arguments, through nnU-Net's own ``get_network_from_plans`` (so nnU-Net's initialisation applies).
``build_network_architecture`` is the hook nnU-Net calls for training *and* for
``nnUNetv2_predict`` (with deep supervision off), so the same class rebuilds the same network.

The network's own width (``cat_channels``, ``sdi_channels``) comes from the plans when they carry it
(plans written by ``nnunet-ext plan-network``), else from the network's default (the paper's); a trainer
subclass that sets its class attribute (``unet3plus_cat_channels``, ``unetv2_sdi_channels``) overrides both.

Before nnU-Net builds the network, ``initialize`` estimates its memory on the plans' patch and batch the
way nnU-Net's planner does and stops with a ``PlansMemoryError`` naming ``nnunet-ext plan-network`` if it is
more than ``max_memory_over_target`` (2) times the memory the plans were made for
(``nnunet_ext.planning.memory_check``); set ``max_memory_over_target = None`` in a subclass to skip the check.

Mix in before the nnU-Net trainer (or before a loss trainer such as Skeleton Recall):
``class T(UNet3PlusNetworkMixin, nnUNetTrainerSkeletonRecall)``.
"""

from __future__ import annotations

import inspect
import math
from typing import ClassVar

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import distributed, nn
from torch.nn.parallel import DistributedDataParallel

from nnunet_ext.networks.plans_network import PlansNetwork, stage_layout
from nnunet_ext.planning.memory_check import (
    PlansMemoryError,
    PlansMemoryEstimate,
    describe_network,
    estimate_plans_memory,
    refusal_message,
)

_PLAIN_UNET_KWARGS = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage",
                      "n_conv_per_stage_decoder")
# Every argument of PlainConvUNet (= PlansNetwork) a plans' arch_kwargs may carry.
_PLANS_NETWORK_KWARGS = frozenset(inspect.signature(PlansNetwork.__init__).parameters) - {"self"}


def check_plans_for_network(configuration_manager: ConfigurationManager, network_name: str) -> None:
    """ValueError unless the configuration describes a PlainConvUNet whose patch size fits its strides."""
    arch_kwargs = configuration_manager.network_arch_init_kwargs
    missing = [k for k in _PLAIN_UNET_KWARGS if k not in arch_kwargs]
    if missing:
        raise ValueError(
            f"{network_name} is built from PlainConvUNet plans (nnUNetPlans), but this configuration's architecture "
            f"{configuration_manager.network_arch_class_name} has no {missing} in its arch_kwargs (residual-encoder "
            f"plans use n_blocks_per_stage). Plan the dataset with the default planner (nnUNetv2_plan_and_preprocess "
            f"without -pl) and train with that plans identifier.")
    conv_op = {"2": nn.Conv2d, "3": nn.Conv3d}.get(str(len(configuration_manager.patch_size)))
    layout = stage_layout(arch_kwargs["n_stages"], arch_kwargs["features_per_stage"], conv_op,
                          arch_kwargs["kernel_sizes"], arch_kwargs["strides"])
    layout.check_spatial_size(configuration_manager.patch_size, what="the plans' patch size")


def bare_network(network: nn.Module) -> nn.Module:
    """The module itself under nnU-Net's DDP and torch.compile wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    return getattr(network, "_orig_mod", network)


class PlansNetworkMixin:
    """Builds ``network_class`` from the plans' arch_kwargs and ``network_kwargs()``; subclasses set both.

    ``max_memory_over_target``: ``initialize`` refuses plans on which the network's estimated memory exceeds
    this multiple of the plans' memory target; None skips the check.
    """

    network_class: ClassVar[type[PlansNetwork]]
    max_memory_over_target: ClassVar[float | None] = 2.0

    @classmethod
    def network_kwargs(cls) -> dict:
        """The network's own keyword arguments set by the trainer class; they override the plans'."""
        return {}

    @classmethod
    def network_arch_kwargs(cls, configuration_manager: ConfigurationManager) -> dict:
        """The plans' PlainConvUNet arguments and this network's own (``network_class.plans_kwargs``), then
        ``network_kwargs()``. Another network's arguments (UNet 3+ plans for U-Net v2) are left out."""
        accepted = _PLANS_NETWORK_KWARGS | set(cls.network_class.plans_kwargs)
        from_plans = {k: v for k, v in configuration_manager.network_arch_init_kwargs.items() if k in accepted}
        return {**from_plans, **cls.network_kwargs()}

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        check_plans_for_network(configuration_manager, cls.network_class.__name__)
        class_path = f"{cls.network_class.__module__}.{cls.network_class.__qualname__}"
        requires_import = configuration_manager.network_arch_init_kwargs_req_import
        return get_network_from_plans(class_path, cls.network_arch_kwargs(configuration_manager), requires_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    def plans_memory_estimate(self) -> tuple[nn.Module, PlansMemoryEstimate]:
        """The network built on the meta device (no memory) and nnU-Net's estimate of it on the plans' patch
        and this process's batch (under DDP the plans' batch is split over the processes)."""
        with torch.device("meta"):
            network = self.build_network_architecture(
                self.plans_manager, self.configuration_manager,
                determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json),
                self.label_manager.num_segmentation_heads, False)
        batch = self.configuration_manager.batch_size
        if self.is_ddp:
            batch = math.ceil(batch / distributed.get_world_size())
        return network, estimate_plans_memory(network, self.plans_manager.plans, self.configuration_manager, batch)

    def initialize(self) -> None:
        estimate = None
        if not self.was_initialized and self.max_memory_over_target is not None:
            network, estimate = self.plans_memory_estimate()
            if estimate.times_target > self.max_memory_over_target:
                raise PlansMemoryError(refusal_message(type(self).__name__, network, self.plans_manager.plans,
                                                       self.configuration_name, estimate, self.max_memory_over_target))
        super().initialize()
        self.print_to_log_file(f"nnunet_ext network: {describe_network(bare_network(self.network))} from the plans' "
                               f"{self.configuration_name} architecture (trainer overrides: {self.network_kwargs()})")
        if estimate is not None:
            note = " - above the target, expect to run out of GPU memory" if estimate.times_target > 1 else ""
            self.print_to_log_file(f"nnunet_ext memory estimate: {estimate.gb:.1f} GB for batch {estimate.batch_size}, "
                                   f"target {estimate.target_gb:.1f} GB ({estimate.target_source}){note}")
