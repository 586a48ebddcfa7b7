"""nnU-Net experiment planner for UNet 3+ / U-Net v2 on top of nnU-Net's default plans.

``NetworkPlanner`` is an ``ExperimentPlanner`` whose memory estimate is our network's
``compute_conv_feature_map_size`` (built on the meta device, so the estimate costs no memory). It starts from
the dataset's ``nnUNetPlans.json`` and keeps every configuration's data (data_identifier, spacing,
normalization, resampling, batch_dice, cascade links), so ``nnUNetv2_preprocess``'s output is shared. Per
configuration it changes only ``patch_size``, ``batch_size`` and ``architecture``, by this policy:

1. Keep nnU-Net's patch size and network topology if the network fits the memory target there at the
   minimum batch size 2 with some width: the widest of ``PlannableNetwork.widths`` (the paper's value
   first, down to a floor) that fits.
2. Otherwise take the floor width and let nnU-Net's own patch-size search (``get_plans_for_configuration``)
   shrink the patch with our estimate, exactly as the residual-encoder planners do with theirs.

The batch size is then the largest that fits the target, at least 2 and at most the batch size nnU-Net
chose for that patch (nnU-Net's plan in case 1, its search in case 2: both carry nnU-Net's cap of 5% of the
dataset per step). nnU-Net rounds ``budget / estimate`` to the nearest integer, which can exceed the target
by half a sample; we round down, so a plan's estimate never exceeds the target. When even the smallest patch
nnU-Net's search may try (one with ``MIN_STAGES`` resolution stages) does not fit at batch 2, ``plan_experiment``
raises ``TargetTooSmall`` with the smallest target that fits each such configuration.

Patch size (the context a thin structure needs) comes first, then width, then batch size, which is the
order nnU-Net itself uses: its planners shrink the patch only until the minimum batch size fits and
spend what is left on the batch.
"""

from __future__ import annotations

import os
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.networks.plans_network import MIN_STAGES
from nnunet_ext.planning.memory import MIN_BATCH_SIZE, PLANS_KEY, budget_units, estimated_gb
from nnunet_ext.planning.networks import NNUNET_PLANS, PLAIN_CONV_UNET, PlannableNetwork

PLANNED_KEYS = ("patch_size", "batch_size", "architecture")


class TargetTooSmall(Exception):
    """No plan fits the memory target: ``minimum_gb`` maps each configuration that does not fit to the smallest
    target (GB) at which nnU-Net's patch search finds a patch for it."""

    def __init__(self, minimum_gb: dict[str, float]) -> None:
        super().__init__(f"no plan fits the memory target; smallest targets: {minimum_gb}")
        self.minimum_gb = minimum_gb


class _PatchSearchExhausted(Exception):
    """nnU-Net's patch search shrank the patch below ``MIN_STAGES`` resolution stages without fitting; the
    argument is the smallest estimate (units per sample) the search saw. (Its first patch has at least as many
    stages as nnU-Net's own plan, which ``plan_configuration`` has estimated before.)"""


@dataclass(frozen=True)
class ConfigurationPlan:
    """What the planner decided for one configuration (for the command's summary)."""

    name: str
    nnunet_patch_size: tuple[int, ...]
    nnunet_batch_size: int
    patch_size: tuple[int, ...]
    batch_size: int
    width: int
    estimated_gb: float

    @property
    def kept_patch(self) -> bool:
        return self.patch_size == self.nnunet_patch_size


