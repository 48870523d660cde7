"""avsa_train.allocator: loader workers reuse freed decode buffers instead of page-faulting them in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from avsa_train.allocator import keep_freed_buffers
    assert keep_freed_buffers() is True
def item():  # an item's buffers (several MB in all): allocated, written, dropped together
    bufs = [np.ones(n * 2**20, np.uint8) for n in (4, 3, 4, 2)]
    del bufs
for _ in range(5):
    item()  # warm up (glibc's dynamic thresholds settle)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    item()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 50)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_buffers_are_reused_not_faulted_in_again():
    def faults(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True)
        return float(out.stdout.strip())

    default, keep = faults("default"), faults("keep")
    assert default > 1000  # glibc default: the freed heap top is trimmed, and faulted in again by the next item
    assert keep < 50
