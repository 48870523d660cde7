"""Direction probe: where the sounding sources are relative to a view, read from the frozen audio feature of
that view, against the exact directions stored in the shards (``meta.events``).

This is the direct test of whether pre-training learned *spatial* audio features: the labels depend only on
where the sources are relative to the viewpoint, so a representation that ignores direction cannot beat the
labels' base rates, whatever else it encodes.

* **Item**: one view of one moment of a sample, ``(key, moment, view)``: every stored view of every moment of
  every sample of a split, unaugmented (no flip, no volume or colour jitter), so the items are fixed and two
  checkpoints see the same ones. Only samples whose ``meta.events.status`` is ``labelled`` count (STARSS23 /
  DCASE layouts, ``avsa-data synth --layout starss23``); a sample whose CSV is missing (``no labels``) is
  skipped, not read as silence.
* **Input**: the feature ``f_a`` of the view's audio render in the checkpoint's audio format, made exactly as
  the binary evaluation makes it (:func:`avsa_train.data.items.view_audio` of the unaugmented view, the checkpoint's
  spectrogram, the frozen audio encoder), encoded once and cached.
* **Target**: ``S`` azimuth sectors of ``360/S`` degrees around the view (default 8 of 45°); sector ``k`` is
  centred on azimuth ``k · 360/S`` relative to the view, counted towards positive azimuth, i.e. to the **left**
  (docs/CONVENTIONS.md): 0 = front, 1 = front-left, ``S/2`` = behind, ``S − 1`` = front-right. Multi-label:
  sector ``k`` is 1 when at least one event active at the moment lies in it (:func:`sector_of`). Elevation is
  not used. A moment with no active event is an item with every sector 0.
* **Head**: on z-scored features (training-split statistics), a linear layer (or a one-hidden-layer MLP) to
  ``S`` logits, trained with per-sector binary cross-entropy on the ``train`` split, many epochs over the
  cached features (the encoders never run again), its output biases starting at the training base rates.
* **Decision**: sector ``k`` is predicted occupied when the probe's probability exceeds the sector's training
  base rate ``π_k`` (the threshold that balanced accuracy rewards): a probe that has learned nothing predicts
  the same for every item and scores exactly 50 %.
* **Per-item score** (for paired comparisons): the item's *balanced sector accuracy*
  ``(1/S') Σ_k c_ik · w_k(y_ik)``, with ``c`` = 1 for a correct sector and ``w_k(1) = 1/(2 p_k)``,
  ``w_k(0) = 1/(2 (1 − p_k))`` from the evaluated items' own sector frequencies ``p_k`` (the ``S'`` sectors
  with both classes present). Its mean over the items is exactly the macro-averaged balanced accuracy of the
  sectors, so the sparse positives count as much as the many empty sectors and chance is 50 % at any base rate.
  The plain fraction of correct sectors (``hamming``) is reported beside it with its own baseline (the
  majority label of each sector).
* **Intervals**: :func:`avsa_train.tasks.metrics.cluster_t_interval` over videos (the items of a video, its
  moments and views, are one observation), for the mean score and for paired gaps (:func:`paired_score_gap`).
* **Baseline**: the prior predictor (each sector's training base rate for every item) scored by the same code
  on the same items: balanced accuracy 50 %, ROC AUC 0.5, and its Hamming accuracy and log loss.

Compare two runs on the same items (``avsa-train probe`` writes ``OUT/probe_items.jsonl``)::

    python -m avsa_train.tasks.direction_probe compare A/probe_items.jsonl B/probe_items.jsonl --out gap.json
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avsa_data.options import check_choices, option
from avsa_data.reader import RawSample
from avsa_data.rng import rng_for
from avsa_train.data.batches import epoch_stream, make_loader
from avsa_train.data.items import view_audio
from avsa_train.data.sources import peek_meta, shard_urls
from avsa_train.data.stream_config import AUDIO_FORMATS
from avsa_train.fit import StepOutput, fit
from avsa_train.tasks.binary_eval import single_cpu_thread
from avsa_train.tasks.common import Backbone, TaskResult, multistep, progress
from avsa_train.tasks.compare import read_items, report_gap
from avsa_train.tasks.metrics import cluster_t_interval, roc_auc

PROBE_HEADS = ("linear", "mlp")
#: Split names tried, in order, when ``eval_split`` is not given (STARSS23 / DCASE layouts have dev-test only).
EVAL_SPLITS = ("val", "test")
#: A base rate is kept inside ``[ε, 1 − ε]`` where it becomes a logit (a sector never occupied in training).
PRIOR_EPS = 1e-4
CI_METHOD = "cluster-robust SE of the item mean, Student t with (videos - 1) df"

#: A frozen feature of view audio: ``[B, C, n]`` waveforms → ``[B, D]``.
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DirectionProbeConfig:
    """Hyper-parameters of the direction probe (module docstring)."""

    sectors: int = option(8, min=2, help="Azimuth sectors of equal width around the view; sector 0 is centred on "
                          "the front, the next ones counted to the left (positive azimuth).")
    head: str = option("linear", choices=PROBE_HEADS, help="Probe on the frozen audio features: a linear layer, or "
                       "an MLP with one hidden layer (--hidden units).")
    hidden: int = option(256, min=1, help="Hidden units of --head mlp.")
    epochs: int = option(100, min=1, unit="EPOCHS", help="Passes of the head over the cached training features.")
    batch_size: int = option(64, min=1, help="Items (views) per step of the head.")
    lr: float = option(1e-2, help="Adam learning rate of the head.")
    milestones: tuple[int, ...] = option((70,), unit="EPOCHS",
                                         help="Epochs where lr ×= --gamma (comma-separated; 'none': no decay).")
    gamma: float = option(0.1, help="Learning-rate decay factor.")
    weight_decay: float = option(1e-2, help="Adam weight decay (L2 penalty) of the head.")
    standardize: bool = option(True, help="Z-score every feature dimension with the training items' mean and "
                               "standard deviation before the head.")
    encode_batch: int = option(16, min=1, cli=False, help="Samples (of K views × M moments) per encoder batch.")
    seed: int = option(0, help="Seed of the head's initialisation and batch order.")
    workers: int = option(0, min=0, cli=False,  # the commands default to 4 (cli/_train_common.py)
                          help="DataLoader worker processes (0 = in-process).")
    train_split: str = option("train", help="Split the probe is fitted on.")
    eval_split: str | None = option(None, help="Held-out split it is evaluated on.",
                                    default_doc="val, or test where the shards have no val split (STARSS23 / "
                                    "DCASE layouts: dev-test)")

    def __post_init__(self) -> None:
        check_choices(self)  # --head
        if self.sectors < 2 or self.epochs < 1 or self.batch_size < 1 or self.encode_batch < 1 or self.hidden < 1:
            raise ValueError("--sectors must be >= 2, and --epochs, --batch-size and --hidden >= 1")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")


# ------------------------------------------------------------------------------------------------ labels


def sector_of(azimuth: float | np.ndarray, sectors: int = 8) -> np.ndarray:
    """Sector index of azimuth(s) relative to a view (degrees, positive = left).

    Sector ``k`` covers ``[k·w − w/2, k·w + w/2)`` degrees with ``w = 360 / sectors``: sector 0 is centred on
    the view's centre (front), 1 on ``+w`` (front-left), ``sectors/2`` behind, ``sectors − 1`` on ``−w``
    (front-right). Returns int64 of the input's shape.
    """
    w = 360.0 / sectors
    k = np.floor(np.mod(np.asarray(azimuth, dtype=np.float64) + w / 2, 360.0) / w).astype(np.int64)
    return k % sectors  # an azimuth a rounding error below 360 − w/2 lands on `sectors`


def sector_centres(sectors: int) -> list[float]:
    """Azimuth (degrees, relative to the view, positive left, in (−180, 180]) of each sector's centre."""
    w = 360.0 / sectors
    return [float(k * w if k * w <= 180.0 else k * w - 360.0) for k in range(sectors)]


