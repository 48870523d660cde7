"""`avsa-train pretrain`: parse options (Table 2 defaults per task ← --config YAML ← flags) and train."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_train.config import PretrainConfig, default_doc
from cli._command import command
from cli._options import config_options


@command(show_default=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file of options (keys as the long flags with _ for -, e.g. configs/avsa.yaml); flags "
    "given here override it.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its checkpoint.pt with its saved options (flags given here, "
    "e.g. --max-steps, override them); losses continue exactly as without the interruption.",
)
# Every option below defaults to None: Table 2's value for the task (TASK_DEFAULTS) ← --config ← flags.
@config_options(PretrainConfig, all_unset=lambda f: default_doc(f.name))
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

    saved = None
    if resume:
        if not opts.get("out"):
            raise ValueError("--resume needs --out RUN (the folder of the run to continue)")
        saved = load_checkpoint(Path(opts["out"]) / CHECKPOINT)["config"]
    cfg = resolve(task, config_file, opts, saved=saved)
    summary = run_pretrain(cfg, resume=resume)
    if summary["rank"] != 0:
        return
    last = summary["last"]
    loss = f"loss {last['loss']:.4f}" if "loss" in last else "no new steps"
    click.echo(f"pretrain {cfg.task}: {summary['steps']} steps, {loss} → {summary['checkpoint']}")
