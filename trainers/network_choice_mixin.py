"""Trainer mixin: build one of our plans-driven networks instead of nnU-Net's PlainConvUNet.

The network is built from the plans' ``arch_kwargs`` (the PlainConvUNet description nnU-Net
planned: stages, features, kernels, strides, norm, nonlin) plus the network's own keyword
arguments, through nnU-Net's own ``get_network_from_plans`` (so nnU-Net's initialisation applies).
``build_network_architecture`` is the hook nnU-Net calls for training *and* for
``nnUNetv2_predict`` (with deep supervision off), so the same class rebuilds the same network.

Mix in before the nnU-Net trainer (or before a loss trainer such as Skeleton Recall):
``class T(UNet3PlusNetworkMixin, nnUNetTrainerSkeletonRecall)``.
"""

from __future__ import annotations

from typing import ClassVar

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_ext.networks.plans_network import PlansNetwork, stage_layout

_PLAIN_UNET_KWARGS = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage",
                      "n_conv_per_stage_decoder")


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


class PlansNetworkMixin:
    """Builds ``network_class(**plans arch_kwargs, **network_kwargs())``; subclasses set both."""

    network_class: ClassVar[type[PlansNetwork]]

    @classmethod
    def network_kwargs(cls) -> dict:
        """The network's own keyword arguments (beyond PlainConvUNet's)."""
        return {}

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        check_plans_for_network(configuration_manager, cls.network_class.__name__)
        arch_kwargs = {**configuration_manager.network_arch_init_kwargs, **cls.network_kwargs()}
        class_path = f"{cls.network_class.__module__}.{cls.network_class.__qualname__}"
        requires_import = configuration_manager.network_arch_init_kwargs_req_import
        return get_network_from_plans(class_path, arch_kwargs, requires_import, num_input_channels, num_output_channels,
                                      allow_init=True, deep_supervision=enable_deep_supervision)

    def initialize(self) -> None:
        super().initialize()
        self.print_to_log_file(f"nnunet_ext network: {self.network_class.__name__} from the plans' "
                               f"{self.configuration_name} architecture, own arguments {self.network_kwargs()}")
