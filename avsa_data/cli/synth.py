"""`avsa-data synth`: parse options (generated from SynthConfig), run avsa_data.synth.generate."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._options import config_from, config_options, shared
from avsa_data.synth import SynthConfig, default_workers, generate


@command(sections={
    "Output": ["out", "videos", "duration", "val_fraction", "layout", "seed"],
    "Picture": ["size", "fps", "label_fps", "label_size", "sounding_objects", "object_radius"],
    "Audio": ["sr", "ambi_format", "audio_layout", "audio_codec", "snr_db"],
    "Execution": ["workers", "corrupt", "quiet"],
})
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Output folder: {id}.mp4 (+ {id}.wav), {id}.truth.npz, {id}.json, videos.csv, synth.json.",
)
@config_options(SynthConfig)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel processes; the output does not depend on them.  [default: min(4, CPU cores)]",
)
@click.option(
    "--corrupt",
    is_flag=True,
    help="Also write broken inputs (truncated, no audio, stereo, short audio, unreadable) for testing readers.",
)
@shared("quiet")
def synth(out: Path, workers: int | None, corrupt: bool, quiet: bool, **opts) -> None:
    """Write synthetic 360° videos with ambisonic audio and exact ground truth (docs/SYNTH.md).

    \b
    Examples:
      avsa-data synth --out raw/ --videos 8 --duration 4 --size 512x256
      avsa-data synth --out starss/ --layout starss23 --videos 4
    """
    cfg = config_from(SynthConfig, opts)
    metas = generate(cfg, out, workers=workers or default_workers(), progress=not quiet, corrupt=corrupt)
    n_val = sum(m["split"] == "val" for m in metas)
    click.echo(
        f"wrote {len(metas)} videos ({len(metas) - n_val} train, {n_val} val) to {out}"
        + (" plus corrupt variants" if corrupt else "")
    )
