"""``avsa-train pretrain``: AVC / AVTS / AVSA contrastive pre-training over streamed shards (supplement §A.1).

One step: a batch of B samples × M moments × V viewpoints (:mod:`avsa_train.data`) → f_v, f_a (spectrograms
on the device) → the task's loss → Adam (Table 2: lr 1e-4, weight decay 1e-5):

* ``avc``: V = 1, loss (7) between the projected video and audio embeddings (instance negatives);
* ``avsa``: V viewpoints of one moment, translator over the viewpoints, joint loss (9) with the negatives of
  the epoch's curriculum stage (:func:`negatives_at`). With ``--curriculum easy-to-hard --switch-epoch N`` the
  first N epochs are the AVC stage of Table 2 (``--easy-stage avc``: one viewpoint per sample, V × B samples per
  step — 112 at Table 2's B = 28 — the direct projection heads and loss (7)), then the AVSA stage continues the
  same model and optimiser (:class:`Schedule`);
* ``avts``: M moments of one viewpoint, translator over the moments, loss (9) with temporal negatives.

Rank 0 writes ``OUT/metrics.jsonl`` (one JSON line per logged step: step, epoch, stage (the loss's task: ``avc``
in the AVC stage of a curriculum), batch size and viewpoints of that step, negatives, loss, AVC-Acc, AVSA-Acc…,
samples/s), ``OUT/config.yaml`` and atomic checkpoints ``OUT/checkpoint.pt`` every
``checkpoint_every`` steps and at the end (:mod:`avsa_train.checkpoint`).

The loop is :func:`avsa_train.fit.fit`, shared with the downstream tasks: this module gives it the step
(:func:`train_step`: batch → loss and metrics), each epoch's batches (:class:`StageBatches`) and the hooks that
log (:class:`avsa_train.run_log.RunLog`) and checkpoint; ``_run`` checks the inputs, builds or restores the model
(:func:`_build`, :func:`_restore`) and trains (:func:`_train`).

Exact resume: the data order is a pure function of (seed, world size, workers, batch size, steps done) — see
:meth:`avsa_train.data.batches.ShardStream.resume_at` — and the checkpoint restores the model, optimiser, AMP scaler
and every rank's torch RNG (dropout), so the losses after ``--resume`` equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from avsa_data.fsutil import atomic_write
from avsa_data.jobcontrol import usable_cpus
from avsa_data.options import OptionError
from avsa_data.rng import rng_for
from avsa_train import allocator
from avsa_train import distributed as D
from avsa_train.checkpoint import (
    RUN_ONLY_KEYS,
    config_changes,
    init_from,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from avsa_train.checkpoint import build_model as model_for_config
from avsa_train.config import DATA_ORDER_KEYS, PretrainConfig
from avsa_train.data.augment import model_video
from avsa_train.data.batches import ShardStream, auto_workers, make_loader
from avsa_train.data.sources import count_samples, has_manifest, option_urls, peek_meta, shard_sizes, split_urls
from avsa_train.data.stream_config import StreamConfig, check_shards_fit
from avsa_train.fit import FitState, StepOutput, fit
from avsa_train.losses import LossOutput, Negatives, avc_loss, translation_loss
from avsa_train.models.avsa import AVSAModel
from avsa_train.run_log import METRICS, RunLog, SampleRate, metrics_row
from avsa_train.runs import (
    FINISHED,
    NEW,
    RESUME,
    Cadence,
    Interrupted,
    RunFolder,
    differences,
    steps_finish_first,
    stop_requested,
)

CHECKPOINT = "checkpoint.pt"


def negatives_at(cfg: PretrainConfig, epoch: int) -> Negatives:
    """The negatives of 0-based ``epoch`` for the configured task, ``--negatives`` and ``--curriculum``.

    Easy negatives are the other instances (``in`` in Table 2); hard ones are those of ``--negatives``: other
    viewpoints of the same moment (``spatial``, ``sn``) and/or other moments of the same viewpoint (``temporal``,
    ``tn``). Curricula (Table 3d): ``easy-to-hard`` — easy only for epochs ``[0, switch_epoch)``, then easy + hard;
    ``none`` — easy + hard throughout; ``hard-only``; ``easy-only``.
    """
    easy = Negatives(instance=True, spatial=False, temporal=False)
    if cfg.task == "avc" or cfg.negatives == "instance" or cfg.curriculum == "easy-only":
        return easy
    spatial, temporal = "spatial" in cfg.negatives, "temporal" in cfg.negatives
    if cfg.curriculum == "hard-only":
        return Negatives(instance=False, spatial=spatial, temporal=temporal)
    hard = Negatives(instance=True, spatial=spatial, temporal=temporal)
    if cfg.curriculum == "none":
        return hard
    return easy if epoch < cfg.switch_epoch else hard


def build_model(cfg: PretrainConfig) -> AVSAModel:
    """The model ``cfg`` describes, built as a checkpoint's is (:func:`avsa_train.checkpoint.build_model`)."""
    return model_for_config(cfg.as_dict())


