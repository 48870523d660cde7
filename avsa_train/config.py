"""Pre-training configuration: seed Table 2 defaults per task, a YAML file, then command-line flags.

Resolution order (later wins): :data:`TASK_DEFAULTS` (Table 2) → ``--config FILE.yaml`` → explicit CLI flags.
With ``--resume`` the run's saved configuration replaces the first two, so ``--resume --out RUN`` alone
continues a run; flags given with it (typically ``--max-steps`` or ``--epochs``) still override. The resolved
configuration is saved in every checkpoint and in ``OUT/config.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

TASKS = ("avc", "avts", "avsa")
#: Hard negatives joined to the instance (easy) ones once the curriculum allows (Table 3c).
NEGATIVES = ("instance", "spatial", "temporal", "spatial+temporal")
#: Table 3d. easy-to-hard: instance only before ``switch_epoch``; none: hard from the start; hard-only: no
#: instance negatives; easy-only: instance negatives only.
CURRICULA = ("easy-to-hard", "none", "hard-only", "easy-only")
#: Audio features (avsa_train.audio_features): 128 log-mel bands (the reference code), 129 STFT bins (Table 1),
#: or, for ambisonics, the 4 log-mel channels plus 3 active-intensity-vector channels in the same bands.
SPECTROGRAM_KINDS = ("mel128", "stft129", "mel128+iv")
#: Kinds that add intensity-vector channels (they need --audio-format ambi).
IV_KINDS = ("mel128+iv",)
#: How an easy-to-hard AVSA run trains its easy epochs (before ``switch_epoch``). ``avc``: the AVC stage of Table 2
#: — one viewpoint per sample, ``easy_batch_size`` samples per step, the direct projection heads, loss (7);
#: ``translation``: V viewpoints through the translator, loss (9) with instance negatives only.
EASY_STAGES = ("avc", "translation")
#: Options that change the data order: a resume with other values would not continue the same run.
DATA_ORDER_KEYS = ("seed", "batch_size", "workers", "viewpoints", "moments", "shuffle_buffer", "shards")


@dataclass
class PretrainConfig:
    """Every option of ``avsa-train pretrain``. Units: learning rate per step, τ dimensionless, steps, epochs."""

    task: str = "avsa"
    shards: str = ""
    out: str = "runs/avsa"
    # data (Table 2: nv viewpoints; M moments per item for AVTS / temporal negatives)
    viewpoints: int = 4
    moments: int = 1
    audio_format: str = "ambi"  # mono | stereo | ambi
    spec: str = "mel128"  # mel128 (reference code) | stft129 (Table 1) | mel128+iv (ambi: + intensity vectors)
    shuffle_buffer: int = 128  # samples per DataLoader worker
    workers: int | None = None  # DataLoader workers per rank; None: CPUs per rank − 1, at most 8
    # model
    width: float = 1.0
    depth: int = 2  # transformer depth D (0 = direct prediction)
    context: str = "attention"  # attention: transformer over the viewpoints | none: per-viewpoint MLP (NoCtx)
    heads: int = 1
    proj_dim: int = 128
    dropout: float = 0.1
    # optimisation (Table 2)
    batch_size: int = 28  # per rank
    lr: float = 1e-4
    weight_decay: float = 1e-5
    tau: float = 0.07
    epochs: int = 50
    steps_per_epoch: int | None = None  # default: train samples / global batch
    max_steps: int | None = None
    # negatives and curriculum (Table 2 in/sn/tn, Table 3c/3d)
    negatives: str = "spatial"  # instance | spatial | temporal | spatial+temporal
    curriculum: str = "easy-to-hard"
    switch_epoch: int = 0  # epochs of easy (instance-only) negatives before the hard ones join
    easy_stage: str = "avc"  # avc | translation (see EASY_STAGES)
    easy_batch_size: int | None = None  # samples per step of the AVC easy stage; None: viewpoints × batch_size
    # augmentation (Table 2: cj, hf; volume jitter ±10 %)
    color_jitter: bool = True
    flip_p: float = 0.5
    volume_jitter: float = 0.1
    # run
    init: str | None = None  # an AVC checkpoint to start from (Table 2: AVSA starts from AVC at epoch 100)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision, used on CUDA only
    checkpoint_every: int = 1000  # steps; 0 = only at the end
    keep_checkpoints: bool = False  # also keep OUT/checkpoint-stepN.pt at every checkpoint
    log_every: int = 1
    tensorboard: bool = False
    quiet: bool = False

    def validate(self) -> PretrainConfig:
        """Check values and their combinations; raise ValueError naming the option."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {self.task!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"--negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.curriculum not in CURRICULA:
            raise ValueError(f"--curriculum must be one of {CURRICULA}, got {self.curriculum!r}")
        if self.audio_format not in ("mono", "stereo", "ambi"):
            raise ValueError(f"--audio-format must be mono, stereo or ambi, got {self.audio_format!r}")
        if self.spec not in SPECTROGRAM_KINDS:
            raise ValueError(f"--spec must be one of {', '.join(SPECTROGRAM_KINDS)}, got {self.spec!r}")
        if self.spec in IV_KINDS and self.audio_format != "ambi":
            raise ValueError(
                f"--spec {self.spec} adds ambisonic intensity vectors: it needs --audio-format ambi, "
                f"got {self.audio_format}"
            )
        if self.easy_stage not in EASY_STAGES:
            raise ValueError(f"--easy-stage must be one of {EASY_STAGES}, got {self.easy_stage!r}")
        if self.easy_batch_size is not None and self.easy_batch_size < 2:
            raise ValueError(f"--easy-batch-size must be ≥ 2, got {self.easy_batch_size}")
        from avsa_train.models.transformer import CONTEXTS

        if self.context not in CONTEXTS:
            raise ValueError(f"--context must be one of {CONTEXTS}, got {self.context!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.viewpoints < 1 or self.moments < 1:
            raise ValueError(f"--viewpoints and --moments must be ≥ 1, got {self.viewpoints} and {self.moments}")
        if self.batch_size < 2:
            raise ValueError(f"--batch-size must be ≥ 2 (instance negatives need other samples), got {self.batch_size}")
        if self.width <= 0 or self.lr <= 0 or self.tau <= 0 or self.weight_decay < 0:
            raise ValueError("--width, --lr and --tau must be > 0 and --weight-decay ≥ 0")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 0):
            raise ValueError("--epochs must be ≥ 1 and --max-steps ≥ 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"--steps-per-epoch must be ≥ 1, got {self.steps_per_epoch}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be ≥ 0, got {self.workers}")
        if self.log_every < 1 or self.checkpoint_every < 0 or self.switch_epoch < 0:
            raise ValueError("--log-every must be ≥ 1, --checkpoint-every and --switch-epoch ≥ 0")
        if self.task == "avts" and self.moments < 2:
            raise ValueError(
                "--task avts contrasts moments of the same viewpoint: it needs --moments ≥ 2 "
                "(and shards made with avsa-data shard --moments-per-sample ≥ 2)"
            )
        if self.task == "avc" and (self.viewpoints != 1 or self.moments != 1):
            raise ValueError("--task avc uses one viewpoint at one moment per sample (--viewpoints 1 --moments 1)")
        if "temporal" in self.negatives and self.moments < 2:
            raise ValueError(f"--negatives {self.negatives} needs --moments ≥ 2")
        if self.task == "avsa" and self.viewpoints < 2 and "spatial" in self.negatives:
            raise ValueError("--task avsa with spatial negatives needs --viewpoints ≥ 2")
        if not self.shards:
            raise ValueError("--shards is required (a folder of avsa-data shards)")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def has_avc_stage(self) -> bool:
        """An AVSA easy-to-hard run whose first ``switch_epoch`` epochs are the AVC stage of Table 2."""
        return (
            self.task == "avsa"
            and self.curriculum == "easy-to-hard"
            and self.switch_epoch > 0
            and self.easy_stage == "avc"
            and self.negatives != "instance"
        )

    def avc_stage(self) -> PretrainConfig:
        """The configuration of the AVC stage (Table 2, AVC row): ``viewpoints`` 1, one moment, ``easy_batch_size``
        samples per step (default V × batch: 4 × 28 = 112, so a step sees as many clips as an AVSA step),
        instance negatives, loss (7) on the direct projection heads. Everything else is this run's."""
        return replace(
            self,
            task="avc",
            viewpoints=1,
            moments=1,
            batch_size=self.easy_batch_size or self.viewpoints * self.batch_size,
            negatives="instance",
            curriculum="easy-only",
        )


#: Table 2 of the supplement (and the reference configs InstDisc.yaml / Cur-Loc4-TransfD2.yaml). AVTS: the
#: "nv = 4" clips are 4 moments of one viewpoint, contrasted with instance and temporal negatives (§A.1).
TASK_DEFAULTS: dict[str, dict] = {
    "avc": {
        "viewpoints": 1,
        "moments": 1,
        "batch_size": 112,
        "depth": 0,
        "negatives": "instance",
        "curriculum": "easy-only",
        "epochs": 100,
        "out": "runs/avc",
    },
    "avts": {
        "viewpoints": 1,
        "moments": 4,
        "batch_size": 28,
        "depth": 2,
        "negatives": "temporal",
        "curriculum": "none",
        "epochs": 50,
        "out": "runs/avts",
    },
    "avsa": {
        "viewpoints": 4,
        "moments": 1,
        "batch_size": 28,
        "depth": 2,
        "negatives": "spatial",
        "curriculum": "easy-to-hard",
        "switch_epoch": 0,
        "epochs": 50,
        "out": "runs/avsa",
    },
}


def _field_names() -> set[str]:
    return {f.name for f in fields(PretrainConfig)}


def read_yaml(path: str | Path) -> dict:
    """Options of a YAML config file (keys as the long flags with ``_`` for ``-``); unknown keys are an error."""
    try:
        data = yaml.safe_load(Path(path).read_bytes()) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ValueError(
            f"{path}: malformed YAML{where} ({e.problem or e.context}); expected a mapping of option: value"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # e.g. bytes that are not UTF-8
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not a YAML file ({why}); expected a mapping of option: value") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _field_names())
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(_field_names())}")
    return {k: _typed(path, k, v) for k, v in data.items()}


def _typed(path, key: str, value):
    """``value`` of option ``key`` checked against the field's type (``1e-4``, which YAML 1.1 reads as a string,
    becomes a float); otherwise a ``ValueError`` naming the file, the key and the expected type."""
    kinds = next(f.type for f in fields(PretrainConfig) if f.name == key).split(" | ")
    if value is None and "None" in kinds:
        return None
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
    elif not isinstance(value, bool):
        if "int" in kinds and isinstance(value, int):
            return value
        if "float" in kinds and isinstance(value, (int, float)):
            return float(value)
        if "float" in kinds and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if "str" in kinds and isinstance(value, str):
            return value
    raise ValueError(f"{path}: {key} must be {' or '.join(kinds)}, got {value!r}")


def resolve(task: str | None, yaml_path: str | Path | None, cli: dict, saved: dict | None = None) -> PretrainConfig:
    """Table 2 defaults for the task ← YAML file ← CLI values that are not ``None``.

    ``task`` ``None`` means: the YAML's ``task``, else the saved run's, else ``avsa``. ``saved`` (a checkpoint's
    configuration, for ``--resume``) replaces the defaults and the YAML file.
    """
    names = _field_names()
    data = read_yaml(yaml_path) if yaml_path else {}
    if saved is not None:
        values = {k: v for k, v in saved.items() if k in names}
        if task is not None and task != values.get("task"):
            raise ValueError(f"--resume: the run in {values.get('out')} is a {values.get('task')} run, not {task}")
    else:
        task = task or data.get("task") or "avsa"
        if task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {task!r}")
        values = {"task": task, **TASK_DEFAULTS[task]}
        values.update(data)
        values["task"] = task
    values.update({k: v for k, v in cli.items() if v is not None and k in names})
    if values.get("init") in ("", "none", "None"):
        values["init"] = None
    return PretrainConfig(**values).validate()
