"""Video augmentation and normalisation: the reference's colour jitter as one affine colour transform, the
horizontal flip, the Kinetics normalisation; in the loader workers (numpy) or, for the GPU path, on the device
for the whole batch (:func:`model_video`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: Kinetics RGB statistics used to normalise video clips (as in the reference code).
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)

VIDEO_STD = (0.22803, 0.22145, 0.216989)

#: Colour jitter of the reference (``ColorJitter(0.4, 0.4, 0.4, 0.2)``): brightness, contrast, saturation, hue.
COLOUR_JITTER = 0.4

HUE_JITTER = 0.2

#: Rec. 601 luma weights (the grey of the saturation jitter).
_LUMA = np.array([0.299, 0.587, 0.114])

#: RGB → YIQ (luma, two chroma axes); a hue shift is a rotation of the chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_matrix(shift: float) -> np.ndarray:
    """3×3 RGB matrix rotating the hue by ``shift`` turns (fractions of 360°) and keeping the luma."""
    a = 2.0 * np.pi * shift
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    return (np.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ).astype(np.float32)


def _jitter_affine(rng: np.random.Generator, strength: float, hue: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw one colour jitter and return it as ``(A, k)``: jittered ``x`` = ``clip(x @ A.T + mean(x) · k, 0, 1)``.

    Brightness ``b``, contrast ``c`` (about the mean of the brightened block), saturation ``s`` (about the luma)
    and the hue rotation ``H`` are all affine in the colour, so they compose into one 3×3 matrix
    ``A = c·b·H·S`` (``S = s·I + (1 − s)·1·lumaᵀ``) and one offset along ``k = (1 − c)·b·H·S·1`` scaled by the
    block's mean. Draw order (b, c, s, then the hue when ``hue`` > 0) is that of the step-by-step form.
    """
    b = 1 + rng.uniform(-strength, strength)
    c = 1 + rng.uniform(-strength, strength)
    s = 1 + rng.uniform(-strength, strength)
    sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), _LUMA)
    hs = (_hue_matrix(rng.uniform(-hue, hue)).astype(np.float64) if hue > 0 else np.eye(3)) @ sat
    return c * b * hs, (1 - c) * b * hs.sum(axis=1)


