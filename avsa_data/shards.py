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
bytes are those of a local run: both kinds of output go through one job path (lock, check the configuration,
plan the update, phase 1, assembly, report) over a :class:`LocalOutput` or a :class:`UrlOutput`, which differ
only in where the files end up.

Phases hand each other typed results: :class:`VideoResult` (a video's fragment summary, with its
:class:`FragmentSample` index) and :class:`ShardPlan`; the label backend belongs to the job's
:class:`VideoSharder`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from . import __version__, layouts, media, remote
from . import format as fmt
from .events import AUTO_CLASSES, EventClasses, EventLabelError, EventOptions, load_video_events
from .fsutil import atomic_write_bytes, read_json, sha256_file, tmp_path
from .input_identity import same_content, video_identity
from .jobcontrol import FolderBusy, die_with_parent, exclusive_lock, usable_cpus
from .labels import BACKENDS, LabelBackend, LabelError, make_backend
from .options import OptionError, option
from .samples import EncodedSample, SampleConfig, VideoInfo, iter_samples, needed_frames, plan_samples

VIDEO_EXTS = layouts.VIDEO_EXTS
WORK = ".work"
#: The files a job writes next to its shards.
OUTPUTS = ("manifest.json", "failures.jsonl", "config.json")
#: Where phase 1 runs (``--engine``): a local process pool, or a Ray cluster.
ENGINES = ("local", "ray")


class ShardJobError(Exception):
    """The job as a whole cannot run (bad arguments, config mismatch); one-line message."""


class ShardOptionError(ShardJobError, OptionError):
    """An option of the job is refused (another configuration or --src than the output's, a --src or --list that
    does not exist, a bad --labels setting); one line naming it (exit status 2)."""


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
    #: The backend's options as sorted (name, string) pairs (avsa_data/cli/shard.py: --label-dir, --model, --onnx-*).
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
        raise ShardOptionError(f"--src {src} is not a directory")
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
            fmt.sanitize_id(split)
        except ValueError:
            raise ShardJobError(f"--list {path} line {n}: unusable split name {split!r}") from None
        out[r[col].strip()] = split
    return out


# ------------------------------------------------------------------------------------------ per video


@dataclass(frozen=True)
class FragmentSample:
    """One sample in a fragment's index: its key, payload bytes and the ``(member name, bytes)`` it holds."""

    key: str
    bytes: int
    members: tuple[tuple[str, int], ...]

    def as_json(self) -> dict:
        return {"key": self.key, "bytes": self.bytes, "members": [list(m) for m in self.members]}

    @classmethod
    def from_json(cls, d: dict) -> FragmentSample:
        return cls(d["key"], d["bytes"], tuple((n, size) for n, size in d["members"]))


@dataclass(frozen=True)
class VideoResult:
    """Phase 1's outcome for one video, saved as its fragment summary (``.work/frag/{video_id}.json``, or
    ``{video_id}.failed.json`` for a bad input). ``input`` is the input identity the fragment was made from."""

    video_id: str
    split: str
    path: str
    status: str  # "ok" or "failed"
    input: dict | None
    seconds: float  # wall time of the processing
    samples: int = 0
    bytes: int = 0  # payload bytes of the samples
    duration: float | None = None  # seconds of the video that were used
    index: tuple[FragmentSample, ...] = ()
    stage: str | None = None  # failed: where (probe, audio, events, labels, duration, decode)
    reason: str | None = None  # failed: one line naming the file

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict:
        """The fragment summary (JSON): the identity fields, then the fragment's or the failure's."""
        d = {"video_id": self.video_id, "split": self.split, "path": self.path, "status": self.status,
             "input": self.input, "seconds": self.seconds}
        if self.ok:
            return {**d, "samples": self.samples, "bytes": self.bytes, "duration": self.duration,
                    "index": [s.as_json() for s in self.index]}
        return {**d, "stage": self.stage, "reason": self.reason}

    @classmethod
    def from_summary(cls, d: dict) -> VideoResult:
        common = dict(video_id=d["video_id"], split=d["split"], path=d["path"], status=d["status"],
                      input=d.get("input"), seconds=d.get("seconds", 0.0))
        if d["status"] == "ok":
            return cls(**common, samples=d["samples"], bytes=d["bytes"], duration=d["duration"],
                       index=tuple(FragmentSample.from_json(s) for s in d["index"]))
        return cls(**common, stage=d["stage"], reason=d["reason"])

    def record(self) -> dict:
        """Its record in ``manifest.json`` ``videos`` (plus ``video_id``)."""
        outcome = ({"samples": self.samples, "bytes": self.bytes, "duration": self.duration} if self.ok
                   else {"stage": self.stage, "reason": self.reason})
        return {"video_id": self.video_id, "path": self.path, "split": self.split, "status": self.status,
                **outcome, "input": self.input}


