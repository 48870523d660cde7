"""Exact ground truth of a scene: class maps with a deliberately imperfect confidence, source tracks
(``{id}.truth.npz``, every key documented in docs/FORMAT.md, "Raw input") and sound-event labels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ..events import LABEL_HOP, Event
from ..geometry import direction_to_vector, equirect_to_direction
from .classes import CLASS_NAMES, CLASSES
from .config import FORMAT_VERSION, SynthConfig
from .paint import visible_objects
from .scene import Scene


def label_frame(scene: Scene, t: float, height: int, width: int) -> tuple[NDArray[np.uint8], NDArray[np.float16]]:
    """Class map ``[H, W]`` uint8 (0 = background, else class id) and confidence ``[H, W]`` float16 in [0, 1]
    at time ``t`` seconds.

    Confidence is deliberately imperfect: 0.35 on the pixels where the class changes, 0.6 on their
    neighbours (a band ~4 px wide around every object edge), and each active :class:`Blob`'s value inside it;
    1 elsewhere.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    for src, rows, cols, inside, _ in visible_objects(scene, t, height, width):
        region = labels[np.ix_(rows, cols)]
        region[inside] = src.class_id
        labels[np.ix_(rows, cols)] = region
    edge = (labels != np.roll(labels, 1, axis=1)) | (labels != np.roll(labels, -1, axis=1))
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    near = edge | np.roll(edge, 1, axis=1) | np.roll(edge, -1, axis=1)
    near[1:] |= edge[:-1]
    near[:-1] |= edge[1:]
    conf = np.ones((height, width), dtype=np.float32)
    conf[near] = 0.6
    conf[edge] = 0.35
    active = [b for b in scene.blobs if b.t0 <= t < b.t1]
    if active:
        paz, pel = equirect_to_direction(np.arange(width)[None, :], np.arange(height)[:, None], height, width)
        p = direction_to_vector(paz, pel)
        for b in active:
            d = np.rad2deg(np.arccos(np.clip(p @ direction_to_vector(b.az, b.el), -1.0, 1.0)))
            conf[d < b.radius] = np.minimum(conf[d < b.radius], b.confidence)
    return labels, conf.astype(np.float16)


def render_truth(scene: Scene, cfg: SynthConfig) -> dict[str, NDArray]:
    """The arrays of ``{id}.truth.npz`` (every key is documented in docs/FORMAT.md, "Raw input")."""
    lw, lh = cfg.label_size
    lt = np.arange(cfg.n_label_frames) / cfg.label_fps
    ct = np.arange(cfg.n_ctrl) / cfg.ctrl_rate
    maps = [label_frame(scene, float(t), lh, lw) for t in lt]
    srcs = scene.sources
    s = len(srcs)

    def track(times: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        az = np.zeros((s, len(times)), dtype=np.float32)
        el = np.zeros((s, len(times)), dtype=np.float32)
        on = np.zeros((s, len(times)), dtype=bool)
        for k, src in enumerate(srcs):
            a, e = src.direction(times)
            az[k], el[k], on[k] = a, e, src.is_on(times)
        return az, el, on

    az_l, el_l, on_l = track(lt)
    az_c, el_c, on_c = track(ct)
    colours = np.array([(0, 0, 0)] + [c.colour for c in CLASSES], dtype=np.uint8)
    return {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "class_names": np.array(CLASS_NAMES),
        "class_colours": colours,
        "class_shapes": np.array(("none",) + tuple(c.shape for c in CLASSES)),
        "label_fps": np.array(cfg.label_fps, dtype=np.float64),
        "label_times": lt.astype(np.float64),
        "labels": np.stack([m[0] for m in maps]),
        "confidence": np.stack([m[1] for m in maps]),
        "source_class": np.array([x.class_id for x in srcs], dtype=np.int16),
        "source_visible": np.array([x.visible for x in srcs], dtype=bool),
        "source_sounding": np.array([x.sounding for x in srcs], dtype=bool),
        "source_radius": np.array([x.radius for x in srcs], dtype=np.float32),
        "source_az": az_l,
        "source_el": el_l,
        "source_on": on_l,
        "ctrl_rate": np.array(cfg.ctrl_rate, dtype=np.float64),
        "ctrl_times": ct.astype(np.float64),
        "source_az_ctrl": az_c,
        "source_el_ctrl": el_c,
        "source_on_ctrl": on_c,
        "fps": np.array(cfg.fps, dtype=np.float64),
        "sr": np.array(cfg.sr, dtype=np.int64),
        "duration": np.array(cfg.duration, dtype=np.float64),
        "video_size": np.array(cfg.size, dtype=np.int64),
        "ambi_format": np.array(cfg.ambi_format),
        "snr_db": np.array(cfg.snr_db, dtype=np.float64),
        "seed": np.array(scene.seed, dtype=np.int64),
    }


def scene_events(scene: Scene, cfg: SynthConfig, hop: float = LABEL_HOP) -> list[Event]:
    """Exact sound-event labels of a scene (:mod:`avsa_data.events` format): in label frame ``f`` (covering
    ``[f·hop, (f+1)·hop)`` s), every sounding source that is on at the frame's centre ``(f + 0.5)·hop``, with its
    true direction at that time. Class id = synth class id - 1 (the CSV ids index ``metadata_dev/classes.json``,
    which has no background); track = index among the scene's sounding sources of the same class."""
    n = int(math.ceil(cfg.duration / hop - 1e-9))
    t = (np.arange(n) + 0.5) * hop
    out = []
    for k, src in enumerate(scene.sources):
        if not src.sounding:
            continue
        track = sum(1 for s in scene.sources[:k] if s.sounding and s.class_id == src.class_id)
        az, el = src.direction(t)
        for f in np.flatnonzero(src.is_on(t)):
            out.append(Event(int(f), src.class_id - 1, track, float(az[f]), float(el[f])))
    return out


#: Class names of the synth event CSVs (index = CSV class id), written to ``metadata_dev/classes.json``.
EVENT_CLASS_NAMES: tuple[str, ...] = CLASS_NAMES[1:]
