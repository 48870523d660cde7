"""`avsa-data shard`: a folder of raw 360° videos → WebDataset shards, in parallel, atomically, resumably.

The job has two phases, both deterministic and independent of the worker count:

1. **Per video** (in parallel, one task per video): probe, read the FOA, stream the frames once, and write
   the video's encoded samples to a *fragment* ``OUT/.work/frag/{video_id}.tar`` (temp file + rename).
   A bad input is recorded in ``OUT/.work/frag/{video_id}.failed.json`` and never stops the job.
2. **Assembly**: fragments are concatenated in sorted video order, per split, into
   ``OUT/{split}-{NNNNNN}.tar`` of ``--shard-size`` samples (or megabytes). Each shard is written to
   ``*.tmp`` and renamed. Finally ``manifest.json`` and ``failures.jsonl`` are written (also atomically)
   and the work folder is removed.

A rerun of the same command after an interruption (even ``kill -9``) skips finished fragments and shards
and ends byte-identical to an uninterrupted run. Changing the configuration of an existing output needs
``--overwrite``. One job at a time may use an output folder (an ``fcntl`` lock on ``OUT/.lock``).

Every input's identity (path, size, mtime and a hash of its first and last MiB; :mod:`avsa_data.input_identity`)
is recorded in its fragment summary and in the manifest. A rerun over a finished output then:

- shards videos added to ``--src`` as an *incremental update*: their samples go to new shards numbered after
  the existing ones of their split, and the finished shards are never rewritten (they stay byte-identical);
- retries failed videos whose input changed;
- refuses changed or removed inputs that have samples in the shards (``--overwrite`` rebuilds), and another
  ``--src`` than the one the output was made from.

A fragment whose input changed while the job was interrupted is made again, never mixed in.

Only bad input (:class:`~avsa_data.media.MediaError`, :class:`~avsa_data.labels.LabelError`) is recorded as a
failure. Errors of the environment (disk full, file too large, out of memory, too many open files, a killed
ffmpeg) stop the job with one line (:class:`JobStopped`) and leave nothing recorded against the input, so the
rerun retries it.

``OUT`` may also be an fsspec URL (``s3://bucket/prefix``, ``file:///…``; :mod:`avsa_data.remote`). Both
phases then run in a local *staging* folder (``--staging``, by default one under the system temp folder named
after the URL), and each finished shard is uploaded and removed from the staging folder, followed by
``failures.jsonl`` and, last, ``manifest.json``: its presence (``complete: true``) marks the job done. The
bytes are those of a local run.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__, layouts, media, remote
from . import format as fmt
from .events import AUTO_CLASSES, EventClasses, EventLabelError, EventOptions, load_video_events
from .fsutil import atomic_write_bytes, tmp_path
from .input_identity import same_content, video_identity
from .jobcontrol import FolderBusy, die_with_parent, exclusive_lock
from .labels import BACKENDS, LabelBackend, LabelError, make_backend
from .options import option
from .samples import EncodedSample, SampleConfig, VideoInfo, iter_samples, needed_frames, plan_samples

VIDEO_EXTS = layouts.VIDEO_EXTS
WORK = ".work"
#: The files a job writes next to its shards.
OUTPUTS = ("manifest.json", "failures.jsonl", "config.json")


class ShardJobError(Exception):
    """The job as a whole cannot run (bad arguments, config mismatch); one-line message."""


class JobStopped(ShardJobError):
    """The environment stopped the job (disk full, out of memory, …); nothing was recorded against any input,
    and rerunning the same command resumes. One-line message."""


#: errno values that describe the machine, never the input: the job stops and the rerun retries.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
                                errno.EIO, errno.EROFS, errno.EAGAIN})


def _gb_free(path: str | os.PathLike) -> str:
    for p in (Path(path), *Path(path).parents):
        with contextlib.suppress(OSError):
            return f"{shutil.disk_usage(p).free / 1e9:.1f} GB"
    return "unknown"


def environment_stop(e: BaseException, where: str) -> JobStopped | None:
    """The one-line :class:`JobStopped` for an environment error met while working on ``where`` (a file), or
    None when ``e`` is something else (bad input, a bug, an interrupt)."""
    if isinstance(e, JobStopped):
        return e
    if isinstance(e, MemoryError):
        return JobStopped(f"out of memory working on {where}: lower --workers (or --max-resolution) and rerun")
    if isinstance(e, media.FfmpegKilled):
        return JobStopped(f"{e} (out of memory? the OOM killer?): lower --workers and rerun")
    if not isinstance(e, OSError) or e.errno is None:
        return None
    file = e.filename or where
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return JobStopped(f"disk full writing {file} ({_gb_free(file)} free there): free space and rerun to "
                          f"resume (a job needs about twice the size of its shards)")
    if e.errno == errno.EFBIG:
        return JobStopped(f"file too large writing {file} (a file-size limit, ulimit -f, or the filesystem's "
                          f"maximum): raise it or use a smaller --shard-size, then rerun")
    if e.errno == errno.ENOMEM:
        return JobStopped(f"out of memory working on {where}: lower --workers (or --max-resolution) and rerun")
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return JobStopped(f"too many open files working on {where}: raise the limit (ulimit -n) or lower --workers, "
                          f"then rerun")
    return JobStopped(f"{e.strerror or type(e).__name__} on {file}: fix it and rerun to resume")


@contextlib.contextmanager
def _stop_on_environment_errors(where: str) -> Iterator[None]:
    """Turn an environment error raised in the block into :class:`JobStopped`."""
    try:
        yield
    except ShardJobError:
        raise
    except (OSError, MemoryError, media.FfmpegKilled) as e:
        stop = environment_stop(e, where)
        if stop is None:
            raise
        raise stop from None


@dataclass(frozen=True)
class JobConfig:
    """Options of a shard job. ``sample`` fields and the label description determine the bytes."""

    sample: SampleConfig = field(default_factory=SampleConfig)
    labels: str = option("none", choices=BACKENDS,
                         help="Pseudo-label backend for segmentation masks (docs/LABELS.md): synthetic (the synth "
                         "truth sidecar), precomputed (--label-dir), onnx (--model).")
    #: The backend's options as sorted (name, string) pairs (cli/data_shard.py: --label-dir, --model, --onnx-*).
    label_options: tuple[tuple[str, str], ...] = ()
    labels_optional: bool = option(False, help="Write samples without masks (and say so in meta.json) when a "
                                   "video's labels are unusable.")
    shard_size: int | None = 256  # samples per shard
    shard_mb: float | None = None  # or a target size in MB (one flag sets either: --shard-size 256 or 500MB)
    max_av_mismatch: float = option(0.5, unit="SECONDS", help="Tolerated audio/video duration mismatch (s).")
    #: Largest input frame (width, height) in pixels; larger inputs are failures (an 8K equirect decodes to
    #: 88 MB per RGB frame; 16384×8192 drove one worker to 8.4 GB).
    max_resolution: tuple[int, int] = option((7680, 3840), form="size",
                                             help="Largest input frame WIDTHxHEIGHT; larger videos are recorded as "
                                             "failures before decoding (a worker holds several decoded RGB frames "
                                             "of 3 bytes per pixel; a 16384x8192 input took 8.4 GB).")
    #: Tolerated deviation of width / height from the 2:1 of an equirectangular frame (relative).
    aspect_tolerance: float = 0.01
    events: EventOptions = field(default_factory=EventOptions)  # how sound-event CSVs are read

    def hashed(self) -> dict:
        return {
            "format_version": fmt.FORMAT_VERSION,
            "sample": self.sample.as_dict(),
            "labels": self.labels,
            "label_options": [list(kv) for kv in self.label_options],
            "labels_optional": self.labels_optional,
            "shard_size": self.shard_size,
            "shard_mb": self.shard_mb,
            "max_av_mismatch": self.max_av_mismatch,
            "max_resolution": list(self.max_resolution),
            "aspect_tolerance": self.aspect_tolerance,
            "events": self.events.as_dict(),
        }

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.hashed(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VideoTask:
    video_id: str
    split: str
    path: str
    audio: str | None = None  # the FOA file (layouts with separate audio); None: container or sidecar
    events: str | None = None  # the sound-event CSV (avsa_data.events); None: the layout has none
    #: :func:`avsa_data.input_identity.video_identity` of the input, or ``{"path", "error"}`` if unreadable.
    identity: dict | None = field(default=None, compare=False, hash=False)


# --------------------------------------------------------------------------------------------- discovery


@dataclass
class Discovery:
    """What :func:`discover` found under ``--src``."""

    tasks: list[VideoTask]
    #: Failure records of videos that cannot be told apart (two files giving one video id).
    failed: list[dict] = field(default_factory=list)
    #: ``{"path", "reason"}`` of folders (and names) that were not searched.
    skipped: list[dict] = field(default_factory=list)


def discover_videos(src: Path, list_file: Path | None = None) -> list[VideoTask]:
    """The shardable videos under ``src`` (see :func:`discover`)."""
    return discover(src, list_file).tasks


def discover(src: Path, list_file: Path | None = None) -> Discovery:
    """Video files under ``src`` (recursive), with ids and splits; what could not be used is reported.

    Splits come from ``list_file`` (CSV with columns ``video_id`` or ``path``, and ``split``), else from
    ``src/videos.csv`` when present, else every video is ``train``. With a list, only listed videos are used.
    Symbolic links to folders are not followed and unreadable folders are not searched (both are reported
    in ``skipped``); two files that give the same video id (``a.b.c.mp4`` and ``a_b_c.mp4``) both fail.
    """
    src = Path(src)
    if not src.is_dir():
        raise ShardJobError(f"--src {src} is not a directory")
    files, skipped = _walk_videos(src)
    groups: dict[str, list[Path]] = {}
    for p in files:
        try:
            vid = fmt.sanitize_id("__".join(p.relative_to(src).with_suffix("").parts))
        except ValueError:
            skipped.append({"path": str(p), "reason": "no video id can be derived from its name"})
            continue
        groups.setdefault(vid, []).append(p)
    if list_file is None and (src / "videos.csv").is_file():
        list_file = src / "videos.csv"
    if list_file is None:
        splits = dict.fromkeys(sorted(groups), "train")
    else:
        splits = {}
        for key, split in _read_list(Path(list_file)).items():
            vid = fmt.sanitize_id(Path(key).with_suffix("").as_posix().replace("/", "__")) if "/" in key else key
            vid = fmt.sanitize_id(vid)
            if vid not in groups:
                raise ShardJobError(f"--list names {key!r}, which is not under {src}")
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
        raise ShardJobError(f"--list {path} does not exist")
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
            fmt.sanitize_id(split)
        except ValueError:
            raise ShardJobError(f"--list {path} line {n}: unusable split name {split!r}") from None
        out[r[col].strip()] = split
    return out


# ------------------------------------------------------------------------------------------ per video


def _fail(stage: str, reason: str) -> dict:
    return {"status": "failed", "stage": stage, "reason": reason.splitlines()[0] if reason else stage}


def process_video(task: VideoTask, job: JobConfig, out: Path) -> dict:
    """Phase 1 for one video. Returns a summary dict (``status`` ok/failed); never raises for bad input.
    Environment errors raise :class:`JobStopped` (and nothing is recorded, so that a rerun retries)."""
    try:
        return _process_video_once(task, job, out / WORK / "frag")
    except BaseException as e:
        stop = environment_stop(e, task.path)
        if stop is None:
            raise
        raise stop from None


def _summary_paths(frag_dir: Path, video_id: str) -> tuple[Path, Path]:
    """(ok summary, failure summary) of one video in the fragment folder."""
    return frag_dir / f"{video_id}.json", frag_dir / f"{video_id}.failed.json"


def _process_video_once(task: VideoTask, job: JobConfig, frag_dir: Path) -> dict:
    done, failed = _summary_paths(frag_dir, task.video_id)
    for summary in (done, failed):
        if summary.exists():
            return json.loads(summary.read_text())
    t0 = time.time()
    result = _process_video(task, job, frag_dir)
    result.update(video_id=task.video_id, split=task.split, path=task.path, input=task.identity,
                  seconds=round(time.time() - t0, 3))
    target = done if result["status"] != "failed" else failed
    atomic_write_bytes(target, json.dumps(result, sort_keys=True).encode())
    return result


def frame_problem(width: int | None, height: int | None, job: JobConfig) -> str | None:
    """Why a ``width``×``height`` input frame is refused (None if it is fine): not 2:1 equirectangular, or larger
    than ``job.max_resolution``. Checked on the probe, before anything is decoded."""
    if not width or not height:
        return "the video's frame size is unknown"
    max_w, max_h = job.max_resolution
    if width > max_w or height > max_h:
        return (f"{width}x{height} is above --max-resolution {max_w}x{max_h} (one RGB frame is "
                f"{width * height * 3 / 1e6:.0f} MB); raise --max-resolution to shard it")
    if abs(width / height - 2.0) > 2.0 * job.aspect_tolerance:
        return f"{width}x{height} is not a 2:1 equirectangular frame (aspect {width / height:.3f})"
    return None


def _process_video(task: VideoTask, job: JobConfig, frag_dir: Path) -> dict:
    cfg = job.sample
    stage = "probe"
    try:
        if task.identity and "error" in task.identity:
            return _fail(stage, f"{task.path}: unreadable ({task.identity['error']})")
        pr = media.probe(task.path)
        if not pr.has_video:
            return _fail(stage, f"{task.path}: no video stream")
        problem = frame_problem(pr.width, pr.height, job)
        if problem:
            return _fail(stage, f"{task.path}: {problem}")
        stage = "audio"
        audio_src = Path(task.audio) if task.audio else media.find_audio_source(task.path)
        foa = media.read_foa(audio_src, cfg.sr, cfg.ambi_format)
        audio_dur = foa.shape[1] / cfg.sr
        media.check_durations(pr.duration, audio_dur, job.max_av_mismatch)
        duration = min(audio_dur, pr.duration)
        stage = "events"
        events = load_video_events(task.events, job.events, audio_dur)
        stage = "labels"
        backend = _backend(job)
        labels, label_meta = None, backend.describe()
        try:
            labels = backend.open(Path(task.path), task.video_id)
        except (LabelError, OSError, ValueError) as e:
            if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
                raise
            if not job.labels_optional:
                raise e if isinstance(e, LabelError) else LabelError(str(e)) from e
            label_meta = {**label_meta, "error": str(e).splitlines()[0]}
        plans = plan_samples(duration, cfg)
        if not plans:
            return _fail("duration", f"{task.path}: {duration:.3f} s is shorter than one {cfg.audio_seconds} s "
                                     f"audio window: no sample")
        stage = "decode"
        info = VideoInfo(task.video_id, task.split, task.path, round(duration, 6), pr.width, pr.height,
                         pr.fps, str(audio_src))
        frames = media.iter_video_frames_at(task.path, cfg.fps, needed_frames(plans, cfg), size=cfg.equirect_size,
                                            pix_fmt="yuv420p")  # crops come from the YUV planes (crops_yuv)
        tmp = tmp_path(frag_dir / f"{task.video_id}.tar")
        index = []
        try:
            with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for sample in iter_samples(frames, foa, plans, info, cfg, labels, label_meta, events):
                    add_sample(tar, sample)
                    index.append({"key": sample.key, "bytes": sample.nbytes,
                                  "members": [[n, len(b)] for n, b in sample.members]})
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not index:
            return _fail("decode", f"{task.path}: the video decoded to too few frames for any sample")
        os.replace(tmp, frag_dir / f"{task.video_id}.tar")
        return {"status": "ok", "samples": len(index), "bytes": sum(s["bytes"] for s in index),
                "duration": duration, "index": index}
    except (media.MediaError, LabelError, EventLabelError) as e:  # bad input; anything else is not
        return _fail("labels" if isinstance(e, LabelError) else stage, f"{task.path}: {e}")


_BACKEND_CACHE: dict[tuple, LabelBackend] = {}


def _backend(job: JobConfig) -> LabelBackend:
    key = (job.labels, job.label_options)
    if key not in _BACKEND_CACHE:
        _BACKEND_CACHE[key] = make_backend(job.labels, **dict(job.label_options))
    return _BACKEND_CACHE[key]


# ------------------------------------------------------------------------------------------- tar I/O


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def add_sample(tar: tarfile.TarFile, sample: EncodedSample) -> None:
    """Append one sample's members as ``{key}.{suffix}`` with deterministic headers."""
    for suffix, data in sample.members:
        tar.addfile(_tarinfo(f"{sample.key}.{suffix}", len(data)), io.BytesIO(data))


