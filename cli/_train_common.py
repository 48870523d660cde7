"""Options shared by the downstream commands (`avsa-train eval`, `segment`, `finetune`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from avsa_train.config import AUDIO_FORMATS, SPECTROGRAM_KINDS
from cli._options import shared, stack

SHARED_HELP = """
Common options: --ckpt (a checkpoint of `avsa-train pretrain`, or `none` for a random initialisation, the
scratch baseline), --width (must match the checkpoint's; read from it when given), --device, --seed, --out
(folder for the metrics JSON), --workers, --quiet.
"""


def backbone_options(f):
    """--ckpt, --width, --audio-format, --spec, --device, --workers, --out, --quiet: what a downstream command needs
    besides its task config (whose options, --seed among them, are generated from the config)."""
    opts = [
        click.option(
            "--ckpt",
            required=True,
            help="Checkpoint written by `avsa-train pretrain`, or 'none' for a random init (scratch).",
        ),
        click.option(
            "--width",
            type=float,
            default=None,
            help="Channel width multiplier. Read from the checkpoint (a different value is an error); "
            "default 1.0 with --ckpt none.",
        ),
        click.option(
            "--audio-format",
            type=click.Choice(AUDIO_FORMATS),
            default=None,
            help="Audio input of the encoders. Read from the checkpoint; default ambi with --ckpt none.",
        ),
        click.option(
            "--spec",
            type=click.Choice(SPECTROGRAM_KINDS),
            default=None,
            help="Audio features (mel128, stft129, or mel128+iv: log-mel + intensity vectors, ambi only). Read "
            "from the checkpoint; default mel128 with --ckpt none.",
        ),
        shared("device"),
        # The task configs default to 0 workers (in-process, for library callers); the commands use 4.
        click.option("--workers", type=click.IntRange(min=0), default=4,
                     help="DataLoader worker processes (0 = in-process)."),
        click.option(
            "--out",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Folder for the metrics JSON. Default: CKPT_DIR/eval, or ./eval-scratch with --ckpt none.",
        ),
        shared("quiet"),
    ]
    return stack(*opts)(f)


def default_out(ckpt: str, out: Path | None) -> Path:
    if out is not None:
        return out
    if ckpt.strip().lower() in ("none", "scratch", ""):
        return Path("eval-scratch")
    return Path(ckpt).parent / "eval"


def setup(ckpt: str, width: float | None, audio_format: str | None, spec: str | None, device: str, seed: int):
    """Seed torch, pick the device and load the encoders. Returns ``(backbone, device)``."""
    from avsa_train.tasks.common import load_backbone, prepare_device, seed_torch

    dev = prepare_device(device)
    seed_torch(seed)
    backbone = load_backbone(ckpt, width=width, audio_format=audio_format, device=dev, spectrogram=spec)
    return backbone, dev


def report(path: Path, lines: list[str]) -> None:
    """Print the headline metrics and where the JSON went."""
    for ln in lines:
        click.echo(ln)
    click.echo(f"metrics: {path}")


def fmt_ci(ci) -> str:
    if not ci or ci[0] is None:
        return "n/a"
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def dump(payload: dict) -> str:
    return json.dumps(payload, indent=2, sort_keys=True)
