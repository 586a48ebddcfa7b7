"""Tests of nnunet_ext.networks.unetv2: shapes, the deep-supervision contract, SDI known answers, inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from nnunet_ext.networks.unetv2 import SDI, ChannelAttention, SpatialAttention, UNetV2, resize_feature_map

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def plans_kwargs(dim: int, features: list[int], strides: list, **overrides) -> dict:
    """PlainConvUNet-style kwargs as nnU-Net plans give them (InstanceNorm, LeakyReLU, 3x3 kernels)."""
    n = len(features)
    kwargs = dict(
        input_channels=1, n_stages=n, features_per_stage=features,
        conv_op=nn.Conv2d if dim == 2 else nn.Conv3d, kernel_sizes=[[3] * dim] * n, strides=strides,
        n_conv_per_stage=[1] * n, num_classes=3, n_conv_per_stage_decoder=[1] * (n - 1), conv_bias=True,
        norm_op=nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True, sdi_channels=8)
    kwargs.update(overrides)
    return kwargs


def build(dim: int, features: list[int], strides: list, **overrides) -> UNetV2:
    torch.manual_seed(0)
    net = UNetV2(**plans_kwargs(dim, features, strides, **overrides))
    net.apply(net.initialize)
    return net


def expected_sizes(spatial: tuple[int, ...], strides: list) -> list[tuple[int, ...]]:
    """Stage sizes computed here independently of StageLayout: spatial // running product of strides."""
    sizes, factor = [], [1] * len(spatial)
    for row in strides:
        factor = [f * s for f, s in zip(factor, row)]
        sizes.append(tuple(n // f for n, f in zip(spatial, factor)))
    return sizes


SHAPE_CASES = {
    "2d-4stages": (2, [4, 8, 8, 8], [[1, 1], [2, 2], [2, 2], [2, 2]], (32, 32)),
    "2d-5stages-odd": (2, [4, 8, 8, 8, 8], [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]], (48, 80)),
    # 256: InstanceNorm needs more than one voxel per map, also at the bottleneck
    "2d-8stages": (2, [2, 4, 4, 4, 4, 4, 4, 4], [[1, 1]] + [[2, 2]] * 7, (256, 256)),
    "3d-isotropic": (3, [4, 8, 8], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], (8, 8, 8)),
    "3d-anisotropic": (3, [4, 8, 8, 8], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], (8, 16, 16)),
    "3d-anisotropic-odd": (3, [4, 8, 8, 8], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], (8, 24, 40)),
}


@pytest.mark.parametrize("case", list(SHAPE_CASES))
def test_output_shapes_with_and_without_deep_supervision(case: str) -> None:
    dim, features, strides, spatial = SHAPE_CASES[case]
    net = build(dim, features, strides).eval()
    x = torch.randn(2, 1, *spatial)
    with torch.no_grad():
        outputs = net(x)
        assert isinstance(outputs, list) and len(outputs) == len(features) - 1
        sizes = expected_sizes(spatial, strides)
        assert [tuple(o.shape) for o in outputs] == [(2, 3, *size) for size in sizes[:-1]]
        assert sizes[0] == spatial  # full resolution first
        net.decoder.deep_supervision = False
        single = net(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 3, *spatial)
    torch.testing.assert_close(single, outputs[0], rtol=0, atol=0)


def test_same_parameters_with_deep_supervision_on_and_off_and_strict_cross_loading() -> None:
    dim, features, strides, spatial = SHAPE_CASES["3d-anisotropic"]
    with_ds = build(dim, features, strides, deep_supervision=True).eval()
    without_ds = build(dim, features, strides, deep_supervision=False).eval()
    assert list(with_ds.state_dict()) == list(without_ds.state_dict())
    assert {k: v.shape for k, v in with_ds.state_dict().items()} == \
           {k: v.shape for k, v in without_ds.state_dict().items()}
    # weights differ until loaded (different init draws would also be fine; here: perturb one net)
    with torch.no_grad():
        for p in with_ds.parameters():
            p.add_(0.01 * torch.randn_like(p))
    without_ds.load_state_dict(with_ds.state_dict(), strict=True)
    x = torch.randn(1, 1, *spatial)
    with torch.no_grad():
        torch.testing.assert_close(without_ds(x), with_ds(x)[0], rtol=0, atol=0)
    with_ds.load_state_dict(without_ds.state_dict(), strict=True)