def sector_targets(view_events: Sequence[dict], sectors: int) -> np.ndarray:
    """``[sectors]`` float32 multi-label target of one view: 1 where at least one of the view's events (dicts
    with a view-relative ``azimuth`` in degrees, as :meth:`avsa_data.reader.RawSample.events` gives them for a
    view) lies in the sector (:func:`sector_of`), else 0."""
    out = np.zeros(sectors, np.float32)
    if view_events:
        out[sector_of([float(e["azimuth"]) for e in view_events], sectors)] = 1.0
    return out


def labelled(sample: RawSample) -> bool:
    """Whether the sample has sound-event labels (``meta.events.status`` is ``labelled``, docs/FORMAT.md)."""
    return (sample.meta.get("events") or {}).get("status") == "labelled"


# ------------------------------------------------------------------------------------------------- items


class ProbeRows:
    """The probe's item policy (:class:`avsa_train.data.batches.ItemPolicy`): one group of rows per sample, a row
    per (moment, view): ``audio [M·K, C, n]`` float32 (the unaugmented render of each view in ``audio_format``,
    :func:`avsa_train.data.items.view_audio`), ``target [M·K, S]`` (:func:`sector_targets`), and per row ``key``,
    ``video_id``, ``moment``, ``view`` (bank index), ``n_events``. A sample without event labels gives no rows
    and is named in ``unlabelled``. Batches join the groups end to end (``rows``)."""

    prune = False
    columns = ("key", "video_id", "moment", "view", "n_events", "unlabelled")
    rows = True

    def __init__(self, audio_format: str, sectors: int):
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {tuple(AUDIO_FORMATS)}, got {audio_format!r}")
        self.audio_format, self.sectors = audio_format, sectors

    def items(self, sample: RawSample, epoch: int) -> Iterator[dict]:
        meta, has_labels = sample.meta, labelled(sample)
        audio, target = [], []
        rows: dict[str, list] = {"moment": [], "view": [], "n_events": []}
        if has_labels:
            views = list(range(len(meta["viewpoints"])))
            for m in range(int(meta["moments_per_sample"])):
                audio.append(view_audio(sample, views, m, self.audio_format))
                for k in views:
                    evs = sample.events(k, m)  # directions relative to view k
                    target.append(sector_targets(evs, self.sectors))
                    rows["moment"].append(m)
                    rows["view"].append(k)
                    rows["n_events"].append(len(evs))
        n, channels = len(rows["moment"]), AUDIO_FORMATS[self.audio_format][1]
        no_audio = np.zeros((0, channels, int(meta["audio_samples"])), np.float32)
        yield {
            "audio": no_audio if not audio else audio[0] if len(audio) == 1 else np.concatenate(audio),  # one copy
            "target": np.stack(target) if target else np.zeros((0, self.sectors), np.float32),
            "key": [sample.key] * n,
            "video_id": [meta["video_id"]] * n,
            **rows,
            "unlabelled": [] if has_labels else [sample.key],
        }


