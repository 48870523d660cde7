"""avsa_data.rng.rng_for: deterministic, key-sensitive, process-independent streams."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from avsa_data.rng import rng_for


def test_same_keys_same_stream_different_keys_different_stream():
    a = rng_for(7, "vid", 3).random(8)
    np.testing.assert_array_equal(a, rng_for(7, "vid", 3).random(8))
    for other in (
        rng_for(8, "vid", 3),
        rng_for(7, "vid", 4),
        rng_for(7, "vie", 3),
        rng_for(7, "vid", "3"),
        rng_for(7, 3, "vid"),
        rng_for(7, "vid"),
    ):
        assert not np.allclose(a, other.random(8))


def test_stream_is_stable_across_processes():
    """No salted hash(): a fresh interpreter (different PYTHONHASHSEED) draws the same numbers."""
    code = "from avsa_data.rng import rng_for; print(rng_for(7, 'vid', 3).integers(0, 2**31, 4).tolist())"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(s), "PATH": ""},
        ).stdout
        for s in (1, 2)
    }
    assert outs == {str(rng_for(7, "vid", 3).integers(0, 2**31, 4).tolist()) + "\n"}


def test_bad_keys_raise():
    with pytest.raises(ValueError, match="keys must be str or int"):
        rng_for(1, 1.5)
    with pytest.raises(ValueError, match="seed must be an int"):
        rng_for("1", "a")