def test_toggling_decoder_deep_supervision_changes_output_type() -> None:
    net = build(*SHAPE_CASES["2d-4stages"][:3], deep_supervision=False).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert isinstance(net(x), torch.Tensor)
        net.decoder.deep_supervision = True
        assert isinstance(net(x), list)
        net.decoder.deep_supervision = False
        assert isinstance(net(x), torch.Tensor)


def test_every_parameter_gets_a_gradient() -> None:
    dim, features, strides, spatial = SHAPE_CASES["3d-anisotropic"]
    net = build(dim, features, strides).train()
    outputs = net(torch.randn(2, 1, *spatial))
    sum(o.sum() for o in outputs).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert not missing
    # biases right before InstanceNorm get an exactly zero gradient (the norm removes any constant)
    zero = [name for name, p in net.named_parameters()
            if not torch.any(p.grad != 0) and not name.endswith("conv.bias")]
    assert not zero
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_builds_and_runs_through_nnunets_get_network_from_plans() -> None:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch_kwargs = {
        "n_stages": 4, "features_per_stage": [4, 8, 8, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}, "sdi_channels": 8}
    torch.manual_seed(0)
    net = get_network_from_plans("nnunet_ext.networks.unetv2.UNetV2", arch_kwargs,
                                 ["conv_op", "norm_op", "dropout_op", "nonlin"], input_channels=2,
                                 output_channels=4, allow_init=True, deep_supervision=True)
    assert isinstance(net, UNetV2) and net.decoder.deep_supervision is True
    outputs = net(torch.randn(1, 2, 8, 16, 16))
    assert [tuple(o.shape) for o in outputs] == [(1, 4, 8, 16, 16), (1, 4, 8, 8, 8), (1, 4, 4, 4, 4)]
    assert all(torch.isfinite(o).all() for o in outputs)
    # without sdi_channels in the plans: the default of 32
    del arch_kwargs["sdi_channels"]
    net = get_network_from_plans("nnunet_ext.networks.unetv2.UNetV2", arch_kwargs,
                                 ["conv_op", "norm_op", "dropout_op", "nonlin"], 2, 4, deep_supervision=False)
    assert net.sdi_channels == 32 and net.decoder.seg_layers[0].in_channels == 32


# ---------------------------------------------------------------------------------------------------
# building blocks: known answers


def test_resize_finer_equal_coarser_known_answers() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = resize_feature_map(x, (2, 2))
    expected = torch.tensor([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]) / 4
    torch.testing.assert_close(pooled[0, 0], expected)
    assert resize_feature_map(x, (4, 4)) is x
    # linear with aligned corners (the published code): [0, 1] -> [0, 1/3, 2/3, 1]
    ramp = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    up = resize_feature_map(ramp, (4, 4))
    torch.testing.assert_close(up[0, 0], torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0]] * 4))
    # anisotropic 3D: an axis that keeps its size stays untouched
    x3 = torch.randn(1, 2, 3, 4, 6)
    assert resize_feature_map(x3, (3, 2, 3)).shape == (1, 2, 3, 2, 3)
    torch.testing.assert_close(resize_feature_map(x3, (3, 2, 3)),
                               x3.reshape(1, 2, 3, 2, 2, 3, 2).mean(dim=(4, 6)))
    assert resize_feature_map(x3, (3, 8, 12)).shape == (1, 2, 3, 8, 12)
    with pytest.raises(ValueError, match="finer along some axes"):
        resize_feature_map(x3, (6, 2, 3))


def identity_smoothing(sdi: SDI) -> None:
    with torch.no_grad():
        for conv in sdi.smooth:
            conv.weight.zero_()
            conv.bias.zero_()
            centre = tuple(k // 2 for k in conv.kernel_size)
            for c in range(conv.in_channels):
                conv.weight[(c, c, *centre)] = 1.0


def test_sdi_is_the_hadamard_product_of_resized_maps() -> None:
    sizes = [(4, 8, 8), (4, 4, 4), (2, 2, 2)]  # anisotropic stage sizes
    constants = [torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5]), torch.tensor([-4.0, 1.5])]
    features = [c.reshape(1, 2, 1, 1, 1).expand(1, 2, *s).clone() for c, s in zip(constants, sizes)]
    for target in range(3):
        sdi = SDI(3, 2, target, nn.Conv3d)
        identity_smoothing(sdi)
        out = sdi(features)
        assert out.shape == (1, 2, *sizes[target])
        expected = (constants[0] * constants[1] * constants[2]).reshape(1, 2, 1, 1, 1).expand_as(out)
        torch.testing.assert_close(out, expected)
    # non-constant maps: the product of the resized maps themselves
    torch.manual_seed(0)
    features = [torch.randn(1, 2, *s) for s in sizes]
    sdi = SDI(3, 2, 1, nn.Conv3d)
    identity_smoothing(sdi)
    expected = math.prod(resize_feature_map(f, sizes[1]) for f in features)
    torch.testing.assert_close(sdi(features), expected)
    # a bias of b in factor j's conv adds b to that factor
    with torch.no_grad():
        sdi.smooth[2].bias.fill_(1.0)
    expected = resize_feature_map(features[0], sizes[1]) * features[1] * (resize_feature_map(features[2], sizes[1]) + 1)
    torch.testing.assert_close(sdi(features), expected)


