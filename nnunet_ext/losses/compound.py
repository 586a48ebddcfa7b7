"""Weighted sums of loss terms that each read named blocks of channels of a multi-channel target.

The target tensor is (B, K, *spatial), made of the blocks of a ``TargetLayout`` (``target_layout.py``):
the labels first (nnU-Net's label map, or its region masks), then whatever the data pipeline appended
(a tubed skeleton, distance fields, a weight map). nnU-Net's deep-supervision downsampling carries all
of them to every scale.

A ``LossTerm`` names one block (``target="skeleton"``: the loss is called as ``loss(net_output, skeleton)``)
or several (``target=("labels", "distance")``: ``loss(net_output, labels, distance)``), each block shaped
(B, channels of the block, *spatial). ``CompoundLoss`` handles one output scale; for deep supervision wrap
it in nnU-Net's ``DeepSupervisionWrapper``, which calls it once per scale.

Example::

    loss = CompoundLoss([LossTerm(dc_and_ce, 1.0, "labels"),
                         LossTerm(SoftSkeletonRecallLoss(batch_dice=True), 1.0, "skeleton")])
    loss = CompoundLoss([LossTerm(dc_and_ce, 1.0, "labels"),
                         LossTerm(HausdorffDTLoss(), 0.1, ("labels", "distance"))],
                        layout=TargetLayout([("labels", 1), ("distance", 2)]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnunet_ext.losses.input_checks import check_non_negative
from nnunet_ext.losses.target_layout import TARGET_BLOCKS, TargetLayout, check_block_name


@dataclass(frozen=True)
class LossTerm:
    """One term of a ``CompoundLoss``: ``weight * loss(net_output, *blocks)``.

    ``target`` names the block the loss reads (a key of ``TARGET_BLOCKS``: ``"labels"``, ``"skeleton"``,
    ``"distance"``, ``"weights"``) or a tuple of them, handed to the loss in that order; ``weight`` must be
    finite and >= 0.
    """

    loss: nn.Module
    weight: float = 1.0
    target: str | tuple[str, ...] = "labels"

    def __post_init__(self) -> None:
        if not isinstance(self.loss, nn.Module):
            raise TypeError(f"LossTerm.loss must be a torch.nn.Module, got {type(self.loss).__name__}")
        names = self.target if isinstance(self.target, tuple) else (self.target,)
        if not names:
            raise ValueError(f"LossTerm.target must name at least one of {sorted(TARGET_BLOCKS)}")
        for name in names:
            try:
                check_block_name(name)
            except ValueError as error:
                raise ValueError(f"LossTerm.{error}") from None
        check_non_negative("LossTerm.weight", self.weight)

    @property
    def blocks(self) -> tuple[str, ...]:
        """The block names the loss reads, in the order it takes them."""
        return self.target if isinstance(self.target, tuple) else (self.target,)


def _missing_block(name: str, layout: TargetLayout, channels: int) -> ValueError:
    where = layout.slice(name)
    return ValueError(f"the target has no {name} channel: add {TARGET_BLOCKS[name]} to the data pipeline (the "
                      f"nnunet_ext trainers do this). It has {channels} channel(s); the {name!r} block is channels "
                      f"[{where.start}, {where.stop}) of the layout ({layout})")


class CompoundLoss(nn.Module):
    """``sum(term.weight * term.loss(net_output, *target blocks))`` over the terms.

    Args:
        terms: the terms; those with weight 0 are not evaluated.
        label_channels: channels of the labels block (1 for label maps, the number of regions in region-based
            training); with no ``layout``, the layout is labels and skeleton with this many channels each.
        layout: the target's blocks; every block a term names must be in it.
    """

    def __init__(self, terms: Sequence[LossTerm], label_channels: int = 1, layout: TargetLayout | None = None) -> None:
        super().__init__()
        if isinstance(label_channels, bool) or not isinstance(label_channels, int) or label_channels < 1:
            raise ValueError(f"label_channels must be an integer >= 1, got {label_channels!r}")
        if layout is None:
            layout = TargetLayout.labels_and_skeleton(label_channels)
        elif label_channels not in (1, layout.label_channels):
            raise ValueError(f"label_channels={label_channels} contradicts the layout's labels block ({layout})")
        self.layout = layout
        self.label_channels = layout.label_channels
        terms = list(terms)
        if not terms:
            raise ValueError("CompoundLoss needs at least one LossTerm")
        for term in terms:
            if not isinstance(term, LossTerm):
                raise TypeError(f"CompoundLoss terms must be LossTerm instances, got {type(term).__name__}")
            missing = [name for name in term.blocks if name not in layout]
            if missing:
                raise ValueError(f"{type(term.loss).__name__} reads the {missing[0]!r} block, which the target layout "
                                 f"({layout}) does not have: pass layout= with that block (its channels come from "
                                 f"{TARGET_BLOCKS[missing[0]]})")
        if all(float(term.weight) == 0 for term in terms):
            raise ValueError("CompoundLoss needs at least one LossTerm with a weight > 0")
        self.losses = nn.ModuleList(term.loss for term in terms)
        self.weights: tuple[float, ...] = tuple(float(term.weight) for term in terms)
        self.targets: tuple[str | tuple[str, ...], ...] = tuple(term.target for term in terms)
        self._slices: tuple[tuple[slice, ...], ...] = tuple(tuple(layout.slice(n) for n in term.blocks)
                                                            for term in terms)

    def set_weight(self, index: int, weight: float) -> None:
        """Change the weight of term ``index`` (e.g. a schedule over epochs); a weight of 0 skips the term."""
        LossTerm(self.losses[index], weight, self.targets[index])  # validates the weight
        weights = list(self.weights)
        weights[index] = float(weight)
        self.weights = tuple(weights)

    @property
    def terms(self) -> list[LossTerm]:
        """The terms, rebuilt from the registered submodules."""
        return [LossTerm(loss, w, t) for loss, w, t in zip(self.losses, self.weights, self.targets)]

    def extra_repr(self) -> str:
        parts = [f"{term.weight:g} * {type(term.loss).__name__}({', '.join(term.blocks)})" for term in self.terms]
        n = self.label_channels
        if self.layout in (TargetLayout.labels_and_skeleton(n), TargetLayout([("labels", n)])):
            blocks = "" if n == 1 else f" [{n} channels per target block]"
        else:
            blocks = f" [target: {self.layout}]"
        return " + ".join(parts) + blocks

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted loss for ``net_output`` (B, C, *spatial) and ``target`` (B, K, *spatial); scalar."""
        if target.ndim < 2:
            raise ValueError(f"target must be shaped (B, K, *spatial), got shape {tuple(target.shape)}")
        total: torch.Tensor | None = None
        for loss, weight, term_slices, term_target in zip(self.losses, self.weights, self._slices, self.targets):
            if weight == 0:
                continue
            names = term_target if isinstance(term_target, tuple) else (term_target,)
            for name, where in zip(names, term_slices):
                if target.shape[1] < where.stop:
                    raise _missing_block(name, self.layout, target.shape[1])
            value = weight * loss(net_output, *(target[:, where] for where in term_slices))
            total = value if total is None else total + value
        if total is None:
            raise ValueError("every term of the CompoundLoss has weight 0 (set_weight): nothing to compute")
        return total
