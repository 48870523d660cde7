"""`avsa-data verify`: recompute checksums and decode every member of every shard against docs/FORMAT.md.

Verify never raises on a damaged shard: every problem becomes one line naming the shard, the sample key (when
one is known) and what was expected, and the other shards are still checked. What it decodes is bounded by
the format: ``meta.json`` is checked against the schema (:func:`avsa_data.shard_format.meta_problems`) before any
of its numbers are used, member headers are checked against the file size, and each member's header against
the shape meta declares before it is decoded (:meth:`avsa_data.reader.RawSample.decode`). Only environment
errors (out of memory, a storage error reaching a URL) stop it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from . import codecs, events, remote, shard_format
from .fsutil import parse_json
from .reader import RawSample, ShardFormatError, decode_meta, iter_raw


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, shard: str, key: str | None, problem: str) -> None:
        self.problems.append({"shard": shard, "key": key, "problem": problem})


def check_sample(s: RawSample, decode: bool = True) -> list[str]:
    """Every problem of one sample: its meta.json against the schema, missing/extra members, the per-member
    checksums (format_version ≥ 2) and, with ``decode``, every member decoded against the shape meta declares."""
    meta, problem = decode_meta(s.members.get(shard_format.meta_member()))
    if problem is not None:
        return [problem]
    problems, usable = shard_format.meta_check(meta)  # the schema, once
    if not usable:
        return problems  # its numbers cannot size anything: nothing else is checked
    if s.members[shard_format.meta_member()] != codecs.encode_json(meta):
        problems.append("meta.json is not the canonical JSON the writer makes (sorted keys, no spaces, ASCII): "
                        "damaged or rewritten")
    if meta["key"] != s.key:
        problems.append(f"meta key {meta['key']!r} != member key {s.key!r}")
    s.__dict__["meta"] = meta  # validated above (RawSample.meta would parse it again)
    expected = shard_format.expected_members(meta)
    present = set(s.members)
    problems += events.check_meta(meta)
    missing = [m for m in expected if m not in present]
    problems += [f"missing member {m}" for m in missing]
    problems += [f"unexpected member {m}" for m in s.members if m not in set(expected)]
    problems += _checksum_problems(s, meta, expected)
    if not decode:
        return problems
    for name in expected:
        if name in missing or name == shard_format.meta_member():
            continue
        try:
            a = s.decode_checked(name)
        except codecs.MemberError as e:
            problems.append(f"{name}: {e}")
            continue
        if ".conf" in name and a.dtype != np.uint8:
            problems.append(f"{name}: confidence dtype {a.dtype} != uint8")
    return problems


def _checksum_problems(s: RawSample, meta: dict, expected: list[str]) -> list[str]:
    """format_version ≥ 2: ``meta_sha256`` of meta.json itself and ``member_sha256`` of every other member."""
    sums, own = meta.get("member_sha256"), meta.get("meta_sha256")
    if meta["format_version"] < 2 or not isinstance(sums, dict) or not isinstance(own, str):
        return []  # version 1 has none; a v2 meta without them is already reported by the schema
    out = []
    if codecs.meta_digest(meta) != own:
        out.append("meta.json: sha256 mismatch with its meta_sha256 (corrupted metadata)")
    listed = set(sums)
    want = set(expected) - {shard_format.meta_member()}
    if listed != want:
        out.append(f"meta.json member_sha256 lists {sorted(listed - want)[:3]} not in the sample's layout and "
                   f"lacks {sorted(want - listed)[:3]}")
    for name, data in s.members.items():
        if name in sums and codecs.sha256_hex(data) != sums[name]:
            out.append(f"{name}: sha256 mismatch with meta.json member_sha256 (corrupted bytes)")
    return out


def verify_dir(path: Path | str, decode: bool = True) -> VerifyReport:
    """Verify every shard listed in ``path/manifest.json`` (checksums, sample lists, members).

    ``path`` is a folder or an fsspec URL of one (``s3://bucket/prefix``; :mod:`avsa_data.remote`).
    """
    if remote.is_url(path):
        store = remote.Store(path)
        manifest, problem = _load_manifest(lambda: store.read_bytes("manifest.json"))
        return _verify_listed(path, manifest, problem, store.listing(), store.open, decode)
    path = Path(path)
    man_path = path / "manifest.json"
    manifest, problem = _load_manifest(lambda: man_path.read_bytes() if man_path.exists() else None)
    sizes = {p.name: p.stat().st_size for p in path.glob("*.tar")}
    return _verify_listed(path, manifest, problem, sizes, lambda name: open(path / name, "rb"), decode)


def _load_manifest(read: Callable[[], bytes | None]) -> tuple[dict | None, str | None]:
    """``(manifest, None)`` or ``(None, why it cannot be used)``."""
    try:
        data = read()
    except OSError as e:
        return None, f"manifest.json unreadable ({e})"
    if data is None:
        return None, "manifest.json missing (did the shard job finish?)"
    try:
        manifest = parse_json(data, "manifest.json", "the manifest.json written by avsa-data shard")
    except ValueError as e:  # one line: truncated, malformed (where), empty or not UTF-8
        return None, str(e)
    except RecursionError:
        return None, "manifest.json: nested too deeply; expected the manifest.json written by avsa-data shard"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        return None, "manifest.json must be an object with a list 'shards' (docs/FORMAT.md)"
    return manifest, None


def _record_problem(rec: object) -> str | None:
    """Why a manifest shard record cannot be checked (``None``: it can)."""
    if not isinstance(rec, dict):
        return "manifest.json shard record is not an object"
    name, size, sha = rec.get("name"), rec.get("bytes"), rec.get("sha256")
    if not isinstance(name, str) or not shard_format.SHARD_RE.match(name):
        return f"manifest.json shard name {str(name)[:80]!r} is not '{{split}}-NNNNNN.tar'"
    if not shard_format._is_int(size) or size < 0 or not isinstance(sha, str):
        return "manifest.json record lacks an integer 'bytes' or a string 'sha256'"
    samples = rec.get("samples")
    if samples is not None and not (isinstance(samples, list) and all(isinstance(k, str) for k in samples)):
        return "manifest.json record 'samples' must be a list of keys"
    return None


def _verify_listed(where, manifest: dict | None, problem: str | None, sizes: dict[str, int],
                   opener: Callable[[str], IO[bytes]], decode: bool) -> VerifyReport:
    """The shards of ``manifest`` against the folder's files (``sizes``: name → bytes), each read once."""
    report = VerifyReport()
    if manifest is None:
        report.add(str(where), None, problem or "manifest.json missing")
        return report
    listed = set()
    for rec in manifest["shards"]:
        report.shards += 1
        why = _record_problem(rec)
        if why:
            report.add(str(rec.get("name", "?"))[:80] if isinstance(rec, dict) else "manifest.json", None, why)
            continue
        name = rec["name"]
        listed.add(name)
        size = sizes.get(name)
        if size is None:
            report.add(name, None, "shard file missing")
            continue
        if size != rec["bytes"]:
            report.add(name, None, f"size {size} != manifest {rec['bytes']} (truncated?)")
        found = VerifyReport()
        try:
            with opener(name) as f:
                hashed = _HashingReader(f)
                _verify_shard(name, name, found, rec.get("samples"), decode, hashed, size)
                digest = hashed.hexdigest()
            if digest != rec["sha256"]:
                report.add(name, None, "sha256 mismatch with manifest (corrupted bytes)")
        except OSError as e:
            found.add(name, None, f"cannot read ({e})")
        report.samples += found.samples
        report.problems += found.problems
    for extra in sorted({n for n in sizes if n.endswith(".tar")} - listed):
        report.add(extra, None, "shard not listed in manifest.json")
    return report


class _HashingReader:
    """A read-only stream that hashes what passes through it (one pass for checksum and decoding)."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data

    def hexdigest(self) -> str:
        """The sha256 of the whole stream (reads what the tar reader left)."""
        while self.read(1 << 20):
            pass
        return self.h.hexdigest()


def verify_shard(shard: Path | str, decode: bool = True) -> VerifyReport:
    """Verify a single tar (a path or an fsspec URL) without a manifest (framing, members, per-member checksums
    of format_version ≥ 2, and decoding)."""
    report = VerifyReport(shards=1)
    name = str(shard).rsplit("/", 1)[-1]
    try:
        if remote.is_url(shard):
            with remote.open_url(shard) as f:
                _verify_shard(shard, name, report, None, decode, f)
        else:
            _verify_shard(Path(shard), name, report, None, decode)
    except OSError as e:
        report.add(name, None, f"cannot read ({e})")
    return report


def _verify_shard(shard, name: str, report: VerifyReport, keys: list[str] | None, decode: bool,
                  fileobj: IO[bytes] | None = None, size: int | None = None) -> None:
    """Check one tar into ``report``; a shard's damage never escapes as an exception (memory errors do)."""
    seen = []
    try:
        for s in iter_raw(shard, fileobj, size, on_problem=lambda key, msg: report.add(name, key, msg)):
            seen.append(s.key)
            report.samples += 1
            for p in check_sample(s, decode):
                report.add(name, s.key, p)
    except ShardFormatError as e:
        report.add(name, seen[-1] if seen else None, str(e).removeprefix(f"{shard}: "))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - last resort: one shard's surprise must not stop the others
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
        report.add(name, seen[-1] if seen else None, f"verify could not check this shard ({why})")
    if keys is not None:
        for k in sorted(set(keys) - set(seen)):
            report.add(name, k, "sample listed in manifest but missing from the shard")
        for k in sorted(set(seen) - set(keys)):
            report.add(name, k, "sample in the shard but not listed in the manifest")
