"""AVC-Bin and AVSA-Bin: binary classifiers on frozen audio-visual features (AVSA main text §5.2, supplement §B).

Protocol (the reference's ``eval-avc.py`` / ``eval-avsa.py`` with ``configs/benchmark/{avc,avsa}/*-4crop``):

* An **item** is one moment of a shard sample seen from ``V = 4`` viewpoints of its bank, each with its own
  audio render (mono, stereo or ambiX, as the checkpoint was trained). With probability 0.5 the item is a
  negative (:mod:`avsa_train.tasks.misalign`): for AVC-Bin its crops hear another video, for AVSA-Bin their own
  scene from the wrong direction. By default (``negatives="matched"``) a negative's audio is distributed as a
  positive's, so only the pairing of the two modalities tells them apart; ``"reference"`` is the authors'
  random yaw / foreign field at this sample's views. All V crops of an item share the label.
* The encoders are frozen (eval mode). Per crop, the video feature ``f_v`` (optionally passed through the
  pre-trained video→audio transformer over the V crops: the reference's ``use_transf: audio``, our
  ``features="transformer"``) is concatenated with the audio feature ``f_a``, then dropout 0.5,
  Linear(2D → 512), ReLU, Linear(512 → 2). The classifier is trained with cross-entropy on every crop.
* Fit on the ``train`` split for 10 epochs (Adam; AVC lr 1e-5 decayed ×0.1 at epochs 5 and 8, AVSA lr 1e-4
  decayed ×0.1 at epoch 8; weight decay 1e-5; batch 32 items), each epoch a new pass of items (views,
  negatives and the pre-training augmentations drawn anew). Evaluate on the ``val`` split with random views
  and no augmentation: the logits of the V crops of an item are averaged and the item is classified (AVC@4 /
  AVSA@4). Since the encoders are frozen, every pass is encoded once (:func:`encode_items`) and the classifier
  trains on those features: pass ``e`` in epoch ``e`` (the reference schedule), or with ``head_epochs`` all
  passes in every one of ``head_epochs`` epochs (cached-feature heads, docs/DEVIATIONS.md).
* **Controls** (``controls``): the same head recipe on the same items trained on the audio features alone
  and on the video features alone. A representation shows audio-visual alignment only where the two-modality
  head beats both; the report gives the paired gap over the better control.
* **Items counted once**: an evaluation draw that repeats an item of an earlier draw (the same sample,
  moment, views and negative) is dropped before scoring; the report gives the unique items and videos.

Labels: 0 = aligned (positive pair), 1 = misaligned (negative). ``standardize`` z-scores each feature dimension
with the training items' statistics before the classifier (not the reference protocol).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from avsa_data.options import check_choices, flat_dict, nested, option, per_task
from avsa_data.rng import rng_for
from avsa_train.data.batches import make_loader
from avsa_train.data.sources import shard_urls, viewpoint_sampler
from avsa_train.fit import StepOutput, fit
from avsa_train.runs import TrainingState, resumable
from avsa_train.tasks import misalign
from avsa_train.tasks.binary_items import ITEM_COLUMNS, binary_stream, column_value
from avsa_train.tasks.common import Backbone, TaskResult, multistep, progress
from avsa_train.tasks.metrics import accuracy_summary, paired_gap, roc_auc
from avsa_train.tasks.protocol import DownstreamProtocol

FEATURE_MODES = ("transformer", "direct")
#: Reference defaults per task: learning rate and the epochs at which it is multiplied by 0.1.
TASK_DEFAULTS = {"avc": {"lr": 1e-5, "milestones": (5, 8)}, "avsa": {"lr": 1e-4, "milestones": (8,)}}
#: Angular offset bins (degrees) of the AVSA negatives' accuracy (:func:`summarise`).
OFFSET_BINS = (0.0, 45.0, 90.0, 135.0, 180.0)


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
    negatives: str = option("matched", choices=misalign.NEGATIVE_KINDS,
                            help="How negatives are made. matched: a negative's audio is distributed as a "
                            "positive's (AVSA: each crop hears its own scene rendered at another viewpoint of the "
                            "bank; AVC: another video as rendered at that video's own viewpoints), so neither "
                            "modality alone can tell the classes apart, whatever the viewpoint sampler. reference: "
                            "the authors' random yaw (AVSA) and another video's field at this sample's views (AVC); "
                            "valid only for shards whose views do not follow the sound (--sampler random or grid).")
    min_yaw: float = option(0.0, unit="DEGREES", min=0.0, max=180.0,
                            help="AVSA with --negatives reference: smallest |yaw| (degrees) of a rotated negative; "
                            "the reference draws U(-180, 180).")
    controls: bool = option(True, help="Also train the same head on the audio features alone and on the video "
                            "features alone (the other modality removed), and report the model's paired gap over "
                            "the better of the two.")
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
        help="Cached-feature head: train the classifier this many passes over all --epochs encoded passes of "
        "training items (--milestones then count these epochs). Not the reference protocol.",
        default_doc="off: the reference protocol, epoch e trains on encoded pass e")
    standardize: bool = option(
        False, help="Z-score every feature dimension with the training items' mean and standard deviation before "
        "the classifier (needs --head-epochs). Not the reference protocol.")
    #: Splits, seed, workers, shuffle buffer: options of the command under their own names (last, as saved).
    protocol: DownstreamProtocol = nested(DownstreamProtocol)

    def __post_init__(self) -> None:
        check_choices(self)  # task, --features
        if self.views < 1 or self.epochs < 0 or self.batch_size < 1 or self.test_draws < 1:
            raise ValueError("views, batch_size and test_draws must be >= 1 and epochs >= 0")
        if self.head_epochs is not None and (self.head_epochs < 1 or self.epochs < 1):
            raise ValueError("--head-epochs needs --epochs >= 1 (encoded passes) and a value >= 1")
        if self.standardize and self.head_epochs is None:
            raise ValueError("--standardize needs --head-epochs (the statistics come from the cached features)")
        if self.negatives == "reference" and self.min_yaw > 0 and self.task != "avsa":
            raise ValueError("--min-yaw applies to AVSA-Bin reference negatives only")
        if self.negatives == "matched" and self.min_yaw > 0:
            raise ValueError("--min-yaw applies to --negatives reference (matched negatives draw other viewpoints)")

    @property
    def base_lr(self) -> float:
        return TASK_DEFAULTS[self.task]["lr"] if self.lr is None else self.lr

    @property
    def lr_milestones(self) -> tuple[int, ...]:
        return tuple(TASK_DEFAULTS[self.task]["milestones"] if self.milestones is None else self.milestones)


#: What a head sees: both modalities (the evaluated model), or one of them (the single-modality controls).
HEAD_INPUTS = ("audio-visual", "audio", "video")


class BinaryClassifier(nn.Module):
    """``[video_feat ‖ audio_feat]`` → (z-score) → dropout → Linear(→ hidden) → ReLU → Linear(→ 2) (reference
    AVCWrapper; the z-score, off unless :meth:`set_standardization` is called, is not in the reference).

    ``inputs="audio"`` or ``"video"`` makes the same head on one modality's features alone (a control: the
    other modality is removed, not zeroed)."""

    def __init__(self, video_dim: int, audio_dim: int, hidden: int = 512, dropout: float = 0.5,
                 inputs: str = "audio-visual"):
        super().__init__()
        if inputs not in HEAD_INPUTS:
            raise ValueError(f"inputs must be one of {HEAD_INPUTS}, got {inputs!r}")
        self.inputs = inputs
        dim = (video_dim if inputs != "audio" else 0) + (audio_dim if inputs != "video" else 0)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))
        self.register_buffer("mean", None)
        self.register_buffer("std", None)

    def select(self, video_feat: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        """The features this head reads: ``[video ‖ audio]``, or one modality's alone."""
        if self.inputs == "audio":
            return audio_feat
        if self.inputs == "video":
            return video_feat
        return torch.cat((video_feat, audio_feat), -1)

    def set_standardization(self, video_feat: torch.Tensor, audio_feat: torch.Tensor) -> None:
        """Fit the z-score of each dimension of the features the head reads (training items)."""
        x = self.select(video_feat, audio_feat)
        flat = x.reshape(-1, x.shape[-1])
        self.mean = flat.mean(0)
        self.std = flat.std(0).clamp_min(1e-6)

    def forward(self, video_feat: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        """``[..., Dv]``, ``[..., Da]`` → logits ``[..., 2]`` (index 1 = misaligned)."""
        x = self.select(video_feat, audio_feat)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.mlp(self.dropout(x))


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


def add_outputs(out: dict[str, list], logits: torch.Tensor, label: torch.Tensor, columns: dict) -> None:
    """Append the per-item outputs of ``logits [B, V, 2]`` to ``out``: the score ``logit₁ − logit₀`` of the
    crops' mean logits (misaligned), the prediction, the fraction of correct crops, and the item columns."""
    mean = logits.mean(1)
    for k in (*ITEM_COLUMNS, "draw"):
        out[k] += list(columns[k])
    out["label"] += label.tolist()
    out["score"] += (mean[:, 1] - mean[:, 0]).tolist()
    out["pred"] += mean.argmax(-1).tolist()
    out["crop_correct"] += (logits.argmax(-1) == label[:, None]).float().mean(1).tolist()


def unique_items(columns: dict[str, list]) -> list[int]:
    """Indices of the first occurrence of each distinct item — the same sample (``key``), ``moment``, crop
    ``views`` and ``negative`` (how its audio was made) — in the order given. A later evaluation draw that
    repeats an item shows the classifier the very same input: it adds no evidence and is not counted."""
    seen: set[tuple] = set()
    keep = []
    for i, ident in enumerate(zip(*(columns[k] for k in ("key", "moment", "views", "negative")))):
        if ident not in seen:
            seen.add(ident)
            keep.append(i)
    return keep


def summarise(pred: dict[str, list], task: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Item accuracy (percent) with its video-clustered 95 % CI (``ci95_videos``, :func:`cluster_t_interval`),
    the Wilson and video-bootstrap CIs, crop accuracy, per-label accuracy, ROC AUC of the misalignment score, the
    unique items and videos, and for AVSA the negatives' accuracy by their angular offset (the angle between a
    crop's viewpoint and the direction its audio was rendered for)."""
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
        offset = np.asarray(pred["offset"], dtype=np.float64)
        bins = []
        for lo, hi in zip(OFFSET_BINS[:-1], OFFSET_BINS[1:]):
            sel = (label == 1) & (offset >= lo) & ((offset < hi) if hi < 180 else (offset <= hi))
            bins.append({"offset_min": lo, "offset_max": hi, "n": int(sel.sum()), "accuracy": _pct_of(correct[sel])})
        summary["misaligned_by_offset"] = bins
    return summary


def _pct_of(x: np.ndarray) -> float | None:
    return round(100.0 * float(np.mean(x)), 4) if x.size else None


@dataclass
class FrozenFeatures:
    """Frozen features of items: ``fv``, ``fa`` ``[N, V, D]`` as :func:`crop_features` gives them, ``label
    [N]``, and per-item ``columns`` (:data:`ITEM_COLUMNS` and ``draw``: the pass that drew the item's views and
    negative)."""

    fv: torch.Tensor
    fa: torch.Tensor
    label: torch.Tensor
    columns: dict[str, list]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: torch.Tensor | list[int]) -> FrozenFeatures:
        """The items at ``index`` (integer indices), features and columns alike."""
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        at = torch.as_tensor(idx, dtype=torch.long, device=self.label.device)
        cols = {k: [v[i] for i in idx] for k, v in self.columns.items()}
        return FrozenFeatures(self.fv[at], self.fa[at], self.label[at], cols)


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
    columns: dict[str, list] = {k: [] for k in (*ITEM_COLUMNS, "draw")}
    for draw, loader in passes:
        for batch in progress(loader, show_progress, f"{desc} {draw + 1}"):
            video, audio, label = _to(batch, device)
            fv, fa = crop_features(backbone, video, audio, cfg.features)
            fvs.append(fv)
            fas.append(fa)
            labels.append(label)
            for k in ITEM_COLUMNS:  # a column the items lack is missing for each: "" or nan (column_value)
                columns[k] += [column_value(k, v) for v in batch.get(k, [None] * len(label))]
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


def pass_batches(feats: FrozenFeatures, batch_size: int, draw: int) -> Iterator[dict]:
    """The items of encoded pass ``draw`` in the order they were drawn, in batches of ``batch_size``: one epoch
    of the reference schedule, which trains epoch ``e`` on the items of pass ``e``."""
    idx = torch.tensor([i for i, d in enumerate(feats.columns["draw"]) if d == draw], dtype=torch.long,
                       device=feats.label.device)
    for i in range(0, len(idx), batch_size):
        j = idx[i : i + batch_size]
        yield {"fv": feats.fv[j], "fa": feats.fa[j], "label": feats.label[j]}


def fit_feature_head(
    backbone: Backbone,
    cfg: BinaryEvalConfig,
    device: torch.device,
    feats: FrozenFeatures,
    inputs: str = "audio-visual",
    show_progress: bool = True,
    training: TrainingState | None = None,
) -> tuple[BinaryClassifier, list[dict]]:
    """Train a fresh :class:`BinaryClassifier` reading ``inputs`` on the encoded training items ``feats``:
    ``cfg.epochs`` epochs, epoch ``e`` on pass ``e`` (the reference schedule), or with ``cfg.head_epochs`` that
    many shuffled passes over all of them (standardised with their own statistics when ``cfg.standardize``).
    The head is initialised from ``cfg.protocol.seed``, so the model and its controls start alike. Returns the head and
    its per-epoch history (lr, mean crop loss, item and crop accuracy in percent). ``training``: the run's
    checkpoints (:class:`avsa_train.runs.TrainingState`), from which an interrupted fit continues."""
    torch.manual_seed(cfg.protocol.seed)
    head = BinaryClassifier(backbone.dim, int(backbone.audio.out_dim), cfg.hidden, cfg.dropout, inputs).to(device)
    if cfg.standardize:
        head.set_standardization(feats.fv, feats.fa)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    if cfg.head_epochs is None:
        epochs = cfg.epochs

        def batches(epoch, state):
            return pass_batches(feats, cfg.batch_size, epoch)
    else:
        epochs = int(cfg.head_epochs)

        def batches(epoch, state):
            return feature_batches(feats, cfg.batch_size, cfg.protocol.seed, epoch)
    total = -(-len(feats) // cfg.batch_size) if cfg.head_epochs else None
    label = f"{cfg.task}-bin {inputs} head"
    scheduler = multistep(optimizer, cfg.lr_milestones, cfg.gamma)
    with single_cpu_thread(device):
        state = fit(
            head,
            optimizer,
            lambda batch, epoch: crop_loss(head(batch["fv"], batch["fa"]), batch["label"]),
            batches,
            range(epochs),
            summarise=epoch_summary,
            scheduler=scheduler,
            bar=lambda it, e: progress(it, show_progress, f"{label} epoch {e + 1}/{epochs}", total),
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
    """Per-item outputs of ``head`` on encoded items: the columns of ``feats`` (with ``draw``), ``label``,
    ``score`` (``logit₁ − logit₀`` of the crops' mean logits), ``pred`` and ``crop_correct``."""
    head.eval()
    out: dict[str, list] = {k: [] for k in (*ITEM_COLUMNS, "draw", "label", "score", "pred", "crop_correct")}
    for i in range(0, len(feats), batch_size):
        batch = feats.take(list(range(i, min(i + batch_size, len(feats)))))
        add_outputs(out, head(batch.fv, batch.fa), batch.label, batch.columns)
    return out


def run_binary_eval(
    backbone: Backbone, shards: str, cfg: BinaryEvalConfig, device: torch.device, show_progress: bool = True,
    training: TrainingState | None = None,
) -> TaskResult:
    """Fit the binary classifier on the protocol's ``train_split`` and evaluate it on its ``eval_split`` of
    ``shards``; with ``cfg.controls`` also the audio-only and video-only heads on the same items
    (:func:`controls_summary`).
    ``training``: the run's checkpoints of the classifier's fit (the frozen encoders' features are recomputed on
    a rerun, the same ones; the controls' fits take seconds and are redone)."""
    if cfg.features == "transformer" and backbone.translator is None:
        raise ValueError("--features transformer needs a checkpoint with a translator; use --features direct")
    notes = []
    if cfg.negatives == "reference" and viewpoint_sampler(shards) == "energy":
        notes.append(f"--negatives reference on shards made with --sampler energy: the views follow the sound, so "
                     f"the audio alone tells many {cfg.task.upper()}-Bin negatives apart; read the audio-only "
                     f"control, or use --negatives matched")
    train_urls = shard_urls(shards, cfg.protocol.train_split)
    eval_urls = shard_urls(shards, cfg.protocol.eval_split)
    train_donors = misalign.DonorBank(train_urls) if cfg.task == "avc" else None
    eval_donors = misalign.DonorBank(eval_urls) if cfg.task == "avc" else None
    fmt = backbone.audio_format

    def loader(urls, phase, epoch, donors) -> DataLoader:
        stream = binary_stream(urls, cfg, fmt, phase, epoch, donors)
        return make_loader(stream, cfg.protocol.workers, pin_memory=device.type == "cuda", seed=None)

    passes = ((e, loader(train_urls, "train", e, train_donors)) for e in range(cfg.epochs))
    train_feats = encode_items(backbone, passes, cfg, device, show_progress, f"{cfg.task}-bin encode train pass")
    draws = ((d, loader(eval_urls, "test", d, eval_donors)) for d in range(cfg.test_draws))
    every = encode_items(backbone, draws, cfg, device, show_progress, f"{cfg.task}-bin eval")
    eval_feats = every.take(unique_items(every.columns))
    head, history = fit_feature_head(backbone, cfg, device, train_feats, "audio-visual", show_progress, training)
    merged = predict_features(head, eval_feats)
    metrics = summarise(merged, cfg.task, seed=cfg.protocol.seed)
    metrics["n_drawn"] = len(every)
    metrics["n_repeats_dropped"] = len(every) - len(eval_feats)
    items = item_columns(merged)
    if cfg.controls:
        controls = {}
        for inputs in ("audio", "video"):
            control, _ = fit_feature_head(backbone, cfg, device, train_feats, inputs, show_progress)
            pred = predict_features(control, eval_feats)
            controls[inputs] = pred
            items[f"correct_{inputs}_only"] = item_columns(pred)["correct"]
        metrics.update(controls_summary(merged, controls, cfg.task, cfg.protocol.seed))
    if notes:
        metrics["notes"] = notes
    conf = flat_dict(cfg)
    conf.update(lr=cfg.base_lr, milestones=list(cfg.lr_milestones))
    return TaskResult("avsa.eval.binary", f"{cfg.task}-bin", metrics, history, conf, backbone.describe(), items=items)


def controls_summary(model: dict[str, list], controls: dict[str, dict[str, list]], task: str, seed: int = 0) -> dict:
    """``controls``: each single-modality head's accuracy (with its video-clustered CI), ROC AUC and per-label
    accuracy; ``best_control``: the more accurate one on these items (a choice that favours the control); and
    ``gap_over_best_control``: the model's paired accuracy gap over it on the same items
    (:func:`avsa_train.tasks.metrics.paired_gap`, its ``gap_ci95_videos`` clustered by video)."""
    rows = {}
    for name, pred in controls.items():
        m = summarise(pred, task, seed=seed)
        rows[name] = {k: m.get(k) for k in ("accuracy", "ci95_videos", "roc_auc", "accuracy_aligned",
                                            "accuracy_misaligned", "n", "n_videos")}
    best = max(rows, key=lambda k: (rows[k]["accuracy"], k))
    correct = [int(p == y) for p, y in zip(model["pred"], model["label"])]
    control = [int(p == y) for p, y in zip(controls[best]["pred"], controls[best]["label"])]
    return {"controls": rows, "best_control": best,
            "gap_over_best_control": paired_gap(correct, control, model["video_id"], seed=seed)}


def item_columns(pred: dict[str, list]) -> dict[str, list]:
    """The per-item columns of ``eval_{task}_items.jsonl``: ``key``, ``moment``, ``draw``, ``video_id``,
    ``views``, ``negative`` (how the audio was made), ``label``, ``yaw``, ``offset`` (degrees; ``null`` for AVC),
    ``score`` (``logit₁ − logit₀`` averaged over the crops), ``pred``, ``correct``, ``crop_correct`` (fraction)."""
    cols = ("key", "moment", "draw", "video_id", "views", "negative", "label", "yaw", "offset", "score", "pred",
            "crop_correct")
    out = {c: list(pred[c]) for c in cols}
    out["offset"] = [None if not np.isfinite(x) else x for x in out["offset"]]
    out["correct"] = [int(p == lab) for p, lab in zip(pred["pred"], pred["label"])]
    return out