def read_fragment(path: Path) -> Iterable[tuple[str, bytes]]:
    with tarfile.open(path, "r") as tar:
        for ti in tar:
            f = tar.extractfile(ti)
            yield ti.name, f.read() if f else b""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ assembly


def plan_shards(results: list[dict], job: JobConfig, first_index: dict[str, int] | None = None) -> list[dict]:
    """Assign samples to shards: per split, in sorted video order, cut by sample count or bytes.

    ``first_index`` gives, per split, the number of the first new shard (an incremental update continues after
    the shards already finished; default 0)."""
    shards: list[dict] = []
    for split in sorted({r["split"] for r in results if r["status"] == "ok"}):
        cur: dict | None = None
        count = (first_index or {}).get(split, 0)
        for r in sorted((r for r in results if r["status"] == "ok" and r["split"] == split),
                        key=lambda r: r["video_id"]):
            for s in r["index"]:
                full = cur is not None and (
                    (job.shard_size and len(cur["samples"]) >= job.shard_size)
                    or (job.shard_mb and cur["payload"] + s["bytes"] > job.shard_mb * 1e6 and cur["samples"])
                )
                if cur is None or full:
                    cur = {"name": fmt.shard_name(split, count), "split": split, "samples": [],
                           "videos": [], "payload": 0}
                    shards.append(cur)
                    count += 1
                cur["samples"].append(s["key"])
                cur["payload"] += s["bytes"]
                if r["video_id"] not in cur["videos"]:
                    cur["videos"].append(r["video_id"])
    return shards


