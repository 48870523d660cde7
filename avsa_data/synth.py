"""Synthetic 360° videos with first-order ambisonics and exact ground truth (``avsa-data synth``).

Each video is a scene: a textured sky/ground equirect panorama and a few objects of distinct visual
classes. A *source* is one object: it may be **visible** (painted as a class-specific shape of angular
radius ``radius`` degrees around its direction, in the tangent plane of that direction so it looks right in
gnomonic crops) and/or **sounding** (a class-specific sound encoded into ambiX FOA at its true direction,
per sample when it moves). Scenes mix sounding visible objects, visible silent ones and invisible
(off-screen) sounds, plus diffuse noise at ``snr_db``. Sources move slowly in azimuth and switch on/off.

Outputs per video (docs/FORMAT.md, section *Raw input*): ``{id}.mp4`` (H.264 + 4-channel audio, or a
``{id}.wav`` sidecar), ``{id}.truth.npz`` (class maps, confidence, source tracks) and ``{id}.json``; per folder
``videos.csv`` (``video_id,split``) and ``synth.json``. With ``layout="starss23"`` the same scenes are written in
the STARSS23 / DCASE layout instead (:func:`write_scene`): video, FOA and exact sound-event CSVs in separate
folders, plus ``metadata_dev/classes.json``. Everything is a pure function of the seed: the same
seed gives byte-identical files, whatever the worker count.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from . import __version__, layouts, media
from .ambisonics import W, ambix_to_fuma, encode
from .events import LABEL_HOP, Event, format_rows
from .fsutil import atomic_write_bytes
from .geometry import direction_to_equirect, direction_to_vector, equirect_to_direction, view_rotation, wrap_azimuth
from .options import option
from .rng import rng_for

#: Version of the raw-input layout written here (docs/FORMAT.md, "Raw input").
FORMAT_VERSION = 1
AUDIO_LAYOUTS = ("container", "sidecar")
#: Folder layouts of the output: the flat raw-input folder, or STARSS23-shaped (avsa_data.layouts).
LAYOUTS = ("flat", "starss23")
#: STARSS23-layout folder of each synth split.
STARSS23_SPLIT_FOLDERS = {"train": "dev-train-synth", "val": "dev-test-synth"}


@dataclass(frozen=True)
class ObjectClass:
    """A visual class (shape + colours, RGB uint8) and its sound.

    ``sound`` is ``harmonic`` (``pitch`` Hz fundamental, ``partials`` amplitudes), ``noise`` (band
    ``band`` Hz, optional amplitude modulation at ``rate`` Hz) or ``bursts`` (``rate`` bursts per second of
    ``burst`` s, carrier a tone at ``pitch`` Hz or, if ``pitch`` is 0, noise in ``band``).
    """

    name: str
    shape: str
    colour: tuple[int, int, int]
    secondary: tuple[int, int, int] | None
    sound: str
    pitch: float = 0.0
    partials: tuple[float, ...] = (1.0,)
    band: tuple[float, float] = (0.0, 0.0)
    rate: float = 0.0
    burst: float = 0.0


#: Object classes; class id = index + 1 (0 is background).
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass(
        "red_disc", "disc", (220, 30, 30), None, "harmonic", pitch=220.0, partials=(1.0, 0.5, 0.33, 0.25, 0.2, 0.16)
    ),
    ObjectClass("green_square", "square", (30, 190, 60), None, "noise", band=(2000.0, 4000.0)),
    ObjectClass("blue_triangle", "triangle", (30, 70, 230), None, "bursts", band=(600.0, 1800.0), rate=4.0, burst=0.06),
    ObjectClass(
        "yellow_ring", "ring", (245, 215, 20), None, "harmonic", pitch=523.0, partials=(1.0, 0.4, 0.2), rate=5.0
    ),
    ObjectClass("magenta_stripes", "stripes", (230, 40, 210), (245, 245, 245), "noise", band=(200.0, 500.0), rate=1.5),
    ObjectClass("cyan_checker", "checker", (20, 220, 230), (20, 20, 20), "bursts", pitch=1500.0, rate=8.0, burst=0.03),
    ObjectClass(
        "orange_cross",
        "cross",
        (250, 140, 10),
        None,
        "harmonic",
        pitch=330.0,
        partials=(1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14),
    ),
    ObjectClass("black_diamond", "diamond", (20, 20, 20), None, "bursts", pitch=110.0, rate=2.0, burst=0.12),
)
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(c.name for c in CLASSES)
SHAPES = ("disc", "square", "triangle", "ring", "stripes", "checker", "cross", "diamond")


def class_id(name: str) -> int:
    """Class id (1-based) of a class name."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; choose from {CLASS_NAMES[1:]}") from None


