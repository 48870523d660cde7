"""avsa_train.allocator: loader workers reuse freed decode buffers instead of page-faulting them in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys
import numpy as np
from avsa_train import allocator
for mode in sys.argv[1].split(","):  # applied in order, as a model process and then its forked loader worker
    if mode != "default":
        assert getattr(allocator, mode)() is True
SIZES_MB = [int(x) for x in sys.argv[2].split(",")]
def item():  # an item's buffers: allocated, written, dropped together
    bufs = [np.ones(n * 2**20, np.uint8) for n in SIZES_MB]
    del bufs
for _ in range(5):
    item()  # warm up (glibc's dynamic thresholds settle)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    item()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 50)
"""


def faults(mode: str, sizes_mb: str) -> float:
    """Minor page faults per item in a fresh process with the allocator ``mode``."""
    out = subprocess.run([sys.executable, "-c", CHILD, mode, sizes_mb], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_buffers_are_reused_not_faulted_in_again():
    decode_buffers = "4,3,4,2"  # a loader item's JPEG frames, float video and audio (several MB in all)
    default, keep = faults("default", decode_buffers), faults("keep_freed_buffers", decode_buffers)
    assert default > 1000  # glibc default: the freed heap top is trimmed, and faulted in again by the next item
    assert keep < 50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_model_process_reuses_activations_above_the_mmap_limit():
    activations = "48,40,64"  # feature maps of a batch: above glibc's largest mmap threshold (32 MB)
    loader_setting = faults("keep_freed_buffers", activations)
    model_setting = faults("keep_freed_activations", activations)
    assert loader_setting > 500  # each block is mmap'ed afresh and faulted in again (huge pages: fewer faults)
    assert model_setting < 50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_loader_worker_forked_from_the_model_process_gets_its_own_bounds_back():
    # each block above the mmap threshold, together under the trim threshold: only mmap hands them back
    blocks = "40,40"
    worker = faults("keep_freed_activations,keep_freed_buffers", blocks)
    assert worker > 200  # mmap'ed afresh each item, as in any loader worker (without the reset: 0)
