"""Cube-map faces of an equirect, and per-face class probabilities projected back onto an equirect.

Perspective segmentation models see a 360° frame as six **faces**, gnomonic views of ``fov`` degrees (90° =
a cube; more gives overlapping faces) looking front, right, back, left, up and down. Each face is an upright
camera (``forward``, ``right``, ``up`` unit vectors in the project's axes: x front, y left, z up); the up face
has the back at its top, the down face the front at its top (the usual cube-map "dice" unfolding). Face pixel
``(row j, column i)`` of an ``n × n`` face looks along ``forward + a·right − b·up`` with
``a = (2(i + 0.5)/n − 1)·tan(fov/2)``, ``b = (2(j + 0.5)/n − 1)·tan(fov/2)``.

* :func:`equirect_to_faces` samples the faces from an equirect (bilinear; azimuth wraps, rows clamp).
* :func:`faces_to_equirect` projects per-face class probabilities ``[6, K, n, n]`` back: every equirect pixel
  is looked up on the face whose axis is nearest to its direction (bilinear within the face, clamped at its
  edge), so there is no blending across cube seams and every direction is covered once.

All sampling tables are computed once per geometry and cached. Directions use :mod:`avsa_data.geometry`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from avsa_data.geometry import direction_to_equirect, direction_to_vector, equirect_direction_grid, vector_to_direction

FACE_NAMES = ("front", "right", "back", "left", "up", "down")


@lru_cache(maxsize=1)
def face_bases() -> NDArray[np.float64]:
    """``[6, 3, 3]``: per face the rows (forward, right, up) as unit vectors (x front, y left, z up)."""
    z = np.array([0.0, 0.0, 1.0])
    sides = []
    for az in (0.0, -90.0, 180.0, 90.0):  # front, right, back, left (azimuth positive to the left)
        sides.append(np.stack([direction_to_vector(az, 0.0), direction_to_vector(az - 90.0, 0.0), z]))
    front, right = direction_to_vector(0.0, 0.0), direction_to_vector(-90.0, 0.0)
    up_face = np.stack([z, right, -front])  # looking up: image top = back
    down_face = np.stack([-z, right, front])  # looking down: image top = front
    out = np.round(np.stack([*sides, up_face, down_face]), 12)
    out.setflags(write=False)
    return out


def _tan_half(fov_deg: float) -> float:
    if not 90.0 <= fov_deg < 180.0:
        raise ValueError(f"cube face field of view must be in [90, 180) degrees, got {fov_deg}")
    return float(np.tan(np.deg2rad(fov_deg) / 2.0))


@lru_cache(maxsize=8)
def face_directions(face_w: int, fov_deg: float = 90.0) -> NDArray[np.float64]:
    """``[6, n, n, 3]`` (unnormalised) viewing direction of every face pixel centre."""
    t = _tan_half(fov_deg)
    c = (2.0 * (np.arange(face_w) + 0.5) / face_w - 1.0) * t
    a, b = np.meshgrid(c, c)  # a along columns (right), b along rows (down)
    basis = face_bases()
    fwd, right, up = (basis[:, None, None, i] for i in range(3))  # each [6, 1, 1, 3]
    d = fwd + a[None, ..., None] * right - b[None, ..., None] * up
    d.setflags(write=False)
    return d


def _bilinear(x: NDArray, y: NDArray, w: int, h: int, wrap_x: bool) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Flat indices ``[4, ...]`` into an ``h × w`` grid and bilinear weights for pixel coordinates (x, y) with
    pixel centres at integers; x wraps (equirect azimuth) or clamps, y clamps."""
    x0f, y0f = np.floor(x), np.floor(y)
    ax, ay = x - x0f, y - y0f
    x0 = x0f.astype(np.int64)
    if wrap_x:
        x0, x1 = x0 % w, (x0 + 1) % w
    else:
        x0, x1 = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    y0 = np.clip(y0f.astype(np.int64), 0, h - 1)
    y1 = np.clip(y0f.astype(np.int64) + 1, 0, h - 1)
    index = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    weights = np.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay]).astype(np.float32)
    return index, weights


