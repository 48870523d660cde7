"""Incremental reruns: which inputs are new, changed, removed or failed since the last run (:class:`Update`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..input_identity import same_content, video_identity
from .config import VideoTask
from .errors import ENVIRONMENT_ERRNOS, ShardJobError
from .outputs import console_line, read_output_json
from .video import summary_paths


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
                console_line(f"avsa-data shard: {what} since {out} was made: {path}")
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


def drop_stale_fragments(frag_dir: Path, tasks: list[VideoTask]) -> list[str]:
    """Delete the fragments (and summaries) of ``tasks`` made from other inputs (an input changed, or another
    --src, while the job was interrupted); return their video ids."""
    stale = []
    for t in tasks:
        for summary in summary_paths(frag_dir, t.video_id):
            if not summary.exists():
                continue
            rec = read_output_json(summary, missing=None, damaged=None)
            if rec is None or not same_content(rec.get("input"), t.identity) or rec.get("split") != t.split:
                summary.unlink()
                (frag_dir / f"{t.video_id}.tar").unlink(missing_ok=True)
                stale.append(t.video_id)
    return stale
