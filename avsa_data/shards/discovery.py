"""Finding the videos of ``--src`` (walk, layouts, ``--list``) as :class:`VideoTask` records."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import layouts, shard_format
from .config import VIDEO_EXTS, WORK, VideoTask
from .errors import ShardJobError, ShardOptionError


@dataclass
class Discovery:
    """What :func:`discover` found under ``--src``."""

    tasks: list[VideoTask]
    #: Failure records of videos that cannot be told apart (two files giving one video id).
    failed: list[dict] = field(default_factory=list)
    #: ``{"path", "reason"}`` of folders (and names) that were not searched.
    skipped: list[dict] = field(default_factory=list)


def discover(src: Path, list_file: Path | None = None) -> Discovery:
    """Video files under ``src`` (recursive), with ids and splits; what could not be used is reported.

    Splits come from ``list_file`` (CSV with columns ``video_id`` or ``path``, and ``split``), else from
    ``src/videos.csv`` when present, else every video is ``train``. With a list, only listed videos are used.
    Symbolic links to folders are not followed and unreadable folders are not searched (both are reported
    in ``skipped``); two files that give the same video id (``a.b.c.mp4`` and ``a_b_c.mp4``) both fail.
    """
    src = Path(src)
    if not src.is_dir():
        raise ShardOptionError(f"--src {src} is not a directory")
    files, skipped = _walk_videos(src)
    groups: dict[str, list[Path]] = {}
    for p in files:
        try:
            vid = shard_format.sanitize_id("__".join(p.relative_to(src).with_suffix("").parts))
        except ValueError:
            skipped.append({"path": str(p), "reason": "no video id can be derived from its name"})
            continue
        groups.setdefault(vid, []).append(p)
    list_file = split_list(src, list_file)
    if list_file is None:
        splits = dict.fromkeys(sorted(groups), "train")
    else:
        splits = {}
        for key, split in _read_list(Path(list_file)).items():
            flat = Path(key).with_suffix("").as_posix().replace("/", "__")
            vid = shard_format.sanitize_id(flat) if "/" in key else key
            vid = shard_format.sanitize_id(vid)
            if vid not in groups:
                raise ShardOptionError(f"--list names {key!r}, which is not under {src}")
            splits[vid] = split
    tasks, failed = [], []
    for vid, split in sorted(splits.items()):
        paths = groups[vid]
        if len(paths) == 1:
            tasks.append(VideoTask(vid, split, str(paths[0])))
            continue
        for p in paths:
            others = ", ".join(str(o) for o in paths if o != p)
            failed.append({"video_id": vid, "split": split, "path": str(p), "status": "failed", "stage": "discover",
                           "reason": f"{p}: gives the same video id {vid!r} as {others}; rename one of them"})
    return Discovery(tasks, failed, skipped)


def _walk_videos(src: Path) -> tuple[list[Path], list[dict]]:
    """Sorted video files under ``src``, and the folders skipped (symbolic links, unreadable)."""
    files: list[Path] = []
    skipped: list[dict] = []

    def unreadable(e: OSError) -> None:
        skipped.append({"path": str(e.filename), "reason": f"unreadable folder ({e.strerror})"})

    for root, dirs, names in os.walk(src, onerror=unreadable):
        here = Path(root)
        for d in list(dirs):
            if d == WORK or (here / d).is_symlink():
                dirs.remove(d)
                if d != WORK:
                    skipped.append({"path": str(here / d), "reason": "symbolic link to a folder (not followed: "
                                                                     "pass its target as --src, or copy it in)"})
        files += [here / n for n in names if Path(n).suffix.lower() in VIDEO_EXTS]
    return sorted(files), sorted(skipped, key=lambda s: s["path"])


def _read_list(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ShardOptionError(f"--list {path} does not exist")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ShardJobError(f"--list {path} cannot be read as CSV: {e}".splitlines()[0]) from None
    if not rows:
        raise ShardJobError(f"--list {path} has no rows")
    col = "video_id" if "video_id" in rows[0] else "path" if "path" in rows[0] else None
    if col is None:
        raise ShardJobError(f"--list {path} needs a 'video_id' or 'path' column (and optionally 'split')")
    out = {}
    for n, r in enumerate(rows, start=2):
        split = (r.get("split") or "train").strip()
        if not r.get(col) or not isinstance(r[col], str):
            raise ShardJobError(f"--list {path} line {n}: empty {col!r}")
        try:
            shard_format.sanitize_id(split)
        except ValueError:
            raise ShardJobError(f"--list {path} line {n}: unusable split name {split!r}") from None
        out[r[col].strip()] = split
    return out


def split_list(src: Path, list_file: Path | None) -> Path | None:
    """The list that gives the videos' splits: ``list_file`` (``--list``), else ``src/videos.csv`` when present,
    else ``None`` (every video is ``train``, or its layout's folders say)."""
    if list_file is None and (src / "videos.csv").is_file():
        return src / "videos.csv"
    return list_file


def discover_layout(src: Path, list_file: Path | None, spec: layouts.LayoutSpec) -> Discovery:
    """The videos of ``src`` in its input layout ``spec`` (resolved): flat (:func:`discover`), or starss23 /
    folders (:func:`avsa_data.layouts.discover`, splits from folder names unless a list says otherwise)."""
    try:
        if spec.name == "flat":
            return discover(src, list_file)
        if not src.is_dir():
            raise ShardOptionError(f"--src {src} is not a directory")
        recs = layouts.discover(src, spec)
        list_file = split_list(src, list_file)
        if list_file is not None:
            recs = layouts.apply_list(recs, _read_list(Path(list_file)), src)
    except layouts.LayoutError as e:
        raise ShardJobError(str(e)) from e
    return Discovery([VideoTask(r.video_id, r.split, r.video, r.audio, r.events) for r in recs])
