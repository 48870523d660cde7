"""What an item stream yields (:class:`StreamConfig`), and whether a shard set can give it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from avsa_data.options import OptionError

AUDIO_FORMATS = {"mono": ("mono", 1), "stereo": ("stereo", 2), "ambi": ("foa", 4)}


@dataclass(frozen=True)
class StreamConfig:
    """What a stream yields: V views × ``moments`` moments per item, batched, with or without augmentation."""

    views: int = 4  # V viewpoints drawn from each sample's bank
    moments: int = 1  # moments per item (>1: AVTS temporal negatives; needs shards with M ≥ moments)
    audio_format: str = "ambi"  # mono | stereo | ambi
    batch_size: int = 28
    seed: int = 0
    shuffle_buffer: int = 256
    train: bool = True  # shuffle + augment
    flip_p: float = 0.5  # Table 2 hf
    with_events: bool = False  # add the per-view sound-event labels (meta.events) to each item
    color_jitter: bool = True  # Table 2 cj
    volume_jitter: float = 0.1  # ±10 %
    with_masks: bool = False
    hfov_range: tuple[float, float] | None = None  # keep only bank views with hfov in range (segmentation)
    drop_last: bool = True
    #: Ship the clips as uint8 with their colour transform and normalise them on the device, batched
    #: (:func:`model_video`): the GPU path, where the loader workers are the bottleneck.
    video_on_device: bool = False
    #: The causal control of pre-training: rotate each sample's sound field by a random yaw (uniform in
    #: [−180°, 180°), drawn per sample and epoch, the same for all its moments and views) before the views'
    #: audio is rendered, so the sounds are kept and their directions are no longer the video's.
    break_spatial_link: bool = False

    def __post_init__(self) -> None:
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {tuple(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if self.views < 1 or self.moments < 1 or self.batch_size < 1:
            raise ValueError(
                f"views, moments and batch_size must be ≥ 1, got {self.views}, {self.moments}, {self.batch_size}"
            )
        if not 0.0 <= self.flip_p <= 1.0 or not 0.0 <= self.volume_jitter < 1.0:
            raise ValueError(
                f"flip_p must be in [0, 1] and volume_jitter in [0, 1), got {self.flip_p}, {self.volume_jitter}"
            )


def check_shards_fit(meta: dict, cfg: StreamConfig) -> None:
    """An :class:`~avsa_data.options.OptionError` naming the option when the shards cannot give ``cfg``'s items (too
    few views or moments, no masks)."""
    k, m = len(meta["viewpoints"]), int(meta["moments_per_sample"])
    if cfg.views > k:
        raise OptionError(
            f"--viewpoints {cfg.views}: the shards have banks of {k} viewpoints; use --viewpoints ≤ {k}, or re-shard "
            f"with avsa-data shard --viewpoints-per-moment {cfg.views}"
        )
    if cfg.moments > m:
        raise OptionError(
            f"--moments {cfg.moments}: the shards have {m} moment(s) per sample; use --moments ≤ {m}, or re-shard "
            f"with avsa-data shard --moments-per-sample {cfg.moments}"
        )
    if cfg.with_masks and not meta.get("labels", {}).get("present", False):
        raise OptionError("segmentation needs masks but the shards have none: re-shard with avsa-data shard --labels "
                          "synthetic|precomputed|onnx")


def eval_config(cfg: StreamConfig) -> StreamConfig:
    """``cfg`` with every augmentation off but random view selection kept (the reference evaluates on random
    crops without flips or colour jitter)."""
    return replace(cfg, train=True, flip_p=0.0, color_jitter=False, volume_jitter=0.0)


def task_items_config(
    task, audio_format: str, *, train: bool, with_masks: bool = False,
    hfov_range: tuple[float, float] | None = None,
) -> StreamConfig:
    """What a downstream task decodes from each sample: the ``task`` config's V views (``views``) of one moment, in
    the checkpoint's ``audio_format``, drawn and augmented as pre-training does when ``train`` (``batch_size``,
    and its protocol's ``seed`` and ``shuffle_buffer`` too); ``with_masks`` and ``hfov_range`` for segmentation.
    ``task`` is :class:`~avsa_train.tasks.binary_eval.BinaryEvalConfig` or
    :class:`~avsa_train.tasks.segmentation.SegmentationConfig`."""
    return StreamConfig(views=task.views, moments=1, audio_format=audio_format, seed=task.protocol.seed, train=train,
                        with_masks=with_masks, hfov_range=hfov_range, batch_size=task.batch_size,
                        shuffle_buffer=task.protocol.shuffle_buffer)
