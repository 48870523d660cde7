"""Sound-event labels for sound event localisation and detection (SELD): DCASE / STARSS23 metadata CSVs →
the active events of every moment, with their directions in the world and relative to every viewpoint.

**The CSV format** (STARSS23 as published for DCASE 2023 Task 3, and its DCASE 2024 revision with distances):
no header, one row per active event per label frame::

    frame,class,source,azimuth,elevation[,distance]

* ``frame``: label-frame index; frame ``f`` covers ``[f·hop, (f+1)·hop)`` seconds, ``hop`` = 0.1 s;
* ``class``: class id, an index into the class map (STARSS23: 13 classes, shipped as ``starss23``);
* ``source``: track index of the event within its class (two simultaneous speakers have 0 and 1);
* ``azimuth``: degrees, counter-clockwise (left) positive, in [-180, 180];
* ``elevation``: degrees, up positive, in [-90, 90];
* ``distance``: centimetres (DCASE 2024 version only), ≥ 0.

These are the conventions of :mod:`avsa_data.geometry` (x front, y left, z up, azimuth positive to the left),
so directions are used as they are. Frames with no active event have no row.

**Per moment**, the events stored are those of the label frame whose interval contains the moment's label time
(the clip's centre frame, ``meta.label_times``). Each event's direction relative to viewpoint ``k`` is the
world direction rotated by :func:`avsa_data.geometry.view_rotation` of that viewpoint, the very rotation
:func:`avsa_data.ambisonics.rotate_to_view` applies to the FOA stored for the view. ``in_view`` says whether
the direction falls inside the crop: in front of the camera and within ``hfov × vfov`` of the gnomonic image.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .geometry import angular_distance, direction_to_vector, vector_to_direction, view_rotation
from .options import option
from .viewpoints import Viewpoint

#: Label-frame length of STARSS23 / DCASE 2022–2024 metadata (seconds).
LABEL_HOP = 0.1
#: The shipped class map of STARSS23's 13 classes (avsa_data/assets/starss23.json).
STARSS23_CLASSES = "starss23"
#: ``EventOptions.classes`` default: ``classes.json`` in the events folder when present (the shard job puts its
#: path in the configuration, :func:`avsa_data.layouts.own_event_classes`), else ``starss23``.
AUTO_CLASSES = "auto"
#: Decimals of the angles written to meta.json (1e-4 degree).
ANGLE_DECIMALS = 4
#: ``meta.events.status`` values.
STATUS_LABELLED, STATUS_NO_LABELS, STATUS_NONE = "labelled", "no labels", "none"


class EventLabelError(ValueError):
    """An event CSV is unusable; ``str(e)`` is one line naming the file and the row."""


@dataclass(frozen=True)
class EventOptions:
    """How event CSVs are read (part of the shard configuration hash).

    ``classes``: a class-map JSON file, a shipped map's name (index = class id), or ``auto`` (see
    :data:`AUTO_CLASSES`); ``hop``: label-frame length in seconds.
    """

    classes: str = option(AUTO_CLASSES, flag="--event-classes",
                          help="Class-map JSON naming the event CSVs' class ids ({\"classes\": [...]}), or a shipped "
                          "map by name. auto: EVENTS_ROOT/classes.json if present, else starss23 (its 13 classes).")
    hop: float = option(LABEL_HOP, flag="--event-hop", unit="SECONDS",
                        help="Length of one event label frame in seconds (STARSS23 / DCASE 2022-2024: 0.1).")

    def __post_init__(self) -> None:
        if not self.hop > 0:
            raise ValueError(f"--event-hop must be > 0 seconds, got {self.hop}")

    def as_dict(self) -> dict:
        return {"classes": self.classes, "hop": self.hop}


@dataclass(frozen=True)
class Event:
    """One active event in one label frame: angles in degrees (world frame), distance in metres or ``None``."""

    frame: int
    class_id: int
    track: int
    azimuth: float
    elevation: float
    distance: float | None = None


@dataclass(frozen=True)
class EventClasses:
    """Class names (index = class id) and where they came from."""

    names: tuple[str, ...]
    name: str
    sha256: str

    @classmethod
    def load(cls, spec: str) -> EventClasses:
        """A class-map JSON file (``{"classes": [...]}``) or a shipped map by name (``starss23``; ``auto`` here)."""
        from .labels.base import LabelError
        from .labels.classmap import ClassMap

        try:
            cm = ClassMap.load(STARSS23_CLASSES if spec == AUTO_CLASSES else spec)
        except LabelError as e:
            raise EventLabelError(str(e).replace("--class-map", "--event-classes")) from None
        return cls(cm.classes, cm.name, cm.sha256)

    def describe(self) -> dict:
        return {"classes": {str(i): n for i, n in enumerate(self.names)},
                "class_map": {"name": self.name, "sha256": self.sha256}}


@dataclass(frozen=True)
class EventTrack:
    """The events of one recording, by label frame."""

    path: str
    hop: float
    by_frame: dict[int, tuple[Event, ...]]

    def frame_at(self, t: float) -> int:
        """Index of the label frame whose interval ``[f·hop, (f+1)·hop)`` contains time ``t`` (seconds)."""
        return int(math.floor(t / self.hop + 1e-9))

    def at(self, t: float) -> tuple[Event, ...]:
        """The events active at time ``t`` seconds (sorted by class id, then track)."""
        return self.by_frame.get(self.frame_at(t), ())


def _number(text: str, kind, what: str, where: str) -> float:
    try:
        v = kind(text.strip())
    except ValueError:
        raise EventLabelError(f"{where}: {what} {text.strip()!r} is not {'an integer' if kind is int else 'a number'}"
                              ) from None
    if kind is float and not math.isfinite(v):
        raise EventLabelError(f"{where}: {what} {text.strip()!r} is not finite")
    return v


def parse_rows(rows: Sequence[Sequence[str]], path: str, n_classes: int, duration: float,
               hop: float = LABEL_HOP) -> EventTrack:
    """Validate and parse CSV rows (see the module docstring); ``duration`` is the recording's length (s).

    Raises :class:`EventLabelError` on a row with the wrong number of fields, a field that is not a number, a
    class id outside ``0..n_classes-1``, a negative frame or track, a frame starting at or after ``duration``,
    an azimuth outside [-180, 180], an elevation outside [-90, 90], a negative distance, or the same
    (frame, class, track) twice.
    """
    by_frame: dict[int, list[Event]] = {}
    seen: set[tuple[int, int, int]] = set()
    for i, row in enumerate(rows, start=1):
        where = f"{path} line {i}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) not in (5, 6):
            raise EventLabelError(f"{where}: expected 5 or 6 fields (frame,class,source,azimuth,elevation"
                                  f"[,distance]), got {len(row)}")
        frame = int(_number(row[0], int, "frame", where))
        cid = int(_number(row[1], int, "class", where))
        track = int(_number(row[2], int, "source", where))
        az = _number(row[3], float, "azimuth", where)
        el = _number(row[4], float, "elevation", where)
        dist = _number(row[5], float, "distance", where) if len(row) == 6 else None
        if frame < 0 or track < 0:
            raise EventLabelError(f"{where}: frame and source must be ≥ 0, got {frame} and {track}")
        if not 0 <= cid < n_classes:
            raise EventLabelError(f"{where}: class {cid} is not in the class map (ids 0..{n_classes - 1})")
        if frame * hop >= duration - 1e-6:
            raise EventLabelError(f"{where}: frame {frame} starts at {frame * hop:.2f} s, past the end of the "
                                  f"{duration:.2f} s recording")
        if not -180.0 <= az <= 180.0:
            raise EventLabelError(f"{where}: azimuth {az} is outside [-180, 180] degrees")
        if not -90.0 <= el <= 90.0:
            raise EventLabelError(f"{where}: elevation {el} is outside [-90, 90] degrees")
        if dist is not None and dist < 0:
            raise EventLabelError(f"{where}: distance {dist} cm is negative")
        if (frame, cid, track) in seen:
            raise EventLabelError(f"{where}: frame {frame} lists class {cid} source {track} twice")
        seen.add((frame, cid, track))
        by_frame.setdefault(frame, []).append(
            Event(frame, cid, track, az, el, None if dist is None else dist / 100.0))
    return EventTrack(str(path), hop, {f: tuple(sorted(ev, key=lambda e: (e.class_id, e.track)))
                                       for f, ev in by_frame.items()})


def read_csv(path: str | Path, n_classes: int, duration: float, hop: float = LABEL_HOP) -> EventTrack:
    """Parse the event CSV at ``path`` (:func:`parse_rows`); an unreadable file raises :class:`EventLabelError`."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EventLabelError(f"{path}: cannot read the event CSV ({e})") from None
    return parse_rows(rows, str(path), n_classes, duration, hop)