def _fail(stage: str, reason: str) -> dict:
    return {"status": "failed", "stage": stage, "reason": reason.splitlines()[0] if reason else stage}


def make_labels(job: JobConfig) -> LabelBackend:
    """The label backend of ``job`` (``--labels`` and its options)."""
    return make_backend(job.labels, **dict(job.label_options))


class VideoSharder:
    """Phase 1 of one job: a video → its fragment in ``frag_dir``. It holds the job's label backend, made on
    first use (or given); a copy sent to a worker process (pool, Ray) makes its own there, never shares one."""

    def __init__(self, job: JobConfig, frag_dir: Path, labels: LabelBackend | None = None,
                 decoder_threads: int | None = None):
        self.job, self.frag_dir, self._labels = job, Path(frag_dir), labels
        self.decoder_threads = decoder_threads  # ffmpeg's decoder threads per video (None: ffmpeg's choice)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_labels": None}  # a backend (an ONNX session) does not travel between processes

    def labels(self) -> LabelBackend:
        if self._labels is None:
            self._labels = make_labels(self.job)
        return self._labels

    def __call__(self, task: VideoTask) -> VideoResult:
        """Phase 1 for one video; never raises for bad input. Environment errors raise :class:`JobStopped`
        (and nothing is recorded, so that a rerun retries)."""
        try:
            return self._process_once(task)
        except BaseException as e:
            stop = environment_stop(e, task.path)
            if stop is None:
                raise
            raise stop from None

    def _process_once(self, task: VideoTask) -> VideoResult:
        done, failed = _summary_paths(self.frag_dir, task.video_id)
        for summary in (done, failed):
            if summary.exists():
                return VideoResult.from_summary(read_json(summary, "a fragment summary written by avsa-data shard"))
        t0 = time.time()
        outcome = _process_video(task, self.job, self.frag_dir, self.labels, self.decoder_threads)
        result = VideoResult(video_id=task.video_id, split=task.split, path=task.path, input=task.identity,
                             seconds=round(time.time() - t0, 3), **outcome)
        atomic_write_bytes(done if result.ok else failed, json.dumps(result.summary(), sort_keys=True).encode())
        return result


def process_video(task: VideoTask, job: JobConfig, out: Path) -> VideoResult:
    """Phase 1 for one video of the job writing to ``out`` (see :class:`VideoSharder`)."""
    return VideoSharder(job, out / WORK / "frag")(task)


