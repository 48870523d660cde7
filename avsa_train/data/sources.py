"""Shard sources: the shard files of a ``--shards`` value and what their ``manifest.json`` says.

A folder (its ``{split}-NNNNNN.tar``), a glob, a brace pattern, ``pipe:`` or ``scheme://`` URLs; a URL that does
not end in ``.tar`` is a folder on object storage (fsspec). Manifest queries return ``None`` where there is no
manifest to ask.
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence
from pathlib import Path

from avsa_data import remote, shard_format
from avsa_data.fsutil import parse_json
from avsa_data.options import OptionError
from avsa_data.reader import iter_raw


def expand_urls(shards: str | Sequence[str]) -> list[str]:
    """A folder (its ``{split}-NNNNNN.tar``), a glob, a brace pattern, ``pipe:``/URL strings, or a list.

    A ``scheme://`` URL that does not end in ``.tar`` (``s3://bucket/prefix``) is a folder on object storage,
    listed through fsspec (docs/SCALING.md, "Object storage"); an fsspec URL may also hold a glob.
    """
    if isinstance(shards, (list, tuple)):
        return [u for s in shards for u in expand_urls(s)]
    s = str(shards)
    p = Path(s)
    if p.is_dir():
        urls = sorted(str(q) for q in p.glob("*.tar") if shard_format.SHARD_RE.match(q.name))
        if not urls:
            raise FileNotFoundError(f"no shards ({{split}}-NNNNNN.tar) in {s}")
        return urls
    if "{" in s and "}" in s:
        import braceexpand

        return list(braceexpand.braceexpand(s))
    if _fsspec_url(s) and (any(ch in s for ch in "*?[") or not s.endswith(".tar")):
        store = remote.Store(s if not any(ch in s for ch in "*?[") else s.rsplit("/", 1)[0])
        pattern = s.rsplit("/", 1)[1] if any(ch in s for ch in "*?[") else "*"
        urls = [store.url_of(n) for n in store.shard_names() if fnmatch.fnmatchcase(n, pattern)]
        if not urls:
            raise FileNotFoundError(f"no shards ({{split}}-NNNNNN.tar) match {s}")
        return urls
    if any(ch in s for ch in "*?[") and "://" not in s and not s.startswith("pipe:"):
        urls = sorted(glob.glob(s))
        if not urls:
            raise FileNotFoundError(f"no shards match {s}")
        return urls
    return [s]


def option_urls(shards: str, flag: str = "--shards") -> list[str]:
    """:func:`expand_urls` of a command's ``--shards`` value; a local folder or file that does not exist, or one
    with no shards, is an :class:`~avsa_data.options.OptionError` naming ``flag`` (exit status 2)."""
    s = str(shards)
    local = not (_fsspec_url(s) or s.startswith("pipe:") or any(ch in s for ch in "*?[{"))
    if local and not Path(s).exists():
        raise OptionError(f"{flag} {s} does not exist (make shards with avsa-data shard --out {s})")
    try:
        return expand_urls(s)
    except FileNotFoundError as e:
        raise OptionError(f"{flag} {s}: {e} (make shards with avsa-data shard)") from None


def split_urls(urls: Sequence[str], split: str | None) -> list[str]:
    """Keep shards of one split (``train-000000.tar`` → ``train``); URLs that do not parse are kept."""
    if split is None:
        return list(urls)
    out = []
    for u in urls:
        m = shard_format.SHARD_RE.match(Path(u.split("::")[-1]).name)
        if m is None or m.group("split") == split:
            out.append(u)
    return out


#: URL schemes always opened by webdataset's gopen (with curl), as before fsspec support.
_CURL_SCHEMES = frozenset({"http", "https", "sftp", "ftps", "scp"})


def _fsspec_url(url: str) -> bool:
    """Whether ``url`` is read through fsspec: a ``scheme://`` URL other than the curl ones; schemes webdataset
    also opens itself (``gs://`` with gsutil, ``file://``, ``hf://``, ``ais://``) only where fsspec has an
    installed implementation for them."""
    s = remote.scheme(url)
    if not s or s in _CURL_SCHEMES:
        return False
    from webdataset.gopen import gopen_schemes

    return s not in gopen_schemes and s != "file" or remote.has_implementation(s)


def open_url(url: str):
    """A readable binary stream for a local path, ``pipe:cmd``, an fsspec URL (``s3://…``) or any URL
    webdataset's gopen understands (``http(s)://`` with curl)."""
    if Path(url).exists():
        return open(url, "rb")
    if _fsspec_url(url):
        return remote.open_url(url)
    import webdataset as wds

    return wds.gopen(url, "rb")


def read_manifest(shards_dir: str | Path) -> dict | None:
    """``manifest.json`` of a shard folder (a path or an fsspec URL), or None if there is none."""
    if isinstance(shards_dir, str) and _fsspec_url(shards_dir) and not shards_dir.endswith(".tar"):
        where, data = remote.join(shards_dir, "manifest.json"), remote.Store(shards_dir).read_bytes("manifest.json")
    else:
        p = Path(shards_dir) / "manifest.json"
        where, data = str(p), p.read_bytes() if p.is_file() else None
    if data is None:
        return None
    m = parse_json(data, where, "the manifest.json written by avsa-data shard (rerun it to rewrite the file)")
    if not isinstance(m, dict) or not isinstance(m.get("shards"), list):
        raise ValueError(f"{where}: not an avsa-data manifest (an object with a list 'shards'; docs/FORMAT.md)")
    return m


def has_manifest(shards: str | Path | Sequence[str]) -> bool:
    """Whether ``shards`` is a shard folder (a path or an fsspec URL) with ``manifest.json``."""
    return isinstance(shards, (str, Path)) and read_manifest(shards) is not None


def _manifest(shards_dir: str | Path) -> dict:
    m = read_manifest(shards_dir)
    if m is None:
        raise FileNotFoundError(f"{shards_dir}/manifest.json does not exist (is {shards_dir} an avsa-data shard "
                                f"folder?)")
    return m


def count_samples(shards_dir: str | Path, split: str | None = None) -> int:
    """Samples listed in ``manifest.json`` (optionally of one split)."""
    m = _manifest(shards_dir)
    return sum(s["num_samples"] for s in m["shards"] if split is None or s["split"] == split)


def shard_sizes(shards_dir: str | Path) -> dict[str, int]:
    """``{path of a shard: samples}`` from ``manifest.json`` of a shard folder (paths as :func:`expand_urls`)."""
    m = _manifest(shards_dir)
    if isinstance(shards_dir, str) and remote.is_url(shards_dir):
        return {remote.join(shards_dir, s["name"]): int(s["num_samples"]) for s in m["shards"]}
    return {str(Path(shards_dir) / s["name"]): int(s["num_samples"]) for s in m["shards"]}


def peek_meta(urls: Sequence[str]) -> dict:
    """``meta.json`` of the first sample of the first shard (to check options before starting workers)."""
    for u in urls:
        with open_url(u) as f:
            for s in iter_raw(u, f):
                return s.meta
    raise ValueError(f"the shards hold no samples: {list(urls)[:3]}")


def shard_urls(shards: str | Path | list[str], split: str) -> list[str]:
    """The shards of ``split`` (``{split}-NNNNNN.tar``) in a folder, glob, brace pattern or list."""
    urls = split_urls(expand_urls(shards if isinstance(shards, list) else str(shards)), split)
    if not urls:
        raise ValueError(f"no '{split}' shards ({split}-NNNNNN.tar) in {shards}")
    return urls


def split_sample_count(shards: str | Path, split: str) -> int | None:
    """Samples of ``split`` listed in ``SHARDS/manifest.json`` (a folder or an fsspec URL of one), or ``None``
    without a manifest."""
    try:
        m = read_manifest(str(shards))
        if m is None:
            return None
        return sum(int(s["num_samples"]) for s in m["shards"] if s["split"] == split)
    except (KeyError, ValueError, TypeError):
        return None


def split_video_count(shards: str | Path, split: str) -> int | None:
    """Videos with samples in ``split``, from ``SHARDS/manifest.json``; ``None`` without a manifest."""
    try:
        m = read_manifest(str(shards))
        if m is None:
            return None
        return sum(1 for v in m["videos"].values() if v.get("split") == split and v.get("samples", 0) > 0)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def viewpoint_sampler(shards: str | Path) -> str | None:
    """The ``--sampler`` the shards were made with (``manifest.json`` ``config.sample.sampler``), or ``None``
    when there is no manifest to say."""
    try:
        m = read_manifest(str(shards))
        return None if m is None else m["config"]["sample"]["sampler"]
    except (KeyError, ValueError, TypeError):
        return None