def write_shard(plan: dict, out: Path) -> dict:
    """Write one planned shard from the fragments (atomically); skip it if it already exists."""
    final = out / plan["name"]
    if not final.exists():
        wanted = set(plan["samples"])
        tmp = tmp_path(final)
        try:
            with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for vid in plan["videos"]:
                    for name, data in read_fragment(out / WORK / "frag" / f"{vid}.tar"):
                        if name.split(".", 1)[0] in wanted:
                            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
                # tarfile's close() writes the end-of-archive blocks
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a disk-full error must not leave the partial shard taking space
            raise
        os.replace(tmp, final)
    return {"name": plan["name"], "split": plan["split"], "num_samples": len(plan["samples"]),
            "samples": plan["samples"], "source_videos": plan["videos"], "bytes": final.stat().st_size,
            "payload_bytes": plan["payload"], "sha256": sha256_file(final)}


PLAN_FILE = "plan.json"


def _settle_shard_plan(out: Path, plans: list[dict], results: list[dict], kept: set[str]) -> set[str]:
    """Make the shard files in ``out`` agree with ``plans`` before they are written; return the names whose
    content is new since the last recorded plan (a URL job must upload them even if an object of the same size
    is there).

    A shard's content follows from its sample keys and its videos' inputs; both are recorded in
    ``.work/plan.json``. A shard file under a final name whose recorded plan differs (an input changed while
    the job was interrupted), or that no plan names, is deleted, except the finished shards ``kept``."""
    inputs = {r["video_id"]: (r.get("input") or {}).get("head_tail_sha256") for r in results}
    signature = {p["name"]: {"samples": p["samples"], "inputs": [[v, inputs.get(v)] for v in p["videos"]]}
                 for p in plans}
    plan_path = out / WORK / PLAN_FILE
    old = _read_json(plan_path, missing=None, damaged=None) or {}
    for f in out.glob("*.tar"):
        if fmt.SHARD_RE.match(f.name) and f.name not in kept and old.get(f.name) != signature.get(f.name):
            f.unlink()
    atomic_write_bytes(plan_path, json.dumps(signature, sort_keys=True).encode())
    return {n for n, sig in signature.items() if old.get(n) != sig}


