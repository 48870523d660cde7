"""The one training loop (:mod:`avsa_train.fit`): optimiser steps, sums and history rows, the schedule, the AMP
scaler path, skipped batches and hooks; and the pre-training schedule's epoch boundaries it runs on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsa_train.fit import FitState, StepOutput, fit, optimizer_step
from avsa_train.pretrain import Schedule
from avsa_train.tasks.common import multistep


def _problem(seed: int = 0):
    """A linear regression ``y = 3 x`` with one weight starting at 0, in batches of 4."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 1, generator=g)
    return nn.Linear(1, 1, bias=False).requires_grad_(True), [(x[i : i + 4], 3 * x[i : i + 4]) for i in (0, 4, 8)]


def _step(model):
    def step(batch, epoch):
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        return StepOutput(loss, {"loss": float(loss.detach()) * len(x), "n": len(x)})

    return step


def test_fit_steps_sums_and_history_rows():
    model, data = _problem()
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = multistep(opt, [1], 0.5)
    seen = []
    state = fit(
        model,
        opt,
        _step(model),
        lambda epoch, state: data,
        range(3),
        summarise=lambda s: {"train_loss": s["loss"] / s["n"], "items": int(s["n"])},
        scheduler=sched,
        on_step=lambda st, out: seen.append((st.step, st.epoch)),
    )
    assert state.step == 9 and state.epoch == 2
    assert seen == [(i + 1, i // 3) for i in range(9)]
    assert [r["epoch"] for r in state.history] == [0, 1, 2]
    assert [r["lr"] for r in state.history] == [0.1, 0.05, 0.05]  # the lr at each epoch's start, stepped per epoch
    assert [r["items"] for r in state.history] == [12, 12, 12]
    losses = [r["train_loss"] for r in state.history]
    assert losses[0] > losses[1] > losses[2]  # the optimiser steps happen: the regression is learnt
    assert abs(float(model.weight.detach()) - 3) < abs(0 - 3) / 2

    # the same loop written out by hand: the first epoch's mean loss is the mean of the per-batch losses
    ref, _ = _problem()
    nn.init.zeros_(ref.weight)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    total = 0.0
    for x, y in data:
        loss = ((ref(x) - y) ** 2).mean()
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        total += float(loss.detach()) * len(x)
    assert state.history[0]["train_loss"] == total / 12


def test_fit_skips_batches_without_a_loss_and_resumes_from_a_state():
    model, data = _problem()
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = fit(model, opt, lambda batch, epoch: None, lambda e, s: data, range(2), summarise=lambda s: dict(s))
    assert state.step == 0 and float(model.weight) == 0.0  # nothing to learn from: no optimiser step
    assert state.history == [{"epoch": 0, "lr": 0.1}, {"epoch": 1, "lr": 0.1}]

    calls = []
    state = fit(
        model,
        opt,
        _step(model),
        lambda e, s: (calls.append((e, s.step)), data[: 3 - s.step % 3])[1],
        range(1, 3),
        state=FitState(step=4),
        on_epoch_end=lambda st, row: row.update(extra=st.step),
        summarise=lambda s: {},
    )
    assert calls == [(1, 4), (2, 6)] and state.step == 9
    assert [r["extra"] for r in state.history] == [6, 9]  # on_epoch_end may add to the row


def test_optimizer_step_with_a_grad_scaler_matches_the_plain_step_and_skips_inf():
    scaler_cls = torch.amp.GradScaler
    try:
        scaler = scaler_cls("cpu", init_scale=2.0**10)
    except (RuntimeError, ValueError, TypeError) as e:  # pragma: no cover - very old torch
        pytest.skip(f"no CPU GradScaler: {e}")
    a, data = _problem()
    b, _ = _problem()
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    for x, y in data:
        optimizer_step(((a(x) - y) ** 2).mean(), opt_a, None)
        optimizer_step(((b(x) - y) ** 2).mean(), opt_b, scaler)
    assert torch.allclose(a.weight, b.weight, rtol=1e-6)  # the scale is undone before the step
    before = b.weight.detach().clone()
    optimizer_step(b(torch.tensor([[float("inf")]])).sum(), opt_b, scaler)
    assert torch.equal(b.weight, before)  # an inf gradient: the step is skipped
    assert scaler.get_scale() < 2.0**10  # and the scale backs off


@pytest.mark.parametrize(
    "sched", [Schedule(spe=3, total=10), Schedule(7, 700 + 50 * 7, 700, 7, 100), Schedule(3, 5, 4, 2, 2),
              Schedule(3, 3, 3, 2, 2)]
)
def test_schedule_epoch_end_is_the_first_step_of_the_next_epoch(sched):
    """The pre-training loop cuts each epoch's batches at ``epoch_end``: every step lands in its own epoch."""
    for step in range(sched.total):
        e = sched.epoch(step)
        start = sched.epoch_end(e - 1) if e > 0 else 0
        assert start <= step < sched.epoch_end(e), (step, e)
    assert sched.epoch_end(sched.epoch(sched.total - 1)) == sched.total
