"""The network trainers and their plans: the width from the plans, the memory check in ``initialize``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.planning.memory import DEFAULT_TARGET_GB
from nnunet_ext.planning.memory_check import PlansMemoryError, plans_target_gb
from nnunet_ext.trainers import nnUNetTrainerUNet3Plus, nnUNetTrainerUNetV2
from tests.conftest import DATASET_2D, NnunetWorkspace, make_trainer


def _plans_with(trainer_env: NnunetWorkspace, dataset: Path, **architecture_kwargs) -> dict:
    plans = trainer_env.plans(dataset.name)
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"].update(architecture_kwargs)
    return plans


def _trainer(trainer_class: type, plans: dict, dataset: Path, trainer_env: NnunetWorkspace):
    dataset_json = json.loads((trainer_env.preprocessed / dataset.name / "dataset.json").read_text())
    return trainer_class({**plans, "continue_training": False}, "2d", 0, dataset_json, device=torch.device("cpu"))


def test_trainers_take_the_width_from_the_plans_unless_the_class_sets_it(trainer_env: NnunetWorkspace,
                                                                         dataset_2d: Path) -> None:
    class Forced(nnUNetTrainerUNet3Plus):
        unet3plus_cat_channels = 8

    plans = _plans_with(trainer_env, dataset_2d, cat_channels=12)
    configuration = PlansManager(plans).get_configuration("2d")
    with torch.device("meta"):
        from_plans = nnUNetTrainerUNet3Plus.build_network_architecture(None, configuration, 1, 3, True)
        forced = Forced.build_network_architecture(None, configuration, 1, 3, True)
        unetv2 = nnUNetTrainerUNetV2.build_network_architecture(None, configuration, 1, 3, True)  # ignores cat
        default = nnUNetTrainerUNet3Plus.build_network_architecture(
            None, PlansManager(trainer_env.plans(dataset_2d.name)).get_configuration("2d"), 1, 3, True)
    assert (from_plans.cat_channels, forced.cat_channels, default.cat_channels) == (12, 8, 64)
    assert unetv2.sdi_channels == 32


def test_trainer_refuses_plans_far_over_the_memory_target(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    tiny = make_trainer(trainer_env, dataset_2d, nnUNetTrainerUNet3Plus)
    assert tiny.plans_memory_estimate()[1].times_target < 0.1  # the test datasets are far from the check

    plans = trainer_env.plans(dataset_2d.name)
    plans["configurations"]["2d"]["patch_size"] = [1024, 1024]  # a CT-slice-sized patch
    trainer = _trainer(nnUNetTrainerUNet3Plus, plans, dataset_2d, trainer_env)
    with pytest.raises(PlansMemoryError) as refused:
        trainer.initialize()
    message = str(refused.value)
    assert f"`nnunet-ext plan-network -d {DATASET_2D} -n UNet3Plus`" in message
    assert "`-p nnUNetPlansUNet3Plus`" in message and "max_memory_over_target = None" in message
    assert trainer.network is None and not trainer.was_initialized

    class Anyway(nnUNetTrainerUNet3Plus):
        max_memory_over_target = None

    anyway = _trainer(Anyway, plans, dataset_2d, trainer_env)
    anyway.initialize()
    assert anyway.network is not None


def test_trainer_checks_against_the_target_recorded_in_the_plans(trainer_env: NnunetWorkspace,
                                                                  dataset_2d: Path) -> None:
    plans = _plans_with(trainer_env, dataset_2d, sdi_channels=8)
    plans["nnunet_ext"] = {"network": "UNetV2", "gpu_memory_target_gb": 0.001}
    trainer = _trainer(nnUNetTrainerUNetV2, plans, dataset_2d, trainer_env)
    with pytest.raises(PlansMemoryError, match=r"UNetV2 \(sdi_channels 8\).*recorded by nnunet-ext plan-network.*"
                                               r"-n UNetV2`.*`-p nnUNetPlansUNetV2`"):
        trainer.initialize()


def test_the_target_is_the_recorded_one_else_what_nnunet_planned_for(trainer_env: NnunetWorkspace,
                                                                    dataset_2d: Path) -> None:
    plans = trainer_env.plans(dataset_2d.name)
    configuration = PlansManager(plans).get_configuration("2d")

    def target(plans: dict, patch: list[int], class_name: str = configuration.network_arch_class_name) -> tuple:
        return plans_target_gb(plans, class_name, configuration.network_arch_init_kwargs,
                               configuration.network_arch_init_kwargs_req_import, patch, configuration.batch_size)

    assert target(plans, configuration.patch_size) == (DEFAULT_TARGET_GB, "what nnU-Net planned its PlainConvUNet for")
    large, _ = target(plans, [2048, 2048])  # plans nnU-Net made for a larger GPU: their own estimate
    assert large > 2 * DEFAULT_TARGET_GB
    assert target(plans, [2048, 2048], "nnunet_ext.networks.UNetV2") == (DEFAULT_TARGET_GB, "nnU-Net's default target")
    recorded = {**plans, "nnunet_ext": {"gpu_memory_target_gb": 24.0}}
    assert target(recorded, [2048, 2048]) == (24.0, "recorded by nnunet-ext plan-network")
