"""Writing scenes to disk: one video's files (:func:`write_scene`) and a whole folder in parallel
(:func:`generate`), flat (docs/FORMAT.md, "Raw input") or STARSS23-shaped.

Every file is a pure function of the config and the seed: fixed zip timestamps, sorted JSON keys, bit-exact
ffmpeg; the worker count never changes a byte. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from .. import __version__, layouts, media
from ..ambisonics import ambix_to_fuma
from ..events import LABEL_HOP, format_rows
from ..fsutil import atomic_write_bytes
from ..jobcontrol import usable_cpus
from .classes import CLASS_NAMES
from .config import FORMAT_VERSION, SynthConfig
from .fixtures import write_corrupt_variants
from .paint import iter_frames
from .scene import Scene, Source, make_scene
from .sound import render_foa
from .truth import EVENT_CLASS_NAMES, render_truth, scene_events

#: STARSS23-layout folder of each synth split.
STARSS23_SPLIT_FOLDERS = {"train": "dev-train-synth", "val": "dev-test-synth"}


def split_of(index: int, n_videos: int, val_fraction: float) -> str:
    """``train`` or ``val``: the last ``round(val_fraction · n)`` videos (at least one when n ≥ 2 and the
    fraction is > 0, never all) are validation."""
    n_val = int(math.floor(n_videos * val_fraction + 0.5))
    if val_fraction > 0 and n_videos >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(n_videos - 1, 0))
    return "val" if index >= n_videos - n_val else "train"


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
    paths = _scene_paths(Path(out_dir), scene.video_id, cfg, split)
    for d in (paths.folder, paths.audio.parent) + (() if paths.events is None else (paths.events.parent,)):
        d.mkdir(parents=True, exist_ok=True)
    foa, gain = render_foa(scene, cfg)
    _write_media(paths, scene, cfg, ambix_to_fuma(foa) if cfg.ambi_format == "fuma" else foa)
    atomic_write_bytes(paths.folder / f"{scene.video_id}.truth.npz", npz_bytes(render_truth(scene, cfg)))
    meta = _scene_meta(scene, cfg, split, paths, gain)
    atomic_write_bytes(paths.folder / f"{scene.video_id}.json", _json_bytes(meta))
    return meta


@dataclass(frozen=True)
class _ScenePaths:
    """Where one scene's files go: the folder of its video, truth and json, the video, the audio (the video
    itself when the audio is in the container) and the events csv (STARSS23 layout only, else ``None``)."""

    folder: Path
    video: Path
    audio: Path
    events: Path | None


def _scene_paths(out: Path, vid: str, cfg: SynthConfig, split: str) -> _ScenePaths:
    """The files of video ``vid`` of ``split`` under ``out`` in ``cfg``'s layout (:func:`write_scene`)."""
    if cfg.layout == "starss23":
        folder = STARSS23_SPLIT_FOLDERS[split]
        video_dir, audio_dir, events_dir = (out / layouts.STARSS23_DIRS[kind] / folder
                                            for kind in ("video", "audio", "events"))
        return _ScenePaths(video_dir, video_dir / f"{vid}.mp4", audio_dir / f"{vid}.wav", events_dir / f"{vid}.csv")
    video = out / f"{vid}.mp4"
    return _ScenePaths(out, video, video if cfg.audio_layout == "container" else out / f"{vid}.wav", None)


def _write_media(paths: _ScenePaths, scene: Scene, cfg: SynthConfig, audio: NDArray) -> None:
    """Encode the video and the audio (``(4, samples)`` in the config's ambisonic format) where ``paths`` say,
    and the events csv of the STARSS23 layout."""
    if paths.events is not None:
        media.write_audio(paths.audio, audio, cfg.sr)
        media.write_video(paths.video, iter_frames(scene, cfg), cfg.fps, cfg.size, crf=cfg.crf)
        atomic_write_bytes(paths.events, format_rows(scene_events(scene, cfg)).encode())
    elif cfg.audio_layout == "container":
        for ext in media.SIDECAR_EXTS:  # a stale sidecar would shadow the container's track
            (paths.folder / f"{scene.video_id}{ext}").unlink(missing_ok=True)
        media.write_video(paths.video, iter_frames(scene, cfg), cfg.fps, cfg.size, audio=audio, sr=cfg.sr,
                          audio_codec=cfg.audio_codec, crf=cfg.crf)
    else:
        media.write_audio(paths.audio, audio, cfg.sr)
        media.write_video(paths.video, iter_frames(scene, cfg), cfg.fps, cfg.size, crf=cfg.crf)


def _scene_meta(scene: Scene, cfg: SynthConfig, split: str, paths: _ScenePaths, gain: float) -> dict:
    """The json metadata of a scene written to ``paths`` (``gain``: the audio's normalising gain,
    :func:`render_foa`); file names are relative to ``paths.folder``."""
    starss = paths.events is not None
    return {
        "format_version": FORMAT_VERSION,
        "generator": f"avsa-data synth {__version__}",
        "video_id": scene.video_id,
        "split": split,
        "seed": scene.seed,
        "duration": cfg.duration,
        "video": {
            "file": paths.video.name,
            "codec": "h264",
            "size": list(cfg.size),
            "fps": cfg.fps,
            "frames": cfg.n_frames,
        },
        "audio": {
            "file": os.path.relpath(paths.audio, paths.folder),
            "layout": "starss23" if starss else cfg.audio_layout,
            "codec": cfg.audio_codec if cfg.audio_layout == "container" and not starss else "pcm",
            "format": cfg.ambi_format,
            "channels": 4,
            "sr": cfg.sr,
            "samples": cfg.n_samples,
            "snr_db": cfg.snr_db if math.isfinite(cfg.snr_db) else None,
            "gain": round(gain, 9),
        },
        "truth": {
            "file": f"{scene.video_id}.truth.npz",
            "label_fps": cfg.label_fps,
            "label_size": list(cfg.label_size),
            "ctrl_rate": cfg.ctrl_rate,
        },
        "classes": list(CLASS_NAMES),
        "events": None if not starss else {"file": os.path.relpath(paths.events, paths.folder), "hop": LABEL_HOP},
        "sources": [_source_json(s) for s in scene.sources],
        "blobs": [asdict(b) for b in scene.blobs],
    }


def _generate_one(cfg: SynthConfig, index: int, out_dir: str) -> dict:
    scene = make_scene(cfg, index)
    return write_scene(scene, cfg, out_dir, split_of(index, cfg.videos, cfg.val_fraction))


def default_workers() -> int:
    """min(4, usable CPUs)."""
    return min(4, usable_cpus())


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