@lru_cache(maxsize=8)
def _face_taps(face_w: int, fov_deg: float, h: int, w: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Bilinear taps ``[4, 6·n·n]`` into a flat ``h × w`` equirect for every face pixel."""
    az, el = vector_to_direction(face_directions(face_w, fov_deg))
    u, v = direction_to_equirect(az, el, h, w)
    index, weights = _bilinear(u.ravel(), v.ravel(), w, h, wrap_x=True)
    return index, weights


def equirect_to_faces(frame: NDArray, face_w: int, fov_deg: float = 90.0) -> NDArray[np.float32]:
    """Six ``face_w × face_w`` gnomonic faces ``[6, n, n, C]`` (float32, same value range) of an equirect
    ``[H, W, C]`` (or ``[H, W]``, giving ``[6, n, n]``), in the order of :data:`FACE_NAMES`."""
    if frame.ndim not in (2, 3):
        raise ValueError(f"expected an equirect [H, W(, C)], got shape {frame.shape}")
    h, w = frame.shape[:2]
    index, weights = _face_taps(int(face_w), float(fov_deg), h, w)
    flat = frame.reshape((h * w,) + frame.shape[2:])
    out = np.zeros((index.shape[1],) + frame.shape[2:], dtype=np.float32)
    for k in range(4):
        wk = weights[k].reshape((-1,) + (1,) * (frame.ndim - 2))
        out += wk * flat[index[k]].astype(np.float32)
    return out.reshape((6, face_w, face_w) + frame.shape[2:])


@lru_cache(maxsize=8)
def _equirect_taps(face_w: int, fov_deg: float, h: int, w: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Bilinear taps ``[4, h·w]`` into the flat ``[6·n·n]`` face pixels for every equirect pixel."""
    t = _tan_half(fov_deg)
    az, el = equirect_direction_grid(h, w)
    d = direction_to_vector(az, el).reshape(-1, 3)
    basis = face_bases()
    proj = d @ basis[:, 0].T  # [P, 6] cosine to every face axis
    face = np.argmax(proj, axis=1)
    col = np.empty(len(d))
    row = np.empty(len(d))
    for f in range(6):
        m = face == f
        depth = proj[m, f] * t
        col[m] = (d[m] @ basis[f, 1] / depth + 1.0) / 2.0 * face_w - 0.5
        row[m] = (-(d[m] @ basis[f, 2]) / depth + 1.0) / 2.0 * face_w - 0.5
    index, weights = _bilinear(col, row, face_w, face_w, wrap_x=False)
    index += (face * face_w * face_w)[None]
    return index, weights


def _argmax_rows(flat: NDArray[np.float32]) -> NDArray[np.int64]:
    """``argmax`` over axis 0 of ``[K, N]`` (row by row: contiguous, much faster than a strided argmax)."""
    best = flat[0].copy()
    arg = np.zeros(flat.shape[1], dtype=np.int64)
    for k in range(1, flat.shape[0]):
        better = flat[k] > best
        np.copyto(best, flat[k], where=better)
        arg[better] = k
    return arg


def faces_to_equirect(probs: NDArray, height: int, width: int, fov_deg: float = 90.0
                      ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Project per-face class probabilities ``[6, K, n, n]`` onto an ``height × width`` equirect.

    Returns (class ids ``[H, W]``, confidence ``[H, W]`` float32) where the confidence is the bilinearly
    interpolated probability of the chosen class. The chosen class is the best of the four neighbouring face
    pixels' top classes, scored by its interpolated probability: exact wherever the neighbours agree (all
    pixels but region boundaries), and nearly independent of K in cost (a few gathers per pixel, not 4·K).
    """
    if probs.ndim != 4 or probs.shape[0] != 6 or probs.shape[2] != probs.shape[3]:
        raise ValueError(f"expected face probabilities [6, K, n, n], got shape {probs.shape}")
    k, n = probs.shape[1], probs.shape[2]
    index, weights = _equirect_taps(n, float(fov_deg), int(height), int(width))
    flat = np.ascontiguousarray(np.moveaxis(probs, 1, 0).reshape(k, -1), dtype=np.float32)  # [K, 6·n·n]
    npix = flat.shape[1]
    values = flat.ravel()
    top = _argmax_rows(flat)  # best class of every face pixel

    def score(cls: NDArray[np.int64], idx: NDArray[np.int64], wts: NDArray[np.float32]) -> NDArray[np.float32]:
        return sum(wts[t] * np.take(values, cls * npix + idx[t]) for t in range(4))

    cands = top[index]  # [4, P]: the top class at each of the four taps
    best_c = cands[0].copy()
    best_p = score(best_c, index, weights)
    seen = np.zeros(cands.shape[1], dtype=bool)
    for j in range(1, 4):  # other candidates, only where they differ from the ones scored already
        new = cands[j] != cands[0]
        for i in range(1, j):
            new &= cands[j] != cands[i]
        sel = np.flatnonzero(new)
        if not sel.size:
            continue
        seen[sel] = True
        p = score(cands[j, sel], index[:, sel], weights[:, sel])
        better = p > best_p[sel]
        best_p[sel[better]] = p[better]
        best_c[sel[better]] = cands[j, sel[better]]
    return best_c.reshape(height, width), np.clip(best_p, 0.0, 1.0).reshape(height, width).astype(np.float32)