def test_sdi_product_is_float32_and_rejects_wrong_count() -> None:
    sdi = SDI(2, 2, 0, nn.Conv2d).to(torch.bfloat16)
    out = sdi([torch.randn(1, 2, 4, 4, dtype=torch.bfloat16), torch.randn(1, 2, 2, 2, dtype=torch.bfloat16)])
    assert out.dtype == torch.float32  # a product of many half-precision factors needs float32's range
    with pytest.raises(ValueError, match="expects 2 feature maps"):
        sdi([torch.randn(1, 2, 4, 4)])


def test_a_float64_network_runs_in_float64() -> None:
    dim, features, strides, spatial = SHAPE_CASES["3d-anisotropic"]
    net = build(dim, features, strides)
    x = torch.randn(1, 1, *spatial)
    reference = net(x)
    outputs = net.double()(x.double())  # SDI promotes its factors to at least float32: float64 stays
    assert [o.dtype for o in outputs] == [torch.float64] * len(reference)
    for out, ref in zip(outputs, reference):
        torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)
    sdi = SDI(2, 2, 0, nn.Conv2d).double()
    assert sdi([torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(1, 2, 2, 2, dtype=torch.float64)]
               ).dtype == torch.float64


def test_sdi_products_beyond_fp16_range_do_not_overflow_under_autocast() -> None:
    """Large activations: each smoothed factor ~ +-40, their product over 4 stages ~ 1e6 > fp16's 65504."""
    torch.manual_seed(0)
    net = UNetV2(1, 4, [8, 16, 16, 16], nn.Conv2d, 3, [1, 2, 2, 2], 2, 3, 2, conv_bias=True,
                 norm_op=nn.InstanceNorm2d, norm_op_kwargs={"affine": True}, nonlin=nn.LeakyReLU,
                 deep_supervision=True, sdi_channels=4)
    with torch.no_grad():
        for sdi in net.decoder.sdi:
            for conv in sdi.smooth:
                conv.weight.zero_()
                conv.bias.fill_(40.0)
    x = torch.randn(1, 1, 32, 32)
    reference = net(x)
    assert max(o.abs().max().item() for o in reference) > 65504  # the fp32 outputs are beyond fp16's range
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype):
            outputs = net(x)
        for out, ref in zip(outputs, reference):
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
            torch.testing.assert_close(out, ref, rtol=2e-2, atol=1e-2 * ref.abs().max().item())


def test_channel_attention_with_zero_mlp_halves_the_input() -> None:
    att = ChannelAttention(8, nn.Conv3d)
    assert att.mlp[0].out_channels == 1  # max(1, 8 // 16)
    assert ChannelAttention(64, nn.Conv2d).mlp[0].out_channels == 4
    with torch.no_grad():
        for p in att.parameters():
            p.zero_()
    x = torch.randn(2, 8, 2, 3, 4)
    torch.testing.assert_close(att(x), 0.5 * x, rtol=0, atol=0)


def test_channel_attention_known_gate() -> None:
    # 1 hidden unit, weights chosen so the gate of channel c is sigmoid(2 * (avg_c + max_c)) for c=0, else 0.5
    att = ChannelAttention(2, nn.Conv2d)
    with torch.no_grad():
        att.mlp[0].weight.copy_(torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))
        att.mlp[2].weight.copy_(torch.tensor([2.0, 0.0]).reshape(2, 1, 1, 1))
    x = torch.tensor([[1.0, 3.0], [2.0, 2.0]]).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    gate0 = torch.sigmoid(torch.tensor(2 * (2.0 + 3.0)))
    torch.testing.assert_close(att(x)[0, 0], gate0 * x[0, 0])
    torch.testing.assert_close(att(x)[0, 1], 0.5 * x[0, 1])