def decoder_threads(workers: int, cores: int | None = None) -> int:
    """ffmpeg decoder threads per video for a job of ``workers`` processes on ``cores`` CPUs (default: the CPUs
    this process may run on). Each worker's sample builder keeps one core busy; the decoders share the rest, at
    least one thread each. One decoder thread costs ~15 % less CPU than ffmpeg's frame threading (issue 17:
    1920×960 H.264, 433 vs 508 CPU-ms per 10 s video) and is fast enough beside one sample builder at 1920×960
    (its decode of a second of video takes about half the CPU of building that second's sample); a many-core
    machine still gives the decoders the idle cores. The decoded pixels are the same whatever the count."""
    if cores is None:
        cores = usable_cpus()
    workers = max(1, int(workers))
    return max(1, (cores - workers) // workers)


def _summary_paths(frag_dir: Path, video_id: str) -> tuple[Path, Path]:
    """(ok summary, failure summary) of one video in the fragment folder."""
    return frag_dir / f"{video_id}.json", frag_dir / f"{video_id}.failed.json"


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


def _process_video(task: VideoTask, job: JobConfig, frag_dir: Path, labels: Callable[[], LabelBackend],
                   threads: int | None = None) -> dict:
    """The outcome fields of :class:`VideoResult` for one video (``labels()`` gives the job's backend; ``threads``:
    ffmpeg's decoder threads, see :func:`decoder_threads`)."""
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
        audio_src = Path(task.audio) if task.audio else media.find_audio_source(task.path, pr)
        foa = media.read_foa(audio_src, cfg.sr, cfg.ambi_format)
        audio_dur = foa.shape[1] / cfg.sr
        media.check_durations(pr.duration, audio_dur, job.max_av_mismatch)
        duration = min(audio_dur, pr.duration)
        stage = "events"
        events = load_video_events(task.events, job.events, audio_dur)
        stage = "labels"
        backend = labels()
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
        # crops come from the YUV planes (crops_yuv)
        frames = media.iter_video_frames_at(task.path, cfg.fps, needed_frames(plans, cfg), size=cfg.equirect_size,
                                            threads=threads, pix_fmt="yuv420p", info=pr)
        tmp = tmp_path(frag_dir / f"{task.video_id}.tar")
        index = []
        try:
            with open(tmp, "wb") as f:
                for sample in iter_samples(frames, foa, plans, info, cfg, labels, label_meta, events):
                    add_sample(f, sample)
                    index.append(FragmentSample(sample.key, sample.nbytes,
                                                tuple((n, len(b)) for n, b in sample.members)))
                f.write(_end_of_archive(f.tell()))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not index:
            return _fail("decode", f"{task.path}: the video decoded to too few frames for any sample")
        os.replace(tmp, frag_dir / f"{task.video_id}.tar")
        return {"status": "ok", "samples": len(index), "bytes": sum(s.bytes for s in index),
                "duration": duration, "index": tuple(index)}
    except (media.MediaError, LabelError, EventLabelError) as e:  # bad input; anything else is not
        return _fail("labels" if isinstance(e, LabelError) else stage, f"{task.path}: {e}")


# ------------------------------------------------------------------------------------------- tar I/O


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def add_sample(f: BinaryIO, sample: EncodedSample) -> None:
    """Append one sample's members as ``{key}.{suffix}`` tar members with deterministic headers to the binary file
    ``f``, a tar archive written from its start. The blocks are what ``tarfile.TarFile.addfile`` writes (USTAR
    header, data, zero padding to 512 bytes), without its copying in 16 kB pieces; end the archive with
    :func:`_end_of_archive`."""
    for suffix, data in sample.members:
        header = _tarinfo(f"{sample.key}.{suffix}", len(data)).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING,
                                                                     "surrogateescape")  # TarFile's defaults
        f.write(header)
        f.write(data)
        f.write(bytes(-len(data) % tarfile.BLOCKSIZE))


def fragment_runs(path: Path, wanted: set[str]) -> list[tuple[int, int]]:
    """Byte ranges ``[start, stop)`` of the tar blocks (header, data, zero padding) of the members of the samples
    ``wanted`` in the fragment at ``path``, in order, runs of neighbouring members joined.

    A shard holds these blocks byte for byte: its members carry the same deterministic headers
    (:func:`add_sample`), so assembly copies them (:func:`copy_runs`) instead of parsing and re-encoding every
    member (issue 17). tarfile still reads (and checksums) every header."""
    size = path.stat().st_size
    runs: list[tuple[int, int]] = []
    with tarfile.open(path, mode="r") as tar:
        for ti in tar:
            if ti.name.split(".", 1)[0] not in wanted:
                continue
            stop = ti.offset_data + -(-ti.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if stop > size:
                raise tarfile.ReadError(f"{path}: member {ti.name} runs past the end of the fragment")
            if runs and runs[-1][1] == ti.offset:
                runs[-1] = (runs[-1][0], stop)
            else:
                runs.append((ti.offset, stop))
    return runs


#: copy_file_range errors that mean "not here" (another file system, an old kernel): copy through memory instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM})


def copy_runs(src: BinaryIO, dst: BinaryIO, runs: list[tuple[int, int]]) -> int:
    """Append the byte ranges ``runs`` of the file ``src`` to the unbuffered file ``dst``; returns the bytes copied.

    The kernel copies them (``os.copy_file_range``: no trip through Python, and a reflink where the file system
    can) unless it cannot here; then they go through memory."""
    total = 0
    for start, stop in runs:
        off = start
        while off < stop:
            try:
                k = os.copy_file_range(src.fileno(), dst.fileno(), stop - off, off)
            except (AttributeError, OSError) as e:  # AttributeError: no copy_file_range on this OS
                if isinstance(e, OSError) and e.errno not in _NO_KERNEL_COPY:
                    raise
                src.seek(off)
                k = dst.write(src.read(stop - off))
            if not k:
                raise tarfile.ReadError(f"{src.name}: ends before byte {stop}")
            off += k
        total += stop - start
    return total


def _end_of_archive(size: int) -> bytes:
    """What ``tarfile`` writes on closing an archive of ``size`` bytes: two zero blocks, then zeros up to a
    multiple of its record size."""
    end = size + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + (-end) % tarfile.RECORDSIZE)