@dataclass
class CachedItems:
    """Frozen features of the items of one split: ``features [N, D]`` float32, ``target [N, S]`` float32, the
    per-item ``columns`` (``key``, ``moment``, ``view``, ``video_id``, ``n_events``) sorted by
    ``(key, moment, view)``, and ``unlabelled``: the keys of the samples skipped for having no event labels."""

    features: torch.Tensor
    target: torch.Tensor
    columns: dict[str, list]
    unlabelled: list[str]

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def take(self, index: Sequence[int]) -> CachedItems:
        """The items at ``index`` (positions), features, targets and columns alike."""
        idx = list(index)
        where = torch.tensor(idx, dtype=torch.long, device=self.target.device)
        return CachedItems(self.features[where], self.target[where],
                           {k: [v[i] for i in idx] for k, v in self.columns.items()}, self.unlabelled)

    def describe(self) -> dict:
        """Counts: items, samples, videos, items with at least one event, events per item, skipped samples."""
        n_events = np.asarray(self.columns["n_events"])
        return {
            "items": len(self),
            "samples": len(set(self.columns["key"])),
            "videos": len(set(self.columns["video_id"])),
            "items_with_events": int((n_events > 0).sum()),
            "mean_events_per_item": round(float(n_events.mean()), 4) if n_events.size else None,
            "unlabelled_samples_skipped": len(self.unlabelled),
        }


