"""``avsa-train ablate``: rerun the ablation families of the AVSA supplement's Table 3 on one set of shards.

The grid (:data:`FAMILIES`) varies one pre-training option of the paper's AVSA model (Table 2: ambisonics,
V = 4 viewpoints, instance + spatial negatives, the easy → hard curriculum, a depth-2 transformer) per row:

* (a) audio format: mono, stereo, ambisonics, and a row beyond the paper: ambisonics + intensity vectors
  (``--spec mel128+iv``, :mod:`avsa_train.audio_features`), which keeps the front/back and left/right signs
  that magnitude spectrograms drop;
* (b) viewpoints: 1, 2, 4, 8;
* (c) negatives: instance only, + spatial, + spatial + temporal;
* (d) curriculum: easy only, hard only, no curriculum, curriculum (easy → hard);
* (e) context: direct prediction, transformer of depth 1, 2, 4. "Direct prediction" has two readings, both run:
  ``e/d0`` (depth 0: no translation network, the projection heads only) and ``e/noctx`` (the authors' NoCtx
  network: a per-viewpoint MLP of depth 2 without attention, ``--context none``); both are compared with the
  paper's one "Direct Prediction" row.

The easy → hard curriculum of a cell runs in the same job: its first ``switch_epoch`` epochs are the AVC stage of
Table 2 (one viewpoint, batch ``easy_batch_size`` = 112 at the paper scale, the direct projection heads, loss (7);
:attr:`avsa_train.config.PretrainConfig.has_avc_stage`), the same for every cell whatever its V, then AVSA.

Rows that describe the same training run share one **cell** (a pre-training run and its evaluations): the
default configuration appears once per family but is trained once (cell ``base``), and Table 3c's "Instance"
and Table 3d's "Easy Only" are the same run (the paper reports identical numbers for them). Every cell uses the
same shards, seed and evaluation items, so its numbers can be compared item by item with the default's
(:func:`paired_vs_default`).

A cell pre-trains with :func:`avsa_train.pretrain.run_pretrain`, then runs the downstream protocols that need
no outside data — AVC-Bin and AVSA-Bin (:mod:`avsa_train.tasks.binary_eval`) and FPN segmentation
(:mod:`avsa_train.tasks.segmentation`) — exactly as ``avsa-train eval`` / ``avsa-train segment`` would with the
same options. UCF101 action recognition needs the UCF101 videos and is reported as n/a.

Output (``DIR``): ``cells/<cell>/`` (``pretrain/`` run folder, ``eval/`` metrics JSON as the commands write them,
``result.json`` written atomically when the cell is complete; a cell with a ``result.json`` is skipped on a
rerun, a partial one is redone, resuming its pre-training from the last checkpoint when it has one),
``table3.md`` and ``table3.json``.

Scales (:data:`SCALES`): ``paper`` follows Table 2 and the evaluation protocols' defaults; ``tiny`` shrinks the
encoders, batches, steps and evaluation epochs so the whole grid runs on synthetic data on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avsa_data.fsutil import atomic_write_bytes
from avsa_train.config import TASK_DEFAULTS, PretrainConfig

GRIDS = ("table3",)
RESULT = "result.json"
SCHEMA_VERSION = 1
#: The seed file that holds the published numbers of :data:`PAPER_TABLE3`.
PAPER_SOURCE = "AVSA supplementary material (NeurIPS 2020), Table 3"
METRICS = ("avc", "avsa", "seg", "ucf")
METRIC_TITLES = {"avc": "AVC-Bin@4", "avsa": "AVSA-Bin@4", "seg": "Segm mIoU", "ucf": "UCF"}


# ---------------------------------------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    """Sizes and hyper-parameters of one grid run. Every cell uses the same values (only the ablated option and
    what it implies differ). Pre-training fields map to :class:`avsa_train.config.PretrainConfig`; ``bin_*`` to
    :class:`avsa_train.tasks.binary_eval.BinaryEvalConfig` (both AVC-Bin and AVSA-Bin); ``seg_*`` to
    :class:`avsa_train.tasks.segmentation.SegmentationConfig`. ``None`` means the protocol's own default."""

    # pre-training
    width: float  # channel width multiplier of both encoders
    batch_size: int  # samples per step
    lr: float  # Adam learning rate
    weight_decay: float
    epochs: int  # pre-training epochs (ignored when ``steps`` is set)
    steps: int | None  # total pre-training steps (None: ``epochs`` × steps per epoch)
    steps_per_epoch: int | None  # None: train samples / batch size (from manifest.json)
    switch_epoch: int  # easy → hard: epochs of the AVC stage before AVSA with the spatial negatives
    easy_batch_size: int  # samples per step of the AVC stage (Table 2: 112), one viewpoint each, every cell
    temporal_moments: int  # M moments per item for the temporal-negatives cell (shards need ≥ M per sample)
    color_jitter: bool  # Table 2 cj
    flip_p: float  # Table 2 hf
    workers: int | None  # DataLoader workers (None: CPUs − 1, at most 8)
    checkpoint_every: int  # pre-training checkpoint period in steps (0: only at the end)
    # AVC-Bin / AVSA-Bin
    bin_epochs: int
    bin_batch_size: int
    bin_lr: float | None  # None: 1e-5 AVC, 1e-4 AVSA (the reference configs)
    bin_milestones: tuple[int, ...] | None  # None: (5, 8) AVC, (8,) AVSA
    bin_test_draws: int  # evaluation passes over the val split (new views and negatives each)
    # segmentation
    seg_epochs: int
    seg_batch_size: int
    seg_lr: float
    seg_milestones: tuple[int, ...]
    seg_fpn_dim: int  # lateral and semantic-branch channels of the FPN head (§A.2: 128)
    seg_views: int = 4  # viewpoints per training item of the segmentation head (§A.2 reference: 4)

    def replace(self, **changes) -> Scale:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_TINY = Scale(
    width=0.125,
    batch_size=8,
    lr=1e-3,
    weight_decay=1e-5,
    epochs=10,
    steps=96,
    steps_per_epoch=8,
    switch_epoch=6,
    easy_batch_size=32,
    temporal_moments=2,
    color_jitter=False,
    flip_p=0.0,
    workers=1,
    checkpoint_every=0,
    bin_epochs=3,
    bin_batch_size=8,
    bin_lr=1e-3,
    bin_milestones=(2,),
    bin_test_draws=1,
    seg_epochs=2,
    seg_batch_size=8,
    seg_lr=1e-3,
    seg_milestones=(),
    seg_fpn_dim=32,
)

