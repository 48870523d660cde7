"""Input layouts of ``avsa-data shard --src``: where a recording's video, spatial audio and event labels live.

* ``flat`` — videos anywhere under ``SRC``, audio in the container or a same-stem sidecar, no event labels
  (docs/FORMAT.md, "Raw input"). Splits from ``--list`` / ``SRC/videos.csv``, else ``train``.
* ``starss23`` — the STARSS23 / DCASE SELD development layout (docs/FORMAT.md, "STARSS23 / DCASE layout")::

      SRC/video_dev/dev-train-sony/fold3_room21_mix001.mp4     360° equirect video (no audio)
      SRC/foa_dev/dev-train-sony/fold3_room21_mix001.wav       4-channel ambiX FOA
      SRC/metadata_dev/dev-train-sony/fold3_room21_mix001.csv  sound events (avsa_data.events)

  ``mic_dev/`` (tetrahedral microphone format) is ignored. A recording's split comes from its folder:
  ``dev-train-*`` → ``train``, ``dev-test-*`` → ``test``, ``dev-val-*`` → ``val``, any other folder → its own
  name; ``--list`` overrides.
* ``folders`` — the general form for similar datasets: videos under ``SRC``, the audio of ``SRC/a/b.mp4`` at
  ``AUDIO_DIR/a/b.wav`` (or ``.flac``) and its events at ``EVENTS_DIR/a/b.csv`` (``--audio-dir``,
  ``--events-dir``; either may be omitted: container/sidecar audio, no event labels). Splits as ``starss23``
  when the first folder is a ``dev-*`` name, else as ``flat``.
* ``auto`` (default) — ``starss23`` when ``SRC`` has ``video_dev/`` and ``foa_dev/`` or ``metadata_dev/``;
  ``folders`` when ``--audio-dir`` or ``--events-dir`` is given; else ``flat``.

A video's id is its path relative to the video root (``SRC``, or ``SRC/video_dev``) without suffix, ``/`` →
``__`` (``dev-train-sony__fold3_room21_mix001``). A missing audio file fails that recording (stage ``audio``);
a missing CSV is allowed and recorded as ``"no labels"`` in ``meta.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import shard_format
from .options import option

LAYOUTS = ("auto", "flat", "starss23", "folders")
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov")
AUDIO_EXTS = (".wav", ".flac")
#: Folder names of the STARSS23 development set (the DCASE 2023–2024 Task 3 FOA releases).
STARSS23_DIRS = {"video": "video_dev", "audio": "foa_dev", "events": "metadata_dev"}
#: Folder-name prefix → split.
SPLIT_PREFIXES = (("dev-train", "train"), ("dev-test", "test"), ("dev-val", "val"))
#: File in the events root that names the classes of its CSVs (else the shipped STARSS23 map).
CLASSES_FILE = "classes.json"


class LayoutError(Exception):
    """The input folder does not fit the layout; one-line message."""


@dataclass(frozen=True)
class LayoutSpec:
    """Which layout to read ``SRC`` with, and the folders of the general form."""

    name: str = option("auto", flag="--layout", choices=LAYOUTS,
                       help="How SRC is organised. flat: videos with container/sidecar audio. starss23: the STARSS23 "
                       "/ DCASE SELD layout, SRC/video_dev/<split>/X.mp4 + foa_dev/<split>/X.wav + "
                       "metadata_dev/<split>/X.csv (sound events), splits from dev-train-*/dev-test-* folder names. "
                       "folders: the general form, with --audio-dir and --events-dir. auto: starss23 when SRC has "
                       "video_dev/ and foa_dev/, folders when --audio-dir/--events-dir is given, else flat.")
    audio_dir: str | None = option(None, form="dir",
                                   help="folders layout: the FOA of SRC/a/b.mp4 is AUDIO_DIR/a/b.wav (or .flac).")
    events_dir: str | None = option(None, form="dir",
                                    help="folders layout: the sound-event CSV of SRC/a/b.mp4 is EVENTS_DIR/a/b.csv "
                                    "(DCASE format: frame,class,source,azimuth,elevation[,distance]; a missing CSV "
                                    "is stored as 'no labels').")

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise LayoutError(f"--layout must be one of {LAYOUTS}, got {self.name!r}")
        if self.name in ("flat", "starss23") and (self.audio_dir or self.events_dir):
            raise LayoutError(f"--audio-dir/--events-dir apply to --layout folders, not {self.name}")


@dataclass(frozen=True)
class Recording:
    """One input: video id, split, and the paths of its video, audio (``None``: container or sidecar) and event
    CSV (``None``: the layout has no event labels; the file may be absent)."""

    video_id: str
    split: str
    video: str
    audio: str | None = None
    events: str | None = None


def is_starss23(src: Path) -> bool:
    """Whether ``src`` looks like a STARSS23 / DCASE development folder."""
    return (src / STARSS23_DIRS["video"]).is_dir() and any(
        (src / STARSS23_DIRS[k]).is_dir() for k in ("audio", "events"))


def resolve(src: Path, spec: LayoutSpec) -> LayoutSpec:
    """``spec`` with ``auto`` replaced by the layout ``src`` has."""
    if spec.name != "auto":
        return spec
    if spec.audio_dir or spec.events_dir:
        return LayoutSpec("folders", spec.audio_dir, spec.events_dir)
    return LayoutSpec("starss23" if is_starss23(Path(src)) else "flat")


def events_root(src: Path, spec: LayoutSpec) -> Path | None:
    """The folder holding the event CSVs of a resolved layout (``None``: no event labels)."""
    if spec.name == "starss23":
        return Path(src) / STARSS23_DIRS["events"]
    return Path(spec.events_dir) if spec.name == "folders" and spec.events_dir else None


def own_event_classes(src: Path, spec: LayoutSpec) -> str | None:
    """``EVENTS_ROOT/classes.json`` when the layout has one (synthetic STARSS23-shaped folders write one), else
    ``None`` (the ``auto`` class map then means the shipped ``starss23``)."""
    root = events_root(src, resolve(src, spec))
    if root is not None and (root / CLASSES_FILE).is_file():
        return str((root / CLASSES_FILE).resolve())
    return None


def split_of_folder(name: str) -> str | None:
    """``dev-train-sony`` → ``train``, ``dev-test-tau`` → ``test``, ``dev-val`` → ``val``; other names: ``None``."""
    for prefix, split in SPLIT_PREFIXES:
        if name == prefix or name.startswith(prefix + "-"):
            return split
    return None


def _videos(root: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    skip = tuple(s.resolve() for s in skip)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and ".work" not in p.parts
                  and not any(p.resolve().is_relative_to(s) for s in skip))


def _find_audio(base: Path) -> str:
    """The ``.wav``/``.flac`` next to stem ``base``; the ``.wav`` path when neither exists (fails at read)."""
    for ext in AUDIO_EXTS:
        if base.with_suffix(ext).is_file():
            return str(base.with_suffix(ext))
    return str(base.with_suffix(AUDIO_EXTS[0]))


def discover(src: Path, spec: LayoutSpec) -> list[Recording]:
    """The recordings under ``src`` in a resolved non-flat layout, sorted by id (splits from folder names)."""
    src = Path(src)
    if spec.name == "starss23":
        video_root = src / STARSS23_DIRS["video"]
        audio_root, ev_root = src / STARSS23_DIRS["audio"], src / STARSS23_DIRS["events"]
        if not audio_root.is_dir():
            raise LayoutError(f"{src}: STARSS23 layout without {STARSS23_DIRS['audio']}/ (mic_dev/ is not read: "
                              "avsa needs first-order ambisonics)")
        files = _videos(video_root)
    elif spec.name == "folders":
        video_root = src
        audio_root = Path(spec.audio_dir) if spec.audio_dir else None
        ev_root = Path(spec.events_dir) if spec.events_dir else None
        for flag, d in (("--audio-dir", audio_root), ("--events-dir", ev_root)):
            if d is not None and not d.is_dir():
                raise LayoutError(f"{flag} {d} is not a directory")
        files = _videos(src, tuple(d for d in (audio_root, ev_root) if d is not None))
    else:
        raise LayoutError(f"discover() reads the starss23 and folders layouts, not {spec.name!r}")
    out: dict[str, Recording] = {}
    for p in files:
        rel = p.relative_to(video_root).with_suffix("")
        vid = shard_format.sanitize_id("__".join(rel.parts))
        if vid in out:
            raise LayoutError(f"two inputs map to video id {vid!r}: {out[vid].video} and {p}")
        split = split_of_folder(rel.parts[0]) if len(rel.parts) > 1 else None
        if split is None and spec.name == "starss23" and len(rel.parts) > 1:
            split = shard_format.sanitize_id(rel.parts[0])
        out[vid] = Recording(vid, split or "train", str(p),
                             _find_audio(audio_root / rel) if audio_root is not None else None,
                             str((ev_root / rel).with_suffix(".csv")) if ev_root is not None else None)
    return [out[v] for v in sorted(out)]


def apply_list(recordings: list[Recording], splits: dict[str, str], src: Path) -> list[Recording]:
    """Keep the recordings a ``--list`` names (by video id, or by path relative to ``src`` or the video root),
    with the list's splits."""
    by_id = {r.video_id: r for r in recordings}
    out = []
    for key, split in splits.items():
        vid = key if key in by_id else shard_format.sanitize_id(Path(key).with_suffix("").as_posix().replace("/", "__"))
        if vid not in by_id and vid.startswith(STARSS23_DIRS["video"] + "__"):
            vid = vid[len(STARSS23_DIRS["video"]) + 2:]
        if vid not in by_id:
            raise LayoutError(f"--list names {key!r}, which is not a recording under {src}")
        r = by_id[vid]
        out.append(Recording(r.video_id, split, r.video, r.audio, r.events))
    return sorted(out, key=lambda r: r.video_id)
