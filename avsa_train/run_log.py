"""A pre-training run's log on rank 0: ``config.yaml``, ``metrics.jsonl`` (one JSON line per logged step),
TensorBoard scalars and the progress bar; and reading ``metrics.jsonl`` back, torn lines included."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from avsa_data.fsutil import atomic_write_bytes
from avsa_train import distributed as D
from avsa_train.config import PretrainConfig
from avsa_train.fit import FitState, StepOutput
from avsa_train.losses import Negatives

METRICS = "metrics.jsonl"


class SampleRate:
    """Samples per second between two logged steps (wall time, all ranks)."""

    def __init__(self, step: int):
        self.t0, self.n0 = time.perf_counter(), step

    def since_last(self, step: int, batch_size: int, world_size: int) -> float:
        now = time.perf_counter()
        sps = (step - self.n0) * batch_size * world_size / max(now - self.t0, 1e-9)
        self.t0, self.n0 = now, step
        return sps


def metrics_row(
    state: FitState,
    out: StepOutput,
    stage: PretrainConfig,
    opt: torch.optim.Optimizer,
    rate: SampleRate,
    info: D.DistInfo,
    device: torch.device,
) -> dict:
    """The ``metrics.jsonl`` row of the step just done (its metrics averaged over the ranks: a collective)."""
    metrics = {"loss": float(out.loss.detach())}
    metrics.update({k: float(v) for k, v in out.metrics.items()})
    metrics = D.mean_over_ranks(metrics, info, device)
    if not math.isfinite(metrics["loss"]):
        raise FloatingPointError(f"the loss became {metrics['loss']} at step {state.step}")
    sps = rate.since_last(state.step, stage.batch_size, info.world_size)
    return {
        "step": state.step,
        "epoch": state.epoch,
        "stage": stage.task,
        "batch_size": stage.batch_size,
        "viewpoints": stage.viewpoints,
        "negatives": _neg_name(out.info["negatives"]),
        "lr": opt.param_groups[0]["lr"],
        "samples_per_s": round(sps, 2),
        **metrics,
    }


class RunLog:
    """Rank 0's outputs of a run: ``config.yaml``, ``metrics.jsonl`` (appended, one JSON line per logged step),
    TensorBoard scalars (``--tensorboard``) and the progress bar (unless ``--quiet``)."""

    def __init__(self, metrics, tb, bar):
        self.metrics, self.tb, self.bar = metrics, tb, bar

    @classmethod
    def open(cls, out: Path, cfg: PretrainConfig, options: dict, step: int, total: int) -> RunLog:
        """Write ``config.yaml`` (the run's ``options`` as resolved from Table 2, --config and the flags, before
        the start resolves ``workers``: ``--config OUT/config.yaml`` repeats the run) and open the logs."""
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.yaml", yaml.safe_dump(options, sort_keys=True).encode())
        truncate_metrics(out / METRICS, step)
        metrics = open(out / METRICS, "a")
        tb = _tensorboard(out) if cfg.tensorboard else None
        bar = None
        if not cfg.quiet:
            from tqdm import tqdm

            bar = tqdm(
                total=total, initial=step, desc=f"pretrain {cfg.task}", unit="step", file=sys.stderr, dynamic_ncols=True
            )
        return cls(metrics, tb, bar)

    def write(self, row: dict) -> None:
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        if self.tb:
            for k, v in row.items():
                if isinstance(v, float):
                    self.tb.add_scalar(k, v, row["step"])

    def progress(self, last: dict) -> None:
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{last.get('loss', float('nan')):.3f}", samples_s=f"{last.get('samples_per_s', 0.0):.1f}"
            )

    def close(self) -> None:
        for h in (self.bar, self.metrics, self.tb):
            if h is not None:
                h.close()


def read_metrics(path: Path) -> tuple[list[dict], list[int]]:
    """The rows of a ``metrics.jsonl`` and the 1-based numbers of the lines that are not a JSON object (a line
    torn by a kill during its write, typically the last one); those are skipped, not fatal."""
    rows, bad = [], []
    for i, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        row = _row(raw)
        if row is None:
            bad.append(i)
        else:
            rows.append(row)
    return rows, bad


def _row(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return row if isinstance(row, dict) else None


def truncate_metrics(path: Path, step: int) -> None:
    """Drop logged lines after ``step`` (a run killed after its last checkpoint logged steps it will redo) and
    lines torn by a kill (with a warning), so that the resumed run appends whole lines to whole lines."""
    if not path.is_file():
        return
    data = path.read_bytes()
    lines = data.splitlines()
    keep, bad = [], []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row = _row(raw)
        if row is None:
            bad.append(i)
        elif not (isinstance(row.get("step"), (int, float)) and row["step"] > step):
            keep.append(raw)
    if bad:
        what = "its torn last line" if bad == [len(lines)] else f"unreadable line(s) {', '.join(map(str, bad[:5]))}"
        print(f"avsa-train pretrain: {path}: dropped {what} (a kill during a write); continuing from step {step}",
              file=sys.stderr)
    if len(keep) != len(lines) or (data and not data.endswith(b"\n")):
        atomic_write_bytes(path, b"".join(ln + b"\n" for ln in keep))


def _neg_name(n: Negatives) -> str:
    return "+".join(k for k in ("instance", "spatial", "temporal") if getattr(n, k))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "avsa-train pretrain: --tensorboard needs the tensorboard package; logging to metrics.jsonl only",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(str(out / "tb"))
