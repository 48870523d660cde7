"""Run folders of the avsa-train commands, as safe as a shard job's output folder (:mod:`avsa_data.shards`).

A *run* is one command's work in its ``--out`` folder, under a name: ``pretrain`` and ``ablate`` (the folder is
the run), ``eval_avc``, ``eval_avsa``, ``segment`` and ``finetune`` (evaluations of one checkpoint may share a
folder). Its record ``OUT/NAME.run.json`` holds the command, the options that decide its result and its status
(``running`` or ``finished``). Given an ``--out`` that holds a run of its name, a command (:meth:`RunFolder.decide`)

* with the same options continues it where it stopped, or, when it is finished, says so and exits 0;
* with other options is refused in one line naming them (:class:`RunConflict`, exit status 2), unless
  ``--overwrite`` is given, which removes that run's files (only them) and starts over. A run that has made no
  progress yet (no checkpoint, no result) accepts other options: a command that stopped on a mistake never
  blocks the corrected one.

One job at a time per run: an ``fcntl`` lock on ``OUT/.NAME.lock`` (:func:`avsa_data.jobcontrol.exclusive_lock`);
temporary files of a killed writer are removed when the next one starts (:func:`avsa_data.fsutil.remove_stale_tmp`).

Stopping (:func:`avsa_data.jobcontrol.handle_stop_signals`, installed by every command): SIGINT (Ctrl-C) and
SIGTERM let the training step under way finish; the run then writes its checkpoint atomically and ends with
:class:`~avsa_data.jobcontrol.Interrupted`: exit status 130 and "interrupted at step N — rerun the same command to
resume". A second signal stops at once, and so does the first outside a training loop (loading data,
evaluating), where a rerun redoes the little that is lost. A checkpoint is also written every
:data:`CHECKPOINT_MINUTES` minutes of training, which bounds what a ``kill -9`` can lose.

Downstream training (:class:`TrainingState`): the trained modules, the optimiser, the learning-rate schedule, the
loop's position (:class:`avsa_train.fit.FitState`: epochs done, batches done in the current one, its running sums,
the history) and the torch RNG go to ``OUT/NAME.state.pt``, so a rerun continues an interrupted epoch exactly
where it stopped. Where a command validates during training, the best model so far is kept in ``OUT/NAME.best.pt``.
Torch is imported only by :class:`TrainingState`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsa_data.fsutil import atomic_write, read_json, remove_stale_tmp, write_json
from avsa_data.jobcontrol import Interrupted, exclusive_lock, steps_finish_first, stop_requested
from avsa_data.options import OptionError, format_value, plural

__all__ = ["CHECKPOINT_MINUTES", "FINISHED", "NEW", "RESUME", "Cadence", "Interrupted", "RunConflict", "RunFolder",
           "TrainingState", "differences", "resumable", "steps_finish_first", "stop_requested"]

#: Minutes of training between time-based checkpoints: what a ``kill -9`` (or a power cut) can lose at most.
CHECKPOINT_MINUTES = 10.0
#: Decisions of :meth:`RunFolder.decide`.
NEW, RESUME, FINISHED = "new", "resume", "finished"


class RunConflict(OptionError):
    """The run folder holds a run made with other options (one line; exit status 2)."""


def json_values(obj: Any) -> Any:
    """``obj`` as JSON reads it back (tuples → lists, paths → strings), so saved and fresh options compare."""
    return json.loads(json.dumps(obj, default=str))


def differences(saved: dict, asked: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The option names whose values differ between a run's ``saved`` options and those ``asked`` now."""
    keys = sorted((set(saved) | set(asked)) - set(ignore))
    return [k for k in keys if json_values(saved.get(k)) != json_values(asked.get(k))]


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


