"""The one training loop: epochs of optimiser steps, shared by ``avsa-train pretrain`` and the downstream tasks.

:func:`fit` owns what every task repeats: the epoch loop, the model's training mode, the optimiser step (with
the mixed-precision ``GradScaler`` path when one is given), the learning-rate schedule (stepped once per
epoch), the per-epoch sums and history row, a progress bar per epoch, and hooks after each step and each epoch
(where pre-training logs ``metrics.jsonl`` and writes checkpoints, and fine-tuning evaluates every K epochs).

A task supplies only its **step** — ``step(batch, epoch) → StepOutput`` (the loss to minimise, the sums its
epoch summary needs, and metrics for a log) or ``None`` when a batch has nothing to learn from (e.g. no
confident pixel) — and its **summary** of an epoch's sums (the history row's fields). The forward pass,
including any ``torch.autocast`` region, lives in the task's step, so a benchmark can time the very same step
with :func:`optimizer_step`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from avsa_data.jobcontrol import steps_finish_first


@dataclass
class StepOutput:
    """What a task's step returns.

    Attributes:
        loss: the scalar to minimise.
        sums: numbers added up over the epoch (e.g. ``loss × items``, hits, items), in the task's units; the
            task's summary turns the totals into the history row.
        metrics: per-step metrics for a log (tensors or floats; pre-training's AVC-Acc, AVSA-Acc…).
        info: anything else the hooks need about this step (pre-training: its stage and negatives).
    """

    loss: torch.Tensor
    sums: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitState:
    """Where the loop stands: optimiser steps done (the global step count), the current 0-based epoch, the
    history rows of the finished epochs; for a checkpoint inside an epoch (:class:`avsa_train.runs.TrainingState`),
    the epochs finished, the batches consumed in the current one and its running sums; ``rng``: the torch RNG
    state to restore when a resumed run reaches the point where it was saved."""

    step: int = 0
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    epochs_done: int = 0
    batch: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    rng: dict | None = None


class Guard(Protocol):
    """Checkpoints and stops of a training loop (:class:`avsa_train.runs.TrainingState`)."""

    def after_step(self, state: FitState) -> None: ...

    def after_epoch(self, state: FitState) -> None: ...


StepFn = Callable[[Any, int], "StepOutput | None"]


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Zero the gradients, back-propagate ``loss`` and step ``optimizer``; with a ``GradScaler`` (mixed
    precision) the loss is scaled, the step unscaled and skipped on inf/NaN gradients, and the scale updated."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def add_sums(totals: dict[str, float], sums: dict[str, float]) -> None:
    """``totals[k] += sums[k]`` for every key (in the order the step gives them), starting from ``0.0``."""
    for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + v


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: StepFn,
    batches: Callable[[int, FitState], Iterable],
    epochs: Iterable[int],
    *,
    summarise: Callable[[dict[str, float]], dict] | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    bar: Callable[[Iterable, int], Iterable] | None = None,
    on_step: Callable[[FitState, StepOutput], None] | None = None,
    on_epoch_end: Callable[[FitState, dict], None] | None = None,
    state: FitState | None = None,
    guard: Guard | None = None,
) -> FitState:
    """Train ``model`` with ``optimizer`` for each epoch of ``epochs`` (0-based numbers).

    Per epoch: ``model.train()``; the learning rate at the epoch's start is noted; every batch of
    ``batches(epoch, state)`` (wrapped by ``bar(batches, epoch)``, e.g. a progress bar) goes through
    ``step(batch, epoch)`` and, unless that returns ``None``, :func:`optimizer_step`; ``state.step`` counts the
    optimiser steps and ``on_step(state, output)`` runs after each. At the end of the epoch the ``scheduler``
    (if any) steps, and with ``summarise`` a history row ``{"epoch", "lr", **summarise(sums)}`` is made,
    passed to ``on_epoch_end(state, row)`` (which may add to it) and appended to ``state.history``.

    A ``guard`` is called after every optimiser step and every epoch (checkpoints, stop signals). Returns the
    state (``step``, last ``epoch``, ``history``); pass a ``state`` to continue a run (resume): epochs before
    ``state.epochs_done`` are skipped, and an epoch checkpointed part-way continues after its ``state.batch``
    consumed batches, from its saved sums and RNG state.
    """
    with steps_finish_first() if guard is not None else contextlib.nullcontext():  # a stop ends the step first
        return _fit(model, optimizer, step, batches, epochs, summarise, scheduler, scaler, bar, on_step, on_epoch_end,
                    state if state is not None else FitState(), guard)


def _fit(model, optimizer, step, batches, epochs, summarise, scheduler, scaler, bar, on_step, on_epoch_end,
         state: FitState, guard: Guard | None) -> FitState:
    """:func:`fit`'s loop."""
    if state.rng is not None and state.batch == 0:
        _set_rng(state)
    for epoch in epochs:
        if epoch < state.epochs_done:
            continue
        resumed = state.batch if epoch == state.epoch else 0
        state.epoch = epoch
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        totals: dict[str, float] = dict(state.sums) if resumed else {}
        state.batch, state.sums = resumed, totals
        it = iter(batches(epoch, state))
        if resumed:
            for _ in itertools.islice(it, resumed):  # the data of an epoch is a function of (seed, epoch)
                pass
            _set_rng(state)
        for batch in bar(it, epoch) if bar is not None else it:
            state.batch += 1
            out = step(batch, epoch)
            if out is None:
                continue
            optimizer_step(out.loss, optimizer, scaler)
            state.step += 1
            add_sums(totals, out.sums)
            if on_step is not None:
                on_step(state, out)
            if guard is not None:
                guard.after_step(state)
        if scheduler is not None:
            scheduler.step()
        if summarise is not None:
            row = {"epoch": epoch, "lr": lr, **summarise(totals)}
            if on_epoch_end is not None:
                on_epoch_end(state, row)
            state.history.append(row)
        state.epochs_done, state.batch, state.sums = epoch + 1, 0, {}
        if guard is not None:
            guard.after_epoch(state)
    return state


def _set_rng(state: FitState) -> None:
    """Restore the torch RNG state a checkpoint saved (CUDA states only where CUDA is available)."""
    from avsa_train.checkpoint import set_rng_state

    rng, state.rng = state.rng, None
    if rng is not None:
        set_rng_state(rng)
