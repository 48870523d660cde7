"""Batches: the item stream of one rank, epoch after epoch, one collate function and one loader factory.

Determinism. Batching happens in the worker; PyTorch's DataLoader returns worker batches round-robin, so the
data order is a pure function of (seed, start epoch, steps done): :meth:`ShardStream.resume_at` skips exactly
the samples already consumed, which makes ``--resume`` reproduce the uninterrupted run. After a resume at ``S``
batches, DataLoader worker ``w`` plays the part of worker ``(w + S) mod num_workers`` of the uninterrupted run,
so the round-robin order continues where it stopped; whole epochs are skipped by count (from ``manifest.json``)
without reading them. Resuming with a different ``--workers``, world size, batch size or seed gives a different
(still valid) order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from avsa_data.jobcontrol import usable_cpus
from avsa_data.reader import RawSample

from .. import allocator
from .items import decode_item
from .members import member_wanted, prune_members
from .partition import consumer_epoch_size, iter_epoch_raw
from .stream_config import StreamConfig


class ItemPolicy(Protocol):
    """What a stream makes of each raw sample: pre-training's one augmented item (:class:`TrainingItems`), or a
    downstream task's items (binary evaluation, segmentation, the direction probe's row groups)."""

    #: Read only the members ``decode_item(·, cfg)`` uses (:func:`~avsa_train.data.members.member_wanted`).
    #: Off where an item needs more, e.g. a binary negative rendered from the FOA of a sample with HRIR stereo.
    prune: bool
    #: Item fields :func:`collate` keeps as Python lists (strings, nested lists, per-item columns).
    columns: tuple[str, ...]
    #: Each item is a group of rows (arrays ``[R, ...]``, columns as lists of ``R``) that :func:`collate` joins
    #: end to end instead of stacking: the direction probe's every (moment, view) of a sample.
    rows: bool

    def items(self, sample: RawSample, epoch: int) -> Iterable[dict]:
        """The items of ``sample`` in data epoch ``epoch``."""
        ...


@dataclass(frozen=True)
class TrainingItems:
    """Pre-training's policy: one decoded, augmented item per sample (:func:`~avsa_train.data.items.decode_item`)."""

    cfg: StreamConfig
    prune: bool = True
    columns: tuple[str, ...] = ("key", "events")
    rows: bool = False

    def items(self, sample: RawSample, epoch: int) -> Iterator[dict]:
        yield decode_item(sample, self.cfg, epoch)


def collate(items: list[dict], columns: Sequence[str] = ("key", "events"), rows: bool = False) -> dict:
    """A batch of ``items`` (dicts with the same fields): numpy arrays stacked into one tensor (``[B, ...]``), the
    fields named in ``columns`` as Python lists, other values (bools, ints) as one tensor of ``B``. ``rows``: each
    item is a group of rows, and the batch is their rows end to end (arrays concatenated along the first axis,
    ``columns`` lists joined)."""
    out = {}
    for name, first in items[0].items():
        values = [it[name] for it in items]
        if name in columns:
            out[name] = [v for group in values for v in group] if rows else values
        elif isinstance(first, np.ndarray):
            out[name] = torch.from_numpy(np.concatenate(values) if rows else np.stack(values))
        else:
            out[name] = torch.tensor(values)
    return out


