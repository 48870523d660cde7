"""Process hygiene of long jobs: one job per output folder, and pool workers that never outlive their parent.

- :func:`exclusive_lock` takes an advisory ``fcntl.flock`` lock on ``FOLDER/.lock`` for the whole job and
  writes the holder's pid into it. A second job on the same folder fails at once with a message naming that
  pid. The kernel drops the lock when the holder (and any forked child still holding the descriptor) exits,
  so a killed job never leaves a stale lock; the ``.lock`` file itself stays (it is empty of meaning).
- :func:`usable_cpus`: the CPU cores this process may run on (its affinity mask where the OS has one), the
  one count that worker defaults and thread budgets are derived from.
- :func:`die_with_parent` is a process-pool *initializer*: the worker leaves Ctrl-C to its parent; on Linux it
  asks the kernel to SIGKILL the worker when its parent exits (``prctl(PR_SET_PDEATHSIG)``), and on every
  platform a watchdog thread exits the worker within :data:`WATCHDOG_SECONDS` once the parent is gone (``kill -9``
  of the main process included).
- :func:`handle_stop_signals` turns SIGINT (Ctrl-C) and SIGTERM into a clean stop: at the end of the training
  step under way inside :func:`steps_finish_first` (the loop then checkpoints and raises :class:`Interrupted`),
  at once elsewhere; the commands end with exit status 130 either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .fsutil import pid_alive

LOCK_NAME = ".lock"
#: How often a pool worker checks that its parent is still alive (seconds).
WATCHDOG_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def usable_cpus() -> int:
    """CPU cores this process may run on: its affinity mask (Linux: respects ``taskset`` and container cpusets),
    else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class FolderBusy(Exception):
    """Another job holds the folder's lock; one-line message naming its pid."""


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str = "avsa-data shard job", name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the duration of the ``with`` block; ``name``
    is the lock file's (one per run when several runs share a folder, as the downstream evaluations do)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise FolderBusy(f"{folder} is in use by another {what} (pid {holder}); wait for it to finish or "
                             f"stop it, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (forked children holding the descriptor keep it until they exit)


def die_with_parent(parent_pid: int) -> None:
    """Initializer of a pool worker: exit as soon as ``parent_pid`` (the job's main process) is gone, and leave
    Ctrl-C to it (a terminal sends SIGINT to the whole process group: the main process stops the pool, and a
    worker interrupted in the middle of a decoder would only print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (handle_stop_signals): stopped at once
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    ppid = os.getppid()
    if not pid_alive(parent_pid):  # the parent died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != ppid or not pid_alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


# ------------------------------------------------------------------------------------------ stop signals


class Interrupted(Exception):
    """The command was stopped by SIGINT or SIGTERM (exit status 130); a rerun of the same command resumes."""

    def __init__(self, step: int | None = None):
        self.step = step
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"interrupted{where} — rerun the same command to resume")


class _StopState:
    """What :func:`handle_stop_signals` shares with the training loops (avsa_train.fit, avsa_train.pretrain)."""

    def __init__(self) -> None:
        self.installed = False
        self.pid = 0  # the process that installed the handler (forked workers inherit it and leave stops to it)
        self.deferring = 0  # nesting depth of steps_finish_first()
        self.requested: int | None = None  # the signal that asked for a stop


_STOP = _StopState()


def _on_signal(signum: int, frame) -> None:
    if os.getpid() != _STOP.pid:  # a forked worker (a DataLoader's): Ctrl-C is its parent's; SIGTERM ends it
        if signum == signal.SIGTERM:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return
    if _STOP.deferring and _STOP.requested is None:
        _STOP.requested = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint (again: stop at "
              f"once)", file=sys.stderr, flush=True)
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the command: at the end of the step under way inside
    :func:`steps_finish_first`, at once elsewhere (as :class:`KeyboardInterrupt`). A no-op outside the main
    thread (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread() or _STOP.installed:
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _STOP.installed, _STOP.requested, _STOP.pid = True, None, os.getpid()
    try:
        for s in old:
            signal.signal(s, _on_signal)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _STOP.installed, _STOP.requested = False, None


@contextlib.contextmanager
def steps_finish_first() -> Iterator[None]:
    """Inside this block a first stop signal is noted (:func:`stop_requested`) instead of raising: the loop
    finishes its step, checkpoints and raises :class:`Interrupted`."""
    _STOP.deferring += 1
    try:
        yield
    finally:
        _STOP.deferring -= 1


def stop_requested() -> bool:
    """Whether SIGINT or SIGTERM asked the run to stop (always ``False`` without :func:`handle_stop_signals`)."""
    return _STOP.requested is not None