# ------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SynthConfig:
    """Generator parameters. Sizes are (W, H) pixels; rates in Hz / frames per second; times in seconds."""

    videos: int = option(8, min=0, help="Number of videos.")
    duration: float = option(10.0, unit="SECONDS", help="Length of each video (seconds).")
    seed: int = option(0, help="Master seed; the same seed gives byte-identical files.")
    size: tuple[int, int] = option((1024, 512), form="size", help="Equirect frame size WIDTHxHEIGHT (2:1, even).")
    fps: float = option(16.0, unit="FPS", help="Video frame rate (frames per second).")
    sr: int = option(24000, unit="HZ", help="Audio sample rate (Hz).")
    ambi_format: str = option("ambix", flag="--format", choices=media.AMBI_FORMATS,
                              help="Channel convention of the written FOA: ambiX (ACN W,Y,Z,X; SN3D) or FuMa "
                              "(W,X,Y,Z; W at -3 dB).")
    audio_layout: str = option("container", choices=AUDIO_LAYOUTS,
                               help="4-channel track inside the .mp4, or a same-stem .wav sidecar (PCM s16le) next "
                               "to it.")
    audio_codec: str = option("aac", choices=tuple(sorted(media.AUDIO_CODECS)),
                              help="Codec of the in-container track (the sidecar is always PCM).")
    snr_db: float = option(20.0, unit="DB", help="Sources-to-diffuse-noise power ratio on the W channel (dB); 'inf' "
                           "for no noise.")
    label_fps: float = option(4.0, unit="FPS", help="Rate of the ground-truth class maps (frames per second).")
    label_size: tuple[int, int] = option((256, 128), form="size",
                                         help="Size WIDTHxHEIGHT of the ground-truth class maps.")
    ctrl_rate: float = option(100.0, cli=False, help="Rate (Hz) of the source tracks (direction, activity) in the "
                              "truth file.")
    val_fraction: float = option(0.25, help="Fraction of videos (the last ones) marked 'val'.")
    crf: int = option(23, cli=False, help="x264 constant rate factor of the written video.")
    layout: str = option("flat", choices=LAYOUTS,
                         help="flat: one folder (docs/FORMAT.md, Raw input). starss23: the STARSS23 / DCASE SELD "
                         "layout, video_dev/ foa_dev/ metadata_dev/ with dev-train-synth / dev-test-synth splits and "
                         "exact sound-event CSVs (frame,class,source,azimuth,elevation at 100 ms; classes in "
                         "metadata_dev/classes.json).")
    #: (min, max) number of sounding visible objects per video, both inclusive (at most 8, the classes).
    sounding_objects: tuple[int, int] = option((1, 4), help="MIN MAX sounding visible objects per video (distinct "
                                               "classes, at most 8). The demo uses denser scenes (docs/SYNTH.md) so "
                                               "that most viewpoints see a sound source.")
    #: (min, max) angular radius of the objects, degrees (drawn uniformly).
    object_radius: tuple[float, float] = option((10.0, 16.0), unit="DEGREES",
                                                help="MIN MAX angular radius of the objects (degrees).")

    def __post_init__(self) -> None:
        w, h = self.size
        if w <= 0 or h <= 0 or w % 2 or h % 2 or w != 2 * h:
            raise ValueError(f"size must be an even 2:1 equirect (W, H) such as (1024, 512), got {self.size}")
        lw, lh = self.label_size
        if lw <= 0 or lh <= 0 or lw != 2 * lh:
            raise ValueError(f"label_size must be a 2:1 equirect (W, H) such as (256, 128), got {self.label_size}")
        if self.videos < 0:
            raise ValueError(f"videos must be >= 0, got {self.videos}")
        if not self.duration > 0 or not self.fps > 0 or not self.label_fps > 0 or not self.ctrl_rate > 0:
            raise ValueError("duration (s), fps, label_fps and ctrl_rate (Hz) must all be > 0")
        if self.sr < 8000:
            raise ValueError(f"sr must be >= 8000 Hz, got {self.sr}")
        if self.ambi_format not in media.AMBI_FORMATS:
            raise ValueError(f"ambi_format must be one of {media.AMBI_FORMATS}, got {self.ambi_format!r}")
        if self.audio_layout not in AUDIO_LAYOUTS:
            raise ValueError(f"audio_layout must be one of {AUDIO_LAYOUTS}, got {self.audio_layout!r}")
        if self.audio_codec not in media.AUDIO_CODECS:
            raise ValueError(f"audio_codec must be one of {sorted(media.AUDIO_CODECS)}, got {self.audio_codec!r}")
        if math.isnan(self.snr_db):
            raise ValueError("snr_db must be a number of dB (or inf for no noise), got nan")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        lo, hi = self.sounding_objects
        if not 1 <= lo <= hi <= len(CLASSES):
            raise ValueError(f"sounding_objects must be (min, max) with 1 <= min <= max <= {len(CLASSES)}, "
                             f"got {self.sounding_objects}")
        rlo, rhi = self.object_radius
        if not 0.0 < rlo <= rhi < 60.0:
            raise ValueError(f"object_radius must be (min, max) degrees with 0 < min <= max < 60, "
                             f"got {self.object_radius}")

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.duration * self.fps)))

    @property
    def n_samples(self) -> int:
        return max(1, int(round(self.duration * self.sr)))

    @property
    def n_label_frames(self) -> int:
        return max(1, int(round(self.duration * self.label_fps)))

    @property
    def n_ctrl(self) -> int:
        return max(1, int(round(self.duration * self.ctrl_rate)))

    def to_json(self) -> dict:
        d = asdict(self)
        d["size"], d["label_size"] = list(self.size), list(self.label_size)
        d["sounding_objects"], d["object_radius"] = list(self.sounding_objects), list(self.object_radius)
        return d


