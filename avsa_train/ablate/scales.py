"""Scales of the ablation grid: one :class:`Scale` holds the task configurations every cell shares — the
pre-training :class:`~avsa_train.config.PretrainConfig`, the AVC-/AVSA-Bin
:class:`~avsa_train.tasks.binary_eval.BinaryEvalConfig` and the
:class:`~avsa_train.tasks.segmentation.SegmentationConfig` — changed with
:func:`avsa_data.options.flat_replace` (a nested protocol's fields by their flat names).

``--set KEY=VALUE`` names (:data:`SCALE_KEYS`, also the ``settings`` of ``ablate.json`` / ``table3.json`` and
the ``scale`` line of ``--list``): the grid's own short names (``steps``, ``bin_epochs``, ``seg_fpn_dim`` …),
each mapped to the task-configuration field(s) it sets, or ``pretrain.FIELD`` / ``binary.FIELD`` /
``segmentation.FIELD`` for any other field of those configurations that a cell does not set itself
(:data:`GRID_OWNED`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from avsa_data.options import field_hint, flat_dict, flat_fields, flat_replace, flat_value, typed_value
from avsa_train.ablate.keys import SCALE_KEYS, SCALE_NAMES
from avsa_train.config import TASK_DEFAULTS, PretrainConfig
from avsa_train.tasks.binary_eval import BinaryEvalConfig
from avsa_train.tasks.segmentation import SegmentationConfig

#: The task configurations of a scale, by the prefix of their ``--set PART.FIELD`` keys.
PARTS = {"pretrain": PretrainConfig, "binary": BinaryEvalConfig, "segmentation": SegmentationConfig}

#: Fields a cell or the run sets itself, so ``--set PART.FIELD`` refuses them: the ablated options and what they
#: imply (:data:`avsa_train.ablate.grid.DEFAULTS`), where the run writes and its seed, device and output.
GRID_OWNED = {
    "pretrain": {
        "task",
        "viewpoints",
        "moments",
        "audio_format",
        "spec",
        "depth",
        "context",
        "negatives",
        "curriculum",
        "easy_stage",
        "init",
        "shards",
        "out",
        "seed",
        "device",
        "quiet",
    },
    "binary": {"task", "features", "seed", "workers"},
    "segmentation": {"seed", "workers"},
}


def _short_name(part: str, name: str) -> str | None:
    """The :data:`SCALE_KEYS` name that sets ``part.name`` (``None``: it has none)."""
    return next((k for k, (p, names) in SCALE_KEYS.items() if p == part and name in names), None)


@dataclass(frozen=True)
class Scale:
    """Sizes and hyper-parameters of one grid run; every cell uses the same values (only the ablated option and
    what it implies differ). ``pretrain``: the pre-training options of the default cell (without shards, output
    folder and seed, which the run sets); ``binary``: AVC-Bin and AVSA-Bin (task and features set per
    evaluation; ``lr``/``milestones`` ``None``: each task's reference values); ``segmentation``: the FPN protocol.
    The evaluations use ``pretrain.workers`` DataLoader workers too (``None`` there: 0)."""

    pretrain: PretrainConfig
    binary: BinaryEvalConfig
    segmentation: SegmentationConfig
    temporal_moments: int = 2  # M moments per item for the temporal-negatives cell (shards need ≥ M per sample)

    def part(self, name: str):
        return self if name == "grid" else getattr(self, name)

    def get(self, key: str):
        """The value of a ``--set`` key (:data:`SCALE_KEYS` name or ``PART.FIELD``)."""
        part, names = SCALE_KEYS[key] if key in SCALE_KEYS else (key.split(".")[0], (key.split(".", 1)[1],))
        return flat_value(self.part(part), names[0])

    def replace(self, **changes) -> Scale:
        """This scale with ``--set`` keys changed (``steps=20``, ``bin_lr=None``, ``binary.hidden=256`` …)."""
        by_part: dict[str, dict] = {}
        for key, value in changes.items():
            part, names = SCALE_KEYS[key] if key in SCALE_KEYS else _dotted(key)
            by_part.setdefault(part, {}).update(dict.fromkeys(names, value))
        out = dataclasses.replace(self, **by_part.pop("grid", {}))
        return dataclasses.replace(out, **{p: flat_replace(out.part(p), **v) for p, v in by_part.items()})

    def as_dict(self) -> dict:
        """The scale as ``--set`` keys: every :data:`SCALE_KEYS` name, then ``PART.FIELD`` for each other field
        that differs from its configuration's default (the cpu preset's cached-feature heads)."""
        out = {key: self.get(key) for key in SCALE_KEYS}
        for part, kind in PARTS.items():
            default = flat_dict(kind())
            for name, value in flat_dict(self.part(part)).items():
                settable = name not in GRID_OWNED[part] and _short_name(part, name) is None
                if settable and value != default[name]:
                    out[f"{part}.{name}"] = value
        return out


def _dotted(key: str) -> tuple[str, tuple[str, ...]]:
    """``"binary.hidden"`` → ``("binary", ("hidden",))``; ``ValueError`` for a field a scale cannot set this way."""
    part, _, name = key.partition(".")
    if part not in PARTS or name not in {flat for flat, *_ in flat_fields(PARTS[part])}:
        raise ValueError(f"unknown scale key {key!r}")
    if name in GRID_OWNED[part]:
        raise ValueError(f"--set {key}: each cell or the run sets it, not the scale")
    short = _short_name(part, name)
    if short is not None:
        raise ValueError(f"--set {key}: use its grid name, --set {short}=…")
    return part, (name,)


def _hint(key: str):
    """The type hint of a ``--set`` key's field."""
    part, names = SCALE_KEYS[key] if key in SCALE_KEYS else _dotted(key)
    return field_hint(Scale if part == "grid" else PARTS[part], names[0])


