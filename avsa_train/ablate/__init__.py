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
(:func:`~avsa_train.ablate.paired.paired_vs_default`).

A cell pre-trains with :func:`avsa_train.pretrain.run_pretrain`, then runs the downstream protocols that need
no outside data — AVC-Bin and AVSA-Bin (:mod:`avsa_train.tasks.binary_eval`) and FPN segmentation
(:mod:`avsa_train.tasks.segmentation`) — exactly as ``avsa-train eval`` / ``avsa-train segment`` would with the
same options. UCF101 action recognition needs the UCF101 videos and is reported as n/a.

Output (``DIR``): ``cells/<cell>/`` (``pretrain/`` run folder, ``eval/`` metrics JSON as the commands write them,
``result.json`` written atomically when the cell is complete; a cell with a ``result.json`` is skipped on a
rerun, a partial one is redone, resuming its pre-training from the last checkpoint when it has one),
``table3.md`` and ``table3.json``.

Scales (:data:`SCALES`): ``paper`` follows Table 2 and the evaluation protocols' defaults; ``tiny`` shrinks the
encoders, batches, steps and evaluation epochs so the whole grid runs on synthetic data on two CPU cores; ``cpu``
is the scale at which pre-training learns on two CPU cores. A :class:`Scale` holds the task configurations
(``PretrainConfig``, ``BinaryEvalConfig``, ``SegmentationConfig``); ``--set KEY=VALUE`` changes one field.

Modules: :mod:`~avsa_train.ablate.scales` (the presets and ``--set``; their names in
:mod:`~avsa_train.ablate.keys`), :mod:`~avsa_train.ablate.grid` (families, rows, cells, published numbers, each
cell's configuration), :mod:`~avsa_train.ablate.runner` (cells, resume), :mod:`~avsa_train.ablate.paired` (paired
gaps and verdicts), :mod:`~avsa_train.ablate.report` (``table3.json``, ``table3.md``),
:mod:`~avsa_train.ablate.store` (the folder's JSON files).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avsa_train.ablate.grid import (
        AVSA_ROWS,
        DEFAULT_CELL,
        DEFAULTS,
        FAMILIES,
        IMPLIED,
        PAPER_ROWS,
        PAPER_SOURCE,
        PAPER_TABLE3,
        SCRATCH_CELL,
        Family,
        Row,
        all_rows,
        cell_config,
        cell_names,
        cell_overrides,
        describe_grid,
        pretrain_values,
        select,
    )
    from avsa_train.ablate.keys import GRIDS, SCALE_KEYS, SCALE_NAMES
    from avsa_train.ablate.paired import (
        VERDICTS,
        paired_auc_vs_default,
        paired_segmentation_vs_default,
        paired_vs_default,
        verdict,
    )
    from avsa_train.ablate.report import METRIC_TITLES, METRICS, build_table, headline, render_markdown
    from avsa_train.ablate.runner import GridError, GridRun, check_inputs, run_cell, run_grid
    from avsa_train.ablate.scales import SCALES, Scale, parse_overrides, resolve_scale
    from avsa_train.ablate.store import RESULT, SCHEMA_VERSION

#: Where each public name lives. They load on first use (PEP 562), so the command line can read
#: :mod:`avsa_train.ablate.keys` for its options without importing torch.
_HOMES = {
    **dict.fromkeys(("GRIDS", "SCALE_KEYS", "SCALE_NAMES"), "keys"),
    **dict.fromkeys(("SCALES", "Scale", "parse_overrides", "resolve_scale"), "scales"),
    **dict.fromkeys(
        (
            "AVSA_ROWS",
            "DEFAULT_CELL",
            "DEFAULTS",
            "FAMILIES",
            "IMPLIED",
            "PAPER_ROWS",
            "PAPER_SOURCE",
            "PAPER_TABLE3",
            "SCRATCH_CELL",
            "Family",
            "Row",
            "all_rows",
            "cell_config",
            "cell_names",
            "cell_overrides",
            "describe_grid",
            "pretrain_values",
            "select",
        ),
        "grid",
    ),
    **dict.fromkeys(
        ("VERDICTS", "paired_auc_vs_default", "paired_segmentation_vs_default", "paired_vs_default", "verdict"),
        "paired",
    ),
    **dict.fromkeys(("METRICS", "METRIC_TITLES", "build_table", "headline", "render_markdown"), "report"),
    **dict.fromkeys(("GridError", "GridRun", "check_inputs", "run_cell", "run_grid"), "runner"),
    **dict.fromkeys(("RESULT", "SCHEMA_VERSION"), "store"),
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AVSA_ROWS",
    "DEFAULT_CELL",
    "DEFAULTS",
    "FAMILIES",
    "GRIDS",
    "IMPLIED",
    "METRICS",
    "METRIC_TITLES",
    "PAPER_ROWS",
    "PAPER_SOURCE",
    "PAPER_TABLE3",
    "RESULT",
    "SCALES",
    "SCALE_KEYS",
    "SCALE_NAMES",
    "SCHEMA_VERSION",
    "SCRATCH_CELL",
    "VERDICTS",
    "Family",
    "GridError",
    "GridRun",
    "Row",
    "Scale",
    "all_rows",
    "build_table",
    "cell_config",
    "cell_names",
    "cell_overrides",
    "check_inputs",
    "describe_grid",
    "headline",
    "paired_auc_vs_default",
    "paired_segmentation_vs_default",
    "paired_vs_default",
    "parse_overrides",
    "pretrain_values",
    "render_markdown",
    "resolve_scale",
    "run_cell",
    "run_grid",
    "select",
    "verdict",
]
