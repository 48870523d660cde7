"""NFOV crops sampled straight from decoded YUV 4:2:0 planes, converting only the crop pixels to RGB.

The shard builder used to have ffmpeg convert every needed equirect frame to RGB (swscale) and pipe
``3·W·H`` bytes per frame into Python, then crop with numpy gathers. Here ffmpeg pipes the decoder's own
4:2:0 planes (``1.5·W·H`` bytes, no colour conversion) and each crop is made by

1. a compiled bilinear remap (``cv2.remap``, fixed-point maps precomputed once per viewpoint and frame size)
   of the luma plane at the crop's pixel positions and of both chroma planes at the matching chroma positions
   (H.264's default "left" chroma siting: chroma sample ``(i, j)`` sits at luma ``(2i, 2j + 0.5)``), then
2. one affine YCbCr → RGB conversion (``cv2.transform``, saturating, rounded) of the ``h × w`` crop pixels:
   64 crops of 112² are 0.8 Mpx per sample, against 8 × 1.8 Mpx for the whole 1920×960 frames.

The geometry is :class:`avsa_data.crops.CropGrid`'s (same pixel positions; azimuth wraps around ±180°,
rows past the poles clamp), so every convention of :mod:`avsa_data.crops` holds. Values differ from
"convert the whole frame to RGB, then crop" only by interpolating chroma bilinearly (ffmpeg's RGB converter
repeats each chroma sample over 2×2 pixels) and by the remap's 1/32-pixel weights: well inside JPEG noise
(``benchmarks/shard.py`` reports the PSNR).

Colour matrix and range follow the stream (BT.709 / BT.601 / BT.2020 non-constant luminance; limited "tv"
or full "pc" range), with ffmpeg's default for an untagged stream: BT.601, limited range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from .crops import CropGrid

cv2.setNumThreads(1)  # one shard worker = one core; also keeps every run's arithmetic identical

#: Luma coefficients (Kr, Kb) of the colour matrices ffmpeg reports for a stream.
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
_MATRIX_ALIASES = {"bt470bg": "bt601", "smpte170m": "bt601", "bt2020nc": "bt2020", "bt2020c": "bt2020",
                   "bt709": "bt709", "fcc": "bt601", "smpte240m": "bt709"}


@dataclass(frozen=True)
class ColorSpace:
    """How a stream's Y'CbCr maps to R'G'B': ``matrix`` (key of :data:`MATRICES`) and ``full_range``."""

    matrix: str = "bt601"
    full_range: bool = False

    @classmethod
    def from_tags(cls, tags: Sequence[str]) -> ColorSpace:
        """From ffmpeg's pixel-format annotations, e.g. ``("tv", "bt709", "progressive")``; untagged → BT.601 tv."""
        matrix, full = "bt601", False
        for t in tags:
            t = t.strip().lower().split("/")[0]
            if t in ("pc", "jpeg", "full"):
                full = True
            if t in _MATRIX_ALIASES:
                matrix = _MATRIX_ALIASES[t]
        return cls(matrix, full)


@lru_cache(maxsize=16)
def ycbcr_to_rgb_matrix(space: ColorSpace) -> NDArray[np.float32]:
    """``[3, 4]`` affine map from 8-bit (Y, Cb, Cr, 1) to 8-bit (R, G, B) for ``cv2.transform``."""
    kr, kb = MATRICES[space.matrix]
    kg = 1.0 - kr - kb
    ys, cs, y0 = (1.0, 1.0, 0.0) if space.full_range else (255.0 / 219.0, 255.0 / 224.0, 16.0)
    m = np.array([
        [ys, 0.0, cs * 2 * (1 - kr)],
        [ys, -cs * 2 * (1 - kb) * kb / kg, -cs * 2 * (1 - kr) * kr / kg],
        [ys, cs * 2 * (1 - kb), 0.0],
    ])
    offset = -m @ np.array([y0, 128.0, 128.0])
    return np.concatenate([m, offset[:, None]], axis=1).astype(np.float32)


class YuvFrame:
    """One decoded 4:2:0 frame: ``y`` ``[H, W]``, ``u``/``v`` (Cb/Cr) ``[ceil(H/2), ceil(W/2)]``, all uint8."""

    __slots__ = ("y", "u", "v", "space")

    def __init__(self, y: NDArray[np.uint8], u: NDArray[np.uint8], v: NDArray[np.uint8],
                 space: ColorSpace = ColorSpace()):
        self.y, self.u, self.v, self.space = y, u, v, space

    @classmethod
    def from_buffer(cls, buf: bytes | bytearray, width: int, height: int, space: ColorSpace = ColorSpace()) -> YuvFrame:
        """Views into one ``yuv420p`` frame as ffmpeg's rawvideo muxer writes it (Y, then U, then V planes)."""
        cw, ch = (width + 1) // 2, (height + 1) // 2
        a = np.frombuffer(buf, dtype=np.uint8)
        ny, nc = width * height, cw * ch
        if a.size != ny + 2 * nc:
            raise ValueError(f"a {width}x{height} yuv420p frame has {ny + 2 * nc} bytes, got {a.size}")
        return cls(a[:ny].reshape(height, width), a[ny:ny + nc].reshape(ch, cw),
                   a[ny + nc:].reshape(ch, cw), space)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.shape

    def to_rgb(self) -> NDArray[np.uint8]:
        """The whole frame as ``[H, W, 3]`` RGB (chroma upsampled bilinearly with the crops' siting)."""
        h, w = self.y.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return _convert(_remap_planes(self, xs, ys, w), self.space)


