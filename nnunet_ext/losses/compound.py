"""Weighted sums of loss terms that each read one block of channels of a multi-channel target.

Target layout: the target tensor is (B, K, *spatial) made of two blocks of ``label_channels`` (n)
channels each:

* ``"labels"``, channels [0, n): the class labels as nnU-Net provides them (n = 1), or, in
  region-based training, nnU-Net's n binary region masks;
* ``"skeleton"``, channels [n, 2n): the tubed skeleton, appended by nnunet_ext's ``SkeletonTransform``
  (label map) or ``RegionSkeletonTransform`` (one binary skeleton per region) in the data pipeline.
  nnU-Net's deep-supervision downsampling carries it along to every scale.

Each term's loss is called as ``loss(net_output, block)`` with its block shaped (B, n, *spatial).
``CompoundLoss`` handles one output scale; for deep supervision wrap it in
nnU-Net's ``DeepSupervisionWrapper``, which calls it once per scale.

Example::

    loss = CompoundLoss([LossTerm(dc_and_ce, 1.0, "labels"),
                         LossTerm(SoftSkeletonRecallLoss(batch_dice=True), 1.0, "skeleton")])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

channel_index: MappingProxyType[str, int] = MappingProxyType({"labels": 0, "skeleton": 1})
"""Block of target channels read by each ``LossTerm.target`` name (block i = channels [i*n, (i+1)*n))."""

_MISSING_SKELETON = ("the target has no skeleton channel: add nnunet_ext.transforms.SkeletonTransform to "
                     "the data pipeline (the nnunet_ext trainers do this)")


@dataclass(frozen=True)
class LossTerm:
    """One term of a ``CompoundLoss``: ``weight * loss(net_output, target[:, channel])``.

    ``loss`` is called with the net output (B, C, *spatial) and one target channel (B, 1, *spatial);
    ``target`` names the channel (a key of ``channel_index``); ``weight`` must be finite and >= 0.
    """

    loss: nn.Module
    weight: float = 1.0
    target: str = "labels"

    def __post_init__(self) -> None:
        if not isinstance(self.loss, nn.Module):
            raise TypeError(f"LossTerm.loss must be a torch.nn.Module, got {type(self.loss).__name__}")
        if self.target not in channel_index:
            raise ValueError(f"LossTerm.target must be one of {sorted(channel_index)}, got {self.target!r}")
        try:
            weight = float(self.weight)
        except (TypeError, ValueError):
            raise ValueError(f"LossTerm.weight must be a finite number >= 0, got {self.weight!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"LossTerm.weight must be a finite number >= 0, got {self.weight!r}")


class CompoundLoss(nn.Module):
    """``sum(term.weight * term.loss(net_output, target block))`` over the terms.

    ``label_channels``: channels per block (1 for label maps, the number of regions in region-based
    training). Terms with weight 0 are not evaluated.
    """

    def __init__(self, terms: Sequence[LossTerm], label_channels: int = 1) -> None:
        super().__init__()
        if isinstance(label_channels, bool) or not isinstance(label_channels, int) or label_channels < 1:
            raise ValueError(f"label_channels must be an integer >= 1, got {label_channels!r}")
        self.label_channels = label_channels
        terms = list(terms)
        if not terms:
            raise ValueError("CompoundLoss needs at least one LossTerm")
        for term in terms:
            if not isinstance(term, LossTerm):
                raise TypeError(f"CompoundLoss terms must be LossTerm instances, got {type(term).__name__}")
        if all(float(term.weight) == 0 for term in terms):
            raise ValueError("CompoundLoss needs at least one LossTerm with a weight > 0")
        self.losses = nn.ModuleList(term.loss for term in terms)
        self.weights: tuple[float, ...] = tuple(float(term.weight) for term in terms)
        self.targets: tuple[str, ...] = tuple(term.target for term in terms)

    @property
    def terms(self) -> list[LossTerm]:
        """The terms, rebuilt from the registered submodules."""
        return [LossTerm(loss, w, t) for loss, w, t in zip(self.losses, self.weights, self.targets)]

    def extra_repr(self) -> str:
        parts = [f"{w:g} * {type(loss).__name__}({t})"
                 for loss, w, t in zip(self.losses, self.weights, self.targets)]
        blocks = "" if self.label_channels == 1 else f" [{self.label_channels} channels per target block]"
        return " + ".join(parts) + blocks

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted loss for ``net_output`` (B, C, *spatial) and ``target`` (B, K, *spatial); scalar."""
        if target.ndim < 2:
            raise ValueError(f"target must be shaped (B, K, *spatial), got shape {tuple(target.shape)}")
        total: torch.Tensor | None = None
        for loss, weight, name in zip(self.losses, self.weights, self.targets):
            if weight == 0:
                continue
            start = channel_index[name] * self.label_channels
            stop = start + self.label_channels
            if target.shape[1] < stop:
                if name == "skeleton":
                    raise ValueError(_MISSING_SKELETON)
                raise ValueError(f"the target has {target.shape[1]} channel(s); {name!r} needs channels "
                                 f"[{start}, {stop})")
            value = weight * loss(net_output, target[:, start:stop])
            total = value if total is None else total + value
        assert total is not None  # __init__ guarantees a term with weight > 0
        return total