@dataclass
class RunFolder:
    """One run of ``command`` in ``out``, named ``name``. ``files``: glob patterns (relative to ``out``) of every
    file or folder the run writes (what ``--overwrite`` removes); ``progress``: those whose presence means the
    run has made progress worth keeping (a checkpoint, a result)."""

    out: Path
    name: str
    command: str
    files: tuple[str, ...]
    progress: tuple[str, ...]

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    @property
    def record_path(self) -> Path:
        return self.out / f"{self.name}.run.json"

    def record(self) -> dict | None:
        """The run's record, or ``None`` when there is none (a damaged one is a one-line error naming it)."""
        try:
            rec = read_json(self.record_path, f"the record of an {self.command} run")
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise OptionError(f"{e}; pass --overwrite to start the run over") from None
        return rec if isinstance(rec, dict) else None

    def has_progress(self) -> bool:
        return any(any(self.out.glob(p)) for p in self.progress)

    def decide(self, options: dict, overwrite: bool = False, ignore: tuple[str, ...] = (),
               longer: Callable[[dict, dict], bool] | None = None, fallback: dict | None = None) -> str:
        """:data:`NEW`, :data:`RESUME` or :data:`FINISHED` for a command asking for ``options`` (read-only).

        ``ignore``: options that never change the result (where it is written, the device, progress bars…).
        ``longer(saved, asked)``: whether the options differ only in asking for more of the same training (more
        steps or epochs), which continues a finished run. ``fallback``: the record of a run written before records
        existed (its options read from its checkpoint). Raises :class:`RunConflict` for other options without
        ``overwrite``."""
        rec = self.record() or fallback
        progress = self.has_progress()
        if rec is None and progress and not overwrite:
            raise RunConflict(f"{self.out} holds {self.name} files of an earlier run whose options are not recorded: "
                              f"pass --overwrite to replace them, or choose another --out")
        if rec is None or not progress:
            return NEW
        saved = rec.get("options") or {}
        changed = differences(saved, options, ignore)
        if not changed:
            return FINISHED if rec.get("status") == "finished" else RESUME
        if longer is not None and longer(saved, json_values(options)):
            return RESUME
        if overwrite:
            return NEW
        shown = "; ".join(f"{_flag(k)} {format_value(saved.get(k))} there, {format_value(options.get(k))} here"
                          for k in changed[:3])
        more = f" and {plural(len(changed) - 3, 'more option')}" if len(changed) > 3 else ""
        raise RunConflict(f"{self.out} holds an {self.command} run made with other options ({shown}{more}): rerun "
                          f"with its options to continue it, pass --overwrite to replace it, or choose another --out")

    @contextlib.contextmanager
    def lock(self) -> Iterator[Path]:
        """Hold the run's lock (creating ``out``) for the ``with`` block; a second job fails at once naming the
        first one's pid."""
        with exclusive_lock(self.out, f"{self.command} run", name=f".{self.name}.lock") as path:
            yield path

    def start(self, options: dict, decision: str) -> None:
        """Begin (``NEW``: the run's old files removed) or continue (``RESUME``) the run: stale temporary files of
        a killed writer removed, the record written as running."""
        self.out.mkdir(parents=True, exist_ok=True)
        if decision == NEW:
            self.clear()
        gone = remove_stale_tmp(self.out, keep=self.owns)
        if gone:
            print(f"{self.command}: removed {len(gone)} temporary file(s) of a killed run: "
                  f"{', '.join(p.name for p in gone)}", file=sys.stderr)
        rec = self.record() if decision == RESUME else None
        write_json(self.record_path, {"command": self.command, "status": "running", "options": json_values(options),
                                      "summary": (rec or {}).get("summary")})

    def finish(self, summary: dict) -> None:
        """Mark the run finished, with ``summary`` (what the command reports when asked again)."""
        rec = self.record() or {}
        write_json(self.record_path,
                   {**rec, "command": self.command, "status": "finished", "summary": json_values(summary)})

    def owns(self, name: str) -> bool:
        """Whether a file called ``name`` in ``out`` belongs to this run."""
        return any(Path(name).match(p) for p in self.files) or name == self.record_path.name

    def clear(self) -> None:
        """Remove the run's files and folders (never other runs' files, nor the lock)."""
        for pattern in (*self.files, self.record_path.name):
            for p in self.out.glob(pattern):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)


class Cadence:
    """``due()`` once every ``minutes`` (never with 0) since the last :meth:`mark` (or the start)."""

    def __init__(self, minutes: float):
        self.seconds = 60.0 * float(minutes)
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.seconds > 0 and time.monotonic() - self.last >= self.seconds

    def mark(self) -> None:
        self.last = time.monotonic()


# ----------------------------------------------------------------------------------- downstream training