# ------------------------------------------------------------------------------------------ assembly


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its name and split, its sample keys (in order), the videos they come from (in order)
    and their payload bytes."""

    name: str
    split: str
    samples: tuple[str, ...]
    videos: tuple[str, ...]
    payload: int


def plan_shards(results: list[VideoResult], job: JobConfig, first_index: dict[str, int] | None = None
                ) -> list[ShardPlan]:
    """Assign samples to shards: per split, in sorted video order, cut by sample count or bytes.

    ``first_index`` gives, per split, the number of the first new shard (an incremental update continues after
    the shards already finished; default 0)."""
    shards: list[ShardPlan] = []
    for split in sorted({r.split for r in results if r.ok}):
        first = (first_index or {}).get(split, 0)
        videos = sorted((r for r in results if r.ok and r.split == split), key=lambda r: r.video_id)
        for n, (samples, owners, payload) in enumerate(_cut_samples(videos, job)):
            shards.append(ShardPlan(fmt.shard_name(split, first + n), split, samples, owners, payload))
    return shards


def _cut_samples(videos: list[VideoResult], job: JobConfig) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], int]]:
    """The samples of ``videos`` in order, cut into consecutive groups of ``job.shard_size`` samples (or of at most
    ``job.shard_mb`` megabytes, and at least one sample): (sample keys, their videos in order, payload bytes)."""
    samples: list[str] = []
    owners: list[str] = []
    payload = 0
    for r in videos:
        for s in r.index:
            if samples and ((job.shard_size and len(samples) >= job.shard_size)
                            or (job.shard_mb and payload + s.bytes > job.shard_mb * 1e6)):
                yield tuple(samples), tuple(owners), payload
                samples, owners, payload = [], [], 0
            samples.append(s.key)
            payload += s.bytes
            if r.video_id not in owners:
                owners.append(r.video_id)
    if samples:
        yield tuple(samples), tuple(owners), payload


def write_shard(plan: ShardPlan, out: Path) -> dict:
    """Write one planned shard from the fragments (atomically); skip it if it already exists. Returns its
    record in ``manifest.json`` ``shards``."""
    final = out / plan.name
    if not final.exists():
        wanted = set(plan.samples)
        tmp = tmp_path(final)
        try:
            with open(tmp, "wb", buffering=0) as f:
                for vid in plan.videos:
                    frag = out / WORK / "frag" / f"{vid}.tar"
                    with open(frag, "rb") as src:
                        copy_runs(src, f, fragment_runs(frag, wanted))
                end = _end_of_archive(f.tell())
                if f.write(end) != len(end):
                    raise OSError(errno.EIO, f"short write to {tmp}")
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a disk-full error must not leave the partial shard taking space
            raise
        os.replace(tmp, final)
    return {"name": plan.name, "split": plan.split, "num_samples": len(plan.samples),
            "samples": list(plan.samples), "source_videos": list(plan.videos), "bytes": final.stat().st_size,
            "payload_bytes": plan.payload, "sha256": sha256_file(final)}


PLAN_FILE = "plan.json"


def _settle_shard_plan(out: Path, plans: list[ShardPlan], results: list[VideoResult], kept: set[str]) -> set[str]:
    """Make the shard files in ``out`` agree with ``plans`` before they are written; return the names whose
    content is new since the last recorded plan (a URL job must upload them even if an object of the same size
    is there).

    A shard's content follows from its sample keys and its videos' inputs; both are recorded in
    ``.work/plan.json``. A shard file under a final name whose recorded plan differs (an input changed while
    the job was interrupted), or that no plan names, is deleted, except the finished shards ``kept``."""
    inputs = {r.video_id: (r.input or {}).get("head_tail_sha256") for r in results}
    signature = {p.name: {"samples": list(p.samples), "inputs": [[v, inputs.get(v)] for v in p.videos]}
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
    """The JSON document at ``path`` (a file this module writes); when it is missing or damaged, return the
    given value, or raise a one-line :class:`ShardJobError` naming the file when that value is ShardJobError."""
    try:
        return read_json(path, f"the {Path(path).name} written by avsa-data shard")
    except FileNotFoundError:
        if missing is ShardJobError:
            raise ShardJobError(f"{path} is missing{hint}") from None
        return missing
    except ValueError as e:  # fsutil's one line: where and how it is broken (truncated, malformed, not UTF-8)
        if damaged is ShardJobError:
            raise ShardJobError(f"{e}{hint}") from None
        return damaged


_REBUILD = "; pass --overwrite to rebuild the output"


def _src_text(src) -> str:
    return str(Path(src).resolve())


def _mismatch(where, old: dict, job: JobConfig, src: str) -> ShardOptionError | None:
    """Why the output described by ``old`` (a config.json) cannot be continued by this job, or None."""
    if not isinstance(old, dict) or old.get("config_hash") != job.config_hash:
        return _config_mismatch(where, old if isinstance(old, dict) else {}, job)
    if old.get("src") != src:
        return ShardOptionError(f"{where} was made from --src {old.get('src')}, not {src}: pass --overwrite to rebuild "
                             f"it from {src}, or choose another --out")
    return None


def _check_config(out: Path, job: JobConfig, src: str, overwrite: bool) -> None:
    """Continue an output of this configuration; clear one of another configuration when ``overwrite`` is given
    or when it holds no finished shard yet (a job that stopped before writing one never blocks the next). Another
    ``--src`` always needs ``overwrite``."""
    cfg_path = out / "config.json"
    if cfg_path.exists():
        unfinished = not any(fmt.SHARD_RE.match(p.name) for p in out.glob("*.tar"))
        old = _read_json(cfg_path, damaged={} if overwrite or unfinished else ShardJobError, hint=_REBUILD)
        problem = _mismatch(out, old, job, src)
        if problem is None:
            return
        other_src = isinstance(old, dict) and old.get("config_hash") == job.config_hash  # the same configuration
        if not (overwrite or (unfinished and not other_src)):  # another --src never mixes into its fragments
            raise problem
        clear_output(out)
    elif overwrite:
        clear_output(out)


def _config_mismatch(out, old: dict, job: JobConfig) -> ShardOptionError:
    return ShardOptionError(
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


# ------------------------------------------------------------------------------------------ outputs


class LocalOutput:
    """A local output folder: the job works in it, and each file it writes there is final."""

    def __init__(self, out: Path):
        self.folder = Path(out)  # where the job works (fragments, then shards)
        self.where: Path | str = self.folder  # what messages and the report name

    @contextlib.contextmanager
    def lock(self) -> Iterator[Path]:
        with exclusive_lock(self.folder) as lock:
            yield lock

    def open(self, job: JobConfig, src: str, overwrite: bool) -> dict | None:
        """Check the folder's configuration (cleared on a mismatch with ``overwrite``); the manifest of a
        finished job with ``job``'s configuration, or None."""
        _check_config(self.folder, job, src, overwrite)
        m = _read_json(self.folder / "manifest.json", missing=None, damaged=None if overwrite else ShardJobError,
                       hint=_REBUILD)
        return m if _complete(m, job) else None

    def discard(self) -> None:
        """Forget the finished output (its inputs changed, and ``--overwrite`` rebuilds it)."""
        clear_output(self.folder)

    def failures_text(self) -> str:
        return (self.folder / "failures.jsonl").read_text()

    def start(self, job: JobConfig, src: str) -> None:
        """Record the configuration and prepare the work folder."""
        atomic_write_bytes(self.folder / "config.json", _config_bytes(job, src))
        _start_work(self.folder)

    def publish_shard(self, rec: dict, fresh: bool) -> None:
        """A shard was written (here: already in place)."""

    def publish_outputs(self, shard_records: list[dict]) -> None:
        """failures.jsonl and manifest.json were written (here: already in place)."""

    def finish(self, keep_work: bool) -> None:
        _finish_cleanup(self.folder, keep_work)


