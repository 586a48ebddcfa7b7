"""The torch Euclidean distance transform against scipy's (the definition) and on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from torch.utils._python_dispatch import TorchDispatchMode

from nnunet_ext.distance import boundary_distance, euclidean_distance_transform
from nnunet_ext.distance.torch_edt import CHUNK_ELEMENTS, chunk_count


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


class CountMinima(TorchDispatchMode):
    """Counts the ``aten.amin`` kernels: one per chunk of a pass along the second and third axes."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket is torch.ops.aten.amin
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("shape", "chunks"), [((2, 3, 128, 128, 128), 96), ((2, 3, 64, 64, 64), 6),
                                               ((12, 3, 512, 512), 144)])
def test_the_passes_take_few_chunks(shape: tuple[int, ...], chunks: int) -> None:
    # boundary_distance: both EDTs (2B maps) in one call. Before (64 MiB chunks): 384, 24 and 576 kernels
    with CountMinima() as counter:
        boundary_distance(torch.zeros(shape, dtype=torch.bool, device="meta"))  # shapes only
    assert counter.count == chunks == sum(chunk_count(2 * math.prod(shape) // n, n, CHUNK_ELEMENTS) for n in shape[3:])


def test_chunks_do_not_change_the_values() -> None:
    masks = torch.rand(3, 2, 9, 10, 11, generator=torch.Generator().manual_seed(0)) < 0.8
    one_pass = euclidean_distance_transform(masks, (1.0, 0.7, 2.0))
    for chunk_elements in (1, 500, 100 * 11 * 11):  # one line, several lines, uneven chunks
        torch.testing.assert_close(euclidean_distance_transform(masks, (1.0, 0.7, 2.0), chunk_elements=chunk_elements),
                                   one_pass, rtol=0, atol=0)