class TrainingState:
    """Checkpoints of a downstream task's training loop (:func:`avsa_train.fit.fit`'s ``guard``) in ``path``.

    :meth:`attach` restores the modules, optimiser and schedule from ``path`` when it exists and returns the
    loop's :class:`~avsa_train.fit.FitState` (a fresh one otherwise). The loop then calls :meth:`after_step` after
    every optimiser step and :meth:`after_epoch` after every epoch: a checkpoint every ``minutes``, and on a stop
    signal a checkpoint and :class:`Interrupted`. :meth:`keep_best` keeps the best validated model in
    ``best``. Written atomically, read with ``torch.load(weights_only=True)`` and checked against its checksum."""

    def __init__(self, path: str | os.PathLike, best: str | os.PathLike | None = None,
                 minutes: float = CHECKPOINT_MINUTES):
        self.path = Path(path)
        self.best_path = Path(best) if best is not None else None
        self.cadence = Cadence(minutes)
        self.modules: dict = {}
        self.optimizer = self.scheduler = None
        self.best: float | None = None

    def attach(self, modules: dict, optimizer, scheduler=None):
        """Remember what to save; restore it from ``path`` when a previous attempt saved it."""
        from avsa_train.fit import FitState

        self.modules, self.optimizer, self.scheduler = modules, optimizer, scheduler
        if not self.path.is_file():
            return FitState()
        state = _load(self.path)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        self.best = state.get("best")
        loop = state["loop"]
        return FitState(step=int(loop["step"]), epoch=int(loop["epoch"]), history=list(loop["history"]),
                        epochs_done=int(loop["epochs_done"]), batch=int(loop["batch"]), sums=dict(loop["sums"]),
                        rng=state["rng"])

    def save(self, loop) -> None:
        from avsa_train.checkpoint import rng_state

        state = {
            "format": 1,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "loop": {"step": loop.step, "epoch": loop.epoch, "epochs_done": loop.epochs_done, "batch": loop.batch,
                     "sums": dict(loop.sums), "history": list(loop.history)},
            "rng": rng_state(),
            "best": self.best,
        }
        _save(self.path, state)
        self.cadence.mark()

    def after_step(self, loop) -> None:
        if stop_requested():
            self.save(loop)
            raise Interrupted(loop.step)
        if self.cadence.due():
            self.save(loop)

    def after_epoch(self, loop) -> None:
        self.after_step(loop)  # the same rule at an epoch's end: an interruption or a due time-based checkpoint

    def keep_best(self, score: float | None, what: dict) -> bool:
        """Save the modules to ``best`` when ``score`` (higher is better) beats every earlier one; ``what`` (the
        epoch, the metric) is stored beside them. Returns whether it did."""
        if self.best_path is None or score is None or (self.best is not None and score <= self.best):
            return False
        self.best = float(score)
        _save(self.best_path, {"format": 1, "modules": {k: m.state_dict() for k, m in self.modules.items()},
                               "validation": json_values(what)})
        return True


def resumable(training: TrainingState | None, modules: dict, optimizer, scheduler=None) -> dict:
    """The keyword arguments that make a :func:`avsa_train.fit.fit` call checkpointed and resumable by
    ``training`` (none without it): ``state`` (restored, or fresh) and ``guard``."""
    if training is None:
        return {}
    return {"state": training.attach(modules, optimizer, scheduler), "guard": training}


def _save(path: Path, state: dict) -> None:
    import torch

    from avsa_train.checkpoint import plain, state_checksum

    state = plain(state)
    state["checksum"] = state_checksum(state)
    atomic_write(path, lambda f: torch.save(state, f))


def _load(path: Path) -> dict:
    """A training state written by :meth:`TrainingState.save` (weights only, checksum checked)."""
    import torch

    from avsa_train.checkpoint import CheckpointError, state_checksum

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file can raise many things
        raise CheckpointError(f"{path} is not a readable training state (corrupt? {type(e).__name__}); pass "
                              f"--overwrite to start the run over") from None
    if not isinstance(state, dict) or state.get("checksum") != state_checksum(state):
        raise CheckpointError(f"{path}: checksum mismatch (the file changed after it was written); pass "
                              f"--overwrite to start the run over")
    return state