class UrlOutput:
    """An fsspec URL (:class:`avsa_data.remote.Store`): the job works in a local *staging* folder (locked; two
    jobs with different staging folders on one URL are not detected), and every result is uploaded as soon as
    it is final (shards, then failures.jsonl, then manifest.json), never partially."""

    def __init__(self, url: str, staging: Path | None = None):
        self.store = remote.Store(url)
        self.folder = Path(staging) if staging is not None else remote.default_staging(self.store.url)
        self.where: Path | str = self.store.url
        self.listing: dict[str, int] = {}
        self.rebuilt = False  # the manifest was withdrawn: shards it does not list go once the new one is up
        self._lock: Path | None = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[Path]:
        with exclusive_lock(self.folder) as lock:
            self._lock = lock
            yield lock

    def _json(self, name: str, damaged):
        """The JSON object ``name``; a damaged one is ``damaged``, or a one-line error when that is ShardJobError."""
        try:
            return self.store.read_json(name)
        except ValueError as e:
            if damaged is ShardJobError:
                raise ShardJobError(f"{e}{_REBUILD}") from None
            return damaged

    def open(self, job: JobConfig, src: str, overwrite: bool) -> dict | None:
        """As :meth:`LocalOutput.open`; a manifest whose shards are not all there (lost objects) is withdrawn,
        so that they are published again, the manifest last."""
        store = self.store
        listing = store.listing()
        old = self._json("config.json", {} if overwrite else ShardJobError) if "config.json" in listing else None
        problem = _mismatch(store.url, old, job, src) if old is not None else None
        if problem is not None or (old is None and overwrite):
            if problem is not None and not overwrite:
                raise problem
            store.remove(n for n in listing if fmt.SHARD_RE.match(n) or n in OUTPUTS)
            listing = {n: size for n, size in listing.items() if remote.TMP_RE.match(n)}
        self.listing = listing
        m = self._json("manifest.json", None if overwrite else ShardJobError) if "manifest.json" in listing else None
        m = m if _complete(m, job) else None
        if m is not None and not all(listing.get(s["name"]) == s["bytes"] for s in m["shards"]):
            self.discard()
            m = None
        return m

    def discard(self) -> None:
        self.store.remove(["manifest.json"])
        self.rebuilt = True

    def failures_text(self) -> str:
        return (self.store.read_bytes("failures.jsonl") or b"").decode()

    def start(self, job: JobConfig, src: str) -> None:
        _check_config(self.folder, job, src, overwrite=True)  # the staging folder is a cache: other work is dropped
        atomic_write_bytes(self.folder / "config.json", _config_bytes(job, src))
        self.store.put(self.folder / "config.json", "config.json")
        self.store.remove(n for n in self.listing if remote.TMP_RE.match(n))  # uploads of a killed run
        _start_work(self.folder)

    def publish_shard(self, rec: dict, fresh: bool) -> None:
        """Upload a shard written in the staging folder (unless the same object is there), then drop it."""
        local = self.folder / rec["name"]
        if fresh or self.listing.get(rec["name"]) != rec["bytes"]:  # same plan ⇒ same bytes, by construction
            self.store.put(local, rec["name"])
        local.unlink()

    def publish_outputs(self, shard_records: list[dict]) -> None:
        self.store.put(self.folder / "failures.jsonl", "failures.jsonl")
        self.store.put(self.folder / "manifest.json", "manifest.json")
        if self.rebuilt:  # shards of an earlier layout that the new manifest does not list
            names = {rec["name"] for rec in shard_records}
            self.store.remove(n for n in self.store.listing() if fmt.SHARD_RE.match(n) and n not in names)

    def finish(self, keep_work: bool) -> None:
        """Remove the staging folder of a published job (its lock file last, while still holding the lock)."""
        if keep_work:
            return
        clear_output(self.folder)
        if not any(p != self._lock for p in self.folder.iterdir()):
            self._lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()


