"""The layout of a multi-channel training target: named blocks of channels, labels first.

nnU-Net's data loader carries only ``image`` and ``segmentation`` through its transforms, and its
deep-supervision downsampling resizes every channel of the segmentation (nearest neighbour). So whatever
extra target a loss needs (a tubed skeleton, ground-truth distance fields, a pixel weight map) is computed
from the labels in the data-loader workers and *appended* to the segmentation as further channels; the
target reaching the loss is then (B, K, *spatial) made of consecutive blocks::

    labels   [0, n)            nnU-Net's labels (n = 1) or its n region masks (region-based training)
    skeleton [n, 2n)           e.g. a tubed skeleton per label channel
    distance [2n, 2n + C - 1)  e.g. one distance field per foreground class
    ...

A ``TargetLayout`` names those blocks in order with their channel counts; ``CompoundLoss`` hands each
``LossTerm`` the blocks it names. ``TARGET_BLOCKS`` lists the block names and what provides each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

TARGET_BLOCKS: Mapping[str, str] = MappingProxyType({
    "labels": "nnU-Net's labels (or region masks): always the first block",
    "skeleton": "nnunet_ext.transforms.SkeletonTransform (RegionSkeletonTransform for regions)",
    "distance": "nnunet_ext.transforms.DistanceFieldTransform (RegionDistanceFieldTransform for regions)",
    "weights": "nnunet_ext.transforms.UNetWeightMapTransform",
})
"""Block name -> what appends it to the segmentation (shown in error messages)."""


def check_block_name(name: object) -> str:
    """``name`` if it is a known block name (a key of ``TARGET_BLOCKS``); ValueError otherwise."""
    if not isinstance(name, str) or name not in TARGET_BLOCKS:
        raise ValueError(f"target must be one of {sorted(TARGET_BLOCKS)} (or a tuple of them), got {name!r}")
    return name


class TargetLayout:
    """Ordered named blocks of target channels; the first block is ``"labels"``.

    Args:
        blocks: ``(name, channels)`` pairs in channel order; names from ``TARGET_BLOCKS``, each at most once,
            channel counts >= 1.

    Example: ``TargetLayout([("labels", 1), ("distance", 2)])`` for a 3-class label map with one distance
    field per foreground class: channel 0 the labels, channels 1-2 the fields.
    """

    def __init__(self, blocks: Iterable[tuple[str, int]]) -> None:
        blocks = [(check_block_name(name), channels) for name, channels in blocks]
        if not blocks or blocks[0][0] != "labels":
            raise ValueError(f"a target layout starts with the 'labels' block, got {[n for n, _ in blocks]}")
        names = [name for name, _ in blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"each block may appear once in a target layout, got {names}")
        for name, channels in blocks:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise ValueError(f"block {name!r} must have an integer number of channels >= 1, got {channels!r}")
        self.blocks: tuple[tuple[str, int], ...] = tuple(blocks)

    @classmethod
    def labels_and_skeleton(cls, label_channels: int = 1) -> TargetLayout:
        """``labels`` and ``skeleton`` with ``label_channels`` channels each (the Skeleton Recall target)."""
        return cls([("labels", label_channels), ("skeleton", label_channels)])

    def appended(self, name: str, channels: int) -> TargetLayout:
        """This layout with one more block at the end."""
        return TargetLayout([*self.blocks, (name, channels)])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.blocks)

    @property
    def label_channels(self) -> int:
        """Channels of the labels block (1, or the number of regions)."""
        return self.blocks[0][1]

    @property
    def channels(self) -> int:
        """Channels of the whole target."""
        return sum(channels for _, channels in self.blocks)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def slice(self, name: str) -> slice:
        """The channels of block ``name``: ``target[:, layout.slice(name)]``."""
        start = 0
        for block, channels in self.blocks:
            if block == name:
                return slice(start, start + channels)
            start += channels
        raise KeyError(f"the target layout ({self}) has no {name!r} block")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TargetLayout) and self.blocks == other.blocks

    def __hash__(self) -> int:
        return hash(self.blocks)

    def __str__(self) -> str:
        return ", ".join(f"{name}: {channels}" for name, channels in self.blocks)

    def __repr__(self) -> str:
        return f"TargetLayout({list(self.blocks)})"
