"""The U-Net border weight map (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015), numpy, for the data-loader workers.

Per voxel x of a label map::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

* ``w_c(x) = N / (K * N_c)`` for the class c of x: N the voxels that count (all but the ignore label's), K the
  classes present among them, N_c the voxels of class c. Every class then weighs the same in total (N / K).
* The border term only on background voxels: d1, d2 the Euclidean distances (in voxels) to the nearest and the
  second-nearest foreground *object* (connected component of all foreground classes together, full
  connectivity: 8 neighbours in 2D, 26 in 3D). With fewer than two objects there is no border term. It is large
  in the thin background gaps between touching objects (cells, glands), which the network must learn to keep.
* Ignore-label voxels get weight 0 and count in no class; negative labels (nnU-Net's -1 outside the image) are
  background.

Fast with many objects: the two nearest objects' squared distances come from one separable pass per axis that
keeps, per voxel, the two smallest (squared distance, object) pairs of *distinct* objects (an exact EDT that keeps
two labels: if an object is not among a voxel's two best after the axes done so far, two other objects are at least
as close there, and stay at least as close after every later axis, so it cannot become one of the final two;
per line, the nearest object is a lower envelope of parabolas and the second-nearest one a lower envelope of the
candidates of the other objects, per run of voxels sharing a nearest object). Pairs farther than
``r = sigma * sqrt(2 ln(1 / truncation))`` are dropped (every partial squared distance of a pair is at most its
final one, so pairs within r stay exact), and the second-nearest object is found only on background voxels with
``d1 <= r / 2``. So the border term is exact (up to float rounding) wherever ``d1 <= r / 2`` and ``d2 <= r``,
which holds wherever ``d1 + d2 <= r`` (d1 <= d2); elsewhere ``d1 + d2 > r``, the exact term is below
``w0 * exp(-r^2 / (2 sigma^2)) = w0 * truncation`` and the map has either it or nothing: the map differs from the
exact one by less than ``w0 * truncation`` (1e-3 with the defaults). The cost is three passes over the patch (numba,
compiled once and cached on disk) whatever the number of objects.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
from numba import njit

from nnunet_ext.losses.input_checks import check_non_negative, check_positive


def border_radius(sigma: float, truncation: float) -> float:
    """Distance beyond which an object's border term is below ``truncation * w0``: ``sigma sqrt(2 ln(1/t))``."""
    return sigma * math.sqrt(2.0 * math.log(1.0 / truncation))


def _check_arguments(labels: np.ndarray, w0: float, sigma: float, truncation: float) -> None:
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be one label map shaped (X, Y) or (X, Y, Z), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not np.issubdtype(labels.dtype, np.floating) or not np.array_equal(labels, np.round(labels)):
            raise ValueError("labels must hold integer class labels (0 = background); found non-integer values. "
                             "Make sure the label map is not interpolated (nearest-neighbour resampling)")
    check_non_negative("w0", w0, "the paper: 10")
    check_positive("sigma", sigma, "in voxels; the paper: about 5")
    if not 0 < truncation < 1:
        raise ValueError(f"truncation must lie in (0, 1), got {truncation!r}")


@njit(cache=True)
def _class_counts(labels, ignore, has_ignore, counts):
    """Voxels per class (negative labels counted as background), the ignore label's left out; flat labels."""
    for k in range(labels.shape[0]):
        value = labels[k]
        if not (has_ignore and value == ignore):
            counts[max(value, 0)] += 1


@njit(cache=True)
def _fill_weights(labels, ignore, has_ignore, per_class, out, foreground, background):
    """Per voxel (flat): its class's weight (0 on the ignore label) into ``out``; foreground / background
    masks of the known voxels."""
    for k in range(labels.shape[0]):
        value = labels[k]
        if has_ignore and value == ignore:
            out[k], foreground[k], background[k] = 0, False, False
        else:
            c = max(value, 0)
            out[k], foreground[k], background[k] = per_class[c], c > 0, c == 0