def backbone_features(backbone: Backbone) -> FeatureFn:
    """The frozen audio feature ``f_a`` of :func:`avsa_train.tasks.binary_eval.crop_features`: the checkpoint's
    spectrogram and audio encoder (eval mode), ``[B, C, n] → [B, D]``."""
    backbone.freeze()

    def features(audio: torch.Tensor) -> torch.Tensor:
        return backbone.audio(backbone.spectrogram(audio))

    return features


def doa_histogram(audio: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """A hand-made feature that carries the direction, for reference (not learned): per STFT bin of a view's
    ambiX FOA ``[B, 4, n]`` (512-point Hann window, hop 240), the azimuth of the active intensity
    ``Re(W* · (X, Y))``; the histogram of these azimuths over ``bins`` equal bins of [−180°, 180°), weighted by the
    bin's W energy and normalised to sum 1 → ``[B, bins]``. What the probe reaches on it shows how much of the
    labels the view's FOA direction can give."""
    if audio.ndim != 3 or audio.shape[1] != 4:
        raise ValueError(f"doa_histogram needs ambiX FOA [B, 4, n] (--audio-format ambi), got {list(audio.shape)}")
    b, c, n = audio.shape
    window = torch.hann_window(512, device=audio.device)
    spec = torch.stft(audio.reshape(b * c, n), 512, 240, window=window, return_complex=True)
    spec = spec.reshape(b, c, *spec.shape[-2:])
    w, y, x = spec[:, 0], spec[:, 1], spec[:, 3]  # ACN: W, Y, Z, X
    az = torch.atan2((w.conj() * y).real, (w.conj() * x).real)  # radians, positive left
    idx = ((az + math.pi) / (2 * math.pi) * bins).long().clamp(0, bins - 1).flatten(1)
    hist = torch.zeros(b, bins, device=audio.device).scatter_add_(1, idx, (w.abs() ** 2).flatten(1))
    return hist / hist.sum(1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def encode_split(
    urls: list[str],
    feature_fn: FeatureFn,
    audio_format: str,
    cfg: DirectionProbeConfig,
    device: torch.device,
    show_progress: bool = False,
    desc: str = "probe encode",
) -> CachedItems:
    """Encode every item of ``urls`` once with ``feature_fn`` (on ``device``; features kept there)."""
    stream = epoch_stream(urls, ProbeRows(audio_format, cfg.sectors), epoch=0, seed=cfg.seed, shuffle=False,
                          buffer=16, batch_size=cfg.encode_batch)  # every sample once, in shard order
    loader = make_loader(stream, cfg.workers, pin_memory=device.type == "cuda", seed=None)
    feats, targets, unlabelled = [], [], []
    columns: dict[str, list] = {k: [] for k in ("key", "moment", "view", "video_id", "n_events")}
    for batch in progress(loader, show_progress, desc):
        unlabelled += batch["unlabelled"]
        if not len(batch["target"]):
            continue
        feats.append(feature_fn(batch["audio"].to(device)).float().reshape(len(batch["target"]), -1))
        targets.append(batch["target"].to(device))
        for k in columns:
            columns[k] += batch[k]
    if not targets:
        what = f"{len(unlabelled)} sample(s), none" if unlabelled else "no samples"
        raise ValueError(f"{desc}: {what} with sound-event labels (meta.events status 'labelled'); the probe needs "
                         f"shards of a STARSS23 / DCASE layout or of `avsa-data synth --layout starss23`")
    order = sorted(range(len(columns["key"])), key=lambda i: (columns["key"][i], columns["moment"][i],
                                                               columns["view"][i]))
    index = torch.tensor(order, device=device)
    return CachedItems(torch.cat(feats)[index], torch.cat(targets)[index],
                       {k: [v[i] for i in order] for k, v in columns.items()}, sorted(unlabelled))


# -------------------------------------------------------------------------------------------------- head


class SectorHead(nn.Module):
    """Features ``[N, D]`` → (z-score) → Linear(→ S), or Linear(→ hidden) → ReLU → Linear(→ S): sector logits."""

    def __init__(self, dim: int, sectors: int, head: str = "linear", hidden: int = 256):
        super().__init__()
        if head not in PROBE_HEADS:
            raise ValueError(f"head must be one of {PROBE_HEADS}, got {head!r}")
        last = nn.Linear(dim if head == "linear" else hidden, sectors)
        self.net = last if head == "linear" else nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), last)
        self.last = last
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def start(self, features: torch.Tensor, prior: torch.Tensor, standardize: bool) -> None:
        """Fit the z-score to the training ``features`` (when ``standardize``) and set the output biases to the
        logits of the sectors' training base rates ``prior [S]``."""
        if standardize:
            self.mean = features.mean(0)
            self.std = features.std(0).nan_to_num(1.0).clamp_min(1e-6)
        with torch.no_grad():
            self.last.bias.copy_(torch.logit(prior))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def base_rates(target: torch.Tensor) -> torch.Tensor:
    """``[S]`` fraction of items with each sector occupied, kept in ``[ε, 1 − ε]`` (:data:`PRIOR_EPS`)."""
    return target.float().mean(0).clamp(PRIOR_EPS, 1.0 - PRIOR_EPS)


