"""Engines of phase 1: a local process pool or Ray, both giving the same :class:`VideoResult` per video."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..jobcontrol import die_with_parent
from .config import VideoTask
from .errors import JobStopped, ShardJobError
from .outputs import console_line
from .video import VideoResult, VideoSharder, summary_paths


def progress_bar(it, enabled: bool, desc: str, unit: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def run_phase1(tasks: list[VideoTask], sharder: VideoSharder, workers: int, progress: bool, on_video_done,
                engine: str = "local", ray_address: str | None = None) -> list[VideoResult]:
    """Phase 1 in this process, on a local process pool, or on a Ray cluster (one task per video). All run the
    same ``sharder``, so fragments, and hence shards, are byte-identical.
    Pool workers die with this process (:func:`avsa_data.jobcontrol.die_with_parent`); the first
    :class:`JobStopped` cancels the videos not started yet and is raised."""
    from tqdm import tqdm

    finished = [t for t in tasks if any(p.exists() for p in summary_paths(sharder.frag_dir, t.video_id))]
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
            console_line(f"avsa-data shard: FAILED {r.path} [{r.stage}]: {r.reason}")
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
