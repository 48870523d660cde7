"""Phase 1, one video: probe, read the FOA, stream the frames once, encode its samples into a fragment tar
(:class:`VideoSharder`); its typed result (:class:`VideoResult`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .. import media
from ..events import EventLabelError, load_video_events
from ..fsutil import atomic_write_bytes, read_json, tmp_path
from ..jobcontrol import usable_cpus
from ..labels import LabelBackend, LabelError, VideoLabels, make_backend
from ..samples import EncodedSample, VideoInfo, iter_samples, needed_frames, plan_samples
from ..tario import add_sample, end_of_archive
from .config import JobConfig, VideoTask
from .errors import ENVIRONMENT_ERRNOS, environment_stop


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
    return make_backend(job.labels, **job.label_options.given())


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
        done, failed = summary_paths(self.frag_dir, task.video_id)
        for summary in (done, failed):
            if summary.exists():
                return VideoResult.from_summary(read_json(summary, "a fragment summary written by avsa-data shard"))
        t0 = time.time()
        outcome = _process_video(task, self.job, self.frag_dir, self.labels, self.decoder_threads)
        result = VideoResult(video_id=task.video_id, split=task.split, path=task.path, input=task.identity,
                             seconds=round(time.time() - t0, 3), **outcome)
        atomic_write_bytes(done if result.ok else failed, json.dumps(result.summary(), sort_keys=True).encode())
        return result


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


def summary_paths(frag_dir: Path, video_id: str) -> tuple[Path, Path]:
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


def _process_video(task: VideoTask, job: JobConfig, frag_dir: Path, make_label_backend: Callable[[], LabelBackend],
                   threads: int | None = None) -> dict:
    """The outcome fields of :class:`VideoResult` for one video (``make_label_backend()`` gives the job's
    backend; ``threads``: ffmpeg's decoder threads, see :func:`decoder_threads`)."""
    cfg = job.sample
    stage = "probe"
    try:
        if task.identity and "error" in task.identity:
            return _fail(stage, f"{task.path}: unreadable ({task.identity['error']})")
        pr = media.probe(task.path)
        problem = frame_problem(pr.width, pr.height, job) if pr.has_video else "no video stream"
        if problem:
            return _fail(stage, f"{task.path}: {problem}")
        stage = "audio"
        audio_src, foa, audio_dur = _read_audio(task, pr, job)
        duration = min(audio_dur, pr.duration)
        stage = "events"
        events = load_video_events(task.events, job.events, audio_dur)
        stage = "labels"
        video_labels, label_meta = _open_labels(make_label_backend(), task, job)
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
        index = _write_fragment(tmp, iter_samples(frames, foa, plans, info, cfg, video_labels, label_meta, events))
        if not index:
            return _fail("decode", f"{task.path}: the video decoded to too few frames for any sample")
        os.replace(tmp, frag_dir / f"{task.video_id}.tar")
        return {"status": "ok", "samples": len(index), "bytes": sum(s.bytes for s in index),
                "duration": duration, "index": tuple(index)}
    except (media.MediaError, LabelError, EventLabelError) as e:  # bad input; anything else is not
        return _fail("labels" if isinstance(e, LabelError) else stage, f"{task.path}: {e}")


def _read_audio(task: VideoTask, pr: media.ProbeResult, job: JobConfig) -> tuple[Path, NDArray[np.float32], float]:
    """The video's audio file, its FOA as ambiX ``[4, n]`` at the job's sample rate (read as
    ``job.sample.ambi_format``), and its length (seconds), checked against the video's length
    (:func:`media.check_durations`)."""
    cfg = job.sample
    audio_src = Path(task.audio) if task.audio else media.find_audio_source(task.path, pr)
    foa = media.read_foa(audio_src, cfg.sr, cfg.ambi_format)
    audio_dur = foa.shape[1] / cfg.sr
    media.check_durations(pr.duration, audio_dur, job.max_av_mismatch)
    return audio_src, foa, audio_dur


def _open_labels(backend: LabelBackend, task: VideoTask, job: JobConfig) -> tuple[VideoLabels | None, dict]:
    """The video's labels from ``backend`` and the labels' metadata. With ``job.labels_optional`` a video the
    backend cannot label gets ``None`` and the error in the metadata; else it is a :class:`LabelError`
    (an environment ``OSError`` is raised as is)."""
    video_labels, label_meta = None, backend.describe()
    try:
        video_labels = backend.open(Path(task.path), task.video_id)
    except (LabelError, OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            raise
        if not job.labels_optional:
            raise e if isinstance(e, LabelError) else LabelError(str(e)) from e
        label_meta = {**label_meta, "error": str(e).splitlines()[0]}
    return video_labels, label_meta


def _write_fragment(tmp: Path, samples: Iterable[EncodedSample]) -> list[FragmentSample]:
    """Write ``samples`` as a tar at ``tmp`` (removed if anything fails); returns their index."""
    index = []
    try:
        with open(tmp, "wb") as f:
            for sample in samples:
                add_sample(f, sample)
                index.append(FragmentSample(sample.key, sample.nbytes, tuple((n, len(b)) for n, b in sample.members)))
            f.write(end_of_archive(f.tell()))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return index
