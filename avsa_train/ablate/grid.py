"""The Table 3 grid: its families and rows, the cells (training runs) the rows share, the published numbers,
and each cell's pre-training configuration at a :class:`~avsa_train.ablate.scales.Scale`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from avsa_train.ablate.scales import Scale, resolve_scale
from avsa_train.config import PretrainConfig

#: The seed file that holds the published numbers of :data:`PAPER_TABLE3`.
PAPER_SOURCE = "AVSA supplementary material (NeurIPS 2020), Table 3"


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

#: The families of Table 3: key → (title, the pre-training option its rows vary).
FAMILY_OPTIONS = {
    "a": ("Spatial audio format", "audio_format"),
    "b": ("Number of viewpoints", "viewpoints"),
    "c": ("Negative crop type", "negatives"),
    "d": ("Curriculum learning", "curriculum"),
    "e": ("Modeling spatial context", "depth"),
}
#: Table 3's rows, one a line: family, row slug, the paper's label, the cell that trains it, the value of the
#: family's option. The default appears once per family (cell ``base``); Table 3c's "Instance" and 3d's "Easy
#: Only" are one run (the paper reports identical numbers for them).
#: (A data table: its lines are alike by design, which a duplicate-code scan reports as a pair.)
PAPER_ROWS = (
    ("a", "mono", "Mono", "mono", "mono"),
    ("a", "stereo", "Stereo", "stereo", "stereo"),
    ("a", "ambi", "Ambisonics", "base", "ambi"),
    ("b", "v1", "1 Viewpoint", "v1", 1),
    ("b", "v2", "2 Viewpoints", "v2", 2),
    ("b", "v4", "4 Viewpoints", "base", 4),
    ("b", "v8", "8 Viewpoints", "v8", 8),
    ("c", "instance", "Instance", "instance", "instance"),
    ("c", "spatial", "+ Spatial", "base", "spatial"),
    ("c", "spatial-temporal", "+ Spatial + Temporal", "spatial-temporal", "spatial+temporal"),
    ("d", "easy-only", "Easy Only", "instance", "easy-only"),
    ("d", "hard-only", "Hard Only", "hard-only", "hard-only"),
    ("d", "none", "No Curriculum", "no-curriculum", "none"),
    ("d", "curriculum", "Curriculum", "base", "easy-to-hard"),
    ("e", "d0", "Direct Prediction", "d0", 0),
    ("e", "d1", "Transformer (Depth=1)", "d1", 1),
    ("e", "d2", "Transformer (Depth=2)", "base", 2),
    ("e", "d4", "Transformer (Depth=4)", "d4", 4),
)
#: Rows avsa adds to a family (after the paper's). ``a/ambi-iv`` (not in the paper, issue 15): the ambisonic input
#: with the signs of Y, Z, X kept. ``e/noctx``: the authors' other reading of "Direct Prediction" (their
#: ``use_context: false``), a per-viewpoint MLP of the default depth without attention, compared with the
#: paper's Direct Prediction numbers.
AVSA_ROWS = (
    Row("a/ambi-iv", "Ambisonics + IV", "ambi-iv", {"spec": "mel128+iv"}, in_paper=False),
    Row("e/noctx", "Direct Prediction (per-viewpoint MLP)", "noctx", {"context": "none"}, paper_row="e/d0"),
)
NOCTX_ROW = AVSA_ROWS[1]


def _family(key: str) -> Family:
    """Family ``key``: its :data:`PAPER_ROWS` (the option set where it is not the default), then its
    :data:`AVSA_ROWS`."""
    title, option = FAMILY_OPTIONS[key]
    rows = [
        Row(f"{key}/{slug}", label, cell, {} if value == DEFAULTS[option] else {option: value})
        for fam, slug, label, cell, value in PAPER_ROWS
        if fam == key
    ]
    rows += [r for r in AVSA_ROWS if r.id.startswith(f"{key}/")]
    return Family(key, title, option, tuple(rows))


FAMILIES: tuple[Family, ...] = tuple(_family(key) for key in FAMILY_OPTIONS)

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
    return list(dict.fromkeys(r.cell for r in all_rows()))


def cell_rows(cell: str) -> list[str]:
    """The ids of the rows that ``cell`` fills (none for the scratch reference)."""
    return [r.id for r in all_rows() if r.cell == cell]


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


def cell_config(cell: str, scale: Scale) -> PretrainConfig:
    """The pre-training configuration of ``cell`` at ``scale``: the scale's (the paper's AVSA model,
    :data:`DEFAULTS`) with the cell's option and what that option implies (:data:`IMPLIED`). Shards, output
    folder, seed and device are the run's (:meth:`avsa_train.ablate.runner.GridRun.pretrain_config`)."""
    cfg = dataclasses.replace(scale.pretrain, **{**DEFAULTS, **cell_overrides(cell)})
    negatives, curriculum, moments = cfg.negatives, cfg.curriculum, cfg.moments
    if cfg.viewpoints < 2:
        negatives = "instance"
    if "temporal" in negatives:
        moments = max(moments, scale.temporal_moments)
    if negatives == "instance" or curriculum == "easy-only":
        negatives, curriculum = "instance", "easy-only"
    return dataclasses.replace(cfg, negatives=negatives, curriculum=curriculum, moments=moments)


#: :class:`PretrainConfig` fields a grid run sets itself (not a cell's option).
RUN_FIELDS = ("shards", "out", "seed", "device", "quiet")


def pretrain_values(cell: str, scale: Scale) -> dict:
    """The :class:`PretrainConfig` options of ``cell`` at ``scale`` as a dict, without the run's own
    (:data:`RUN_FIELDS`: shards, out, seed, device, quiet)."""
    return {k: v for k, v in cell_config(cell, scale).as_dict().items() if k not in RUN_FIELDS}


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
