"""`avsa-data labels`: inspect the pseudo-labels of shards (`classes`: class histogram and confident fraction)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from avsa_data.cli._command import CONTEXT, Command
from avsa_data.cli._options import config_file_option
from avsa_data.shard_format import CONFIDENCE_THRESHOLD


@click.group(context_settings=CONTEXT)
def labels() -> None:
    """Pseudo-label tools (backends and class maps: docs/LABELS.md)."""


@labels.command("classes", cls=Command, user_errors=(KeyError,), context_settings={**CONTEXT, "show_default": True})
@config_file_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--threshold", type=float, default=CONFIDENCE_THRESHOLD,
              help="Confidence at or above which a pixel counts as confident (seed §A.2).")
@click.option("--lowres", is_flag=True, help="Count the 56×56 masks (seg56/conf56) instead of the crop-size ones.")
def classes(paths: tuple[Path, ...], as_json: bool, threshold: float, lowres: bool) -> None:
    """Class histogram of the masks in PATHS (shard folders or .tar files): per class id and name the pixel
    count and fraction, and the fraction of confident pixels.

    \b
    Examples:
      avsa-data labels classes shards/
      avsa-data labels classes shards/val-000001.tar --json --lowres
    """
    from avsa_data.labels.stats import class_histogram, format_table

    stats = class_histogram(list(paths), threshold=threshold, lowres=lowres)
    if stats.samples_with_masks == 0:
        raise ValueError(f"{', '.join(map(str, paths))}: none of its {stats.samples} samples has segmentation masks "
                         f"(shard with avsa-data shard --labels synthetic|precomputed|onnx)")
    click.echo(json.dumps(stats.to_json(), indent=1) if as_json else format_table(stats))
