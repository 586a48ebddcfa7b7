"""The capped distance transform equals the exact one clamped at the cap (and scipy's, on known cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from nnunet_ext.distance import euclidean_distance_transform
from nnunet_ext.distance.capped_edt import capped_distance_transform


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 2, 9, 11, 13), (1, 1, 1, 40), (1, 2, 30, 26, 28)])
@pytest.mark.parametrize("fraction", [0.5, 0.95, 0.995])
def test_equals_the_exact_transform_clamped(shape: tuple[int, ...], fraction: float) -> None:
    masks = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape))) < fraction
    exact = euclidean_distance_transform(masks)
    for cap in (0.5, 1, 1.5, 2.9, 4, 11, 100, 150):  # (150: int32 squared distances)
        torch.testing.assert_close(capped_distance_transform(masks, cap), exact.clamp_max(cap), atol=1e-5, rtol=0)


def test_a_disk_is_exact_below_the_cap_and_capped_above() -> None:
    grid = np.indices((41, 41))
    disk = ((grid - 20) ** 2).sum(0) <= 15 ** 2
    capped = capped_distance_transform(torch.from_numpy(disk)[None, None], 4)[0, 0].numpy()
    scipy = distance_transform_edt(disk)
    np.testing.assert_allclose(capped, np.minimum(scipy, 4), atol=1e-5)
    assert capped[20, 20] == 4 and scipy[20, 20] > 15 and capped[20, 8] == pytest.approx(scipy[20, 8]) == 10 ** 0.5
    full = torch.ones(1, 1, 5, 6, dtype=torch.bool)
    assert (capped_distance_transform(full, 3) == 3).all()  # no background: the cap everywhere


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, X, Y\)"):
        capped_distance_transform(torch.ones(4, 4, dtype=torch.bool), 2)
    for cap in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="cap must be a finite number > 0"):
            capped_distance_transform(torch.ones(1, 1, 4, 4, dtype=torch.bool), cap)
