"""Errors of the shard job: bad options, and the environment errors that stop it (disk full, out of memory…),
which are never recorded against an input."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import media
from ..options import OptionError


class ShardJobError(Exception):
    """The job as a whole cannot run (bad arguments, config mismatch); one-line message."""


class ShardOptionError(ShardJobError, OptionError):
    """An option of the job is refused (another configuration or --src than the output's, a --src or --list that
    does not exist, a bad --labels setting); one line naming it (exit status 2)."""


class JobStopped(ShardJobError):
    """The environment stopped the job (disk full, out of memory, …); nothing was recorded against any input,
    and rerunning the same command resumes. One-line message."""


#: errno values that describe the machine, never the input: the job stops and the rerun retries.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
                                errno.EIO, errno.EROFS, errno.EAGAIN})


def _gb_free(path: str | os.PathLike) -> str:
    for p in (Path(path), *Path(path).parents):
        with contextlib.suppress(OSError):
            return f"{shutil.disk_usage(p).free / 1e9:.1f} GB"
    return "unknown"


def environment_stop(e: BaseException, where: str) -> JobStopped | None:
    """The one-line :class:`JobStopped` for an environment error met while working on ``where`` (a file), or
    None when ``e`` is something else (bad input, a bug, an interrupt)."""
    if isinstance(e, JobStopped):
        return e
    if isinstance(e, MemoryError):
        return JobStopped(f"out of memory working on {where}: lower --workers (or --max-resolution) and rerun")
    if isinstance(e, media.FfmpegKilled):
        return JobStopped(f"{e} (out of memory? the OOM killer?): lower --workers and rerun")
    if not isinstance(e, OSError) or e.errno is None:
        return None
    file = e.filename or where
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return JobStopped(f"disk full writing {file} ({_gb_free(file)} free there): free space and rerun to "
                          f"resume (a job needs about twice the size of its shards)")
    if e.errno == errno.EFBIG:
        return JobStopped(f"file too large writing {file} (a file-size limit, ulimit -f, or the filesystem's "
                          f"maximum): raise it or use a smaller --shard-size, then rerun")
    if e.errno == errno.ENOMEM:
        return JobStopped(f"out of memory working on {where}: lower --workers (or --max-resolution) and rerun")
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return JobStopped(f"too many open files working on {where}: raise the limit (ulimit -n) or lower --workers, "
                          f"then rerun")
    return JobStopped(f"{e.strerror or type(e).__name__} on {file}: fix it and rerun to resume")


@contextlib.contextmanager
def stop_on_environment_errors(where: str) -> Iterator[None]:
    """Turn an environment error raised in the block into :class:`JobStopped`."""
    try:
        yield
    except ShardJobError:
        raise
    except (OSError, MemoryError, media.FfmpegKilled) as e:
        stop = environment_stop(e, where)
        if stop is None:
            raise
        raise stop from None
