"""U-Net v2 (Peng et al., 2023) on nnU-Net's plans: the plain conv encoder, SDI skips, a light decoder.

Every encoder stage j (bottleneck included) is refined by channel then spatial attention (CBAM style)
and reduced to ``sdi_channels`` channels. Semantics and Detail Infusion (SDI) then builds, for each
target stage i, the element-wise (Hadamard) product over all stages j of "stage j's reduced map,
resized to stage i's size, then smoothed by a 3x3 conv of its own". The decoder starts at the SDI map
of the bottleneck and, going up, adds a transposed conv (kernel = stride = that stage's stride, so
anisotropic strides work) of the coarser result to the SDI map of each stage; a 1x1 head per stage
0..n-2 gives the (deep-supervision) outputs.

Works for 2D and 3D plans with any number of stages >= 2 and any (anisotropic) strides, as long as
the input is divisible by the total stride (checked by ``PlansNetwork.forward``).

Shapes (n stages, S_s = spatial size of stage s = input size // cumulative stride of s, C = sdi_channels):
    encoder skips: [(B, features[s], *S_s) for s in 0..n-1]
    reduced:       [(B, C, *S_s)] -> SDI -> [(B, C, *S_s)]
    output:        (B, num_classes, *S_0), or with deep supervision [(B, num_classes, *S_s) for s in 0..n-2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp
from torch import nn

from nnunet_ext.networks.feature_map_size import SEGMENTATION_UNITS, conv_blocks, kept_tensor, voxels
from nnunet_ext.networks.plans_network import PlansNetwork, StageLayout, check_positive_int

ATTENTION_REDUCTION = 16
SPATIAL_ATTENTION_KERNEL = 7


def resize_feature_map(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize (B, C, *spatial) to (B, C, *size) the way SDI does.

    Identity if the size already matches; adaptive average pooling if ``x`` is finer (no axis smaller
    than ``size``); (bi/tri)linear interpolation with ``align_corners=True`` if ``x`` is coarser (no
    axis larger). Maps of a U-Net's stages always fall in one of these cases; a map that is finer along
    one axis and coarser along another is a ValueError.
    """
    size = tuple(int(s) for s in size)
    spatial = tuple(x.shape[2:])
    if len(size) != len(spatial) or len(spatial) not in (2, 3):
        raise ValueError(f"cannot resize a map of spatial size {spatial} to {size}: need 2 or 3 matching axes")
    if spatial == size:
        return x
    if all(t <= s for t, s in zip(size, spatial)):
        pool = F.adaptive_avg_pool2d if len(size) == 2 else F.adaptive_avg_pool3d
        return pool(x, size)
    if all(t >= s for t, s in zip(size, spatial)):
        # align_corners=True as the published U-Net v2 code
        return F.interpolate(x, size=size, mode="bilinear" if len(size) == 2 else "trilinear", align_corners=True)
    raise ValueError(f"cannot resize {spatial} to {size}: finer along some axes and coarser along others")


