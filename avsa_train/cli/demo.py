"""`avsa-data demo`: synthesise, shard, pre-train, evaluate and report, in one command."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_train.demo import DemoError, run_demo


@command(user_errors=(DemoError,))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("demo_out"),
              help="Folder for the data, shards, runs, metrics, report.md and demo.png.")
@click.option("--quick", is_flag=True,
              help="A smoke test at a smaller scale (about 4 minutes on 2 idle CPU cores instead of about 9).")
@click.option("--segmentation", is_flag=True,
              help="Also fine-tune and score semantic segmentation (§A.2) on the AVSA-pretrained and random-init "
                   "encoders (about 4 more minutes).")
@click.option("--seed", type=int, default=0, help="Seed of every step.")
def demo(out: Path, quick: bool, segmentation: bool, seed: int) -> None:
    """Run the whole AVSA pipeline on a synthetic 360° dataset and write OUT/report.md.

    Steps: avsa-data synth → avsa-data shard → avsa-train pretrain (AVC, then AVSA initialised from AVC, and AVC
    alone as a control) → avsa-train eval avc / eval avsa (each with audio-only and video-only controls) / probe
    (and, with --segmentation, segment), for the pre-trained models and a random-init baseline. Needs the
    [train] extra (PyTorch).

    \b
    Examples:
      avsa-data demo                  (about 9 minutes on 2 idle CPU cores)
      avsa-data demo --segmentation   (about 13)
      avsa-data demo --quick --out demo_quick
    """
    report = run_demo(out, quick=quick, seed=seed, segmentation=segmentation, echo=click.echo)
    click.echo(report.read_text())
