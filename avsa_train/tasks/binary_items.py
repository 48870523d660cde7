"""The items of AVC-Bin and AVSA-Bin (:mod:`avsa_train.tasks.binary_eval`): each sample's V crops with their
audio, aligned or made misaligned (:mod:`avsa_train.tasks.misalign`), as an item policy over the one item stream
(:mod:`avsa_train.data.batches`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from avsa_data.reader import RawSample
from avsa_train.data.batches import ShardStream, epoch_stream
from avsa_train.data.items import decode_item
from avsa_train.data.stream_config import eval_config, task_items_config
from avsa_train.tasks import misalign

if TYPE_CHECKING:
    from avsa_train.tasks.binary_eval import BinaryEvalConfig


class BinaryItems:
    """The binary tasks' item policy (:class:`avsa_train.data.batches.ItemPolicy`): each sample's items as dicts
    with ``video [V, 3, T, H, W]``, ``audio [V, C, n]``, ``label``, ``yaw`` (degrees; 0 unless a reference AVSA
    negative), ``key``, ``video_id``, ``moment`` (-1 in training, where it is drawn at random), ``views`` (the
    bank indices of the V crops), ``negative`` (how the audio was made, :func:`avsa_train.tasks.misalign.describe`;
    ``""`` for a positive) and ``offset`` (AVSA: the mean angle, degrees, between each crop's viewpoint and the
    direction its audio was rendered for; 0 for a positive, ``nan`` for AVC).

    ``phase="train"``: one random moment per sample, pre-training augmentations (none when ``cfg.augment`` is
    off). ``phase="test"``: every moment, random views without augmentation. The data epoch seeds the draws (the
    test draw index for ``phase="test"``). AVC negatives borrow the world FOA of a sample of another video of the
    same split from ``donors``. Members are not pruned: a negative is rendered from the sample's FOA.
    """

    prune = False
    columns = ("key", "video_id", "moment", "yaw", "views", "negative", "offset")
    rows = False

    def __init__(self, cfg: BinaryEvalConfig, audio_format: str, phase: str, donors: misalign.DonorBank | None):
        if phase not in ("train", "test"):
            raise ValueError(f"phase must be 'train' or 'test', got {phase!r}")
        self.cfg, self.phase, self.donors = cfg, phase, donors
        base = task_items_config(cfg, audio_format, train=True)
        self.decode_cfg = base if phase == "train" and cfg.augment else eval_config(base)

    def items(self, sample: RawSample, epoch: int) -> Iterator[dict]:
        train, c = self.phase == "train", self.cfg
        video_id = sample.meta["video_id"]
        candidates = self.donors.candidates(video_id) if self.donors is not None else []
        decision = misalign.draw_misalignment(
            c.task, c.protocol.seed, self.phase, epoch, sample.key, c.misalign_rate, c.min_yaw, len(candidates),
            c.negatives, sample.num_views,
        )
        donor = None
        if decision.donor is not None:
            donor = self.donors.donor(candidates[decision.donor])
            if c.negatives == "matched":
                decision = misalign.pair_with_donor(decision, c.protocol.seed, self.phase, epoch, sample.key,
                                                    sample.num_views, len(donor.viewpoints))
        presented = misalign.apply(sample, decision, donor)
        cfg = self.decode_cfg if train else replace(self.decode_cfg, moments=misalign.moments_of(sample))
        item = decode_item(presented, cfg, epoch)
        views = [int(k) for k in item["views"]]
        negative = misalign.describe(decision, None if donor is None else donor.key, views)
        offset = misalign.mean_offset(presented, views, decision) if c.task == "avsa" else float("nan")
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
                "negative": negative,
                "offset": offset,
            }


#: Per-item columns carried from the items to the features and the outputs (besides the label).
ITEM_COLUMNS = BinaryItems.columns


def binary_stream(
    urls: list[str],
    cfg: BinaryEvalConfig,
    audio_format: str,
    phase: str,
    epoch: int,
    donors: misalign.DonorBank | None = None,
) -> ShardStream:
    """One pass over a split as batches of :class:`BinaryItems`: shuffled samples for ``phase="train"``, in order
    for ``"test"``; ``epoch`` seeds the pass. AVC donors are found among ``urls`` when not given."""
    if cfg.task == "avc" and donors is None:
        donors = misalign.DonorBank(list(urls))
    return epoch_stream(urls, BinaryItems(cfg, audio_format, phase, donors), epoch=epoch, seed=cfg.protocol.seed,
                        shuffle=phase == "train", buffer=cfg.protocol.shuffle_buffer, batch_size=cfg.batch_size)


def column_value(name: str, value):
    """An item's column as it is stored: views as ``"0,3,5,6"``, numbers as floats, missing as ``""``/``nan``."""
    if name == "views":
        return ",".join(str(int(v)) for v in value) if value is not None else ""
    if name in ("yaw", "offset"):
        return float("nan") if value is None else float(value)
    return "" if value is None and name == "negative" else value
