"""``nnunet-ext plan-network``: check the inputs, plan, write ``nnUNetPlans<Network>.json``.

Every check runs before anything is written (and before torch is imported); each failure is a
``PlanNetworkError`` with one line that names the fix and the command's exit code (2: a bad argument,
1: the dataset is not ready / the output exists).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_ext.planning.networks import NETWORKS, NNUNET_PLANS, PLAIN_CONV_UNET, PlannableNetwork

if TYPE_CHECKING:
    from nnunet_ext.planning.planner import ConfigurationPlan


class PlanNetworkError(Exception):
    """A refused ``plan-network`` call: ``str(error)`` is the message, ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _network(name: str) -> PlannableNetwork:
    if name not in NETWORKS:
        raise PlanNetworkError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}", 2)
    return NETWORKS[name]


def _check_target(target_gb: float) -> None:
    if not (math.isfinite(target_gb) and target_gb > 0):
        raise PlanNetworkError(f"--gpu-memory-target must be a positive number of GB (nnU-Net's default is 8), "
                               f"got {target_gb}", 2)


def _dataset_name(dataset: str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name  # noqa: PLC0415

    if not os.environ.get("nnUNet_preprocessed"):
        raise PlanNetworkError("nnUNet_preprocessed is not set; export nnUNet_preprocessed=/path/to/"
                               "nnUNet_preprocessed (the folder nnUNetv2_plan_and_preprocess wrote to)", 1)
    try:
        return maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError):
        raise PlanNetworkError(f"no dataset {dataset!r} in nnUNet_raw, nnUNet_preprocessed or nnUNet_results "
                               f"(nnUNet_preprocessed={os.environ['nnUNet_preprocessed']}); check the id and "
                               "these folders", 1) from None


def _check_dataset_files(dataset_name: str) -> Path:
    """The dataset's preprocessed folder, once nnU-Net's fingerprint, default plans and raw dataset.json exist."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id  # noqa: PLC0415

    dataset_id = convert_dataset_name_to_id(dataset_name)
    folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    if not (folder / "dataset_fingerprint.json").is_file():
        raise PlanNetworkError(f"{dataset_name} has no dataset_fingerprint.json in nnUNet_preprocessed yet; run "
                               f"`nnUNetv2_plan_and_preprocess -d {dataset_id}` (or `nnUNetv2_extract_fingerprint -d "
                               f"{dataset_id}` and `nnUNetv2_plan_experiment -d {dataset_id}`) first", 1)
    if not (folder / f"{NNUNET_PLANS}.json").is_file():
        raise PlanNetworkError(f"{dataset_name} has no {NNUNET_PLANS}.json yet (plan-network starts from nnU-Net's "
                               f"default plans); run `nnUNetv2_plan_experiment -d {dataset_id}` (or "
                               f"`nnUNetv2_plan_and_preprocess -d {dataset_id}`) first", 1)
    raw = os.environ.get("nnUNet_raw")
    if not raw or not (Path(raw) / dataset_name / "dataset.json").is_file():
        raise PlanNetworkError(f"nnUNet_raw/{dataset_name}/dataset.json not found (nnUNet_raw={raw}); nnU-Net's "
                               "planners, plan-network's included, read the raw dataset: export "
                               "nnUNet_raw=/path/to/nnUNet_raw", 1)
    return folder


def _check_configurations(folder: Path, configurations: list[str] | None) -> None:
    """Every requested configuration exists, and nnU-Net's plans describe its default PlainConvUNet."""
    from batchgenerators.utilities.file_and_folder_operations import load_json  # noqa: PLC0415

    available = load_json(str(folder / f"{NNUNET_PLANS}.json"))["configurations"]
    unknown = [c for c in configurations or [] if c not in available]
    if unknown:
        raise PlanNetworkError(f"configuration {unknown[0]!r} is not in {folder.name}'s {NNUNET_PLANS}.json; choose "
                               f"from: {', '.join(available)}", 2)
    for name, configuration in available.items():
        class_name = configuration.get("architecture", {}).get("network_class_name", PLAIN_CONV_UNET)
        if class_name != PLAIN_CONV_UNET:
            raise PlanNetworkError(f"{folder.name}'s {NNUNET_PLANS}.json describes {class_name} for {name!r}, not "
                                   f"nnU-Net's default PlainConvUNet; re-create it with nnUNetv2_plan_experiment", 1)


def plan_network(dataset: str, network_name: str, target_gb: float = 8.0, configurations: list[str] | None = None,
                 overwrite: bool = False) -> tuple[Path, list[ConfigurationPlan]]:
    """Plan ``network_name`` for ``dataset`` (id or name) and write its plans; return the file and decisions."""
    network = _network(network_name)
    _check_target(target_gb)
    dataset_name = _dataset_name(dataset)
    folder = _check_dataset_files(dataset_name)
    _check_configurations(folder, configurations)
    output = folder / f"{network.plans_identifier}.json"
    if output.exists() and not overwrite:
        raise PlanNetworkError(f"{output} exists; pass --overwrite to replace it (nothing was written)", 1)
    from nnunet_ext.planning.planner import NetworkPlanner, TargetTooSmall  # noqa: PLC0415 - torch, nnU-Net

    planner = NetworkPlanner(dataset_name, network, target_gb, configurations)
    try:
        plans = planner.plan_experiment()
    except TargetTooSmall as error:
        raise _target_too_small(network, target_gb, error.minimum_gb) from None
    planner.save_plans(plans)
    return output, planner.decisions


def _round_up(value: float, digits: int = 2) -> float:
    """``value`` > 0 rounded up to ``digits`` significant digits (a target that surely fits)."""
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.ceil(value / scale) * scale


def _target_too_small(network: PlannableNetwork, target_gb: float, minimum_gb: dict[str, float]) -> PlanNetworkError:
    """The refusal of a target no patch fits, naming the smallest target that fits every configuration."""
    from nnunet_ext.networks.plans_network import MIN_STAGES  # noqa: PLC0415 - torch

    needed = ", ".join(f"{_round_up(gb):g} GB for {name}" for name, gb in minimum_gb.items())
    return PlanNetworkError(f"no {network.name} plan fits --gpu-memory-target {target_gb:g} GB: even the smallest "
                            f"patch nnU-Net's search allows ({MIN_STAGES} resolution stages, batch size 2) needs "
                            f"{needed}; pass --gpu-memory-target {_round_up(max(minimum_gb.values())):g} or more "
                            f"(nothing was written)", 2)


def describe(decision: ConfigurationPlan, network: PlannableNetwork, target_gb: float) -> str:
    """One summary line of a configuration's plan."""
    def size(patch: tuple[int, ...]) -> str:
        return "x".join(map(str, patch))

    patch = (f"patch {size(decision.patch_size)} (nnU-Net's)" if decision.kept_patch else
             f"patch {size(decision.nnunet_patch_size)} -> {size(decision.patch_size)}")
    return (f"{decision.name}: {patch}, batch {decision.nnunet_batch_size} -> {decision.batch_size}, "
            f"{network.width_key} {decision.width}, estimated {decision.estimated_gb:.1f} GB "
            f"(target {target_gb:g} GB)")
