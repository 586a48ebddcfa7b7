"""The boolean skeleton of binary masks equals the clDice soft skeleton of the same 0/1 values."""

from __future__ import annotations

import pytest
import torch

from nnunet_ext.losses import soft_skeletonize
from nnunet_ext.losses.binary_skeleton import binary_skeletonize

SHAPES = [(2, 1, 9, 11), (1, 3, 16, 7), (3, 2, 1, 8), (2, 4, 2, 5), (1, 1, 1, 1), (2, 1, 6, 7, 5), (1, 3, 8, 8, 8),
          (1, 2, 1, 6, 5), (2, 2, 4, 2, 3), (1, 2, 24, 20, 22)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_equals_the_soft_skeleton_of_binary_values(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    for fraction in (0.3, 0.7, 0.95):
        masks = torch.rand(shape, generator=gen) < fraction
        for iterations in (1, 2, 3, 10):
            soft = soft_skeletonize(masks.float(), iterations)
            assert ((soft == 0) | (soft == 1)).all()  # 0/1 in, 0/1 out
            assert torch.equal(binary_skeletonize(masks, iterations), soft > 0)


def test_a_band_has_its_centre_line_as_skeleton() -> None:
    band = torch.zeros(1, 1, 11, 9, dtype=torch.bool)
    band[0, 0, 3:8] = True  # half-width 2: reached from iteration 2 on
    assert binary_skeletonize(band, 2)[0, 0].nonzero()[:, 0].unique().tolist() == [5]
    assert not binary_skeletonize(band, 1).any()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        binary_skeletonize(torch.ones(1, 1, 4, 4, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match=r"\(B, C, X, Y\)"):
        binary_skeletonize(torch.ones(4, 4, dtype=torch.bool))
