"""UNet 3+ (Huang et al., ICASSP 2020) on nnU-Net's plans: full-scale skips, deep supervision, optional CGM.

Encoder: ``PlansNetwork``'s (strided-conv ``PlainConvEncoder``). Stage ``n-1`` (the deepest encoder map,
the bottleneck) doubles as "decoder map" ``n-1``. Decoder stage ``i`` (``i = n-2 .. 0``) takes ``N = n``
inputs, in source-stage order ``j = 0 .. n-1``:

* ``j < i``: encoder map ``j``, max-pooled to stage ``i`` (kernel = stride = ``cum[i] / cum[j]`` per axis);
* ``j == i``: encoder map ``i`` as is;
* ``j > i``: decoder map ``j`` (the bottleneck for ``j = n-1``), bi-/trilinearly interpolated to stage ``i``.

Each input gets its own 3x3 conv -> norm -> nonlin to ``cat_channels``; the ``N * cat_channels`` concatenation
is fused by ``N * cat_channels -> N * cat_channels`` 3x3 conv blocks. A 1x1 segmentation head sits on every
decoder stage (all heads always exist, so the parameters are the same with deep supervision on and off).

Classification-guided module (``cgm=True``): Dropout(0.5) -> 1x1 conv -> global max pool on the bottleneck
gives ``(B, 2)`` logits, index 1 = "the patch contains foreground". They are stored on every forward in
``network.classification_logits`` for a separate BCE loss. In eval mode only, samples classified as
"no foreground" get constant background logits for every output; training outputs are never gated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.networks.feature_map_size import (
    INDEX_TENSOR_UNITS,
    SEGMENTATION_UNITS,
    conv_blocks,
    kept_tensor,
)
from nnunet_ext.networks.plans_network import PlansNetwork, check_positive_int

POOL_OPS = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
UPSAMPLE_MODES = {2: "bilinear", 3: "trilinear"}
# Logit of the non-background channels in a gated (classified as empty) output: softmax ~ 1e-13.
SUPPRESSED_LOGIT = -30.0


class FullScaleInput(nn.Module):
    """One of a decoder stage's inputs: resample to the stage's resolution, then conv -> norm -> nonlin.

    forward: ``(B, C_source, *source_spatial)`` and the stage's spatial size ->
    ``(B, cat_channels, *size)``. ``pool`` (finer source) and ``upsample_mode`` (coarser source) are
    exclusive; with neither the source already has the stage's resolution.
    """

    def __init__(self, block: nn.Module, pool: nn.Module | None = None, upsample_mode: str | None = None) -> None:
        super().__init__()
        if pool is not None and upsample_mode is not None:
            raise ValueError("a full-scale input is either pooled (finer source) or upsampled (coarser), not both")
        self.pool = pool
        self.upsample_mode = upsample_mode
        self.block = block

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        elif self.upsample_mode is not None:
            x = F.interpolate(x, size=tuple(size), mode=self.upsample_mode, align_corners=False)
        return self.block(x)

    def feature_map_size(self, source_channels: int, size: Sequence[int]) -> float:
        """Units kept for the backward pass (see ``feature_map_size``): the resampled source, its max-pool
        indices, and the conv block at the stage's spatial ``size``."""
        units = conv_blocks([self.block], size)
        if self.pool is not None:
            units += kept_tensor(source_channels, size) + kept_tensor(source_channels, size, INDEX_TENSOR_UNITS)
        elif self.upsample_mode is not None:
            units += kept_tensor(source_channels, size)
        return units