# ------------------------------------------------------------------------------------------ reruns


@dataclass
class Update:
    """What a run has to do, given the finished output it may find (:func:`plan_update`)."""

    todo: list[VideoTask]  # videos to process in this run
    kept: list[dict] = field(default_factory=list)  # video records carried over from the finished output
    shards: list[dict] = field(default_factory=list)  # its shard records (never rewritten)
    dropped: list[str] = field(default_factory=list)  # failed videos whose input is gone: no longer recorded
    incremental: bool = False

    def nothing_to_do(self, old: dict, failed_now: list[dict]) -> bool:
        """Whether the finished output ``old`` (a manifest) already says all there is to say."""
        old_discover = {v for v, rec in old["videos"].items() if rec.get("stage") == "discover"}
        return not self.todo and not self.dropped and old_discover == {f["video_id"] for f in failed_now}


class InputsChanged(ShardJobError):
    """Inputs with samples in a finished output changed or disappeared; one-line message."""


def plan_update(tasks: list[VideoTask], m: dict | None, out) -> Update:
    """Compare the inputs of this run with the finished manifest ``m`` (None: a fresh run does everything).

    New videos (and failed ones whose input changed) are processed as an incremental update; finished shards
    are kept as they are. Changed or removed inputs that have samples in the shards raise
    :class:`InputsChanged` (``--overwrite`` rebuilds the output)."""
    if m is None:
        return Update(list(tasks))
    old: dict[str, dict] = m["videos"]
    now = {t.video_id: t for t in tasks}
    todo, kept, changed = [], [], []
    for t in tasks:
        rec = old.get(t.video_id)
        if rec is None or rec.get("stage") == "discover":
            todo.append(t)
        elif same_content(rec.get("input"), t.identity) and rec.get("split") == t.split:
            kept.append({**rec, "video_id": t.video_id, "input": t.identity or rec.get("input")})
        elif rec["status"] == "ok":
            changed.append(t.path)
        else:
            todo.append(t)  # a failed input that changed: try it again
    removed = [rec.get("path", v) for v, rec in sorted(old.items()) if v not in now and rec["status"] == "ok"]
    if changed or removed:
        for what, paths in (("changed", changed), ("removed", removed)):
            for path in paths:
                _console(f"avsa-data shard: {what} since {out} was made: {path}")
        parts = [f"{len(changed)} input(s) changed"] * bool(changed) + [f"{len(removed)} removed"] * bool(removed)
        raise InputsChanged(f"{' and '.join(parts)} since {out} was made (e.g. {(changed + removed)[0]}): pass "
                            f"--overwrite to rebuild it from the current --src, or choose another --out")
    dropped = [v for v, rec in old.items() if v not in now and rec["status"] != "ok" and rec.get("stage") != "discover"]
    return Update(todo, kept, list(m["shards"]), dropped, incremental=True)


