"""`avsa-train ablate`: parse options and run the Table 3 ablation grid (avsa_train.ablate)."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._options import shared
from avsa_train.ablate.keys import GRIDS, SCALE_KEYS, SCALE_NAMES


def _split(values: tuple[str, ...]) -> list[str]:
    """``("a,b", "c")`` → ``["a", "b", "c"]``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@command("ablate", sections={
    "Grid": ["grid", "shards", "out", "overwrite", "scale", "families", "cells", "sets", "scratch", "seed"],
    "Run": ["device", "list_only", "quiet"],
})
@click.option("--grid", type=click.Choice(GRIDS), default="table3", help="The ablation grid to run.")
@click.option(
    "--shards",
    help="Shard folder with train and val splits and segmentation masks (--labels). "
    "The spatial+temporal cell needs --moments-per-sample ≥ 2, the 8-viewpoint cell banks of K ≥ 8.",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output folder (DIR).")
@click.option(
    "--scale",
    type=click.Choice(SCALE_NAMES),
    default="tiny",
    help="tiny: width 0.125, batch 8, 96 steps, no augmentation, short evaluations (2 CPU cores, synthetic data); "
    "cpu: the scale at which pre-training learns on 2 CPU cores (width 0.125, batch 16, lr 1e-3, 60 steps; for "
    "shards of dense scenes with 64-px crops, docs/RESULTS.md); paper: Table 2 and the evaluation protocols' "
    "defaults. Presets: avsa_train.ablate.SCALES.",
)
@click.option(
    "--families",
    multiple=True,
    help="Only these families, comma-separated: a (audio format, with Ambisonics + IV), "
    "b (viewpoints), c (negatives), d (curriculum), e (context).  [default: all]",
)
@click.option(
    "--cells",
    multiple=True,
    help="Only these cells (names from --list, e.g. base,mono, or row ids "
    "such as a/mono), comma-separated.  [default: every cell of the families]",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one field of the scale preset, e.g. --set steps=400 --set bin_epochs=10 (--list shows the "
    f"values). KEY: {', '.join(SCALE_KEYS)} (bin_*: AVC-/AVSA-Bin, seg_*: segmentation; steps is pretrain "
    "--max-steps, seg_fpn_dim both FPN widths); or PART.FIELD for another field of a task config: "
    "pretrain.* (PretrainConfig, e.g. pretrain.tau), binary.* (BinaryEvalConfig, e.g. binary.hidden), "
    "segmentation.* (SegmentationConfig, e.g. segmentation.weight_decay). VALUE: a number, true/false, none, "
    "or 1,2 for a tuple.",
)
@click.option(
    "--scratch/--no-scratch",
    default=True,
    help="Also evaluate a randomly initialised model (no pre-training) as a reference row.",
)
@shared("device")
@click.option(
    "--seed",
    type=int,
    default=0,
    help="Seed of every cell's initialisation, data order, augmentation and evaluation items (the same for all cells).",
)
@click.option("--overwrite", is_flag=True, help="Replace a grid in DIR made with other settings.")
@click.option("--list", "list_only", is_flag=True, help="Print the families, rows, cells and the scale, then exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (one log line per cell is still printed).")
def ablate(grid, shards, out, scale, families, cells, sets, scratch, device, seed, overwrite, list_only, quiet) -> None:
    """Rerun the ablation families of the AVSA supplement's Table 3 on SHARDS, every cell on the same data,
    seed and evaluation items.

    \b
    (a) audio format: mono, stereo, ambisonics, + ambisonics + IV (not in the paper: --spec mel128+iv)
    (b) viewpoints: 1, 2, 4, 8
    (c) negatives: instance only, + spatial, + spatial + temporal
    (d) curriculum: easy only, hard only, no curriculum, curriculum (easy → hard)
    (e) context: direct prediction (depth 0), transformer depth 1, 2, 4

    Each cell pre-trains an AVSA model that differs from the paper's default (ambisonics, V=4, + spatial
    negatives, easy → hard curriculum, D=2) in the ablated option only, then runs AVC-Bin, AVSA-Bin (as
    `avsa-train eval`) and FPN segmentation (as `avsa-train segment`). Rows that are the same training run
    are trained once (the default appears in every family; "Instance" and "Easy Only" are one run). UCF action
    recognition needs UCF101 and is shown as n/a.

    Writes DIR/cells/<cell>/ (pretrain/, eval/, result.json), DIR/table3.md (our numbers with 95% CIs next
    to the paper's) and DIR/table3.json. Resumable: a cell with a result.json is skipped on a rerun; a partial
    cell is redone (its pre-training resumed from its checkpoint when it has one).

    \b
    Examples:
      avsa-train ablate --shards shards/ --out ablate/ --scale tiny --device cpu
      avsa-train ablate --shards shards/ --out ablate/ --families a,e
      avsa-train ablate --shards shards/ --out ablate/ --cells base,mono --set steps=20
      avsa-train ablate --list
    """
    # the grid loads the models (torch) only now, so that --help stays fast
    from avsa_data.options import plural
    from avsa_train.ablate import describe_grid, run_grid

    overrides, family_keys, cell_names = _parse_selection(sets, families, cells)
    if list_only:
        click.echo(describe_grid(scale, overrides))
        return
    _require_folders(shards, out)
    # GridError (bad shards or DIR) and the library's input errors: one line (avsa_data.cli._command)
    table = run_grid(shards, out, scale=scale, families=family_keys, cells=cell_names, overrides=overrides,
                     device=device, seed=seed, scratch=scratch, quiet=quiet, log=lambda msg: click.echo(msg, err=True),
                     overwrite=overwrite, options=_recorded_options())
    click.echo(f"table: {out / 'table3.md'} ({plural(len(table['cells']), 'cell')}, "
               f"{table['cells_seconds_total']:.0f} s)")


def _parse_selection(sets: tuple[str, ...], families: tuple[str, ...],
                     cells: tuple[str, ...]) -> tuple[dict, list[str], list[str]]:
    """The ``--set`` overrides and the ``--families`` and ``--cells`` lists, checked against the grid (a usage
    error names what is unknown)."""
    from avsa_train.ablate import parse_overrides, select

    try:
        overrides = parse_overrides(sets)
        select(_split(families), _split(cells))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return overrides, _split(families), _split(cells)


def _require_folders(shards: str | None, out: Path | None) -> None:
    """Running the grid (not ``--list``) needs ``--shards`` and ``--out``."""
    from avsa_data.options import OptionError

    if not shards:
        raise OptionError("--shards is required (a folder of avsa-data shards)")
    if out is None:
        raise OptionError("--out is required (the folder for cells/, table3.md and table3.json)")


def _recorded_options() -> dict:
    """The command's options as the grid records them (all but ``--list`` and ``--overwrite``)."""
    return {k: v for k, v in click.get_current_context().params.items() if k not in ("list_only", "overwrite")}
