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
``--overwrite``.

``OUT`` may also be an fsspec URL (``s3://bucket/prefix``, ``file:///…``; :mod:`avsa_data.remote`). Both
phases then run in a local *staging* folder (``--staging``, by default one under the system temp folder named
after the URL), and each finished shard is uploaded and removed from the staging folder, followed by
``failures.jsonl`` and, last, ``manifest.json``: its presence (``complete: true``) marks the job done. The
bytes are those of a local run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__, layouts, media, remote
from . import format as fmt
from .events import AUTO_CLASSES, EventClasses, EventLabelError, EventOptions, load_video_events
from .fsutil import atomic_write_bytes, tmp_path
from .labels import LabelBackend, LabelError, make_backend
from .samples import EncodedSample, SampleConfig, VideoInfo, iter_samples, needed_frames, plan_samples

VIDEO_EXTS = layouts.VIDEO_EXTS
WORK = ".work"
#: The files a job writes next to its shards.
OUTPUTS = ("manifest.json", "failures.jsonl", "config.json")


class ShardJobError(Exception):
    """The job as a whole cannot run (bad arguments, config mismatch); one-line message."""


@dataclass(frozen=True)
class JobConfig:
    """Options of a shard job. ``sample`` fields and the label description determine the bytes."""

    sample: SampleConfig = field(default_factory=SampleConfig)
    labels: str = "none"
    label_options: tuple[tuple[str, str], ...] = ()
    labels_optional: bool = False
    shard_size: int | None = 256  # samples per shard
    shard_mb: float | None = None  # or a target size in MB
    max_av_mismatch: float = 0.5  # seconds of audio/video duration mismatch tolerated
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


# --------------------------------------------------------------------------------------------- discovery


def discover_videos(src: Path, list_file: Path | None = None) -> list[VideoTask]:
    """Video files under ``src`` (recursive), with ids and splits.

    Splits come from ``list_file`` (CSV with columns ``video_id`` or ``path``, and ``split``), else from
    ``src/videos.csv`` when present, else every video is ``train``. With a list, only listed videos are used.
    """
    src = Path(src)
    if not src.is_dir():
        raise ShardJobError(f"--src {src} is not a directory")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTS and WORK not in p.parts)
    by_id: dict[str, Path] = {}
    for p in files:
        rel = p.relative_to(src).with_suffix("")
        vid = fmt.sanitize_id("__".join(rel.parts))
        if vid in by_id:
            raise ShardJobError(f"two inputs map to video id {vid!r}: {by_id[vid]} and {p}")
        by_id[vid] = p
    if list_file is None and (src / "videos.csv").is_file():
        list_file = src / "videos.csv"
    if list_file is None:
        return [VideoTask(v, "train", str(p)) for v, p in sorted(by_id.items())]
    splits = _read_list(Path(list_file))
    tasks = []
    for key, split in splits.items():
        vid = fmt.sanitize_id(Path(key).with_suffix("").as_posix().replace("/", "__")) if "/" in key else key
        vid = fmt.sanitize_id(vid)
        if vid not in by_id:
            raise ShardJobError(f"--list names {key!r}, which is not under {src}")
        tasks.append(VideoTask(vid, split, str(by_id[vid])))
    return sorted(tasks, key=lambda t: t.video_id)


