"""A small torch-free shard reader that yields numpy arrays (for research outside PyTorch).

>>> from avsa_data.reader import iter_samples
>>> for s in iter_samples(["shards/train-000000.tar"]):
...     s.meta["viewpoints"][0], s.clip(0, 0).shape, s.audio(0, 0, "foa").shape
({'azimuth': ..., ...}, (8, 112, 112, 3), (4, 24000))

The same tars are plain WebDataset shards: ``webdataset.WebDataset(url).decode()`` reads them too
(see docs/FORMAT.md). This module only uses the standard library's ``tarfile`` (and, for ``s3://…`` style
URLs, the optional ``fsspec``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from . import codecs, remote, shard_format
from .tario import ProblemSink, ShardFormatError, iter_tar, regular_file_size

__all__ = ["ProblemSink", "RawSample", "ShardFormatError", "decode_meta", "iter_raw", "iter_samples", "parse_meta"]

@dataclass
class RawSample:
    """One sample: its key and the raw bytes of each member (suffix → bytes).

    Accessors decode with bounds taken from the validated ``meta.json`` (:func:`avsa_data.shard_format.meta_problems`,
    :func:`avsa_data.shard_format.member_shape`): a member whose header disagrees with meta is refused before it is
    decoded, and every error is a :class:`ShardFormatError` naming the shard, the key and the member.
    """

    key: str
    members: dict[str, bytes]
    shard: str = ""

    def where(self, member: str | None = None) -> str:
        """``shard: key[.member]`` for messages."""
        return f"{self.shard}: {self.key}" + (f".{member}" if member else "")

    @cached_property
    def meta(self) -> dict:
        """The sample's ``meta.json``, decoded once and checked against the schema (types and ranges)."""
        meta, problems = parse_meta(self.members.get(shard_format.meta_member()), strict=False)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise ShardFormatError(f"{self.where(shard_format.meta_member())}: {problems[0]}{more}")
        return meta

    @property
    def num_views(self) -> int:
        return len(self.meta["viewpoints"])

    def viewpoint(self, view: int) -> dict:
        """``meta.viewpoints[view]`` (``azimuth``, ``elevation``, ``hfov``, … in degrees); a clear error for an
        index outside the bank (a negative one would silently count from its end)."""
        if not 0 <= view < self.num_views:
            raise ShardFormatError(f"{self.where()}: no viewpoint {view} (the bank has {self.num_views})")
        return self.meta["viewpoints"][view]

    def audio_viewpoint(self, view: int) -> dict:
        """The viewpoint whose audio render goes with the crop of viewpoint ``view``: that same viewpoint for a
        shard sample (:meth:`viewpoint`). A sample presented by an evaluation may pair a crop with audio
        rendered at another viewpoint (``avsa_train.tasks.misalign``); readers that render audio ask this."""
        return self.viewpoint(view)

    def member(self, name: str) -> bytes:
        """The raw bytes of member ``name`` (e.g. ``m00.v01.jpg``); a clear error if the sample lacks it."""
        data = self.members.get(name)
        if data is None:
            raise ShardFormatError(f"{self.where()}: member {name} missing (docs/FORMAT.md: a sample with this "
                                   f"meta.json has {', '.join(shard_format.expected_members(self.meta)[:4])}, …)")
        return data

    def decode(self, name: str) -> NDArray:
        """Member ``name`` decoded and checked against the shape meta declares: JPEG clip ``[T, H, W, 3]``
        uint8, equirect ``[H, W, 3]`` uint8, FLAC ``[C, n]`` float32 (not yet scaled by ``audio_scale``), PNG
        ``[H, W]`` uint8/uint16."""
        data = self.member(name)
        try:
            return self.decode_checked(name, data)
        except codecs.MemberError as e:
            raise ShardFormatError(f"{self.where(name)}: {e}") from None

    def decode_checked(self, name: str, data: bytes | None = None) -> NDArray:
        """:meth:`decode` raising a bare :class:`avsa_data.codecs.MemberError` (the caller names the member)."""
        meta = self.meta
        data = self.members[name] if data is None else data
        try:
            shape = shard_format.member_shape(meta, name)
        except (ValueError, IndexError, KeyError):
            raise codecs.MemberError("unknown member type (docs/FORMAT.md lists the suffixes)") from None
        if name.endswith(".jpg"):
            if ".equirect." in name:
                return codecs.decode_jpeg(data, shape)
            return codecs.decode_clip_jpeg(data, meta["frames_per_clip"], shape)
        if name.endswith(".flac"):
            return codecs.decode_flac(data, shape, meta["sr"], meta["audio_bits"])[0]
        return codecs.decode_png(data, shape)

    def clip(self, view: int, moment: int = 0) -> NDArray[np.uint8]:
        """``[T, H, W, 3]`` uint8 RGB crop clip of viewpoint ``view``."""
        return self.decode(shard_format.clip_member(moment, view))

    def audio(self, view: int, moment: int = 0, render: str = "foa") -> NDArray[np.float32]:
        """``[C, n]`` float32 render of viewpoint ``view`` (foa: W,Y,Z,X rotated; mono; stereo: L,R).

        A render that was not precomputed (``--renders``) is computed from the unrotated FOA and the viewpoint by
        :func:`avsa_data.renders.render_at`, as the shard builder computes it.
        """
        name = shard_format.render_member(moment, view, render)
        if name in self.members:
            return self.decode(name) * np.float32(self.meta["audio_scale"])
        viewpoint = self.viewpoint(view)  # a view outside the bank is refused before the FOA is decoded
        from .renders import render_at  # imported when first needed: it brings in avsa_data.binaural

        return render_at(self.foa(moment), self.meta, viewpoint, render)

    def foa(self, moment: int = 0) -> NDArray[np.float32]:
        """``[4, n]`` float32 unrotated ambiX FOA (W, Y, Z, X) of the moment."""
        return self.decode(shard_format.foa_member(moment)) * np.float32(self.meta["audio_scale"])

    def events(self, view: int | None = None, moment: int = 0) -> list[dict]:
        """Sound events active at the moment (``meta.events``; empty without event labels): with ``view`` None the
        world directions, else directions relative to viewpoint ``view`` plus ``in_view``
        (:func:`avsa_data.events.view_events`)."""
        from .events import view_events

        return view_events(self.meta, view, moment)

    def masks(self, view: int, moment: int = 0, lowres: bool = False) -> tuple[NDArray, NDArray[np.float32]] | None:
        """(class ids ``[H, W]``, confidence ``[H, W]`` in [0, 1]) or ``None`` if the sample has no labels."""
        if shard_format.seg_member(moment, view, lowres) not in self.members and not self.meta["labels"]["present"]:
            return None
        conf = self.decode(shard_format.conf_member(moment, view, lowres))
        if conf.dtype != np.uint8:
            raise ShardFormatError(f"{self.where(shard_format.conf_member(moment, view, lowres))}: confidence is "
                                   f"{conf.dtype}, expected 8-bit")
        return self.decode(shard_format.seg_member(moment, view, lowres)), codecs.confidence_from_uint8(conf)


