"""Options shared by the downstream commands (`avsa-train eval`, `segment`, `finetune`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from avsa_data.cli._options import shared, stack
from avsa_train.config import AUDIO_FORMATS, SPECTROGRAM_KINDS

if TYPE_CHECKING:
    from avsa_train.runs import TrainingState

SHARED_HELP = """
Common options: --ckpt (a checkpoint of `avsa-train pretrain`, or `none` for a random initialisation, the
scratch baseline), --width (must match the checkpoint's; read from it when given), --device, --seed, --out
(folder for the metrics JSON), --workers, --quiet. The same command run again into the same --out continues
an interrupted run (Ctrl-C saves its training state) or reports the finished one; other options there need
--overwrite.
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
        # The task configs default to 0 workers (in-process, for library callers); the commands use the cores.
        click.option("--workers", type=click.IntRange(min=0), default=default_workers(),
                     help="DataLoader worker processes (0 = in-process).  [default: min(4, CPU cores − 1)]",
                     show_default=False),
        click.option(
            "--out",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Folder for the metrics JSON. A rerun of the same command continues an interrupted run, or says it "
            "is finished.  [default: CKPT_DIR/eval; ./eval-scratch with --ckpt none]",
        ),
        click.option("--overwrite", is_flag=True,
                     help="Replace this command's run in --out when it was made with other options."),
        shared("quiet"),
    ]
    return stack(*opts)(f)


def default_workers() -> int:
    """DataLoader workers of the downstream commands: the cores besides the training process's, at most 4."""
    from avsa_data.jobcontrol import usable_cpus

    return max(0, min(4, usable_cpus() - 1))


def default_out(ckpt: str, out: Path | None) -> Path:
    if out is not None:
        return out
    if ckpt.strip().lower() in ("none", "scratch", ""):
        return Path("eval-scratch")
    return Path(ckpt).parent / "eval"


def check_ckpt(ckpt: str) -> None:
    """``--ckpt``: ``none``, or an existing checkpoint file (a run folder is answered with its checkpoint)."""
    from avsa_data.options import OptionError

    if ckpt.strip().lower() in ("none", "scratch", ""):
        return
    path = Path(ckpt)
    if path.is_dir():
        raise OptionError(f"--ckpt {ckpt} is a folder: use {path / 'checkpoint.pt'}")
    if not path.is_file():
        raise OptionError(f"--ckpt {ckpt} does not exist (a checkpoint.pt written by avsa-train pretrain, or none "
                          f"for a random initialisation)")


def check_shards(shards: str, splits: tuple[str, ...], views: int | None = None) -> dict:
    """``--shards`` exists and has the ``splits`` (``{split}-NNNNNN.tar``), with banks of at least ``views``
    viewpoints; returns the first training sample's meta.json. Each refusal names its option."""
    from avsa_data.options import OptionError
    from avsa_train.data.sources import option_urls, peek_meta, split_urls

    text = str(shards)
    urls = option_urls(text)
    for split, flag in zip(splits, ("--train-split", "--eval-split")):
        if not split_urls(urls, split):
            raise OptionError(f"--shards {text} has no '{split}' shards ({split}-NNNNNN.tar): choose the split with "
                              f"{flag}, or shard with a --list that puts videos in it")
    meta = peek_meta(split_urls(urls, splits[0]))
    k = len(meta["viewpoints"])
    if views is not None and views > k:
        raise OptionError(f"--views {views}: the shards have banks of {k} viewpoints; use --views ≤ {k}")
    return meta


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


#: Options of a downstream command that never change its result: a rerun may change them.
RUN_ONLY = ("out", "device", "quiet", "overwrite", "config_file")


def downstream_run(name: str, command: str, out: Path, params: dict, overwrite: bool,
                   train: Callable[[TrainingState], tuple[Path, dict]], lines: Callable[[dict], list[str]]) -> None:
    """Run a downstream command as the run ``name`` in ``out`` (:class:`avsa_train.runs.RunFolder`): locked;
    refused when ``out`` holds this run with other options (unless ``overwrite``); reported from its JSON when it
    is finished; else (re)started with ``train(training)``, which returns the metrics JSON's path and its
    ``metrics``; ``lines(metrics)``: the headline lines printed. ``OUT/NAME.config.yaml`` gets the command's
    options (``--config`` repeats the run)."""
    import yaml

    from avsa_data.fsutil import atomic_write_bytes, read_json
    from avsa_train.runs import FINISHED, RunFolder, TrainingState, json_values

    folder = RunFolder(out, name, command,
                       files=(f"{name}.json", f"{name}_items.jsonl", f"{name}.state.pt", f"{name}.best.pt",
                              f"{name}.config.yaml"),
                       progress=(f"{name}.json", f"{name}.state.pt"))
    options = {k: v for k, v in params.items() if k not in RUN_ONLY}
    with folder.lock():
        decision = folder.decide(options, overwrite)
        if decision == FINISHED:
            path = out / f"{name}.json"
            report(path, lines(read_json(path, f"the metrics written by {command}")["metrics"]))
            click.echo(f"{out}: this {command} run is finished; nothing to do (--overwrite with other options "
                       f"replaces it)")
            return
        folder.start(options, decision)
        shown = {k: v for k, v in params.items() if k not in ("overwrite", "config_file")}
        atomic_write_bytes(out / f"{name}.config.yaml", yaml.safe_dump(json_values(shown), sort_keys=True).encode())
        training = TrainingState(out / f"{name}.state.pt", best=out / f"{name}.best.pt")
        path, metrics = train(training)
        folder.finish({"metrics": str(path)})
        training.path.unlink(missing_ok=True)
    report(path, lines(metrics))