def fit_probe(train: CachedItems, cfg: DirectionProbeConfig, device: torch.device,
              show_progress: bool = False) -> tuple[SectorHead, torch.Tensor, list[dict]]:
    """Train a fresh :class:`SectorHead` on cached training items: per-sector binary cross-entropy, Adam,
    ``cfg.epochs`` shuffled passes (order from ``(seed, epoch)``), lr × ``gamma`` at the milestones. Returns the
    head, the training base rates ``[S]`` and the per-epoch history (lr, mean loss)."""
    prior = base_rates(train.target)
    with torch.random.fork_rng(devices=[]):  # the head's initialisation from the seed, global state untouched
        torch.manual_seed(cfg.seed)
        head = SectorHead(train.features.shape[1], cfg.sectors, cfg.head, cfg.hidden).to(device)
    head.start(train.features, prior, cfg.standardize)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def batches(epoch: int, _state) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.from_numpy(rng_for(cfg.seed, "probe-head", epoch).permutation(len(train))).to(device)
        for i in range(0, len(train), cfg.batch_size):
            j = order[i : i + cfg.batch_size]
            yield train.features[j], train.target[j]

    def step(batch: tuple[torch.Tensor, torch.Tensor], _epoch: int) -> StepOutput:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(head(x), y)
        return StepOutput(loss, {"loss": float(loss.detach()) * len(y), "items": len(y)})

    with single_cpu_thread(device):
        state = fit(head, optimizer, step, batches,
                    progress(range(cfg.epochs), show_progress, "probe head", cfg.epochs, unit="epoch"),
                    summarise=lambda s: {"train_loss": s.get("loss", 0.0) / max(s.get("items", 0.0), 1.0)},
                    scheduler=multistep(optimizer, cfg.milestones, cfg.gamma))
    head.eval()
    return head, prior, state.history


