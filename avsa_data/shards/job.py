"""The shard job: lock, check the configuration, plan the update, phase 1, assembly, report
(:func:`run_shard_job`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .. import layouts, remote
from ..events import AUTO_CLASSES, EventClasses, EventLabelError
from ..jobcontrol import FolderBusy
from ..labels import LabelBackend, LabelError
from .assembly import assemble, job_report
from .config import ENGINES, VIDEO_EXTS, WORK, JobConfig
from .discovery import Discovery, discover_layout
from .engines import run_phase1
from .errors import JobStopped, ShardJobError, ShardOptionError, stop_on_environment_errors
from .outputs import JobOutput, JobReport, LocalOutput, UrlOutput, console_line, src_text, up_to_date_report
from .reruns import InputsChanged, drop_stale_fragments, identify_inputs, plan_update
from .video import VideoResult, VideoSharder, decoder_threads, make_labels


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
        with stop_on_environment_errors(str(output.folder)), output.lock():
            return _run_job(found, src_text(src), output, job, labels, workers=workers, overwrite=overwrite,
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
        return up_to_date_report(output.where, m, output.failures_text(), found.skipped)
    output.start(job, src)
    frag_dir = output.folder / WORK / "frag"
    drop_stale_fragments(frag_dir, update.todo)
    sharder = VideoSharder(job, frag_dir, labels, decoder_threads(workers) if engine == "local" else None)
    results = run_phase1(update.todo, sharder, workers, progress, on_video_done, engine, ray_address)
    failures, shard_records = assemble(output.folder, job, src, found, update, results, progress,
                                        output.publish_shard)
    output.publish_outputs(shard_records)
    output.finish(keep_work)
    return job_report(output.where, found, update, results, failures, shard_records)


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
    found = discover_layout(src_dir, list_file, spec)
    own = layouts.own_event_classes(src_dir, spec)
    if job.events.classes == AUTO_CLASSES and own is not None:
        job = replace(job, events=replace(job.events, classes=own))
    for s in found.skipped:
        console_line(f"avsa-data shard: skipped {s['path']}: {s['reason']}")
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