class ChannelAttention(nn.Module):
    """CBAM channel attention: x * sigmoid(MLP(avg_pool(x)) + MLP(max_pool(x))).

    The MLP is shared by both pooled vectors: 1x1 conv C -> max(1, C // 16), ReLU, 1x1 conv back to C,
    without biases. (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, channels: int, conv_op: type[nn.Module], reduction: int = ATTENTION_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(conv_op(channels, hidden, 1, bias=False), nn.ReLU(),
                                 conv_op(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial_dims = tuple(range(2, x.ndim))
        avg = x.mean(dim=spatial_dims, keepdim=True)
        peak = x.amax(dim=spatial_dims, keepdim=True)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(peak))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: x * sigmoid(conv7([mean over channels, max over channels])).

    A 7 (per axis) conv 2 -> 1 channels, padding 3, no bias. (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, conv_op: type[nn.Module], kernel_size: int = SPATIAL_ATTENTION_KERNEL) -> None:
        super().__init__()
        self.conv = conv_op(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(descriptor))


class ConvNorm(nn.Module):
    """1x1 conv (no bias) -> norm: U-Net v2's channel reduction before SDI, without a nonlinearity, as in the
    published code (its ``BasicConv2d`` builds a ReLU but never applies it). (B, in, *S) -> (B, out, *S)."""

    def __init__(self, conv_op: type[nn.Module], in_channels: int, out_channels: int,
                 norm_op: type[nn.Module] | None, norm_op_kwargs: dict | None) -> None:
        super().__init__()
        self.conv = conv_op(in_channels, out_channels, 1, bias=norm_op is None)
        self.norm = nn.Identity() if norm_op is None else norm_op(out_channels, **(norm_op_kwargs or {}))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> float:
        """1 unit per output element, as a conv -> norm -> nonlin block (two maps of that size are kept)."""
        return float(self.out_channels * voxels(input_size))


class SkipRefiner(nn.Module):
    """One encoder stage's SDI input: channel attention, spatial attention, 1x1 reduction to C channels.

    (B, features, *S) -> (B, sdi_channels, *S). ``reduce`` is ``ConvNorm`` (conv -> norm, no nonlinearity).
    """

    def __init__(self, channels: int, conv_op: type[nn.Module], reduce: nn.Module) -> None:
        super().__init__()
        self.channel_attention = ChannelAttention(channels, conv_op)
        self.spatial_attention = SpatialAttention(conv_op)
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.spatial_attention(self.channel_attention(x)))

    def feature_map_size(self, channels: int, size: Sequence[int]) -> float:
        """Units kept for the backward pass (see ``feature_map_size``): the channel-attended map, the
        spatially attended map (``channels`` each), the channel max, the 2-channel descriptor and the
        spatial gate (1, 2 and 1 channels), and the reducing conv block."""
        return kept_tensor(2 * channels + 4, size) + conv_blocks([self.reduce], size)


class SDI(nn.Module):
    """Semantics and Detail Infusion for one target stage.

    forward([(B, C, *S_j) for j in 0..n-1]) -> (B, C, *S_target): the product over j of
    ``smooth[j](resize_feature_map(features[j], S_target))``.

    The smoothing convs are plain 3x3 convs with bias (as in the paper), not conv -> norm -> nonlin
    blocks: a norm would re-centre each factor around zero before the product. The product is
    accumulated and returned in at least float32 (a float64 network stays float64): under fp16 autocast the
    smoothed factors are fp16, and a product of up to n_stages of them leaves fp16's range (max 65504) far
    sooner than any single factor.
    """

    def __init__(self, n_levels: int, channels: int, target_level: int, conv_op: type[nn.Module]) -> None:
        super().__init__()
        if not 0 <= target_level < n_levels:
            raise ValueError(f"target_level must be in 0..{n_levels - 1}, got {target_level}")
        self.target_level = target_level
        self.smooth = nn.ModuleList([conv_op(channels, channels, 3, padding=1, bias=True) for _ in range(n_levels)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.smooth):
            raise ValueError(f"SDI expects {len(self.smooth)} feature maps (one per stage), got {len(features)}")
        size = features[self.target_level].shape[2:]
        product = None
        for smooth, feature in zip(self.smooth, features):
            factor = smooth(resize_feature_map(feature, size))
            factor = factor.to(torch.promote_types(factor.dtype, torch.float32))  # float64 stays float64
            product = factor if product is None else product * factor
        return product

    def feature_map_size(self, channels: int, sizes: Sequence[Sequence[int]], result_is_kept: bool) -> float:
        """Units kept for the backward pass at the target's size, ``channels`` channels each: the resized
        maps of the other levels (the smoothing convs' inputs), the ``n`` smoothed factors and the ``n - 2``
        partial products (the multiplications' operands), and the product itself if ``result_is_kept``
        (the bottleneck's, which the first transposed conv keeps; elsewhere it is only added)."""
        n = len(self.smooth)
        size = sizes[self.target_level]
        maps = sum(1 for other in sizes if tuple(other) != tuple(size)) + n + max(n - 2, 0) + int(result_is_kept)
        return kept_tensor(maps * channels, size)


class UNetV2Decoder(nn.Module):
    """Skip refinement, SDI per stage, transposed-conv upsampling and one segmentation head per stage 0..n-2.

    forward(skips: [(B, features[s], *S_s) for s in 0..n-1]) -> (B, num_classes, *S_0), or with
    ``self.deep_supervision`` (read at call time; nnU-Net's ``set_deep_supervision_enabled`` sets it)
    [(B, num_classes, *S_s) for s in 0..n-2], full resolution first. All heads exist either way, so the
    parameters do not depend on deep supervision.
    """

    def __init__(self, layout: StageLayout, sdi_channels: int, num_classes: int, conv_op: type[nn.Module],
                 norm_op: type[nn.Module] | None, norm_op_kwargs: dict | None, conv_bias: bool,
                 deep_supervision: bool) -> None:
        super().__init__()
        n = layout.n_stages
        self.deep_supervision = bool(deep_supervision)
        self.skip_refiners = nn.ModuleList([
            SkipRefiner(features, conv_op, ConvNorm(conv_op, features, sdi_channels, norm_op, norm_op_kwargs))
            for features in layout.features])
        self.sdi = nn.ModuleList([SDI(n, sdi_channels, target, conv_op) for target in range(n)])
        transpconv_op = get_matching_convtransp(conv_op)
        # upsample[s]: stage s+1 -> stage s, undoing exactly the stride that made stage s+1
        self.upsample = nn.ModuleList([
            transpconv_op(sdi_channels, sdi_channels, layout.strides[s + 1], layout.strides[s + 1], bias=conv_bias)
            for s in range(n - 1)])
        self.seg_layers = nn.ModuleList([conv_op(sdi_channels, num_classes, 1, bias=True) for _ in range(n - 1)])

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        n = len(self.skip_refiners)
        if len(skips) != n:
            raise ValueError(f"UNetV2Decoder expects {n} encoder skips (finest first), got {len(skips)}")
        reduced = [refine(skip) for refine, skip in zip(self.skip_refiners, skips)]
        infused = [sdi(reduced) for sdi in self.sdi]  # float32 products
        # The products may exceed fp16's range: the light decoder after them (transposed convs, 1x1 heads)
        # runs in float32 whatever autocast says, so mixed precision cannot turn them into inf.
        with torch.autocast(infused[0].device.type, enabled=False):
            y = infused[n - 1]
            outputs = []
            for s in range(n - 2, -1, -1):
                y = self.upsample[s](y) + infused[s]
                if self.deep_supervision:
                    outputs.append(self.seg_layers[s](y))
            if not self.deep_supervision:
                return self.seg_layers[0](y)
        return outputs[::-1]


class UNetV2(PlansNetwork):
    """U-Net v2 built from nnU-Net plans (``PlainConvUNet``'s keyword arguments, see ``PlansNetwork``) plus
    ``sdi_channels`` (default 32).

    forward: (B, input_channels, *spatial) -> (B, num_classes, *spatial), or with deep supervision a
    list of n_stages - 1 tensors, tensor s of size spatial // cumulative_strides[s] (full resolution first).

    ``n_conv_per_stage_decoder`` is accepted and validated (plans always carry it) but unused: the
    U-Net v2 decoder has no conv stages, only SDI maps, transposed convs and heads.
    """

    plans_kwargs: ClassVar[tuple[str, ...]] = ("sdi_channels",)

    def __init__(self, *args: Any, sdi_channels: int = 32, **kwargs: Any) -> None:
        sdi_channels = check_positive_int("sdi_channels", sdi_channels, "channels of the SDI feature maps")
        super().__init__(*args, **kwargs)
        self.sdi_channels = sdi_channels
        self.decoder = UNetV2Decoder(self.layout, sdi_channels, self.num_classes, self.conv_op,
                                     self.block_kwargs["norm_op"], self.block_kwargs["norm_op_kwargs"],
                                     self.block_kwargs["conv_bias"], self._initial_deep_supervision)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> float:
        """Activation memory of one sample of spatial ``input_size`` in nnU-Net's planner units.

        The count nnU-Net's planner calls (``static_estimate_VRAM_usage``), on the rules of
        ``nnunet_ext.networks.feature_map_size``: the encoder by PlainConvEncoder's own count; per stage the
        attention maps and the reducing block of its skip refiner and the resized maps, factors and partial
        products of its SDI; the decoder sums (SDI map + upsampled coarser result) that the heads and the
        next transposed conv keep; the segmentation outputs that are returned.
        """
        self.layout.check_spatial_size(input_size)
        n = self.layout.n_stages
        c = self.sdi_channels
        sizes = self.layout.stage_sizes(input_size)
        decoder = self.decoder
        units = float(self.encoder.compute_conv_feature_map_size(list(input_size)))
        for s in range(n):
            units += decoder.skip_refiners[s].feature_map_size(self.layout.features[s], sizes[s])
            units += decoder.sdi[s].feature_map_size(c, sizes, result_is_kept=s == n - 1)
        units += sum(kept_tensor(c, sizes[s]) for s in range(n - 1))
        heads = n - 1 if decoder.deep_supervision else 1
        units += sum(kept_tensor(self.num_classes, sizes[s], SEGMENTATION_UNITS) for s in range(heads))
        return units