def identify_inputs(tasks: list[VideoTask], previous: dict[str, dict] | None = None,
                    threads: int = 8) -> list[VideoTask]:
    """``tasks`` with their :func:`~avsa_data.input_identity.video_identity` (reusing ``previous[video_id]``
    when size and mtime match). An unreadable input gets ``{"path", "error"}`` and fails in phase 1."""
    previous = previous or {}

    def one(t: VideoTask) -> VideoTask:
        try:
            return replace(t, identity=video_identity(t.path, (previous.get(t.video_id) or {}).get("input"),
                                                      audio=t.audio, events=t.events))
        except OSError as e:
            if e.errno in ENVIRONMENT_ERRNOS:
                raise
            return replace(t, identity={"path": t.path, "error": e.strerror or type(e).__name__})

    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        return list(ex.map(one, tasks))


def _drop_stale_fragments(frag_dir: Path, tasks: list[VideoTask]) -> list[str]:
    """Delete the fragments (and summaries) of ``tasks`` made from other inputs (an input changed, or another
    --src, while the job was interrupted); return their video ids."""
    stale = []
    for t in tasks:
        for summary in _summary_paths(frag_dir, t.video_id):
            if not summary.exists():
                continue
            rec = _read_json(summary, missing=None, damaged=None)
            if rec is None or not same_content(rec.get("input"), t.identity) or rec.get("split") != t.split:
                summary.unlink()
                (frag_dir / f"{t.video_id}.tar").unlink(missing_ok=True)
                stale.append(t.video_id)
    return stale


# ------------------------------------------------------------------------------------------- the job


@dataclass
class JobReport:
    out: Path | str  # the output folder, or the URL it was published to
    videos: int
    ok: int
    failed: int
    samples: int
    shards: int
    failures: list[dict]
    up_to_date: bool = False
    added: int = 0  # videos processed by this run of an incremental update
    skipped: list[dict] = field(default_factory=list)  # folders not searched (see Discovery.skipped)


def _read_json(path: Path, *, missing=ShardJobError, damaged=ShardJobError, hint: str = ""):
    """The JSON document at ``path``; when it is missing or damaged, return the given value, or raise a
    one-line :class:`ShardJobError` naming the file when that value is ShardJobError."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        if missing is ShardJobError:
            raise ShardJobError(f"{path} is missing{hint}") from None
        return missing
    except (ValueError, UnicodeDecodeError) as e:
        if damaged is ShardJobError:
            raise ShardJobError(f"{path} is damaged ({type(e).__name__}: {e}){hint}".splitlines()[0]) from None
        return damaged


_REBUILD = "; pass --overwrite to rebuild the output"


def _src_text(src) -> str:
    return str(Path(src).resolve())


def _mismatch(where, old: dict, job: JobConfig, src: str) -> ShardJobError | None:
    """Why the output described by ``old`` (a config.json) cannot be continued by this job, or None."""
    if not isinstance(old, dict) or old.get("config_hash") != job.config_hash:
        return _config_mismatch(where, old if isinstance(old, dict) else {}, job)
    if old.get("src") != src:
        return ShardJobError(f"{where} was made from --src {old.get('src')}, not {src}: pass --overwrite to rebuild "
                             f"it from {src}, or choose another --out")
    return None


def _check_config(out: Path, job: JobConfig, src: str, overwrite: bool) -> None:
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = _read_json(cfg_path, damaged={} if overwrite else ShardJobError, hint=_REBUILD)
        problem = _mismatch(out, old, job, src)
        if problem is None:
            return
        if not overwrite:
            raise problem
        clear_output(out)
    elif overwrite:
        clear_output(out)


def _config_mismatch(out, old: dict, job: JobConfig) -> ShardJobError:
    return ShardJobError(
        f"{out} holds shards made with another configuration (hash {old.get('config_hash')} vs "
        f"{job.config_hash}); pass --overwrite to replace them, or choose another --out"
    )


def _config_bytes(job: JobConfig, src: str) -> bytes:
    """``config.json``: the job configuration and its hash, and the --src it reads."""
    return json.dumps({"config_hash": job.config_hash, "config": job.hashed(), "avsa_version": __version__,
                       "src": src}, sort_keys=True, indent=1).encode()


def _complete(m: dict | None, job: JobConfig) -> bool:
    """Whether ``manifest.json`` (``m``) records a finished job with ``job``'s configuration."""
    return bool(isinstance(m, dict) and m.get("config_hash") == job.config_hash and m.get("complete")
                and m.get("format_version") == fmt.FORMAT_VERSION)


