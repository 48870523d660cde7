"""Pre-training configuration: seed Table 2 defaults per task, a YAML file, then command-line flags.

Resolution order (later wins): :data:`TASK_DEFAULTS` (Table 2) → ``--config FILE.yaml`` → explicit CLI flags.
With ``--resume`` the run's saved configuration replaces the first two, so ``--resume --out RUN`` alone
continues a run; flags given with it (typically ``--max-steps`` or ``--epochs``) still override. The resolved
configuration is saved in every checkpoint and in ``OUT/config.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from avsa_data.options import (
    DEVICES,
    OptionError,
    check_choices,
    field_hint,
    format_value,
    option,
    option_meta,
    read_options_file,
    typed_value,
)
from avsa_train.models.transformer import CONTEXTS
from avsa_train.runs import CHECKPOINT_MINUTES

TASKS = ("avc", "avts", "avsa")
#: Audio input of the encoders (avsa_train.data.stream_config.AUDIO_FORMATS maps each to its render and channel count).
AUDIO_FORMATS = ("mono", "stereo", "ambi")
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


@dataclass(frozen=True)
class PretrainConfig:
    """Every option of ``avsa-train pretrain``. Units: learning rate per step, τ dimensionless, steps, epochs.

    The field defaults are the AVSA task's; :data:`TASK_DEFAULTS` holds the other tasks' Table 2 values."""

    task: str = option("avsa", choices=TASKS,
                       help="avc: instance discrimination, V=1, loss (7). avsa: joint loss (9) over V viewpoints, "
                       "spatial negatives, curriculum. avts: loss (9) over M moments of one viewpoint, temporal "
                       "negatives (shards with --moments-per-sample ≥ M).",
                       default_doc="the YAML's task, else avsa")
    shards: str = option("", help="Shard folder (its train-NNNNNN.tar are used), glob, brace pattern or pipe:/URL.")
    out: str = option("runs/avsa", help="Run folder: checkpoint.pt, metrics.jsonl, config.yaml.",
                      default_doc="runs/TASK")
    # data (Table 2: nv viewpoints; M moments per item for AVTS / temporal negatives)
    viewpoints: int = option(4, min=1, help="V viewpoints drawn from each sample's bank.")
    moments: int = option(1, min=1, help="M moments per item (temporal negatives).")
    audio_format: str = option("ambi", choices=AUDIO_FORMATS,
                               help="Audio input: mono (1 ch), binaural stereo (2 ch) or first-order ambisonics "
                               "(4 ch).")
    spec: str = option("mel128", choices=SPECTROGRAM_KINDS,
                       help="Audio features: 128 log-mel bins (reference code), 129 STFT bins (Table 1), or "
                       "mel128+iv (ambi only): the 4 log-mel channels plus the 3 active-intensity-vector channels "
                       "(Y, Z, X) in the same bands, which keep front/back and left/right (7 channels into "
                       "Conv2D-10).")
    shuffle_buffer: int = option(128, min=1, help="Shuffle buffer, samples per DataLoader worker.")
    workers: int | None = option(None, min=0, help="DataLoader workers per rank.",
                                 default_doc="CPUs per rank − 1, at most 8")
    # model
    width: float = option(1.0, help="Channel width multiplier of both encoders (tests: 0.125).")
    depth: int = option(2, min=0, help="Translator depth D; 0 = direct prediction.")
    context: str = option("attention", choices=CONTEXTS,
                          help="Translation network: attention (transformer over the viewpoints, the paper's "
                          "model) or none (a per-viewpoint MLP of depth D without attention, the authors' NoCtx "
                          "variant of direct prediction).")
    heads: int = option(1, cli=False, help="Attention heads of the translator.")
    proj_dim: int = option(128, cli=False, help="Dimension of the projection heads' output.")
    dropout: float = option(0.1, cli=False, help="Dropout of the translator.")
    # optimisation (Table 2)
    batch_size: int = option(28, help="Samples per step and rank.")
    lr: float = option(1e-4, help="Adam learning rate (Table 2).")
    weight_decay: float = option(1e-5, help="Adam weight decay (Table 2).")
    tau: float = option(0.07, help="InfoNCE temperature τ (Table 2).")
    epochs: int = option(50, help="Epochs.")
    steps_per_epoch: int | None = option(None, help="Steps per epoch.",
                                         default_doc="train samples in manifest.json / global batch")
    max_steps: int | None = option(None, help="Stop after this many steps in total (instead of --epochs).",
                                   default_doc="none")
    # negatives and curriculum (Table 2 in/sn/tn, Table 3c/3d)
    negatives: str = option("spatial", choices=NEGATIVES,
                            help="Hard negatives joined to the instance ones (Table 3c): instance (none), spatial "
                            "(other viewpoints), temporal (other moments), spatial+temporal.")
    curriculum: str = option("easy-to-hard", choices=CURRICULA,
                             help="Table 3d: easy-to-hard (instance negatives only until --switch-epoch), none "
                             "(easy + hard from the start), hard-only, easy-only.")
    switch_epoch: int = option(0, min=0,
                               help="Epoch at which the hard negatives join (easy-to-hard). The paper trains AVC for "
                               "100 epochs and starts AVSA from it: --init runs/avc/checkpoint.pt with "
                               "--switch-epoch 0; or in one run: --switch-epoch 100 --epochs 150 (the first 100 "
                               "epochs are the AVC stage, see --easy-stage).")
    easy_stage: str = option("avc", choices=EASY_STAGES,
                             help="How the easy epochs before --switch-epoch train. avc: the AVC stage of Table 2 "
                             "(1 viewpoint, --easy-batch-size samples per step, direct projection heads, loss (7)). "
                             "translation: V viewpoints through the translator, loss (9) with instance negatives "
                             "only.")
    easy_batch_size: int | None = option(None, help="Samples per step of the AVC easy stage.",
                                         default_doc="viewpoints × batch size: 4 × 28 = 112, Table 2's AVC")
    # augmentation (Table 2: cj, hf; volume jitter ±10 %)
    color_jitter: bool = option(True, help="Colour jitter (Table 2 cj).")
    flip_p: float = option(0.5, min=0.0, max=1.0, help="Horizontal flip probability (Table 2 hf).")
    volume_jitter: float = option(0.1, help="Audio gain jitter, ± this fraction.")
    break_spatial_link: bool = option(
        False, help="Causal control: rotate each sample's sound field by a random yaw (per sample and epoch) before "
        "its views' audio is rendered, so the sounds are kept and their directions no longer match the video. "
        "Spatial gains of a model pre-trained so should vanish (docs/RESULTS.md).")
    # run
    init: str | None = option(None, help="Start from this checkpoint's encoders (Table 2: AVSA starts from the AVC "
                              "model); 'none' for a random initialisation.", default_doc="none")
    seed: int = option(0, help="Seed of the initialisation, data order and augmentation.")
    device: str = option("auto", choices=DEVICES, help="auto = CUDA when available.")
    amp: bool = option(True, help="Mixed precision (CUDA only).")
    deterministic: bool = option(False, help="Deterministic CUDA kernels (torch.use_deterministic_algorithms, no "
                                 "cuDNN autotuning): a rerun or --resume on a GPU repeats the losses bit for bit, "
                                 "at some cost in speed. The CPU path is deterministic without it.")
    checkpoint_every: int = option(1000, min=0, help="Steps between checkpoints (0: only at the end).")
    checkpoint_minutes: float = option(CHECKPOINT_MINUTES, min=0.0, unit="MINUTES",
                                       help="Minutes between time-based checkpoints (0: none): what a kill -9 can "
                                       "lose at most. Ctrl-C and SIGTERM always save one.")
    keep_checkpoints: bool = option(False, help="Also keep checkpoint-stepN.pt files.")
    log_every: int = option(1, min=1, help="Steps between metrics.jsonl lines.")
    tensorboard: bool = option(False, help="Also log to OUT/tb (needs tensorboard installed).")
    quiet: bool = option(False, short="-q", help="No progress bar.")

    def validate(self) -> PretrainConfig:
        """Check values and their combinations; raise ValueError naming the option."""
        check_choices(self, skip=("device",))  # every field with choices: --task, --negatives, --spec …
        if self.spec in IV_KINDS and self.audio_format != "ambi":
            raise OptionError(
                f"--spec {self.spec} adds ambisonic intensity vectors: it needs --audio-format ambi, "
                f"got {self.audio_format}"
            )
        if self.easy_batch_size is not None and self.easy_batch_size < 2:
            raise OptionError(f"--easy-batch-size must be ≥ 2, got {self.easy_batch_size}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise OptionError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.viewpoints < 1 or self.moments < 1:
            raise OptionError(f"--viewpoints and --moments must be ≥ 1, got {self.viewpoints} and {self.moments}")
        if self.batch_size < 2:
            raise OptionError(f"--batch-size must be ≥ 2 (instance negatives need other samples), got "
                              f"{self.batch_size}")
        if self.width <= 0 or self.lr <= 0 or self.tau <= 0 or self.weight_decay < 0:
            raise OptionError("--width, --lr and --tau must be > 0 and --weight-decay ≥ 0")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 0):
            raise OptionError("--epochs must be ≥ 1 and --max-steps ≥ 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise OptionError(f"--steps-per-epoch must be ≥ 1, got {self.steps_per_epoch}")
        if self.workers is not None and self.workers < 0:
            raise OptionError(f"--workers must be ≥ 0, got {self.workers}")
        if self.log_every < 1 or self.checkpoint_every < 0 or self.switch_epoch < 0:
            raise OptionError("--log-every must be ≥ 1, --checkpoint-every and --switch-epoch ≥ 0")
        if self.task == "avts" and self.moments < 2:
            raise OptionError(
                "--task avts contrasts moments of the same viewpoint: it needs --moments ≥ 2 "
                "(and shards made with avsa-data shard --moments-per-sample ≥ 2)"
            )
        if self.task == "avc" and (self.viewpoints != 1 or self.moments != 1):
            raise OptionError("--task avc uses one viewpoint at one moment per sample (--viewpoints 1 --moments 1)")
        if "temporal" in self.negatives and self.moments < 2:
            raise OptionError(f"--negatives {self.negatives} needs --moments ≥ 2")
        if self.task == "avsa" and self.viewpoints < 2 and "spatial" in self.negatives:
            raise OptionError("--task avsa with spatial negatives needs --viewpoints ≥ 2")
        if not self.shards:
            raise OptionError("--shards is required (a folder of avsa-data shards)")
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


def default_doc(name: str) -> str:
    """Where the value of option ``name`` comes from when no flag or YAML key gives it (for ``--help``):
    the field's ``default_doc``, Table 2's value per task where the tasks differ, else the default."""
    f = next(f for f in fields(PretrainConfig) if f.name == name)
    meta = option_meta(f)
    if meta and meta["default_doc"]:
        return meta["default_doc"]
    values = {task: TASK_DEFAULTS[task].get(name, f.default) for task in TASKS}
    if len(set(map(repr, values.values()))) > 1:
        return "Table 2: " + ", ".join(f"{task} {format_value(v)}" for task, v in values.items())
    return format_value(f.default)


def _field_names() -> set[str]:
    return {f.name for f in fields(PretrainConfig)}


def read_yaml(path: str | Path) -> dict:
    """Options of a YAML config file (keys as the long flags with ``_`` for ``-``); unknown keys are an error."""
    data = read_options_file(path, sorted(_field_names()))
    return {k: _typed(path, k, v) for k, v in data.items()}


def _typed(path, key: str, value):
    """``value`` of option ``key`` checked against the field's type hint (:func:`avsa_data.options.typed_value`:
    ``1e-4``, which YAML 1.1 reads as a string, becomes a float); otherwise an error naming the file, the key and
    the expected type."""
    try:
        return typed_value(value, field_hint(PretrainConfig, key))
    except ValueError as e:
        raise OptionError(f"{path}: {key} {e}") from None


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
            raise OptionError(f"--resume: the run in {values.get('out')} is a {values.get('task')} run, not {task}")
    else:
        task = task or data.get("task") or "avsa"
        if task not in TASKS:
            raise OptionError(f"--task must be one of {TASKS}, got {task!r}")
        values = {"task": task, **TASK_DEFAULTS[task]}
        values.update(data)
        values["task"] = task
    values.update({k: v for k, v in cli.items() if v is not None and k in names})
    if values.get("init") in ("", "none", "None"):
        values["init"] = None
    return PretrainConfig(**values).validate()