def _read_list(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ShardJobError(f"--list {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ShardJobError(f"--list {path} has no rows")
    col = "video_id" if "video_id" in rows[0] else "path" if "path" in rows[0] else None
    if col is None:
        raise ShardJobError(f"--list {path} needs a 'video_id' or 'path' column (and optionally 'split')")
    out = {}
    for r in rows:
        split = (r.get("split") or "train").strip()
        fmt.sanitize_id(split)
        out[r[col].strip()] = split
    return out


# ------------------------------------------------------------------------------------------ per video


def _fail(stage: str, reason: str) -> dict:
    return {"status": "failed", "stage": stage, "reason": reason.splitlines()[0] if reason else stage}


def process_video(task: VideoTask, job: JobConfig, out: Path) -> dict:
    """Phase 1 for one video. Returns a summary dict (``status`` ok/failed/empty); never raises for bad input."""
    frag_dir = out / WORK / "frag"
    done = frag_dir / f"{task.video_id}.json"
    if done.exists():
        return json.loads(done.read_text())
    failed = frag_dir / f"{task.video_id}.failed.json"
    if failed.exists():
        return json.loads(failed.read_text())
    t0 = time.time()
    result = _process_video(task, job, frag_dir)
    result.update(video_id=task.video_id, split=task.split, path=task.path, seconds=round(time.time() - t0, 3))
    target = done if result["status"] != "failed" else failed
    atomic_write_bytes(target, json.dumps(result, sort_keys=True).encode())
    return result


def _process_video(task: VideoTask, job: JobConfig, frag_dir: Path) -> dict:
    cfg = job.sample
    stage = "probe"
    try:
        pr = media.probe(task.path)
        if not pr.has_video:
            return _fail(stage, f"{task.path}: no video stream")
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
            if not job.labels_optional:
                raise
            label_meta = {**label_meta, "error": str(e).splitlines()[0]}
        plans = plan_samples(duration, cfg)
        if not plans:
            return {"status": "empty", "samples": 0, "bytes": 0, "duration": duration,
                    "reason": f"shorter than one {cfg.audio_seconds} s audio window"}
        stage = "decode"
        info = VideoInfo(task.video_id, task.split, task.path, round(duration, 6), pr.width, pr.height,
                         pr.fps, str(audio_src))
        frames = media.iter_video_frames_at(task.path, cfg.fps, needed_frames(plans, cfg), size=cfg.equirect_size)
        tmp = tmp_path(frag_dir / f"{task.video_id}.tar")
        index = []
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in iter_samples(frames, foa, plans, info, cfg, labels, label_meta, events):
                add_sample(tar, sample)
                index.append({"key": sample.key, "bytes": sample.nbytes,
                              "members": [[n, len(b)] for n, b in sample.members]})
        os.replace(tmp, frag_dir / f"{task.video_id}.tar")
        return {"status": "ok", "samples": len(index), "bytes": sum(s["bytes"] for s in index),
                "duration": duration, "index": index}
    except (media.MediaError, LabelError, ValueError, OSError, KeyError) as e:
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


def plan_shards(results: list[dict], job: JobConfig) -> list[dict]:
    """Assign samples to shards: per split, in sorted video order, cut by sample count or bytes."""
    shards: list[dict] = []
    for split in sorted({r["split"] for r in results if r["status"] == "ok"}):
        cur: dict | None = None
        count = 0
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
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for vid in plan["videos"]:
                for name, data in read_fragment(out / WORK / "frag" / f"{vid}.tar"):
                    if name.split(".", 1)[0] in wanted:
                        tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            # tarfile's close() writes the end-of-archive blocks
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    return {"name": plan["name"], "split": plan["split"], "num_samples": len(plan["samples"]),
            "samples": plan["samples"], "source_videos": plan["videos"], "bytes": final.stat().st_size,
            "payload_bytes": plan["payload"], "sha256": sha256_file(final)}


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


def _check_config(out: Path, job: JobConfig, overwrite: bool) -> None:
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("config_hash") == job.config_hash:
            return
        if not overwrite:
            raise _config_mismatch(out, old, job)
        clear_output(out)
    elif overwrite:
        clear_output(out)


def _config_mismatch(out, old: dict, job: JobConfig) -> ShardJobError:
    return ShardJobError(
        f"{out} holds shards made with another configuration (hash {old.get('config_hash')} vs "
        f"{job.config_hash}); pass --overwrite to replace them, or choose another --out"
    )


def _config_bytes(job: JobConfig) -> bytes:
    """``config.json``: the job configuration and its hash."""
    return json.dumps({"config_hash": job.config_hash, "config": job.hashed(), "avsa_version": __version__},
                      sort_keys=True, indent=1).encode()


def _complete(m: dict | None, job: JobConfig) -> bool:
    """Whether ``manifest.json`` (``m``) records a finished job with ``job``'s configuration."""
    return bool(m and m.get("config_hash") == job.config_hash and m.get("complete"))


def _up_to_date(out, m: dict, failures_jsonl: str) -> JobReport:
    fails = [json.loads(line) for line in failures_jsonl.splitlines() if line]
    return JobReport(out, m["stats"]["videos"], m["stats"]["videos_ok"], len(fails), m["stats"]["samples"],
                     len(m["shards"]), fails, up_to_date=True)


def _start_work(out: Path) -> None:
    """Create the fragment folder; remove temp files left by a killed run."""
    (out / WORK / "frag").mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".*.tmp"), *(out / WORK / "frag").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)