JobOutput = LocalOutput | UrlOutput


# ------------------------------------------------------------------------------------------- the job


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
    on_video_done: Callable[[VideoResult], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    staging: Path | None = None,
    layout: layouts.LayoutSpec | None = None,
) -> JobReport:
    """Run (or resume, or update) a shard job. See the module docstring for the phases and guarantees.

    ``out`` is a local folder, or an fsspec URL string (``s3://bucket/prefix``) with ``staging`` the local
    folder for the per-video work (default :func:`avsa_data.remote.default_staging`). ``layout`` says how
    ``src`` is organised (:mod:`avsa_data.layouts`; default: detected). ``on_video_done`` is called with each
    video's :class:`VideoResult` as phase 1 finishes it. Raises :class:`ShardJobError` (one line) when the job
    cannot run, :class:`JobStopped` when the environment stopped it.
    """
    found, job, labels = _prepare(src, job, list_file, engine, layout)
    try:
        output = UrlOutput(str(out), staging) if remote.is_url(out) else LocalOutput(Path(out))
        with _stop_on_environment_errors(str(output.folder)), output.lock():
            return _run_job(found, _src_text(src), output, job, labels, workers=workers, overwrite=overwrite,
                            keep_work=keep_work, progress=progress, on_video_done=on_video_done, engine=engine,
                            ray_address=ray_address)
    except FolderBusy as e:
        raise JobStopped(str(e)) from None
    except remote.StorageError as e:
        raise ShardJobError(str(e)) from e