def stream_config(cfg: PretrainConfig, device: torch.device | None = None) -> StreamConfig:
    """The data pipeline's configuration for ``cfg`` (training: shuffled and augmented). On a CUDA ``device``
    the clips travel as uint8 and are normalised there (:func:`avsa_train.data.augment.model_video`)."""
    return StreamConfig(
        video_on_device=device is not None and device.type == "cuda",
        views=cfg.viewpoints,
        moments=cfg.moments,
        audio_format=cfg.audio_format,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        shuffle_buffer=cfg.shuffle_buffer,
        train=True,
        flip_p=cfg.flip_p,
        color_jitter=cfg.color_jitter,
        volume_jitter=cfg.volume_jitter,
        break_spatial_link=cfg.break_spatial_link,
    )


def steps_per_epoch(cfg: PretrainConfig, world_size: int) -> int:
    """``--steps-per-epoch``, or the train samples of ``manifest.json`` divided by the global batch."""
    if cfg.steps_per_epoch:
        return int(cfg.steps_per_epoch)
    if has_manifest(cfg.shards):
        return max(1, count_samples(cfg.shards, "train") // (cfg.batch_size * world_size))
    raise ValueError("--steps-per-epoch is needed when --shards is not a folder (or URL of one) with manifest.json")


@dataclass(frozen=True)
class Schedule:
    """Steps of a run: ``easy_steps`` steps of the AVC stage (``switch_epoch`` epochs of ``easy_spe`` steps; 0
    without one), then epochs of ``spe`` steps of the run's own task, ``total`` steps in all."""

    spe: int
    total: int
    easy_steps: int = 0
    easy_spe: int = 1
    switch_epoch: int = 0

    def in_avc_stage(self, step: int) -> bool:
        return step < self.easy_steps

    def epoch(self, step: int) -> int:
        """0-based epoch of the step that follows ``step`` completed steps."""
        if self.in_avc_stage(step):
            return step // self.easy_spe
        return self.switch_epoch + (step - self.easy_steps) // self.spe

    def epoch_end(self, epoch: int) -> int:
        """Completed steps at the end of 0-based ``epoch`` (at most ``total``)."""
        if epoch < self.switch_epoch:
            return min((epoch + 1) * self.easy_spe, self.total)
        return min(self.easy_steps + (epoch - self.switch_epoch + 1) * self.spe, self.total)


def schedule(cfg: PretrainConfig, world_size: int) -> Schedule:
    """The run's :class:`Schedule`: ``--max-steps`` or ``--epochs`` (for a run with an AVC stage, ``epochs``
    counts both stages: ``switch_epoch`` AVC epochs, then ``epochs − switch_epoch`` AVSA epochs)."""
    spe = steps_per_epoch(cfg, world_size)
    if not cfg.has_avc_stage:
        return Schedule(spe, cfg.max_steps if cfg.max_steps is not None else cfg.epochs * spe)
    easy_spe = steps_per_epoch(cfg.avc_stage(), world_size)
    easy_steps = cfg.switch_epoch * easy_spe
    total = easy_steps + max(0, cfg.epochs - cfg.switch_epoch) * spe
    if cfg.max_steps is not None:
        total = cfg.max_steps
    return Schedule(spe, total, min(easy_steps, total), easy_spe, cfg.switch_epoch)


def set_cpu_threads(workers: int) -> int:
    """On a CPU device, leave the cores that DataLoader workers use to them (unless ``OMP_NUM_THREADS`` is set):
    oversubscribed OpenMP pools slow training down many times over. Returns torch's intra-op thread count."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, usable_cpus() // D.local_world_size() - workers))
    return torch.get_num_threads()


def compute_loss(
    model, video: torch.Tensor, audio: torch.Tensor, cfg: PretrainConfig, negatives: Negatives, amp: bool
) -> LossOutput:
    """Forward ``video [B, M, V, 3, T, H, W]``, ``audio [B, M, V, C, n]`` and the task's loss (float32)."""
    with torch.autocast(video.device.type, enabled=amp):
        if cfg.task == "avc":
            ev, ea = model(video, audio, output="embeddings")
        else:
            tr = model(video, audio, output="translation", tokens="moments" if cfg.task == "avts" else "views")
    if cfg.task == "avc":
        return avc_loss(ev[:, 0].float(), ea[:, 0].float(), cfg.tau)
    return translation_loss(type(tr)(*(t.float() for t in tr)), negatives, cfg.tau)


def train_step(
    net, batch: dict, cfg: PretrainConfig, negatives: Negatives, device: torch.device, amp: bool
) -> StepOutput:
    """The pre-training step given to :func:`avsa_train.fit.fit`: the batch to ``device`` and the task's loss
    (:func:`compute_loss`; ``amp``: the forward pass in mixed precision), with its metrics for the log."""
    video = model_video(batch, device)
    audio = batch["audio"].to(device, non_blocking=True)
    result = compute_loss(net, video, audio, cfg, negatives, amp)
    return StepOutput(result.loss, metrics=result.metrics)


def run_pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train as ``cfg`` says in the run folder ``OUT`` (:mod:`avsa_train.runs`): a new run, or the run already
    there continued when it has the same options (or only more steps), or nothing when that run is finished;
    another run there is refused (:class:`~avsa_train.runs.RunConflict`) unless ``overwrite``. With ``resume``,
    continue the run whose checkpoint is ``OUT/checkpoint.pt`` whatever options ``cfg`` changes.

    Returns ``{"steps", "last" (the last logged metrics, averaged over ranks), "checkpoint", "steps_per_epoch",
    "total_steps", "rank", "finished" (the run was finished before this call: nothing was done)}``. Raises
    :class:`~avsa_train.runs.Interrupted` after a stop signal, once the checkpoint of the last step is written.
    """
    _check_options(cfg, resume)
    if cfg.deterministic:
        use_deterministic_kernels()
    device = D.device_for(cfg.device)
    info = D.setup(device)
    try:
        summary = _run(cfg, resume, overwrite, device, info)
    except BaseException:
        D.cleanup(info, ok=False)
        raise
    D.cleanup(info)
    return summary


def use_deterministic_kernels() -> None:
    """Make CUDA runs repeatable: deterministic algorithms (a warning names any op that has none), no cuDNN
    autotuning, and the cuBLAS workspace setting that deterministic matrix products need (set before the first
    cuBLAS call, unless the environment sets it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _note(msg: str, info: D.DistInfo) -> None:
    if info.is_main:
        print(f"avsa-train pretrain: {msg}", file=sys.stderr)


@dataclass
class Trainer:
    """What a run trains: the model (``net``: wrapped for DDP), optimiser, AMP scaler (``None`` without mixed
    precision) and the completed steps (from the checkpoint when resuming)."""

    model: AVSAModel
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    step: int


@dataclass
class RunData:
    """The run's training shards, their sizes (``None`` without a manifest), the schedule and the AVC stage's
    configuration (``None`` without one)."""

    urls: list[str]
    sizes: dict | None
    sched: Schedule
    easy_cfg: PretrainConfig | None


#: Options that never change what a run computes or how long it trains: a rerun may change them freely.
RUN_ONLY = (*RUN_ONLY_KEYS, "tensorboard", "checkpoint_every", "keep_checkpoints", "log_every")


def run_folder(out: str | Path) -> RunFolder:
    """The run folder of a pre-training run (:class:`avsa_train.runs.RunFolder`): its files, and the checkpoint
    that makes it worth keeping."""
    return RunFolder(Path(out), "pretrain", "avsa-train pretrain",
                     files=(CHECKPOINT, METRICS, "config.yaml", "checkpoint-step*.pt", "tb"), progress=(CHECKPOINT,))


def _longer(saved: dict, asked: dict) -> bool:
    """Whether ``asked`` differs from a run's ``saved`` options only in asking for more steps (``--max-steps``)
    or epochs (``--epochs``, without ``--max-steps``): that continues the run, finished or not."""
    if differences(saved, asked, (*RUN_ONLY, "max_steps", "epochs")):
        return False
    if saved.get("max_steps") is not None and asked.get("max_steps") is not None:
        return asked["max_steps"] >= saved["max_steps"]
    return saved.get("max_steps") is None and asked.get("max_steps") is None and asked["epochs"] >= saved["epochs"]


def _check_options(cfg: PretrainConfig, resume: bool) -> None:
    """The checks that need no data and must fail before anything is written."""
    if cfg.init and not resume and not Path(cfg.init).is_file():
        what = "is a folder: use" if Path(cfg.init).is_dir() else "does not exist (train the AVC model first:"
        fix = (f"{Path(cfg.init) / CHECKPOINT}" if Path(cfg.init).is_dir() else
               "avsa-train pretrain --task avc; or pass --init none to start from a random initialisation)")
        raise OptionError(f"--init {cfg.init} {what} {fix}")


def _decide(folder: RunFolder, cfg: PretrainConfig, resume: bool, overwrite: bool, info: D.DistInfo) -> str:
    """Rank 0 reads the run folder (:meth:`RunFolder.decide`) and every rank gets its decision."""
    decision = None
    if info.is_main:
        if resume:
            decision = RESUME
        else:
            ckpt = folder.out / CHECKPOINT
            fallback = None
            if folder.record() is None and ckpt.is_file():  # a run written before run records existed
                saved = dict(load_checkpoint(ckpt, map_location="cpu")["config"])
                if cfg.workers is None:
                    saved["workers"] = None
                fallback = {"options": saved, "status": "running"}
            decision = folder.decide(cfg.as_dict(), overwrite, ignore=RUN_ONLY, longer=_longer, fallback=fallback)
    return D.gather(decision, info)[0]


def _run(cfg: PretrainConfig, resume: bool, overwrite: bool, device: torch.device, info: D.DistInfo) -> dict:
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    folder = run_folder(out)
    asked = cfg.as_dict()
    auto = auto_workers(D.local_world_size())
    data = _check_data(replace(cfg, workers=auto if cfg.workers is None else cfg.workers), info)  # nothing written yet
    with folder.lock() if info.is_main else contextlib.nullcontext():
        decision = _decide(folder, cfg, resume, overwrite, info)
        if decision == FINISHED:
            summary = (folder.record() or {}).get("summary") or {} if info.is_main else {}
            return {"steps": summary.get("steps", 0), "last": summary.get("last", {}), "checkpoint": str(ckpt_path),
                    "steps_per_epoch": summary.get("steps_per_epoch"), "total_steps": summary.get("steps", 0),
                    "rank": info.rank, "finished": True}
        state = _resume_state(cfg, ckpt_path, info, warn=resume) if decision == RESUME else None
        init_state = _init_state(cfg) if state is None else None
        if cfg.workers is None:
            saved_workers = state["config"].get("workers") if state is not None else None
            cfg = replace(cfg, workers=auto if saved_workers is None else saved_workers)
        if info.is_main:
            folder.start(asked, NEW if state is None else RESUME)
        _warn_no_easy_stage(cfg, state, info)
        tr = _build(cfg, device, info, init_state, state, find_unused=cfg.task == "avc" or data.easy_cfg is not None)
        del state, init_state
        log = RunLog.open(out, cfg, asked, tr.step, data.sched.total) if info.is_main else None
        try:
            last = _train(cfg, tr, data, device, info, log, ckpt_path)
        finally:
            if log is not None:
                log.close()
        if info.is_main:
            folder.finish({"steps": tr.step, "steps_per_epoch": data.sched.spe, "last": last})
    return {
        "steps": tr.step,
        "last": last,
        "checkpoint": str(ckpt_path),
        "steps_per_epoch": data.sched.spe,
        "total_steps": data.sched.total,
        "rank": info.rank,
        "finished": False,
    }


def _resume_state(cfg: PretrainConfig, ckpt_path: Path, info: D.DistInfo, warn: bool = True) -> dict | None:
    """The checkpoint to resume from (on the CPU), ``None`` when the run has none yet; with ``warn`` (``--resume``,
    which may change options), warns when options that set the data order changed."""
    if not ckpt_path.is_file():
        if warn:
            raise OptionError(f"--resume: {ckpt_path.parent} holds no run to continue (no {CHECKPOINT}); leave out "
                              f"--resume to start one")
        return None
    state = load_checkpoint(ckpt_path, map_location="cpu")
    if not warn:
        return state
    saved = state["config"]
    changed = config_changes(saved, cfg.as_dict(), DATA_ORDER_KEYS)
    if int(state.get("world_size", 1)) != info.world_size:
        changed.append("world size")
    if changed:
        _note(f"resuming with other {', '.join(changed)} than the saved run: the data order will differ", info)
    return state


def _init_state(cfg: PretrainConfig) -> dict | None:
    """The ``--init`` checkpoint (on the CPU), or ``None`` without one."""
    if not cfg.init:
        return None
    _check_options(cfg, resume=False)
    return load_checkpoint(cfg.init, map_location="cpu")


def _check_data(cfg: PretrainConfig, info: D.DistInfo) -> RunData:
    """The train shards fit the configuration (views, moments, audio) and can feed every rank and worker."""
    urls = split_urls(option_urls(cfg.shards), "train")
    if not urls:
        raise OptionError(f"--shards {cfg.shards} has no train shards (train-NNNNNN.tar)")
    sizes = shard_sizes(cfg.shards) if has_manifest(cfg.shards) else None
    check_shards_fit(peek_meta(urls), stream_config(cfg))
    if sizes is not None and sum(sizes.get(u, 0) for u in urls) < info.world_size * max(1, cfg.workers):
        raise ValueError(
            f"{sum(sizes.get(u, 0) for u in urls)} train samples cannot feed {info.world_size} rank(s) × "
            f"{max(1, cfg.workers)} DataLoader worker(s); use fewer --workers"
        )
    sched = schedule(cfg, info.world_size)
    easy_cfg = cfg.avc_stage() if cfg.has_avc_stage else None
    if easy_cfg is not None:
        check_shards_fit(peek_meta(urls), stream_config(easy_cfg))
        _note(
            f"easy-to-hard: {sched.easy_steps} steps of the AVC stage (1 viewpoint, batch {easy_cfg.batch_size}, "
            f"direct heads, loss (7); {cfg.switch_epoch} epochs), then AVSA",
            info,
        )
    return RunData(urls, sizes, sched, easy_cfg)


def _warn_no_easy_stage(cfg: PretrainConfig, state: dict | None, info: D.DistInfo) -> None:
    if (
        info.is_main
        and cfg.task == "avsa"
        and cfg.curriculum == "easy-to-hard"
        and cfg.switch_epoch == 0
        and not cfg.init
        and state is None
    ):
        _note(
            "note: this AVSA run starts from random weights, with no easy (AVC) stage. The paper trains AVC first "
            "and starts AVSA from it: --init runs/avc/checkpoint.pt (or --switch-epoch N for N AVC epochs in this "
            "run)",
            info,
        )


def _build(
    cfg: PretrainConfig,
    device: torch.device,
    info: D.DistInfo,
    init_state: dict | None,
    state: dict | None,
    find_unused: bool,
) -> Trainer:
    """The model (seeded, ``--init`` encoders), Adam, the AMP scaler, and with ``state`` everything a
    checkpoint restores; then the DDP wrapper."""
    torch.manual_seed(cfg.seed)  # the same initialisation on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg).to(device)
    if init_state is not None:
        fresh = init_from(model, cfg.init, state=init_state)
        _note(f"initialised from {cfg.init} ({len(fresh)} translator tensors left as initialised)", info)
    # dropout masks: an independent torch stream per rank
    torch.manual_seed(int(rng_for(cfg.seed, "torch", info.rank).integers(2**62)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
    else:
        set_cpu_threads(cfg.workers)
        allocator.keep_freed_activations()
    step = _restore(state, model, opt, scaler, info) if state is not None else 0
    net = D.wrap(model, info, device, find_unused_parameters=find_unused)
    return Trainer(model, net, opt, scaler, step)


def _restore(
    state: dict, model: AVSAModel, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, info: D.DistInfo
) -> int:
    """Load a checkpoint's model, optimiser, scaler and this rank's torch RNG; returns its completed steps."""
    for k in ("video", "audio", "translator"):
        getattr(model, k).load_state_dict(state[k])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    set_rng_state(rngs[info.rank % len(rngs)])
    return int(state["step"])


class StageBatches:
    """The batches of each epoch for :func:`avsa_train.fit.fit`: one loader per stage (the AVC stage of a
    curriculum, then the run's task), resumed at the steps done, cut at the epoch's last step."""

    def __init__(self, cfg: PretrainConfig, data: RunData, info: D.DistInfo, device: torch.device):
        self.cfg, self.data, self.info, self.device = cfg, data, info, device
        self.stage: PretrainConfig | None = None
        self._it = None

    def __call__(self, epoch: int, state: FitState):
        sched = self.data.sched
        stage = self.data.easy_cfg if sched.in_avc_stage(state.step) else self.cfg
        if stage is not self.stage:  # the start, or the switch from the AVC stage to AVSA
            self._it = None  # let the previous loader's workers go
            self._it = self._loader(stage, state.step if stage is self.data.easy_cfg else state.step - sched.easy_steps)
            self.stage = stage
        return itertools.islice(self._it, sched.epoch_end(epoch) - state.step)

    def _loader(self, stage: PretrainConfig, done: int):
        """Batches of ``stage``'s stream after ``done`` steps of it (the data order of an uninterrupted run)."""
        d, info = self.data, self.info
        stream = ShardStream(d.urls, stream_config(stage, self.device), rank=info.rank, world_size=info.world_size,
                             sizes=d.sizes)
        stream.resume_at(0, done)
        return iter(make_loader(stream, num_workers=self.cfg.workers, seed=self.cfg.seed))


class Checkpointer:
    """Atomic checkpoints of a run at ``OUT/checkpoint.pt`` (every ``checkpoint_every`` steps before the end,
    with ``keep_checkpoints`` also copied to ``checkpoint-stepN.pt``, and at the end). Saving is a collective:
    every rank gives its RNG state, rank 0 writes."""

    def __init__(self, path: Path, cfg: PretrainConfig, tr: Trainer, sched: Schedule, info: D.DistInfo,
                 device: torch.device):
        self.path, self.cfg, self.tr, self.sched, self.info, self.device = path, cfg, tr, sched, info, device
        self.cadence = Cadence(cfg.checkpoint_minutes)

    def save(self, step: int) -> None:
        rngs = D.gather(rng_state(), self.info)  # a collective: every rank takes part
        if self.info.is_main:
            tr = self.tr
            save_checkpoint(
                self.path, tr.model, tr.opt, tr.scaler, step, self.sched.epoch(step), self.cfg.as_dict(), rng=rngs,
                world_size=self.info.world_size,
            )
        self.cadence.mark()

    def after_step(self, step: int) -> None:
        """A checkpoint every ``checkpoint_every`` steps and every ``checkpoint_minutes``; after a stop signal
        (on any rank), the checkpoint of this step and :class:`~avsa_train.runs.Interrupted`."""
        stop, due = D.any_of([stop_requested(), self.cadence.due()], self.info, self.device)
        if stop:
            self.save(step)
            raise Interrupted(step)
        every = self.cfg.checkpoint_every
        if every and step % every == 0 and step < self.sched.total:
            self.save(step)
            if self.cfg.keep_checkpoints and self.info.is_main:
                atomic_write(self.path.parent / f"checkpoint-step{step}.pt", lambda f: f.write(self.path.read_bytes()))
        elif due:
            self.save(step)


def _train(
    cfg: PretrainConfig,
    tr: Trainer,
    data: RunData,
    device: torch.device,
    info: D.DistInfo,
    log: RunLog | None,
    ckpt_path: Path,
) -> dict:
    """Steps up to the schedule's total through :func:`avsa_train.fit.fit`: logs every ``log_every`` steps,
    checkpoints every ``checkpoint_every`` steps and at the end. Returns the last logged metrics."""
    sched, total = data.sched, data.sched.total
    stages = StageBatches(cfg, data, info, device)
    ckpt = Checkpointer(ckpt_path, cfg, tr, sched, info, device)
    rate = SampleRate(tr.step)
    last: dict = {}

    def step(batch: dict, epoch: int) -> StepOutput:
        negatives = negatives_at(stages.stage, epoch)
        out = train_step(tr.net, batch, stages.stage, negatives, device, tr.scaler is not None)
        out.info["negatives"] = negatives
        return out

    def after_step(state: FitState, out: StepOutput) -> None:
        nonlocal last
        if state.step % cfg.log_every == 0 or state.step == total:
            last = metrics_row(state, out, stages.stage, tr.opt, rate, info, device)
            if log is not None:
                log.write(last)
        if log is not None:
            log.progress(last)
        ckpt.after_step(state.step)

    start = tr.step
    epochs = range(sched.epoch(start), sched.epoch(total - 1) + 1) if start < total else range(0)
    with steps_finish_first():  # a stop signal ends the step under way, then checkpoints (Checkpointer.after_step)
        state = fit(tr.model, tr.opt, step, stages, epochs, scaler=tr.scaler, on_step=after_step,
                    state=FitState(start))
    tr.step = state.step
    if tr.step < total:
        raise RuntimeError(f"the training stream ended after {tr.step} of {total} steps")
    if tr.step > start or not ckpt_path.exists():
        ckpt.save(tr.step)
    return last
















