"""Plumbing shared by the downstream tasks: devices, seeds, the pre-trained encoders, optimisers, JSON output.

The encoders come from :func:`avsa_train.checkpoint.load_encoders` (a checkpoint of ``avsa-train pretrain``, or
``None`` for a random initialisation: the scratch baseline). :class:`Backbone` bundles them with the
log-spectrogram front end the checkpoint was trained with, so every task turns waveforms into features the
same way pre-training did.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avsa_data.fsutil import atomic_write_bytes, write_json
from avsa_data.options import DEVICES
from avsa_train import allocator
from avsa_train.audio_features import SPECTROGRAM_KINDS, Spectrogram

#: Version tag of every metrics JSON written by the downstream commands (docs/EVALUATION.md).
METRICS_SCHEMA_VERSION = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cuda`` fails clearly when no GPU is visible."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICES} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)


def prepare_device(name: str) -> torch.device:
    """:func:`resolve_device`; on the CPU, this process also keeps the model's freed activations for reuse
    instead of page-faulting them in again every batch (:func:`avsa_train.allocator.keep_freed_activations`)."""
    device = resolve_device(name)
    if device.type == "cpu":
        allocator.keep_freed_activations()
    return device


def seed_torch(seed: int) -> torch.Generator:
    """Seed torch's default generator (model initialisation, dropout) and return a CPU generator for draws
    the tasks make themselves. Data randomness uses ``avsa_data.rng.rng_for`` instead."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def parse_ckpt(value: str | os.PathLike | None) -> Path | None:
    """``none`` / empty / ``None`` → ``None`` (random init); otherwise an existing checkpoint path."""
    if value is None or str(value).strip().lower() in ("", "none", "scratch"):
        return None
    p = Path(value)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist (pass --ckpt none for a random initialisation)")
    return p


@dataclass
class Backbone:
    """Pre-trained (or random) encoders of one checkpoint and the spectrogram front end they expect.

    Attributes:
        video: R(2+1)D-18 ``[B, 3, T, H, W] → [B, D]``.
        audio: Conv2D-10 ``[B, C, F, T] → [B, D]``.
        translator: the cross-modal transformers and heads (``None`` if the checkpoint has none).
        spectrogram: waveform ``[..., C, n] → [..., N, F, T]`` as in pre-training (N = C, or 7 = 4 + 3
            intensity-vector channels for ``mel128+iv``).
        config: the checkpoint's configuration (``{}`` for a random init).
        checkpoint: the checkpoint path, or ``None``.
    """

    video: nn.Module
    audio: nn.Module
    translator: nn.Module | None
    spectrogram: Spectrogram
    config: dict
    checkpoint: Path | None
    width: float
    audio_format: str
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.video.out_dim)

    def to(self, device: torch.device) -> Backbone:
        for m in (self.video, self.audio, self.translator, self.spectrogram):
            if m is not None:
                m.to(device)
        return self

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.video, self.audio, self.translator) if m is not None]

    def freeze(self) -> None:
        """No gradients and eval mode (batch-norm statistics fixed) for every encoder."""
        for m in self.modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def describe(self) -> dict:
        return {
            "path": str(self.checkpoint) if self.checkpoint is not None else None,
            "pretrained": self.checkpoint is not None,
            "width": self.width,
            "audio_format": self.audio_format,
            "spectrogram": self.spectrogram.kind,
            "translator_depth": getattr(self.translator, "depth", None),
            "translator_context": getattr(self.translator, "context", None),
            "config": _jsonable(self.config),
        }