def parse_overrides(items: Iterable[str]) -> dict:
    """``["steps=20", "bin_milestones=3,4", "bin_lr=none", "binary.hidden=256"]`` → typed ``--set`` values."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if "." in key:
            try:
                _dotted(key)
            except ValueError as e:
                if str(e).startswith("--set"):
                    raise
                key = ""  # unknown: the message below
        if not sep or not (key in SCALE_KEYS or "." in key):
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(SCALE_KEYS)}, or PART.FIELD for "
                f"another field of the {', '.join(PARTS)} configuration (e.g. binary.hidden=256)"
            )
        try:
            out[key] = typed_value(raw, _hint(key), text=True)
        except ValueError as e:
            raise ValueError(f"--set {item!r}: {key} {e}") from None
    return out


def _avsa_pretrain(**changes) -> PretrainConfig:
    """The AVSA task's Table 2 configuration (``avsa-train pretrain --task avsa``) whose easy → hard curriculum
    runs its easy epochs as the AVC stage of Table 2, with ``changes``."""
    task = {k: v for k, v in TASK_DEFAULTS["avsa"].items() if k != "out"}
    return dataclasses.replace(PretrainConfig(task="avsa", **task, easy_stage="avc"), **changes)


#: ``paper``: Table 2 (bs 28, V 4, lr 1e-4, wd 1e-5: the AVSA task's defaults) with the easy stage of the
#: curriculum, the AVC model's 100 epochs at batch 112, run in the same job (150 epochs, the switch at epoch 100),
#: and the evaluation protocols of §5.2 / §A.2 (docs/EVALUATION.md) as their configurations default to.
PAPER = Scale(
    pretrain=_avsa_pretrain(epochs=150, switch_epoch=100, easy_batch_size=112),
    binary=BinaryEvalConfig(),  # 10 epochs, batch 32, lr and milestones of each task's reference config
    segmentation=SegmentationConfig(),  # §A.2: 10 epochs, batch 20, lr 1e-4 × 0.1 at epochs 5 and 8, FPN 128
)
#: ``tiny``: about 2–3 minutes per cell on 2 CPU cores with synthetic shards (docs/RESULTS.md lists what it
#: changes and why).
TINY = PAPER.replace(
    width=0.125,
    batch_size=8,
    lr=1e-3,
    epochs=10,
    steps=96,
    steps_per_epoch=8,
    switch_epoch=6,
    easy_batch_size=32,
    color_jitter=False,
    flip_p=0.0,
    workers=1,
    checkpoint_every=0,
    bin_epochs=3,
    bin_batch_size=8,
    bin_lr=1e-3,
    bin_milestones=(2,),
    seg_epochs=2,
    seg_batch_size=8,
    seg_lr=1e-3,
    seg_milestones=(),
    seg_fpn_dim=32,
)
#: ``cpu``: issue 13's learning scale (docs/RESULTS.md): shards of dense synthetic scenes with 64-px crops and the
#: energy viewpoint sampler, on which the AVSA pretext leaves chance within tens of steps on 2 CPU cores;
#: 60 steps: 20 of the AVC stage (batch 64), 40 of AVSA (batch 16). The binary probes are cached-feature heads
#: (4 encoded passes, 40 head epochs at lr 1e-3 × 0.1 at 30, standardized features; docs/DEVIATIONS.md): with
#: the reference schedule they answered one class (docs/RESULTS.md, "Evaluation heads").
CPU = TINY.replace(
    batch_size=16,
    steps=60,
    steps_per_epoch=10,
    switch_epoch=2,
    easy_batch_size=64,
    workers=0,
    bin_epochs=4,
    bin_batch_size=32,
    bin_milestones=(30,),
    bin_test_draws=3,
    seg_views=2,
    **{"binary.head_epochs": 40, "binary.standardize": True},
)
#: The presets by name (:data:`~avsa_train.ablate.keys.SCALE_NAMES`, the order of ``--scale``).
SCALES: dict[str, Scale] = dict(zip(SCALE_NAMES, (PAPER, TINY, CPU), strict=True))


def resolve_scale(name: str, overrides: dict | None = None) -> Scale:
    """The preset ``name`` with ``--set`` values (:func:`parse_overrides`) applied."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}")
    return SCALES[name].replace(**(overrides or {}))
