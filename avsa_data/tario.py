"""The tar layer of the shards, written and read in one place: the canonical member header, the writer's
sample members and fragment copies, and a streaming, validating ustar/GNU/pax reader (:func:`iter_tar`).

Standard library only (``tarfile`` for headers), so both the torch-free reader and the shard job use it.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, NamedTuple

from . import shard_format

if TYPE_CHECKING:  # the writer's input; the reader never imports the sample builder
    from .samples import EncodedSample

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
#: tar entry types that carry a file's bytes ("0", the old "\0", and "7", contiguous file).
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_TYPE_NAMES = {tarfile.DIRTYPE: "a directory", tarfile.FIFOTYPE: "a FIFO", tarfile.SYMTYPE: "a symlink",
               tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
               tarfile.BLKTYPE: "a block device"}


class ShardFormatError(ValueError):
    """A shard is unreadable, truncated, or a sample does not match docs/FORMAT.md (the message names the
    shard, the sample key and member where known, and what was expected)."""

    def __init__(self, message: str = "", *args: object):
        # PyTorch re-raises a DataLoader worker's error as ShardFormatError("Caught ShardFormatError in DataLoader
        # worker process N.\nOriginal Traceback …\n…ShardFormatError: <message>"): put <message> first again, so
        # a one-line report (the first line) still names the shard, the key and the member.
        if isinstance(message, str) and message.startswith("Caught ") and "\nOriginal Traceback" in message:
            first, last = message.splitlines()[0], message.rstrip().splitlines()[-1]
            where = first.removeprefix(f"Caught {type(self).__name__} ").rstrip(".")
            message = f"{last.split(f'{type(self).__name__}: ', 1)[-1]} ({where})\n{message}"
        super().__init__(message, *args)


#: ``on_problem(key or None, message)``: where :func:`iter_raw` reports a damaged entry it can read past.
ProblemSink = Callable[[str | None, str], None]




def iter_tar(f: IO[bytes], where: str, size: int | None = None, on_problem: ProblemSink | None = None,
             wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[str, bytes | None]]:
    """``(name, bytes)`` of each regular file of the tar read sequentially from ``f``; ``f`` need not seek.

    ``wanted`` (optional) is asked about each regular file's name: a member it refuses is passed over without
    being read (a seek when ``f`` is a regular file, else read and dropped) and yielded as ``(name, None)``,
    after the same header checks; its padding is not checked.

    The framing is checked block by block: each header's checksum and declared size (against ``size``, the
    file's length when known, and :data:`avsa_data.shard_format.MAX_MEMBER_BYTES`), and the end: the archive must
    end with zero blocks and nothing but zeros after them (trailing garbage, or an archive cut short by a zero
    header, is an error). ustar, GNU (long names) and pax headers are understood. Entries that are not
    regular files (directories, links, FIFOs) are skipped, and reported to ``on_problem`` when given. Framing
    errors always raise :class:`ShardFormatError`: nothing after them can be trusted.
    """
    stream = _TarStream(f, where)
    seekable = wanted is not None and size is not None and _seekable(f)
    names = _PendingNames()
    while (block := stream.header_block()) is not None:
        header = _parse_header(block, stream)
        if header.is_extension:
            entry = _entry(header.name, header.length, stream.offset)
        else:  # a pax or GNU long-name header before this one applies to it
            entry = names.apply(header, stream.offset)
        _check_declared_size(stream, entry, size)
        stream.offset += _BLOCK
        if header.is_extension:
            names.read(stream, header, entry)
        elif header.info is None or header.info.type in _FILE_TYPES:
            if on_problem is not None and block != _canonical_or_none(entry.name, entry.length):
                on_problem(None, f"the header of member {entry.name!r} at byte {entry.at} is not the deterministic "
                                 f"one avsa-data shard writes (damaged, or rewritten by another tool)")
            if wanted is not None and not wanted(entry.name):
                _pass_over(stream, entry, seekable)
                yield entry.name, None
            else:
                yield entry.name, _read_file(stream, entry, on_problem)
        else:
            _skip_other(stream, header.info, entry, on_problem)
        stream.offset += entry.padded


class _TarStream:
    """The tar file read sequentially, its name for the messages, and the byte offset reached (kept by
    :func:`iter_tar`: the start of the header, then of the data, of the entry being read)."""

    def __init__(self, f: IO[bytes], where: str) -> None:
        self.f, self.where, self.offset = f, where, 0

    def fail(self, msg: str) -> ShardFormatError:
        return ShardFormatError(f"{self.where}: {msg}")

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes from the offset (``what`` names them when the file ends first)."""
        chunks, got = [], 0
        while got < n:
            chunk = self.f.read(min(n - got, 1 << 24))
            if not chunk:
                raise self.fail(f"{what} is cut off at byte {self.offset + got} (truncated file)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def header_block(self) -> bytes | None:
        """The next 512-byte header block, or ``None`` at a valid end of the archive (:func:`_check_end`)."""
        block = self.f.read(_BLOCK)
        if len(block) < _BLOCK:
            more = f" ({len(block)} stray bytes)" if block else ""
            raise self.fail(f"ends at byte {self.offset + len(block)} without the end-of-archive blocks{more} "
                            f"(truncated?)")
        if block == _ZERO_BLOCK:
            _check_end(self.f, self.where, self.offset)
            return None
        return block


#: tar entry types whose data extends the header that follows (pax, GNU long name / long link).
_EXTENSION_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _Header(NamedTuple):
    """One header block as its fields say. ``info`` is ``None`` for a plain ustar regular file (read on the
    fast path, :func:`_plain_ustar_file`), else the parsed :class:`tarfile.TarInfo`."""

    info: tarfile.TarInfo | None
    name: str
    length: int
    #: a pax or GNU header, whose data extends the header that follows
    is_extension: bool = False


class _Entry(NamedTuple):
    """A tar entry's name and data length in bytes (a pax or GNU header before it applied), the byte offset of
    its header, and the length rounded up to whole 512-byte blocks (:func:`_entry`)."""

    name: str
    length: int
    at: int
    padded: int


def _entry(name: str, length: int, at: int) -> _Entry:
    return _Entry(name, length, at, -(-length // _BLOCK) * _BLOCK)


def _parse_header(block: bytes, stream: _TarStream) -> _Header:
    plain = _plain_ustar_file(block)
    if plain is not None:  # the common case, parsed without building a TarInfo
        return _Header(None, *plain)
    try:
        ti = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise stream.fail(f"invalid tar header at byte {stream.offset} ({e}): garbage, or a damaged archive") from None
    return _Header(ti, ti.name, ti.size, ti.type in _EXTENSION_TYPES)


class _PendingNames:
    """What pax and GNU long-name headers said about the entry that follows them."""

    def __init__(self) -> None:
        self.long_name: str | None = None
        self.pax: dict[str, str] = {}

    def apply(self, header: _Header, at: int) -> _Entry:
        """The entry of the (non-extension) ``header`` at byte ``at``, with what was pending; clears it."""
        name = self.long_name if self.long_name is not None else self.pax.get("path", header.name)
        length = header.length
        if "size" in self.pax:
            length = int(self.pax["size"]) if self.pax["size"].isdigit() else -1
        self.long_name, self.pax = None, {}
        return _entry(name, length, at)

    def read(self, stream: _TarStream, header: _Header, entry: _Entry) -> None:
        """Read the data of the extension ``header`` (``entry``: its own name and length) and keep what it says."""
        payload = stream.read(entry.padded, f"the extended header at byte {entry.at}")[:entry.length]
        if header.info.type == tarfile.XHDTYPE:
            try:
                self.pax = _parse_pax(payload)
            except ValueError:
                raise stream.fail(f"malformed pax header at byte {entry.at}") from None
        elif header.info.type == tarfile.GNUTYPE_LONGNAME:
            self.long_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")


def _check_declared_size(stream: _TarStream, entry: _Entry, size: int | None) -> None:
    """The entry's declared length fits the file (``size`` bytes when known) and the format's member limit."""
    data_at = entry.at + _BLOCK
    if entry.length < 0 or (size is not None and data_at + entry.padded > size):
        left = max(0, (size or 0) - data_at)
        raise stream.fail(f"member {entry.name!r} at byte {entry.at} declares {entry.length} bytes but the file has "
                          f"{left} left (a damaged header or a truncated file)")
    if entry.length > shard_format.MAX_MEMBER_BYTES:
        raise stream.fail(f"member {entry.name!r} at byte {entry.at} declares {entry.length} bytes, more than the "
                          f"format's {shard_format.MAX_MEMBER_BYTES} per member")


def _read_file(stream: _TarStream, entry: _Entry, on_problem: ProblemSink | None) -> bytes:
    """A regular file's data, after checking (when ``on_problem`` is given) that its padding is zeros."""
    data = stream.read(entry.length, f"member {entry.name!r}") if entry.length else b""
    pad = stream.read(entry.padded - entry.length, f"the padding of member {entry.name!r}")
    if on_problem is not None and pad.count(0) != len(pad):
        on_problem(None, f"non-zero padding after member {entry.name!r} (damaged bytes)")
    return data


def _pass_over(stream: _TarStream, entry: _Entry, seekable: bool) -> None:
    """Move past a regular file's data unread: a seek when the file can, else read and dropped."""
    if seekable:
        stream.f.seek(entry.padded, os.SEEK_CUR)
    else:
        _skip(stream.read, entry.padded, entry.name)


def _skip_other(stream: _TarStream, info: tarfile.TarInfo, entry: _Entry, on_problem: ProblemSink | None) -> None:
    """Read past an entry that is not a regular file (readers skip it, as webdataset does: it holds no sample
    data), and report it to ``on_problem`` when given."""
    _skip(stream.read, entry.padded, entry.name)
    if on_problem is not None:
        kind = _TYPE_NAMES.get(info.type, f"of tar type {info.type!r}")
        on_problem(None, f"entry {entry.name!r} is {kind}, not a regular file")


def _plain_ustar_file(block: bytes) -> tuple[str, int] | None:
    """``(name, size)`` of a ustar header of a regular file without a name prefix whose checksum is right (what
    ``avsa-data shard`` writes), read straight from the fields; ``None`` for anything else, which then goes
    through :meth:`tarfile.TarInfo.frombuf` (and its errors)."""
    if block[257:265] != b"ustar\x0000" or block[156] != 0x30 or block[345] != 0:
        return None
    try:
        size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        checksum = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return None
    if checksum != sum(block[:148]) + 256 + sum(block[156:]) or size < 0:
        return None
    return block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"), size


def canonical_tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """The tar header ``avsa-data shard`` writes for a member: mtime 0, uid/gid 0, mode 0644, no owner names
    (docs/FORMAT.md), so the same inputs give the same bytes. Defined here only: the writer and the reader's
    seek check (:func:`iter_tar`) both use it."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o644, 0, 0, "", ""
    return ti


def canonical_header(name: str, size: int) -> bytes:
    """The 512-byte ustar block of :func:`canonical_tarinfo` (names in UTF-8)."""
    return canonical_tarinfo(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def _canonical_or_none(name: str, size: int) -> bytes | None:
    try:
        return canonical_header(name, size)
    except ValueError:  # a name or size ustar cannot hold (then it came from a pax or GNU header)
        return None


def regular_file_size(f: IO[bytes]) -> int | None:
    """The length of ``f`` when it is a regular file read from its start (else ``None``: a pipe, a URL body)."""
    try:
        st = os.fstat(f.fileno())
        return st.st_size if stat.S_ISREG(st.st_mode) and f.tell() == 0 else None
    except (AttributeError, OSError, ValueError):
        return None


def _seekable(f: IO[bytes]) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _skip(read: Callable[[int, str], bytes], n: int, name: str) -> None:
    while n > 0:
        step = min(n, 1 << 24)
        read(step, f"entry {name!r}")
        n -= step


def _parse_pax(payload: bytes) -> dict[str, str]:
    """Records ``"%d %s=%s\n"`` of a pax extended header (``ValueError`` if malformed)."""
    out, pos = {}, 0
    while pos < len(payload):
        sp = payload.find(b" ", pos)
        n = int(payload[pos:sp]) if sp > pos else 0
        rec = payload[sp + 1 : pos + n]
        if n <= 0 or not rec.endswith(b"\n") or b"=" not in rec:
            raise ValueError("malformed pax record")
        k, v = rec[:-1].split(b"=", 1)
        out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
        pos += n
    return out


def _check_end(f: IO[bytes], where: str, offset: int) -> None:
    """After the first zero block at ``offset``: at least one more zero block, and only zeros to the end."""
    zeros = _BLOCK
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            at = offset + zeros + next(i for i, b in enumerate(chunk) if b)
            raise ShardFormatError(f"{where}: non-zero bytes at byte {at}, after the end-of-archive marker at byte "
                                   f"{offset}: trailing garbage, or an archive cut short by a zeroed header")
        zeros += len(chunk)
    if zeros < 2 * _BLOCK:
        raise ShardFormatError(f"{where}: the end-of-archive marker at byte {offset} is one block, not two "
                               f"(truncated?)")


def add_sample(f: BinaryIO, sample: EncodedSample) -> None:
    """Append one sample's members as ``{key}.{suffix}`` tar members with deterministic headers to the binary file
    ``f``, a tar archive written from its start. The blocks are what ``tarfile.TarFile.addfile`` writes (USTAR
    header, data, zero padding to 512 bytes), without its copying in 16 kB pieces; end the archive with
    :func:`end_of_archive`."""
    for suffix, data in sample.members:
        f.write(canonical_header(f"{sample.key}.{suffix}", len(data)))
        f.write(data)
        f.write(bytes(-len(data) % tarfile.BLOCKSIZE))


def fragment_runs(path: Path, wanted: set[str]) -> list[tuple[int, int]]:
    """Byte ranges ``[start, stop)`` of the tar blocks (header, data, zero padding) of the members of the samples
    ``wanted`` in the fragment at ``path``, in order, runs of neighbouring members joined.

    A shard holds these blocks byte for byte: its members carry the same deterministic headers
    (:func:`add_sample`), so assembly copies them (:func:`copy_runs`) instead of parsing and re-encoding every
    member (issue 17). tarfile still reads (and checksums) every header."""
    size = path.stat().st_size
    runs: list[tuple[int, int]] = []
    with tarfile.open(path, mode="r") as tar:
        for ti in tar:
            if ti.name.split(".", 1)[0] not in wanted:
                continue
            stop = ti.offset_data + -(-ti.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if stop > size:
                raise tarfile.ReadError(f"{path}: member {ti.name} runs past the end of the fragment")
            if runs and runs[-1][1] == ti.offset:
                runs[-1] = (runs[-1][0], stop)
            else:
                runs.append((ti.offset, stop))
    return runs


#: copy_file_range errors that mean "not here" (another file system, an old kernel): copy through memory instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM})


def copy_runs(src: BinaryIO, dst: BinaryIO, runs: list[tuple[int, int]]) -> int:
    """Append the byte ranges ``runs`` of the file ``src`` to the unbuffered file ``dst``; returns the bytes copied.

    The kernel copies them (``os.copy_file_range``: no trip through Python, and a reflink where the file system
    can) unless it cannot here; then they go through memory."""
    total = 0
    for start, stop in runs:
        off = start
        while off < stop:
            try:
                k = os.copy_file_range(src.fileno(), dst.fileno(), stop - off, off)
            except (AttributeError, OSError) as e:  # AttributeError: no copy_file_range on this OS
                if isinstance(e, OSError) and e.errno not in _NO_KERNEL_COPY:
                    raise
                src.seek(off)
                k = dst.write(src.read(stop - off))
            if not k:
                raise tarfile.ReadError(f"{src.name}: ends before byte {stop}")
            off += k
        total += stop - start
    return total


def end_of_archive(size: int) -> bytes:
    """What ``tarfile`` writes on closing an archive of ``size`` bytes: two zero blocks, then zeros up to a
    multiple of its record size."""
    end = size + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + (-end) % tarfile.RECORDSIZE)
