"""NFOV (gnomonic / rectilinear) crops of equirectangular frames.

The camera geometry is py360convert's (``xyzpers`` → ``xyz2uv`` → ``uv2coor``), written out here with the
three rotations folded into one matrix (6× faster, and importing py360convert costs 0.7 CPU-s per job through
scipy; tests/test_crops_viewpoints.py checks the grids against py360convert). It lives in
one place because py360convert's horizontal angle ``u_deg`` is positive when turning **right**, the
opposite of our azimuth: ``u_deg = -azimuth`` (see docs/CONVENTIONS.md). The camera has no roll: its
up vector lies in the vertical plane of the view direction.

A :class:`CropGrid` is computed **once per viewpoint** and then applied to all T frames of a clip
(bilinear) and to label / confidence maps (nearest, so class ids are never blended). Grids are stored in
normalised equirect coordinates so one grid serves inputs of any resolution (e.g. a 1920×960 video and
its 480×240 label map). Azimuth wraps around ±180°; rows past the poles are clamped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from .viewpoints import Viewpoint

DEFAULT_CROP_SIZE = (112, 112)
#: Grids kept per cache. Viewpoints are random per sample, so a grid is reused within one sample only; a
#: small cache bounds a worker's memory (at 4096 / 1024 entries the caches grew to ~1.5 GB over a long job).
GRID_CACHE = 64


def py360_angles(view: Viewpoint) -> tuple[float, float]:
    """(u_deg, v_deg) for ``py360convert.e2p`` that look at ``view``: u_deg = -azimuth, v_deg = elevation."""
    return -float(view.azimuth), float(view.elevation)


def _camera_rays(h_fov: float, v_fov: float, u: float, v: float, out_hw: tuple[int, int]) -> NDArray[np.float64]:
    """``py360convert.utils.xyzpers(h_fov, v_fov, u, v, out_hw, 0)`` (radians; no roll) as float64 ``[h, w, 3]``.

    The same rays, with the three camera rotations multiplied into one matrix and applied as one matrix
    product over all pixels (py360convert applies them one by one to an ``[h, w, 3]`` array: 6× slower).
    Written out here (same formulas, tests/test_crops_viewpoints.py checks them against py360convert) because
    importing py360convert pulls in scipy.ndimage / scipy.spatial: 0.7 CPU-s per shard job.
    """
    x_max, y_max = np.tan(h_fov / 2), np.tan(v_fov / 2)
    xs = np.linspace(-x_max, x_max, num=out_hw[1], dtype=np.float32).astype(np.float64)
    ys = np.linspace(-y_max, y_max, num=out_hw[0], dtype=np.float32).astype(np.float64)
    grid = np.ones((out_hw[0], out_hw[1], 3))
    grid[..., 0], grid[..., 1] = np.meshgrid(xs, -ys)
    cv, sv, cu, su = np.cos(v), np.sin(v), np.cos(u), np.sin(u)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cv, -sv], [0.0, sv, cv]])  # rotation_matrix(v, X)
    ry = np.array([[cu, 0.0, su], [0.0, 1.0, 0.0], [-su, 0.0, cu]])  # rotation_matrix(u, Y); roll 0 = identity
    return (grid.reshape(-1, 3) @ (rx @ ry)).astype(np.float32).astype(np.float64).reshape(grid.shape)


def _equirect_fractions(xyz: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``py360convert.utils.uv2coor(*xyz2uv(xyz), 1, 1)`` + 0.5: equirect position of rays as fractions."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    u = np.arctan2(x, z)
    v = np.arctan2(y, np.hypot(x, z))
    return u / (2 * np.pi) + 0.5, -v / np.pi + 0.5


@lru_cache(maxsize=GRID_CACHE)
def _grid_fractions(view: Viewpoint, out_h: int, out_w: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    u_deg, v_deg = py360_angles(view)
    # py360convert.e2p internally negates u_deg before building the camera; we do the same.
    xyz = _camera_rays(np.deg2rad(view.hfov), np.deg2rad(view.vfov), -np.deg2rad(u_deg), np.deg2rad(v_deg),
                       (out_h, out_w))
    # Normalised coordinates: pixel coordinate of an input of width/height 1 (pixel centres at k+0.5).
    return _equirect_fractions(xyz)


@dataclass(frozen=True)
class CropGrid:
    """Sampling grid of one viewpoint for an output of ``out_hw`` pixels.

    ``fx``/``fy`` are the equirect positions of every output pixel centre as fractions of the input
    width/height (pixel centre of column ``u`` is at ``(u + 0.5) / W``).
    """

    view: Viewpoint
    out_hw: tuple[int, int] = DEFAULT_CROP_SIZE
    fx: NDArray[np.float64] = field(init=False, repr=False)
    fy: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fx, fy = _grid_fractions(self.view, int(self.out_hw[0]), int(self.out_hw[1]))
        object.__setattr__(self, "fx", fx)
        object.__setattr__(self, "fy", fy)

    def pixel_coords(self, in_h: int, in_w: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Continuous input pixel coordinates (column, row; pixel centres at integers)."""
        return self.fx * in_w - 0.5, self.fy * in_h - 0.5

    def sample(self, frames: NDArray, mode: str = "bilinear") -> NDArray:
        """Crop one frame ``[H, W(, C)]`` or a clip ``[T, H, W, C]`` of equirect images.

        ``mode`` is ``bilinear`` (images; result keeps the input dtype, rounded for integers) or
        ``nearest`` (label and confidence maps).
        """
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"unknown interpolation mode {mode!r}; use 'bilinear' or 'nearest'")
        if frames.ndim not in (2, 3, 4):
            raise ValueError(f"expected an image [H, W(, C)] or clip [T, H, W, C], got shape {frames.shape}")
        lead = 1 if frames.ndim == 4 else 0
        h, w = frames.shape[lead], frames.shape[lead + 1]
        flat = frames.reshape(frames.shape[:lead] + (h * w,) + frames.shape[lead + 2 :])
        if mode == "nearest":
            return np.take(flat, _nearest_index(self.view, self.out_hw, h, w), axis=lead)
        index, weights = _bilinear_taps(self.view, self.out_hw, h, w)
        taps = np.take(flat, index, axis=lead).astype(np.float32)  # [(T,) 4, h, w(, C)]
        out = (taps * weights.reshape(weights.shape + (1,) * (frames.ndim - lead - 2))).sum(axis=lead)
        if np.issubdtype(frames.dtype, np.integer):
            info = np.iinfo(frames.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
        return out.astype(frames.dtype, copy=False)


@lru_cache(maxsize=GRID_CACHE)
def _nearest_index(view: Viewpoint, out_hw: tuple[int, int], h: int, w: int) -> NDArray[np.int64]:
    """Flat input index ``[out_h, out_w]`` of the nearest pixel (azimuth wraps, rows clamp at the poles)."""
    cx, cy = CropGrid(view, out_hw).pixel_coords(h, w)
    xi = np.floor(cx + 0.5).astype(np.int64) % w
    yi = np.clip(np.floor(cy + 0.5).astype(np.int64), 0, h - 1)
    return yi * w + xi


@lru_cache(maxsize=GRID_CACHE)
def _bilinear_taps(view: Viewpoint, out_hw: tuple[int, int], h: int, w: int) -> tuple[NDArray, NDArray]:
    """Flat indices ``[4, out_h, out_w]`` of the four neighbours and their bilinear weights (float32)."""
    cx, cy = CropGrid(view, out_hw).pixel_coords(h, w)
    x0f, y0f = np.floor(cx), np.floor(cy)
    ax, ay = cx - x0f, cy - y0f
    x0 = x0f.astype(np.int64) % w
    x1 = (x0 + 1) % w
    y0 = np.clip(y0f.astype(np.int64), 0, h - 1)
    y1 = np.clip(y0f.astype(np.int64) + 1, 0, h - 1)
    index = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    weights = np.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay]).astype(np.float32)
    return index, weights


def crop(frames: NDArray, view: Viewpoint, out_hw: tuple[int, int] = DEFAULT_CROP_SIZE,
         mode: str = "bilinear") -> NDArray:
    """Convenience: ``CropGrid(view, out_hw).sample(frames, mode)``."""
    return CropGrid(view, tuple(out_hw)).sample(frames, mode)
