"""AVC-Bin and AVSA-Bin: binary classifiers on frozen audio-visual features (AVSA main text §5.2, supplement §B).

Protocol (the reference's ``eval-avc.py`` / ``eval-avsa.py`` with ``configs/benchmark/{avc,avsa}/*-4crop``):

* An **item** is one moment of a shard sample seen from ``V = 4`` viewpoints of its bank, each with its own
  audio render (mono, stereo or ambiX, as the checkpoint was trained). With probability 0.5 the item is a
  negative (:mod:`avsa_train.tasks.misalign`): for AVC-Bin its sound field comes from another video, for
  AVSA-Bin it is rotated in yaw (reference: ``δ ~ U(−180°, 180°)``). All V crops of an item share the label.
* The encoders are frozen (eval mode). Per crop, the video feature ``f_v`` (optionally passed through the
  pre-trained video→audio transformer over the V crops: the reference's ``use_transf: audio``, our
  ``features="transformer"``) is concatenated with the audio feature ``f_a``, then dropout 0.5,
  Linear(2D → 512), ReLU, Linear(512 → 2). The classifier is trained with cross-entropy on every crop.
* Fit on the ``train`` split for 10 epochs (Adam; AVC lr 1e-5 decayed ×0.1 at epochs 5 and 8, AVSA lr 1e-4
  decayed ×0.1 at epoch 8; weight decay 1e-5; batch 32 items), with the pre-training augmentations (random
  views, flip, colour jitter). Evaluate on the ``val`` split with random views and no augmentation: the logits
  of the V crops of an item are averaged and the item is classified (AVC@4 / AVSA@4).

Labels: 0 = aligned (positive pair), 1 = misaligned (negative).

**Cached-feature heads** (``head_epochs``; not the reference protocol, docs/DEVIATIONS.md). The encoders are
frozen, so the features of an item are fixed once its views, negative and augmentation are drawn. With
``head_epochs`` set, the ``epochs`` passes over the training items are encoded once (each pass draws new views
and negatives, exactly as the reference's epochs do) and the classifier then trains ``head_epochs`` passes over
all of them, its learning rate × ``gamma`` at the ``milestones`` (counted in head epochs). The encoder cost is
that of ``epochs`` reference epochs; the classifier's own steps cost next to nothing. With ``standardize``, each
feature dimension is z-scored with the mean and standard deviation of the training items' features before the
classifier (the statistics are fitted on the training split only and kept in the head). At the learning scale of
issue 13 the reference schedule (a few dozen classifier steps on raw features) left the heads answering one
class while their scores ranked items well (docs/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from avsa_data.options import check_choices, option, per_task
from avsa_data.rng import rng_for
from avsa_train.fit import StepOutput, fit
from avsa_train.runs import TrainingState, resumable
from avsa_train.tasks import misalign, streams
from avsa_train.tasks.common import Backbone, TaskResult, multistep, progress
from avsa_train.tasks.metrics import accuracy_summary, roc_auc

FEATURE_MODES = ("transformer", "direct")
#: Reference defaults per task: learning rate and the epochs at which it is multiplied by 0.1.
TASK_DEFAULTS = {"avc": {"lr": 1e-5, "milestones": (5, 8)}, "avsa": {"lr": 1e-4, "milestones": (8,)}}
YAW_BINS = (0.0, 45.0, 90.0, 135.0, 180.0)


@dataclass(frozen=True)
class BinaryEvalConfig:
    """Hyper-parameters of AVC-Bin / AVSA-Bin (defaults: the reference's 4-crop benchmark configs)."""

    task: str = option("avsa", choices=misalign.BINARY_TASKS, cli=False,  # the command's TASK argument
                       help="avc (AVC-Bin: is the audio from this video?) or avsa (AVSA-Bin: is it spatially "
                       "aligned with the viewpoints?).")
    views: int = option(4, min=1, help="Viewpoints (crops) per item.")
    epochs: int = option(10, min=0, help="Classifier training epochs.")
    batch_size: int = option(32, min=1, help="Items (of V crops) per batch.")
    lr: float | None = option(None, help="Learning rate.",
                              default_doc=per_task({t: d["lr"] for t, d in TASK_DEFAULTS.items()}))
    milestones: tuple[int, ...] | None = option(
        None, unit="EPOCHS", help="Epochs where lr ×= --gamma (comma-separated; 'none': no decay).",
        default_doc=per_task({t: d["milestones"] for t, d in TASK_DEFAULTS.items()}))
    gamma: float = option(0.1, help="Learning-rate decay factor.")
    weight_decay: float = option(1e-5, help="Adam weight decay.")
    hidden: int = option(512, cli=False, help="Hidden units of the classifier MLP.")
    dropout: float = option(0.5, cli=False, help="Dropout before the classifier MLP.")
    misalign_rate: float = option(misalign.MISALIGN_RATE, min=0.0, max=1.0, help="Fraction of negative items.")
    min_yaw: float = option(0.0, unit="DEGREES", min=0.0, max=180.0,
                            help="AVSA: smallest |yaw| (degrees) of a rotated negative; the reference draws "
                            "U(-180, 180).")
    features: str = option("transformer", choices=FEATURE_MODES,
                           help="Video features: through the pre-trained video→audio transformer (reference "
                           "use_transf=audio) or the encoder's directly.")
    test_draws: int = option(1, min=1, help="Evaluation passes over the val split, each with new views and negatives.")
    augment: bool = option(
        True, help="Draw the classifier's training items with the pre-training augmentations (flip, colour and "
        "volume jitter; the reference), or as the evaluation items are drawn (random views, no augmentation): for "
        "encoders pre-trained without them (--no-color-jitter --flip-p 0).")
    head_epochs: int | None = option(
        None, min=1, unit="EPOCHS",
        help="Cached-feature head: encode the --epochs passes of training items once (frozen encoders), then train "
        "the classifier this many passes over all of them (--milestones then count these epochs). Not the "
        "reference protocol.", default_doc="off: the reference protocol, one classifier pass per encoded epoch")
    standardize: bool = option(
        False, help="Z-score every feature dimension with the training items' mean and standard deviation before "
        "the classifier (needs --head-epochs). Not the reference protocol.")
    # The protocol fields from here on repeat those of SegmentationConfig on purpose: each task's config is the
    # one source of truth of its command's options and defaults.
    shuffle_buffer: int = option(16, cli=False, help="Shuffle buffer of the training items, per DataLoader worker.")
    seed: int = option(0, help="Seed of initialisation, data order and augmentations.")
    workers: int = option(0, min=0, cli=False,  # the commands use the cores (avsa_train/cli/_common.py)
                          help="DataLoader worker processes (0 = in-process).")
    train_split: str = option("train", help="Split the classifier is fitted on.")
    eval_split: str = option("val", help="Held-out split it is evaluated on.")

    def __post_init__(self) -> None:
        check_choices(self)  # task, --features
        if self.views < 1 or self.epochs < 0 or self.batch_size < 1 or self.test_draws < 1:
            raise ValueError("views, batch_size and test_draws must be >= 1 and epochs >= 0")
        if self.head_epochs is not None and (self.head_epochs < 1 or self.epochs < 1):
            raise ValueError("--head-epochs needs --epochs >= 1 (encoded passes) and a value >= 1")
        if self.standardize and self.head_epochs is None:
            raise ValueError("--standardize needs --head-epochs (the statistics come from the cached features)")

    @property
    def base_lr(self) -> float:
        return TASK_DEFAULTS[self.task]["lr"] if self.lr is None else self.lr

    @property
    def lr_milestones(self) -> tuple[int, ...]:
        return tuple(TASK_DEFAULTS[self.task]["milestones"] if self.milestones is None else self.milestones)


class BinaryClassifier(nn.Module):
    """``[video_feat ‖ audio_feat]`` → (z-score) → dropout → Linear(→ hidden) → ReLU → Linear(→ 2) (reference
    AVCWrapper; the z-score, off unless :meth:`set_standardization` is called, is not in the reference)."""

    def __init__(self, video_dim: int, audio_dim: int, hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(video_dim + audio_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))
        self.register_buffer("mean", None)
        self.register_buffer("std", None)

    def set_standardization(self, features: torch.Tensor) -> None:
        """Fit the z-score of each dimension of the concatenated features ``[..., Dv + Da]`` (training items)."""
        flat = features.reshape(-1, features.shape[-1])
        self.mean = flat.mean(0)
        self.std = flat.std(0).clamp_min(1e-6)

    def forward(self, video_feat: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        """``[..., Dv]``, ``[..., Da]`` → logits ``[..., 2]`` (index 1 = misaligned)."""
        x = torch.cat((video_feat, audio_feat), -1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.mlp(self.dropout(x))


class BinaryItems(IterableDataset):
    """Items of one pass over a split: dicts with ``video [V, 3, T, H, W]``, ``audio [V, C, n]``, ``label``,
    ``yaw`` (degrees; 0 unless an AVSA negative), ``key``, ``video_id``, ``moment`` (-1 in training, where it is
    drawn at random) and ``views`` (the bank indices of the V crops).

    ``phase="train"``: shuffled samples, one random moment each, pre-training augmentations (none when
    ``cfg.augment`` is off).
    ``phase="test"``: samples in order, every moment, random views without augmentation.
    ``epoch`` seeds the pass (the test draw index for ``phase="test"``). AVC negatives borrow the world FOA of a
    sample of another video of the same split from ``donors`` (built from ``urls`` when not given).
    """

    def __init__(
        self,
        urls: list[str],
        cfg: BinaryEvalConfig,
        audio_format: str,
        phase: str,
        epoch: int,
        donors: misalign.DonorBank | None = None,
    ):
        super().__init__()
        if phase not in ("train", "test"):
            raise ValueError(f"phase must be 'train' or 'test', got {phase!r}")
        self.urls, self.cfg, self.phase, self.epoch = list(urls), cfg, phase, epoch
        if cfg.task == "avc" and donors is None:
            donors = misalign.DonorBank(self.urls)
        self.donors = donors
        base = streams.stream_config(
            views=cfg.views,
            moments=1,
            audio_format=audio_format,
            seed=cfg.seed,
            train=True,
            with_masks=False,
            hfov_range=None,
            batch_size=cfg.batch_size,
            shuffle_buffer=cfg.shuffle_buffer,
        )
        self.decode_cfg = base if phase == "train" and cfg.augment else streams.eval_config(base)

    def __iter__(self) -> Iterator[dict]:
        train = self.phase == "train"
        for sample in streams.raw_samples(
            self.urls, self.epoch, self.cfg.seed, shuffle=train, buffer=self.cfg.shuffle_buffer
        ):
            video_id = sample.meta["video_id"]
            candidates = self.donors.candidates(video_id) if self.donors is not None else []
            decision = misalign.draw_misalignment(
                self.cfg.task,
                self.cfg.seed,
                self.phase,
                self.epoch,
                sample.key,
                self.cfg.misalign_rate,
                self.cfg.min_yaw,
                len(candidates),
            )
            donor = None if decision.donor is None else self.donors.world_foa(candidates[decision.donor])
            presented = misalign.apply(sample, decision, donor)
            cfg = self.decode_cfg
            if not train:
                cfg = replace(cfg, moments=misalign.moments_of(sample))
            item = streams.decode(presented, cfg, self.epoch)
            for m in range(item["video"].shape[0]):
                yield {
                    "video": item["video"][m],
                    "audio": item["audio"][m],
                    "label": decision.label,
                    "yaw": decision.yaw,
                    "key": sample.key,
                    "video_id": video_id,
                    "moment": m if not train else -1,
                    "views": item["views"],
                }


def collate_items(items: list[dict]) -> dict:
    return {
        "video": torch.from_numpy(np.stack([it["video"] for it in items])),
        "audio": torch.from_numpy(np.stack([it["audio"] for it in items])),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "yaw": torch.tensor([it["yaw"] for it in items], dtype=torch.float32),
        "key": [it["key"] for it in items],
        "video_id": [it["video_id"] for it in items],
        "moment": [it["moment"] for it in items],
    }


def make_loader(dataset: BinaryItems, cfg: BinaryEvalConfig, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=collate_items,
        pin_memory=device.type == "cuda",
        worker_init_fn=streams.worker_init,
    )


@torch.no_grad()
def crop_features(
    backbone: Backbone, video: torch.Tensor, audio: torch.Tensor, features: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of V crops per item: ``video [B, V, 3, T, H, W]``, ``audio [B, V, C, n]`` →
    ``(f_v [B, V, D], f_a [B, V, D])``; with ``features="transformer"``, ``f_v`` is the pre-trained
    video→audio transformer's output over the V crops (the reference's ``use_transf: audio``)."""
    b, v = video.shape[:2]
    fv = backbone.video(video.flatten(0, 1)).view(b, v, -1)
    fa = backbone.audio(backbone.spectrogram(audio.flatten(0, 1))).view(b, v, -1)
    if features == "transformer":
        if backbone.translator is None:
            raise ValueError("features='transformer' needs a checkpoint with a cross-modal translator")
        fv = backbone.translator.v2a_transformer(fv)
    return fv, fa


def _to(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    nb = device.type == "cuda"
    return (
        batch["video"].to(device, non_blocking=nb),
        batch["audio"].to(device, non_blocking=nb),
        batch["label"].to(device),
    )


def train_step(
    backbone: Backbone, head: BinaryClassifier, batch: dict, cfg: BinaryEvalConfig, device: torch.device
) -> StepOutput:
    """Cross-entropy of every crop on frozen features; sums the crop loss, crop and item hits and counts."""
    video, audio, label = _to(batch, device)
    fv, fa = crop_features(backbone, video, audio, cfg.features)
    return crop_loss(head(fv, fa), label)


def crop_loss(logits: torch.Tensor, label: torch.Tensor) -> StepOutput:
    """Cross-entropy of every crop (``logits [B, V, 2]``, each crop labelled as its item, ``label [B]``) with the
    sums of the epoch summary: crop loss, crop and item hits (item: the mean logits of its V crops), counts."""
    crop_labels = label[:, None].expand(-1, logits.shape[1])
    loss = F.cross_entropy(logits.flatten(0, 1), crop_labels.flatten())
    with torch.no_grad():
        n = crop_labels.numel()
        sums = {
            "loss": float(loss) * n,
            "crops": n,
            "crop_hits": float((logits.argmax(-1) == crop_labels).sum()),
            "items": len(label),
            "item_hits": float((logits.mean(1).argmax(-1) == label).sum()),
        }
    return StepOutput(loss, sums)


def epoch_summary(sums: dict[str, float]) -> dict:
    """An epoch's history fields: mean crop loss, item and crop accuracy (percent), items seen."""
    crops, items = max(sums.get("crops", 0.0), 1), max(sums.get("items", 0.0), 1)
    return {
        "train_loss": sums.get("loss", 0.0) / crops,
        "train_accuracy": 100.0 * (sums.get("item_hits", 0.0) / items),
        "train_crop_accuracy": 100.0 * (sums.get("crop_hits", 0.0) / crops),
        "train_items": int(sums.get("items", 0.0)),
    }


@torch.no_grad()
def predict(
    backbone: Backbone,
    head: BinaryClassifier,
    loader: Iterable[dict],
    cfg: BinaryEvalConfig,
    device: torch.device,
    show: bool,
    desc: str,
) -> dict[str, list]:
    """Per-item outputs: averaged logits of the V crops, the score ``logit₁ − logit₀`` (misaligned), labels."""
    head.eval()
    out: dict[str, list] = {
        k: [] for k in ("key", "video_id", "moment", "label", "yaw", "score", "pred", "crop_correct")
    }
    for batch in progress(loader, show, desc):
        video, audio, label = _to(batch, device)
        fv, fa = crop_features(backbone, video, audio, cfg.features)
        add_outputs(out, head(fv, fa), label, batch)
    return out


def add_outputs(out: dict[str, list], logits: torch.Tensor, label: torch.Tensor, columns: dict) -> None:
    """Append the per-item outputs of ``logits [B, V, 2]`` to ``out``: the score ``logit₁ − logit₀`` of the
    crops' mean logits (misaligned), the prediction, the fraction of correct crops, and the item columns."""
    mean = logits.mean(1)
    out["key"] += columns["key"]
    out["video_id"] += columns["video_id"]
    out["moment"] += columns["moment"]
    out["label"] += label.tolist()
    out["yaw"] += [float(y) for y in columns["yaw"]]
    out["score"] += (mean[:, 1] - mean[:, 0]).tolist()
    out["pred"] += mean.argmax(-1).tolist()
    out["crop_correct"] += (logits.argmax(-1) == label[:, None]).float().mean(1).tolist()


def summarise(pred: dict[str, list], task: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Item accuracy (percent) with Wilson and video-bootstrap 95 % CIs, crop accuracy, per-label accuracy,
    ROC AUC of the misalignment score, and for AVSA the negatives' accuracy by ``|yaw|`` bin."""
    label = np.asarray(pred["label"], dtype=int)
    p = np.asarray(pred["pred"], dtype=int)
    if label.size == 0:
        raise ValueError("no evaluation items (is the evaluation split empty?)")
    correct = p == label
    summary = accuracy_summary(correct, pred["video_id"], n_boot=n_boot, seed=seed)
    summary["crop_accuracy"] = round(100.0 * float(np.mean(pred["crop_correct"])), 4)
    summary["accuracy_aligned"] = _pct_of(correct[label == 0])
    summary["accuracy_misaligned"] = _pct_of(correct[label == 1])
    summary["n_aligned"] = int((label == 0).sum())
    summary["n_misaligned"] = int((label == 1).sum())
    auc = roc_auc(np.asarray(pred["score"]), label)
    summary["roc_auc"] = None if auc is None else round(auc, 6)
    if task == "avsa":
        yaw = np.abs(np.asarray(pred["yaw"]))
        bins = []
        for lo, hi in zip(YAW_BINS[:-1], YAW_BINS[1:]):
            sel = (label == 1) & (yaw >= lo) & ((yaw < hi) if hi < 180 else (yaw <= hi))
            bins.append({"yaw_min": lo, "yaw_max": hi, "n": int(sel.sum()), "accuracy": _pct_of(correct[sel])})
        summary["misaligned_by_yaw"] = bins
    return summary


def _pct_of(x: np.ndarray) -> float | None:
    return round(100.0 * float(np.mean(x)), 4) if x.size else None


def fit_head(
    backbone: Backbone,
    cfg: BinaryEvalConfig,
    device: torch.device,
    loader_for_epoch: Callable[[int], Iterable[dict]],
    show_progress: bool = True,
    total: int | None = None,
    training: TrainingState | None = None,
) -> tuple[BinaryClassifier, list[dict]]:
    """Train a fresh :class:`BinaryClassifier` on the frozen ``backbone`` for ``cfg.epochs`` passes, the pass
    of epoch ``e`` read from ``loader_for_epoch(e)`` (batches as :func:`collate_items` makes them). Returns the
    head and the per-epoch history (lr, mean crop loss, item and crop accuracy in percent). ``training``: the
    run's checkpoints (:class:`avsa_train.runs.TrainingState`), from which an interrupted fit continues."""
    backbone.freeze()
    head = BinaryClassifier(backbone.dim, int(backbone.audio.out_dim), cfg.hidden, cfg.dropout).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    scheduler = multistep(optimizer, cfg.lr_milestones, cfg.gamma)
    state = fit(
        head,
        optimizer,
        lambda batch, epoch: train_step(backbone, head, batch, cfg, device),
        lambda epoch, state: loader_for_epoch(epoch),
        range(cfg.epochs),
        summarise=epoch_summary,
        scheduler=scheduler,
        bar=lambda it, e: progress(it, show_progress, f"{cfg.task}-bin epoch {e + 1}/{cfg.epochs}", total),
        **resumable(training, {"head": head}, optimizer, scheduler),
    )
    history = state.history
    return head, history


def predict_draws(
    backbone: Backbone,
    head: BinaryClassifier,
    cfg: BinaryEvalConfig,
    device: torch.device,
    loader_for_draw: Callable[[int], Iterable[dict]],
    show_progress: bool = True,
) -> dict[str, list]:
    """:func:`predict` over ``cfg.test_draws`` passes (``loader_for_draw(d)``), merged, with a ``draw`` column."""
    merged: dict[str, list] = {}
    for draw in range(cfg.test_draws):
        pred = predict(
            backbone, head, loader_for_draw(draw), cfg, device, show_progress, f"{cfg.task}-bin eval {draw + 1}"
        )
        pred["draw"] = [draw] * len(pred["key"])
        for k, v in pred.items():
            merged.setdefault(k, []).extend(v)
    return merged


@dataclass
class FrozenFeatures:
    """Frozen features of items (cached-feature heads): ``fv``, ``fa`` ``[N, V, D]`` as :func:`crop_features`
    gives them, ``label [N]``, and per-item ``columns`` (``key``, ``video_id``, ``moment``, ``yaw`` in degrees,
    ``draw``: the pass that drew the item's views and negative)."""

    fv: torch.Tensor
    fa: torch.Tensor
    label: torch.Tensor
    columns: dict[str, list]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: torch.Tensor) -> FrozenFeatures:
        """The items at ``index`` (1-D integer tensor), features and columns alike."""
        idx = index.tolist()
        cols = {k: [v[i] for i in idx] for k, v in self.columns.items()}
        return FrozenFeatures(self.fv[index], self.fa[index], self.label[index], cols)


@torch.no_grad()
def encode_items(
    backbone: Backbone,
    passes: Iterable[tuple[int, Iterable[dict]]],
    cfg: BinaryEvalConfig,
    device: torch.device,
    show_progress: bool,
    desc: str,
) -> FrozenFeatures:
    """Encode every item of the ``(draw, loader)`` passes once with the frozen ``backbone`` (on ``device``; the
    features are kept on it)."""
    backbone.freeze()
    fvs, fas, labels = [], [], []
    columns: dict[str, list] = {k: [] for k in ("key", "video_id", "moment", "yaw", "draw")}
    for draw, loader in passes:
        for batch in progress(loader, show_progress, f"{desc} {draw + 1}"):
            video, audio, label = _to(batch, device)
            fv, fa = crop_features(backbone, video, audio, cfg.features)
            fvs.append(fv)
            fas.append(fa)
            labels.append(label)
            for k in ("key", "video_id", "moment"):
                columns[k] += batch[k]
            columns["yaw"] += batch["yaw"].tolist()
            columns["draw"] += [draw] * len(batch["key"])
    if not labels:
        raise ValueError(f"{desc}: no items (is the split empty?)")
    return FrozenFeatures(torch.cat(fvs), torch.cat(fas), torch.cat(labels), columns)


def feature_batches(feats: FrozenFeatures, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
    """One shuffled pass over cached features in batches of ``batch_size`` items; the order is a function of
    ``(seed, epoch)`` only."""
    order = torch.from_numpy(rng_for(seed, "binary-head", epoch).permutation(len(feats))).to(feats.label.device)
    for i in range(0, len(feats), batch_size):
        j = order[i : i + batch_size]
        yield {"fv": feats.fv[j], "fa": feats.fa[j], "label": feats.label[j]}  # columns are not needed to train


def fit_cached_head(
    backbone: Backbone, cfg: BinaryEvalConfig, device: torch.device, feats: FrozenFeatures, show_progress: bool = True,
    training: TrainingState | None = None,
) -> tuple[BinaryClassifier, list[dict]]:
    """Train a fresh :class:`BinaryClassifier` for ``cfg.head_epochs`` passes over cached training features
    (standardised with their own statistics when ``cfg.standardize``). Returns the head and its history."""
    head = BinaryClassifier(backbone.dim, int(backbone.audio.out_dim), cfg.hidden, cfg.dropout).to(device)
    if cfg.standardize:
        head.set_standardization(torch.cat((feats.fv, feats.fa), -1))
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    scheduler = multistep(optimizer, cfg.lr_milestones, cfg.gamma)
    epochs = int(cfg.head_epochs or 0)
    total = -(-len(feats) // cfg.batch_size)
    with single_cpu_thread(device):
        state = fit(
            head,
            optimizer,
            lambda batch, epoch: crop_loss(head(batch["fv"], batch["fa"]), batch["label"]),
            lambda epoch, state: feature_batches(feats, cfg.batch_size, cfg.seed, epoch),
            range(epochs),
            summarise=epoch_summary,
            scheduler=scheduler,
            bar=lambda it, e: progress(it, show_progress, f"{cfg.task}-bin head epoch {e + 1}/{epochs}", total),
            **resumable(training, {"head": head}, optimizer, scheduler),
        )
    return head, state.history


@contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on the CPU while a tiny classifier trains: its steps take ~2 ms alone and several times
    longer when split across threads that wait for each other (measured: 1.8 vs 14.9 ms per step on 2 shared
    cores). The thread count is restored afterwards; nothing changes on a GPU."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict_features(head: BinaryClassifier, feats: FrozenFeatures, batch_size: int = 256) -> dict[str, list]:
    """:func:`predict` on cached features: the same per-item columns, with ``draw``."""
    head.eval()
    out: dict[str, list] = {
        k: [] for k in ("key", "video_id", "moment", "label", "yaw", "score", "pred", "crop_correct", "draw")
    }
    for i in range(0, len(feats), batch_size):
        batch = feats.take(torch.arange(i, min(i + batch_size, len(feats)), device=feats.label.device))
        add_outputs(out, head(batch.fv, batch.fa), batch.label, batch.columns)
        out["draw"] += batch.columns["draw"]
    return out


def run_binary_eval(
    backbone: Backbone, shards: str, cfg: BinaryEvalConfig, device: torch.device, show_progress: bool = True,
    training: TrainingState | None = None,
) -> TaskResult:
    """Fit the binary classifier on ``cfg.train_split`` and evaluate it on ``cfg.eval_split`` of ``shards``;
    ``training``: the run's checkpoints of the classifier's fit (see :func:`fit_head`)."""
    if cfg.features == "transformer" and backbone.translator is None:
        raise ValueError("--features transformer needs a checkpoint with a translator; use --features direct")
    train_urls = streams.shard_urls(shards, cfg.train_split)
    eval_urls = streams.shard_urls(shards, cfg.eval_split)
    n_train = streams.split_sample_count(shards, cfg.train_split)
    total = None if n_train is None else -(-n_train // cfg.batch_size)
    train_donors = misalign.DonorBank(train_urls) if cfg.task == "avc" else None
    eval_donors = misalign.DonorBank(eval_urls) if cfg.task == "avc" else None
    fmt = backbone.audio_format

    def train_loader(epoch: int) -> DataLoader:
        return make_loader(BinaryItems(train_urls, cfg, fmt, "train", epoch, train_donors), cfg, device)

    def eval_loader(draw: int) -> DataLoader:
        return make_loader(BinaryItems(eval_urls, cfg, fmt, "test", draw, eval_donors), cfg, device)

    if cfg.head_epochs is None:  # the reference protocol: the encoders run for every classifier epoch
        head, history = fit_head(backbone, cfg, device, train_loader, show_progress, total, training)
        merged = predict_draws(backbone, head, cfg, device, eval_loader, show_progress)
    else:
        passes = ((e, train_loader(e)) for e in range(cfg.epochs))
        train_feats = encode_items(backbone, passes, cfg, device, show_progress, f"{cfg.task}-bin encode train pass")
        head, history = fit_cached_head(backbone, cfg, device, train_feats, show_progress, training)
        draws = ((d, eval_loader(d)) for d in range(cfg.test_draws))
        eval_feats = encode_items(backbone, draws, cfg, device, show_progress, f"{cfg.task}-bin eval")
        merged = predict_features(head, eval_feats)
    metrics = summarise(merged, cfg.task, seed=cfg.seed)
    conf = asdict(cfg)
    conf.update(lr=cfg.base_lr, milestones=list(cfg.lr_milestones))
    return TaskResult(
        "avsa.eval.binary", f"{cfg.task}-bin", metrics, history, conf, backbone.describe(), items=item_columns(merged)
    )


def item_columns(pred: dict[str, list]) -> dict[str, list]:
    """The per-item columns of ``eval_{task}_items.jsonl``: ``key``, ``moment``, ``draw``, ``video_id``,
    ``label``, ``yaw``, ``score`` (``logit₁ − logit₀`` averaged over the crops), ``pred``, ``correct``,
    ``crop_correct`` (fraction)."""
    cols = ("key", "moment", "draw", "video_id", "label", "yaw", "score", "pred", "crop_correct")
    out = {c: list(pred[c]) for c in cols}
    out["correct"] = [int(p == lab) for p, lab in zip(pred["pred"], pred["label"])]
    return out
