"""compute_conv_feature_map_size of UNet 3+ and U-Net v2: hand counts, scaling, width, nnU-Net's builder."""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from nnunet_ext.networks import UNet3Plus, UNetV2
from nnunet_ext.planning.memory import feature_map_units

PLAIN_KWARGS = dict(input_channels=1, conv_bias=True, n_conv_per_stage=1, n_conv_per_stage_decoder=1,
                    norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
                    num_classes=2)


def arch(dim: int, features: list[int], strides: list, **overrides) -> dict:
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if dim == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    return {**PLAIN_KWARGS, "n_stages": len(features), "features_per_stage": features, "conv_op": conv,
            "kernel_sizes": 3, "strides": strides, "norm_op": norm, **overrides}


def on_meta(network_class: type, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return network_class(**kwargs)


def test_unet3plus_two_stage_hand_count() -> None:
    # input 8x8; stage sizes 64 and 16 voxels; features 4, 6; cat_channels 3 -> fused 6 channels
    net = on_meta(UNet3Plus, **arch(2, [4, 6], [1, 2]), cat_channels=3)
    encoder = 4 * 64 + 6 * 16  # one unit per conv-block output element (PlainConvEncoder's count)
    decoder = (3 * 64  # input block of encoder map 0
               + 6 * 64 / 2 + 3 * 64  # bottleneck interpolated to 8x8 (kept: 1/2 unit), its input block
               + 6 * 64 / 2  # the concatenation
               + 6 * 64)  # the fusion block
    head = 2 * 64
    assert net.compute_conv_feature_map_size((8, 8)) == encoder + decoder + head == 1632


def test_unet3plus_three_stage_hand_count_with_pooling_and_deep_supervision() -> None:
    # stage sizes 64, 16, 4 voxels; features 2, 4, 8; cat_channels 1 -> fused 3 channels
    kwargs = dict(**arch(2, [2, 4, 8], [1, 2, 2]), cat_channels=1)
    encoder = 2 * 64 + 4 * 16 + 8 * 4
    stage1 = ((2 * 16 / 2 + 2 * 16 * 1 + 16)  # encoder map 0 max-pooled (1/2), its int64 indices (1), block
              + 16  # encoder map 1: block
              + (8 * 16 / 2 + 16)  # bottleneck interpolated, block
              + 3 * 16 / 2 + 3 * 16)  # concatenation, fusion
    stage0 = (64  # encoder map 0: block
              + (3 * 64 / 2 + 64)  # decoder map 1 (3 channels) interpolated, block
              + (8 * 64 / 2 + 64)  # bottleneck interpolated, block
              + 3 * 64 / 2 + 3 * 64)
    without = on_meta(UNet3Plus, **kwargs).compute_conv_feature_map_size((8, 8))
    with_ds = on_meta(UNet3Plus, **kwargs, deep_supervision=True).compute_conv_feature_map_size((8, 8))
    assert without == encoder + stage1 + stage0 + 2 * 64 == 1416
    assert with_ds == without + 2 * 16  # the stage-1 head's output


def test_unetv2_two_stage_hand_count() -> None:
    # stage sizes 64 and 16 voxels; features 4, 6; sdi_channels 2
    net = on_meta(UNetV2, **arch(2, [4, 6], [1, 2]), sdi_channels=2)
    encoder = 4 * 64 + 6 * 16
    refiners = ((2 * 4 + 4) * 64 / 2 + 2 * 64  # attention maps (2 x features + 4 one-channel maps), reduce block
                + (2 * 6 + 4) * 16 / 2 + 2 * 16)
    sdi0 = 3 * 2 * 64 / 2  # stage 1 resized to 8x8, two factors; the product is only added
    sdi1 = 4 * 2 * 16 / 2  # stage 0 pooled to 4x4, two factors, the product (the transposed conv keeps it)
    decoder_sum = 2 * 64 / 2
    head = 2 * 64
    assert net.compute_conv_feature_map_size((8, 8)) == encoder + refiners + sdi0 + sdi1 + decoder_sum + head == 1472


@pytest.mark.parametrize("network_class, width_key", [(UNet3Plus, "cat_channels"), (UNetV2, "sdi_channels"),
                                                      (PlainConvUNet, None)])
@pytest.mark.parametrize("dim", [2, 3])
def test_estimate_scales_with_the_patch_volume(network_class: type, width_key: str | None, dim: int) -> None:
    strides = [[1] * dim] + [[2] * dim] * 3
    kwargs = arch(dim, [4, 8, 16, 32], strides, n_conv_per_stage=2, n_conv_per_stage_decoder=2, deep_supervision=True)
    if width_key:
        kwargs[width_key] = 4
    net = on_meta(network_class, **kwargs)
    small, large = (16,) * dim, (32,) * dim
    assert net.compute_conv_feature_map_size(large) == 2**dim * net.compute_conv_feature_map_size(small)
    anisotropic = (16,) * (dim - 1) + (48,)
    assert net.compute_conv_feature_map_size(anisotropic) == 3 * net.compute_conv_feature_map_size(small)


@pytest.mark.parametrize("network_class, width_key, widths", [(UNet3Plus, "cat_channels", [8, 16, 32, 64]),
                                                              (UNetV2, "sdi_channels", [8, 16, 32])])
def test_estimate_grows_with_the_width(network_class: type, width_key: str,
                                                                   widths: list[int]) -> None:
    kwargs = arch(3, [32, 64, 128, 256, 320], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
                  n_conv_per_stage=2, n_conv_per_stage_decoder=2)
    patch = (32, 64, 64)
    plain = on_meta(PlainConvUNet, **kwargs).compute_conv_feature_map_size(patch)
    estimates = [on_meta(network_class, **kwargs, **{width_key: w}).compute_conv_feature_map_size(patch)
                 for w in widths]
    assert estimates == sorted(set(estimates))
    assert estimates[-1] > plain  # at the paper's width both keep more than PlainConvUNet on nnU-Net-style plans


def test_estimate_does_not_depend_on_the_device_and_goes_through_nnunets_builder() -> None:
    kwargs = arch(2, [4, 8, 16], [1, 2, 2], cat_channels=4)
    real = UNet3Plus(**kwargs).compute_conv_feature_map_size((32, 32))
    plans_kwargs = {k: v for k, v in kwargs.items() if k not in ("input_channels", "num_classes")}
    plans_kwargs.update(conv_op="torch.nn.Conv2d", norm_op="torch.nn.InstanceNorm2d", nonlin="torch.nn.LeakyReLU")
    via_plans = feature_map_units("nnunet_ext.networks.UNet3Plus", plans_kwargs, ["conv_op", "norm_op", "nonlin"],
                                  (32, 32), input_channels=1, output_channels=2)
    assert real == via_plans


def test_estimate_refuses_a_patch_the_network_cannot_take() -> None:
    net = on_meta(UNetV2, **arch(2, [4, 8, 16], [1, 2, 2]), sdi_channels=4)
    with pytest.raises(ValueError, match="divisible"):
        net.compute_conv_feature_map_size((30, 32))
