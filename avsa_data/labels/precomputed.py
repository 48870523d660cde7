"""``--labels precomputed``: per-frame equirect label images that the user made beforehand.

One folder per video, ``{label_dir}/{video_id}/`` (or ``{label_dir}/{video file stem}/``), in one of two layouts
(docs/LABELS.md):

* **ids**: ``{frame:06d}.png`` (8- or 16-bit greyscale, or palette: the pixel value is the class id) and an
  optional ``{frame:06d}.conf.png`` (8-bit greyscale, confidence × 255; absent = confidence 1).
* **panoptic** (the YouTube-360 release of the reference): ``things-{frame:04d}.png`` and
  ``stuff-{frame:04d}.png`` (channel 0 is read), merged with the class map's ``panoptic`` rule, and an optional
  ``conf-{frame:04d}.png``.

Frame ``n`` shows time ``n / fps`` seconds. ``fps`` comes from ``{label_dir}/{video_id}/labels.json``
(``{"fps": 4}``), else ``--label-fps``, else 4 for the panoptic layout (the reference's rate); ids folders need
one of the first two. ``at(t)`` returns the frame nearest to ``t`` and refuses one farther than ``max_gap``
seconds (``--label-max-gap``, default one frame interval ``1 / fps``).

``open`` checks the whole folder before any sample is written, so a bad label set fails (or, with
``--labels-optional``, is dropped) as a whole: a missing frame (a gap of more than ``2 · max_gap`` between
consecutive frames, or none within ``max_gap`` of t = 0), an image that is not a 2:1 equirect or differs in
size from the video's other frames, an unreadable image, a confidence map of another size, and a class id
outside the class map are each a :class:`LabelError`. Every frame is therefore decoded once in ``open``; the
decoded frames are kept (up to :data:`CACHE_BYTES`) for ``at``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .base import LabelBackend, LabelError, LabelFrame
from .classmap import DEFAULT_CLASS_MAP, ClassMap

LAYOUTS = ("ids", "panoptic")
#: Label-frame rate of the panoptic layout when neither labels.json nor --label-fps gives one (the reference's).
PANOPTIC_DEFAULT_FPS = 4.0
#: Decoded label frames kept in memory per video (bytes); frames past this budget are decoded again in ``at``.
CACHE_BYTES = 256 * 2**20

_IDS_RE = re.compile(r"^(\d+)\.png$")
_CONF_RE = re.compile(r"^(\d+)\.conf\.png$")
_PANOPTIC_RE = re.compile(r"^(things|stuff|conf)-(\d+)\.png$")
_GREY_MODES = ("L", "P", "I;16", "I;16L", "I;16B", "I")


@dataclass(frozen=True)
class FrameFiles:
    """The files of one label frame ``number`` (``images``: (ids,) or (things, stuff))."""

    number: int
    images: tuple[Path, ...]
    conf: Path | None


def read_id_image(path: Path, allow_rgb: bool = False) -> NDArray[np.int64]:
    """Integer class ids ``[H, W]`` of a label PNG (greyscale 8/16-bit or palette; RGB(A): channel 0 if allowed)."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("RGB", "RGBA") and allow_rgb:
                a = np.asarray(img)[..., 0]
            elif mode in _GREY_MODES:
                a = np.asarray(img)
            else:
                raise LabelError(f"{path.name}: expected a single-channel class-id PNG (8- or 16-bit greyscale or "
                                 f"palette), got mode {mode}")
    except LabelError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise LabelError(f"{path.name}: unreadable label image ({e})") from e
    if a.ndim != 2:
        raise LabelError(f"{path.name}: expected a 2-D class-id image, got shape {a.shape}")
    return a.astype(np.int64)


def read_confidence_image(path: Path) -> NDArray[np.uint8]:
    """uint8 ``[H, W]`` confidence × 255 from an 8-bit greyscale PNG."""
    try:
        with Image.open(path) as img:
            if img.mode != "L":
                raise LabelError(f"{path.name}: confidence must be an 8-bit greyscale PNG (255 = 1.0), got mode "
                                 f"{img.mode}")
            return np.asarray(img, dtype=np.uint8)
    except LabelError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise LabelError(f"{path.name}: unreadable confidence image ({e})") from e


