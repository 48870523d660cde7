"""One sample → one item: the drawn views' clips and audio at the drawn moments, augmented.

Every per-sample random choice (which V views of the bank, flip, colour and volume jitter) uses
``rng(seed, "augment", epoch, key)``. Augmentation is applied **consistently** across modalities: a horizontal
flip reverses the crop columns and the masks, negates FOA Y, swaps stereo L/R, leaves mono unchanged
(docs/CONVENTIONS.md §7) and negates the azimuths of the sound-event labels (``with_events``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from avsa_data import ambisonics, binaural, events, renders
from avsa_data.geometry import rotation_yaw
from avsa_data.reader import RawSample
from avsa_data.rng import rng_for

from .augment import COLOUR_JITTER, HUE_JITTER, _finish_video, _jitter_affine, _stack_clips, colour_transform
from .members import derived
from .stream_config import AUDIO_FORMATS, StreamConfig

#: The left↔right mirror of a ``[C, n]`` render, the audio twin of a horizontal image flip: FOA negates Y
#: (ACN 1), stereo swaps L/R, and mono (a cardioid at the look direction, symmetric) stays as it is.
AUDIO_MIRRORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mono": lambda a: a, "stereo": binaural.flip_stereo, "ambi": ambisonics.flip_horizontal}


def view_audio(
    s: RawSample, views: Sequence[int], moment: int, audio_format: str, flip: bool = False, gain: float = 1.0,
    field_yaw: float = 0.0,
) -> np.ndarray:
    """``[V, C, n]`` float32 audio of the viewpoints ``views`` at ``moment``, mirrored when ``flip``
    (:data:`AUDIO_MIRRORS`) and scaled by ``gain``; with ``field_yaw`` (degrees, positive = left) the sound field
    is first rotated about the vertical axis (:attr:`StreamConfig.break_spatial_link`).

    A :func:`derived` render (FOA, mono, virtual-mic stereo) comes from the moment's unrotated FOA, decoded
    once: rotation, render, mirror and gain of every view are folded into one ``[V·C, 4]`` matrix
    (:func:`avsa_data.renders.render_matrix`) and applied in one product. HRIR stereo is the stored render of each
    view (or, when not stored or the field is rotated, rendered from the FOA by :func:`avsa_data.renders.render_at`,
    as :meth:`avsa_data.reader.RawSample.audio` does).
    """
    render, channels = AUDIO_FORMATS[audio_format]
    mirror = AUDIO_MIRRORS[audio_format]
    turn = ambisonics.rotate(np.eye(4), rotation_yaw(field_yaw)) if field_yaw else None
    if not derived(s, render) and turn is not None:
        foa = (turn @ s.foa(moment)).astype(np.float32)
        rendered = [renders.render_at(foa, s.meta, s.audio_viewpoint(k), render) for k in views]
        return np.stack([mirror(a) if flip else a for a in rendered]) * np.float32(gain)
    if not derived(s, render):
        first = s.audio(views[0], moment, render)
        out = np.empty((len(views), *first.shape), np.float32)
        for j, k in enumerate(views):
            a = first if j == 0 else s.audio(k, moment, render)
            np.multiply(mirror(a) if flip else a, np.float32(gain), out=out[j])
        return out
    mats = [renders.render_matrix(s.audio_viewpoint(k), render) for k in views]  # [C, 4] each; mirror acts on rows
    stacked = np.concatenate([mirror(m) if flip else m for m in mats]) * gain
    if turn is not None:
        stacked = stacked @ turn
    foa = s.foa(moment)
    return (stacked.astype(np.float32) @ foa).reshape(len(views), channels, foa.shape[1])


def decode_item(s: RawSample, cfg: StreamConfig, epoch: int) -> dict:
    """Decode and augment one sample into numpy arrays.

    Returns ``video [M, V, 3, T, H, W]`` float32 (normalised; with ``cfg.video_on_device`` the uint8 clips
    ``[M, V, T, H, W, 3]`` and their ``colour [3, 4]`` transform instead, see
    :func:`avsa_train.data.augment.model_video`),
    ``audio [M, V, C, n]`` float32 waveforms,
    optional ``seg``/``conf`` ``[M, V, 56, 56]`` (int64 ids, float confidence), optional ``events`` (``[M][V]``
    lists of :func:`avsa_data.events.view_events` dicts, azimuths negated when flipped), ``views [V]`` bank
    indices, ``flip`` (bool) and ``key``.
    """
    meta = s.meta
    rng = rng_for(cfg.seed, "augment", epoch, s.key)
    bank = views_in_range(s, cfg.hfov_range) or list(range(len(meta["viewpoints"])))  # none in range: all
    if cfg.views > len(bank):
        raise ValueError(f"{s.key}: {cfg.views} views requested but the bank has {len(bank)}")
    views = sorted(rng.choice(bank, size=cfg.views, replace=False).tolist()) if cfg.train else bank[: cfg.views]
    M = int(meta["moments_per_sample"])
    if cfg.moments > M:
        raise ValueError(f"{s.key}: {cfg.moments} moments requested but samples have {M} (--moments-per-sample)")
    moments = list(range(cfg.moments)) if cfg.moments > 1 or not cfg.train else [int(rng.integers(M))]
    flip = cfg.train and rng.random() < cfg.flip_p
    gain = 1.0 + (rng.uniform(-cfg.volume_jitter, cfg.volume_jitter) if cfg.train else 0.0)
    yaw = 0.0
    if cfg.break_spatial_link:
        yaw = float(rng_for(cfg.seed, "spatial-link", epoch, s.key).uniform(-180.0, 180.0))

    audio = np.stack([view_audio(s, views, m, cfg.audio_format, flip, gain, yaw) for m in moments])
    colour = colour_transform(_jitter_affine(rng, COLOUR_JITTER, HUE_JITTER) if cfg.train and cfg.color_jitter
                              else None)
    clips = [[s.clip(k, m) for k in views] for m in moments]
    item = {
        "video": _stack_clips(clips, flip) if cfg.video_on_device else _finish_video(clips, colour, flip),
        "audio": audio,
        "views": np.array(views),
        "flip": flip,
        "key": s.key,
    }
    if cfg.video_on_device:
        item["colour"] = colour
    if cfg.with_events:
        item["events"] = [[events.mirror(s.events(k, m)) if flip else s.events(k, m) for k in views] for m in moments]
    if cfg.with_masks:
        segs, confs = [], []
        for m in moments:
            pairs = [s.masks(k, m, lowres=True) for k in views]
            if any(p is None for p in pairs):
                raise ValueError(f"{s.key}: segmentation requested but the sample has no masks (shard with --labels)")
            segs.append(np.stack([p[0] for p in pairs]))
            confs.append(np.stack([p[1] for p in pairs]))
        seg, conf = np.stack(segs).astype(np.int64), np.stack(confs).astype(np.float32)
        if flip:
            seg, conf = seg[..., ::-1], conf[..., ::-1]
        item["seg"], item["conf"] = np.ascontiguousarray(seg), np.ascontiguousarray(conf)
    return item


def views_in_range(sample: RawSample, hfov_range: tuple[float, float] | None) -> list[int]:
    """Bank indices of the viewpoints whose horizontal field of view (degrees) lies in ``hfov_range``."""
    views = sample.meta["viewpoints"]
    if hfov_range is None:
        return list(range(len(views)))
    lo, hi = hfov_range
    return [k for k, v in enumerate(views) if lo <= float(v["hfov"]) <= hi]
