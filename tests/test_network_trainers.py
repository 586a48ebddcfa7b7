"""The network trainers inside nnU-Net: the network built from the plans, DS contract, bad plans, the CGM loss."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext import networks
from nnunet_ext.losses import ClassificationGuidedLoss, CompoundLoss, HybridLoss, SoftSkeletonRecallLoss
from nnunet_ext.networks import UNetV2
from nnunet_ext.trainers import (
    nnUNetTrainerUNet3Plus,
    nnUNetTrainerUNet3PlusCGM,
    nnUNetTrainerUNetV2,
    nnUNetTrainerUNetV2SkeletonRecall,
)
from tests.conftest import NnunetWorkspace, make_trainer
from tests.trainer_matrix import TRAINERS

# every network trainer -> the network class it builds
NETWORK_TRAINERS = {case.trainer_class: getattr(networks, case.network) for case in TRAINERS if case.network}


def _build(trainer_class: type, plans: dict, configuration: str, dataset_json: dict, deep_supervision: bool):
    """The network exactly as nnU-Net builds it (training: DS on; nnUNetv2_predict: DS off)."""
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(dataset_json)
    return trainer_class.build_network_architecture(plans_manager, configuration_manager, 1,
                                                    label_manager.num_segmentation_heads, deep_supervision)


@pytest.mark.parametrize("trainer_class", NETWORK_TRAINERS, ids=lambda c: c.__name__)
def test_constructor_signature_is_nnunets(trainer_class: type) -> None:
    assert inspect.signature(trainer_class.__init__) == inspect.signature(nnUNetTrainer.__init__)


@pytest.mark.parametrize("trainer_class", NETWORK_TRAINERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_network_follows_the_plans_and_nnunets_deep_supervision(trainer_env: NnunetWorkspace, request,
                                                                trainer_class: type, configuration: str) -> None:
    dataset = request.getfixturevalue("dataset_2d" if configuration == "2d" else "dataset_3d")
    # Narrow full-scale / SDI maps keep this CPU test fast; the plans' stages are what is checked.
    narrow = type(trainer_class.__name__, (trainer_class,), {"unet3plus_cat_channels": 8, "unetv2_sdi_channels": 8})
    trainer = make_trainer(trainer_env, dataset, narrow, configuration=configuration)
    network = _build(narrow, trainer.plans_manager.plans, configuration, trainer.dataset_json, True)
    assert type(network) is NETWORK_TRAINERS[trainer_class]
    arch = trainer.configuration_manager.network_arch_init_kwargs
    assert network.layout.features == tuple(arch["features_per_stage"])
    assert network.layout.strides == tuple(tuple(s) for s in arch["strides"])

    patch = trainer.configuration_manager.patch_size
    x = torch.randn(1, 1, *patch)
    with torch.no_grad():
        outputs = network(x)
    scales = trainer._get_deep_supervision_scales()
    assert isinstance(outputs, list) and len(outputs) == len(scales)
    for output, scale in zip(outputs, scales):
        expected = [round(n * s) for n, s in zip(patch, scale)]
        assert list(output.shape) == [1, trainer.label_manager.num_segmentation_heads, *expected]

    # nnUNetv2_predict rebuilds with deep supervision off and loads the checkpoint strictly.
    for_prediction = _build(narrow, trainer.plans_manager.plans, configuration, trainer.dataset_json, False)
    for_prediction.load_state_dict(network.state_dict(), strict=True)
    network.eval()
    for_prediction.eval()
    with torch.no_grad():
        torch.testing.assert_close(for_prediction(x), network(x)[0])


def test_set_deep_supervision_enabled_switches_the_output(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = make_trainer(trainer_env, dataset_2d, nnUNetTrainerUNetV2)
    trainer.network = _build(nnUNetTrainerUNetV2, trainer.plans_manager.plans, "2d", trainer.dataset_json, True)
    x = torch.randn(1, 1, *trainer.configuration_manager.patch_size)
    trainer.set_deep_supervision_enabled(False)
    assert isinstance(trainer.network(x), torch.Tensor)
    trainer.set_deep_supervision_enabled(True)
    assert isinstance(trainer.network(x), list)


def test_network_kwargs_are_changeable_by_a_class_attribute(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    class Narrow(nnUNetTrainerUNet3Plus):
        unet3plus_cat_channels = 4

    trainer = make_trainer(trainer_env, dataset_2d, Narrow)
    wide = _build(nnUNetTrainerUNet3Plus, trainer.plans_manager.plans, "2d", trainer.dataset_json, True)
    narrow = _build(Narrow, trainer.plans_manager.plans, "2d", trainer.dataset_json, True)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())


def test_patch_size_not_divisible_by_the_strides_is_refused(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = make_trainer(trainer_env, dataset_2d, nnUNetTrainerUNet3Plus)
    plans = copy.deepcopy(trainer.plans_manager.plans)
    plans["configurations"]["2d"]["patch_size"] = [60, 64]
    with pytest.raises(ValueError, match=r"patch size \(60, 64\).*divisible"):
        _build(nnUNetTrainerUNet3Plus, plans, "2d", trainer.dataset_json, True)


def test_residual_encoder_plans_are_refused(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = make_trainer(trainer_env, dataset_2d, nnUNetTrainerUNetV2)
    plans = copy.deepcopy(trainer.plans_manager.plans)
    arch = plans["configurations"]["2d"]["architecture"]
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    arch["arch_kwargs"]["n_blocks_per_stage"] = arch["arch_kwargs"].pop("n_conv_per_stage")
    with pytest.raises(ValueError, match="PlainConvUNet plans.*n_blocks_per_stage"):
        _build(nnUNetTrainerUNetV2, plans, "2d", trainer.dataset_json, True)


def _initialized(trainer_env: NnunetWorkspace, dataset: Path, trainer_class: type):
    trainer = make_trainer(trainer_env, dataset, trainer_class)
    trainer.initialize()
    return trainer


def test_cgm_trainer_trains_the_classifier_with_the_hybrid_loss(trainer_env: NnunetWorkspace,
                                                                dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, nnUNetTrainerUNet3PlusCGM)
    assert isinstance(trainer.loss, ClassificationGuidedLoss)
    assert isinstance(trainer.loss.segmentation_loss.loss, HybridLoss)  # inside nnU-Net's DS wrapper
    network = trainer.network
    patch = trainer.configuration_manager.patch_size
    x = torch.randn(2, 1, *patch)
    target = [torch.zeros(2, 1, *[round(n * s) for n, s in zip(patch, scale)])
              for scale in trainer._get_deep_supervision_scales()]
    target[0][0, 0, 3, 4] = 1  # sample 0 has foreground, sample 1 none
    output = network(x)
    loss = trainer.loss(output, target)
    loss.backward()
    classifier_grads = [p.grad for name, p in network.named_parameters() if "classifier" in name]
    assert classifier_grads and all(g is not None and g.abs().sum() > 0 for g in classifier_grads)


def test_network_trainers_keep_their_loss(trainer_env: NnunetWorkspace, dataset_2d: Path) -> None:
    trainer = _initialized(trainer_env, dataset_2d, nnUNetTrainerUNetV2SkeletonRecall)
    assert isinstance(trainer.network, UNetV2)
    inner = trainer.loss.loss
    assert isinstance(inner, CompoundLoss)
    assert any(isinstance(loss, SoftSkeletonRecallLoss) for loss in inner.losses)
