"""`avsa-data verify`: recompute checksums and decode every member of every shard against docs/FORMAT.md."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from . import codecs, events, remote
from . import format as fmt
from .reader import RawSample, ShardFormatError, iter_raw


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


def check_sample(s: RawSample) -> list[str]:
    """Every problem of one sample: missing/extra members, undecodable members, wrong shapes or dtypes."""
    problems: list[str] = []
    try:
        meta = s.meta
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        return [f"meta.json missing or unreadable ({type(e).__name__})"]
    if meta.get("format_version") != fmt.FORMAT_VERSION:
        problems.append(f"format_version {meta.get('format_version')} != {fmt.FORMAT_VERSION}")
    if meta.get("key") != s.key:
        problems.append(f"meta key {meta.get('key')!r} != member key {s.key!r}")
    try:
        expected = fmt.expected_members(meta)
    except (KeyError, TypeError, ValueError) as e:
        return problems + [f"meta.json lacks required fields ({e})"]
    problems += events.check_meta(meta)
    missing = [m for m in expected if m not in s.members]
    extra = [m for m in s.members if m not in expected]
    problems += [f"missing member {m}" for m in missing]
    problems += [f"unexpected member {m}" for m in extra]
    T = int(meta["frames_per_clip"])
    ch, cw = meta["crop_size"]
    n = int(meta["audio_samples"])
    for name in expected:
        if name in missing or name == fmt.meta_member():
            continue
        data = s.members[name]
        try:
            problems += _check_member(name, data, T, ch, cw, n, int(meta["sr"]), meta)
        except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt member
            problems.append(f"{name}: cannot decode ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return problems


def _check_member(name: str, data: bytes, T: int, ch: int, cw: int, n: int, sr: int, meta: dict) -> list[str]:
    if name.endswith(".jpg") and ".v" in name:
        clip = codecs.decode_clip_jpeg(data, T)
        return [] if clip.shape == (T, ch, cw, 3) else [f"{name}: clip shape {clip.shape} != {(T, ch, cw, 3)}"]
    if name.endswith("equirect.jpg"):
        img = codecs.decode_jpeg(data)
        want = tuple(meta["equirect_size"][::-1]) + (3,)
        return [] if img.shape == want else [f"{name}: shape {img.shape} != {want}"]
    if name.endswith(".flac"):
        a, rate = codecs.decode_flac(data)
        render = name.split(".")[-2]
        c = 4 if render == "foa" else fmt.RENDER_CHANNELS[render]
        out = []
        if a.shape != (c, n):
            out.append(f"{name}: audio shape {a.shape} != {(c, n)}")
        if rate != sr:
            out.append(f"{name}: sample rate {rate} != {sr}")
        return out
    if name.endswith(".png"):
        a = codecs.decode_png(data)
        size = fmt.SEG_LOWRES if f"{fmt.SEG_LOWRES}.png" in name else None
        want = (size, size) if size else (ch, cw)
        out = [] if a.shape == want else [f"{name}: mask shape {a.shape} != {want}"]
        if ".conf" in name and a.dtype != np.uint8:
            out.append(f"{name}: confidence dtype {a.dtype} != uint8")
        return out
    return [f"{name}: unknown member type"]


def verify_dir(path: Path | str, decode: bool = True) -> VerifyReport:
    """Verify every shard listed in ``path/manifest.json`` (checksums, sample lists, members).

    ``path`` is a folder or an fsspec URL of one (``s3://bucket/prefix``; :mod:`avsa_data.remote`).
    """
    if remote.is_url(path):
        store = remote.Store(path)
        return _verify_listed(path, store.read_json("manifest.json"), store.listing(), store.open, decode)
    path = Path(path)
    man_path = path / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else None
    sizes = {p.name: p.stat().st_size for p in path.glob("*.tar")}
    return _verify_listed(path, manifest, sizes, lambda name: open(path / name, "rb"), decode)


def _verify_listed(where, manifest: dict | None, sizes: dict[str, int], opener: Callable[[str], IO[bytes]],
                   decode: bool) -> VerifyReport:
    """The shards of ``manifest`` against the folder's files (``sizes``: name → bytes), each read once."""
    report = VerifyReport()
    if manifest is None:
        report.add(str(where), None, "manifest.json missing (did the shard job finish?)")
        return report
    for rec in manifest["shards"]:
        report.shards += 1
        size = sizes.get(rec["name"])
        if size is None:
            report.add(rec["name"], None, "shard file missing")
            continue
        if size != rec["bytes"]:
            report.add(rec["name"], None, f"size {size} != manifest {rec['bytes']} (truncated?)")
        found = VerifyReport()
        with opener(rec["name"]) as f:
            hashed = _HashingReader(f)
            _verify_shard(rec["name"], rec["name"], found, rec.get("samples"), decode, hashed)
            digest = hashed.hexdigest()
        if digest != rec["sha256"]:
            report.add(rec["name"], None, "sha256 mismatch with manifest (corrupted bytes)")
        report.samples += found.samples
        report.problems += found.problems
    for extra in sorted({n for n in sizes if n.endswith(".tar")} - {r["name"] for r in manifest["shards"]}):
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
    """Verify a single tar (a path or an fsspec URL) without a manifest (members and decoding only)."""
    report = VerifyReport(shards=1)
    if remote.is_url(shard):
        with remote.open_url(shard) as f:
            _verify_shard(shard, shard.rsplit("/", 1)[-1], report, None, decode, f)
    else:
        _verify_shard(Path(shard), Path(shard).name, report, None, decode)
    return report


def _verify_shard(shard, name: str, report: VerifyReport, keys: list[str] | None, decode: bool,
                  fileobj: IO[bytes] | None = None) -> None:
    seen = []
    try:
        for s in iter_raw(shard, fileobj):
            seen.append(s.key)
            report.samples += 1
            if decode:
                for p in check_sample(s):
                    report.add(name, s.key, p)
    except ShardFormatError as e:
        report.add(name, seen[-1] if seen else None, str(e))
    if keys is not None:
        for k in sorted(set(keys) - set(seen)):
            report.add(name, k, "sample listed in manifest but missing from the shard")
        for k in sorted(set(seen) - set(keys)):
            report.add(name, k, "sample in the shard but not listed in the manifest")
