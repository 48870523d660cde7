"""`avsa-train pretrain`: parse options (Table 2 defaults per task ← --config YAML ← flags) and train."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._options import config_options
from avsa_train.config import PretrainConfig, default_doc


@command(show_default=False, config=False, sections={
    "Run": ["config_file", "shards", "out", "resume", "overwrite", "task", "init", "seed", "device", "workers",
            "quiet"],
    "Data": ["viewpoints", "moments", "audio_format", "spec", "shuffle_buffer", "color_jitter", "flip_p",
             "volume_jitter"],
    "Model": ["width", "depth", "context"],
    "Optimisation": ["batch_size", "lr", "weight_decay", "tau", "epochs", "steps_per_epoch", "max_steps", "amp",
                     "deterministic"],
    "Negatives and curriculum": ["negatives", "curriculum", "switch_epoch", "easy_stage", "easy_batch_size"],
    "Checkpoints and logs": ["checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "log_every",
                             "tensorboard"],
})
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
    help="Continue the run in --out from its checkpoint.pt with its saved options, changing the ones given here "
    "(rerunning the same command continues a run without this flag; a longer --max-steps or --epochs too).",
)
@click.option("--overwrite", is_flag=True,
              help="Replace a run in --out made with other options (without it, such a run is refused).")
# Every option below defaults to None: Table 2's value for the task (TASK_DEFAULTS) ← --config ← flags.
@config_options(PretrainConfig, all_unset=lambda f: default_doc(f.name))
def pretrain(task, config_file, resume, overwrite, **opts) -> None:
    """Self-supervised AVC / AVTS / AVSA pre-training on avsa shards (supplement §A.1, Table 2).

    \b
    Examples:
      avsa-train pretrain --config configs/avc.yaml --shards shards/ --out runs/avc
      avsa-train pretrain --config configs/avsa.yaml --shards shards/ --init runs/avc/checkpoint.pt --out runs/avsa
      avsa-train pretrain --config runs/avsa/config.yaml --epochs 100          (the same run, for more epochs)
      torchrun --nproc_per_node 8 -m avsa_train pretrain --config configs/avsa.yaml --shards shards/ --init \\
          runs/avc/checkpoint.pt --out runs/avsa                                (DDP; docs/SCALING.md)

    Defaults are Table 2 for the task; the resolved options are saved in OUT/config.yaml (--config OUT/config.yaml
    repeats the run) and every checkpoint. The same command run again continues the run in --out where it
    stopped (Ctrl-C and SIGTERM save a checkpoint of the step under way; exit status 130), or says it is finished;
    other options there are refused unless --overwrite. Load the encoders of a checkpoint with
    avsa_train.checkpoint.load_encoders.
    """
    from avsa_data.options import OptionError, plural
    from avsa_train.checkpoint import load_checkpoint
    from avsa_train.config import resolve
    from avsa_train.pretrain import CHECKPOINT, run_pretrain

    saved = None
    if resume:
        if not opts.get("out"):
            raise OptionError("--resume needs --out RUN (the folder of the run to continue)")
        ckpt = Path(opts["out"]) / CHECKPOINT
        if not ckpt.is_file():
            raise OptionError(f"--resume: {opts['out']} holds no run to continue (no {CHECKPOINT}); leave out "
                              f"--resume to start one")
        saved = load_checkpoint(ckpt)["config"]
    cfg = resolve(task, config_file, opts, saved=saved)
    summary = run_pretrain(cfg, resume=resume, overwrite=overwrite)
    if summary["rank"] != 0:
        return
    last = summary["last"]
    loss = f", loss {last['loss']:.4f}" if "loss" in last else ""
    steps = plural(summary["steps"], "step")
    if summary["finished"]:
        click.echo(f"pretrain {cfg.task}: {cfg.out} is finished ({steps}{loss}) → {summary['checkpoint']}; nothing "
                   f"to do (a larger --max-steps or --epochs continues it)")
    else:
        click.echo(f"pretrain {cfg.task}: {steps}{loss or ', no new steps'} → {summary['checkpoint']}")
