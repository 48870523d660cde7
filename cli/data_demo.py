"""`avsa-data demo`: synthesise, shard, pre-train, evaluate and report, in one command."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_train.demo import DemoError, run_demo


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("demo_out"), show_default=True,
              help="Folder for the data, shards, runs, metrics, report.md and demo.png.")
@click.option("--quick", is_flag=True, help="A smaller run (about 3 minutes on 2 idle CPU cores instead of about 10).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every step.")
def demo(out: Path, quick: bool, seed: int) -> None:
    """Run the whole AVSA pipeline on a synthetic 360° dataset and write OUT/report.md.

    Steps: avsa-data synth → avsa-data shard → avsa-train pretrain (AVC, then AVSA initialised from AVC) →
    avsa-train eval avc / eval avsa / segment, for the pre-trained model and a random-init baseline. Needs the
    [train] extra (PyTorch).
    """
    try:
        report = run_demo(out, quick=quick, seed=seed, echo=click.echo)
    except DemoError as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.read_text())
