"""Deterministic random generators: one independent stream per (seed, key, key, …).

Every random choice in avsa_data draws from ``rng_for(seed, *keys)`` — e.g. ``rng_for(seed, video_id, moment)``
— and never from global state, so results do not depend on worker count, processing order or the Python
process (keys are hashed with SHA-256, not with Python's salted ``hash()``).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def _key_entropy(seed: int, keys: tuple[str | int, ...]) -> list[int]:
    parts: list[str | int] = [int(seed)]
    for k in keys:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, int, np.integer)):
            raise ValueError(f"rng_for: keys must be str or int, got {type(k).__name__} {k!r}")
        parts.append(k if isinstance(k, str) else int(k))
    # JSON keeps "1" and 1 apart; the digest is the same on every platform and Python version.
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """A ``numpy.random.Generator`` determined only by ``seed`` and the ordered ``keys`` (str or int).

    ``rng_for(7, "vid3", 0)`` gives the same stream on every run, machine and worker; changing any key
    gives an unrelated stream.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"rng_for: seed must be an int, got {type(seed).__name__} {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(_key_entropy(int(seed), keys)))