class ShardStream(IterableDataset):
    """Stream of collated batches for one rank, epoch after epoch (or one epoch); see the module docstring.

    Args:
        urls: the shards (e.g. ``split_urls(expand_urls(folder), "train")``).
        cfg: the order (``seed``, ``train`` = shuffled, ``shuffle_buffer``) and the batches (``batch_size``,
            ``drop_last``); for pre-training also what each item holds.
        policy: the items of each sample (:class:`ItemPolicy`); pre-training's :class:`TrainingItems` of ``cfg``
            when not given.
        rank, world_size: this process's DDP rank and the number of ranks.
        start_epoch: the first data epoch of the stream.
        infinite: continue with the next epoch at the end of one (training); ``False``: one epoch only.
        sizes: samples per shard URL (:func:`shard_sizes`); lets :meth:`resume_at` skip whole epochs unread.
    """

    def __init__(
        self,
        urls: Sequence[str],
        cfg: StreamConfig,
        policy: ItemPolicy | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        infinite: bool = True,
        sizes: dict[str, int] | None = None,
    ):
        super().__init__()
        if not urls:
            raise ValueError("no shards given")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.urls = list(urls)
        self.cfg = cfg
        self.policy = policy if policy is not None else TrainingItems(cfg)
        self.rank, self.world_size = rank, world_size
        self.start_epoch = start_epoch
        self.infinite = infinite
        self.sizes = {u: int(sizes[u]) for u in self.urls} if sizes and all(u in sizes for u in self.urls) else None
        self.skip_batches = 0  # batches of this rank already consumed (resume)

    def resume_at(self, epoch: int, batches_done_in_epoch_stream: int) -> None:
        """Continue the stream that started at ``epoch`` after this rank consumed that many batches.

        The trainer calls ``resume_at(0, steps_done)``: the data order is then the one of the uninterrupted run
        (same seed, world size, workers and batch size).
        """
        if batches_done_in_epoch_stream < 0:
            raise ValueError(f"batches done must be ≥ 0, got {batches_done_in_epoch_stream}")
        self.start_epoch = epoch
        self.skip_batches = batches_done_in_epoch_stream

    def _worker(self) -> tuple[int, int]:
        """(logical worker id, workers): DataLoader worker ``w`` continues the part of worker ``(w + S) mod nw``
        of the uninterrupted run, so that the round-robin order over workers resumes at batch ``S``."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return (wid + self.skip_batches) % nw, nw

    def _consumer(self) -> tuple[int, int, int]:
        wid, nw = self._worker()
        return self.rank * nw + wid, self.world_size * nw, wid

    def _skipped_samples(self) -> int:
        """Samples this (logical) worker consumed before the resume point: the batches it made times B."""
        wid, nw = self._worker()
        return max(0, -(-(self.skip_batches - wid) // nw)) * self.cfg.batch_size

    def iter_raw_samples(self, skip: int = 0, prune: bool = False) -> Iterator[tuple[int, RawSample]]:
        """(epoch, raw sample) pairs of this consumer, epoch after epoch, after the first ``skip`` ones.

        Whole epochs inside ``skip`` are passed over without reading when the shard sizes are known.
        ``prune``: leave unread, or drop, the members this stream's items never use (:func:`member_wanted`,
        :func:`prune_members`).
        """
        c, C, _ = self._consumer()
        cfg = self.cfg
        map_sample = (lambda s: prune_members(s, cfg)) if prune else None
        wanted = member_wanted(cfg) if prune else None
        epochs = itertools.count(self.start_epoch) if self.infinite else iter([self.start_epoch])
        for e in epochs:
            if skip and self.sizes is not None:
                n = consumer_epoch_size(self.urls, self.sizes, e, cfg.seed, c, C, cfg.train)
                if 0 < n <= skip:
                    skip -= n
                    continue
            n = 0
            for s in iter_epoch_raw(self.urls, e, cfg.seed, c, C, cfg.train, cfg.shuffle_buffer, map_sample, wanted):
                n += 1
                if skip:
                    skip -= 1
                    continue
                yield e, s
            if n == 0 and self.infinite:
                raise ValueError(
                    f"consumer {c} of {C} (rank × DataLoader worker) got no sample in epoch {e}: there are more "
                    f"consumers than samples; use fewer --workers or ranks"
                )

    def iter_items(self) -> Iterator[dict]:
        """The items of this stream one by one, unbatched (from the start: no resume)."""
        for e, s in self.iter_raw_samples(prune=self.policy.prune):
            yield from self.policy.items(s, e)

    def __iter__(self) -> Iterator[dict]:
        batch: list[dict] = []
        for e, s in self.iter_raw_samples(self._skipped_samples(), prune=self.policy.prune):
            for item in self.policy.items(s, e):
                batch.append(item)
                if len(batch) == self.cfg.batch_size:
                    yield collate(batch, self.policy.columns, self.policy.rows)
                    batch = []
        if batch and not self.cfg.drop_last:
            yield collate(batch, self.policy.columns, self.policy.rows)


def auto_workers(world_size_on_node: int = 1) -> int:
    """DataLoader workers per rank that keep a GPU fed: the node's CPUs shared by its ranks, at most 8."""
    return max(1, min(8, usable_cpus() // max(1, world_size_on_node) - 1))


def loader_worker_init(_worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: the settings of a loader worker process. glibc keeps freed decode
    buffers (:func:`avsa_train.allocator.keep_freed_buffers`), and numpy's BLAS runs on one thread: a worker is one
    core's share, and an idle OpenBLAS pool spin-waits after each small matrix product (the renders'
    rotations), which doubled a worker's CPU time per item in ``benchmarks/loader.py``."""
    from threadpoolctl import threadpool_limits

    allocator.keep_freed_buffers()
    threadpool_limits(1, user_api="blas")


def make_loader(
    stream: ShardStream, num_workers: int = 2, pin_memory: bool | None = None, seed: int | None = 0
) -> DataLoader:
    """The one DataLoader of the project: over a stream's worker-side batches (``batch_size=None``), pinned when
    CUDA is available (or as ``pin_memory`` says), each worker with :func:`loader_worker_init`.

    With a ``seed`` it draws its worker seeds from its own generator, never from torch's global RNG, so creating
    it does not shift the dropout masks of the model (pre-training's exact resume). ``seed=None`` draws them
    from the global RNG, as the downstream tasks' loaders always have (their recorded results depend on it).
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=None if seed is None else torch.Generator().manual_seed(int(seed)),
        worker_init_fn=loader_worker_init if num_workers > 0 else None,
    )


def epoch_stream(
    urls: Sequence[str], policy: ItemPolicy, *, epoch: int, seed: int, shuffle: bool, buffer: int, batch_size: int
) -> ShardStream:
    """One data epoch of ``urls`` as a downstream task reads it: ``policy``'s items of every sample, the samples
    shuffled when ``shuffle`` (``rng(seed, epoch)``, a buffer of ``buffer`` per worker) and in shard order
    otherwise, in batches of ``batch_size`` with the last partial one kept."""
    cfg = StreamConfig(seed=seed, train=shuffle, shuffle_buffer=buffer, batch_size=batch_size, drop_last=False)
    return ShardStream(urls, cfg, policy, start_epoch=epoch, infinite=False)

