"""Read images and label maps with nnU-Net's own reader/writers (any format nnU-Net reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def spatial(array: np.ndarray) -> np.ndarray:
    """nnU-Net's (C, Z, Y, X) array as channel 0's (Z, Y, X), or (Y, X) for a single-slice (2D) image."""
    array = array[0]
    return array[0] if array.shape[0] == 1 else array


def reader_for(path: Path):
    """An instance of the nnU-Net reader/writer that can read ``path``; ValueError if none can."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending  # noqa: PLC0415

    path = Path(path)
    ending = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    try:
        return determine_reader_writer_from_file_ending(ending, str(path), allow_nonmatching_filename=True,
                                                        verbose=False)()
    except RuntimeError as error:
        raise ValueError(f"nnU-Net cannot read {path}: {error}") from error


def read_image(path: str | Path) -> np.ndarray:
    """First channel of an image file: (Y, X) or (Z, Y, X) float32."""
    return spatial(reader_for(Path(path)).read_images([str(path)])[0]).astype(np.float32)


def read_labels(path: str | Path) -> np.ndarray:
    """A segmentation file as an integer label map: (Y, X) or (Z, Y, X) int32.

    ValueError if the file holds non-integer values: an image, or probabilities, are no label map (and rounding
    them would draw a wrong picture without a word)."""
    values = spatial(reader_for(Path(path)).read_seg(str(path))[0])
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        fractional = values[~np.isfinite(values) | (values != np.round(values))][:3]
        raise ValueError(f"{path} holds non-integer values (e.g. {', '.join(f'{v:.4g}' for v in fractional)}), so it "
                         f"is no label map: pass IMAGE first and LABEL second, and a label file with integer classes")
    return values.astype(np.int32)
