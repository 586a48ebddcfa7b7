"""Pictures of images, labels, predictions and tubed skeletons (PNG via matplotlib's Agg backend).

Arrays are shown as stored: a 2D panel is (rows, columns). 3D volumes are shown as views: the
maximum-intensity projection along each axis and the middle slice across each axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Class colours (RGB in [0, 1]); class c uses entry (c - 1) mod len.
CLASS_COLOURS = np.array([
    [0.90, 0.10, 0.10], [0.10, 0.60, 1.00], [0.20, 0.85, 0.20], [1.00, 0.60, 0.00],
    [0.75, 0.25, 0.95], [0.00, 0.85, 0.85], [1.00, 0.40, 0.70], [0.60, 0.60, 0.10],
])
SKELETON_COLOUR = np.array([1.0, 1.0, 0.0])


def normalize_intensities(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] between the 1st and 99th percentile: float32 of the same shape."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0, 1)


def overlay(gray: np.ndarray, labels: np.ndarray | None = None, alpha: float = 0.55,
            skeleton: np.ndarray | None = None) -> np.ndarray:
    """RGB picture: ``gray`` (H, W) in [0, 1], labels blended in their class colours, skeleton in yellow.

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    if labels is not None:
        positive = labels > 0
        colours = CLASS_COLOURS[(np.clip(labels, 1, None).astype(np.intp) - 1) % len(CLASS_COLOURS)]
        rgb[positive] = (1 - alpha) * rgb[positive] + alpha * colours[positive]
    if skeleton is not None:
        rgb[skeleton > 0] = SKELETON_COLOUR
    return rgb


def views(volume: np.ndarray, reduce: str) -> list[tuple[str, np.ndarray]]:
    """2D views of a 2D or 3D array: itself, or per axis a maximum projection / the middle slice."""
    if volume.ndim == 2:
        return [("", volume)]
    if reduce == "max":
        return [(f"MIP axis {a}", volume.max(axis=a)) for a in range(3)]
    return [(f"middle slice axis {a}", np.take(volume, volume.shape[a] // 2, axis=a)) for a in range(3)]


def save_panels(rows: list[list[tuple[str, np.ndarray]]], path: str | Path, title: str | None = None) -> Path:
    """Write a grid of RGB or gray panels (title, (H, W[, 3]) array in [0, 1]) as a PNG; returns the path."""
    import matplotlib  # noqa: PLC0415 - only pictures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.2 * n_rows + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        for c in range(n_cols):
            axis = axes[r][c]
            axis.set_axis_off()
            if c < len(row):
                name, picture = row[c]
                axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                            interpolation="nearest")
                axis.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def skeleton_rows(image: np.ndarray, labels: np.ndarray, skeleton: np.ndarray) -> list[list[tuple[str, np.ndarray]]]:
    """Panels image | label | tubed skeleton, one row per view (1 in 2D; 3 projections + 3 slices in 3D)."""
    rows = []
    for reduce in ("max", "middle"):
        if reduce == "middle" and image.ndim == 2:
            break
        for (view, img), (_, lab), (_, skel) in zip(views(image, reduce), views(labels, reduce),
                                                      views(skeleton, reduce)):
            g = normalize_intensities(img)  # per view: a projection has its own intensity range
            suffix = f" ({view})" if view else ""
            rows.append([(f"image{suffix}", g), (f"label{suffix}", overlay(g, lab)),
                         (f"tubed skeleton{suffix}", overlay(g, lab, alpha=0.3, skeleton=skel))])
    return rows