#: ``paper``: Table 2 (bs 28, V 4, lr 1e-4, wd 1e-5; the easy stage of the curriculum is the AVC model's 100
#: epochs, here run in the same job: 150 epochs with the switch at epoch 100) and the evaluation protocols of
#: §5.2 / §A.2 (docs/EVALUATION.md). ``tiny``: about 2–3 minutes per cell on 2 CPU cores with synthetic shards
#: (docs/RESULTS.md lists what it changes and why).
SCALES: dict[str, Scale] = {
    "paper": Scale(
        width=1.0,
        batch_size=28,
        lr=1e-4,
        weight_decay=1e-5,
        epochs=150,
        steps=None,
        steps_per_epoch=None,
        switch_epoch=100,
        easy_batch_size=112,
        temporal_moments=2,
        color_jitter=True,
        flip_p=0.5,
        workers=None,
        checkpoint_every=1000,
        bin_epochs=10,
        bin_batch_size=32,
        bin_lr=None,
        bin_milestones=None,
        bin_test_draws=1,
        seg_epochs=10,
        seg_batch_size=20,
        seg_lr=1e-4,
        seg_milestones=(5, 8),
        seg_fpn_dim=128,
    ),
    "tiny": _TINY,
    # issue 13's learning scale (docs/RESULTS.md): shards of dense synthetic scenes with 64-px crops and the
    # energy viewpoint sampler, on which the AVSA pretext leaves chance within tens of steps on 2 CPU cores;
    # 60 steps: 20 of the AVC stage (batch 64), 40 of AVSA (batch 16)
    "cpu": _TINY.replace(
        batch_size=16,
        steps=60,
        steps_per_epoch=10,
        switch_epoch=2,
        easy_batch_size=64,
        workers=0,
        bin_epochs=4,
        bin_batch_size=16,
        bin_milestones=(3,),
        bin_test_draws=3,
        seg_views=2,
    ),
}


def parse_overrides(items: Iterable[str]) -> dict:
    """``["steps=20", "bin_milestones=3,4", "bin_lr=none"]`` → typed :class:`Scale` field values."""
    kinds = {f.name: f.type for f in dataclasses.fields(Scale)}
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if not sep or key not in kinds:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(kinds)}")
        kind = str(kinds[key])
        try:
            if raw.lower() == "none" and "None" in kind:
                out[key] = None
            elif kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                out[key] = raw.lower() in ("true", "1", "yes", "on")
            elif "tuple" in kind:
                out[key] = tuple(int(x) for x in raw.split(",") if x.strip())
            elif kind.startswith("int"):
                out[key] = int(raw)
            else:
                out[key] = float(raw)
        except ValueError:
            raise ValueError(f"--set {item!r}: {raw!r} is not a valid {kind}") from None
    return out


def resolve_scale(name: str, overrides: dict | None = None) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}")
    return SCALES[name].replace(**(overrides or {}))


# ---------------------------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Row:
    """One row of Table 3: ``id`` (``a/mono``), the paper's ``label``, the ``cell`` (training run) it reads and
    the pre-training option it sets (``{}`` for the paper's own choice). ``in_paper`` is False for rows avsa
    adds beyond the published table (no paper numbers)."""

    id: str
    label: str
    cell: str
    overrides: dict = field(default_factory=dict)
    in_paper: bool = True
    #: a row the paper's Table 3 does not have, read as another reading of a paper row: the id of the paper row
    #: it is compared with (``None``: its own row, or none when ``in_paper`` is False)
    paper_row: str | None = None

    @property
    def paper_id(self) -> str | None:
        """The id of the published row this row's paper numbers come from (``None``: a row beyond the paper)."""
        return self.paper_row or (self.id if self.in_paper else None)


@dataclass(frozen=True)
class Family:
    key: str  # a … e
    title: str
    option: str  # the PretrainConfig field the family varies
    rows: tuple[Row, ...]


#: The paper's AVSA model (Table 2), the point every family varies one option of.
DEFAULTS = {
    "audio_format": "ambi",
    "spec": "mel128",
    "viewpoints": 4,
    "negatives": "spatial",
    "curriculum": "easy-to-hard",
    "depth": 2,
    "context": "attention",
}
DEFAULT_CELL = "base"
SCRATCH_CELL = "scratch"


def _family(
    key: str,
    title: str,
    option: str,
    rows: Sequence[tuple[str, str, str, object]],
    beyond_paper: Sequence[tuple[str, str, str, dict]] = (),
) -> Family:
    """The paper's ``rows`` (slug, label, cell, value of ``option``), then ``beyond_paper`` rows (slug, label,
    cell, the options they set) that avsa adds to the family."""
    out = []
    for slug, label, cell, value in rows:
        out.append(Row(f"{key}/{slug}", label, cell, {} if value == DEFAULTS[option] else {option: value}))
    for slug, label, cell, overrides in beyond_paper:
        out.append(Row(f"{key}/{slug}", label, cell, dict(overrides), in_paper=False))
    return Family(key, title, option, tuple(out))


FAMILIES: tuple[Family, ...] = (
    _family(
        "a",
        "Spatial audio format",
        "audio_format",
        [
            ("mono", "Mono", "mono", "mono"),
            ("stereo", "Stereo", "stereo", "stereo"),
            ("ambi", "Ambisonics", "base", "ambi"),
        ],
        # not in the paper: the ambisonic input with the signs of Y, Z, X kept (issue 15)
        beyond_paper=[("ambi-iv", "Ambisonics + IV", "ambi-iv", {"spec": "mel128+iv"})],
    ),
    _family(
        "b",
        "Number of viewpoints",
        "viewpoints",
        [
            ("v1", "1 Viewpoint", "v1", 1),
            ("v2", "2 Viewpoints", "v2", 2),
            ("v4", "4 Viewpoints", "base", 4),
            ("v8", "8 Viewpoints", "v8", 8),
        ],
    ),
    _family(
        "c",
        "Negative crop type",
        "negatives",
        [
            ("instance", "Instance", "instance", "instance"),
            ("spatial", "+ Spatial", "base", "spatial"),
            ("spatial-temporal", "+ Spatial + Temporal", "spatial-temporal", "spatial+temporal"),
        ],
    ),
    _family(
        "d",
        "Curriculum learning",
        "curriculum",
        [
            ("easy-only", "Easy Only", "instance", "easy-only"),
            ("hard-only", "Hard Only", "hard-only", "hard-only"),
            ("none", "No Curriculum", "no-curriculum", "none"),
            ("curriculum", "Curriculum", "base", "easy-to-hard"),
        ],
    ),
    _family(
        "e",
        "Modeling spatial context",
        "depth",
        [
            ("d0", "Direct Prediction", "d0", 0),
            ("d1", "Transformer (Depth=1)", "d1", 1),
            ("d2", "Transformer (Depth=2)", "base", 2),
            ("d4", "Transformer (Depth=4)", "d4", 4),
        ],
    ),
)
#: The authors' other reading of "Direct Prediction" (their ``use_context: false``): a per-viewpoint MLP of the
#: default depth without attention, compared with the paper's Direct Prediction numbers.
NOCTX_ROW = Row("e/noctx", "Direct Prediction (per-viewpoint MLP)", "noctx", {"context": "none"}, paper_row="e/d0")
FAMILIES = FAMILIES[:-1] + (dataclasses.replace(FAMILIES[-1], rows=FAMILIES[-1].rows + (NOCTX_ROW,)),)
#: What each reading of "Direct Prediction" is (shown under the table).
DIRECT_PREDICTION_NOTE = (
    "Table 3e's *Direct Prediction* is run in two readings: `d0` — no translation network (depth 0), each "
    "viewpoint's features go straight to the projection heads; `noctx` — the authors' NoCtx network "
    "(`--context none`): a per-viewpoint MLP of depth 2 (two residual MLP blocks per layer) without attention, "
    "so no viewpoint sees another. Both are compared with the paper's single Direct Prediction row."
)

