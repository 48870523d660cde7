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

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from . import codecs, remote
from . import format as fmt


class ShardFormatError(Exception):
    """A shard is unreadable, truncated, or a sample does not match docs/FORMAT.md."""


@dataclass
class RawSample:
    """One sample: its key and the raw bytes of each member (suffix → bytes)."""

    key: str
    members: dict[str, bytes]
    shard: str = ""

    @cached_property
    def meta(self) -> dict:
        """The sample's ``meta.json`` (decoded once)."""
        return codecs.decode_json(self.members[fmt.meta_member()])

    @property
    def num_views(self) -> int:
        return len(self.meta["viewpoints"])

    def clip(self, view: int, moment: int = 0) -> NDArray[np.uint8]:
        """``[T, H, W, 3]`` uint8 RGB crop clip of viewpoint ``view``."""
        return codecs.decode_clip_jpeg(self.members[fmt.clip_member(moment, view)], self.meta["frames_per_clip"])

    def audio(self, view: int, moment: int = 0, render: str = "foa") -> NDArray[np.float32]:
        """``[C, n]`` float32 render of viewpoint ``view`` (foa: W,Y,Z,X rotated; mono; stereo: L,R).

        A render that was not precomputed (``--renders``) is computed from the unrotated FOA with the same
        avsa_data functions the shard builder uses.
        """
        name = fmt.render_member(moment, view, render)
        if name in self.members:
            a, _ = codecs.decode_flac(self.members[name])
            return a * np.float32(self.meta["audio_scale"])
        from .samples import render_audio_from_meta

        return render_audio_from_meta(self.foa(moment), self.meta, view, render)

    def foa(self, moment: int = 0) -> NDArray[np.float32]:
        """``[4, n]`` float32 unrotated ambiX FOA (W, Y, Z, X) of the moment."""
        a, _ = codecs.decode_flac(self.members[fmt.foa_member(moment)])
        return a * np.float32(self.meta["audio_scale"])

    def events(self, view: int | None = None, moment: int = 0) -> list[dict]:
        """Sound events active at the moment (``meta.events``; empty without event labels): with ``view`` None the
        world directions, else directions relative to viewpoint ``view`` plus ``in_view``
        (:func:`avsa_data.events.view_events`)."""
        from .events import view_events

        return view_events(self.meta, view, moment)

    def masks(self, view: int, moment: int = 0, lowres: bool = False) -> tuple[NDArray, NDArray[np.float32]] | None:
        """(class ids ``[H, W]``, confidence ``[H, W]`` in [0, 1]) or ``None`` if the sample has no labels."""
        seg = self.members.get(fmt.seg_member(moment, view, lowres))
        if seg is None:
            return None
        conf = codecs.decode_png(self.members[fmt.conf_member(moment, view, lowres)])
        return codecs.decode_png(seg), codecs.confidence_from_uint8(conf)


def iter_raw(path: str | Path, fileobj: IO[bytes] | None = None) -> Iterator[RawSample]:
    """Group a tar's members into samples by key (members of a sample are contiguous).

    ``fileobj`` may be a non-seekable stream (a pipe, an HTTP body); ``path`` then only names it in errors.
    """
    path = str(path)
    try:
        tar = tarfile.open(path, "r") if fileobj is None else tarfile.open(fileobj=fileobj, mode="r|*")
    except (tarfile.TarError, OSError) as e:
        raise ShardFormatError(f"{path}: not a readable tar ({e})") from e
    key, members = None, {}
    try:
        with tar:
            for ti in tar:
                if not ti.isfile():
                    continue
                base = ti.name
                slash = base.rfind("/")
                dot = base.find(".", slash + 1)
                if dot < 0:
                    raise ShardFormatError(f"{path}: member {ti.name!r} has no extension")
                k, suffix = base[:dot], base[dot + 1 :]
                if k != key:
                    if key is not None:
                        yield RawSample(key, members, path)
                    key, members = k, {}
                f = tar.extractfile(ti)
                data = f.read() if f else b""
                if len(data) != ti.size:
                    raise ShardFormatError(f"{path}: member {ti.name} is truncated")
                members[suffix] = data
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardFormatError(f"{path}: corrupt or truncated tar ({e})") from e
    if key is not None:
        yield RawSample(key, members, path)


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
            urls = sorted(q for q in p.glob("*.tar") if fmt.SHARD_RE.match(q.name)) if p.is_dir() else [p]
    for u in urls:
        if remote.is_url(u):
            with remote.open_url(u) as f:
                yield from iter_raw(u, f)
        else:
            yield from iter_raw(u)