def _assemble(out: Path, job: JobConfig, tasks, results: list[dict], progress: bool,
              publish: Callable[[dict], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Phase 2 in ``out``: the shards (each handed to ``publish`` once written), failures.jsonl, manifest.json."""
    failures = [
        {"video_id": r["video_id"], "path": r["path"], "stage": r["stage"], "reason": r["reason"]}
        for r in results if r["status"] == "failed"
    ]
    shard_records = []
    for plan in _progress(plan_shards(results, job), progress, "shards", "shard"):
        shard_records.append(write_shard(plan, out))
        if publish is not None:
            publish(shard_records[-1])
    _write_manifest(out, job, tasks, results, shard_records, failures)
    return failures, shard_records


def _report(out, tasks, results: list[dict], failures: list[dict], shard_records: list[dict]) -> JobReport:
    ok = sum(r["status"] == "ok" for r in results)
    return JobReport(out, len(tasks), ok, len(failures), sum(r.get("samples", 0) for r in results),
                     len(shard_records), failures)


def clear_output(out: Path) -> None:
    """Remove what a shard job writes in ``out`` (and nothing else)."""
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
    """Run (or resume) a shard job. See the module docstring for the phases and guarantees.

    ``out`` is a local folder, or an fsspec URL string (``s3://bucket/prefix``) with ``staging`` the local
    folder for the per-video work (default :func:`avsa_data.remote.default_staging`). ``layout`` says how
    ``src`` is organised (:mod:`avsa_data.layouts`; default: detected).
    """
    tasks, job = _prepare(src, job, list_file, engine, layout)
    if remote.is_url(out):
        try:
            return _run_url_job(tasks, str(out), job, workers=workers, overwrite=overwrite, keep_work=keep_work,
                                progress=progress, on_video_done=on_video_done, engine=engine,
                                ray_address=ray_address, staging=staging)
        except remote.StorageError as e:
            raise ShardJobError(str(e)) from e
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, job, overwrite)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if _complete(m, job):
            return _up_to_date(out, m, (out / "failures.jsonl").read_text())
    atomic_write_bytes(out / "config.json", _config_bytes(job))
    _start_work(out)
    results = _run_phase1(tasks, job, out, workers, progress, on_video_done, engine, ray_address)
    failures, shard_records = _assemble(out, job, tasks, results, progress)
    if not keep_work:
        shutil.rmtree(out / WORK, ignore_errors=True)
    return _report(out, tasks, results, failures, shard_records)


def _run_url_job(tasks, url: str, job: JobConfig, *, workers, overwrite, keep_work, progress, on_video_done,
                 engine, ray_address, staging) -> JobReport:
    """:func:`run_shard_job` for an fsspec URL: the local job runs in ``staging``, and every result is uploaded
    as soon as it is final (shards, then failures.jsonl, then manifest.json), never partially."""
    store = remote.Store(url)
    stage = Path(staging) if staging is not None else remote.default_staging(store.url)
    listing = store.listing()
    old = store.read_json("config.json") if "config.json" in listing else None
    if old.get("config_hash") != job.config_hash if old is not None else overwrite:  # as _check_config
        if not overwrite:
            raise _config_mismatch(store.url, old, job)
        store.remove(n for n in listing if fmt.SHARD_RE.match(n) or n in OUTPUTS)
        listing = {n: size for n, size in listing.items() if remote.TMP_RE.match(n)}
    m = store.read_json("manifest.json") if "manifest.json" in listing else None
    if _complete(m, job):
        if all(listing.get(s["name"]) == s["bytes"] for s in m["shards"]):
            return _up_to_date(store.url, m, (store.read_bytes("failures.jsonl") or b"").decode())
        store.remove(["manifest.json"])  # shards were lost since: publish again, the manifest last
    stage.mkdir(parents=True, exist_ok=True)
    _check_config(stage, job, overwrite=True)  # the staging folder is a cache: other work there is dropped
    atomic_write_bytes(stage / "config.json", _config_bytes(job))
    store.put(stage / "config.json", "config.json")
    store.remove(n for n in listing if remote.TMP_RE.match(n))  # uploads of a killed run
    _start_work(stage)
    results = _run_phase1(tasks, job, stage, workers, progress, on_video_done, engine, ray_address)

    def publish(rec: dict) -> None:
        local = stage / rec["name"]
        if listing.get(rec["name"]) != rec["bytes"]:  # shards are byte-identical by construction
            store.put(local, rec["name"])
        local.unlink()

    failures, shard_records = _assemble(stage, job, tasks, results, progress, publish)
    store.put(stage / "failures.jsonl", "failures.jsonl")
    store.put(stage / "manifest.json", "manifest.json")
    if not keep_work:
        clear_output(stage)
        with contextlib.suppress(OSError):
            stage.rmdir()
    return _report(store.url, tasks, results, failures, shard_records)


def _discover(src: Path, list_file, layout: layouts.LayoutSpec | None) -> list[VideoTask]:
    """The videos of ``src`` in its input layout: flat (:func:`discover_videos`), or starss23 / folders
    (:func:`avsa_data.layouts.discover`, splits from folder names unless a list says otherwise)."""
    try:
        spec = layouts.resolve(src, layout or layouts.LayoutSpec())
        if spec.name == "flat":
            return discover_videos(src, list_file)
        if not src.is_dir():
            raise ShardJobError(f"--src {src} is not a directory")
        recs = layouts.discover(src, spec)
        if list_file is None and (src / "videos.csv").is_file():
            list_file = src / "videos.csv"
        if list_file is not None:
            recs = layouts.apply_list(recs, _read_list(Path(list_file)), src)
    except layouts.LayoutError as e:
        raise ShardJobError(str(e)) from e
    return [VideoTask(r.video_id, r.split, r.video, r.audio, r.events) for r in recs]


def _prepare(src, job: JobConfig, list_file, engine: str, layout=None) -> tuple[list[VideoTask], JobConfig]:
    """The videos of the job, after the checks that must fail before anything is written, and the job with its
    event class map ``auto`` replaced by the input's own ``classes.json`` if it has one
    (:func:`avsa_data.layouts.own_event_classes`; otherwise ``auto`` stays and means ``starss23``)."""
    tasks = _discover(Path(src), list_file, layout)
    own = layouts.own_event_classes(Path(src), layout or layouts.LayoutSpec())
    if job.events.classes == AUTO_CLASSES and own is not None:
        job = replace(job, events=replace(job.events, classes=own))
    if not tasks:
        raise ShardJobError(f"no videos ({', '.join(VIDEO_EXTS)}) found under {src}")
    if engine not in ENGINES:
        raise ShardJobError(f"--engine must be one of {ENGINES}, got {engine!r}")
    _make_backend_check(job)  # a bad --labels setting must fail before anything is written
    return tasks, job


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
    :func:`process_video` with the same arguments, so fragments, and hence shards, are byte-identical."""
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
        elif workers <= 1:
            for t in tasks:
                done(process_video(t, job, out))
        else:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                futs = [ex.submit(process_video, t, job, out) for t in tasks]
                for f in as_completed(futs):
                    done(f.result())
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
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


def _write_manifest(out, job, tasks, results, shard_records, failures) -> None:
    videos = {}
    for r in results:
        v = {k: r[k] for k in ("path", "split", "status") if k in r}
        v.update({k: r[k] for k in ("samples", "bytes", "duration", "stage", "reason") if k in r})
        videos[r["video_id"]] = v
    manifest = {
        "format_version": fmt.FORMAT_VERSION,
        "avsa_version": __version__,
        "config_hash": job.config_hash,
        "config": job.hashed(),
        "complete": True,
        "shards": shard_records,
        "videos": videos,
        "failures_file": "failures.jsonl",
        "stats": {
            "videos": len(tasks),
            "videos_ok": sum(r["status"] == "ok" for r in results),
            "videos_failed": len(failures),
            "samples": sum(s["num_samples"] for s in shard_records),
            "bytes": sum(s["bytes"] for s in shard_records),
            "splits": {sp: sum(s["num_samples"] for s in shard_records if s["split"] == sp)
                       for sp in sorted({s["split"] for s in shard_records})},
        },
    }
    lines = "".join(json.dumps(f, sort_keys=True) + "\n" for f in sorted(failures, key=lambda f: f["video_id"]))
    atomic_write_bytes(out / "failures.jsonl", lines.encode())
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, sort_keys=True, indent=1).encode())