def _run_job(found: Discovery, src: str, output: JobOutput, job: JobConfig, labels: LabelBackend, *, workers: int,
             overwrite: bool, keep_work: bool, progress: bool, on_video_done, engine: str,
             ray_address: str | None) -> JobReport:
    """The job in a locked ``output``: check its configuration, plan the update, phase 1, assembly, report."""
    m = output.open(job, src, overwrite)
    tasks = identify_inputs(found.tasks, m["videos"] if m else None)
    try:
        update = plan_update(tasks, m, output.where)
    except InputsChanged:
        if not overwrite:
            raise
        output.discard()
        m, update = None, plan_update(tasks, None, output.where)
    if m is not None and update.nothing_to_do(m, found.failed):
        output.finish(keep_work)
        return _up_to_date(output.where, m, output.failures_text(), found.skipped)
    output.start(job, src)
    frag_dir = output.folder / WORK / "frag"
    _drop_stale_fragments(frag_dir, update.todo)
    sharder = VideoSharder(job, frag_dir, labels, decoder_threads(workers) if engine == "local" else None)
    results = _run_phase1(update.todo, sharder, workers, progress, on_video_done, engine, ray_address)
    failures, shard_records = _assemble(output.folder, job, src, found, update, results, progress,
                                        output.publish_shard)
    output.publish_outputs(shard_records)
    output.finish(keep_work)
    return _report(output.where, found, update, results, failures, shard_records)


def _discover(src: Path, list_file, spec: layouts.LayoutSpec) -> Discovery:
    """The videos of ``src`` in its input layout ``spec`` (resolved): flat (:func:`discover`), or starss23 /
    folders (:func:`avsa_data.layouts.discover`, splits from folder names unless a list says otherwise)."""
    try:
        if spec.name == "flat":
            return discover(src, list_file)
        if not src.is_dir():
            raise ShardOptionError(f"--src {src} is not a directory")
        recs = layouts.discover(src, spec)
        if list_file is None and (src / "videos.csv").is_file():
            list_file = src / "videos.csv"
        if list_file is not None:
            recs = layouts.apply_list(recs, _read_list(Path(list_file)), src)
    except layouts.LayoutError as e:
        raise ShardJobError(str(e)) from e
    return Discovery([VideoTask(r.video_id, r.split, r.video, r.audio, r.events) for r in recs])


def _prepare(src, job: JobConfig, list_file, engine: str, layout: layouts.LayoutSpec | None = None
             ) -> tuple[Discovery, JobConfig, LabelBackend]:
    """The videos of the job, after the checks that must fail before anything is written; the job with its
    event class map ``auto`` replaced by the input's own ``classes.json`` if it has one
    (:func:`avsa_data.layouts.own_event_classes`; otherwise ``auto`` stays and means ``starss23``); and the
    job's label backend."""
    src_dir = Path(src).resolve()
    try:
        spec = layouts.resolve(src_dir, layout or layouts.LayoutSpec())
    except layouts.LayoutError as e:
        raise ShardJobError(str(e)) from e
    found = _discover(src_dir, list_file, spec)
    own = layouts.own_event_classes(src_dir, spec)
    if job.events.classes == AUTO_CLASSES and own is not None:
        job = replace(job, events=replace(job.events, classes=own))
    for s in found.skipped:
        _console(f"avsa-data shard: skipped {s['path']}: {s['reason']}")
    if not found.tasks and not found.failed:
        raise ShardJobError(f"no videos ({', '.join(VIDEO_EXTS)}) found under {src}")
    if engine not in ENGINES:
        raise ShardOptionError(f"--engine must be one of {ENGINES}, got {engine!r}")
    return found, job, _check_labels(job)  # a bad --labels setting must fail before anything is written


def _check_labels(job: JobConfig) -> LabelBackend:
    """The job's label backend; a bad ``--labels`` setting or event class map is a :class:`ShardJobError`."""
    try:
        labels = make_labels(job)
    except (LabelError, ValueError, OSError) as e:
        raise ShardOptionError(f"--labels {job.labels}: {e}") from e
    try:
        EventClasses.load(job.events.classes)
    except EventLabelError as e:
        raise ShardJobError(str(e)) from e
    return labels