def parse_meta(data: bytes | None, strict: bool = True) -> tuple[dict | None, list[str]]:
    """Decode a ``meta.json`` member and check it (:func:`avsa_data.shard_format.meta_problems`): ``(meta or None,
    problems)``; the meta is usable for sizing buffers only when there are no problems."""
    meta, problem = decode_meta(data)
    return (meta, shard_format.meta_problems(meta, strict)) if problem is None else (None, [problem])


def decode_meta(data: bytes | None) -> tuple[object, str | None]:
    """A ``meta.json`` member decoded, not yet checked against the schema: ``(meta, None)``, or ``(None, why)``
    when it is missing, too large or not JSON."""
    if data is None:
        return None, "meta.json missing (every sample starts with one)"
    if len(data) > shard_format.MAX_META_BYTES:
        return None, f"meta.json is {len(data)} bytes, more than the format's {shard_format.MAX_META_BYTES}"
    try:
        return codecs.decode_json(data), None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"meta.json is not UTF-8 JSON ({type(e).__name__}: {str(e).splitlines()[0][:120]})"



def iter_raw(path: str | Path, fileobj: IO[bytes] | None = None, size: int | None = None,
             on_problem: ProblemSink | None = None, wanted: Callable[[str], bool] | None = None,
             ) -> Iterator[RawSample]:
    """Group a tar's members into samples by key (members of a sample are contiguous).

    ``fileobj`` may be a non-seekable stream (a pipe, an HTTP body); ``path`` then only names it in errors,
    and ``size`` (its length in bytes, when known) lets declared member sizes be checked against it.
    Member names must be ``{key}.{suffix}`` with a ``{video_id}/{moment:06d}`` key; names that are not (absolute
    or ``..`` paths, …), a member repeated within a sample and a key that comes back after other samples are
    damage: reported to ``on_problem(key, message)`` and skipped (read on), or, without ``on_problem``, raised
    as :class:`ShardFormatError`. Entries that are not regular files are only reported. Damage to the tar
    framing always raises.

    ``wanted`` (optional) is asked about each member's suffix (``m00.v01.jpg``): the members it refuses are
    passed over unread (:func:`iter_tar`) and left out of the samples. A reader that needs only part of each
    sample (a training loader) reads only that part; checking the whole sample is ``avsa-data verify``'s job.
    """
    path = str(path)
    if fileobj is None:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise ShardFormatError(f"{path}: cannot open ({e.strerror or e})") from e
        with f:
            yield from iter_raw(path, f, os.fstat(f.fileno()).st_size, on_problem, wanted)
        return

    if size is None:
        size = regular_file_size(fileobj)

    def problem(key: str | None, msg: str) -> None:
        if on_problem is None:
            raise ShardFormatError(f"{path}: {key + ': ' if key else ''}{msg}")
        on_problem(key, msg)

    by_name = None if wanted is None else (lambda name: wanted(_key_and_suffix(name)[1]))
    try:
        yield from _grouped(iter_tar(fileobj, path, size, on_problem, by_name), path, problem)
    except OSError as e:
        raise ShardFormatError(f"{path}: read error ({e})") from e