def video_id(index: int) -> str:
    """Video id (file stem) of the ``index``-th synthetic video."""
    return f"synth_{index:04d}"


def split_of(index: int, n_videos: int, val_fraction: float) -> str:
    """``train`` or ``val``: the last ``round(val_fraction · n)`` videos (at least one when n ≥ 2 and the
    fraction is > 0, never all) are validation."""
    n_val = int(math.floor(n_videos * val_fraction + 0.5))
    if val_fraction > 0 and n_videos >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(n_videos - 1, 0))
    return "val" if index >= n_videos - n_val else "train"


# -------------------------------------------------------------------------------------------------- scene


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


# ----------------------------------------------------------------------------------------------- painting


def _lerp_weights(n_out: int, n_cells: int) -> tuple[NDArray, NDArray]:
    """Left grid index and (smoothstep) weight of each of ``n_out`` pixel centres over ``n_cells`` grid cells."""
    x = (np.arange(n_out) + 0.5) / n_out * n_cells
    i0 = np.minimum(np.floor(x).astype(int), n_cells - 1)
    w = x - i0
    return i0, w * w * (3.0 - 2.0 * w)  # smoothstep: no creases at cell borders


def _periodic_noise(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> NDArray:
    """Smooth value noise in [0, 1] ``[H, W]``, periodic in azimuth, interpolated from a ``cells`` = (rows, cols)
    grid of random values."""
    ny, nx = cells
    grid = rng.random((ny + 1, nx + 1))
    grid[:, nx] = grid[:, 0]  # the last column wraps to the first
    iy, wy = _lerp_weights(height, ny)
    ix, wx = _lerp_weights(width, nx)
    cols = grid[:, ix] * (1 - wx) + grid[:, ix + 1] * wx  # [ny+1, W]
    return cols[iy] * (1 - wy)[:, None] + cols[iy + 1] * wy[:, None]


def render_background(scene: Scene, width: int, height: int) -> NDArray[np.uint8]:
    """Sky/ground panorama ``[H, W, 3]`` uint8: blue sky gradient with clouds, a hilly horizon, textured ground."""
    rng = rng_for(scene.seed, scene.video_id, "background")
    az, el = equirect_to_direction(np.arange(width)[None, :], np.arange(height)[:, None], height, width)
    el = np.broadcast_to(el, (height, width))
    n1 = _periodic_noise(rng, height, width, (4, 12))
    n2 = _periodic_noise(rng, height, width, (16, 48))
    hills = 2.0 + 7.0 * _periodic_noise(rng, 2, width, (1, 9))[0]  # horizon elevation per column, degrees
    a = np.clip(el / 90.0, 0.0, 1.0)[..., None]
    sky = (1 - a) * np.array([185.0, 205.0, 228.0]) + a * np.array([60.0, 110.0, 190.0])
    cloud = np.clip((0.6 * n1 + 0.4 * n2 - 0.55) * 3.0, 0.0, 1.0)[..., None] * 0.8
    sky = (1 - cloud) * sky + cloud * np.array([236.0, 238.0, 242.0])
    hill = np.array([85.0, 110.0, 92.0]) * (0.85 + 0.3 * n2[..., None])
    depth = np.clip(-el / 90.0, 0.0, 1.0)[..., None]
    ground = np.array([128.0, 104.0, 74.0]) * (0.75 + 0.45 * (0.5 * n1 + 0.5 * n2))[..., None] * (1 - 0.4 * depth)
    img = np.where((el > hills[None, :])[..., None], sky, np.where((el > -1.0)[..., None], hill, ground))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _shape_masks(shape: str, s: NDArray, t: NDArray) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(inside, primary) masks of a shape in normalised tangent-plane coordinates (s left, t up; radius 1).

    Every shape is filled in its primary colour at the centre; ``primary`` is False where the secondary
    colour shows (stripes, checker).
    """
    r2 = s * s + t * t
    if shape == "disc":
        inside = r2 <= 1.0
    elif shape == "square":
        inside = np.maximum(np.abs(s), np.abs(t)) <= 0.85
    elif shape == "triangle":
        s2, t2 = s / 1.15, t / 1.15 + 0.1
        inside = (t2 >= -0.5) & (np.sqrt(3.0) * np.abs(s2) + t2 <= 1.0)
    elif shape == "ring":
        inside = ((r2 <= 1.0) & (r2 >= 0.6**2)) | (r2 <= 0.3**2)
    elif shape == "stripes":
        inside = r2 <= 1.0
        return inside, inside & (np.floor(s * 2.0 + 0.5) % 2 == 0)  # 5 vertical bands, the middle one primary
    elif shape == "checker":
        inside = np.maximum(np.abs(s), np.abs(t)) <= 0.85
        cell = np.floor(s / 0.567 + 0.5) + np.floor(t / 0.567 + 0.5)  # 3×3 cells, primary centre and corners
        return inside, inside & (cell % 2 == 0)
    elif shape == "cross":
        inside = ((np.abs(s) <= 0.3) & (np.abs(t) <= 1.0)) | ((np.abs(t) <= 0.3) & (np.abs(s) <= 1.0))
    elif shape == "diamond":
        inside = np.abs(s) + np.abs(t) <= 1.0
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    return inside, inside


def _region(az: float, el: float, bound_deg: float, height: int, width: int) -> tuple[NDArray, NDArray]:
    """Row and column indices of the equirect pixels that may lie within ``bound_deg`` of (az, el)."""
    u, v = direction_to_equirect(az, el, height, width)
    dv = bound_deg / 180.0 * height + 1.5
    rows = np.arange(max(0, int(np.floor(v - dv))), min(height, int(np.ceil(v + dv)) + 1))
    if abs(el) + bound_deg >= 89.0:
        return rows, np.arange(width)
    half = np.rad2deg(np.arcsin(min(1.0, np.sin(np.deg2rad(bound_deg)) / np.cos(np.deg2rad(el)))))
    du = half / 360.0 * width + 1.5
    if 2 * du + 2 >= width:
        return rows, np.arange(width)
    return rows, np.arange(int(np.floor(u - du)), int(np.ceil(u + du)) + 1) % width


def object_masks(
    shape: str, az: float, el: float, radius: float, height: int, width: int
) -> tuple[NDArray, NDArray, NDArray[np.bool_], NDArray[np.bool_]]:
    """Pixels of a shape of angular ``radius`` degrees centred on (az, el) degrees in an H×W equirect.

    The shape lives in the plane tangent to the sphere at (az, el) (gnomonic coordinates, radius
    ``tan(radius)``), so a disc is a true spherical cap and every shape looks undistorted in a crop centred
    on it. Returns ``rows``, ``cols`` (index vectors of a bounding region) and ``inside``/``primary`` masks
    ``[len(rows), len(cols)]``.
    """
    bound = float(np.rad2deg(np.arctan(1.3 * np.tan(np.deg2rad(radius)))))
    rows, cols = _region(az, el, bound, height, width)
    paz, pel = equirect_to_direction(cols[None, :], rows[:, None], height, width)
    p = direction_to_vector(paz, pel)  # [r, c, 3]
    q = p @ view_rotation(az, el).T  # the object's direction becomes the front (1, 0, 0)
    x = q[..., 0]
    rho = np.tan(np.deg2rad(radius))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(x > 1e-6, q[..., 1] / x, np.inf) / rho
        t = np.where(x > 1e-6, q[..., 2] / x, np.inf) / rho
    inside, primary = _shape_masks(shape, s, t)
    return rows, cols, inside, primary


def paint_frame(background: NDArray[np.uint8], scene: Scene, t: float) -> NDArray[np.uint8]:
    """The equirect RGB frame ``[H, W, 3]`` uint8 at time ``t`` seconds: visible objects over the background."""
    frame = background.copy()
    h, w = frame.shape[:2]
    for src in scene.sources:
        if not src.visible:
            continue
        cls = CLASSES[src.class_id - 1]
        az, el = src.direction(t)
        rows, cols, inside, primary = object_masks(cls.shape, float(az), float(el), src.radius, h, w)
        region = frame[np.ix_(rows, cols)]
        if cls.secondary is not None:
            region[inside & ~primary] = cls.secondary
        region[primary] = cls.colour
        frame[np.ix_(rows, cols)] = region
    return frame


def label_frame(scene: Scene, t: float, height: int, width: int) -> tuple[NDArray[np.uint8], NDArray[np.float16]]:
    """Class map ``[H, W]`` uint8 (0 = background, else class id) and confidence ``[H, W]`` float16 in [0, 1]
    at time ``t`` seconds.

    Confidence is deliberately imperfect: 0.35 on the pixels where the class changes, 0.6 on their
    neighbours (a band ~4 px wide around every object edge), and each active :class:`Blob`'s value inside it;
    1 elsewhere.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    for src in scene.sources:
        if src.visible:
            az, el = src.direction(t)
            rows, cols, inside, _ = object_masks(
                CLASSES[src.class_id - 1].shape, float(az), float(el), src.radius, height, width
            )
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


def iter_frames(scene: Scene, cfg: SynthConfig) -> Iterator[NDArray[np.uint8]]:
    """All video frames (frame ``i`` at ``i / fps`` s), background rendered once."""
    w, h = cfg.size
    bg = render_background(scene, w, h)
    for i in range(cfg.n_frames):
        yield paint_frame(bg, scene, i / cfg.fps)


# -------------------------------------------------------------------------------------------------- sound


def _band_noise(rng: np.random.Generator, n: int, sr: int, band: tuple[float, float]) -> NDArray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    lo, hi = band[0], min(band[1], 0.45 * sr)
    spec[(f < lo) | (f > hi)] = 0.0
    return np.fft.irfft(spec, n)


def class_sound(cid: int, n: int, sr: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """The class-specific mono sound of class ``cid``: ``n`` samples at ``sr`` Hz, unit RMS."""
    c = CLASSES[cid - 1]
    t = np.arange(n) / sr
    if c.sound == "harmonic":
        f0 = c.pitch * (1.0 + rng.uniform(-0.02, 0.02))
        phase = 2 * np.pi * f0 * t
        if c.rate:  # vibrato: ±1 % at `rate` Hz
            phase += 0.01 * f0 / c.rate * np.sin(2 * np.pi * c.rate * t)
        x = sum(
            a * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi))
            for k, a in enumerate(c.partials)
            if a and (k + 1) * f0 < 0.45 * sr
        )
    elif c.sound == "noise":
        x = _band_noise(rng, n, sr, c.band)
        if c.rate:
            x = x * (1.0 - 0.8 * (0.5 + 0.5 * np.cos(2 * np.pi * c.rate * t)))
    elif c.sound == "bursts":
        carrier = np.sin(2 * np.pi * c.pitch * t) if c.pitch else _band_noise(rng, n, sr, c.band)
        offset = rng.uniform(0, 1.0 / c.rate)
        local = (t + offset) % (1.0 / c.rate)
        gate = np.where(local < c.burst, np.sin(np.pi * np.clip(local / c.burst, 0, 1)) ** 2, 0.0)
        x = carrier * gate
    else:
        raise ValueError(f"unknown sound type {c.sound!r}")
    x = np.asarray(x, dtype=np.float64)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def envelope(src: Source, n: int, sr: int, ramp: float = 0.02) -> NDArray[np.float64]:
    """On/off gain over ``n`` samples at ``sr`` Hz: 1 inside ``src.on`` with ``ramp``-second raised-cosine edges."""
    env = np.zeros(n)
    if not src.sounding:
        return env
    t = np.arange(n) / sr
    for t0, t1 in src.on:
        up = np.clip((t - t0) / ramp, 0.0, 1.0)
        down = np.clip((t1 - t) / ramp, 0.0, 1.0) if math.isfinite(t1) else 1.0
        env = np.maximum(env, np.sin(0.5 * np.pi * np.minimum(up, down)) ** 2 * ((t >= t0) & (t < t1)))
    return env