def format_rows(events: Sequence[Event], decimals: int = 4) -> str:
    """Events as CSV text in the module's format (6 fields when the event has a distance, which is written in cm)."""
    lines = []
    for e in sorted(events, key=lambda e: (e.frame, e.class_id, e.track)):
        fields = [str(e.frame), str(e.class_id), str(e.track),
                  f"{e.azimuth:.{decimals}f}", f"{e.elevation:.{decimals}f}"]
        if e.distance is not None:
            fields.append(f"{e.distance * 100.0:.{decimals}f}")
        lines.append(",".join(fields) + "\n")
    return "".join(lines)


# ----------------------------------------------------------------------------------------------- geometry


def to_view(azimuth: float, elevation: float, view: Viewpoint) -> tuple[float, float]:
    """World direction (degrees) → direction relative to ``view`` (degrees): rotated by the viewpoint's
    :func:`~avsa_data.geometry.view_rotation`, as the view's FOA is (the view's centre becomes azimuth 0,
    elevation 0; +azimuth = crop left, +elevation = crop up)."""
    q = view_rotation(view.azimuth, view.elevation) @ direction_to_vector(azimuth, elevation)
    az, el = vector_to_direction(q)
    return float(az), float(el)


def in_view(azimuth: float, elevation: float, hfov: float, vfov: float) -> bool:
    """Whether a direction relative to a view (degrees) falls inside its gnomonic crop of ``hfov × vfov`` degrees."""
    x, y, z = direction_to_vector(azimuth, elevation)
    if x <= 1e-9:
        return False
    return bool(abs(y / x) <= math.tan(math.radians(hfov / 2)) and abs(z / x) <= math.tan(math.radians(vfov / 2)))


