"""Running the grid: each cell pre-trains (:func:`avsa_train.pretrain.run_pretrain`) and runs AVC-Bin, AVSA-Bin
and segmentation exactly as ``avsa-train eval`` / ``avsa-train segment`` would; a rerun into the same folder
continues where the last one stopped.

Resume: a cell whose ``result.json`` holds the same spec (:meth:`GridRun.cell_spec`) is skipped; a cell folder
of another spec is started over; a partial cell keeps what it finished (``pretrain.json`` with its checkpoint,
each evaluation's JSON) and resumes its pre-training from the checkpoint when the checkpoint's configuration is
this cell's (:func:`avsa_train.checkpoint.config_changes`)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from avsa_data.fsutil import atomic_write_bytes
from avsa_data.jobcontrol import exclusive_lock
from avsa_data.options import OptionError, flat_replace
from avsa_train.ablate.grid import SCRATCH_CELL, cell_config, cell_names, cell_overrides, cell_rows, select
from avsa_train.ablate.report import build_table, log_line, render_markdown
from avsa_train.ablate.scales import Scale, resolve_scale
from avsa_train.ablate.store import RESULT, SCHEMA_VERSION, plain, read_json, write_json
from avsa_train.checkpoint import RUN_ONLY_KEYS, config_changes, load_checkpoint
from avsa_train.config import PretrainConfig
from avsa_train.data.sources import option_urls, peek_meta, split_urls
from avsa_train.data.stream_config import check_shards_fit
from avsa_train.pretrain import CHECKPOINT, run_pretrain, stream_config
from avsa_train.run_log import METRICS, read_metrics
from avsa_train.runs import json_values
from avsa_train.tasks.binary_eval import BinaryEvalConfig, run_binary_eval
from avsa_train.tasks.common import environment, load_backbone, prepare_device, seed_torch, write_jsonl, write_metrics
from avsa_train.tasks.segmentation import SegmentationConfig, run_segmentation


class GridError(OptionError):
    """The grid's options cannot run: shards missing or unfit for a cell, a DIR of other settings (one line, exit
    status 2 in the CLI)."""


@dataclass
class GridRun:
    """Everything a grid run needs besides the cells: where, on what, at which scale, and how to report."""

    shards: str
    out: Path
    scale_name: str
    scale: Scale
    seed: int = 0
    device: str = "auto"
    quiet: bool = False
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    @property
    def cells_dir(self) -> Path:
        return self.out / "cells"

    @property
    def eval_workers(self) -> int:
        """DataLoader workers of the evaluations: the scale's (``None``, automatic for pre-training, is 0 here)."""
        return self.scale.pretrain.workers or 0

    def settings(self) -> dict:
        """What must be equal for two runs into the same DIR to fill one table."""
        return plain(
            {
                "grid": "table3",
                "scale": self.scale_name,
                **self.scale.as_dict(),
                "seed": self.seed,
                "shards": self.shards,
            }
        )

    def pretrain_config(self, cell: str) -> PretrainConfig:
        cfg = cell_config(cell, self.scale)
        out = str(self.cells_dir / cell / "pretrain")
        return dataclasses.replace(
            cfg, shards=self.shards, out=out, seed=self.seed, device=self.device, quiet=self.quiet
        ).validate()

    def binary_config(self, task: str, features: str) -> BinaryEvalConfig:
        return flat_replace(self.scale.binary, task=task, features=features, seed=self.seed,
                            workers=self.eval_workers)

    def segmentation_config(self) -> SegmentationConfig:
        return flat_replace(self.scale.segmentation, seed=self.seed, workers=self.eval_workers)

    def cell_spec(self, cell: str) -> dict:
        """Everything that determines a cell's numbers (compared on rerun: a changed spec redoes the cell)."""
        spec = {"cell": cell, "settings": self.settings()}
        if cell != SCRATCH_CELL:
            cfg = self.pretrain_config(cell).as_dict()
            spec["pretrain"] = {k: v for k, v in cfg.items() if k not in RUN_ONLY_KEYS}
        return plain(spec)

    def completed(self, cell: str) -> dict | None:
        """The ``result.json`` of ``cell`` when it is complete with this run's spec (else ``None``: to run)."""
        done = read_json(self.cells_dir / cell / RESULT)
        return done if done is not None and done.get("spec") == self.cell_spec(cell) else None