@torch.no_grad()
def predict(head: SectorHead, items: CachedItems, batch_size: int = 1024) -> np.ndarray:
    """``[N, S]`` float64 probabilities that each sector is occupied."""
    head.eval()
    out = [torch.sigmoid(head(items.features[i : i + batch_size])) for i in range(0, len(items), batch_size)]
    return torch.cat(out).double().cpu().numpy()


# ------------------------------------------------------------------------------------------------ scores


def item_scores(prob: np.ndarray, target: np.ndarray, prior: np.ndarray) -> dict[str, np.ndarray]:
    """Per-item scores of probabilities ``prob [N, S]`` against ``target [N, S]`` (0/1), a sector predicted
    occupied where ``prob > prior`` (the training base rates ``[S]``).

    Returns ``pred [N, S]``; ``balanced [N]``, the balanced sector accuracy of ``pred`` (module docstring; its
    mean is the macro balanced accuracy over the ``defined [S]`` sectors, those with both classes among these
    items; ``nan`` when no sector is defined); ``hamming [N]``, the fraction of sectors right when a sector is
    predicted occupied where ``prob > 0.5`` (the threshold of plain accuracy, at which the prior predictor is
    the majority label); ``log_loss [N]``, the mean binary cross-entropy over the sectors (nats).
    """
    y = np.asarray(target, dtype=bool)
    p = np.asarray(prob, dtype=np.float64)
    pred = p > np.asarray(prior, dtype=np.float64)[None]
    freq = y.mean(0)
    defined = (freq > 0) & (freq < 1)
    safe = np.where(defined, freq, 0.5)
    weight = np.where(y, 0.5 / safe, 0.5 / (1.0 - safe)) * defined
    balanced = (weight * (pred == y)).sum(1) / defined.sum() if defined.any() else np.full(len(y), np.nan)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    log_loss = -(y * np.log(q) + ~y * np.log(1 - q)).mean(1)
    return {"pred": pred, "hamming": ((p > 0.5) == y).mean(1), "balanced": balanced, "log_loss": log_loss,
            "defined": defined}


def _pct(x: float) -> float | None:
    return round(100.0 * float(x), 4) + 0.0 if math.isfinite(float(x)) else None  # + 0.0: no "-0.0"


def mean_ci(values: np.ndarray, clusters: Sequence[str]) -> dict:
    """``{"mean", "ci95_videos"}`` in percent of per-item ``values`` in [0, 1] (:func:`cluster_t_interval`, the
    bounds clipped to [0, 100])."""
    mean, lo, hi = cluster_t_interval(values, clusters)
    return {"mean": _pct(mean), "ci95_videos": [_pct(max(lo, 0.0)), _pct(min(hi, 1.0))]}


