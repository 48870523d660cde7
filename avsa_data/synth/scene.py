"""The scene model: sources (objects that are seen and/or heard), low-confidence blobs, and the random scene
of each video (:func:`make_scene`).

Directions are in degrees (azimuth positive to the left, elevation up); times in seconds. A scene is a pure
function of ``(seed, video index)`` through :func:`avsa_data.rng.rng_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..geometry import direction_to_vector, wrap_azimuth
from ..rng import rng_for
from .classes import CLASSES
from .config import SynthConfig


def video_id(index: int) -> str:
    """Video id (file stem) of the ``index``-th synthetic video."""
    return f"synth_{index:04d}"



@dataclass(frozen=True)
class Source:
    """One scene object. Directions in degrees (azimuth positive left, elevation up) at t = 0;
    ``az_speed`` in degrees per second (positive = moving left); ``radius`` = angular radius (degrees) of the
    painted shape; ``on`` = [start, end) intervals in seconds during which a sounding source emits."""

    class_id: int
    az: float
    el: float
    radius: float = 12.0
    az_speed: float = 0.0
    visible: bool = True
    sounding: bool = True
    gain: float = 1.0
    on: tuple[tuple[float, float], ...] = ((0.0, math.inf),)

    def __post_init__(self) -> None:
        if not 1 <= self.class_id <= len(CLASSES):
            raise ValueError(f"class_id must be in 1..{len(CLASSES)}, got {self.class_id}")
        if not -90.0 <= self.el <= 90.0:
            raise ValueError(f"elevation must be in [-90, 90] degrees, got {self.el}")
        if not 0.0 < self.radius < 60.0:
            raise ValueError(f"radius must be in (0, 60) degrees, got {self.radius}")

    def direction(self, t: NDArray | float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(az, el) in degrees at time(s) ``t`` seconds."""
        t = np.asarray(t, dtype=np.float64)
        return wrap_azimuth(self.az + self.az_speed * t), np.full_like(t, self.el)

    def is_on(self, t: NDArray | float) -> NDArray[np.bool_]:
        """Whether the source emits sound at time(s) ``t`` seconds."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape, dtype=bool)
        if self.sounding:
            for t0, t1 in self.on:
                out |= (t >= t0) & (t < t1)
        return out


@dataclass(frozen=True)
class Blob:
    """A patch of deliberately low label confidence: disc of ``radius`` degrees at (az, el) degrees with
    confidence ``confidence`` during [t0, t1) seconds."""

    az: float
    el: float
    radius: float
    confidence: float
    t0: float
    t1: float


@dataclass(frozen=True)
class Scene:
    """A full scene: its id, the seed its textures and sounds derive from, sources and low-confidence blobs."""

    video_id: str
    seed: int
    sources: tuple[Source, ...]
    blobs: tuple[Blob, ...] = field(default_factory=tuple)


def _on_intervals(rng: np.random.Generator, duration: float) -> tuple[tuple[float, float], ...]:
    """Alternating on (1.5–4 s) / off (0.4–1.5 s) periods; starts on with probability 0.8; never empty."""
    t, on, out = 0.0, bool(rng.random() < 0.8), []
    while t < duration:
        d = float(rng.uniform(1.5, 4.0) if on else rng.uniform(0.4, 1.5))
        if on:
            out.append((round(t, 4), round(min(t + d, duration), 4)))
        t += d
        on = not on
    return tuple(out) if out else ((0.0, round(duration, 4)),)


def _separated(cand: Source, placed: list[Source], times: NDArray, margin: float) -> bool:
    """Whether ``cand`` stays at least ``margin`` degrees (edge to edge) from every ``placed`` source at all
    ``times`` (seconds)."""
    az_c, el_c = cand.direction(times)
    v_c = direction_to_vector(az_c, el_c)
    for s in placed:
        az_s, el_s = s.direction(times)
        cos = np.clip(np.sum(v_c * direction_to_vector(az_s, el_s), axis=-1), -1.0, 1.0)
        if np.rad2deg(np.arccos(cos)).min() < cand.radius + s.radius + margin:
            return False
    return True


def make_scene(cfg: SynthConfig, index: int) -> Scene:
    """The random scene of video ``index``: ``cfg.sounding_objects`` (default 1–4) sounding visible objects of
    distinct classes, sometimes a visible silent object and an invisible (off-screen) sound, kept ≥ 10° apart
    (edge to edge) at all times. Objects that cannot be placed after 300 tries are left out."""
    rng = rng_for(cfg.seed, "scene", index)
    n_sounding = int(rng.integers(cfg.sounding_objects[0], cfg.sounding_objects[1] + 1))
    roles = [(True, True)] * n_sounding
    if rng.random() < 0.35:
        roles.append((True, False))  # visible but silent
    if rng.random() < 0.35:
        roles.append((False, True))  # heard but not seen
    roles = roles[: len(CLASSES)]  # one object per class
    classes = rng.permutation(len(CLASSES))[: len(roles)] + 1
    times = np.linspace(0.0, cfg.duration, int(math.ceil(cfg.duration * 10)) + 1)  # separation checked every 0.1 s
    placed: list[Source] = []
    for (visible, sounding), cid in zip(roles, classes):
        src = None
        for attempt in range(300):
            el = rng.uniform(-25.0, 35.0) if visible else rng.uniform(-45.0, 60.0)
            speed = 0.0
            if attempt < 200 and rng.random() < 0.4:
                speed = float(rng.uniform(2.0, 8.0) * rng.choice([-1.0, 1.0]))
            cand = Source(
                class_id=int(cid),
                az=round(float(rng.uniform(-180.0, 180.0)), 4),
                el=round(float(el), 4),
                radius=round(float(rng.uniform(*cfg.object_radius)), 4),
                az_speed=round(speed, 4),
                visible=visible,
                sounding=sounding,
                gain=round(float(rng.uniform(0.6, 1.0)), 4),
                on=_on_intervals(rng, cfg.duration) if sounding else (),
            )
            if _separated(cand, placed, times, 10.0):
                src = cand
                break
        if src is not None:
            placed.append(src)
    blobs = []
    for _ in range(int(rng.integers(1, 4))):
        t0 = float(rng.uniform(0.0, 0.7 * cfg.duration))
        blobs.append(
            Blob(
                az=round(float(rng.uniform(-180, 180)), 4),
                el=round(float(rng.uniform(-60, 60)), 4),
                radius=round(float(rng.uniform(4, 10)), 4),
                confidence=round(float(rng.uniform(0.2, 0.6)), 4),
                t0=round(t0, 4),
                t1=round(min(cfg.duration, t0 + float(rng.uniform(0.5, cfg.duration))), 4),
            )
        )
    return Scene(video_id(index), cfg.seed, tuple(placed), tuple(blobs))