def check_inputs(run: GridRun, cells: Sequence[str], overwrite: bool = False) -> None:
    """Clear errors before any training: shards present with train and val splits, enough viewpoints, moments
    and segmentation masks for every selected cell, and an ``out`` folder of the same settings (unless
    ``overwrite``: the grid there is then replaced)."""
    try:
        urls = option_urls(run.shards)
        for split in ("train", "val"):
            if not split_urls(urls, split):
                raise GridError(f"no {split} shards ({split}-NNNNNN.tar) in {run.shards}; the grid needs both")
        meta = peek_meta(split_urls(urls, "train"))
    except (OSError, ValueError) as e:
        if isinstance(e, OptionError):
            raise
        raise ValueError(f"cannot read the shards {run.shards}: {str(e).splitlines()[0]}") from None
    if not meta.get("labels", {}).get("present", False):
        raise GridError(f"{run.shards}: the shards have no segmentation masks (avsa-data shard --labels ...)")
    for cell in cells:
        if cell == SCRATCH_CELL:
            continue
        try:
            check_shards_fit(meta, stream_config(run.pretrain_config(cell)))
        except ValueError as e:
            raise GridError(f"cell {cell}: {e}") from None
    saved, ours = read_json(run.out / "ablate.json"), run.settings()
    if saved is not None and saved.get("settings") != ours and not overwrite:
        theirs = saved.get("settings") or {}
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise GridError(
            f"{run.out} holds a grid run with other settings ({', '.join(diff)}): rerun with its options to "
            f"continue it, pass --overwrite to replace it, or choose another --out"
        )


#: What a grid writes in its DIR (what ``--overwrite`` removes).
GRID_FILES = ("cells", "ablate.json", "config.yaml", "table3.json", "table3.md")


def clear_grid(out: Path) -> None:
    """Remove a grid run's files from ``out`` (nothing else)."""
    for name in GRID_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def _pretext(metrics_path: Path, last: int = 10) -> dict:
    """Mean pretext metrics over the last ``last`` logged steps of a pre-training run."""
    try:
        rows = read_metrics(metrics_path)[0][-last:]  # a line torn by a kill is skipped
    except OSError:
        return {}
    out = {}
    for key in ("loss", "V2A/AVC-Acc", "A2V/AVC-Acc", "V2A/AVSA-Acc", "A2V/AVSA-Acc"):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def _pretrain(run: GridRun, cell: str, cell_dir: Path) -> dict:
    """Pre-train ``cell`` (resuming a checkpoint of the same configuration) and return its summary."""
    cfg = run.pretrain_config(cell)
    done = cell_dir / "pretrain.json"
    ckpt = Path(cfg.out) / CHECKPOINT
    summary = read_json(done)
    if summary is not None and ckpt.is_file():
        return summary
    resume = ckpt.is_file() and not config_changes(load_checkpoint(ckpt)["config"], cfg.as_dict())
    if not resume and Path(cfg.out).exists():
        shutil.rmtree(cfg.out)
    t0 = time.perf_counter()
    result = run_pretrain(cfg, resume=resume)
    summary = {
        "steps": result["steps"],
        "steps_per_epoch": result["steps_per_epoch"],
        "seconds": round(time.perf_counter() - t0, 2),
        "resumed": resume,
        "final": _pretext(Path(cfg.out) / METRICS),
        "checkpoint": str(ckpt),
    }
    write_json(done, summary)
    return summary


#: What a cell keeps of an AVC-/AVSA-Bin metrics JSON (the full file stays in ``cells/<cell>/eval/``).
BINARY_KEYS = ("accuracy ci95_videos ci95_wilson ci95_bootstrap_videos roc_auc accuracy_aligned accuracy_misaligned n "
               "n_videos n_repeats_dropped controls best_control gap_over_best_control")
#: What a cell keeps of the segmentation metrics JSON.
SEGMENTATION_KEYS = "miou miou_ci95_bootstrap_videos pixel_accuracy mean_class_accuracy eval_crops n_videos"


def _evaluate(run: GridRun, ckpt: str | None, eval_dir: Path) -> dict:
    """AVC-Bin, AVSA-Bin and segmentation of one checkpoint (``None``: random init), as the commands run them;
    each protocol's JSON is reused when a previous attempt of this cell wrote it."""
    dev = prepare_device(run.device)
    show = not run.quiet

    def backbone():
        seed_torch(run.seed)  # as avsa_train.cli._common.setup: seed, then load
        return load_backbone(ckpt, width=None if ckpt else run.scale.pretrain.width, device=dev)

    def timed(name: str, evaluate: Callable[[], object], items: str | None = None) -> dict:
        """``eval_dir/name.json``: reused when a previous attempt wrote it (with its per-item rows), else
        computed by ``evaluate`` and written with its time."""
        saved = read_json(eval_dir / f"{name}.json") if items is None or (eval_dir / items).is_file() else None
        if saved is None:
            t0 = time.perf_counter()
            result = evaluate()
            if items is not None:
                write_jsonl(eval_dir, items.removesuffix(".jsonl"), result.item_rows())
            saved = result.to_json()
            saved["seconds"] = round(time.perf_counter() - t0, 2)
            write_metrics(eval_dir, name, saved)
        return saved

    def binary(task: str):
        bb = backbone()
        features = "transformer" if bb.translator is not None else "direct"
        return run_binary_eval(bb, run.shards, run.binary_config(task, features), dev, show_progress=show)

    out: dict = {}
    for task in ("avc", "avsa"):
        saved = timed(f"eval_{task}", lambda task=task: binary(task), items=f"eval_{task}_items.jsonl")
        out[task] = {**{k: saved["metrics"].get(k) for k in BINARY_KEYS.split()}, "seconds": saved.get("seconds")}
    saved = timed(
        "segment", lambda: run_segmentation(backbone(), run.shards, run.segmentation_config(), dev, show_progress=show)
    )
    out["seg"] = {**{k: saved["metrics"].get(k) for k in SEGMENTATION_KEYS.split()}, "seconds": saved.get("seconds")}
    out["ucf"] = None
    return out