#: Options a row's option forces on others (the test checks that nothing else differs from the default):
#: one viewpoint has no other viewpoints to take spatial negatives from; temporal negatives need M ≥ 2 moments;
#: instance-only negatives make the curriculum moot (stored as ``negatives=instance, curriculum=easy-only``).
IMPLIED = {
    "viewpoints": ("negatives", "curriculum"),
    "negatives": ("moments", "curriculum"),
    "curriculum": ("negatives",),
}

#: Published numbers (percent) of Table 3 in the seed's supplementary material: AVC@4, AVSA@4, Segm (mIoU), UCF
#: (clip accuracy). Keyed by :attr:`Row.id`; rows with ``in_paper=False`` have none.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "a/mono": {"avc": 82.39, "avsa": 62.95, "seg": 34.21, "ucf": 64.90},
    "a/stereo": {"avc": 84.47, "avsa": 71.11, "seg": 34.54, "ucf": 64.68},
    "a/ambi": {"avc": 89.83, "avsa": 69.97, "seg": 35.83, "ucf": 68.52},
    "b/v1": {"avc": 84.60, "avsa": 61.77, "seg": 35.37, "ucf": 64.71},
    "b/v2": {"avc": 87.70, "avsa": 63.71, "seg": 36.63, "ucf": 66.64},
    "b/v4": {"avc": 89.83, "avsa": 69.97, "seg": 35.83, "ucf": 68.52},
    "b/v8": {"avc": 91.65, "avsa": 74.64, "seg": 34.84, "ucf": 66.44},
    "c/instance": {"avc": 83.87, "avsa": 61.20, "seg": 34.05, "ucf": 64.09},
    "c/spatial": {"avc": 89.83, "avsa": 69.97, "seg": 35.83, "ucf": 68.52},
    "c/spatial-temporal": {"avc": 89.65, "avsa": 72.81, "seg": 36.11, "ucf": 65.77},
    "d/easy-only": {"avc": 83.87, "avsa": 61.20, "seg": 34.05, "ucf": 64.09},
    "d/hard-only": {"avc": 93.22, "avsa": 77.71, "seg": 20.97, "ucf": 59.15},
    "d/none": {"avc": 91.93, "avsa": 71.77, "seg": 35.29, "ucf": 65.49},
    "d/curriculum": {"avc": 89.83, "avsa": 69.97, "seg": 35.83, "ucf": 68.52},
    "e/d0": {"avc": 91.67, "avsa": 68.87, "seg": 34.50, "ucf": 65.59},
    "e/d1": {"avc": 90.64, "avsa": 72.95, "seg": 35.77, "ucf": 66.97},
    "e/d2": {"avc": 89.83, "avsa": 69.97, "seg": 35.83, "ucf": 68.52},
    "e/d4": {"avc": 89.86, "avsa": 70.09, "seg": 35.97, "ucf": 66.88},
}


def all_rows(families: Iterable[Family] = FAMILIES) -> list[Row]:
    return [r for f in families for r in f.rows]


def cell_names() -> list[str]:
    """Every cell in grid order (first appearance), without the scratch reference."""
    seen: dict[str, None] = {}
    for r in all_rows():
        seen.setdefault(r.cell, None)
    return list(seen)


def cell_overrides(cell: str) -> dict:
    """The options that define ``cell`` (those of its first row; rows that share a cell agree, tested)."""
    for r in all_rows():
        if r.cell == cell:
            return dict(r.overrides)
    raise ValueError(f"unknown cell {cell!r}")


def select(families: Sequence[str] | None = None, cells: Sequence[str] | None = None) -> list[str]:
    """The cells to run: those of ``families`` (keys ``a``…``e``; all when empty), narrowed to ``cells`` (cell
    names or row ids such as ``a/mono``) when given. Unknown names raise ValueError listing the valid ones."""
    fam_keys = [f.key for f in FAMILIES]
    bad = [k for k in families or () if k not in fam_keys]
    if bad:
        raise ValueError(
            f"unknown famil{'ies' if len(bad) > 1 else 'y'} {', '.join(bad)}; choose from {', '.join(fam_keys)}"
        )
    chosen = [f for f in FAMILIES if not families or f.key in families]
    pool = [r.cell for f in chosen for r in f.rows]
    if cells:
        by_row = {r.id: r.cell for r in all_rows()}
        valid = cell_names() + [SCRATCH_CELL]
        wanted = []
        for name in cells:
            cell = by_row.get(name, name)
            if cell not in valid:
                raise ValueError(
                    f"unknown cell {name!r}; cells: {', '.join(valid)} (or row ids such as a/mono, see --list)"
                )
            wanted.append(cell)
        pool = [c for c in pool if c in wanted] + [c for c in wanted if c == SCRATCH_CELL]
    return list(dict.fromkeys(pool))


def pretrain_values(cell: str, scale: Scale) -> dict:
    """The :class:`PretrainConfig` options of ``cell`` at ``scale`` (without run-specific ones: shards, out…)."""
    values = {"task": "avsa", **TASK_DEFAULTS["avsa"]}
    values.pop("out", None)
    values.update(
        width=scale.width,
        batch_size=scale.batch_size,
        lr=scale.lr,
        weight_decay=scale.weight_decay,
        epochs=scale.epochs,
        max_steps=scale.steps,
        steps_per_epoch=scale.steps_per_epoch,
        switch_epoch=scale.switch_epoch,
        easy_stage="avc",
        easy_batch_size=scale.easy_batch_size,
        color_jitter=scale.color_jitter,
        flip_p=scale.flip_p,
        checkpoint_every=scale.checkpoint_every,
        **DEFAULTS,
    )
    values.update(cell_overrides(cell))
    # what the ablated option implies (see IMPLIED)
    if values["viewpoints"] < 2:
        values["negatives"] = "instance"
    if "temporal" in values["negatives"]:
        values["moments"] = max(values["moments"], scale.temporal_moments)
    if values["negatives"] == "instance" or values["curriculum"] == "easy-only":
        values["negatives"], values["curriculum"] = "instance", "easy-only"
    return values