def fibonacci_directions(n: int) -> tuple[NDArray, NDArray]:
    """``n`` nearly uniform directions on the sphere (azimuth, elevation in degrees)."""
    k = np.arange(n) + 0.5
    el = np.rad2deg(np.arcsin(1.0 - 2.0 * k / n))
    az = wrap_azimuth(np.rad2deg(np.pi * (1.0 + 5**0.5) * k))
    return az, el


def diffuse_noise(rng: np.random.Generator, n: int, sr: int, sources: int = 32) -> NDArray[np.float64]:
    """Diffuse FOA noise ``[4, n]`` (ambiX): ``sources`` uncorrelated pinkish noises from nearly uniform,
    randomly rotated directions; W has unit mean power."""
    az, el = fibonacci_directions(sources)
    az = wrap_azimuth(az + rng.uniform(-180, 180))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = 1.0 / np.sqrt(np.maximum(f, 50.0))
    out = np.zeros((4, n))
    for a, e in zip(az, el):
        x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
        out += encode(x, a, e)
    return out / max(float(np.sqrt(np.mean(out[W] ** 2))), 1e-12)


def render_foa(scene: Scene, cfg: SynthConfig) -> tuple[NDArray[np.float32], float]:
    """The scene's ambiX FOA ``[4, n_samples]`` at ``cfg.sr`` Hz and the peak-normalisation gain applied.

    Each sounding source: class sound × gain × on/off envelope, encoded at its true (per-sample, if moving)
    direction. Diffuse noise is added with W-channel power ``snr_db`` dB below the sources' W power. The
    mix is scaled so its largest sample magnitude is 0.7.
    """
    n, sr = cfg.n_samples, cfg.sr
    t = np.arange(n) / sr
    foa = np.zeros((4, n))
    for k, src in enumerate(scene.sources):
        if not src.sounding:
            continue
        sig = class_sound(src.class_id, n, sr, rng_for(scene.seed, scene.video_id, "sound", k))
        sig = sig * src.gain * envelope(src, n, sr)
        if src.az_speed:
            az, el = src.direction(t)
            foa += encode(sig, az, el)
        else:
            foa += encode(sig, src.az, src.el)
    p_signal = float(np.mean(foa[W] ** 2))
    if math.isfinite(cfg.snr_db):
        level = math.sqrt(p_signal / 10 ** (cfg.snr_db / 10)) if p_signal > 0 else 0.01
        foa += level * diffuse_noise(rng_for(scene.seed, scene.video_id, "diffuse"), n, sr)
    peak = float(np.max(np.abs(foa)))
    gain = 0.7 / peak if peak > 0 else 1.0
    return (foa * gain).astype(np.float32), gain