def load_backbone(
    ckpt: str | os.PathLike | None,
    width: float | None = None,
    audio_format: str | None = None,
    device: torch.device | str = "cpu",
    spectrogram: str | None = None,
) -> Backbone:
    """Encoders of ``ckpt`` (``None``/"none": random init) via :func:`avsa_train.checkpoint.load_encoders`.

    With a checkpoint, its width and audio format are the truth: a different ``width`` or ``audio_format`` is an
    error (the weights would not fit). Without one, ``width`` defaults to 1.0 and ``audio_format`` to ``ambi``.
    """
    from avsa_train.checkpoint import load_encoders

    path = parse_ckpt(ckpt)
    dev = torch.device(device)
    if spectrogram is not None and spectrogram not in SPECTROGRAM_KINDS:
        raise ValueError(f"spectrogram kind must be one of {SPECTROGRAM_KINDS}, got {spectrogram!r}")
    if path is None:
        width = 1.0 if width is None else float(width)
        audio_format = audio_format or "ambi"
        video, audio, translator, config = load_encoders(
            None, width=width, audio_format=audio_format, device=dev, spec=spectrogram or "mel128"
        )
        config = dict(config or {})
    else:
        video, audio, translator, config = load_encoders(path, device=dev)
        config = dict(config or {})
        wanted = {"width": width, "audio_format": audio_format, "spec": spectrogram}
        for key, flag in (("width", "--width"), ("audio_format", "--audio-format"), ("spec", "--spec")):
            have, want = config.get(key), wanted[key]
            if have is None or want is None:
                continue
            same = math.isclose(float(have), float(want)) if key == "width" else have == want
            if not same:
                raise ValueError(f"{flag} {want} does not match the checkpoint's {key} {have} ({path})")
        width = float(config.get("width", 1.0))
        audio_format = config.get("audio_format", "ambi")
        config.setdefault("spec", "mel128")
    spec = Spectrogram(kind=config["spec"], sr=int(config.get("sr", 24000)))
    return Backbone(video, audio, translator, spec, config, path, width, audio_format).to(dev)


def multistep(optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float):
    """Learning rate × ``gamma`` at each epoch in ``milestones`` (0-based epochs, stepped once per epoch)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(int(m) for m in milestones), gamma=gamma)


def progress(it: Iterable, enabled: bool, desc: str, total: int | None = None, unit: str = "batch"):
    """A tqdm bar on stderr when ``enabled``."""
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def result_document(
    schema: str, task: str, metrics: dict, history: list[dict], config: dict, checkpoint: dict, **extra
) -> dict:
    """The JSON every downstream task writes: ``schema`` (``avsa.eval.*``, version 1), ``task``, ``metrics``,
    ``history``, ``config``, ``checkpoint``, any task-specific ``extra`` blocks, and the :func:`environment`."""
    return {
        "schema": schema,
        "schema_version": 1,
        "task": task,
        "metrics": metrics,
        "history": history,
        "config": config,
        "checkpoint": checkpoint,
        **extra,
        "environment": environment(),
    }


@dataclass
class TaskResult:
    """What a downstream task returns (``run_binary_eval``, ``run_segmentation``, ``run_finetune``) and its
    command writes as JSON (:meth:`to_json`, the :func:`result_document` of ``schema``).

    Attributes:
        schema: the JSON schema name (``avsa.eval.binary``, ``avsa.eval.segmentation``, ``avsa.eval.finetune``).
        task: the task name in the JSON (``avsa-bin``, ``segmentation``, ``action-recognition``…).
        metrics: the evaluation metrics.
        history: one row per training epoch (``epoch``, ``lr``, the task's training statistics).
        config: the resolved task configuration.
        checkpoint: :meth:`Backbone.describe` of the encoders.
        extra: further top-level JSON blocks (fine-tuning: ``data``).
        items: per-item outputs as columns of equal length (binary evaluation), written by :meth:`item_rows`.
    """

    schema: str
    task: str
    metrics: dict
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    items: dict[str, list] = field(default_factory=dict)

    def item_rows(self) -> list[dict]:
        """One dict per item: the ``items`` columns zipped (empty without items)."""
        return [dict(zip(self.items, vals)) for vals in zip(*self.items.values())]

    def to_json(self) -> dict:
        return result_document(
            self.schema, self.task, self.metrics, self.history, self.config, self.checkpoint, **self.extra
        )


def environment() -> dict:
    """Where a result came from: versions and device."""
    import avsa_train

    return {
        "avsa_version": getattr(avsa_train, "__version__", None),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_metrics(out_dir: str | os.PathLike, name: str, payload: dict) -> Path:
    """Write ``payload`` as ``OUT/{name}.json`` (atomically, sorted keys, NaN → null) and return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_json(out / f"{name}.json", _jsonable(payload))


def write_jsonl(out_dir: str | os.PathLike, name: str, rows: Sequence[dict]) -> Path:
    """Write ``rows`` as ``OUT/{name}.jsonl`` (one JSON object per line, sorted keys), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in rows)
    return atomic_write_bytes(out / f"{name}.jsonl", text.encode())