def crop_pixel(azimuth: float, elevation: float, hfov: float, vfov: float,
               out_hw: tuple[int, int]) -> tuple[float, float] | None:
    """Continuous (column, row) of a view-relative direction (degrees) in the crop of ``out_hw`` = (H, W) pixels
    (pixel centres at integers; the crop's corner pixels sit on the field-of-view edges, as in
    :class:`avsa_data.crops.CropGrid`), or ``None`` when the direction is behind the camera."""
    x, y, z = direction_to_vector(azimuth, elevation)
    if x <= 1e-9:
        return None
    h, w = out_hw
    right = -y / x / math.tan(math.radians(hfov / 2))  # -1 at the left edge, +1 at the right edge
    up = z / x / math.tan(math.radians(vfov / 2))
    return (w - 1) / 2 * (1 + right), (h - 1) / 2 * (1 - up)


def _r(x: float) -> float:
    return round(float(x), ANGLE_DECIMALS)


def event_record(e: Event, names: Sequence[str], views: Sequence[Viewpoint]) -> dict:
    """The meta.json record of one event: world direction and one ``{azimuth, elevation, in_view}`` per view."""
    per_view = []
    for v in views:
        az, el = to_view(e.azimuth, e.elevation, v)
        per_view.append({"azimuth": _r(az), "elevation": _r(el), "in_view": in_view(az, el, v.hfov, v.vfov)})
    return {"class_id": e.class_id, "class_name": names[e.class_id], "track": e.track,
            "azimuth": _r(e.azimuth), "elevation": _r(e.elevation),
            "distance_m": None if e.distance is None else round(e.distance, 6), "views": per_view}


# ------------------------------------------------------------------------------------------ recordings


@dataclass(frozen=True)
class VideoEvents:
    """The event labels of one recording: ``status`` ``labelled`` (``track`` set), ``no labels`` (the layout
    expects a CSV at ``path`` and there is none) or ``none`` (the input layout has no event labels)."""

    status: str
    path: str | None = None
    track: EventTrack | None = None
    classes: EventClasses | None = None

    def moments_meta(self, label_times: Sequence[float], views: Sequence[Viewpoint]) -> dict:
        """``meta.json`` ``events`` of a sample whose moments have these label times (s) and viewpoints."""
        out: dict = {"status": self.status, "file": self.path}
        if self.track is None or self.classes is None:
            return out
        frames = [self.track.frame_at(t) for t in label_times]
        out.update(self.classes.describe())
        out.update(hop=self.track.hop, frames=frames,
                   moments=[[event_record(e, self.classes.names, views) for e in self.track.by_frame.get(f, ())]
                            for f in frames])
        return out


