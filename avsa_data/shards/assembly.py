"""Phase 2: fragments concatenated in sorted video order into ``{split}-{NNNNNN}.tar`` shards, then the
manifest and the failure log."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, shard_format
from ..fsutil import atomic_write_bytes, sha256_file, tmp_path
from ..tario import copy_runs, end_of_archive, fragment_runs
from .config import WORK, JobConfig
from .discovery import Discovery
from .engines import progress_bar
from .outputs import JobReport, read_output_json
from .reruns import Update
from .video import VideoResult


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
            shards.append(ShardPlan(shard_format.shard_name(split, first + n), split, samples, owners, payload))
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
                end = end_of_archive(f.tell())
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
    old = read_output_json(plan_path, missing=None, damaged=None) or {}
    for f in out.glob("*.tar"):
        if shard_format.SHARD_RE.match(f.name) and f.name not in kept and old.get(f.name) != signature.get(f.name):
            f.unlink()
    atomic_write_bytes(plan_path, json.dumps(signature, sort_keys=True).encode())
    return {n for n, sig in signature.items() if old.get(n) != sig}



def assemble(out: Path, job: JobConfig, src: str, found: Discovery, update: Update, results: list[VideoResult],
              progress: bool, publish: Callable[[dict, bool], None]) -> tuple[list[dict], list[dict]]:
    """Phase 2 in ``out``: the new shards (each handed to ``publish`` once written, with whether its content is
    new since the last recorded plan), failures.jsonl, manifest.json. Returns (failures, all shard records)."""
    first: dict[str, int] = {}
    for rec in update.shards:
        index = int(shard_format.SHARD_RE.match(rec["name"])["index"])
        first[rec["split"]] = max(first.get(rec["split"], 0), index + 1)
    plans = plan_shards(results, job, first)
    fresh = _settle_shard_plan(out, plans, results, {rec["name"] for rec in update.shards})
    shard_records = list(update.shards)
    for plan in progress_bar(plans, progress, "shards", "shard"):
        shard_records.append(write_shard(plan, out))
        publish(shard_records[-1], plan.name in fresh)
    shard_records.sort(key=lambda rec: rec["name"])
    everything = sorted([*update.kept, *(r.record() for r in results), *found.failed],
                        key=lambda r: (r["video_id"], r["path"]))
    failures = [{"video_id": r["video_id"], "path": r["path"], "stage": r["stage"], "reason": r["reason"]}
                for r in everything if r["status"] == "failed"]
    _write_manifest(out, job, src, everything, shard_records, failures, found.skipped)
    return failures, shard_records


def job_report(out, found: Discovery, update: Update, results: list[VideoResult], failures: list[dict],
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
        "format_version": shard_format.FORMAT_VERSION,
        "avsa_version": __version__,
        "config_hash": job.config_hash,
        "config": job.hashed_fields(),
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