def _up_to_date(out, m: dict, failures_jsonl: str, skipped: list[dict]) -> JobReport:
    fails = [json.loads(line) for line in failures_jsonl.splitlines() if line]
    return JobReport(out, m["stats"]["videos"], m["stats"]["videos_ok"], len(fails), m["stats"]["samples"],
                     len(m["shards"]), fails, up_to_date=True, skipped=skipped)


def _start_work(out: Path) -> None:
    """Create the fragment folder; remove temp files left by a killed run."""
    (out / WORK / "frag").mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".*.tmp"), *(out / WORK).glob(".*.tmp"), *(out / WORK / "frag").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)


def _assemble(out: Path, job: JobConfig, src: str, found: Discovery, update: Update, results: list[dict],
              progress: bool, publish: Callable[[dict, bool], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Phase 2 in ``out``: the new shards (each handed to ``publish`` once written, with whether its content is
    new since the last recorded plan), failures.jsonl, manifest.json. Returns (failures, all shard records)."""
    first = {}
    for rec in update.shards:
        first[rec["split"]] = max(first.get(rec["split"], 0), int(fmt.SHARD_RE.match(rec["name"])["index"]) + 1)
    plans = plan_shards(results, job, first)
    fresh = _settle_shard_plan(out, plans, results, {rec["name"] for rec in update.shards})
    shard_records = list(update.shards)
    for plan in _progress(plans, progress, "shards", "shard"):
        shard_records.append(write_shard(plan, out))
        if publish is not None:
            publish(shard_records[-1], plan["name"] in fresh)
    shard_records.sort(key=lambda rec: rec["name"])
    everything = sorted([*update.kept, *results, *found.failed], key=lambda r: (r["video_id"], r["path"]))
    failures = [{"video_id": r["video_id"], "path": r["path"], "stage": r["stage"], "reason": r["reason"]}
                for r in everything if r["status"] == "failed"]
    _write_manifest(out, job, src, everything, shard_records, failures, found.skipped)
    return failures, shard_records


def _report(out, found: Discovery, update: Update, results: list[dict], failures: list[dict],
            shard_records: list[dict]) -> JobReport:
    everything = [*update.kept, *results]
    ok = sum(r["status"] == "ok" for r in everything)
    return JobReport(out, len(everything) + len(found.failed), ok, len(failures),
                     sum(s["num_samples"] for s in shard_records), len(shard_records), failures,
                     added=len(results) if update.incremental else 0, skipped=found.skipped)


def clear_output(out: Path) -> None:
    """Remove what a shard job writes in ``out`` (and nothing else; the lock file stays)."""
    for p in out.glob("*.tar"):
        if fmt.SHARD_RE.match(p.name):
            p.unlink()
    for p in out.glob(".*.tmp"):
        p.unlink()
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / WORK, ignore_errors=True)


def _console(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _finish_cleanup(out: Path, keep_work: bool) -> None:
    """Remove the work folder of a finished job (again, if a kill interrupted the last removal)."""
    if not keep_work and (out / WORK).exists():
        shutil.rmtree(out / WORK)


def run_shard_job(
    src: Path,
    out: Path,
    job: JobConfig,
    *,
    workers: int = 1,
    list_file: Path | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
    progress: bool = True,
    on_video_done: Callable[[dict], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    staging: Path | None = None,
    layout: layouts.LayoutSpec | None = None,
) -> JobReport:
    """Run (or resume, or update) a shard job. See the module docstring for the phases and guarantees.

    ``out`` is a local folder, or an fsspec URL string (``s3://bucket/prefix``) with ``staging`` the local
    folder for the per-video work (default :func:`avsa_data.remote.default_staging`). ``layout`` says how
    ``src`` is organised (:mod:`avsa_data.layouts`; default: detected). Raises
    :class:`ShardJobError` (one line) when the job cannot run, :class:`JobStopped` when the environment
    stopped it.
    """
    found, job = _prepare(src, job, list_file, engine, layout)
    src_text = _src_text(src)
    try:
        if remote.is_url(out):
            try:
                return _run_url_job(found, src_text, str(out), job, workers=workers, overwrite=overwrite,
                                    keep_work=keep_work, progress=progress, on_video_done=on_video_done,
                                    engine=engine, ray_address=ray_address, staging=staging)
            except remote.StorageError as e:
                raise ShardJobError(str(e)) from e
        out = Path(out)
        with _stop_on_environment_errors(str(out)), exclusive_lock(out):
            return _run_local_job(found, src_text, out, job, workers=workers, overwrite=overwrite,
                                  keep_work=keep_work, progress=progress, on_video_done=on_video_done,
                                  engine=engine, ray_address=ray_address)
    except FolderBusy as e:
        raise ShardJobError(str(e)) from None


def _run_local_job(found: Discovery, src: str, out: Path, job: JobConfig, *, workers, overwrite, keep_work,
                   progress, on_video_done, engine, ray_address) -> JobReport:
    _check_config(out, job, src, overwrite)
    m = _read_json(out / "manifest.json", missing=None, damaged=None if overwrite else ShardJobError, hint=_REBUILD)
    m = m if _complete(m, job) else None
    tasks = identify_inputs(found.tasks, m["videos"] if m else None)
    try:
        update = plan_update(tasks, m, out)
    except InputsChanged:
        if not overwrite:
            raise
        clear_output(out)
        m, update = None, plan_update(tasks, None, out)
    if m is not None and update.nothing_to_do(m, found.failed):
        _finish_cleanup(out, keep_work)
        return _up_to_date(out, m, (out / "failures.jsonl").read_text(), found.skipped)
    atomic_write_bytes(out / "config.json", _config_bytes(job, src))
    _start_work(out)
    _drop_stale_fragments(out / WORK / "frag", update.todo)
    results = _run_phase1(update.todo, job, out, workers, progress, on_video_done, engine, ray_address)
    failures, shard_records = _assemble(out, job, src, found, update, results, progress)
    _finish_cleanup(out, keep_work)
    return _report(out, found, update, results, failures, shard_records)


def _run_url_job(found: Discovery, src: str, url: str, job: JobConfig, *, workers, overwrite, keep_work, progress,
                 on_video_done, engine, ray_address, staging) -> JobReport:
    """:func:`run_shard_job` for an fsspec URL: the local job runs in ``staging``, and every result is uploaded
    as soon as it is final (shards, then failures.jsonl, then manifest.json), never partially. The staging
    folder is locked (two jobs with different staging folders on one URL are not detected)."""
    store = remote.Store(url)
    stage = Path(staging) if staging is not None else remote.default_staging(store.url)
    with _stop_on_environment_errors(str(stage)), exclusive_lock(stage) as lock:
        listing = store.listing()
        old = _store_json(store, "config.json") if "config.json" in listing else None
        problem = _mismatch(store.url, old, job, src) if old is not None else None
        if problem is not None or (old is None and overwrite):
            if problem is not None and not overwrite:
                raise problem
            store.remove(n for n in listing if fmt.SHARD_RE.match(n) or n in OUTPUTS)
            listing = {n: size for n, size in listing.items() if remote.TMP_RE.match(n)}
        m = _store_json(store, "manifest.json") if "manifest.json" in listing else None
        m = m if _complete(m, job) else None
        rebuilt = False
        if m is not None and not all(listing.get(s["name"]) == s["bytes"] for s in m["shards"]):
            store.remove(["manifest.json"])  # shards were lost since: publish again, the manifest last
            m, rebuilt = None, True
        tasks = identify_inputs(found.tasks, m["videos"] if m else None)
        try:
            update = plan_update(tasks, m, store.url)
        except InputsChanged:
            if not overwrite:
                raise
            store.remove(["manifest.json"])
            m, rebuilt, update = None, True, plan_update(tasks, None, store.url)
        if m is not None and update.nothing_to_do(m, found.failed):
            _finish_url_cleanup(stage, lock, keep_work)
            return _up_to_date(store.url, m, (store.read_bytes("failures.jsonl") or b"").decode(), found.skipped)
        _check_config(stage, job, src, overwrite=True)  # the staging folder is a cache: other work there is dropped
        atomic_write_bytes(stage / "config.json", _config_bytes(job, src))
        store.put(stage / "config.json", "config.json")
        store.remove(n for n in listing if remote.TMP_RE.match(n))  # uploads of a killed run
        _start_work(stage)
        _drop_stale_fragments(stage / WORK / "frag", update.todo)
        results = _run_phase1(update.todo, job, stage, workers, progress, on_video_done, engine, ray_address)

        def publish(rec: dict, fresh: bool) -> None:
            local = stage / rec["name"]
            if fresh or listing.get(rec["name"]) != rec["bytes"]:  # same plan ⇒ same bytes, by construction
                store.put(local, rec["name"])
            local.unlink()

        failures, shard_records = _assemble(stage, job, src, found, update, results, progress, publish)
        store.put(stage / "failures.jsonl", "failures.jsonl")
        store.put(stage / "manifest.json", "manifest.json")
        if rebuilt:  # shards of an earlier layout that the new manifest does not list
            names = {rec["name"] for rec in shard_records}
            store.remove(n for n in store.listing() if fmt.SHARD_RE.match(n) and n not in names)
        if not keep_work:
            clear_output(stage)
        _finish_url_cleanup(stage, lock, keep_work)
        return _report(store.url, found, update, results, failures, shard_records)


def _store_json(store: remote.Store, name: str):
    try:
        return store.read_json(name)
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardJobError(f"{store.url_of(name)} is damaged ({type(e).__name__}){_REBUILD}") from None


def _finish_url_cleanup(stage: Path, lock: Path, keep_work: bool) -> None:
    """Remove the staging folder of a published job (its lock file last, while still holding the lock)."""
    if keep_work:
        return
    clear_output(stage)
    if not any(p != lock for p in stage.iterdir()):
        lock.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            stage.rmdir()


def _discover(src: Path, list_file, layout: layouts.LayoutSpec | None) -> Discovery:
    """The videos of ``src`` in its input layout: flat (:func:`discover`), or starss23 / folders
    (:func:`avsa_data.layouts.discover`, splits from folder names unless a list says otherwise)."""
    try:
        spec = layouts.resolve(src, layout or layouts.LayoutSpec())
        if spec.name == "flat":
            return discover(src, list_file)
        if not src.is_dir():
            raise ShardJobError(f"--src {src} is not a directory")
        recs = layouts.discover(src, spec)
        if list_file is None and (src / "videos.csv").is_file():
            list_file = src / "videos.csv"
        if list_file is not None:
            recs = layouts.apply_list(recs, _read_list(Path(list_file)), src)
    except layouts.LayoutError as e:
        raise ShardJobError(str(e)) from e
    return Discovery([VideoTask(r.video_id, r.split, r.video, r.audio, r.events) for r in recs])


def _prepare(src, job: JobConfig, list_file, engine: str, layout=None) -> tuple[Discovery, JobConfig]:
    """The videos of the job, after the checks that must fail before anything is written, and the job with its
    event class map ``auto`` replaced by the input's own ``classes.json`` if it has one
    (:func:`avsa_data.layouts.own_event_classes`; otherwise ``auto`` stays and means ``starss23``)."""
    found = _discover(Path(src).resolve(), list_file, layout)
    own = layouts.own_event_classes(Path(src).resolve(), layout or layouts.LayoutSpec())
    if job.events.classes == AUTO_CLASSES and own is not None:
        job = replace(job, events=replace(job.events, classes=own))
    for s in found.skipped:
        _console(f"avsa-data shard: skipped {s['path']}: {s['reason']}")
    if not found.tasks and not found.failed:
        raise ShardJobError(f"no videos ({', '.join(VIDEO_EXTS)}) found under {src}")
    if engine not in ENGINES:
        raise ShardJobError(f"--engine must be one of {ENGINES}, got {engine!r}")
    _make_backend_check(job)  # a bad --labels setting must fail before anything is written
    return found, job


def _make_backend_check(job: JobConfig) -> None:
    try:
        _backend(job)
    except (LabelError, ValueError, OSError) as e:
        raise ShardJobError(f"--labels {job.labels}: {e}") from e
    try:
        EventClasses.load(job.events.classes)
    except EventLabelError as e:
        raise ShardJobError(str(e)) from e


def _progress(it, enabled: bool, desc: str, unit: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


ENGINES = ("local", "ray")


def _run_phase1(tasks, job, out, workers, progress, on_video_done, engine="local", ray_address=None) -> list[dict]:
    """Phase 1 on a local process pool, or on a Ray cluster (one task per video). Both call
    :func:`process_video` with the same arguments, so fragments, and hence shards, are byte-identical.
    Pool workers die with this process (:func:`avsa_data.jobcontrol.die_with_parent`); the first
    :class:`JobStopped` cancels the videos not started yet and is raised."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="videos", unit="video", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    results: list[dict] = []
    samples = 0
    t0 = time.time()

    def done(r: dict) -> None:
        nonlocal samples
        results.append(r)
        samples += r.get("samples", 0)
        if r["status"] == "failed":
            _console(f"avsa-data shard: FAILED {r['path']} [{r['stage']}]: {r['reason']}")
        bar.update(1)
        bar.set_postfix(samples=samples, sps=f"{samples / max(time.time() - t0, 1e-9):.1f}/s")
        if on_video_done:
            on_video_done(r)

    try:
        if engine == "ray":
            for r in _ray_results(tasks, job, out, workers, ray_address):
                done(r)
        elif workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                done(process_video(t, job, out))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as ex:
                futs = [ex.submit(process_video, t, job, out) for t in tasks]
                try:
                    for f in as_completed(futs):
                        done(f.result())
                except BaseException:
                    ex.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return sorted(results, key=lambda r: r["video_id"])


def _ray_results(tasks, job, out, workers, ray_address):
    """Run :func:`process_video` as Ray tasks; yield summaries as tasks complete (drives the progress bar).

    ``ray_address`` connects to an existing cluster (``auto`` or ``ray://host:port``); by default a local
    instance with ``workers`` CPUs is started and shut down afterwards. ``out`` must be a path every node sees
    (a shared filesystem); writes stay atomic (temp + rename) on it.
    """
    try:
        import ray
    except ImportError as e:
        raise ShardJobError("--engine ray needs Ray: pip install 'avsa[ray]' (or pip install ray)") from e
    started = not ray.is_initialized()
    if started:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        task_fn = ray.remote(num_cpus=1, max_retries=2)(process_video)
        pending = [task_fn.remote(t, job, out) for t in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, JobStopped):
                    raise JobStopped(str(e.cause.args[0])) from None
                raise
    finally:
        if started:
            ray.shutdown()


def _write_manifest(out, job, src: str, results, shard_records, failures, skipped) -> None:
    videos = {}
    for r in results:
        v = {k: r[k] for k in ("path", "split", "status") if k in r}
        v.update({k: r[k] for k in ("samples", "bytes", "duration", "stage", "reason", "input") if k in r})
        videos.setdefault(r["video_id"], v)
    manifest = {
        "format_version": fmt.FORMAT_VERSION,
        "avsa_version": __version__,
        "config_hash": job.config_hash,
        "config": job.hashed(),
        "src": src,
        "complete": True,
        "shards": shard_records,
        "videos": videos,
        "skipped_inputs": skipped,
        "failures_file": "failures.jsonl",
        "stats": {
            "videos": len(results),
            "videos_ok": sum(r["status"] == "ok" for r in results),
            "videos_failed": len(failures),
            "samples": sum(s["num_samples"] for s in shard_records),
            "bytes": sum(s["bytes"] for s in shard_records),
            "splits": {sp: sum(s["num_samples"] for s in shard_records if s["split"] == sp)
                       for sp in sorted({s["split"] for s in shard_records})},
        },
    }
    lines = "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures)
    atomic_write_bytes(out / "failures.jsonl", lines.encode())
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, sort_keys=True, indent=1).encode())