# ---------------------------------------------------------------------------------------------- running


class GridError(ValueError):
    """A problem with the grid's inputs (one line, no traceback in the CLI)."""


def _write_json(path: Path, payload: dict) -> None:
    from avsa_train.tasks.common import _jsonable

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(_jsonable(payload), indent=2, sort_keys=True) + "\n").encode())


def _plain(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so saved and fresh specs compare equal."""
    return json.loads(json.dumps(obj))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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

    def settings(self) -> dict:
        """What must be equal for two runs into the same DIR to fill one table."""
        return _plain(
            {
                "grid": "table3",
                "scale": self.scale_name,
                **self.scale.as_dict(),
                "seed": self.seed,
                "shards": self.shards,
            }
        )

    def pretrain_config(self, cell: str) -> PretrainConfig:
        values = pretrain_values(cell, self.scale)
        values.update(
            shards=self.shards,
            out=str(self.cells_dir / cell / "pretrain"),
            seed=self.seed,
            device=self.device,
            workers=self.scale.workers,
            quiet=self.quiet,
        )
        return PretrainConfig(**values).validate()

    def binary_config(self, task: str, features: str):
        from avsa_train.tasks.binary_eval import BinaryEvalConfig

        s = self.scale
        return BinaryEvalConfig(
            task=task,
            epochs=s.bin_epochs,
            batch_size=s.bin_batch_size,
            lr=s.bin_lr,
            milestones=s.bin_milestones,
            test_draws=s.bin_test_draws,
            features=features,
            seed=self.seed,
            workers=s.workers or 0,
        )

    def segmentation_config(self):
        from avsa_train.tasks.segmentation import SegmentationConfig

        s = self.scale
        return SegmentationConfig(
            epochs=s.seg_epochs,
            batch_size=s.seg_batch_size,
            lr=s.seg_lr,
            milestones=tuple(s.seg_milestones),
            fpn_dim=s.seg_fpn_dim,
            segm_dim=s.seg_fpn_dim,
            views=s.seg_views,
            seed=self.seed,
            workers=s.workers or 0,
        )

    def cell_spec(self, cell: str) -> dict:
        """Everything that determines a cell's numbers (compared on rerun: a changed spec redoes the cell)."""
        spec = {"cell": cell, "settings": self.settings()}
        if cell != SCRATCH_CELL:
            cfg = self.pretrain_config(cell).as_dict()
            spec["pretrain"] = {k: v for k, v in cfg.items() if k not in ("out", "device", "quiet")}
        return _plain(spec)


def check_inputs(run: GridRun, cells: Sequence[str]) -> None:
    """Clear errors before any training: shards present with train and val splits, enough viewpoints, moments
    and segmentation masks for every selected cell, and an ``out`` folder of the same settings."""
    from avsa_train.data import check_shards_fit, expand_urls, peek_meta, split_urls
    from avsa_train.pretrain import stream_config

    if "://" not in run.shards and not any(ch in run.shards for ch in "*?{") and not Path(run.shards).exists():
        raise GridError(f"--shards {run.shards} does not exist (make shards with avsa-data shard)")
    try:
        urls = expand_urls(run.shards)
        for split in ("train", "val"):
            if not split_urls(urls, split):
                raise GridError(f"no {split} shards ({split}-NNNNNN.tar) in {run.shards}; the grid needs both")
        meta = peek_meta(split_urls(urls, "train"))
    except (OSError, ValueError) as e:
        if isinstance(e, GridError):
            raise
        raise GridError(f"cannot read the shards {run.shards}: {str(e).splitlines()[0]}") from None
    if not meta.get("labels", {}).get("present", False):
        raise GridError(f"{run.shards}: the shards have no segmentation masks (avsa-data shard --labels ...)")
    for cell in cells:
        if cell == SCRATCH_CELL:
            continue
        try:
            check_shards_fit(meta, stream_config(run.pretrain_config(cell)))
        except ValueError as e:
            raise GridError(f"cell {cell}: {e}") from None
    saved = _read_json(run.out / "ablate.json")
    if saved is not None and saved.get("settings") != run.settings():
        diff = sorted(
            k
            for k in set(saved.get("settings", {})) | set(run.settings())
            if saved.get("settings", {}).get(k) != run.settings().get(k)
        )
        raise GridError(
            f"{run.out} holds a grid run with other settings ({', '.join(diff)}); use another --out, or the "
            f"same options to continue it"
        )


def _pretext(metrics_path: Path, last: int = 10) -> dict:
    """Mean pretext metrics over the last ``last`` logged steps of a pre-training run."""
    from avsa_train.pretrain import read_metrics

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
    from avsa_train.checkpoint import load_checkpoint
    from avsa_train.pretrain import CHECKPOINT, METRICS, run_pretrain

    cfg = run.pretrain_config(cell)
    done = cell_dir / "pretrain.json"
    ckpt = Path(cfg.out) / CHECKPOINT
    summary = _read_json(done)
    if summary is not None and ckpt.is_file():
        return summary
    resume = False
    if ckpt.is_file():
        saved = load_checkpoint(ckpt, map_location="cpu")["config"]
        ours = cfg.as_dict()
        skip = {"quiet", "device", "out"} | ({"workers"} if cfg.workers is None else set())
        resume = all(saved.get(k) == ours.get(k) for k in (set(saved) | set(ours)) - skip)
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
    _write_json(done, summary)
    return summary


#: What a cell keeps of an AVC-/AVSA-Bin metrics JSON (the full file stays in ``cells/<cell>/eval/``).
BINARY_KEYS = "accuracy ci95_wilson ci95_bootstrap_videos roc_auc accuracy_aligned accuracy_misaligned n n_videos"


def _binary_keys(m: dict) -> dict:
    return {k: m.get(k) for k in BINARY_KEYS.split()}


def _evaluate(run: GridRun, cell: str, ckpt: str | None, eval_dir: Path) -> dict:
    """AVC-Bin, AVSA-Bin and segmentation of one checkpoint (``None``: random init), as the commands run them;
    each protocol's JSON is reused when a previous attempt of this cell wrote it."""
    from avsa_train.tasks.binary_eval import run_binary_eval
    from avsa_train.tasks.common import load_backbone, resolve_device, seed_torch, write_jsonl, write_metrics
    from avsa_train.tasks.segmentation import run_segmentation

    dev = resolve_device(run.device)
    show = not run.quiet

    def backbone():
        seed_torch(run.seed)  # as cli._train_common.setup: seed, then load
        return load_backbone(ckpt, width=None if ckpt else run.scale.width, device=dev)

    out: dict = {}
    for task in ("avc", "avsa"):
        path = eval_dir / f"eval_{task}.json"
        saved = _read_json(path) if (eval_dir / f"eval_{task}_items.jsonl").is_file() else None
        if saved is None:
            t0 = time.perf_counter()
            bb = backbone()
            features = "transformer" if bb.translator is not None else "direct"
            result = run_binary_eval(bb, run.shards, run.binary_config(task, features), dev, show_progress=show)
            write_jsonl(eval_dir, f"eval_{task}_items", result.item_rows())
            saved = result.to_json()
            saved["seconds"] = round(time.perf_counter() - t0, 2)
            write_metrics(eval_dir, f"eval_{task}", saved)
        out[task] = {**_binary_keys(saved["metrics"]), "seconds": saved.get("seconds")}
    path = eval_dir / "segment.json"
    saved = _read_json(path)
    if saved is None:
        t0 = time.perf_counter()
        result = run_segmentation(backbone(), run.shards, run.segmentation_config(), dev, show_progress=show)
        saved = result.to_json()
        saved["seconds"] = round(time.perf_counter() - t0, 2)
        write_metrics(eval_dir, "segment", saved)
    m = saved["metrics"]
    out["seg"] = {
        "miou": m.get("miou"),
        "miou_ci95_bootstrap_videos": m.get("miou_ci95_bootstrap_videos"),
        "pixel_accuracy": m.get("pixel_accuracy"),
        "mean_class_accuracy": m.get("mean_class_accuracy"),
        "eval_crops": m.get("eval_crops"),
        "n_videos": m.get("n_videos"),
        "seconds": saved.get("seconds"),
    }
    out["ucf"] = None
    return out


def run_cell(run: GridRun, cell: str) -> tuple[dict, bool]:
    """Train and evaluate one cell unless its ``result.json`` (with the same spec) exists.
    Returns ``(result, ran)``."""
    cell_dir = run.cells_dir / cell
    spec = run.cell_spec(cell)
    existing = _read_json(cell_dir / RESULT)
    if existing is not None and existing.get("spec") == spec:
        return existing, False
    saved_spec = _read_json(cell_dir / "spec.json")
    if cell_dir.exists() and saved_spec != spec:
        shutil.rmtree(cell_dir)  # a partial cell of other settings: start it over
    cell_dir.mkdir(parents=True, exist_ok=True)
    _write_json(cell_dir / "spec.json", spec)
    t0 = time.perf_counter()
    pretrain = None
    ckpt = None
    if cell != SCRATCH_CELL:
        pretrain = _pretrain(run, cell, cell_dir)
        ckpt = pretrain["checkpoint"]
    metrics = _evaluate(run, cell, ckpt, cell_dir / "eval")
    from avsa_train.tasks.common import environment

    result = {
        "schema": "avsa.ablate.cell",
        "schema_version": SCHEMA_VERSION,
        "cell": cell,
        "rows": [r.id for r in all_rows() if r.cell == cell],
        "overrides": cell_overrides(cell) if cell != SCRATCH_CELL else {"init": "random (no pre-training)"},
        "spec": spec,
        "pretrain": pretrain,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    _write_json(cell_dir / RESULT, result)
    return result, True


def _fmt(x, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def headline(result: dict) -> dict[str, tuple[float | None, list | None]]:
    """``{metric: (value, 95 % CI)}`` of a cell result (video-bootstrap CIs; UCF ``(None, None)``)."""
    m = result["metrics"]
    return {
        "avc": (m["avc"]["accuracy"], m["avc"]["ci95_bootstrap_videos"]),
        "avsa": (m["avsa"]["accuracy"], m["avsa"]["ci95_bootstrap_videos"]),
        "seg": (m["seg"]["miou"], m["seg"]["miou_ci95_bootstrap_videos"]),
        "ucf": (None, None),
    }


def _log_line(i: int, n: int, cell: str, result: dict, ran: bool) -> str:
    h = headline(result)
    rows = ", ".join(result["rows"]) or "reference"
    pre = result.get("pretrain") or {}
    fin = pre.get("final") or {}
    acc = [fin[k] for k in ("V2A/AVSA-Acc", "A2V/AVSA-Acc") if k in fin]
    pretext = f"pretext loss {_fmt(fin.get('loss'), 3)} AVSA-Acc {_fmt(sum(acc) / len(acc))}% | " if acc else ""
    status = f"{result['seconds']:.0f} s" if ran else "done earlier, skipped"
    return (
        f"[{i}/{n}] {cell} ({rows}): {pretext}AVC-Bin {_fmt(h['avc'][0])}% AVSA-Bin {_fmt(h['avsa'][0])}% "
        f"mIoU {_fmt(h['seg'][0])}% ({status})"
    )


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
) -> dict:
    """Run (or continue) the Table 3 grid into ``out`` and write ``out/table3.md`` and ``out/table3.json``.

    ``families`` / ``cells`` select part of the grid (:func:`select`); ``overrides`` change :class:`Scale` fields;
    ``scratch`` adds a randomly initialised reference model (no pre-training) evaluated the same way.
    Returns the ``table3.json`` payload.
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
    check_inputs(run, todo)
    run.out.mkdir(parents=True, exist_ok=True)
    _write_json(run.out / "ablate.json", {"settings": run.settings()})
    t0 = time.perf_counter()
    for i, cell in enumerate(todo, 1):
        done = _read_json(run.cells_dir / cell / RESULT)
        if done is None or done.get("spec") != run.cell_spec(cell):
            run.log(f"[{i}/{len(todo)}] {cell}: training and evaluating …")
        result, ran = run_cell(run, cell)
        run.log(_log_line(i, len(todo), cell, result, ran))
    table = build_table(run)
    table["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 2)
    _write_json(run.out / "table3.json", table)
    atomic_write_bytes(run.out / "table3.md", render_markdown(table).encode())
    return table


# ---------------------------------------------------------------------------------------------- the table


def _items(cell_dir: Path, task: str) -> dict | None:
    path = cell_dir / "eval" / f"eval_{task}_items.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {(r["key"], r["moment"], r["draw"]): r for r in rows}


def paired_vs_default(cells_dir: Path, cell: str, task: str, seed: int = 0) -> dict | None:
    """Paired accuracy gap (``cell`` − ``base``) on the identical AVC-/AVSA-Bin items both were scored on:
    video-bootstrap 95 % CI and exact McNemar p (:func:`avsa_train.tasks.metrics.paired_gap`)."""
    from avsa_train.tasks.metrics import paired_gap

    a, b = _items(cells_dir / cell, task), _items(cells_dir / DEFAULT_CELL, task)
    if a is None or b is None or set(a) != set(b):
        return None
    keys = sorted(a)
    if any(a[k]["label"] != b[k]["label"] for k in keys):
        return None
    return paired_gap(
        [a[k]["correct"] for k in keys], [b[k]["correct"] for k in keys], [a[k]["video_id"] for k in keys], seed=seed
    )


def paired_segmentation_vs_default(cells_dir: Path, cell: str, seed: int = 0, n_boot: int = 2000) -> dict | None:
    """Paired mIoU gap (``cell`` − ``base``, percent) on the identical segmentation crops: the videos' confusion
    matrices of both cells are resampled together (video bootstrap), the gap's 95 % CI is the percentile interval
    of mIoU(A) − mIoU(B) over the replicates."""
    import numpy as np

    from avsa_train.tasks.metrics import cluster_bootstrap, mean_iou

    a = (_read_json(cells_dir / cell / "eval" / "segment.json") or {}).get("metrics", {})
    b = (_read_json(cells_dir / DEFAULT_CELL / "eval" / "segment.json") or {}).get("metrics", {})
    va, vb = a.get("per_video_confusion"), b.get("per_video_confusion")
    if not va or not vb or set(va) != set(vb):
        return None
    videos = sorted(va)
    stack = np.stack([np.stack([np.asarray(va[v]), np.asarray(vb[v])]) for v in videos]).astype(np.float64)
    if stack[:, 0].sum(axis=(1, 2)).tolist() != stack[:, 1].sum(axis=(1, 2)).tolist():
        return None  # not the same confident pixels

    def gap(s):
        return mean_iou(s[0]) - mean_iou(s[1])

    lo, hi = cluster_bootstrap(stack, gap, n_boot, seed=seed)
    total = stack.sum(0)
    return {
        "miou_a": round(100 * mean_iou(total[0]), 4),
        "miou_b": round(100 * mean_iou(total[1]), 4),
        "gap": round(100 * gap(total), 4),
        "gap_ci95_bootstrap_videos": [round(100 * lo, 4), round(100 * hi, 4)],
        "n_videos": len(videos),
    }


def paired_auc_vs_default(cells_dir: Path, cell: str, task: str, seed: int = 0, n_boot: int = 1000) -> dict | None:
    """Paired ROC-AUC gap (``cell`` − ``base``) of the misalignment scores on the identical AVC-/AVSA-Bin items:
    threshold-free, so it still compares two cells whose classifiers collapse to one answer. 95 % CI: videos
    resampled with replacement, the same draw for both cells."""
    import numpy as np

    from avsa_train.tasks.metrics import roc_auc

    a, b = _items(cells_dir / cell, task), _items(cells_dir / DEFAULT_CELL, task)
    if a is None or b is None or set(a) != set(b):
        return None
    keys = sorted(a)
    if any(a[k]["label"] != b[k]["label"] for k in keys):
        return None
    sa = np.array([a[k]["score"] for k in keys], dtype=np.float64)
    sb = np.array([b[k]["score"] for k in keys], dtype=np.float64)
    y = np.array([a[k]["label"] for k in keys])
    vids = [a[k]["video_id"] for k in keys]
    auc_a, auc_b = roc_auc(sa, y), roc_auc(sb, y)
    if auc_a is None or auc_b is None:
        return None
    groups = [np.flatnonzero(np.array(vids) == v) for v in sorted(set(vids))]
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(n_boot):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        ga, gb = roc_auc(sa[idx], y[idx]), roc_auc(sb[idx], y[idx])
        if ga is not None and gb is not None:
            gaps.append(ga - gb)
    lo, hi = np.percentile(gaps, [2.5, 97.5]) if gaps else (float("nan"), float("nan"))
    return {
        "auc_a": round(auc_a, 4),
        "auc_b": round(auc_b, 4),
        "gap": round(auc_a - auc_b, 4),
        "gap_ci95_bootstrap_videos": [round(float(lo), 4), round(float(hi), 4)],
        "n": len(keys),
        "n_videos": len(groups),
    }


#: How a row's paired difference from the default reads against the paper's difference for the same rows.
VERDICTS = ("reproduced", "contradicted", "unresolved", "no paper difference", "not run")


def verdict(paper_delta: float, gap: dict | None) -> str:
    """``reproduced``: our paired 95 % CI excludes 0 on the paper's side; ``contradicted``: it excludes 0 on the
    other side; ``unresolved``: it contains 0; ``no paper difference`` when the paper's two numbers are equal;
    ``not run`` without a paired gap."""
    if gap is None:
        return "not run"
    if paper_delta == 0:
        return "no paper difference"
    lo, hi = gap["gap_ci95_bootstrap_videos"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "unresolved"
    if lo > 0 or hi < 0:
        return "reproduced" if (lo > 0) == (paper_delta > 0) else "contradicted"
    return "unresolved"


def build_table(run: GridRun) -> dict:
    """``table3.json``: per family and row, the paper's numbers and ours (with CIs) from the cells' results."""
    results = {}
    for cell in cell_names() + [SCRATCH_CELL]:
        r = _read_json(run.cells_dir / cell / RESULT)
        if r is not None and r.get("spec") == run.cell_spec(cell):
            results[cell] = r
    fams = []
    for f in FAMILIES:
        rows = []
        for r in f.rows:
            res = results.get(r.cell)
            ours = None
            if res is not None:
                ours = {k: {"value": v, "ci95": ci} for k, (v, ci) in headline(res).items()}
            default_row = next(x for x in f.rows if x.cell == DEFAULT_CELL)
            paper_delta = {}
            if r.cell != DEFAULT_CELL and r.paper_id is not None:
                paper_delta = {
                    t: round(PAPER_TABLE3[r.paper_id][t] - PAPER_TABLE3[default_row.paper_id][t], 2)
                    for t in ("avc", "avsa", "seg")
                }
            paired = None
            if res is not None and r.cell != DEFAULT_CELL and DEFAULT_CELL in results:
                paired = {t: paired_vs_default(run.cells_dir, r.cell, t, run.seed) for t in ("avc", "avsa")}
                paired["seg"] = paired_segmentation_vs_default(run.cells_dir, r.cell, run.seed)
                for t in ("avc", "avsa"):
                    paired[f"{t}_auc"] = paired_auc_vs_default(run.cells_dir, r.cell, t, run.seed)
            rows.append(
                {
                    "id": r.id,
                    "label": r.label,
                    "cell": r.cell,
                    "overrides": r.overrides,
                    "paper": PAPER_TABLE3.get(r.paper_id) if r.paper_id else None,
                    "in_paper": r.in_paper,
                    "ours": ours,
                    "paired_vs_default": paired,
                    "paper_delta": paper_delta,
                    "verdicts": {t: verdict(d, (paired or {}).get(t)) for t, d in paper_delta.items()},
                }
            )
        fams.append({"key": f.key, "title": f.title, "option": f.option, "rows": rows, "best": _best(rows)})
    scratch = results.get(SCRATCH_CELL)
    return {
        "schema": "avsa.ablate.table3",
        "schema_version": SCHEMA_VERSION,
        "paper_source": PAPER_SOURCE,
        "settings": run.settings(),
        "units": "percent; CIs are 95 % video-bootstrap intervals",
        "families": fams,
        "scratch": None
        if scratch is None
        else {k: {"value": v, "ci95": ci} for k, (v, ci) in headline(scratch).items()},
        # random init − the default cell on the same items: does pre-training beat no pre-training?
        "scratch_vs_default": None
        if scratch is None or DEFAULT_CELL not in results
        else {
            "avc": paired_vs_default(run.cells_dir, SCRATCH_CELL, "avc", run.seed),
            "avsa": paired_vs_default(run.cells_dir, SCRATCH_CELL, "avsa", run.seed),
            "seg": paired_segmentation_vs_default(run.cells_dir, SCRATCH_CELL, run.seed),
            "avc_auc": paired_auc_vs_default(run.cells_dir, SCRATCH_CELL, "avc", run.seed),
            "avsa_auc": paired_auc_vs_default(run.cells_dir, SCRATCH_CELL, "avsa", run.seed),
        },
        "cells": {
            c: {
                "rows": r["rows"],
                "seconds": r["seconds"],
                "pretrain": r.get("pretrain"),
                "metrics": r["metrics"],
            }
            for c, r in results.items()
        },
        "cells_seconds_total": round(sum(r["seconds"] for r in results.values()), 2),
    }


def _best(rows: list[dict]) -> dict:
    """Per metric, the paper's best row and ours (``None`` where a row has no number)."""
    out = {}
    for m in ("avc", "avsa", "seg"):
        paper = max((r for r in rows if r["paper"]), key=lambda r: r["paper"][m])["id"]
        have = [r for r in rows if r["ours"] and r["ours"][m]["value"] is not None]
        ours = max(have, key=lambda r: r["ours"][m]["value"])["id"] if len(have) == len(rows) else None
        out[m] = {"paper": paper, "ours": ours}
    return out


def _cell_text(entry: dict | None, bold: bool) -> str:
    if entry is None or entry["value"] is None:
        return "—"
    v = _fmt(entry["value"])
    v = f"**{v}**" if bold else v
    ci = entry.get("ci95")
    if ci and ci[0] is not None:
        v += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return v


def render_markdown(table: dict) -> str:
    """``table3.md``: Table 3's layout, our number [95 % CI] next to the paper's for every row."""
    s = table["settings"]
    lines = [
        "# Table 3 ablations: avsa rerun vs the paper",
        "",
        f"Scale `{s['scale']}`, seed {s['seed']}, shards `{s['shards']}`. Ours: our number [95 % video-bootstrap "
        "CI]; paper: the published number (supplement Table 3). All values in percent; bold marks the best row of "
        "a family in each column (ours and the paper's separately). Rows with the same `cell` are one training "
        "run. Every cell is scored on the same evaluation items.",
        "",
        "| Table 3 row | cell | AVC-Bin@4 ours | paper | AVSA-Bin@4 ours | paper | Segm mIoU ours | paper | "
        "UCF ours¹ | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in table["families"]:
        lines.append(f"| **({f['key']}) {f['title']}** | | | | | | | | | |")
        for r in f["rows"]:
            cols = [r["label"], f"`{r['cell']}`"]
            if not r["paper"]:
                cols[0] += "²"
            for m in ("avc", "avsa", "seg"):
                best = f["best"][m]
                cols.append(_cell_text(r["ours"][m] if r["ours"] else None, best["ours"] == r["id"]))
                paper = f"{r['paper'][m]:.2f}" if r["paper"] else "—"
                cols.append(f"**{paper}**" if best["paper"] == r["id"] else paper)
            cols += ["n/a" if r["ours"] else "—", f"{r['paper']['ucf']:.2f}" if r["paper"] else "—"]
            lines.append("| " + " | ".join(cols) + " |")
    if table.get("scratch"):
        sc = table["scratch"]
        lines.append("| **reference** | | | | | | | | | |")
        lines.append(
            f"| Random init (no pre-training) | `{SCRATCH_CELL}` | {_cell_text(sc['avc'], False)} | – | "
            f"{_cell_text(sc['avsa'], False)} | – | {_cell_text(sc['seg'], False)} | – | n/a | – |"
        )
    lines += [
        "",
        "¹ UCF101 action recognition (`avsa-train finetune`) needs the UCF101 videos and split lists, which this "
        "grid does not have; run it per cell checkpoint (`cells/<cell>/pretrain/checkpoint.pt`) where they are.",
        "",
        "² Not in the paper: a row avsa adds (Ambisonics + IV: `--spec mel128+iv`, the 4 log-mel channels plus 3 "
        "active-intensity-vector channels, which keep the front/back and left/right signs that magnitude "
        "spectrograms drop).",
        "",
        DIRECT_PREDICTION_NOTE,
        "",
        f"Curriculum: every cell with the easy → hard curriculum and hard negatives first trains the AVC stage of "
        f"Table 2 for {s.get('switch_epoch')} epochs in the same job (1 viewpoint, batch "
        f"{s.get('easy_batch_size')}, the direct projection heads, loss (7), instance negatives), then AVSA "
        f"(V viewpoints, batch {s.get('batch_size')}, loss (9) with the row's negatives). The paper starts AVSA from "
        "a separately trained AVC model (epoch 100) with a fresh optimiser; here the optimiser state carries over.",
        "",
        "## Paired differences from the default (ambisonics, V = 4, + spatial, curriculum, D = 2)",
        "",
        "Accuracy of the row's cell minus the default cell `base` on the identical AVC-/AVSA-Bin items, with the "
        "video-bootstrap 95 % CI of the gap and the exact McNemar p on the items only one of them gets right; "
        "segmentation: mIoU of the row's cell minus `base` on the identical crops, videos resampled together. "
        "Paper Δ: the same difference in the published Table 3. Verdict: *reproduced* — our CI excludes 0 on the "
        "paper's side; *contradicted* — it excludes 0 on the other side; *unresolved* — it contains 0.",
        "",
        "| Table 3 row | cell | AVC-Bin Δ [95 % CI] | paper Δ | verdict | McNemar p | AVSA-Bin Δ [95 % CI] | "
        "paper Δ | verdict | McNemar p | Segm mIoU Δ [95 % CI] | paper Δ | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in table["families"]:
        for r in f["rows"]:
            if r["cell"] == DEFAULT_CELL:
                continue
            cols = [f"({f['key']}) {r['label']}", f"`{r['cell']}`"]
            for t in ("avc", "avsa", "seg"):
                g = (r.get("paired_vs_default") or {}).get(t)
                v = r.get("verdicts", {}).get(t, "not run" if r.get("in_paper", True) else "not in the paper")
                pd = r.get("paper_delta", {}).get(t)
                cols.append(
                    "—"
                    if g is None
                    else f"{g['gap']:+.1f} [{_fmt(g['gap_ci95_bootstrap_videos'][0])}, "
                    f"{_fmt(g['gap_ci95_bootstrap_videos'][1])}]"
                )
                cols += ["—" if pd is None else f"{pd:+.2f}", v]
                if t != "seg":
                    cols.append("—" if g is None else f"{g['mcnemar_p']:.2g}")
            lines.append("| " + " | ".join(cols) + " |")
    if table.get("scratch_vs_default"):
        cols = ["Random init (no pre-training)", f"`{SCRATCH_CELL}`"]
        for t in ("avc", "avsa", "seg"):
            g = table["scratch_vs_default"].get(t)
            ci = g and g["gap_ci95_bootstrap_videos"]
            cols += ["—" if g is None else f"{g['gap']:+.1f} [{_fmt(ci[0])}, {_fmt(ci[1])}]", "–", "–"]
            if t != "seg":
                cols.append("—" if g is None else f"{g['mcnemar_p']:.2g}")
        lines.append("| " + " | ".join(cols) + " |")
    lines += [
        "",
        "Threshold-free check (a classifier that answers one label for every item has an accuracy equal to that "
        "label's share, whatever the features): paired ROC-AUC gap of the misalignment scores, row − `base`, "
        "same items, videos resampled together. The paper reports accuracies only, so no verdict is given here.",
        "",
        "| Table 3 row | cell | AVC-Bin AUC Δ [95 % CI] | AVSA-Bin AUC Δ [95 % CI] |",
        "| --- | --- | --- | --- |",
    ]

    def auc_text(g):
        if g is None:
            return "—"
        lo, hi = g["gap_ci95_bootstrap_videos"]
        return f"{g['gap']:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    for f in table["families"]:
        for r in f["rows"]:
            if r["cell"] != DEFAULT_CELL and r.get("ours"):
                g = r.get("paired_vs_default") or {}
                lines.append(
                    f"| ({f['key']}) {r['label']} | `{r['cell']}` | {auc_text(g.get('avc_auc'))} | "
                    f"{auc_text(g.get('avsa_auc'))} |"
                )
    if table.get("scratch_vs_default"):
        g = table["scratch_vs_default"]
        lines.append(
            f"| Random init (no pre-training) | `{SCRATCH_CELL}` | {auc_text(g.get('avc_auc'))} | "
            f"{auc_text(g.get('avsa_auc'))} |"
        )
    lines += [
        "",
        "### The paper's direction per family and metric",
        "",
        "Counts of the family's non-default rows by verdict (see above).",
        "",
        "| family | AVC-Bin@4 | AVSA-Bin@4 | Segm mIoU |",
        "| --- | --- | --- | --- |",
    ]
    for f in table["families"]:
        cols = [f"({f['key']}) {f['title']}"]
        for t in ("avc", "avsa", "seg"):
            counts: dict[str, int] = {}
            for r in f["rows"]:
                if r["cell"] != DEFAULT_CELL and r.get("in_paper", True):  # rows beyond the paper have no direction
                    v = r.get("verdicts", {}).get(t, "not run")
                    counts[v] = counts.get(v, 0) + 1
            cols.append(", ".join(f"{n} {k}" for k, n in counts.items()) or "—")
        lines.append("| " + " | ".join(cols) + " |")
    lines += [
        "",
        "## AVC-/AVSA-Bin beyond accuracy",
        "",
        "A binary classifier trained on few items can collapse to one answer; its accuracy is then the share of "
        "that label among the test items, whatever the features. The ROC AUC of the misalignment score is "
        "threshold-free (0.5 = chance); aligned / misaligned are the accuracies on each label.",
        "",
        "| cell | rows | AVC-Bin AUC | AVC-Bin aligned / misaligned | AVSA-Bin AUC | AVSA-Bin aligned / misaligned |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c, info in table["cells"].items():
        cols = [f"`{c}`", ", ".join(info["rows"]) or "reference"]
        for t in ("avc", "avsa"):
            m = info["metrics"][t]
            cols += [
                _fmt(m.get("roc_auc"), 3),
                f"{_fmt(m.get('accuracy_aligned'))} / {_fmt(m.get('accuracy_misaligned'))}",
            ]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [
        "",
        "## Best row per family",
        "",
        "| family | metric | paper's best | ours |",
        "| --- | --- | --- | --- |",
    ]
    labels = {r["id"]: r["label"] for f in table["families"] for r in f["rows"]}
    for f in table["families"]:
        for m in ("avc", "avsa", "seg"):
            b = f["best"][m]
            lines.append(
                f"| ({f['key']}) {f['title']} | {METRIC_TITLES[m]} | {labels[b['paper']]} | "
                f"{labels[b['ours']] if b['ours'] else '—'} |"
            )
    lines += [
        "",
        "## Cells",
        "",
        "Pretext numbers are means over the last 10 logged pre-training steps (V2A and A2V averaged); chance is "
        "1/batch for AVC-Acc and 1/V for AVSA-Acc.",
        "",
        "| cell | rows | pre-training steps | pretext loss | pretext AVC-Acc | pretext AVSA-Acc | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, info in table["cells"].items():
        pre = info.get("pretrain") or {}
        fin = pre.get("final") or {}
        accs = []
        for kind in ("AVC", "AVSA"):
            acc = [fin[k] for k in (f"V2A/{kind}-Acc", f"A2V/{kind}-Acc") if k in fin]
            accs.append(_fmt(sum(acc) / len(acc)) if acc else "—")
        lines.append(
            f"| `{c}` | {', '.join(info['rows']) or 'reference'} | {pre.get('steps', '—')} | "
            f"{_fmt(fin.get('loss'), 3)} | {accs[0]} | {accs[1]} | {info['seconds']:.0f} |"
        )
    lines += ["", f"Total cell time {table['cells_seconds_total']:.0f} s.", ""]
    return "\n".join(lines)


def describe_grid(scale: str = "tiny", overrides: dict | None = None) -> str:
    """A text listing of the families, rows, cells and each cell's pre-training options (``--list``)."""
    sc = resolve_scale(scale, overrides)
    lines = []
    for f in FAMILIES:
        lines.append(f"({f.key}) {f.title}  [varies {f.option}]")
        for r in f.rows:
            note = "" if r.in_paper else "  (not in the paper)"
            lines.append(f"    {r.id:<22} {r.label:<38} cell {r.cell}{note}")
    lines.append("cells (one training run each; differences from the default AVSA model):")
    base = pretrain_values(DEFAULT_CELL, sc)
    for cell in cell_names():
        v = pretrain_values(cell, sc)
        diff = {k: v[k] for k in v if v[k] != base.get(k)}
        lines.append(f"    {cell:<18} {diff or '(the default: ' + json.dumps(DEFAULTS) + ')'}")
    lines.append(f"    {SCRATCH_CELL:<18} random initialisation, evaluated only (reference row)")
    lines.append(f"scale {scale}: {json.dumps(sc.as_dict())}")
    return "\n".join(lines)