def scan_folder(folder: Path) -> tuple[str, list[FrameFiles]]:
    """The layout (``ids`` / ``panoptic``) and frames of one video's label folder, sorted by frame number."""
    ids: dict[int, Path] = {}
    conf: dict[int, Path] = {}
    pan: dict[str, dict[int, Path]] = {"things": {}, "stuff": {}, "conf": {}}
    for p in folder.iterdir():
        if m := _CONF_RE.match(p.name):
            conf[int(m.group(1))] = p
        elif m := _IDS_RE.match(p.name):
            ids[int(m.group(1))] = p
        elif m := _PANOPTIC_RE.match(p.name):
            pan[m.group(1)][int(m.group(2))] = p
    if ids and (pan["things"] or pan["stuff"]):
        raise LabelError(f"{folder}: mixes the ids layout (000000.png) and the panoptic layout (things-0000.png)")
    if ids:
        orphans = sorted(set(conf) - set(ids))
        if orphans:
            raise LabelError(f"{folder}: confidence {conf[orphans[0]].name} has no class-id image {orphans[0]:06d}.png")
        return "ids", [FrameFiles(n, (ids[n],), conf.get(n)) for n in sorted(ids)]
    things, stuff = pan["things"], pan["stuff"]
    if not things and not stuff:
        raise LabelError(f"{folder}: no label frames (expected 000000.png ... or things-0000.png + stuff-0000.png)")
    for a, b, name in ((things, stuff, "stuff"), (stuff, things, "things")):
        missing = sorted(set(a) - set(b))
        if missing:
            raise LabelError(f"{folder}: label frame {missing[0]} has {a[missing[0]].name} but no {name}-"
                             f"{missing[0]:04d}.png (missing label frame)")
    return "panoptic", [FrameFiles(n, (things[n], stuff[n]), pan["conf"].get(n)) for n in sorted(things)]


def check_coverage(times: NDArray[np.float64], max_gap: float, where: str) -> None:
    """Every time from 0 to the last frame must have a frame within ``max_gap`` seconds."""
    if times[0] > max_gap + 1e-9:
        raise LabelError(f"{where}: the first label frame is at t={times[0]:.3f} s; nothing within the tolerance "
                         f"{max_gap:.3f} s of t=0 (missing label frames)")
    gaps = np.diff(times)
    if gaps.size and float(gaps.max()) > 2 * max_gap + 1e-9:
        i = int(np.argmax(gaps))
        raise LabelError(f"{where}: missing label frames between t={times[i]:.3f} s and t={times[i + 1]:.3f} s "
                         f"(gap {gaps[i]:.3f} s > 2 × tolerance {max_gap:.3f} s; see --label-max-gap)")


@dataclass
class PrecomputedVideoLabels:
    """Label frames of one video. ``at(t)`` picks the nearest frame (ties: the earlier one)."""

    folder: Path
    layout: str
    frames: list[FrameFiles]
    fps: float
    max_gap: float
    class_map: ClassMap
    shape: tuple[int, int] | None = None  # (H, W) of every frame, set by validate()
    times: NDArray[np.float64] = field(init=False, repr=False)  # [F] seconds
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _cached_bytes: int = 0

    def __post_init__(self) -> None:
        self.times = np.array([f.number / self.fps for f in self.frames], dtype=np.float64)

    def validate(self) -> None:
        """Coverage in time, then decode every frame once (sizes, class ids, confidence)."""
        check_coverage(self.times, self.max_gap, str(self.folder))
        for i in range(len(self.frames)):
            classes, conf = self._decode(i)
            self._remember(i, classes, conf)

    def at(self, t: float) -> LabelFrame:
        """Labels of the frame nearest to ``t`` seconds (``LabelError`` if none is within ``max_gap``)."""
        times = self.times
        i = int(np.argmin(np.abs(times - t)))
        if abs(float(times[i]) - t) > self.max_gap + 1e-9:
            raise LabelError(f"{self.folder}: no label frame within {self.max_gap:.3f} s of t={t:.3f} s (nearest: "
                             f"t={times[i]:.3f} s; missing label frames)")
        if i in self._cache:
            self._cache.move_to_end(i)
            classes, conf = self._cache[i]
        else:
            classes, conf = self._decode(i)
            self._remember(i, classes, conf)
        return LabelFrame(classes, conf.astype(np.float32) / np.float32(255.0))

    # ------------------------------------------------------------------------------------------- internals

    def _remember(self, i: int, classes: NDArray, conf: NDArray[np.uint8]) -> None:
        nbytes = classes.nbytes + conf.nbytes
        if nbytes > CACHE_BYTES:
            return
        self._cache[i] = (classes, conf)
        self._cached_bytes += nbytes
        while self._cached_bytes > CACHE_BYTES:
            _, (c, k) = self._cache.popitem(last=False)
            self._cached_bytes -= c.nbytes + k.nbytes

    def _check_size(self, path: Path, shape: tuple[int, ...]) -> None:
        h, w = shape
        if w != 2 * h:
            raise LabelError(f"{path.name}: label image is {w}×{h}; expected a 2:1 equirect (width = 2 × height)")
        if self.shape is None:
            self.shape = (h, w)
        elif self.shape != (h, w):
            first = self.frames[0].images[0].name
            raise LabelError(f"{path.name}: label image is {w}×{h} but {first} is {self.shape[1]}×{self.shape[0]} "
                             "(all label frames of a video must have one size)")

    def _decode(self, i: int) -> tuple[NDArray, NDArray[np.uint8]]:
        f = self.frames[i]
        where = f"{self.folder.name}/{f.images[0].name}"
        if self.layout == "panoptic":
            things = read_id_image(f.images[0], allow_rgb=True)
            stuff = read_id_image(f.images[1], allow_rgb=True)
            self._check_size(f.images[0], things.shape)
            if stuff.shape != things.shape:
                raise LabelError(f"{f.images[1].name}: {stuff.shape[1]}×{stuff.shape[0]} differs from "
                                 f"{f.images[0].name} {things.shape[1]}×{things.shape[0]}")
            source = self.class_map.merge_panoptic(things, stuff, where)
        else:
            source = read_id_image(f.images[0])
            self._check_size(f.images[0], source.shape)
        classes, ignored = self.class_map.apply(source, where)
        if f.conf is not None:
            conf = read_confidence_image(f.conf)
            if conf.shape != classes.shape:
                raise LabelError(f"{f.conf.name}: confidence is {conf.shape[1]}×{conf.shape[0]} but the class ids "
                                 f"are {classes.shape[1]}×{classes.shape[0]}")
            conf = conf.copy()
        else:
            conf = np.full(classes.shape, 255, dtype=np.uint8)
        conf[ignored] = 0
        return classes, conf