def _progress(it, enabled: bool, desc: str, unit: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _run_phase1(tasks: list[VideoTask], sharder: VideoSharder, workers: int, progress: bool, on_video_done,
                engine: str = "local", ray_address: str | None = None) -> list[VideoResult]:
    """Phase 1 in this process, on a local process pool, or on a Ray cluster (one task per video). All run the
    same ``sharder``, so fragments, and hence shards, are byte-identical.
    Pool workers die with this process (:func:`avsa_data.jobcontrol.die_with_parent`); the first
    :class:`JobStopped` cancels the videos not started yet and is raised."""
    from tqdm import tqdm

    finished = [t for t in tasks if any(p.exists() for p in _summary_paths(sharder.frag_dir, t.video_id))]
    tasks = [t for t in tasks if t not in finished]
    bar = tqdm(total=len(tasks) + len(finished), initial=len(finished), desc="videos", unit="video", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    results: list[VideoResult] = []
    samples = 0
    t0 = time.time()

    def done(r: VideoResult, new: bool = True) -> None:
        """A video's result; the bar's rates count only the videos this run works on (``new``)."""
        nonlocal samples
        results.append(r)
        if not r.ok:
            _console(f"avsa-data shard: FAILED {r.path} [{r.stage}]: {r.reason}")
        if new:
            samples += r.samples
            bar.update(1)
            bar.set_postfix(samples=samples, sps=f"{samples / max(time.time() - t0, 1e-9):.1f}/s")
        if on_video_done:
            on_video_done(r)

    for t in finished:  # fragments of an earlier run of this job: read back, not redone
        done(sharder(t), new=False)
    try:
        if engine == "ray":
            for r in _ray_results(tasks, sharder, workers, ray_address):
                done(r)
        elif workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                done(sharder(t))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as ex:
                futs = [ex.submit(sharder, t) for t in tasks]
                try:
                    for f in as_completed(futs):
                        done(f.result())
                except BaseException as e:
                    if isinstance(e, KeyboardInterrupt):  # Ctrl-C, SIGTERM: fragments are atomic, stop at once
                        for proc in list(getattr(ex, "_processes", {}).values()):
                            proc.terminate()
                    ex.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return sorted(results, key=lambda r: r.video_id)


def _shard_video(sharder: VideoSharder, task: VideoTask) -> VideoResult:
    """One video on a Ray worker."""
    return sharder(task)


def _ray_results(tasks: list[VideoTask], sharder: VideoSharder, workers: int,
                 ray_address: str | None) -> Iterator[VideoResult]:
    """Run ``sharder`` as Ray tasks; yield results as tasks complete (drives the progress bar).

    ``ray_address`` connects to an existing cluster (``auto`` or ``ray://host:port``); by default a local
    instance with ``workers`` CPUs is started and shut down afterwards. The fragment folder must be one every node sees
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
        task_fn = ray.remote(num_cpus=1, max_retries=2)(_shard_video)
        shared = ray.put(sharder)
        pending = [task_fn.remote(shared, t) for t in tasks]
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


# ------------------------------------------------------------------------------------------ phase 2


def _assemble(out: Path, job: JobConfig, src: str, found: Discovery, update: Update, results: list[VideoResult],
              progress: bool, publish: Callable[[dict, bool], None]) -> tuple[list[dict], list[dict]]:
    """Phase 2 in ``out``: the new shards (each handed to ``publish`` once written, with whether its content is
    new since the last recorded plan), failures.jsonl, manifest.json. Returns (failures, all shard records)."""
    first: dict[str, int] = {}
    for rec in update.shards:
        first[rec["split"]] = max(first.get(rec["split"], 0), int(fmt.SHARD_RE.match(rec["name"])["index"]) + 1)
    plans = plan_shards(results, job, first)
    fresh = _settle_shard_plan(out, plans, results, {rec["name"] for rec in update.shards})
    shard_records = list(update.shards)
    for plan in _progress(plans, progress, "shards", "shard"):
        shard_records.append(write_shard(plan, out))
        publish(shard_records[-1], plan.name in fresh)
    shard_records.sort(key=lambda rec: rec["name"])
    everything = sorted([*update.kept, *(r.record() for r in results), *found.failed],
                        key=lambda r: (r["video_id"], r["path"]))
    failures = [{"video_id": r["video_id"], "path": r["path"], "stage": r["stage"], "reason": r["reason"]}
                for r in everything if r["status"] == "failed"]
    _write_manifest(out, job, src, everything, shard_records, failures, found.skipped)
    return failures, shard_records


def _report(out, found: Discovery, update: Update, results: list[VideoResult], failures: list[dict],
            shard_records: list[dict]) -> JobReport:
    ok = sum(rec["status"] == "ok" for rec in update.kept) + sum(r.ok for r in results)
    return JobReport(out, len(update.kept) + len(results) + len(found.failed), ok, len(failures),
                     sum(s["num_samples"] for s in shard_records), len(shard_records), failures,
                     added=len(results) if update.incremental else 0, skipped=found.skipped)


def _write_manifest(out: Path, job: JobConfig, src: str, results: list[dict], shard_records: list[dict],
                    failures: list[dict], skipped: list[dict]) -> None:
    """failures.jsonl and manifest.json (``results``: the video records, with ``video_id``)."""
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
