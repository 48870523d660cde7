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
from typing import IO, TYPE_CHECKING, BinaryIO

from . import format as fmt

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
    file's length when known, and :data:`avsa_data.format.MAX_MEMBER_BYTES`), and the end: the archive must
    end with zero blocks and nothing but zeros after them (trailing garbage, or an archive cut short by a zero
    header, is an error). ustar, GNU (long names) and pax headers are understood. Entries that are not
    regular files (directories, links, FIFOs) are skipped, and reported to ``on_problem`` when given. Framing
    errors always raise :class:`ShardFormatError`: nothing after them can be trusted.
    """
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    seekable = wanted is not None and size is not None and _seekable(f)

    def fail(msg: str) -> ShardFormatError:
        return ShardFormatError(f"{where}: {msg}")

    def read(n: int, what: str) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = f.read(min(n - got, 1 << 24))
            if not chunk:
                raise fail(f"{what} is cut off at byte {offset + got} (truncated file)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    while True:
        block = f.read(_BLOCK)
        if len(block) < _BLOCK:
            more = f" ({len(block)} stray bytes)" if block else ""
            raise fail(f"ends at byte {offset + len(block)} without the end-of-archive blocks{more} (truncated?)")
        if block == _ZERO_BLOCK:
            _check_end(f, where, offset)
            return
        plain = _plain_ustar_file(block)
        if plain is not None:  # the common case, parsed without building a TarInfo
            ti = None
            name, length = plain
            extension = False
        else:
            try:
                ti = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise fail(f"invalid tar header at byte {offset} ({e}): garbage, or a damaged archive") from None
            extension = ti.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                                    tarfile.GNUTYPE_LONGLINK)
            name, length = ti.name, ti.size
        if not extension:  # a pax or GNU long-name header before this one applies to it
            name = long_name if long_name is not None else pax.get("path", name)
            if "size" in pax:
                length = int(pax["size"]) if pax["size"].isdigit() else -1
            long_name, pax = None, {}
        padded = -(-length // _BLOCK) * _BLOCK
        data_at = offset + _BLOCK
        if length < 0 or (size is not None and data_at + padded > size):
            left = max(0, (size or 0) - data_at)
            raise fail(f"member {name!r} at byte {offset} declares {length} bytes but the file has {left} left "
                       f"(a damaged header or a truncated file)")
        if length > fmt.MAX_MEMBER_BYTES:
            raise fail(f"member {name!r} at byte {offset} declares {length} bytes, more than the format's "
                       f"{fmt.MAX_MEMBER_BYTES} per member")
        offset = data_at
        if extension:
            payload = read(padded, f"the extended header at byte {data_at - _BLOCK}")[:length]
            if ti.type == tarfile.XHDTYPE:
                try:
                    pax = _parse_pax(payload)
                except ValueError:
                    raise fail(f"malformed pax header at byte {data_at - _BLOCK}") from None
            elif ti.type == tarfile.GNUTYPE_LONGNAME:
                long_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif ti is None or ti.type in _FILE_TYPES:
            if on_problem is not None and block != _canonical_or_none(name, length):
                on_problem(None, f"the header of member {name!r} at byte {data_at - _BLOCK} is not the deterministic "
                                 f"one avsa-data shard writes (damaged, or rewritten by another tool)")
            if wanted is not None and not wanted(name):
                if seekable:
                    f.seek(padded, os.SEEK_CUR)
                else:
                    _skip(read, padded, name)
                offset += padded
                yield name, None
                continue
            data = read(length, f"member {name!r}") if length else b""
            pad = read(padded - length, f"the padding of member {name!r}")
            if on_problem is not None and pad.count(0) != len(pad):
                on_problem(None, f"non-zero padding after member {name!r} (damaged bytes)")
            yield name, data
        else:
            _skip(read, padded, name)
            if on_problem is not None:  # readers skip it, as webdataset does: it holds no sample data
                kind = _TYPE_NAMES.get(ti.type, f"of tar type {ti.type!r}")
                on_problem(None, f"entry {name!r} is {kind}, not a regular file")
        offset += padded


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