def paired_score_gap(score_a: Sequence[float], score_b: Sequence[float], clusters: Sequence[str]) -> dict:
    """Gap ``A − B`` of the mean of a per-item score (in [0, 1]; percent out) of two predictors on the
    **same** items, with the 95 % CI of :func:`cluster_t_interval` on the per-item differences (each video one
    observation, Student t on ``G − 1`` degrees of freedom)."""
    a = np.asarray(score_a, dtype=np.float64).reshape(-1)
    b = np.asarray(score_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size != len(clusters) or a.size == 0:
        raise ValueError(f"need the same non-zero number of scores and clusters, got {a.size}, {b.size}, "
                         f"{len(clusters)}")
    gap, lo, hi = cluster_t_interval(a - b, clusters)
    bounds = [_pct(max(lo, -1.0)), _pct(min(hi, 1.0))]  # scores in [0, 1]: a gap lies in [-100, 100] percent
    return {"a": _pct(a.mean()), "b": _pct(b.mean()), "gap": _pct(gap), "gap_ci95_videos": bounds,
            "ci_method": CI_METHOD, "n": int(a.size), "n_videos": len(set(clusters))}


def summarise(prob: np.ndarray, target: np.ndarray, prior: np.ndarray,
              videos: Sequence[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """The probe's metrics on the evaluated items, beside those of the prior predictor (the training base rates
    for every item) on the same items, and the model's paired gains over it (accuracies in percent); and the
    model's :func:`item_scores`."""
    y = np.asarray(target, dtype=bool)
    prior = np.asarray(prior, dtype=np.float64)
    scores = item_scores(prob, y, prior)
    base_prob = np.broadcast_to(prior, y.shape)
    base = item_scores(base_prob, y, prior)
    if not scores["defined"].any():
        raise ValueError("no sector has both occupied and empty items in the evaluation split: nothing to score")

    def block(s: dict, p: np.ndarray) -> dict:
        aucs = [roc_auc(p[:, k], y[:, k]) for k in range(y.shape[1])]
        defined = [a for a in aucs if a is not None]
        return {
            "balanced_accuracy": mean_ci(s["balanced"], videos),
            "hamming_accuracy": mean_ci(s["hamming"], videos),
            "macro_auc": round(float(np.mean(defined)), 6) if defined else None,
            "log_loss": round(float(s["log_loss"].mean()), 6),
            "aucs": aucs,
        }

    model, baseline = block(scores, prob), block(base, base_prob)
    correct = scores["pred"] == y  # at the balanced threshold
    per_sector = []
    for k, centre in enumerate(sector_centres(y.shape[1])):
        pos, neg = y[:, k], ~y[:, k]
        per_sector.append({
            "sector": k,
            "centre_azimuth": centre,
            "items_occupied": int(pos.sum()),
            "train_base_rate": round(float(prior[k]), 6),
            "balanced_accuracy": _pct(0.5 * (correct[pos, k].mean() + correct[neg, k].mean()))
            if scores["defined"][k] else None,
            "accuracy": _pct(((prob[:, k] > 0.5) == y[:, k]).mean()),
            "roc_auc": None if model["aucs"][k] is None else round(model["aucs"][k], 6),
        })
    for b in (model, baseline):
        del b["aucs"]
    return {
        **model,
        "prior_baseline": baseline,
        "gain_over_prior": {"balanced_accuracy": paired_score_gap(scores["balanced"], base["balanced"], videos),
                            "hamming_accuracy": paired_score_gap(scores["hamming"], base["hamming"], videos)},
        "per_sector": per_sector,
        "sectors_scored": int(scores["defined"].sum()),
        "n": int(len(y)),
        "n_videos": len(set(videos)),
        "ci_method": CI_METHOD,
    }, scores


# ------------------------------------------------------------------------------------------------ runner


def resolve_eval_split(shards: str, cfg: DirectionProbeConfig) -> str:
    """``cfg.eval_split``, or the first of :data:`EVAL_SPLITS` the shards hold."""
    if cfg.eval_split is not None:
        return cfg.eval_split
    for split in EVAL_SPLITS:
        try:
            shard_urls(shards, split)
            return split
        except ValueError:
            continue
    raise ValueError(f"no 'val' or 'test' shards in {shards}: name the held-out split with --eval-split")


def run_probe(shards: str, feature_fn: FeatureFn, audio_format: str, cfg: DirectionProbeConfig,
              device: torch.device, show_progress: bool = False) -> tuple[dict, list[dict], dict[str, list]]:
    """Encode the train and evaluation splits of ``shards`` with ``feature_fn``, fit the probe, score it.

    Returns ``(metrics, history, items)``: ``items`` the per-item columns of ``probe_items.jsonl``.
    """
    eval_split = resolve_eval_split(shards, cfg)
    train_urls, eval_urls = shard_urls(shards, cfg.train_split), shard_urls(shards, eval_split)
    for split, urls in ((cfg.train_split, train_urls), (eval_split, eval_urls)):
        try:
            peek_meta(urls)  # here, not in a DataLoader worker: a clear error for unreadable shards
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--shards {shards}: cannot read the {split} shards ({e.strerror}: "
                                    f"{e.filename})") from None
    held = encode_split(eval_urls, feature_fn, audio_format, cfg, device, show_progress, f"probe encode {eval_split}")
    train = encode_split(train_urls, feature_fn, audio_format, cfg, device, show_progress,
                         f"probe encode {cfg.train_split}")
    head, prior, history = fit_probe(train, cfg, device, show_progress)
    prob = predict(head, held)
    target = held.target.cpu().numpy()
    metrics, scores = summarise(prob, target, prior.cpu().numpy(), held.columns["video_id"])
    metrics["split"] = eval_split
    metrics["data"] = {"train": train.describe(), "eval": held.describe(), "feature_dim": int(train.features.shape[1])}
    items = {
        **{k: list(v) for k, v in held.columns.items()},
        "target": target.astype(int).tolist(),
        "prob": np.round(prob, 6).tolist(),
        "pred": scores["pred"].astype(int).tolist(),
        "score": scores["balanced"].tolist(),
        "hamming": scores["hamming"].tolist(),
    }
    return metrics, history, items


def run_direction_probe(backbone: Backbone, shards: str, cfg: DirectionProbeConfig, device: torch.device,
                        show_progress: bool = True) -> TaskResult:
    """The direction probe on the frozen audio encoder of ``backbone`` (:func:`run_probe`)."""
    metrics, history, items = run_probe(shards, backbone_features(backbone), backbone.audio_format, cfg, device,
                                        show_progress)
    conf = asdict(cfg)
    conf["eval_split"] = metrics["split"]
    return TaskResult("avsa.eval.probe", "direction-probe", metrics, history, conf, backbone.describe(), items=items)


# ---------------------------------------------------------------------------------------------- compare


def paired_items_gap(items_a: list[dict], items_b: list[dict]) -> dict:
    """Gap A − B of two probes' per-item scores (``probe_items.jsonl`` rows) on the same items: the balanced
    sector accuracy (``score``) and the fraction of correct sectors (``hamming``), each with its video-clustered
    95 % CI (:func:`paired_score_gap`). Raises ``ValueError`` when the runs scored different items or targets."""

    def keyed(rows: list[dict]) -> dict:
        return {(r["key"], r["moment"], r["view"]): r for r in rows}

    a, b = keyed(items_a), keyed(items_b)
    if not a or set(a) != set(b):
        raise ValueError("the two runs scored different items: run avsa-train probe on the same shards and splits")
    keys = sorted(a)
    for k in keys:
        if a[k]["target"] != b[k]["target"]:
            raise ValueError(f"item {k} has different targets in the two runs (--sectors?): not a paired comparison")
    videos = [a[k]["video_id"] for k in keys]
    return {field: paired_score_gap([a[k][col] for k in keys], [b[k][col] for k in keys], videos)
            for field, col in (("balanced_accuracy", "score"), ("hamming_accuracy", "hamming"))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m avsa_train.tasks.direction_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="paired gap A − B of two probe_items.jsonl files")
    cmp.add_argument("items_a", type=Path, help="probe_items.jsonl of model A (e.g. AVSA-pretrained)")
    cmp.add_argument("items_b", type=Path, help="probe_items.jsonl of model B (e.g. random init)")
    cmp.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    try:
        gap = paired_items_gap(read_items(args.items_a), read_items(args.items_b))
    except KeyError as e:
        ap.exit(1, f"error: the rows lack the column {e}: pass the probe_items.jsonl files of avsa-train probe\n")
    except (OSError, ValueError) as e:
        ap.exit(1, f"error: {e}\n")
    return report_gap(gap, args.out)


if __name__ == "__main__":
    main()
