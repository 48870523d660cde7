"""`avsa-train pretrain`: parse options (Table 2 defaults per task ← --config YAML ← flags) and train."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_train.config import CURRICULA, EASY_STAGES, NEGATIVES, SPECTROGRAM_KINDS, TASKS
from avsa_train.models.transformer import CONTEXTS


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option("--shards", help="Shard folder (its train-NNNNNN.tar are used), glob, brace pattern or pipe:/URL.")
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default=None,
    help="avc: instance discrimination, V=1, loss (7). avsa: joint loss (9) over V viewpoints, spatial "
    "negatives, curriculum. avts: loss (9) over M moments of one viewpoint, temporal negatives "
    "(shards with --moments-per-sample ≥ M).  [default: the YAML's task, else avsa]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file of options (keys as the long flags with _ for -, e.g. configs/avsa.yaml); flags "
    "given here override it.",
)
@click.option("--out", help="Run folder: checkpoint.pt, metrics.jsonl, config.yaml.  [default: runs/TASK]")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its checkpoint.pt with its saved options (flags given here, "
    "e.g. --max-steps, override them); losses continue exactly as without the interruption.",
)
@click.option("--viewpoints", type=int, help="V viewpoints drawn from each sample's bank.  [Table 2: avc 1, avsa 4]")
@click.option("--moments", type=int, help="M moments per item (temporal negatives).  [avc/avsa 1, avts 4]")
@click.option(
    "--audio-format",
    type=click.Choice(["mono", "stereo", "ambi"]),
    help="Audio input: mono (1 ch), binaural stereo (2 ch) or first-order ambisonics (4 ch).  [ambi]",
)
@click.option(
    "--spec",
    type=click.Choice(SPECTROGRAM_KINDS),
    help="Audio features: 128 log-mel bins (reference code), 129 STFT bins (Table 1), or mel128+iv (ambi only): "
    "the 4 log-mel channels plus the 3 active-intensity-vector channels (Y, Z, X) in the same bands, which keep "
    "front/back and left/right (7 channels into Conv2D-10).  [mel128]",
)
@click.option("--width", type=float, help="Channel width multiplier of both encoders (tests: 0.125).  [1.0]")
@click.option("--depth", type=int, help="Translator depth D; 0 = direct prediction.  [avsa/avts 2, avc 0]")
@click.option(
    "--context",
    type=click.Choice(CONTEXTS),
    help="Translation network: attention (transformer over the viewpoints, the paper's model) or none (a "
    "per-viewpoint MLP of depth D without attention, the authors' NoCtx variant of direct prediction).  "
    "[attention]",
)
@click.option("--batch-size", type=int, help="Samples per step and rank.  [Table 2: avc 112, avts/avsa 28]")
@click.option("--lr", type=float, help="Adam learning rate.  [Table 2: 1e-4]")
@click.option("--weight-decay", type=float, help="Adam weight decay.  [Table 2: 1e-5]")
@click.option("--tau", type=float, help="InfoNCE temperature τ.  [Table 2: 0.07]")
@click.option("--epochs", type=int, help="Epochs.  [avc 100, avts/avsa 50]")
@click.option("--steps-per-epoch", type=int, help="Steps per epoch.  [train samples in manifest.json / global batch]")
@click.option("--max-steps", type=int, help="Stop after this many steps in total (instead of --epochs).")
@click.option(
    "--negatives",
    type=click.Choice(NEGATIVES),
    help="Hard negatives joined to the instance ones (Table 3c): instance (none), spatial (other "
    "viewpoints), temporal (other moments), spatial+temporal.  [avsa spatial, avts temporal]",
)
@click.option(
    "--curriculum",
    type=click.Choice(CURRICULA),
    help="Table 3d: easy-to-hard (instance negatives only until --switch-epoch), none (easy + hard from "
    "the start), hard-only, easy-only.  [avsa easy-to-hard, avts none]",
)
@click.option(
    "--switch-epoch",
    type=int,
    help="Epoch at which the hard negatives join (easy-to-hard). The paper trains AVC for 100 epochs and "
    "starts AVSA from it: --init runs/avc/checkpoint.pt with --switch-epoch 0; or in one run: --switch-epoch "
    "100 --epochs 150 (the first 100 epochs are the AVC stage, see --easy-stage).  [0]",
)
@click.option(
    "--easy-stage",
    type=click.Choice(EASY_STAGES),
    help="How the easy epochs before --switch-epoch train. avc: the AVC stage of Table 2 (1 viewpoint, "
    "--easy-batch-size samples per step, direct projection heads, loss (7)). translation: V viewpoints "
    "through the translator, loss (9) with instance negatives only.  [avc]",
)
@click.option(
    "--easy-batch-size",
    type=int,
    help="Samples per step of the AVC easy stage.  [viewpoints × batch size: 4 × 28 = 112, Table 2's AVC]",
)
@click.option(
    "--init",
    help="Start from this checkpoint's encoders (Table 2: AVSA starts from the AVC model); "
    "'none' for a random initialisation.",
)
@click.option("--color-jitter/--no-color-jitter", default=None, help="Colour jitter (Table 2 cj).  [on]")
@click.option("--flip-p", type=float, help="Horizontal flip probability (Table 2 hf).  [0.5]")
@click.option("--volume-jitter", type=float, help="Audio gain jitter, ± this fraction.  [0.1]")
@click.option("--shuffle-buffer", type=int, help="Shuffle buffer, samples per DataLoader worker.  [128]")
@click.option("--workers", type=int, help="DataLoader workers per rank.  [CPUs per rank − 1, at most 8]")
@click.option("--seed", type=int, help="Seed of the initialisation, data order and augmentation.  [0]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="auto = CUDA when available.  [auto]")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (CUDA only).  [on]")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (0: only at the end).  [1000]")
@click.option("--keep-checkpoints", is_flag=True, default=None, help="Also keep checkpoint-stepN.pt files.")
@click.option("--log-every", type=int, help="Steps between metrics.jsonl lines.  [1]")
@click.option("--tensorboard", is_flag=True, default=None, help="Also log to OUT/tb (needs tensorboard installed).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bar.")
def pretrain(task, config_file, resume, **opts) -> None:
    """Self-supervised AVC / AVTS / AVSA pre-training on avsa shards (supplement §A.1, Table 2).

    \b
    Examples:
      avsa-train pretrain --shards shards/ --task avc --out runs/avc
      avsa-train pretrain --shards shards/ --task avsa --init runs/avc/checkpoint.pt --out runs/avsa
      avsa-train pretrain --config configs/avsa.yaml --shards shards/ --max-steps 1000
      avsa-train pretrain --out runs/avsa --resume
      torchrun --nproc_per_node 8 -m cli.train pretrain --shards shards/ --task avsa   (DDP; docs/SCALING.md)

    Defaults are Table 2 for the task; the resolved options are saved in OUT/config.yaml and every checkpoint.
    Load the encoders of a checkpoint with avsa_train.checkpoint.load_encoders.
    """
    from avsa_train.checkpoint import load_checkpoint
    from avsa_train.config import resolve
    from avsa_train.pretrain import CHECKPOINT, run_pretrain

    try:
        saved = None
        if resume:
            if not opts.get("out"):
                raise ValueError("--resume needs --out RUN (the folder of the run to continue)")
            saved = load_checkpoint(Path(opts["out"]) / CHECKPOINT)["config"]
        cfg = resolve(task, config_file, opts, saved=saved)
        summary = run_pretrain(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    if summary["rank"] != 0:
        return
    last = summary["last"]
    loss = f"loss {last['loss']:.4f}" if "loss" in last else "no new steps"
    click.echo(f"pretrain {cfg.task}: {summary['steps']} steps, {loss} → {summary['checkpoint']}")