def class_weights(labels: np.ndarray, ignore_label: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``N / (K * N_c)`` on every known voxel of class c, 0 on the ignore label's; float32, ``labels``' shape.
    Also the known foreground and the known background (bool masks), made in the same pass.

    ``labels``: integer classes (negative ones are background). Each class's weight is computed in float64 and
    rounded once."""
    flat = labels.reshape(-1)
    has_ignore = ignore_label is not None
    ignore = int(ignore_label) if has_ignore else 0
    counts = np.zeros(max(int(flat.max(initial=0)), 0) + 1, dtype=np.int64)
    _class_counts(flat, ignore, has_ignore, counts)
    present = np.count_nonzero(counts)
    per_class = np.divide(counts.sum(), present * counts, out=np.zeros(len(counts)), where=counts > 0)
    out = np.empty(labels.shape, dtype=np.float32)
    foreground, background = np.empty(labels.shape, dtype=bool), np.empty(labels.shape, dtype=bool)
    _fill_weights(flat, ignore, has_ignore, per_class.astype(np.float32), out.reshape(-1), foreground.reshape(-1),
                  background.reshape(-1))
    return out, foreground, background


_NONE = 2**30  # squared distance "no object within the radius" (every kept squared distance is at most the cap)


def _squared_caps(radius: float, shape: tuple[int, ...]) -> tuple[int, int]:
    """The largest squared distance kept: ``floor(radius^2)``, at most the patch's squared diagonal (fits int32);
    and the largest nearest one given a second one: ``d1 <= radius / 2``."""
    diagonal = sum((n - 1) ** 2 for n in shape)
    cap = int(min(math.floor(radius * radius), diagonal))
    return cap, min(cap, math.floor(radius * radius / 4))


@njit(cache=True, inline="always")
def _keep_two(value, label, b1, c1, b2, c2):
    """(b1, c1) <= (b2, c2): the two smallest squared distances of distinct objects, updated with (value, label)."""
    if label == c1:
        if value < b1:
            b1 = value
    elif label == c2:
        if value < b2:
            if value < b1:
                b2, c2, b1, c1 = b1, c1, value, label
            else:
                b2 = value
    elif value < b1:
        b2, c2, b1, c1 = b1, c1, value, label
    elif value < b2:
        b2, c2 = value, label
    return b1, c1, b2, c2


@njit(cache=True, inline="always")
def _last_two_seen(label, x, la, pa, lb, pb):
    """A scan along a line at position x with label ``label``: the last object voxel seen (object la at pa) and
    the last one of another object (lb at pb), updated."""
    if label != 0:
        if label == la:
            pa = x
        else:
            lb, pb, la, pa = la, pa, label, x
    return la, pa, lb, pb


@njit(cache=True)
def _first_axis(objects, cap, s1, l1, s2, l2):
    """Along the last axis of ``objects`` (X, Y, Z) int32: per voxel the two nearest objects of its line, from
    the nearest object voxel on either side and the nearest one of another object (squared distances; labels)."""
    size_x, size_y, n = objects.shape
    left_a = np.empty(n, np.int64)
    left_b = np.empty(n, np.int64)
    label_a = np.empty(n, np.int32)
    label_b = np.empty(n, np.int32)
    for i in range(size_x):
        for j in range(size_y):
            line = objects[i, j]
            la, pa, lb, pb = 0, -1, 0, -1  # the last object voxel (la at pa); the last one of another object
            for x in range(n):
                la, pa, lb, pb = _last_two_seen(line[x], x, la, pa, lb, pb)
                left_a[x], label_a[x], left_b[x], label_b[x] = pa, la, pb, lb
            ra, qa, rb, qb = 0, -1, 0, -1
            for x in range(n - 1, -1, -1):
                ra, qa, rb, qb = _last_two_seen(line[x], x, ra, qa, rb, qb)
                b1, c1, b2, c2 = _NONE, 0, _NONE, 0
                if label_a[x] != 0 and (x - left_a[x]) ** 2 <= cap:
                    b1, c1, b2, c2 = _keep_two((x - left_a[x]) ** 2, label_a[x], b1, c1, b2, c2)
                if label_b[x] != 0 and (x - left_b[x]) ** 2 <= cap:
                    b1, c1, b2, c2 = _keep_two((x - left_b[x]) ** 2, label_b[x], b1, c1, b2, c2)
                if ra != 0 and (qa - x) ** 2 <= cap:
                    b1, c1, b2, c2 = _keep_two((qa - x) ** 2, ra, b1, c1, b2, c2)
                if rb != 0 and (qb - x) ** 2 <= cap:
                    b1, c1, b2, c2 = _keep_two((qb - x) ** 2, rb, b1, c1, b2, c2)
                s1[i, j, x], l1[i, j, x], s2[i, j, x], l2[i, j, x] = b1, c1, b2, c2


@njit(cache=True, inline="always")
def _envelope(ys, fs, m, hull, bounds):
    """Lower envelope of the parabolas ``fs[q] + (x - ys[q])^2``, q < m, ys increasing (Felzenszwalb &
    Huttenlocher): ``hull[k]`` its parabolas from left to right, ``bounds[k]`` where each starts."""
    k = 0
    hull[0] = 0
    bounds[0] = -np.inf
    bounds[1] = np.inf
    for q in range(1, m):
        g = fs[q] + ys[q] * ys[q]
        while True:
            p = hull[k]
            s = (g - (fs[p] + ys[p] * ys[p])) / (2.0 * (ys[q] - ys[p]))
            if s <= bounds[k] and k > 0:
                k -= 1
            else:
                break
        if s <= bounds[k]:  # below the only parabola left everywhere
            hull[0] = q
            continue
        k += 1
        hull[k] = q
        bounds[k] = s
        bounds[k + 1] = np.inf


@njit(cache=True, inline="always")
def _evaluate(ys, fs, ls, hull, bounds, start, stop, cap, out, out_labels):
    """The envelope on x in [start, stop): its value (``_NONE`` above cap) and the label of its parabola."""
    k = 0
    for x in range(start, stop):
        while bounds[k + 1] < x:
            k += 1
        q = hull[k]
        value = fs[q] + (x - ys[q]) ** 2
        if value <= cap:
            out[x], out_labels[x] = value, ls[q]
        else:
            out[x], out_labels[x] = _NONE, 0


@njit(cache=True, inline="always")
def _other_than(owner, t1, m1, t2, m2, ls, k):
    """A voxel's best pair of an object other than ``owner``: its squared distance (int64); its label into ls[k]."""
    if m1 == owner:
        ls[k] = m2
        return np.int64(t2)
    ls[k] = m1
    return np.int64(t1)


@njit(cache=True)
def _line(t1, m1, t2, m2, need, o1, n1, o2, n2, cap, first_cap, prune, ys, fs, ls, hull, bounds):
    """One line (n,) of the two-nearest pass: inputs (t1, m1) <= (t2, m2), outputs (o1, n1) <= (o2, n2).

    The nearest object: the envelope of every voxel's first pair. The second-nearest one on a run [a, b) of
    voxels whose nearest object is A: the envelope of, per voxel y, its first pair if not A's, else its second
    one (the best pair of another object there), over the y whose pair can matter on the run. With ``prune``
    (the last axis), only where ``need`` and the nearest squared distance is <= ``first_cap``."""
    n = t1.shape[0]
    m = 0
    for y in range(n):
        ys[m], fs[m], ls[m] = y, t1[y], m1[y]
        m += t1[y] < _NONE
    if m == 0:
        o1[:] = _NONE
        n1[:] = 0
        o2[:] = _NONE
        n2[:] = 0
        return
    _envelope(ys, fs, m, hull, bounds)
    _evaluate(ys, fs, ls, hull, bounds, 0, n, cap, o1, n1)
    x = 0
    while x < n:
        if o1[x] == _NONE or (prune and (not need[x] or o1[x] > first_cap)):
            o2[x], n2[x] = _NONE, 0
            x += 1
            continue
        owner, a = n1[x], x
        while x < n and n1[x] == owner and o1[x] != _NONE and not (prune and (not need[x] or o1[x] > first_cap)):
            x += 1
        b = x
        limit = 0  # a bound on the run's second squared distances: each voxel's own best pair of another object
        for y in range(a, b):
            limit = max(limit, t2[y] if m1[y] == owner else t1[y])
        limit = min(limit, cap)
        # Left of the run, outward from a - 1: a candidate can be lowest somewhere on [a, b) only if, at x = a, it
        # is below the limit and below every candidate nearer the run (a farther parabola above a nearer one at a
        # stays above it on the whole run); none can once the gap alone reaches the lowest value at a. Stored from
        # the end of the buffers, then moved to the front in increasing y.
        m, best, y = 0, limit + 1, a - 1
        while y >= 0 and (a - y) * (a - y) < best:
            value = _other_than(owner, t1[y], m1[y], t2[y], m2[y], ls, n - 1 - m) + (a - y) * (a - y)
            if value < best:
                best, ys[n - 1 - m], fs[n - 1 - m] = value, y, value - (a - y) * (a - y)
                m += 1
            y -= 1
        for k in range(m):
            ys[k], fs[k], ls[k] = ys[n - m + k], fs[n - m + k], ls[n - m + k]
        for y in range(a, b):
            value = _other_than(owner, t1[y], m1[y], t2[y], m2[y], ls, m)
            ys[m], fs[m] = y, value
            m += value <= limit
        best, y = limit + 1, b  # right of the run, outward from b, at x = b - 1
        while y < n and (y - b + 1) * (y - b + 1) < best:
            value = _other_than(owner, t1[y], m1[y], t2[y], m2[y], ls, m)
            if value + (y - b + 1) * (y - b + 1) < best:
                best, ys[m], fs[m] = value + (y - b + 1) * (y - b + 1), y, value
                m += 1
            y += 1
        if m == 0:
            o2[a:b] = _NONE
            n2[a:b] = 0
            continue
        _envelope(ys, fs, m, hull, bounds)
        _evaluate(ys, fs, ls, hull, bounds, a, b, cap, o2, n2)


@njit(cache=True)
def _plane(s1, l1, s2, l2, need, buffer, cap, first_cap, prune, ys, fs, ls, hull, bounds):
    """The pass along axis 0 of the planes (A, B), through ``buffer`` (9, B, A): lines contiguous there."""
    size_a, size_b = s1.shape
    for a in range(size_a):
        for b in range(size_b):
            buffer[0, b, a], buffer[1, b, a], buffer[2, b, a], buffer[3, b, a] = s1[a, b], l1[a, b], s2[a, b], l2[a, b]
        if prune:
            for b in range(size_b):
                buffer[8, b, a] = need[a, b]
    for b in range(size_b):
        _line(buffer[0, b], buffer[1, b], buffer[2, b], buffer[3, b], buffer[8, b], buffer[4, b], buffer[5, b],
              buffer[6, b], buffer[7, b], cap, first_cap, prune, ys, fs, ls, hull, bounds)
    for a in range(size_a):
        for b in range(size_b):
            s1[a, b], s2[a, b] = buffer[4, b, a], buffer[6, b, a]
        if not prune:  # (the last axis: no labels needed after it)
            for b in range(size_b):
                l1[a, b], l2[a, b] = buffer[5, b, a], buffer[7, b, a]


@njit(cache=True)
def _axis(s1, l1, s2, l2, need, axis, cap, first_cap, prune):
    """The two-nearest pass along ``axis`` (0 or 1) of (X, Y, Z) int32 arrays, in place."""
    size_x, size_y, size_z = s1.shape
    n = s1.shape[axis]
    ys, fs = np.empty(n, np.int64), np.empty(n, np.int64)
    ls, hull = np.empty(n, np.int32), np.empty(n, np.int64)
    bounds = np.empty(n + 1, np.float64)
    buffer = np.empty((9, size_z, n), np.int32)
    if axis == 1:
        for i in range(size_x):
            _plane(s1[i], l1[i], s2[i], l2[i], need[i], buffer, cap, first_cap, prune, ys, fs, ls, hull, bounds)
    else:
        for j in range(size_y):
            _plane(s1[:, j], l1[:, j], s2[:, j], l2[:, j], need[:, j], buffer, cap, first_cap, prune, ys, fs, ls,
                   hull, bounds)


def two_nearest_squared_distances(objects: np.ndarray, radius: float,
                                  where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances (in voxels) of every voxel to its nearest and second-nearest object, exact where at
    most ``radius``, ``_NONE`` beyond; int32, ``objects``' shape.

    ``objects``: connected-component labels (X, Y) or (X, Y, Z), 1..count (0 elsewhere). ``where``: bool, same
    shape: the second-nearest one only there, and only where the nearest one is within ``radius / 2``
    (``_NONE`` elsewhere); the nearest one everywhere.
    """
    if objects.ndim not in (2, 3):
        raise ValueError(f"objects must be (X, Y) or (X, Y, Z), got shape {objects.shape}")
    shape = objects.shape
    volume = np.ascontiguousarray(objects, dtype=np.int32).reshape((1,) * (3 - objects.ndim) + shape)
    cap, first_cap = _squared_caps(radius, shape)
    s1, l1, s2, l2 = (np.empty(volume.shape, np.int32) for _ in range(4))
    _first_axis(volume, cap, s1, l1, s2, l2)
    need = np.ones(volume.shape, np.int32) if where is None else where.reshape(volume.shape).astype(np.int32)
    axes = [axis for axis in (1, 0) if volume.shape[axis] > 1]
    for axis in axes:
        last = axis == axes[-1] and where is not None
        _axis(s1, l1, s2, l2, need, axis, cap, first_cap if last else cap, last)
    nearest, second = s1.reshape(shape), s2.reshape(shape)
    if where is not None and not axes:  # one line: no pass left out the voxels not asked for
        second[~where | (nearest > first_cap)] = _NONE
    return nearest, second


def two_nearest_object_distances(objects: np.ndarray, count: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in voxels) of every voxel to its nearest and second-nearest object, exact where at most
    ``radius`` (inf beyond); float32, ``objects``' shape.

    ``objects``: connected-component labels 1..count (0 elsewhere), as ``connected_objects`` returns them.
    """
    nearest, second = two_nearest_squared_distances(objects, radius)
    return tuple(np.where(s < _NONE, np.sqrt(s.astype(np.float32)), np.float32(np.inf)) for s in (nearest, second))


@njit(cache=True, inline="always")
def _border_term(nearest, second, w0, scale):
    """``w0 exp(scale (d1 + d2)^2)`` from the squared distances, in float64 (scale = -1 / (2 sigma^2))."""
    total = math.sqrt(nearest) + math.sqrt(second)
    return w0 * math.exp(scale * total * total)


@njit(cache=True)
def _add_border_terms(out, nearest, second, w0, sigma, rows, columns):
    """``out += w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` where both squared distances are kept (flat arrays).

    The term of every pair of integer squared distances (d1^2 < rows, d2^2 < columns) is tabulated first: one
    exp per pair instead of one per voxel, the same float64 values (pairs outside the table are computed)."""
    scale = -1.0 / (2.0 * sigma * sigma)
    table = np.empty((rows, columns), np.float64)
    for a in range(rows):
        for b in range(columns):
            table[a, b] = _border_term(a, b, w0, scale)
    for k in range(out.shape[0]):
        b = second[k]
        if b < _NONE:
            a = nearest[k]
            term = table[a, b] if a < rows and b < columns else _border_term(a, b, w0, scale)
            out[k] = np.float32(out[k] + term)


_TABLE_ENTRIES = 2**16  # the border term's table: at most 512 KiB, about a millisecond to fill


def _border_table_shape(cap: int, first_cap: int, voxels: int) -> tuple[int, int]:
    """Rows (d1^2) and columns (d2^2) of the border term's table: every pair within the radius where that fits
    in ``_TABLE_ENTRIES`` and in the patch's voxel count (a table never costs more than the patch)."""
    budget = max(1, min(_TABLE_ENTRIES, voxels))
    rows = min(first_cap + 1, budget)
    return rows, max(1, min(cap + 1, budget // rows))


def connected_objects(foreground: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a bool mask (X, Y) or (X, Y, Z), full connectivity (8 / 26 neighbours): labels
    1..count (0 off the mask), and count. (cc3d: several times scipy.ndimage.label's speed.)"""
    return cc3d.connected_components(foreground, connectivity=3 ** foreground.ndim - 1, return_N=True)


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, ignore_label: int | None = None,
                    truncation: float = 1e-4) -> np.ndarray:
    """The U-Net weight map of one label map (X, Y) or (X, Y, Z); float32, same shape (see the module docstring).

    Args:
        labels: integer class labels (0 = background).
        w0: height of the border term (the paper: 10).
        sigma: width of the border term in voxels (the paper: about 5).
        ignore_label: voxels with this label get weight 0 and count in no class.
        truncation: objects farther than ``sigma sqrt(2 ln(1/truncation))`` from a voxel are not looked at there;
            the border term is then off by at most ``w0 * truncation``.
    """
    labels = np.asarray(labels)
    _check_arguments(labels, w0, sigma, truncation)
    if labels.dtype.kind not in "iu":  # integer-valued floats, bools
        labels = labels.astype(np.intp)
    out, foreground, background = class_weights(np.ascontiguousarray(labels), ignore_label)
    objects, count = connected_objects(foreground)
    if count >= 2 and w0 > 0:
        radius = border_radius(sigma, truncation)
        nearest, second = two_nearest_squared_distances(objects, radius, background)
        rows, columns = _border_table_shape(*_squared_caps(radius, labels.shape), labels.size)
        _add_border_terms(out.reshape(-1), nearest.reshape(-1), second.reshape(-1), w0, sigma, rows, columns)
    return out
