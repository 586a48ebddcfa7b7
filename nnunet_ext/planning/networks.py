"""The networks ``nnunet-ext plan-network`` plans: class, width argument, widths it may use, plans name.

Light on purpose (no torch import): the command checks its arguments against this registry first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

NNUNET_PLANS = "nnUNetPlans"  # nnU-Net's default plans: what plan-network starts from and shares data with
PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"  # their network


@dataclass(frozen=True)
class PlannableNetwork:
    """A plans-built network and the width the planner may lower to fit the memory target.

    ``widths`` run from the paper's value down to the floor the planner does not go below; the planner
    takes the widest one that fits nnU-Net's patch size (see ``nnunet_ext.planning.planner``).
    ``class_path`` is what plans name in ``network_class_name`` (the package's public path).
    """

    name: str
    class_path: str
    width_key: str
    widths: tuple[int, ...]
    trainer: str

    @property
    def network_class(self) -> type:
        module, _, name = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    @property
    def plans_identifier(self) -> str:
        """Plans name and file stem: ``nnUNetPlansUNet3Plus`` -> ``nnUNetPlansUNet3Plus.json``, ``-p`` of nnU-Net."""
        return f"{NNUNET_PLANS}{self.name}"


NETWORKS: dict[str, PlannableNetwork] = {
    "UNet3Plus": PlannableNetwork("UNet3Plus", "nnunet_ext.networks.UNet3Plus", "cat_channels", (64, 48, 32, 24, 16),
                                  "nnUNetTrainerUNet3Plus"),
    "UNetV2": PlannableNetwork("UNetV2", "nnunet_ext.networks.UNetV2", "sdi_channels", (32, 24, 16),
                               "nnUNetTrainerUNetV2"),
}


def network_for_class(network_class: type) -> PlannableNetwork | None:
    """The registry entry of ``network_class`` (or of the class it derives from), None if none."""
    return next((entry for entry in NETWORKS.values() if issubclass(network_class, entry.network_class)), None)