# -------------------------------------------------------------------------------------------------- truth


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


# ------------------------------------------------------------------------------------------------ writing


def npz_bytes(arrays: dict[str, NDArray]) -> bytes:
    """A compressed ``.npz`` (readable by ``np.load``) with fixed zip timestamps and attributes, keys sorted:
    identical arrays give identical bytes (``np.savez`` stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.asarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _source_json(src: Source) -> dict:
    d = asdict(src)
    d["class_name"] = CLASS_NAMES[src.class_id]
    d["on"] = [[a, b if math.isfinite(b) else None] for a, b in src.on]
    return d


def write_scene(scene: Scene, cfg: SynthConfig, out_dir: str | os.PathLike, split: str = "train") -> dict:
    """Render ``scene`` into ``out_dir``: ``{id}.mp4`` (+ ``{id}.wav`` for the sidecar layout),
    ``{id}.truth.npz`` and ``{id}.json``. Returns the metadata written to the json.

    With ``cfg.layout == "starss23"``: ``video_dev/{folder}/{id}.mp4`` (no audio track) with the truth and json
    beside it, ``foa_dev/{folder}/{id}.wav`` and ``metadata_dev/{folder}/{id}.csv`` (:func:`scene_events`), the
    folder being ``dev-train-synth`` or ``dev-test-synth`` (:data:`STARSS23_SPLIT_FOLDERS`)."""
    out = Path(out_dir)
    vid = scene.video_id
    events_path = None
    if cfg.layout == "starss23":
        root, folder = out, STARSS23_SPLIT_FOLDERS[split]
        out = root / layouts.STARSS23_DIRS["video"] / folder
        audio_path = root / layouts.STARSS23_DIRS["audio"] / folder / f"{vid}.wav"
        events_path = root / layouts.STARSS23_DIRS["events"] / folder / f"{vid}.csv"
        for d in (out, audio_path.parent, events_path.parent):
            d.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    foa, gain = render_foa(scene, cfg)
    audio = ambix_to_fuma(foa) if cfg.ambi_format == "fuma" else foa
    video_path = out / f"{vid}.mp4"
    if events_path is not None:
        media.write_audio(audio_path, audio, cfg.sr)
        media.write_video(video_path, iter_frames(scene, cfg), cfg.fps, cfg.size, crf=cfg.crf)
        atomic_write_bytes(events_path, format_rows(scene_events(scene, cfg)).encode())
    elif cfg.audio_layout == "container":
        audio_path = video_path
        for ext in media.SIDECAR_EXTS:  # a stale sidecar would shadow the container's track
            (out / f"{vid}{ext}").unlink(missing_ok=True)
        media.write_video(
            video_path,
            iter_frames(scene, cfg),
            cfg.fps,
            cfg.size,
            audio=audio,
            sr=cfg.sr,
            audio_codec=cfg.audio_codec,
            crf=cfg.crf,
        )
    else:
        audio_path = out / f"{vid}.wav"
        media.write_audio(audio_path, audio, cfg.sr)
        media.write_video(video_path, iter_frames(scene, cfg), cfg.fps, cfg.size, crf=cfg.crf)
    atomic_write_bytes(out / f"{vid}.truth.npz", npz_bytes(render_truth(scene, cfg)))
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": f"avsa-data synth {__version__}",
        "video_id": vid,
        "split": split,
        "seed": scene.seed,
        "duration": cfg.duration,
        "video": {
            "file": video_path.name,
            "codec": "h264",
            "size": list(cfg.size),
            "fps": cfg.fps,
            "frames": cfg.n_frames,
        },
        "audio": {
            "file": os.path.relpath(audio_path, out),
            "layout": "starss23" if events_path is not None else cfg.audio_layout,
            "codec": cfg.audio_codec if cfg.audio_layout == "container" and events_path is None else "pcm",
            "format": cfg.ambi_format,
            "channels": 4,
            "sr": cfg.sr,
            "samples": cfg.n_samples,
            "snr_db": cfg.snr_db if math.isfinite(cfg.snr_db) else None,
            "gain": round(gain, 9),
        },
        "truth": {
            "file": f"{vid}.truth.npz",
            "label_fps": cfg.label_fps,
            "label_size": list(cfg.label_size),
            "ctrl_rate": cfg.ctrl_rate,
        },
        "classes": list(CLASS_NAMES),
        "events": None if events_path is None else {"file": os.path.relpath(events_path, out), "hop": LABEL_HOP},
        "sources": [_source_json(s) for s in scene.sources],
        "blobs": [asdict(b) for b in scene.blobs],
    }
    atomic_write_bytes(out / f"{vid}.json", _json_bytes(meta))
    return meta


def _generate_one(cfg: SynthConfig, index: int, out_dir: str) -> dict:
    scene = make_scene(cfg, index)
    return write_scene(scene, cfg, out_dir, split_of(index, cfg.videos, cfg.val_fraction))


def default_workers() -> int:
    """min(4, usable CPUs)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def generate(
    cfg: SynthConfig,
    out_dir: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    corrupt: bool = False,
) -> list[dict]:
    """Write ``cfg.videos`` synthetic videos to ``out_dir`` in parallel (``workers`` processes, default
    :func:`default_workers`), then ``videos.csv`` (``video_id,split``) and ``synth.json``. With ``corrupt``,
    also :func:`write_corrupt_variants` (listed in ``videos.csv`` as ``train``). Returns per-video metadata
    in index order. Output bytes do not depend on ``workers``. ``cfg.layout == "starss23"`` writes the
    STARSS23-shaped folder (:func:`write_scene`) and ``metadata_dev/classes.json`` instead of ``videos.csv``."""
    if corrupt and cfg.layout != "flat":
        raise ValueError("--corrupt writes flat-layout files; use it without --layout starss23")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers is None else max(1, int(workers))
    bar = tqdm(total=cfg.videos, desc="synth", unit="video", disable=not progress)
    metas: dict[int, dict] = {}
    try:
        if workers == 1 or cfg.videos <= 1:
            for i in range(cfg.videos):
                metas[i] = _generate_one(cfg, i, str(out))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, cfg.videos), mp_context=get_context("spawn")) as ex:
                futs = {ex.submit(_generate_one, cfg, i, str(out)): i for i in range(cfg.videos)}
                for fut in as_completed(futs):
                    metas[futs[fut]] = fut.result()
                    bar.update(1)
    finally:
        bar.close()
    rows = [(metas[i]["video_id"], metas[i]["split"]) for i in range(cfg.videos)]
    if corrupt:
        rows += [(p.stem, "train") for p in write_corrupt_variants(out, cfg.seed).values()]
    if cfg.layout == "starss23":  # splits are the folder names; the CSV class ids index this map
        events_dir = out / layouts.STARSS23_DIRS["events"]
        events_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(events_dir / layouts.CLASSES_FILE, _json_bytes(
            {"format": "avsa.classmap", "version": 1, "name": "avsa_synth",
             "description": "Sound-event classes of avsa-data synth scenes (index = CSV class id)",
             "classes": list(EVENT_CLASS_NAMES)}))
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["video_id", "split"])
        writer.writerows(rows)
        atomic_write_bytes(out / "videos.csv", text.getvalue().encode())
    summary = {
        "format_version": FORMAT_VERSION,
        "generator": f"avsa-data synth {__version__}",
        "config": {**cfg.to_json(), "snr_db": cfg.snr_db if math.isfinite(cfg.snr_db) else None},
        "classes": list(CLASS_NAMES),
        "videos": [r[0] for r in rows],
        "corrupt": bool(corrupt),
    }
    atomic_write_bytes(out / "synth.json", _json_bytes(summary))
    return [metas[i] for i in range(cfg.videos)]


