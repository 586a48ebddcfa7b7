"""The torch Euclidean distance transform against scipy's (the definition) and on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from nnunet_ext.distance import boundary_distance, euclidean_distance_transform


@pytest.mark.parametrize(("shape", "spacing"), [((2, 3, 17, 23), (1.0, 1.0)), ((1, 2, 9, 11, 13), (2.0, 0.7, 0.5)),
                                                ((1, 1, 1, 40), (1.0, 3.0))])
def test_equals_scipy(shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    masks = np.random.default_rng(sum(shape)).random(shape) < 0.7
    ours = euclidean_distance_transform(torch.from_numpy(masks), spacing, chunk_elements=500).numpy()
    for b in range(shape[0]):
        for c in range(shape[1]):
            np.testing.assert_allclose(ours[b, c], distance_transform_edt(masks[b, c], sampling=spacing), atol=1e-5)


def test_known_distances_and_the_boundary_distance() -> None:
    mask = torch.zeros(1, 1, 7, 9, dtype=torch.bool)
    mask[0, 0, 1:6, 1:8] = True  # a 5 x 7 rectangle
    inside = euclidean_distance_transform(mask)[0, 0]
    assert inside[3, 4] == 3 and inside[1, 1] == 1 and inside[0, 0] == 0
    both = boundary_distance(mask)[0, 0]
    assert both[3, 4] == 3 and both[0, 4] == 1 and both[1, 1] == 1 and both[0, 0] == pytest.approx(2 ** 0.5)
    full, empty = torch.ones(1, 1, 4, 4, dtype=torch.bool), torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    assert torch.isinf(euclidean_distance_transform(full)).all()
    assert (boundary_distance(full) == 0).all() and (boundary_distance(empty) == 0).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, X, Y\)"):
        euclidean_distance_transform(torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="spacing must give 2 positive values"):
        euclidean_distance_transform(torch.ones(1, 1, 4, 4, dtype=torch.bool), (1.0, 0.0))
