"""The downstream tasks' one point of contact with the training data pipeline (:mod:`avsa_train.data`).

The tasks read the same shards and decode them with the same :func:`avsa_train.data.decode_item` as
pre-training (view selection from the bank, colour jitter, consistent flips of video, audio and masks, the
Kinetics normalisation), so a representation is evaluated on inputs prepared exactly as it was trained on.
This module only adapts: which shards belong to a split, the raw samples of one epoch for the calling
DataLoader worker, and the :class:`~avsa_train.data.StreamConfig` of a phase.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from avsa_data.reader import RawSample
from avsa_train import data as avdata


def shard_urls(shards: str | Path | list[str], split: str) -> list[str]:
    """The shards of ``split`` (``{split}-NNNNNN.tar``) in a folder, glob, brace pattern or list."""
    urls = avdata.split_urls(avdata.expand_urls(shards if isinstance(shards, list) else str(shards)), split)
    if not urls:
        raise ValueError(f"no '{split}' shards ({split}-NNNNNN.tar) in {shards}")
    return urls


def split_sample_count(shards: str | Path, split: str) -> int | None:
    """Samples of ``split`` listed in ``SHARDS/manifest.json`` (a folder or an fsspec URL of one), or ``None``
    without a manifest."""
    try:
        m = avdata.read_manifest(str(shards))
        if m is None:
            return None
        return sum(int(s["num_samples"]) for s in m["shards"] if s["split"] == split)
    except (KeyError, ValueError, TypeError):
        return None


def split_video_count(shards: str | Path, split: str) -> int | None:
    """Videos with samples in ``split``, from ``SHARDS/manifest.json``; ``None`` without a manifest."""
    try:
        m = avdata.read_manifest(str(shards))
        if m is None:
            return None
        return sum(1 for v in m["videos"].values() if v.get("split") == split and v.get("samples", 0) > 0)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def viewpoint_sampler(shards: str | Path) -> str | None:
    """The ``--sampler`` the shards were made with (``manifest.json`` ``config.sample.sampler``), or ``None``
    when there is no manifest to say."""
    try:
        m = avdata.read_manifest(str(shards))
        return None if m is None else m["config"]["sample"]["sampler"]
    except (KeyError, ValueError, TypeError):
        return None


def stream_config(**kw) -> avdata.StreamConfig:
    """A :class:`avsa_train.data.StreamConfig` (keyword arguments only)."""
    return avdata.StreamConfig(**kw)


def eval_config(cfg: avdata.StreamConfig) -> avdata.StreamConfig:
    """``cfg`` with every augmentation off but random view selection kept (the reference evaluates on random
    crops without flips or colour jitter)."""
    from dataclasses import replace

    return replace(cfg, train=True, flip_p=0.0, color_jitter=False, volume_jitter=0.0)


def raw_samples(urls: list[str], epoch: int, seed: int, shuffle: bool, buffer: int = 16) -> Iterator[RawSample]:
    """The raw samples of one epoch for the calling DataLoader worker (a partition of the epoch across
    workers), in a shuffled order when ``shuffle``, deterministic for ``(seed, epoch)``."""
    cfg = avdata.StreamConfig(seed=seed, train=shuffle, shuffle_buffer=buffer)
    stream = avdata.ShardStream(urls, cfg, start_epoch=epoch, infinite=False)
    for _, s in stream.iter_raw_samples():
        yield s


#: ``DataLoader(worker_init_fn=...)`` of the tasks' loaders: the settings of a pre-training loader worker
#: (:func:`avsa_train.data.loader_worker_init`).
worker_init = avdata.loader_worker_init


def decode(sample: RawSample, cfg: avdata.StreamConfig, epoch: int) -> dict:
    """:func:`avsa_train.data.decode_item`: ``video [M, V, 3, T, H, W]``, ``audio [M, V, C, n]``, optional
    ``seg``/``conf`` ``[M, V, 56, 56]``, ``views`` (bank indices), ``flip``, ``key``."""
    return avdata.decode_item(sample, cfg, epoch)


def views_in_range(sample: RawSample, hfov_range: tuple[float, float] | None) -> list[int]:
    """Bank indices of the viewpoints whose horizontal field of view (degrees) lies in ``hfov_range``."""
    views = sample.meta["viewpoints"]
    if hfov_range is None:
        return list(range(len(views)))
    lo, hi = hfov_range
    return [k for k, v in enumerate(views) if lo <= float(v["hfov"]) <= hi]