# ------------------------------------------------------------------------------------------------ corrupt

#: Corrupt variants: name → (file name, :class:`avsa_data.media.MediaError` kind a reader must raise).
CORRUPT_VARIANTS: dict[str, tuple[str, str]] = {
    "truncated": ("corrupt_truncated.mp4", "truncated"),
    "no_audio": ("corrupt_no_audio.mp4", "no_audio"),
    "stereo": ("corrupt_stereo.mp4", "channels"),
    "short_audio": ("corrupt_short_audio.mp4", "duration"),
    "unreadable": ("corrupt_unreadable.mp4", "unreadable"),
}


_FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def write_corrupt_variants(out_dir: str | os.PathLike, seed: int) -> dict[str, Path]:
    """Write one broken input per :data:`CORRUPT_VARIANTS` entry into ``out_dir`` and return name → path.

    * ``truncated``: a valid 256×128 mp4 (index at the front) cut to 60 % of its bytes;
    * ``no_audio``: video only, no sidecar;
    * ``stereo``: a 2-channel audio track where 4 are expected;
    * ``short_audio``: 4 s of video with 0.5 s of audio;
    * ``unreadable``: an MP4 ``ftyp`` box followed by 4096 random bytes, named ``.mp4``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SynthConfig(
        videos=1, duration=2.0, seed=seed, size=(256, 128), fps=8.0, sr=16000, audio_codec="pcm", snr_db=30.0
    )
    scene = Scene("corrupt", seed, (Source(class_id=1, az=30.0, el=10.0, radius=15.0),))
    foa, _ = render_foa(scene, cfg)
    paths = {name: out / fname for name, (fname, _) in CORRUPT_VARIANTS.items()}

    full = out / ".corrupt_full.mp4"
    media.write_video(full, iter_frames(scene, cfg), cfg.fps, cfg.size, audio=foa, sr=cfg.sr, audio_codec="pcm")
    data = full.read_bytes()
    full.unlink()
    atomic_write_bytes(paths["truncated"], data[: int(len(data) * 0.6)])

    media.write_video(paths["no_audio"], iter_frames(scene, cfg), cfg.fps, cfg.size)
    media.write_video(
        paths["stereo"], iter_frames(scene, cfg), cfg.fps, cfg.size, audio=foa[:2], sr=cfg.sr, audio_codec="pcm"
    )
    long_cfg = SynthConfig(**{**asdict(cfg), "duration": 4.0})
    media.write_video(
        paths["short_audio"],
        iter_frames(scene, long_cfg),
        cfg.fps,
        cfg.size,
        audio=foa[:, : cfg.sr // 2],
        sr=cfg.sr,
        audio_codec="pcm",
    )
    # An MP4 file-type box, so that no other demuxer claims the file, then random bytes.
    junk = rng_for(seed, "corrupt", "unreadable").integers(0, 256, 4096, dtype=np.uint8).tobytes()
    atomic_write_bytes(paths["unreadable"], _FTYP + junk)
    return paths