def test_spatial_attention_with_zero_conv_halves_the_input_and_uses_a_7_kernel() -> None:
    att = SpatialAttention(nn.Conv3d)
    assert att.conv.kernel_size == (7, 7, 7) and att.conv.padding == (3, 3, 3) and att.conv.in_channels == 2
    with torch.no_grad():
        att.conv.weight.zero_()
    x = torch.randn(1, 3, 1, 4, 4)
    torch.testing.assert_close(att(x), 0.5 * x, rtol=0, atol=0)
    # centre tap on the max channel only: the gate is sigmoid(max over channels) per voxel
    with torch.no_grad():
        att.conv.weight[0, 1, 3, 3, 3] = 1.0
    torch.testing.assert_close(att(x), x * torch.sigmoid(x.amax(dim=1, keepdim=True)))


# ---------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("value", [0, -2, 2.5, "8", True])
def test_bad_sdi_channels_raise(value) -> None:
    with pytest.raises(ValueError, match="sdi_channels"):
        UNetV2(**plans_kwargs(2, [4, 8], [[1, 1], [2, 2]], sdi_channels=value))


@pytest.mark.parametrize("overrides, name", [
    ({"n_stages": 1, "features_per_stage": [4], "strides": [[1, 1]], "kernel_sizes": [[3, 3]],
      "n_conv_per_stage": [1], "n_conv_per_stage_decoder": []}, "n_stages"),
    ({"features_per_stage": [4, 8]}, "features_per_stage"),
    ({"strides": [[1, 1], [2, 2]]}, "strides"),
    ({"kernel_sizes": [[3, 3]] * 4}, "kernel_sizes"),
    ({"n_conv_per_stage_decoder": [1, 1, 1]}, "n_conv_per_stage_decoder"),
    ({"strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]]}, "strides"),
])
def test_bad_plans_arguments_raise_naming_the_argument(overrides: dict, name: str) -> None:
    kwargs = {**plans_kwargs(2, [4, 8, 8], [[1, 1], [2, 2], [2, 2]]), **overrides}
    with pytest.raises(ValueError, match=name):
        UNetV2(**kwargs)


def test_wrongly_sized_input_raises_about_divisibility() -> None:
    net = build(*SHAPE_CASES["3d-anisotropic"][:3])
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 8, 20, 16))
    with pytest.raises(ValueError, match="3D"):
        net(torch.randn(1, 1, 16, 16))


def test_parameter_count_next_to_plain_conv_unet() -> None:
    """A typical nnU-Net 2D plan: UNetV2's decoder is far lighter than PlainConvUNet's."""
    features = [32, 64, 128, 256, 512, 512]
    kwargs = plans_kwargs(2, features, [[1, 1]] + [[2, 2]] * 5, n_conv_per_stage=[2] * 6,
                          n_conv_per_stage_decoder=[2] * 5, sdi_channels=32)
    unetv2 = UNetV2(**kwargs)
    del kwargs["sdi_channels"]
    plain = PlainConvUNet(**kwargs)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unetv2.encoder) == count(plain.encoder)
    # PlainConvUNet's decoder holds its encoder as a submodule
    assert count(unetv2.decoder) < count(plain) - count(plain.encoder)


def test_as_published_coarser_maps_are_upsampled_with_aligned_corners() -> None:
    """The official U-Net v2 SDI interpolates coarser maps with align_corners=True."""
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    expected = F.interpolate(x, size=(6, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(resize_feature_map(x, (6, 8)), expected)
    assert resize_feature_map(x, (6, 8))[0, 0, -1, -1] == x[0, 0, -1, -1]  # corners are kept exactly


def test_as_published_the_channel_reduction_is_conv_and_norm_without_nonlinearity() -> None:
    net = UNetV2(1, 3, [4, 8, 8], nn.Conv2d, 3, [1, 2, 2], 2, 2, 2, conv_bias=True, norm_op=nn.InstanceNorm2d,
                 norm_op_kwargs={"affine": True}, nonlin=nn.LeakyReLU, sdi_channels=4)
    reduce = net.decoder.skip_refiners[0].reduce
    assert not any(isinstance(m, (nn.LeakyReLU, nn.ReLU)) for m in reduce.modules())
    assert reduce.conv.kernel_size == (1, 1) and reduce.conv.bias is None and isinstance(reduce.norm, nn.InstanceNorm2d)
    x = torch.randn(2, 4, 8, 8)
    out = reduce(x)
    torch.testing.assert_close(out, reduce.norm(reduce.conv(x)))
    assert (out < 0).any()  # a nonlinearity such as (leaky) ReLU would have damped the negative half