def colour_jitter(clip: np.ndarray, rng: np.random.Generator, strength: float = 0.4, hue: float = 0.0) -> np.ndarray:
    """Brightness, contrast and saturation jitter (factors uniform in ``1 ± strength``) and, with ``hue`` > 0, a
    hue shift uniform in ``± hue`` turns, of ``[.., T, H, W, 3]`` float RGB clips in [0, 1]; one draw for the
    whole array, so every view and frame of an item gets the same jitter (the contrast pivots on the mean of
    each ``[T, H, W, 3]`` block). Applied as one fused colour affine (:func:`_jitter_affine`), clipped once."""
    a, k = _jitter_affine(rng, strength, hue)
    x = np.asarray(clip, np.float32)
    mean = x.mean(axis=(-4, -3, -2, -1), keepdims=True, dtype=np.float64)
    out = x @ a.T.astype(np.float32) + (mean * k).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def colour_transform(jitter: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """The colour jitter (:func:`_jitter_affine`, or ``None``) and the normalisation as one ``[3, 4]`` float32
    transform of uint8 RGB: normalised ``y = clip(A·x + k·mean(x) + shift, lo, hi)`` with ``A = T[:, :3]``,
    ``k = T[:, 3]``, ``x`` in 0..255 and ``mean(x)`` over the clip's ``[T, H, W, 3]`` values (the contrast
    pivot), ``shift``/``lo``/``hi`` the normalised images of 0 and 1 (:func:`_normalised_bounds`). The scaling
    by 1/255 and :data:`VIDEO_MEAN`/:data:`VIDEO_STD` are folded in, so the clip to [0, 1] of the jittered
    colour becomes a clip to ``[lo, hi]`` (no jitter: ``k = 0`` and the clip changes nothing)."""
    scale = 1.0 / np.array(VIDEO_STD, np.float64)
    out = np.zeros((3, 4), np.float64)
    if jitter is None:
        out[:, :3] = np.diag(scale / 255.0)
    else:
        out[:, :3] = jitter[0] * scale[:, None] / 255.0
        out[:, 3] = jitter[1] * scale / 255.0
    return out.astype(np.float32)


def _normalised_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(``shift`` = ``lo``, ``hi``) float64: the normalised values of colour 0 and 1 per channel."""
    std = np.array(VIDEO_STD, np.float64)
    lo = -np.array(VIDEO_MEAN, np.float64) / std
    return lo, lo + 1.0 / std


def _finish_video(clips: list[list[np.ndarray]], colour: np.ndarray, flip: bool) -> np.ndarray:
    """``[M][V]`` uint8 ``[T, H, W, 3]`` clips → ``[M, V, 3, T, H, W]`` float32, in one pass per colour plane.

    Per clip: the colour transform ``colour`` (:func:`colour_transform`: jitter and normalisation), the
    columns mirrored when ``flip``; written straight into the channels-first output. The worker-side twin of
    :func:`model_video` (same transform, numpy instead of torch).
    """
    m_, v_ = len(clips), len(clips[0])
    t, h, w, _ = clips[0][0].shape
    out = np.empty((m_, v_, 3, t, h, w), np.float32)
    tmp = np.empty((t, h, w), np.float32)
    planes = np.empty((3, t, h, w), np.float32)  # one clip's R, G, B as float, reused for every clip
    shift, hi = _normalised_bounds()
    a, k = colour[:, :3], colour[:, 3].astype(np.float64)
    jittered = not np.array_equal(colour, colour_transform(None))
    lo32, hi32 = shift.astype(np.float32), hi.astype(np.float32)
    for m, row in enumerate(clips):
        for v, x in enumerate(row):
            offset = (k * float(x.sum(dtype=np.uint64)) / x.size + shift).astype(np.float32)
            if flip:
                x = x[:, :, ::-1]
            for ch in range(3):
                np.copyto(planes[ch], x[..., ch], casting="unsafe")  # uint8 → float32, exact
            for ch in range(3):
                o = out[m, v, ch]
                if not jittered:
                    np.multiply(planes[ch], a[ch, ch], out=o)
                    o += offset[ch]
                    continue
                np.multiply(planes[0], a[ch, 0], out=o)
                for src in (1, 2):
                    np.multiply(planes[src], a[ch, src], out=tmp)
                    o += tmp
                o += offset[ch]
                np.clip(o, lo32[ch], hi32[ch], out=o)
    return out


def _stack_clips(clips: list[list[np.ndarray]], flip: bool) -> np.ndarray:
    """``[M][V]`` uint8 ``[T, H, W, 3]`` clips → one ``[M, V, T, H, W, 3]`` uint8 array, mirrored when ``flip``
    (``cv2.flip`` of the clip as one ``[T·H, W, 3]`` image: 20× faster than a reversed-stride copy)."""
    t, h, w, c = clips[0][0].shape
    out = np.empty((len(clips), len(clips[0]), t, h, w, c), np.uint8)
    for m, row in enumerate(clips):
        for v, x in enumerate(row):
            if flip:
                cv2.flip(x.reshape(t * h, w, c), 1, dst=out[m, v].reshape(t * h, w, c))
            else:
                out[m, v] = x
    return out


def model_video(batch: dict, device: torch.device) -> torch.Tensor:
    """``batch["video"]`` on ``device`` as the model takes it, ``[B, M, V, 3, T, H, W]`` float32 normalised.

    A stream with ``video_on_device`` ships uint8 ``[B, M, V, T, H, W, 3]`` clips and each item's colour
    transform ``colour [B, 3, 4]`` (:func:`colour_transform`); they are applied here, on the device and for
    the whole batch (4× less to copy to a GPU, and no float conversion in the loader workers).
    """
    video = batch["video"].to(device, non_blocking=True)
    if video.dtype != torch.uint8:
        return video
    colour = batch["colour"].to(device, non_blocking=True)
    b, m, v, t, h, w, _ = video.shape
    x = video.permute(0, 1, 2, 6, 3, 4, 5).float().reshape(b, m, v, 3, t * h * w)  # channels first
    mean = x.mean(dim=(-2, -1))  # [B, M, V]: the contrast pivot of each clip, in 0..255
    shift, hi = (torch.tensor(z, dtype=torch.float32, device=device) for z in _normalised_bounds())
    out = colour[:, None, None, :, :3] @ x  # [B, M, V, 3, T·H·W]
    out += (colour[:, None, None, :, 3] * mean[..., None] + shift)[..., None]
    out = torch.maximum(torch.minimum(out, hi[:, None]), shift[:, None])
    return out.view(b, m, v, 3, t, h, w)
