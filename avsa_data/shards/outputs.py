"""The output folder of a job: its state (configuration check, completeness, the work folder) and where its
files end up, a local folder (:class:`LocalOutput`) or an fsspec URL through a local staging folder
(:class:`UrlOutput`), behind one interface."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, remote, shard_format
from ..fsutil import atomic_write_bytes, read_json
from ..jobcontrol import exclusive_lock
from .config import OUTPUTS, WORK, JobConfig
from .errors import ShardJobError, ShardOptionError


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


def read_output_json(path: Path, *, missing=ShardJobError, damaged=ShardJobError, hint: str = ""):
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


def src_text(src) -> str:
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
        unfinished = not any(shard_format.SHARD_RE.match(p.name) for p in out.glob("*.tar"))
        old = read_output_json(cfg_path, damaged={} if overwrite or unfinished else ShardJobError, hint=_REBUILD)
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


def config_bytes(job: JobConfig, src: str) -> bytes:
    """``config.json``: the job configuration and its hash, and the --src it reads."""
    return json.dumps({"config_hash": job.config_hash, "config": job.hashed_fields(), "avsa_version": __version__,
                       "src": src}, sort_keys=True, indent=1).encode()


def _complete(m: dict | None, job: JobConfig) -> bool:
    """Whether ``manifest.json`` (``m``) records a finished job with ``job``'s configuration."""
    return bool(isinstance(m, dict) and m.get("config_hash") == job.config_hash and m.get("complete")
                and m.get("format_version") == shard_format.FORMAT_VERSION)


def up_to_date_report(out, m: dict, failures_jsonl: str, skipped: list[dict]) -> JobReport:
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
        if shard_format.SHARD_RE.match(p.name):
            p.unlink()
    for p in out.glob(".*.tmp"):
        p.unlink()
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / WORK, ignore_errors=True)


def console_line(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _finish_cleanup(out: Path, keep_work: bool) -> None:
    """Remove the work folder of a finished job (again, if a kill interrupted the last removal)."""
    if not keep_work and (out / WORK).exists():
        shutil.rmtree(out / WORK)




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
        m = read_output_json(self.folder / "manifest.json", missing=None, damaged=None if overwrite else ShardJobError,
                       hint=_REBUILD)
        return m if _complete(m, job) else None

    def discard(self) -> None:
        """Forget the finished output (its inputs changed, and ``--overwrite`` rebuilds it)."""
        clear_output(self.folder)

    def failures_text(self) -> str:
        return (self.folder / "failures.jsonl").read_text()

    def start(self, job: JobConfig, src: str) -> None:
        """Record the configuration and prepare the work folder."""
        atomic_write_bytes(self.folder / "config.json", config_bytes(job, src))
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
            store.remove(n for n in listing if shard_format.SHARD_RE.match(n) or n in OUTPUTS)
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
        atomic_write_bytes(self.folder / "config.json", config_bytes(job, src))
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
            self.store.remove(n for n in self.store.listing() if shard_format.SHARD_RE.match(n) and n not in names)

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