NO_EVENTS = VideoEvents(STATUS_NONE)


def load_video_events(path: str | None, options: EventOptions, duration: float) -> VideoEvents:
    """The events of one recording from its CSV ``path`` (``None``: the layout has no event labels; a missing
    file: ``no labels``). ``duration`` (s) bounds the frames. Bad content raises :class:`EventLabelError`."""
    if path is None:
        return NO_EVENTS
    if not Path(path).is_file():
        return VideoEvents(STATUS_NO_LABELS, str(path))
    classes = EventClasses.load(options.classes)
    return VideoEvents(STATUS_LABELLED, str(path), read_csv(path, len(classes.names), duration, options.hop), classes)


# ---------------------------------------------------------------------------------------------- readers


def view_events(meta: dict, view: int | None = None, moment: int = 0) -> list[dict]:
    """The events of a sample's moment from its ``meta.json``: with ``view`` None, world directions; else the
    directions relative to viewpoint ``view`` with its ``in_view`` flag (plus ``world_azimuth`` /
    ``world_elevation``). Each: ``class_id``, ``class_name``, ``track``, ``distance_m``, ``azimuth``,
    ``elevation`` (degrees). Empty when the sample has no event labels."""
    moments = (meta.get("events") or {}).get("moments")
    if not moments:
        return []
    out = []
    for e in moments[moment]:
        d = {k: e[k] for k in ("class_id", "class_name", "track", "distance_m", "azimuth", "elevation")}
        if view is not None:
            v = e["views"][view]
            d.update(world_azimuth=d["azimuth"], world_elevation=d["elevation"], azimuth=v["azimuth"],
                     elevation=v["elevation"], in_view=v["in_view"])
        out.append(d)
    return out


def check_meta(meta: dict) -> list[str]:
    """Problems of a sample's ``meta.events`` (docs/FORMAT.md, "Sound-event labels"); empty when consistent."""
    ev = meta.get("events")
    if not isinstance(ev, dict) or ev.get("status") not in (STATUS_LABELLED, STATUS_NO_LABELS, STATUS_NONE):
        return ["meta.events missing or without a valid status"]
    if ev["status"] != STATUS_LABELLED:
        return []
    n_moments, n_views = int(meta["moments_per_sample"]), len(meta["viewpoints"])
    moments, classes = ev.get("moments"), ev.get("classes") or {}
    if not isinstance(moments, list) or len(moments) != n_moments or len(ev.get("frames") or []) != n_moments:
        return [f"meta.events: moments/frames must list {n_moments} moment(s)"]
    problems = []
    for m, evs in enumerate(moments):
        for e in evs:
            where = f"meta.events moment {m} class {e.get('class_id')} track {e.get('track')}"
            if classes.get(str(e.get("class_id"))) != e.get("class_name"):
                problems.append(f"{where}: class_name {e.get('class_name')!r} is not the class map's")
            views = e.get("views")
            if not isinstance(views, list) or len(views) != n_views:
                problems.append(f"{where}: {n_views} views expected")
                continue
            for k, (v, vp) in enumerate(zip(views, meta["viewpoints"])):
                az, el = to_view(e["azimuth"], e["elevation"], Viewpoint.from_dict(vp))
                if angular_distance(az, el, v["azimuth"], v["elevation"]) > 0.01:
                    problems.append(f"{where}: view {k} direction is not the world direction rotated to the view")
    return problems


def mirror(events: list[dict]) -> list[dict]:
    """The events of the horizontally flipped sample: every azimuth negated (elevation, in_view unchanged), the
    label twin of :func:`avsa_data.ambisonics.flip_horizontal` and a mirrored crop."""
    out = []
    for e in events:
        m = dict(e)
        for k in ("azimuth", "world_azimuth"):
            if k in m:
                m[k] = 0.0 - m[k] if m[k] != -180.0 else -180.0
        out.append(m)
    return out