def fitting_batch(budget: float, units_per_sample: float, nnunet_batch: int) -> int:
    """The largest batch size whose estimate fits ``budget``, clipped to [2, ``nnunet_batch``]."""
    return max(MIN_BATCH_SIZE, min(nnunet_batch, int(budget // units_per_sample)))


def configurations_with_dependencies(configurations: dict, selected: list[str]) -> list[str]:
    """``selected`` plus the configurations they inherit from or cascade from, in the plans' order."""
    needed: set[str] = set()
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo += [configurations[name][key] for key in ("inherits_from", "previous_stage")
                 if key in configurations[name]]
    return [name for name in configurations if name in needed]


class NetworkPlanner(ExperimentPlanner):
    """Plans ``network`` on the dataset's nnU-Net default plans for ``gpu_memory_target_in_gb``.

    Needs what nnU-Net's planners need (``nnUNet_raw``'s dataset.json, the fingerprint) and
    ``nnUNetPlans.json`` in ``nnUNet_preprocessed``. ``plan_experiment()`` returns the plans;
    ``save_plans(plans)`` writes ``nnUNetPlans<Network>.json`` next to nnU-Net's.
    """

    def __init__(self, dataset_name_or_id: str | int, network: PlannableNetwork,
                 gpu_memory_target_in_gb: float = 8.0, configurations: list[str] | None = None) -> None:
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, plans_name=network.plans_identifier)
        self.network = network
        self.UNet_class = network.network_class  # what nnU-Net's patch-size search builds and estimates
        self.width = network.widths[0]
        self.nnunet_plans = load_json(str(self.preprocessed_folder / f"{NNUNET_PLANS}.json"))
        names = list(self.nnunet_plans["configurations"])
        self.configuration_names = configurations_with_dependencies(self.nnunet_plans["configurations"],
                                                                    configurations or names)
        self.decisions: list[ConfigurationPlan] = []
        self._search_estimates: list[float] | None = None  # estimates of nnU-Net's patch search, while it runs

    @property
    def preprocessed_folder(self) -> Path:
        return Path(os.environ["nnUNet_preprocessed"]) / self.dataset_name

    @property
    def plans_file(self) -> Path:
        return self.preprocessed_folder / f"{self.plans_identifier}.json"

    def static_estimate_VRAM_usage(self, patch_size: tuple[int, ...], input_channels: int, output_channels: int,
                                   arch_class_name: str, arch_kwargs: dict,
                                   arch_kwargs_req_import: tuple[str, ...]) -> float:
        """nnU-Net's estimate (``compute_conv_feature_map_size`` of the built network) for our network at the
        current width, built on the meta device. nnU-Net's patch-size search calls it through ``self``."""
        if self._search_estimates is not None and arch_kwargs["n_stages"] < MIN_STAGES:
            raise _PatchSearchExhausted(min(self._search_estimates))
        with torch.device("meta"):
            units = float(super().static_estimate_VRAM_usage(
                patch_size, input_channels, output_channels, arch_class_name,
                {**arch_kwargs, self.network.width_key: self.width}, arch_kwargs_req_import))
        if self._search_estimates is not None:
            self._search_estimates.append(units)
        return units

    def _estimate(self, patch_size: list[int], arch_kwargs: dict, requires_import: tuple[str, ...]) -> float:
        return self.static_estimate_VRAM_usage(patch_size, len(self.dataset_json["channel_names"]),
                                               len(self.dataset_json["labels"]), self.network.class_path,
                                               arch_kwargs, requires_import)

    def _dataset_voxels(self, configuration: dict) -> float:
        """Voxels of the training set at the configuration's spacing (for nnU-Net's 5% batch cap); a 2d
        configuration counts the 3D volumes, as nnU-Net does."""
        shape = configuration["median_image_size_in_voxels"]
        if len(shape) == 2 and "3d_fullres" in self.nnunet_plans["configurations"]:
            shape = PlansManager(self.nnunet_plans).get_configuration("3d_fullres").median_image_size_in_voxels
        return float(np.prod(shape, dtype=np.float64)) * self.dataset_json["numTraining"]

    def plan_configuration(self, name: str, configuration: dict) -> dict:
        """``patch_size``, ``batch_size`` and ``architecture`` for a resolved nnU-Net configuration."""
        architecture = configuration["architecture"]
        if architecture["network_class_name"] != PLAIN_CONV_UNET:
            raise ValueError(f"{NNUNET_PLANS}.json's configuration {name!r} uses {architecture['network_class_name']}, "
                             f"not nnU-Net's default PlainConvUNet; re-create it with nnUNetv2_plan_experiment")
        dim = len(configuration["patch_size"])
        budget = budget_units(dim, self.UNet_vram_target_GB)
        patch, nnunet_batch = list(configuration["patch_size"]), int(configuration["batch_size"])
        requires_import = tuple(architecture["_kw_requires_import"])
        for width in self.network.widths:
            self.width = width
            units = self._estimate(patch, architecture["arch_kwargs"], requires_import)
            if units * MIN_BATCH_SIZE <= budget:
                return self._planned(name, configuration, patch, fitting_batch(budget, units, nnunet_batch),
                                     architecture, units)
        searched = self._search_patch(configuration)
        patch = [int(v) for v in searched["patch_size"]]
        searched_architecture = {**searched["architecture"], "network_class_name": self.network.class_path}
        units = self._estimate(patch, searched_architecture["arch_kwargs"], requires_import)
        return self._planned(name, configuration, patch, fitting_batch(budget, units, int(searched["batch_size"])),
                             searched_architecture, units)

    def _search_patch(self, configuration: dict) -> dict:
        """nnU-Net's patch-size search with our estimate (``_PatchSearchExhausted`` when no patch fits)."""
        self._search_estimates = []
        try:
            return super().get_plans_for_configuration(
                np.array(configuration["spacing"]), np.array(configuration["median_image_size_in_voxels"]),
                configuration["data_identifier"], self._dataset_voxels(configuration), {})
        finally:
            self._search_estimates = None

    def _planned(self, name: str, configuration: dict, patch: list[int], batch: int, architecture: dict,
                 units: float) -> dict:
        architecture = deepcopy(architecture)
        architecture["network_class_name"] = self.network.class_path
        architecture["arch_kwargs"][self.network.width_key] = self.width
        self.decisions.append(ConfigurationPlan(
            name, tuple(configuration["patch_size"]), int(configuration["batch_size"]), tuple(int(v) for v in patch),
            batch, self.width, estimated_gb(units, batch, len(patch))))
        return {"patch_size": [int(v) for v in patch], "batch_size": int(batch), "architecture": architecture}

    def plan_experiment(self) -> dict:
        """nnU-Net's plans with every selected configuration re-planned for the network; not written.

        Raises ``TargetTooSmall`` (after trying every configuration) if some configuration fits no patch."""
        plans = deepcopy(self.nnunet_plans)
        manager = PlansManager(self.nnunet_plans)
        kept, too_small = {}, {}
        for name in self.configuration_names:
            configuration = plans["configurations"][name]
            overrides_planned_keys = any(key in configuration for key in PLANNED_KEYS)
            if "inherits_from" not in configuration or overrides_planned_keys:
                resolved = manager.get_configuration(name).configuration
                try:
                    configuration.update(self.plan_configuration(name, resolved))
                except _PatchSearchExhausted as exhausted:
                    (smallest_units,) = exhausted.args
                    too_small[name] = estimated_gb(smallest_units, MIN_BATCH_SIZE, len(resolved["patch_size"]))
            kept[name] = configuration
        if too_small:
            raise TargetTooSmall(too_small)
        for configuration in kept.values():  # drop links to cascade stages that were not selected
            if "next_stage" in configuration:
                stages = configuration["next_stage"]
                stages = [s for s in ([stages] if isinstance(stages, str) else stages) if s in kept]
                if stages:
                    configuration["next_stage"] = stages[0] if len(stages) == 1 else stages
                else:
                    del configuration["next_stage"]
        plans.update(configurations=kept, plans_name=self.plans_identifier,
                     experiment_planner_used=type(self).__name__)
        plans[PLANS_KEY] = {"network": self.network.name, "gpu_memory_target_gb": float(self.UNet_vram_target_GB),
                            "planned_from": NNUNET_PLANS}
        recursive_fix_for_json_export(plans)
        self.plans = plans
        return plans

    def save_plans(self, plans: dict) -> None:
        """Write ``plans`` to ``nnUNetPlans<Network>.json``, replacing the file if it exists."""
        save_json(plans, str(self.plans_file), sort_keys=False)
