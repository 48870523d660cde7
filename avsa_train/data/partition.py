"""The raw samples of one consumer for one epoch.

The shard list is shuffled per epoch with ``rng(seed, epoch)`` and dealt round-robin to the
``C = world_size × num_workers`` consumers, consumer ``c = rank · num_workers + worker``. When there are fewer
shards than consumers, every consumer reads every shard and keeps the samples whose running index ``i``
satisfies ``i % C == c``. Either way, each sample is seen **exactly once per epoch** across all consumers.
Shuffle buffers use ``rng(seed, "buffer", epoch, consumer)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from avsa_data.reader import RawSample, iter_raw
from avsa_data.rng import rng_for

from .sources import open_url


def consumer_shards(
    urls: Sequence[str], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool
) -> tuple[list[str], bool]:
    """Shards of one consumer for one epoch, and whether samples must be sub-split by index."""
    order = list(urls)
    if shuffle:
        order = [order[i] for i in rng_for(seed, "shards", epoch).permutation(len(order))]
    if len(order) >= consumers:
        return order[consumer::consumers], False
    return order, True


def consumer_epoch_size(
    urls: Sequence[str], sizes: dict[str, int], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool
) -> int:
    """Samples consumer ``consumer`` reads in ``epoch``, from the shards' sample counts (no reading)."""
    mine, subsplit = consumer_shards(urls, epoch, seed, consumer, consumers, shuffle)
    n = sum(sizes[u] for u in mine)
    if not subsplit:
        return n
    return len(range(consumer, n, consumers))


def iter_epoch_raw(
    urls: Sequence[str], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool, buffer: int,
    map_sample: Callable[[RawSample], RawSample] | None = None,
    wanted: Callable[[str], bool] | None = None,
) -> Iterator[RawSample]:
    """Raw samples of one consumer for one epoch (a partition of the epoch across consumers).

    ``map_sample`` (optional) maps each sample before it enters the shuffle buffer (e.g. :func:`prune_members`);
    ``wanted`` (optional, e.g. :func:`member_wanted`) names the members worth reading at all.
    """
    mine, subsplit = consumer_shards(urls, epoch, seed, consumer, consumers, shuffle)

    def raw() -> Iterator[RawSample]:
        i = 0
        for u in mine:
            with open_url(u) as f:
                for s in iter_raw(u, f, wanted=wanted):
                    if not subsplit or i % consumers == consumer:
                        yield s if map_sample is None else map_sample(s)
                    i += 1

    if not shuffle or buffer <= 1:
        yield from raw()
        return
    rng = rng_for(seed, "buffer", epoch, consumer)
    buf: list[RawSample] = []
    for s in raw():
        buf.append(s)
        if len(buf) >= buffer:
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
    while buf:
        j = int(rng.integers(len(buf)))
        buf[j], buf[-1] = buf[-1], buf[j]
        yield buf.pop()