def _grouped(entries: Iterable[tuple[str, bytes | None]], path: str,
             problem: Callable[[str | None, str], None]) -> Iterator[RawSample]:
    """The samples of the tar ``path`` from its ``(member name, bytes or None when not wanted)`` entries, in
    order: contiguous members with one key. Bad names, repeated members and keys that come back are reported to
    ``problem(key, message)`` (:func:`iter_raw`) and skipped."""
    key, members, done = None, {}, set()
    for name, data in entries:
        k, suffix = _key_and_suffix(name)
        if not shard_format.KEY_RE.match(k) or not shard_format.SUFFIX_RE.match(suffix):
            problem(None, f"member name {name!r} is not '{{video_id}}/{{moment:06d}}.{{suffix}}' "
                          f"(absolute and '..' paths are refused); skipped")
            continue
        if k != key:
            if key is not None:
                yield RawSample(key, members, path)
                done.add(key)
            if k in done:
                problem(k, "duplicate sample key: its members come back after other samples")
            key, members = k, {}
        if data is None:  # not wanted: passed over unread
            continue
        if suffix in members:
            problem(k, f"duplicate member {suffix}; the first one is kept")
            continue
        members[suffix] = data
    if key is not None:
        yield RawSample(key, members, path)


def _key_and_suffix(name: str) -> tuple[str, str]:
    """A member name split at the first dot of its last path part: ``("vid/000001", "m00.v01.jpg")``."""
    dot = name.find(".", name.rfind("/") + 1)
    return (name[:dot], name[dot + 1 :]) if dot >= 0 else (name, "")


def iter_samples(urls: Iterable[str | Path] | str | Path) -> Iterator[RawSample]:
    """Samples of one or many shard files, or of every ``{split}-NNNNNN.tar`` shard in a directory, in order.

    Each may also be an fsspec URL (``s3://bucket/prefix`` or ``…/train-000000.tar``; needs ``fsspec`` and the
    scheme's implementation, see :mod:`avsa_data.remote`): a URL that does not end in ``.tar`` is a folder.
    """
    if isinstance(urls, (str, Path)):
        if remote.is_url(urls):
            urls = [urls] if urls.endswith(".tar") else [remote.join(urls, n) for n in remote.Store(urls).shard_names()]
        else:
            p = Path(urls)
            urls = sorted(q for q in p.glob("*.tar") if shard_format.SHARD_RE.match(q.name)) if p.is_dir() else [p]
    for u in urls:
        if remote.is_url(u):
            with remote.open_url(u) as f:
                yield from iter_raw(u, f)
        else:
            yield from iter_raw(u)
