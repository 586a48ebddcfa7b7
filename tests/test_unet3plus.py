"""UNet 3+: shapes and deep-supervision contract, parameters, validation, CGM gating, nnU-Net's builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from nnunet_ext.networks.unet3plus import SUPPRESSED_LOGIT, UNet3Plus, suppress_empty_patches

pytestmark = pytest.mark.usefixtures("single_torch_thread")

ARCH_CLASS = "nnunet_ext.networks.unet3plus.UNet3Plus"


def build(dim: int = 2, strides: list | None = None, features: list | int = 4, num_classes: int = 3,
          deep_supervision: bool = True, **overrides) -> UNet3Plus:
    """A small UNet 3+ with instance norm and leaky ReLU (nnU-Net's defaults)."""
    strides = strides if strides is not None else [1, 2, 2, 2]
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if dim == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    n = len(strides)
    kwargs = dict(input_channels=1, n_stages=n, features_per_stage=features, conv_op=conv, kernel_sizes=3,
                  strides=strides, n_conv_per_stage=1, num_classes=num_classes, n_conv_per_stage_decoder=1,
                  conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                  nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision, cat_channels=2)
    kwargs.update(overrides)
    net = UNet3Plus(**kwargs)
    net.apply(net.initialize)
    return net


def expected_ds_sizes(spatial: tuple[int, ...], strides: list) -> list[tuple[int, ...]]:
    """Sizes nnU-Net's DownsampleSegForDSTransform makes: scales 1 / cumprod(strides), one per decoder stage."""
    dim = len(spatial)
    rows = np.vstack([[s] * dim if np.isscalar(s) else s for s in strides])
    scales = 1 / np.cumprod(rows, axis=0)[:-1]
    return [tuple(int(round(n * f)) for n, f in zip(spatial, scale)) for scale in scales]


SHAPE_CASES = {
    "2d-4stages": (2, [1, 2, 2, 2], (16, 16)),
    "2d-5stages": (2, [1, 2, 2, 2, 2], (32, 32)),
    "2d-5stages-48x80": (2, [1, 2, 2, 2, 2], (48, 80)),
    "3d-iso": (3, [1, 2, 2, 2], (16, 16, 16)),
    "3d-aniso": (3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], (8, 24, 40)),
    "2d-6stages": (2, [1, 2, 2, 2, 2, 2], (32, 64)),
    "2d-7stages-ratio1-axis": (2, [[1, 1], [2, 2], [2, 2], [1, 2], [2, 2], [2, 1], [2, 2]], (64, 64)),
    # 8 stages; stride 1 along one axis at some stages keeps the input small (pool ratios of 1 on an axis)
    "2d-8stages": (2, [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 1], [1, 2], [2, 2]], (128, 128)),
}


@pytest.mark.parametrize("case", list(SHAPE_CASES), ids=list(SHAPE_CASES))
def test_deep_supervision_shapes_and_order(case: str) -> None:
    dim, strides, spatial = SHAPE_CASES[case]
    net = build(dim, strides, features=2 if len(strides) >= 7 else 4)
    x = torch.randn(2, 1, *spatial)
    with torch.no_grad():
        outputs = net(x)
    assert isinstance(outputs, list)
    assert len(outputs) == len(strides) - 1
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *size) for size in expected_ds_sizes(spatial, strides)]
    assert tuple(outputs[0].shape[2:]) == spatial


@pytest.mark.parametrize("case", ["2d-5stages-48x80", "3d-aniso"])
def test_deep_supervision_off_equals_first_output(case: str) -> None:
    dim, strides, spatial = SHAPE_CASES[case]
    net = build(dim, strides).eval()
    x = torch.randn(2, 1, *spatial)
    with torch.no_grad():
        ds_outputs = net(x)
        net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
        single = net(x)
    assert isinstance(single, torch.Tensor)
    torch.testing.assert_close(single, ds_outputs[0], rtol=0, atol=0)
    net.decoder.deep_supervision = True
    with torch.no_grad():
        assert isinstance(net(x), list)


def test_state_dict_identical_with_and_without_deep_supervision() -> None:
    torch.manual_seed(0)
    with_ds = build(2, [1, 2, 2, 2], deep_supervision=True).eval()
    without_ds = build(2, [1, 2, 2, 2], deep_supervision=False).eval()
    assert list(with_ds.state_dict()) == list(without_ds.state_dict())
    without_ds.load_state_dict(with_ds.state_dict(), strict=True)
    with_ds.load_state_dict(without_ds.state_dict(), strict=True)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(without_ds(x), with_ds(x)[0], rtol=0, atol=0)


def test_decoder_conv_counts_follow_plain_conv_unet_order() -> None:
    """n_conv_per_stage_decoder[0] is the deepest decoder stage, as in PlainConvUNet."""
    net = build(2, [1, 2, 2, 2], n_conv_per_stage_decoder=[3, 2, 1])
    assert [len(net.decoder.stages[i].fusion) for i in range(3)] == [1, 2, 3]


# --- the paper's configuration ---------------------------------------------------------------------------------

PAPER_KWARGS = dict(input_channels=3, n_stages=5, features_per_stage=[64, 128, 256, 512, 1024], conv_op=nn.Conv2d,
                    kernel_sizes=3, strides=[1, 2, 2, 2, 2], n_conv_per_stage=2, num_classes=1,
                    n_conv_per_stage_decoder=1, conv_bias=True, norm_op=nn.BatchNorm2d,
                    norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                    nonlin=nn.ReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False, cat_channels=64)