def _chroma_coords(cx: NDArray, cy: NDArray) -> tuple[NDArray, NDArray]:
    """Chroma-plane coordinates of luma positions (left siting: chroma (i, j) at luma (2i, 2j + 0.5))."""
    return cx / 2.0, cy / 2.0 - 0.25


def _clamped_maps(cx: NDArray, cy: NDArray, plane_h: int) -> tuple[NDArray, NDArray]:
    """``cv2.remap`` maps (float32); rows clamp to the plane, so the wrap border only acts on the azimuth."""
    return cx.astype(np.float32), np.clip(cy, 0.0, plane_h - 1.0).astype(np.float32)


@lru_cache(maxsize=8)  # a bank serves the M moments × T frames of one sample; ~1 MB each
def _bank_maps(views: tuple, out_hw: tuple[int, int], h: int, w: int) -> tuple:
    """Luma and chroma remap maps of a bank of viewpoints, views side by side: ``[out_h, K·out_w]``."""
    cxs, cys = zip(*(CropGrid(v, out_hw).pixel_coords(h, w) for v in views))
    cx, cy = np.concatenate(cxs, axis=1), np.concatenate(cys, axis=1)
    qx, qy = _chroma_coords(cx, cy)
    return _clamped_maps(cx, cy, h), _clamped_maps(qx, qy, (h + 1) // 2)


def _remap(plane: NDArray[np.uint8], maps: tuple, out: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
    """Bilinear samples of ``plane`` at ``maps`` (columns wrap around: the equirect's azimuth)."""
    return cv2.remap(plane, maps[0], maps[1], cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_WRAP)


def _remap_planes(frame: YuvFrame, cx: NDArray, cy: NDArray, w: int) -> NDArray[np.uint8]:
    qx, qy = _chroma_coords(cx, cy)
    lm, cm = _clamped_maps(cx, cy, frame.y.shape[0]), _clamped_maps(qx, qy, frame.u.shape[0])
    return np.dstack([_remap(frame.y, lm), _remap(frame.u, cm), _remap(frame.v, cm)])


def _convert(ycc: NDArray[np.uint8], space: ColorSpace) -> NDArray[np.uint8]:
    return cv2.transform(ycc, ycbcr_to_rgb_matrix(space))


def crop_bank(frames: Sequence[YuvFrame], grids: Sequence[CropGrid]) -> list[NDArray[np.uint8]]:
    """The clips ``[T, h, w, 3]`` uint8 RGB of every grid (all of one crop size) over the T frames."""
    if not grids:
        return []
    out_hw = tuple(grids[0].out_hw)
    if any(tuple(g.out_hw) != out_hw for g in grids):
        raise ValueError("crop_bank: all grids of a bank must have the same output size")
    oh, ow = out_hw
    h, w = frames[0].shape
    lm, cm = _bank_maps(tuple(g.view for g in grids), out_hw, h, w)
    n = len(frames)
    planes = [np.empty((n, oh, ow * len(grids)), dtype=np.uint8) for _ in range(3)]  # Y, Cb, Cr
    for t, f in enumerate(frames):
        if f.shape != (h, w):
            raise ValueError(f"crop_bank: frames of one clip differ in size ({f.shape} vs {(h, w)})")
        _remap(f.y, lm, planes[0][t])
        _remap(f.u, cm, planes[1][t])
        _remap(f.v, cm, planes[2][t])
    ycc = cv2.merge([p.reshape(n * oh, -1) for p in planes])
    rgb = _convert(ycc, frames[0].space).reshape(n, oh, len(grids), ow, 3)
    return [np.ascontiguousarray(rgb[:, :, k]) for k in range(len(grids))]


def clips_for(frames: Sequence, grids: Sequence[CropGrid]) -> list[NDArray[np.uint8]]:
    """Crops of ``grids`` over a clip given as YUV frames (:func:`crop_bank`) or RGB arrays (``CropGrid.sample``)."""
    if frames and isinstance(frames[0], YuvFrame):
        return crop_bank(frames, grids)
    clip = np.stack(frames)
    return [g.sample(clip) for g in grids]


def rgb_of(frame) -> NDArray[np.uint8]:
    """An equirect frame as ``[H, W, 3]`` RGB, whether it came as a :class:`YuvFrame` or RGB already."""
    return frame.to_rgb() if isinstance(frame, YuvFrame) else frame
