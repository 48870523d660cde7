"""Action recognition by fine-tuning the video encoder (AVSA supplement §A.3) on UCF101, HMDB51 or a folder.

Model: the R(2+1)D-18 video encoder, its global max pool, dropout 0.5 (reference ``lreg_classifier``) and one
linear layer to the classes. The **whole** network is fine-tuned with Adam for 100 epochs, batch 28, lr 1e-4
decayed at epochs 40, 60 and 80 (× 0.3, the reference's action-recognition factor; seed §A.3 does not give
it), no weight decay. Performance is reported on split 1.

Clips: regular (perspective) videos decoded with :func:`avsa_data.media.iter_video_frames` at 16 frames per
second; a clip is ``T = 8`` consecutive frames (0.5 s, the pre-training clip), padded by repeating the last
frame when the video is shorter.

* Training: one clip per video per epoch at a random start (``clips_per_video`` more), random resized crop
  (area 8 %–100 %, aspect 3/4–4/3) to 112², horizontal flip, colour jitter (brightness, contrast, saturation
  ± 0.4), then the pre-training normalisation (:data:`avsa_train.data.augment.VIDEO_MEAN`/``VIDEO_STD``).
* Test: the shorter side resized to 128 and a central 112² crop, ``N`` clips uniformly spaced over the video
  (25 by default, the reference's dense test). **Clip accuracy** counts each clip on its own; **video
  accuracy** averages the softmax scores of a video's N clips first.

Randomness: clip starts and augmentations come from ``rng_for(seed, "finetune", epoch, video, clip)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from avsa_data import media
from avsa_data.options import option
from avsa_data.rng import rng_for
from avsa_train.data.augment import VIDEO_MEAN, VIDEO_STD, colour_jitter
from avsa_train.fit import FitState, StepOutput, fit
from avsa_train.runs import TrainingState, resumable
from avsa_train.tasks.common import Backbone, TaskResult, multistep, progress
from avsa_train.tasks.metrics import accuracy_summary, cluster_bootstrap

DATASETS = ("ucf101", "hmdb51", "folder")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


class ActionDataError(ValueError):
    """A dataset folder or split file does not have the expected layout."""


@dataclass(frozen=True)
class VideoEntry:
    """One labelled video: its file, class index and path relative to the videos folder (its id)."""

    path: Path
    label: int
    rel: str


@dataclass
class ActionSplit:
    """Train and test videos of one split and the class names (index = label)."""

    train: list[VideoEntry]
    test: list[VideoEntry]
    classes: list[str]
    missing: list[str] = field(default_factory=list)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ActionDataError(f"split file {path} not found")
    return [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def _resolve(videos: Path, rel: str, missing: list[str]) -> Path | None:
    p = videos / rel
    if p.is_file():
        return p
    missing.append(rel)
    return None


def ucf101_split(videos: Path, splits: Path, fold: int = 1) -> ActionSplit:
    """UCF101: ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0{fold}.txt`` ("Class/v_x.avi 1") and
    ``testlist0{fold}.txt`` ("Class/v_x.avi") in ``splits``; videos at ``videos/Class/v_x.avi``."""
    classes_by_index = {}
    for ln in _read_lines(splits / "classInd.txt"):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ActionDataError(f"{splits / 'classInd.txt'}: expected lines '<index> <ClassName>', got {ln!r}")
        classes_by_index[int(parts[0])] = parts[1]
    classes = [classes_by_index[k] for k in sorted(classes_by_index)]
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    missing: list[str] = []

    def read(name: str) -> list[VideoEntry]:
        out = []
        for ln in _read_lines(splits / name):
            rel = ln.split()[0].replace("\\", "/")
            cls = rel.split("/")[0].lower()
            if cls not in lookup:
                raise ActionDataError(f"{splits / name}: class folder of {rel!r} is not in classInd.txt")
            p = _resolve(videos, rel, missing)
            if p is not None:
                out.append(VideoEntry(p, lookup[cls], rel))
        return out

    return ActionSplit(read(f"trainlist{fold:02d}.txt"), read(f"testlist{fold:02d}.txt"), classes, missing)


def hmdb51_split(videos: Path, splits: Path, fold: int = 1) -> ActionSplit:
    """HMDB51: ``{class}_test_split{fold}.txt`` files in ``splits`` with lines "video.avi 1|2|0" (1 = train,
    2 = test, 0 = unused); videos at ``videos/{class}/video.avi``. Classes are the sorted class names."""
    pattern = re.compile(rf"^(?P<cls>.+)_test_split{fold}\.txt$")
    files = sorted(p for p in splits.glob(f"*_test_split{fold}.txt") if pattern.match(p.name))
    if not files:
        raise ActionDataError(f"no '*_test_split{fold}.txt' files in {splits}")
    classes = [pattern.match(p.name).group("cls") for p in files]
    missing: list[str] = []
    train, test = [], []
    for label, (cls, f) in enumerate(zip(classes, files)):
        for ln in _read_lines(f):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ActionDataError(f"{f}: expected lines '<video> <0|1|2>', got {ln!r}")
            if parts[1] == "0":
                continue
            rel = f"{cls}/{parts[0]}"
            p = _resolve(videos, rel, missing)
            if p is not None:
                (train if parts[1] == "1" else test).append(VideoEntry(p, label, rel))
    return ActionSplit(train, test, classes, missing)


def _class_videos(root: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        vids = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if vids:
            out[d.name] = vids
    return out


def folder_split(videos: Path, splits: Path | None = None) -> ActionSplit:
    """A generic ``<class>/<video>`` layout: either ``videos/train/<class>/*`` and ``videos/test/<class>/*``,
    or ``videos/<class>/*`` with ``splits/train.txt`` and ``splits/test.txt`` listing ``<class>/<video>``."""
    missing: list[str] = []
    if splits is None:
        tr, te = videos / "train", videos / "test"
        if not (tr.is_dir() and te.is_dir()):
            raise ActionDataError(
                f"{videos}: expected train/<class>/<video> and test/<class>/<video> folders, "
                "or pass --splits with train.txt and test.txt"
            )
        train_c, test_c = _class_videos(tr), _class_videos(te)
        classes = sorted(set(train_c) | set(test_c))
        lab = {c: i for i, c in enumerate(classes)}

        def entries(root: Path, by_class: dict[str, list[Path]]) -> list[VideoEntry]:
            return [VideoEntry(p, lab[c], str(p.relative_to(videos))) for c, ps in by_class.items() for p in ps]

        return ActionSplit(entries(tr, train_c), entries(te, test_c), classes, missing)
    lists = {name: _read_lines(splits / f"{name}.txt") for name in ("train", "test")}
    rels = {name: [ln.split()[0].replace("\\", "/") for ln in lines] for name, lines in lists.items()}
    for name, rs in rels.items():
        bad = [r for r in rs if "/" not in r]
        if bad:
            raise ActionDataError(f"{splits / (name + '.txt')}: expected '<class>/<video>' lines, got {bad[0]!r}")
    classes = sorted({r.split("/")[0] for rs in rels.values() for r in rs})
    lab = {c: i for i, c in enumerate(classes)}
    out = {}
    for name, rs in rels.items():
        out[name] = [
            VideoEntry(p, lab[r.split("/")[0]], r) for r in rs if (p := _resolve(videos, r, missing)) is not None
        ]
    return ActionSplit(out["train"], out["test"], classes, missing)


def load_split(
    dataset: str, videos: str | Path, splits: str | Path | None, fold: int = 1, allow_missing: bool = False
) -> ActionSplit:
    """The split of ``dataset`` (``ucf101`` | ``hmdb51`` | ``folder``); missing listed videos are an error
    unless ``allow_missing`` (then they are skipped and listed in ``ActionSplit.missing``)."""
    videos = Path(videos)
    if not videos.is_dir():
        raise ActionDataError(f"videos folder {videos} does not exist")
    if dataset == "ucf101" or dataset == "hmdb51":
        if splits is None:
            raise ActionDataError(f"--splits is required for {dataset} (the folder of the official split files)")
        split = (ucf101_split if dataset == "ucf101" else hmdb51_split)(videos, Path(splits), fold)
    elif dataset == "folder":
        split = folder_split(videos, None if splits is None else Path(splits))
    else:
        raise ActionDataError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split.missing and not allow_missing:
        raise ActionDataError(
            f"{len(split.missing)} listed videos are missing under {videos}, e.g. "
            f"{split.missing[:3]} (pass --skip-missing to ignore them)"
        )
    if not split.train or not split.test:
        raise ActionDataError(f"empty split: {len(split.train)} train and {len(split.test)} test videos")
    return split


# ------------------------------------------------------------------------------------------------ clips


def decode_frames(path: Path, fps: float) -> np.ndarray:
    """All frames ``[N, H, W, 3]`` uint8 of a regular video resampled to ``fps`` frames per second."""
    frames = list(media.iter_video_frames(path, fps))
    if not frames:
        raise media.MediaError("no frames decoded", "empty", path)
    return np.stack(frames)


def uniform_starts(n_frames: int, clip_len: int, n_clips: int) -> list[int]:
    """``n_clips`` clip start frames uniformly spaced over ``[0, n_frames − clip_len]`` (all 0 if shorter)."""
    last = max(0, n_frames - clip_len)
    return [int(round(x)) for x in np.linspace(0, last, n_clips)] if n_clips > 1 else [last // 2]


def take_clip(frames: np.ndarray, start: int, clip_len: int) -> np.ndarray:
    """Frames ``[start, start + clip_len)``, the last frame repeated when the video ends first."""
    idx = np.minimum(np.arange(start, start + clip_len), len(frames) - 1)
    return frames[idx]


def _to_tensor(clip: np.ndarray) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 → ``[T, 3, H, W]`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def random_resized_crop(
    rng: np.random.Generator,
    h: int,
    w: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a crop with area fraction in ``scale`` and aspect in ``ratio``
    (torchvision's RandomResizedCrop rule: 10 tries, then the central crop of the clamped aspect)."""
    area = h * w
    for _ in range(10):
        a = area * rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    r = w / h
    if r < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif r > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """``[T, 3, H, W]`` in [0, 1] → ``[3, T, H, W]`` normalised as in pre-training."""
    mean = torch.tensor(VIDEO_MEAN)[None, :, None, None]
    std = torch.tensor(VIDEO_STD)[None, :, None, None]
    return ((x - mean) / std).permute(1, 0, 2, 3).contiguous()


def train_transform(clip: np.ndarray, rng: np.random.Generator, size: int = 112) -> torch.Tensor:
    """Random resized crop, flip and colour jitter of ``[T, H, W, 3]`` uint8 → ``[3, T, size, size]``."""
    t, h, w, _ = clip.shape
    top, left, ch, cw = random_resized_crop(rng, h, w)
    x = _resize(_to_tensor(clip[:, top : top + ch, left : left + cw]), (size, size))
    if rng.random() < 0.5:
        x = x.flip(-1)
    x = torch.from_numpy(colour_jitter(x.permute(0, 2, 3, 1).numpy(), rng)).permute(0, 3, 1, 2)
    return _normalise(x.float())


def eval_transform(clip: np.ndarray, size: int = 112, resize_ratio: float = 0.875) -> torch.Tensor:
    """Shorter side to ``size / resize_ratio`` (128), central ``size²`` crop → ``[3, T, size, size]``."""
    t, h, w, _ = clip.shape
    short = int(round(size / resize_ratio))
    nh, nw = (short, max(size, int(round(w * short / h)))) if h <= w else (max(size, int(round(h * short / w))), short)
    x = _resize(_to_tensor(clip), (nh, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    return _normalise(x[:, :, top : top + size, left : left + size])


class TrainClips(Dataset):
    """``clips_per_video`` random clips per training video per epoch: ``(video [3, T, S, S], label)``."""

    def __init__(self, entries: Sequence[VideoEntry], cfg: FinetuneConfig, epoch: int):
        self.entries, self.cfg, self.epoch = list(entries), cfg, epoch

    def __len__(self) -> int:
        return len(self.entries) * self.cfg.clips_per_video

    def __getitem__(self, i: int):
        e = self.entries[i // self.cfg.clips_per_video]
        rng = rng_for(self.cfg.seed, "finetune", self.epoch, e.rel, i % self.cfg.clips_per_video)
        frames = decode_frames(e.path, self.cfg.fps)
        start = int(rng.integers(0, max(1, len(frames) - self.cfg.frames + 1)))
        clip = take_clip(frames, start, self.cfg.frames)
        return train_transform(clip, rng, self.cfg.crop_size), e.label


class EvalVideos(Dataset):
    """Each test video as ``N`` uniformly spaced clips: ``(video [N, 3, T, S, S], label, index)``."""

    def __init__(self, entries: Sequence[VideoEntry], cfg: FinetuneConfig):
        self.entries, self.cfg = list(entries), cfg

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        frames = decode_frames(e.path, self.cfg.fps)
        starts = uniform_starts(len(frames), self.cfg.frames, self.cfg.test_clips)
        clips = [eval_transform(take_clip(frames, s, self.cfg.frames), self.cfg.crop_size) for s in starts]
        return torch.stack(clips), e.label, i


# ------------------------------------------------------------------------------------------------ model


class ActionClassifier(nn.Module):
    """Video encoder → global max pool feature → dropout → linear layer to ``n_classes`` logits."""

    def __init__(self, video: nn.Module, n_classes: int, dropout: float = 0.5):
        super().__init__()
        self.video = video
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(int(video.out_dim), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` → ``[B, n_classes]``."""
        return self.classifier(self.dropout(self.video(x)))


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of action recognition fine-tuning (defaults: seed §A.3 and the reference configs)."""

    epochs: int = option(100, min=0, help="Fine-tuning epochs.")
    batch_size: int = option(28, min=1, help="Clips per batch.")
    lr: float = option(1e-4, help="Adam learning rate.")
    milestones: tuple[int, ...] = option((40, 60, 80), unit="EPOCHS",
                                         help="Epochs where lr ×= --gamma (comma-separated; 'none': no decay).")
    gamma: float = option(0.3, help="Learning-rate decay factor.")
    weight_decay: float = option(0.0, help="Adam weight decay.")
    dropout: float = option(0.5, help="Dropout before the linear layer.")
    fps: float = option(16.0, unit="FPS", help="Decoding frame rate (frames per second).")
    frames: int = option(8, min=1, help="Frames per clip.")
    crop_size: int = option(112, cli=False, help="Crop side in pixels (square).")
    clips_per_video: int = option(1, min=1, help="Random training clips per video per epoch.")
    test_clips: int = option(25, min=1, help="N uniformly spaced clips per test video.")
    eval_every: int = option(0, help="Also evaluate every K epochs (0 = only at the end).")
    seed: int = option(0, help="Seed of initialisation, data order and augmentations.")
    workers: int = option(0, min=0, cli=False,  # the commands use the cores (avsa_train/cli/_common.py)
                          help="DataLoader worker processes (0 = in-process).")

    def __post_init__(self) -> None:
        if min(self.batch_size, self.frames, self.crop_size, self.clips_per_video, self.test_clips) < 1:
            raise ValueError("batch size, frames, crop size, clips per video and test clips must be >= 1")
        if self.epochs < 0 or self.fps <= 0:
            raise ValueError("epochs must be >= 0 and fps > 0")


def _topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, scores.shape[-1])
    return (scores.topk(k, dim=-1).indices == labels[..., None]).any(-1)


@torch.no_grad()
def evaluate(
    model: ActionClassifier,
    entries: list[VideoEntry],
    cfg: FinetuneConfig,
    n_classes: int,
    device: torch.device,
    show: bool,
) -> dict:
    """Clip and video accuracy (top-1 / top-5, percent) over the test videos; see the module docstring."""
    model.eval()
    per_batch = max(1, cfg.batch_size // cfg.test_clips)
    loader = DataLoader(
        EvalVideos(entries, cfg), batch_size=per_batch, num_workers=cfg.workers, pin_memory=device.type == "cuda"
    )
    clip_hits, clip_top5, video_hits, video_top5, vids, video_pred = [], [], [], [], [], []
    for video, label, index in progress(loader, show, "finetune eval", unit="batch"):
        b, n = video.shape[:2]
        probs = torch.softmax(model(video.flatten(0, 1).to(device)), -1).view(b, n, -1).cpu()
        lab = label.view(b, 1).expand(b, n)
        clip_hits.append(_topk_hits(probs, lab, 1))
        clip_top5.append(_topk_hits(probs, lab, 5))
        mean = probs.mean(1)
        video_hits.append(_topk_hits(mean, label, 1))
        video_top5.append(_topk_hits(mean, label, 5))
        video_pred.append(mean.argmax(-1))
        vids += [entries[int(i)].rel for i in index]
    clip_hits_t, clip5 = torch.cat(clip_hits), torch.cat(clip_top5)
    v1, v5 = torch.cat(video_hits).numpy(), torch.cat(video_top5).numpy()
    labels = np.array([e.label for e in entries])
    preds = torch.cat(video_pred).numpy()
    per_video_clips = np.stack([clip_hits_t.float().sum(1).numpy(), np.full(len(vids), clip_hits_t.shape[1])], 1)
    clip_ci = cluster_bootstrap(per_video_clips, lambda s: s[0] / s[1], seed=cfg.seed)
    video = accuracy_summary(v1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {}
    for k in range(n_classes):
        sel = labels == k
        per_class[k] = None if not sel.any() else round(100.0 * float(v1[sel].mean()), 4)
    return {
        "clip_accuracy": round(100.0 * float(clip_hits_t.float().mean()), 4),
        "clip_accuracy_ci95_bootstrap_videos": [round(100.0 * x, 4) if math.isfinite(x) else None for x in clip_ci],
        "clip_top5": round(100.0 * float(clip5.float().mean()), 4),
        "video_accuracy": video["accuracy"],
        "video_accuracy_ci95_wilson": video["ci95_wilson"],
        "video_top5": round(100.0 * float(v5.mean()), 4),
        "n_test_videos": len(vids),
        "n_test_clips": int(clip_hits_t.numel()),
        "clips_per_test_video": cfg.test_clips,
        "per_class_video_accuracy": per_class,
        "video_confusion_matrix": confusion.tolist(),
    }


def train_step(model: ActionClassifier, batch, device: torch.device) -> StepOutput:
    """Cross-entropy of a batch of ``(clips, labels)``; sums the loss × clips, the hits and the clips."""
    video, label = batch[0].to(device), batch[1].to(device)
    logits = model(video)
    loss = F.cross_entropy(logits, label)
    sums = {
        "loss": float(loss.detach()) * len(label),
        "hits": float((logits.argmax(-1) == label).sum()),
        "clips": len(label),
    }
    return StepOutput(loss, sums)


def epoch_summary(sums: dict[str, float]) -> dict:
    """An epoch's history fields: mean clip loss, clip accuracy (percent), clips seen."""
    n = sums.get("clips", 0.0)
    return {
        "train_loss": sums.get("loss", 0.0) / max(n, 1),
        "train_clip_accuracy": 100.0 * sums.get("hits", 0.0) / max(n, 1),
        "train_clips": int(n),
    }


def run_finetune(
    backbone: Backbone,
    split: ActionSplit,
    cfg: FinetuneConfig,
    device: torch.device,
    show_progress: bool = True,
    dataset: str = "folder",
    training: TrainingState | None = None,
) -> TaskResult:
    """Fine-tune the video encoder with a linear classifier on ``split.train``; evaluate on ``split.test``.
    ``training``: the run's checkpoints (:class:`avsa_train.runs.TrainingState`): an interrupted fine-tuning
    continues from them, and with ``eval_every`` the model of the best periodic video accuracy is kept."""
    n_classes = len(split.classes)
    model = ActionClassifier(backbone.video, n_classes, cfg.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = multistep(optimizer, cfg.milestones, cfg.gamma)

    def train_loader(epoch: int, state: FitState) -> DataLoader:
        return DataLoader(
            TrainClips(split.train, cfg, epoch),
            batch_size=cfg.batch_size,
            num_workers=cfg.workers,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch),
            drop_last=len(split.train) * cfg.clips_per_video > cfg.batch_size,
            pin_memory=device.type == "cuda",
        )

    def evaluate_every(state: FitState, row: dict) -> None:
        epoch = state.epoch
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
            m = evaluate(model, split.test, cfg, n_classes, device, show_progress)
            row.update(test_clip_accuracy=m["clip_accuracy"], test_video_accuracy=m["video_accuracy"])
            if training is not None:
                training.keep_best(m["video_accuracy"], {"epoch": epoch + 1, "video_accuracy": m["video_accuracy"]})

    history = fit(
        model,
        optimizer,
        lambda batch, epoch: train_step(model, batch, device),
        train_loader,
        range(cfg.epochs),
        summarise=epoch_summary,
        scheduler=scheduler,
        bar=lambda it, e: progress(it, show_progress, f"finetune epoch {e + 1}/{cfg.epochs}"),
        on_epoch_end=evaluate_every,
        **resumable(training, {"model": model}, optimizer, scheduler),
    ).history
    metrics = evaluate(model, split.test, cfg, n_classes, device, show_progress)
    metrics["per_class_video_accuracy"] = {split.classes[k]: v for k, v in metrics["per_class_video_accuracy"].items()}
    data = {
        "dataset": dataset,
        "classes": split.classes,
        "n_train_videos": len(split.train),
        "n_test_videos": len(split.test),
        "missing_videos": split.missing,
    }
    return TaskResult(
        "avsa.eval.finetune", "action-recognition", metrics, history, asdict(cfg), backbone.describe(), {"data": data}
    )
