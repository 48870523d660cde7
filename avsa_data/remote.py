"""Shard folders on object storage (``s3://``, ``gs://``, ``az://``, … and ``file://`` / ``memory://``) via fsspec.

``fsspec`` is optional (``pip install 'avsa[cloud]'``) and imported only when a URL is used; each storage
backend needs its own fsspec implementation (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``, ``adlfs`` for
``az://``), which users install themselves. Credentials and endpoints come from the backend's usual sources
(environment, config files) or fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` environment variables.

A :class:`Store` is one "folder" (prefix) of such a filesystem. :meth:`Store.put` publishes a complete local
file under its final name without ever exposing a partial object there: object stores make a single upload
visible only once it is complete; on other filesystems (``file://``, ``sftp://``, ``hdfs://``, …) the file is
uploaded to a hidden temporary name in the same folder and renamed.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from pathlib import Path
from typing import IO

from . import shard_format
from .fsutil import parse_json

_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
#: Protocols whose single upload is atomic (the object appears only when complete): no temp name + rename.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "memory"})
#: Hidden temporary names of uploads in progress (same pattern as :func:`avsa_data.fsutil.tmp_path`).
TMP_RE = re.compile(r"^\..+\.\d+\.tmp$")


class StorageError(ValueError):
    """A URL cannot be used (no fsspec, no implementation for its scheme, an I/O error); one-line message.
    (A ValueError, so the command-line tools report it on one line.)"""


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://…`` (``s3://b/p``, ``file:///x``); False for local paths and ``pipe:`` commands."""
    return isinstance(path, str) and _URL_RE.match(path) is not None


def scheme(url: str) -> str:
    m = _URL_RE.match(url)
    return m.group("scheme").lower() if m else ""


def filesystem(url: str):
    """``(fsspec filesystem, path inside it)`` of ``url``, or a :class:`StorageError` saying what to install."""
    s = scheme(url)
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError as e:
        raise StorageError(f"{s}:// URLs need fsspec: pip install 'avsa[cloud]' (or pip install fsspec)") from e
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        impl = known_implementations.get(s, {}).get("class", "")
        pkg = impl.split(".", 1)[0] if impl and not impl.startswith("fsspec.") else ""
        hint = f"{pkg}: pip install {pkg}" if pkg else f"a package fsspec could not import ({e})"
        raise StorageError(f"{s}:// needs {hint}".splitlines()[0]) from e
    except ValueError as e:
        known = s in known_implementations or s in fsspec.available_protocols()
        what = f"{e}" if known else f"{s}:// is not a protocol fsspec knows ({e})"
        raise StorageError(f"{url}: {what}".splitlines()[0]) from e


def has_implementation(scheme: str) -> bool:
    """Whether fsspec and its implementation of ``scheme`` are installed (imports the implementation)."""
    try:
        from fsspec.registry import get_filesystem_class
    except ImportError:
        return False
    try:
        get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return False
    return True


def _protocols(fs) -> set[str]:
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


def join(url: str, name: str) -> str:
    """``url/name`` (one slash)."""
    return f"{url.rstrip('/')}/{name}"


def open_url(url: str) -> IO[bytes]:
    """A binary reader of one object (a shard) at ``url``."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, "rb")
    except OSError as e:
        raise StorageError(f"{url}: {e}".splitlines()[0]) from e


def default_staging(url: str) -> Path:
    """Where a shard job for ``url`` keeps its per-video work without ``--staging``: a folder in the system temp
    directory named after the URL, so that rerunning the same command finds it and resumes."""
    url = url.rstrip("/")
    tail = re.sub(r"[^A-Za-z0-9_-]+", "_", url.rsplit("/", 1)[-1]).strip("_")[:40] or "out"
    return Path(tempfile.gettempdir()) / "avsa-staging" / f"{tail}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class Store:
    """One folder (prefix) ``url`` of an fsspec filesystem, holding a shard job's output."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.root = self.root.rstrip("/") or "/"
        self.atomic_put = bool(_protocols(self.fs) & OBJECT_STORES)

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def _error(self, what: str, e: Exception) -> StorageError:
        return StorageError(f"{join(self.url, what)}: {type(e).__name__}: {e}".splitlines()[0])

    def url_of(self, name: str) -> str:
        return join(self.url, name)

    def listing(self) -> dict[str, int]:
        """``{name: size}`` of the files directly in the folder (empty if it does not exist)."""
        try:
            self.fs.invalidate_cache(self.root)
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise self._error("", e) from e
        return {posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0)
                for e in entries if e.get("type") == "file"}

    def shard_names(self) -> list[str]:
        """The ``{split}-NNNNNN.tar`` shards in the folder, sorted."""
        return sorted(n for n in self.listing() if shard_format.SHARD_RE.match(n))

    def read_bytes(self, name: str) -> bytes | None:
        """The object ``name``, or None if it does not exist."""
        try:
            return self.fs.cat_file(self._path(name))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._error(name, e) from e

    def read_json(self, name: str, what: str | None = None) -> dict | None:
        """The JSON object ``name``, or None if it does not exist; a malformed or truncated one raises a one-line
        ``ValueError`` naming its URL and ``what`` was expected (default: the file avsa-data shard writes)."""
        data = self.read_bytes(name)
        if data is None:
            return None
        return parse_json(data, join(self.url, name), what or f"the {name} written by avsa-data shard")

    def open(self, name: str) -> IO[bytes]:
        try:
            return self.fs.open(self._path(name), "rb")
        except OSError as e:
            raise self._error(name, e) from e

    def put(self, local: Path, name: str) -> None:
        """Publish the complete local file ``local`` as ``name``; a reader never sees a partial ``name``."""
        final = self._path(name)
        try:
            if self.atomic_put:
                self.fs.put_file(str(local), final)
                return
            self.fs.makedirs(self.root, exist_ok=True)
            tmp = self._path(f".{name}.{os.getpid()}.tmp")
            self.fs.put_file(str(local), tmp)
            self.fs.mv(tmp, final)
        except OSError as e:
            raise self._error(name, e) from e

    def remove(self, names) -> None:
        """Delete the objects ``names`` (missing ones are ignored)."""
        for name in names:
            try:
                self.fs.rm_file(self._path(name))
            except FileNotFoundError:
                pass
            except OSError as e:
                raise self._error(name, e) from e