@dataclass
class PrecomputedLabels(LabelBackend):
    """Backend over ``label_dir`` (see the module docstring). ``label_fps`` / ``max_gap`` (seconds) may be
    ``None``: then labels.json / the layout default, and one frame interval."""

    name: str = "precomputed"
    label_dir: Path = Path(".")
    class_map: ClassMap | None = None
    label_fps: float | None = None
    max_gap: float | None = None

    def __post_init__(self) -> None:
        self.label_dir = Path(self.label_dir)
        if not self.label_dir.is_dir():
            raise LabelError(f"--label-dir {self.label_dir} is not a directory")
        if self.class_map is None:
            own = self.label_dir / "classes.json"
            self.class_map = ClassMap.load(own if own.is_file() else DEFAULT_CLASS_MAP)
        self.class_names = list(self.class_map.classes)
        if self.label_fps is not None and not self.label_fps > 0:
            raise LabelError(f"--label-fps must be > 0 frames per second, got {self.label_fps}")
        if self.max_gap is not None and not self.max_gap > 0:
            raise LabelError(f"--label-max-gap must be > 0 seconds, got {self.max_gap}")

    @classmethod
    def from_options(cls, label_dir: str | None = None, class_map: str | None = None, label_fps: str | None = None,
                     max_gap: str | None = None) -> PrecomputedLabels:
        """Build from the string options of ``avsa-data shard`` (``--label-dir`` is required)."""
        if not label_dir:
            raise LabelError("--labels precomputed needs --label-dir (a folder with one sub-folder per video)")
        return cls(label_dir=Path(label_dir), class_map=ClassMap.load(class_map) if class_map else None,
                   label_fps=_float(label_fps, "--label-fps"), max_gap=_float(max_gap, "--label-max-gap"))

    def video_folder(self, video_path: Path, video_id: str) -> Path:
        for name in (video_id, Path(video_path).stem):
            p = self.label_dir / name
            if p.is_dir():
                return p
        raise LabelError(f"no label folder {self.label_dir / video_id} (nor {Path(video_path).stem}/) for this video")

    def open(self, video_path: Path, video_id: str) -> PrecomputedVideoLabels:
        folder = self.video_folder(video_path, video_id)
        layout, frames = scan_folder(folder)
        fps = self._fps(folder, layout)
        labels = PrecomputedVideoLabels(folder, layout, frames, fps,
                                        self.max_gap if self.max_gap is not None else 1.0 / fps, self.class_map)
        labels.validate()
        return labels

    def _fps(self, folder: Path, layout: str) -> float:
        meta = folder / "labels.json"
        if meta.is_file():
            try:
                fps = float(json.loads(meta.read_text())["fps"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise LabelError(f"{meta}: expected {{\"fps\": <label frames per second>}} ({e})") from e
            if not fps > 0:
                raise LabelError(f"{meta}: fps must be > 0, got {fps}")
            return fps
        if self.label_fps is not None:
            return self.label_fps
        if layout == "panoptic":
            return PANOPTIC_DEFAULT_FPS
        raise LabelError(f"{folder}: no frame rate: write {meta.name} with {{\"fps\": ...}} or pass --label-fps")

    def describe(self) -> dict:
        return {"backend": self.name, **self.class_map.describe(), "label_dir": str(self.label_dir),
                "label_fps": self.label_fps, "max_gap": self.max_gap}

    @property
    def produces_masks(self) -> bool:
        return True


def _float(value: str | None, option: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise LabelError(f"{option}: expected a number, got {value!r}") from None