def run_cell(run: GridRun, cell: str) -> tuple[dict, bool]:
    """Train and evaluate one cell unless its ``result.json`` (with the same spec) exists.
    Returns ``(result, ran)``."""
    existing = run.completed(cell)
    if existing is not None:
        return existing, False
    cell_dir = run.cells_dir / cell
    spec = run.cell_spec(cell)
    if cell_dir.exists() and read_json(cell_dir / "spec.json") != spec:
        shutil.rmtree(cell_dir)  # a partial cell of other settings: start it over
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_json(cell_dir / "spec.json", spec)
    t0 = time.perf_counter()
    pretrain = None if cell == SCRATCH_CELL else _pretrain(run, cell, cell_dir)
    metrics = _evaluate(run, pretrain and pretrain["checkpoint"], cell_dir / "eval")
    result = {
        "schema": "avsa.ablate.cell",
        "schema_version": SCHEMA_VERSION,
        "cell": cell,
        "rows": cell_rows(cell),
        "overrides": cell_overrides(cell) if cell != SCRATCH_CELL else {"init": "random (no pre-training)"},
        "spec": spec,
        "pretrain": pretrain,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    write_json(cell_dir / RESULT, result)
    return result, True


def run_grid(
    shards: str,
    out: str | Path,
    scale: str = "tiny",
    families: Sequence[str] | None = None,
    cells: Sequence[str] | None = None,
    overrides: dict | None = None,
    device: str = "auto",
    seed: int = 0,
    scratch: bool = True,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
    options: dict | None = None,
) -> dict:
    """Run (or continue) the Table 3 grid into ``out`` and write ``out/table3.md`` and ``out/table3.json``.

    ``families`` / ``cells`` select part of the grid (:func:`~avsa_train.ablate.grid.select`); ``overrides``
    are ``--set`` values (:func:`~avsa_train.ablate.scales.parse_overrides`); ``scratch`` adds a randomly
    initialised reference model (no pre-training) evaluated the same way; ``overwrite`` replaces a grid of other
    settings in ``out``; ``options``: the command's options, written to ``out/config.yaml`` (``--config`` repeats
    the run). One grid job at a time per ``out`` (a lock). Returns the ``table3.json`` payload.
    """
    sc = resolve_scale(scale, overrides)
    shards = str(shards)
    if "://" not in shards and Path(shards).exists():
        shards = str(Path(shards).resolve())  # the same DIR continues from any working folder
    run = GridRun(shards=shards, out=Path(out), scale_name=scale, scale=sc, seed=seed, device=device, quiet=quiet)
    if log is not None:
        run.log = log
    todo = select(families, cells)
    if scratch and SCRATCH_CELL not in todo and not cells:
        todo.append(SCRATCH_CELL)
    check_inputs(run, todo, overwrite)
    with exclusive_lock(run.out, "avsa-train ablate run", name=".ablate.lock"):
        saved = read_json(run.out / "ablate.json")
        if saved is not None and saved.get("settings") != run.settings():  # overwrite (check_inputs)
            clear_grid(run.out)
        write_json(run.out / "ablate.json", {"settings": run.settings()})
        if options is not None:
            atomic_write_bytes(run.out / "config.yaml", yaml.safe_dump(json_values(options), sort_keys=True).encode())
        return _run_cells(run, todo)


def _run_cells(run: GridRun, todo: list[str]) -> dict:
    """Every cell of ``todo`` not done yet, then ``table3.json`` and ``table3.md``."""
    t0 = time.perf_counter()
    for i, cell in enumerate(todo, 1):
        if run.completed(cell) is None:
            run.log(f"[{i}/{len(todo)}] {cell}: training and evaluating …")
        result, ran = run_cell(run, cell)
        run.log(log_line(i, len(todo), cell, result, ran))
    results = {c: r for c in cell_names() + [SCRATCH_CELL] if (r := run.completed(c)) is not None}
    table = build_table(results, run.cells_dir, run.settings(), run.seed)
    table["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 2)
    write_json(run.out / "table3.json", table)
    atomic_write_bytes(run.out / "table3.md", render_markdown(table).encode())
    return table
