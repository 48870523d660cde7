"""Keep freed buffers in the process instead of handing them back to the kernel (data-loader workers, and the
process that runs the model on the CPU).

A loader worker decodes one item after another into buffers of a few MB (JPEG frames, float video, audio)
and drops each item before the next. glibc serves allocations above its *mmap threshold* with fresh
``mmap`` pages and returns them on ``free``, and trims the heap top above its *trim threshold*: so every item
page-faults its buffers in again (about 1 250 minor faults and 2.7 ms of kernel time per item at 1920×960 in
``benchmarks/loader.py``). Raising both thresholds with ``mallopt`` lets the next item reuse the pages.

Memory stays bounded: at most :data:`TRIM_THRESHOLD_BYTES` of freed heap is kept above the live data, and
blocks above :data:`MMAP_THRESHOLD_BYTES` (glibc's maximum) still go straight back to the kernel.
``benchmarks/loader.py --soak`` records the worker's RSS over 10 000 items.

A model's activations are large short-lived allocations too, and larger: at batch 32 × 4 views the video
encoder's feature maps pass glibc's largest mmap threshold (32 MB), so with :func:`keep_freed_buffers` every
forward pass still faulted them in afresh (250 000 minor faults and 0.5 s of kernel time per batch of the
demo's AVC-Bin encoding). :func:`keep_freed_activations`, for the process that runs the model on the CPU, serves
every size from the heap and keeps up to :data:`ACTIVATION_TRIM_BYTES` of it: the process stays at its peak
working set, which each step reaches again anyway. A loader worker forked from that process gets the bounds
above back from :func:`keep_freed_buffers`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: Allocations up to this size come from the reusable heap (32 MB is glibc's largest allowed value on 64-bit).
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Freed memory at the heap top kept for reuse before glibc trims it.
TRIM_THRESHOLD_BYTES = 128 * 2**20
#: Freed heap kept by the model process (:func:`keep_freed_activations`): above one step's activations.
ACTIVATION_TRIM_BYTES = 2**31 - 1  # mallopt takes a C int: 2 GiB
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: glibc's default limit on simultaneous mmap'ed blocks (``DEFAULT_MMAP_MAX``).
_GLIBC_MMAP_MAX = 65536


@functools.lru_cache(maxsize=1)
def _mallopt():
    """glibc's ``mallopt`` (``None`` where there is no glibc)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _set(*options: tuple[int, int]) -> bool:
    mallopt = _mallopt()
    return mallopt is not None and all(bool(mallopt(k, v)) for k, v in options)


def keep_freed_buffers() -> bool:
    """Set glibc's mmap and trim thresholds for this process (idempotent; blocks above the mmap threshold are
    mmap'ed again even in a process forked after :func:`keep_freed_activations`). False where there is no glibc."""
    return _set((_M_MMAP_MAX, _GLIBC_MMAP_MAX), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def keep_freed_activations() -> bool:
    """For the process that runs the model on the CPU: every allocation from the reusable heap (no ``mmap``), and
    up to :data:`ACTIVATION_TRIM_BYTES` of freed heap kept (idempotent). False where there is no glibc."""
    return _set((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, ACTIVATION_TRIM_BYTES))