PAPER_REFERENCE_PARAMETERS = 26_970_625  # reference UNet 3+ code, 1 input channel, one 3x3 output conv


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_configuration_parameter_count() -> None:
    net = UNet3Plus(**PAPER_KWARGS)
    total = count(net)
    assert abs(total - PAPER_REFERENCE_PARAMETERS) / PAPER_REFERENCE_PARAMETERS < 0.01
    assert total == 26_970_180
    # Exact bookkeeping of the difference: the reference has one 3x3 output conv (320 -> 1) instead of our four
    # 1x1 heads, and its published count is for a 1-channel input (the first conv has 2 * 9 * 64 fewer weights).
    heads = count(net.decoder.heads)
    assert heads == 4 * (320 + 1)
    reference_output_conv = 320 * 9 + 1
    first_conv_extra_inputs = 2 * 9 * 64
    assert total - heads + reference_output_conv - first_conv_extra_inputs == PAPER_REFERENCE_PARAMETERS
    assert count(net.encoder) == 18_851_136


# --- validation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_cat_channels(bad: object) -> None:
    with pytest.raises(ValueError, match="cat_channels"):
        build(cat_channels=bad)


@pytest.mark.parametrize(("overrides", "match"), [
    (dict(n_stages=1, strides=[1], features_per_stage=[4]), "n_stages"),
    (dict(features_per_stage=[4, 8, 16]), "features_per_stage"),
    (dict(n_stages=4, strides=[1, 2, 2]), "strides"),
    (dict(kernel_sizes=[[3, 3, 3]] * 4), "kernel_sizes"),
    (dict(cgm="yes"), "cgm"),
])
def test_bad_constructor_arguments(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(**overrides)


def test_input_not_divisible_by_strides() -> None:
    net = build(2, [1, 2, 2, 2])
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 20, 16))


# --- classification-guided module --------------------------------------------------------------------------------

def force_classifier(net: UNet3Plus, logits: tuple[float, float]) -> None:
    with torch.no_grad():
        net.decoder.classifier.conv.weight.zero_()
        net.decoder.classifier.conv.bias.copy_(torch.tensor(logits))


def test_cgm_logits_shape_and_absent_without_cgm() -> None:
    net = build(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], cgm=True)
    with torch.no_grad():
        net(torch.randn(2, 1, 8, 24, 40))
    assert net.classification_logits.shape == (2, 2)
    plain = build(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    with torch.no_grad():
        plain(torch.randn(2, 1, 8, 24, 40))
    assert plain.classification_logits is None


def test_cgm_gates_every_output_in_eval_mode_only() -> None:
    net = build(2, [1, 2, 2, 2], cgm=True)
    force_classifier(net, (10.0, -10.0))  # "no foreground" for every sample
    x = torch.randn(2, 1, 16, 16)
    net.eval()
    with torch.no_grad():
        gated = net(x)
    for out in gated:
        assert (out.argmax(dim=1) == 0).all()
        assert (out[:, 0] == 0).all() and (out[:, 1:] == SUPPRESSED_LOGIT).all()
    net.train()
    with torch.no_grad():
        ungated = net(x)
    for out in ungated:
        assert not (out[:, 1:] == SUPPRESSED_LOGIT).all()
        assert out.std() > 0
    force_classifier(net, (-10.0, 10.0))  # "foreground": eval outputs pass unchanged
    net.eval()
    with torch.no_grad():
        assert all(out.std() > 0 for out in net(x))


def test_suppress_empty_patches_is_per_sample() -> None:
    output = torch.randn(2, 3, 4, 4)
    gated = suppress_empty_patches(output, torch.tensor([[5.0, -5.0], [-5.0, 5.0]]))
    assert gated.dtype == output.dtype and gated.shape == output.shape
    assert (gated[0, 0] == 0).all() and (gated[0, 1:] == SUPPRESSED_LOGIT).all()
    torch.testing.assert_close(gated[1], output[1], rtol=0, atol=0)


def test_cgm_state_dict_keys() -> None:
    with_cgm = set(build(cgm=True).state_dict())
    without = set(build(cgm=False).state_dict())
    extra = with_cgm - without
    assert without < with_cgm
    assert extra and all(".classifier." in key for key in extra)


# --- gradients ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cgm", [False, True])
def test_gradients_reach_every_parameter(cgm: bool) -> None:
    net = build(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], cgm=cgm).train()
    outputs = net(torch.randn(2, 1, 8, 24, 40))
    sum(o.sum() for o in outputs).backward(retain_graph=cgm)
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    # the CGM is trained only through its own loss on classification_logits
    assert missing == ([name for name, _ in net.named_parameters() if ".classifier." in name] if cgm else [])
    if cgm:
        net.classification_logits.sum().backward()
        assert all(p.grad is not None for p in net.parameters())


# --- nnU-Net's builder -------------------------------------------------------------------------------------------

def test_builds_and_runs_through_nnunet_get_network_from_plans() -> None:
    arch_kwargs = {
        "n_stages": 4, "features_per_stage": [4, 8, 8, 8], "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}, "cat_channels": 4,
    }
    net = get_network_from_plans(ARCH_CLASS, arch_kwargs, ["conv_op", "norm_op", "dropout_op", "nonlin"],
                                 input_channels=2, output_channels=3, allow_init=True, deep_supervision=True)
    assert isinstance(net, UNet3Plus) and net.decoder.deep_supervision is True
    with torch.no_grad():
        outputs = net(torch.randn(1, 2, 24, 40))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 24, 40), (1, 3, 12, 20), (1, 3, 6, 10)]