class FullScaleStage(nn.Module):
    """Decoder stage: its ``N`` full-scale inputs, concatenated, fused by a stack of conv blocks.

    forward: ``sources`` (``N`` tensors ordered by source stage, finest first) and the stage's spatial
    size -> ``(B, N * cat_channels, *size)``.
    """

    def __init__(self, inputs: Sequence[FullScaleInput], fusion: nn.Module) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(inputs)
        self.fusion = fusion

    def forward(self, sources: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        if len(sources) != len(self.inputs):
            raise ValueError(f"decoder stage expects {len(self.inputs)} source maps, got {len(sources)}")
        return self.fusion(torch.cat([adapt(x, size) for adapt, x in zip(self.inputs, sources)], dim=1))

    def feature_map_size(self, source_channels: Sequence[int], size: Sequence[int]) -> float:
        """Units kept for the backward pass: every input, the concatenation, the fusion blocks."""
        units = sum(adapt.feature_map_size(c, size) for adapt, c in zip(self.inputs, source_channels))
        concatenated = sum(adapt.block.output_channels for adapt in self.inputs)
        return units + kept_tensor(concatenated, size) + conv_blocks(self.fusion, size)


class ClassificationGuidance(nn.Module):
    """UNet 3+'s classification-guided module: does the patch contain any foreground?

    forward: ``(B, C, *spatial)`` deepest encoder map -> ``(B, 2)`` logits (index 1 = foreground present).
    """

    def __init__(self, conv_op: type[nn.Module], in_channels: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=0.5)
        self.conv = conv_op(in_channels, 2, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(x)).flatten(2).amax(dim=2)


def suppress_empty_patches(output: torch.Tensor, classification_logits: torch.Tensor) -> torch.Tensor:
    """Replace the segmentation of samples classified as "no foreground" by constant background logits.

    output: ``(B, num_classes, *spatial)``; classification_logits: ``(B, 2)``. Samples whose argmax is 0
    get channel 0 = 0 and every other channel = ``SUPPRESSED_LOGIT``; the others pass unchanged. This
    assumes nnU-Net's softmax label layout (channel 0 = background).
    """
    empty = classification_logits.argmax(dim=1) == 0
    background = torch.full_like(output, SUPPRESSED_LOGIT)
    background[:, 0] = 0
    return torch.where(empty.view(-1, *([1] * (output.ndim - 1))), background, output)


class UNet3PlusDecoder(nn.Module):
    """Full-scale decoder with one head per stage; ``deep_supervision`` is read on every call.

    forward: encoder skips (``n`` maps, finest first, skip ``s`` of shape ``(B, features[s], *size_s)``) ->
    with ``deep_supervision`` a list of ``n - 1`` tensors ``(B, num_classes, *size_s)`` for ``s = 0 .. n-2``
    (full resolution first), else the tensor of stage 0. With a ``classifier`` its ``(B, 2)`` logits are kept
    in ``classification_logits`` (None without), and in eval mode they gate the outputs.
    """

    def __init__(self, stages: Sequence[FullScaleStage], heads: Sequence[nn.Module],
                 classifier: ClassificationGuidance | None = None, deep_supervision: bool = False) -> None:
        super().__init__()
        if len(stages) != len(heads):
            raise ValueError(f"one head per decoder stage: got {len(stages)} stages and {len(heads)} heads")
        self.stages = nn.ModuleList(stages)  # stages[i] decodes at encoder stage i's resolution
        self.heads = nn.ModuleList(heads)
        self.classifier = classifier
        self.deep_supervision = bool(deep_supervision)
        self.classification_logits: torch.Tensor | None = None

    def decode(self, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder maps of stages ``0 .. n-2`` (``(B, N * cat_channels, *size_s)``), finest first."""
        n = len(self.stages) + 1
        if len(skips) != n:
            raise ValueError(f"decoder expects {n} encoder maps, got {len(skips)}")
        decoded = list(skips)  # entry n-1 stays the bottleneck; entry i is replaced once stage i is decoded
        for i in range(n - 2, -1, -1):
            sources = [*skips[:i + 1], *decoded[i + 1:]]
            decoded[i] = self.stages[i](sources, skips[i].shape[2:])
        return decoded[:-1]

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        decoded = self.decode(skips)
        heads = self.heads if self.deep_supervision else self.heads[:1]
        outputs = [head(x) for head, x in zip(heads, decoded)]
        self.classification_logits = None if self.classifier is None else self.classifier(skips[-1])
        if self.classification_logits is not None and not self.training:
            outputs = [suppress_empty_patches(x, self.classification_logits) for x in outputs]
        return outputs if self.deep_supervision else outputs[0]


class UNet3Plus(PlansNetwork):
    """UNet 3+ built from nnU-Net plans (``PlainConvUNet``'s arguments) plus ``cat_channels`` and ``cgm``.

    forward: ``(B, input_channels, *spatial)`` -> ``(B, num_classes, *spatial)``, or with deep supervision
    a list of ``n_stages - 1`` tensors, stage ``s`` at spatial size ``spatial // prod(strides[0..s])``.
    ``classification_logits`` is ``(B, 2)`` after each forward with ``cgm=True``, else None.

    ``n_conv_per_stage_decoder`` follows ``PlainConvUNet``'s order: entry 0 is the deepest decoder stage
    (``n_stages - 2``), the last entry the full-resolution one. Each count is the number of fusion blocks.
    """

    plans_kwargs: ClassVar[tuple[str, ...]] = ("cat_channels", "cgm")

    def __init__(self, *args: Any, cat_channels: int = 64, cgm: bool = False, **kwargs: Any) -> None:
        cat_channels = check_positive_int("cat_channels", cat_channels, "channels of each full-scale input")
        if not isinstance(cgm, bool):
            raise ValueError(f"cgm must be True or False (classification-guided module), got {cgm!r}")
        super().__init__(*args, **kwargs)
        self.cat_channels = cat_channels
        n = self.layout.n_stages
        stages = [self._decoder_stage(i) for i in range(n - 1)]
        heads = [self.conv_op(n * cat_channels, self.num_classes, kernel_size=1, bias=True) for _ in range(n - 1)]
        classifier = ClassificationGuidance(self.conv_op, self.layout.features[-1]) if cgm else None
        self.decoder = UNet3PlusDecoder(stages, heads, classifier, self._initial_deep_supervision)

    @property
    def classification_logits(self) -> torch.Tensor | None:
        """``(B, 2)`` CGM logits of the last forward (index 1 = foreground present); None without CGM."""
        return self.decoder.classification_logits

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> float:
        """Activation memory of one sample of spatial ``input_size`` in nnU-Net's planner units.

        The count nnU-Net's planner calls (``static_estimate_VRAM_usage``), on the rules of
        ``nnunet_ext.networks.feature_map_size``: the encoder by PlainConvEncoder's own count; per decoder
        stage the max-pooled encoder maps (and their int64 indices), the interpolated coarser maps, the
        ``n`` input conv blocks, their concatenation and the fusion blocks; the segmentation outputs that
        are returned (all with deep supervision, else the full-resolution one); the CGM's dropout output.
        """
        self.layout.check_spatial_size(input_size)
        n = self.layout.n_stages
        sizes = self.layout.stage_sizes(input_size)
        units = float(self.encoder.compute_conv_feature_map_size(list(input_size)))
        for i, stage in enumerate(self.decoder.stages):
            units += stage.feature_map_size([self._source_channels(j, i) for j in range(n)], sizes[i])
        heads = n - 1 if self.decoder.deep_supervision else 1
        units += sum(kept_tensor(self.num_classes, sizes[s], SEGMENTATION_UNITS) for s in range(heads))
        if self.decoder.classifier is not None:
            units += kept_tensor(self.layout.features[-1], sizes[-1])
        return units

    def _source_channels(self, source: int, stage: int) -> int:
        """Channels of the map that source stage ``source`` feeds into decoder stage ``stage``."""
        n = self.layout.n_stages
        is_encoder_map = source <= stage or source == n - 1
        return self.layout.features[source] if is_encoder_map else n * self.cat_channels

    def _full_scale_input(self, source: int, stage: int) -> FullScaleInput:
        block = self.conv_block(self._source_channels(source, stage), self.cat_channels)
        if source > stage:
            return FullScaleInput(block, upsample_mode=UPSAMPLE_MODES[self.layout.dim])
        cum = self.layout.cumulative_strides
        ratio = tuple(to // frm for to, frm in zip(cum[stage], cum[source]))  # >= 1: source is finer or equal
        if all(r == 1 for r in ratio):
            return FullScaleInput(block)
        return FullScaleInput(block, pool=POOL_OPS[self.layout.dim](kernel_size=ratio, stride=ratio))

    def _decoder_stage(self, stage: int) -> FullScaleStage:
        n = self.layout.n_stages
        fused = n * self.cat_channels
        n_fusion = self.n_conv_per_stage_decoder[n - 2 - stage]
        fusion = nn.Sequential(*[self.conv_block(fused, fused) for _ in range(n_fusion)])
        return FullScaleStage([self._full_scale_input(j, stage) for j in range(n)], fusion)
