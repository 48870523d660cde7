"""Semantic segmentation of 360° viewpoints with an FPN head on the video encoder (AVSA supplement §A.2).

Head (:class:`FPNHead`), on the R(2+1)D maps ``block2..block5`` (56², 28², 14², 7² for 112² crops):

1. **Global temporal pooling**: each level's ``[C, T', H', W']`` map is averaged over time → ``[C, H', W']``
   (one frame is segmented, the clip's centre frame ``T // 2``, from the whole clip).
2. **Lateral connections**: a ``1×1`` convolution to 128 channels per level, summed top-down with the
   ×2 nearest-upsampled coarser level (as in the original FPN), then a ``3×3`` smoothing convolution.
3. **Semantic branch**: each level is brought to 56² by a sequence of ``3×3`` convolutions with dilation 2
   (GroupNorm, ReLU), each followed by a ×2 bilinear upsampling (3 for block5, 2 for block4, 1 for block3, none
   for block2 which gets one convolution); the four maps are summed and a ``1×1`` convolution gives per-pixel
   class logits at 56².
4. Optional conditioning (the reference's ``fpn-ctx`` variants): ``use_audio`` concatenates the viewpoint's
   audio feature ``f_a`` to the block5 map before its lateral convolution (broadcast over space);
   ``use_context`` also adds the pre-trained translator's context, ``g_{v→a}`` over the V viewpoints of the
   moment (and ``g_{a→v}`` with audio).

Training (seed §A.2): pixel-wise softmax cross-entropy; pixels whose label confidence is below 0.75 are
ignored in the loss and in the metrics. Adam, batch 20 (items of V = 4 viewpoints each, as the reference),
lr 1e-4, weight decay 5e-4, 10 epochs, lr × 0.1 at epochs 5 and 8. Viewpoints are drawn at random from the
sample's bank among those with 45°–90° horizontal field of view, with colour jitter and horizontal flips.
``backbone="frozen"`` (the reference's ``head_only``) trains only the head; ``"finetune"`` trains everything.

Evaluation: every bank viewpoint with a 45°–90° field of view of every moment of the evaluation split, no
augmentation. The confusion matrix over confident pixels gives mIoU, pixel accuracy and per-class IoU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from avsa_data.options import check_choices, check_range, flat_dict, nested, option
from avsa_data.reader import RawSample, iter_samples
from avsa_train.data.batches import ShardStream, epoch_stream, make_loader
from avsa_train.data.items import decode_item, views_in_range
from avsa_train.data.sources import shard_urls, split_sample_count
from avsa_train.data.stream_config import task_items_config
from avsa_train.fit import StepOutput, fit
from avsa_train.runs import TrainingState, resumable
from avsa_train.tasks.common import Backbone, TaskResult, multistep, progress
from avsa_train.tasks.metrics import (
    CONFIDENCE_THRESHOLD,
    cluster_bootstrap,
    confusion_matrix,
    mean_iou,
    pixel_accuracy,
    segmentation_scores,
)
from avsa_train.tasks.protocol import DownstreamProtocol

FPN_LEVELS = ("block2", "block3", "block4", "block5")
BACKBONE_MODES = ("frozen", "finetune")
IGNORE_INDEX = -100


def _groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups`` (GroupNorm groups)."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def _conv_gn_relu(n_in: int, n_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(n_in, n_out, 3, padding=2, dilation=2, bias=False),
        nn.GroupNorm(_groups(n_out), n_out),
        nn.ReLU(inplace=True),
    ]


class FPNHead(nn.Module):
    """The FPN segmentation head of seed §A.2; see the module docstring.

    Args:
        level_channels: channels of the video maps ``{'block2': C2, ..., 'block5': C5}``.
        num_classes: K, including class 0 (background).
        fpn_dim: channels of the lateral connections (128).
        segm_dim: channels of the semantic branch (128).
        cond_dim: channels of the conditioning vector concatenated to block5 (0 = none).
        upsampling: ×2 upsamplings from each level to the output (block5: 3 … block2: 0 for 112² crops).
    """

    def __init__(
        self,
        level_channels: dict[str, int],
        num_classes: int,
        fpn_dim: int = 128,
        segm_dim: int = 128,
        cond_dim: int = 0,
        upsampling: dict[str, int] | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        upsampling = upsampling or {"block2": 0, "block3": 1, "block4": 2, "block5": 3}
        self.cond_dim = cond_dim
        self.lateral = nn.ModuleDict()
        self.smooth = nn.ModuleDict()
        self.semantic = nn.ModuleDict()
        for level in FPN_LEVELS:
            n_in = level_channels[level] + (cond_dim if level == "block5" else 0)
            self.lateral[level] = nn.Conv2d(n_in, fpn_dim, 1)
            self.smooth[level] = nn.Conv2d(fpn_dim, fpn_dim, 3, padding=1)
            steps = upsampling[level]
            layers: list[nn.Module] = []
            n = fpn_dim
            for _ in range(max(1, steps)):
                layers += _conv_gn_relu(n, segm_dim)
                n = segm_dim
                if steps > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.semantic[level] = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(segm_dim, num_classes, 1)

    def forward(self, maps: dict[str, torch.Tensor], cond: torch.Tensor | None = None) -> torch.Tensor:
        """``maps[level]``: ``[N, C, T', H', W']`` video maps; ``cond``: ``[N, cond_dim]`` or ``None``.
        Returns logits ``[N, K, H2, W2]`` at the block2 resolution (56² for 112² crops)."""
        pooled = {lv: maps[lv].mean(2) for lv in FPN_LEVELS}  # global temporal pooling
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"the head expects a [N, {self.cond_dim}] conditioning vector")
            c5 = pooled["block5"]
            pooled["block5"] = torch.cat((c5, cond[:, :, None, None].expand(-1, -1, *c5.shape[-2:])), 1)
        inner: dict[str, torch.Tensor] = {}
        top = None
        for level in reversed(FPN_LEVELS):
            x = self.lateral[level](pooled[level])
            if top is not None:
                x = x + F.interpolate(top, size=x.shape[-2:], mode="nearest")
            inner[level] = top = x
        size = pooled["block2"].shape[-2:]
        out = 0
        for level in FPN_LEVELS:
            s = self.semantic[level](self.smooth[level](inner[level]))
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            out = out + s
        return self.predictor(out)


class FPNSegmenter(nn.Module):
    """Video encoder (+ optional audio encoder and translator context) and :class:`FPNHead`.

    ``forward(video [B, V, 3, T, H, W], audio [B, V, C, n] | None)`` → logits ``[B, V, K, 56, 56]``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        use_audio: bool = False,
        use_context: bool = False,
        fpn_dim: int = 128,
        segm_dim: int = 128,
        finetune: bool = False,
    ):
        super().__init__()
        if use_context and backbone.translator is None:
            raise ValueError("--use-context needs a checkpoint with a cross-modal translator")
        self.video = backbone.video
        self.audio = backbone.audio if use_audio else None
        self.spectrogram = backbone.spectrogram
        translator = backbone.translator if use_context else None
        self.v2a = translator.v2a_transformer if translator is not None else None
        self.a2v = translator.a2v_transformer if (translator is not None and use_audio) else None
        self.use_audio, self.use_context, self.finetune = use_audio, use_context, finetune
        d_v, d_a = int(backbone.video.out_dim), int(backbone.audio.out_dim)
        cond = (d_a if use_audio else 0) + (d_v if use_context else 0) + (d_a if use_audio and use_context else 0)
        self.head = FPNHead(
            {k: backbone.video.level_channels[k] for k in FPN_LEVELS}, num_classes, fpn_dim, segm_dim, cond
        )

    def encoder_modules(self) -> list[nn.Module]:
        return [m for m in (self.video, self.audio, self.v2a, self.a2v) if m is not None]

    def train(self, mode: bool = True) -> FPNSegmenter:
        super().train(mode)
        if not self.finetune:  # frozen encoders keep their batch-norm statistics
            for m in self.encoder_modules():
                m.eval()
        return self

    def forward(self, video: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        b, v = video.shape[:2]
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            feat, maps = self.video(video.flatten(0, 1), return_maps=True)
            cond = []
            if self.use_context:
                cond.append(self.v2a(feat.view(b, v, -1)).flatten(0, 1))
            if self.use_audio:
                if audio is None:
                    raise ValueError("use_audio needs the audio input")
                fa = self.audio(self.spectrogram(audio.flatten(0, 1)))
                cond.append(fa)
                if self.use_context:
                    cond.append(self.a2v(fa.view(b, v, -1)).flatten(0, 1))
            maps = {k: maps[k] for k in FPN_LEVELS}
            cond_t = torch.cat(cond, 1) if cond else None
        logits = self.head(maps, cond_t)
        return logits.view(b, v, *logits.shape[1:])


@dataclass(frozen=True)
class SegmentationConfig:
    """Hyper-parameters of the segmentation protocol (defaults: seed §A.2)."""

    views: int = option(4, min=1, help="Viewpoints per item.")
    epochs: int = option(10, min=0, help="Training epochs.")
    batch_size: int = option(20, min=1, help="Items (of V viewpoints) per batch.")
    lr: float = option(1e-4, help="Adam learning rate.")
    weight_decay: float = option(5e-4, help="Adam weight decay.")
    milestones: tuple[int, ...] = option((5, 8), unit="EPOCHS",
                                         help="Epochs where lr ×= --gamma (comma-separated; 'none': no decay).")
    gamma: float = option(0.1, help="Learning-rate decay factor.")
    hfov_range: tuple[float, float] = option((45.0, 90.0), flag="--hfov", unit="DEGREES",
                                             help="Horizontal field of view range (degrees) of the training "
                                             "viewpoints.")
    eval_hfov_range: tuple[float, float] | None = option((45.0, 90.0), flag="--eval-hfov", unit="DEGREES",
                                                         help="Field of view range (degrees) of the evaluated "
                                                         "viewpoints.")
    fpn_dim: int = option(128, cli=False, help="Channels of the FPN's lateral and top-down maps.")
    segm_dim: int = option(128, cli=False, help="Channels of the upsampling convolutions.")
    use_audio: bool = option(False, help="Condition the head on the viewpoint's audio feature.")
    use_context: bool = option(False, help="Condition the head on the translator's context over the views.")
    backbone: str = option("frozen", choices=BACKBONE_MODES,
                           help="frozen: train the head only (reference head_only); finetune: train the encoders "
                           "too.")
    confidence_threshold: float = option(CONFIDENCE_THRESHOLD, flag="--confidence", min=0.0, max=1.0,
                                         help="Label confidence below which pixels are ignored.")
    #: Splits, seed, workers, shuffle buffer: options of the command under their own names (last, as saved).
    protocol: DownstreamProtocol = nested(DownstreamProtocol)

    def __post_init__(self) -> None:
        check_choices(self)  # --backbone
        if self.views < 1 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError("--views and --batch-size must be ≥ 1 and --epochs ≥ 0")
        check_range("--hfov", *self.hfov_range, 0.0, 180.0, "degrees")
        if self.eval_hfov_range is not None:
            check_range("--eval-hfov", *self.eval_hfov_range, 0.0, 180.0, "degrees")


class SegmentationItems:
    """The segmentation task's item policy (:class:`avsa_train.data.batches.ItemPolicy`): ``video [G, 3, T, H,
    W]``, ``audio [G, C, n]``, ``seg``/``conf [G, 56, 56]``, ``video_id``; ``G`` = V for training (random
    in-range views, one random moment, augmented) and for evaluation with context, 1 for evaluation without
    context (every in-range view of every moment). A sample with fewer than ``G`` views in the field-of-view
    range gives no items and is counted in ``skipped`` (in-process loaders only: a worker's count stays there)."""

    prune = False
    columns = ("video_id",)
    rows = False

    def __init__(self, cfg: SegmentationConfig, audio_format: str, phase: str):
        train = phase == "train"
        self.train = train
        self.group = cfg.views if (train or cfg.use_context) else 1
        self.hfov = cfg.hfov_range if train else cfg.eval_hfov_range
        self.decode_cfg = task_items_config(cfg, audio_format, train=train, with_masks=True, hfov_range=self.hfov)
        self.skipped = 0

    def items(self, s: RawSample, epoch: int) -> Iterator[dict]:
        if not s.meta.get("labels", {}).get("present", False):
            raise ValueError(f"{s.key}: no segmentation masks (shard with --labels)")
        n_ok = len(views_in_range(s, self.hfov))
        if n_ok < self.group:
            self.skipped += 1
            return
        cfg = (
            self.decode_cfg
            if self.train
            else replace(self.decode_cfg, views=n_ok, moments=int(s.meta["moments_per_sample"]))
        )
        item = decode_item(s, cfg, epoch)
        vid = s.meta["video_id"]
        for m in range(item["video"].shape[0]):
            for g0 in range(0, item["video"].shape[1] - self.group + 1, self.group):
                sl = slice(g0, g0 + self.group)
                yield {
                    "video": item["video"][m, sl],
                    "audio": item["audio"][m, sl],
                    "seg": item["seg"][m, sl],
                    "conf": item["conf"][m, sl],
                    "video_id": vid,
                }


def segmentation_stream(
    urls: list[str], cfg: SegmentationConfig, audio_format: str, phase: str, epoch: int, batch_size: int
) -> ShardStream:
    """One pass over a split as batches of :class:`SegmentationItems` (``stream.policy``): shuffled samples for
    ``phase="train"``, in order otherwise; ``epoch`` seeds the pass."""
    policy = SegmentationItems(cfg, audio_format, phase)
    return epoch_stream(urls, policy, epoch=epoch, seed=cfg.protocol.seed, shuffle=phase == "train",
                        buffer=cfg.protocol.shuffle_buffer, batch_size=batch_size)


def masked_target(seg: torch.Tensor, conf: torch.Tensor, threshold: float) -> torch.Tensor:
    """Class ids with ``IGNORE_INDEX`` where the label confidence is below ``threshold``."""
    return torch.where(conf >= threshold, seg.long(), torch.full_like(seg, IGNORE_INDEX, dtype=torch.long))


def segmentation_loss(
    logits: torch.Tensor, seg: torch.Tensor, conf: torch.Tensor, threshold: float
) -> torch.Tensor | None:
    """Mean pixel-wise softmax cross-entropy over confident pixels; ``None`` when no pixel is confident.

    ``logits [N, K, h, w]`` are bilinearly resized to the target size when they differ."""
    if logits.shape[-2:] != seg.shape[-2:]:
        logits = F.interpolate(logits, size=seg.shape[-2:], mode="bilinear", align_corners=False)
    target = masked_target(seg, conf, threshold)
    if not bool((target != IGNORE_INDEX).any()):
        return None
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def num_classes_of(urls: list[str]) -> tuple[int, list[str]]:
    """K and the class names (index = id) from the first sample's ``meta.labels.classes``."""
    for s in iter_samples(urls[:1]):
        classes = s.meta.get("labels", {}).get("classes")
        if not classes:
            raise ValueError(f"{s.key}: meta.labels.classes is empty; shard with --labels")
        k = max(int(i) for i in classes) + 1
        return k, [classes.get(str(i), str(i)) for i in range(k)]
    raise ValueError(f"no samples in {urls[0]}")


def _device_batch(batch: dict, device: torch.device, need_audio: bool):
    nb = device.type == "cuda"
    video = batch["video"].to(device, non_blocking=nb)
    audio = batch["audio"].to(device, non_blocking=nb) if need_audio else None
    return video, audio, batch["seg"].to(device), batch["conf"].to(device)


@torch.no_grad()
def evaluate(
    model: FPNSegmenter, loader: Iterable[dict], num_classes: int, threshold: float, device: torch.device, show: bool
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Total and per-video confusion matrices over the confident pixels of the evaluation items, and the
    number of evaluated crops."""
    model.eval()
    total = np.zeros((num_classes, num_classes), np.int64)
    per_video: dict[str, np.ndarray] = {}
    n_crops = 0
    for batch in progress(loader, show, "segment eval"):
        video, audio, seg, conf = _device_batch(batch, device, model.use_audio)
        logits = model(video, audio)  # [B, G, K, h, w]
        if logits.shape[-2:] != seg.shape[-2:]:
            logits = F.interpolate(
                logits.flatten(0, 1), size=seg.shape[-2:], mode="bilinear", align_corners=False
            ).view(*logits.shape[:3], *seg.shape[-2:])
        pred = logits.argmax(2)
        n_crops += pred.shape[0] * pred.shape[1]
        valid = conf >= threshold
        for i, vid in enumerate(batch["video_id"]):
            cm = confusion_matrix(pred[i], seg[i], num_classes, valid[i])
            per_video[vid] = per_video.get(vid, 0) + cm
            total += cm
    return total, per_video, n_crops


def fit_segmenter(
    model: FPNSegmenter,
    optimizer: torch.optim.Optimizer,
    scheduler,
    cfg: SegmentationConfig,
    device: torch.device,
    loader_for_epoch: Callable[[int], Iterable[dict]],
    show_progress: bool = True,
    total: int | None = None,
    training: TrainingState | None = None,
) -> list[dict]:
    """``cfg.epochs`` passes of pixel-wise cross-entropy on confident pixels, epoch ``e`` read from
    ``loader_for_epoch(e)`` (batches of :class:`SegmentationItems`); the scheduler steps once per epoch.
    Returns the per-epoch history (lr, mean loss, pixel accuracy in percent on confident pixels, batches);
    ``training``: the run's checkpoints (:class:`avsa_train.runs.TrainingState`), from which an interrupted fit
    continues."""
    state = fit(
        model,
        optimizer,
        lambda batch, epoch: train_step(model, batch, cfg, device),
        lambda epoch, state: loader_for_epoch(epoch),
        range(cfg.epochs),
        summarise=epoch_summary,
        scheduler=scheduler,
        bar=lambda it, e: progress(it, show_progress, f"segment epoch {e + 1}/{cfg.epochs}", total),
        **resumable(training, {"model" if model.finetune else "head": model if model.finetune else model.head},
                    optimizer, scheduler),
    )
    return state.history


def train_step(model: FPNSegmenter, batch: dict, cfg: SegmentationConfig, device: torch.device) -> StepOutput | None:
    """Pixel-wise cross-entropy on the confident pixels of a batch (``None`` when none is confident); sums the
    loss, the batches, and the hits and count of confident pixels."""
    video, audio, seg, conf = _device_batch(batch, device, cfg.use_audio)
    logits = model(video, audio).flatten(0, 1)
    loss = segmentation_loss(logits, seg.flatten(0, 1), conf.flatten(0, 1), cfg.confidence_threshold)
    if loss is None:
        return None
    with torch.no_grad():
        valid = conf.flatten(0, 1) >= cfg.confidence_threshold
        if logits.shape[-2:] != seg.shape[-2:]:  # e.g. 32² logits of 64-px crops, 56² masks
            logits = F.interpolate(logits, size=seg.shape[-2:], mode="bilinear", align_corners=False)
        sums = {
            "hits": int(((logits.argmax(1) == seg.flatten(0, 1)) & valid).sum()),
            "counted": int(valid.sum()),
            "loss": float(loss.detach()),
            "batches": 1,
        }
    return StepOutput(loss, sums)


def epoch_summary(sums: dict[str, float]) -> dict:
    """An epoch's history fields: mean batch loss, pixel accuracy (percent of confident pixels), batches."""
    batches = int(sums.get("batches", 0))
    return {
        "train_loss": sums.get("loss", 0.0) / max(batches, 1),
        "train_pixel_accuracy": 100.0 * int(sums.get("hits", 0)) / max(int(sums.get("counted", 0)), 1),
        "batches": batches,
    }


def run_segmentation(
    backbone: Backbone, shards: str, cfg: SegmentationConfig, device: torch.device, show_progress: bool = True,
    training: TrainingState | None = None,
) -> TaskResult:
    """Train the FPN head (and the encoders with ``backbone="finetune"``) and evaluate it; see the module doc."""
    train_urls = shard_urls(shards, cfg.protocol.train_split)
    eval_urls = shard_urls(shards, cfg.protocol.eval_split)
    num_classes, names = num_classes_of(train_urls)
    finetune = cfg.backbone == "finetune"
    if not finetune:
        backbone.freeze()
    model = FPNSegmenter(backbone, num_classes, cfg.use_audio, cfg.use_context, cfg.fpn_dim, cfg.segm_dim, finetune).to(
        device
    )
    params = [p for p in (model.parameters() if finetune else model.head.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = multistep(optimizer, cfg.milestones, cfg.gamma)
    n_train = split_sample_count(shards, cfg.protocol.train_split)
    total = None if n_train is None else -(-n_train // cfg.batch_size)
    streams: list[ShardStream] = []
    pin = device.type == "cuda"

    def train_loader(epoch: int) -> DataLoader:
        streams.append(segmentation_stream(train_urls, cfg, backbone.audio_format, "train", epoch, cfg.batch_size))
        return make_loader(streams[-1], cfg.protocol.workers, pin_memory=pin, seed=None)

    history = fit_segmenter(model, optimizer, scheduler, cfg, device, train_loader, show_progress, total, training)
    skipped = max((st.policy.skipped for st in streams), default=0)
    group = cfg.views if cfg.use_context else 1
    eval_stream = segmentation_stream(eval_urls, cfg, backbone.audio_format, "test", 0,
                                      max(1, cfg.batch_size * cfg.views // group))
    loader = make_loader(eval_stream, cfg.protocol.workers, pin_memory=pin, seed=None)
    confusion, per_video, n_crops = evaluate(
        model, loader, num_classes, cfg.confidence_threshold, device, show_progress
    )
    metrics = _scores(confusion, per_video, names, cfg.protocol.seed)
    metrics["eval_crops"] = n_crops
    metrics["skipped_train_samples"] = skipped
    metrics["skipped_eval_samples"] = eval_stream.policy.skipped
    conf = flat_dict(cfg)
    conf["num_classes"] = num_classes
    return TaskResult("avsa.eval.segmentation", "segmentation", metrics, history, conf, backbone.describe())


def _scores(confusion: np.ndarray, per_video: dict[str, np.ndarray], names: list[str], seed: int) -> dict:
    """mIoU and pixel accuracy in percent with video-bootstrap 95 % CIs, per-class IoU, the confusion matrix."""
    s = segmentation_scores(confusion, names)
    stack = np.stack([per_video[k] for k in sorted(per_video)]) if per_video else np.zeros((0,) + confusion.shape)
    miou_ci = cluster_bootstrap(stack, mean_iou, seed=seed)
    acc_ci = cluster_bootstrap(stack, pixel_accuracy, seed=seed)

    def pct(x):
        return None if x is None or not math.isfinite(x) else round(100.0 * x, 4)

    return {
        "miou": pct(s["miou"]),
        "miou_ci95_bootstrap_videos": [pct(miou_ci[0]), pct(miou_ci[1])],
        "pixel_accuracy": pct(s["pixel_accuracy"]),
        "pixel_accuracy_ci95_bootstrap_videos": [pct(acc_ci[0]), pct(acc_ci[1])],
        "mean_class_accuracy": pct(s["mean_class_accuracy"]),
        "per_class_iou": {k: pct(v) for k, v in s["per_class_iou"].items()},
        "per_class_pixels": s["per_class_pixels"],
        "confident_pixels": s["confident_pixels"],
        "n_videos": len(per_video),
        "confusion_matrix": confusion.tolist(),
        "per_video_confusion": {k: per_video[k].tolist() for k in sorted(per_video)},
        "class_names": names,
    }
