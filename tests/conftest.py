"""Shared pytest fixtures. Everything here is generated locally (``avsa-data synth``); nothing is downloaded."""

from __future__ import annotations

import os

# Before any test imports torch: OpenMP threads wait passively (see avsa_train/__init__.py). Subprocesses inherit.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: The synthetic dataset used across the suite: small enough for 2 CPU cores, big enough to train on.
SYNTH_ARGS = ["--videos", "6", "--duration", "4", "--size", "512x256", "--seed", "3", "--val-fraction", "0.34"]
#: Shard options of the shared shard set: K=8 views, two moments per sample (AVTS), every render, masks.
SHARD_ARGS = ["--labels", "synthetic", "--moments-per-sample", "2", "--moment-gap", "1.0", "--shard-size", "4",
              "--seed", "0"]


def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m avsa_data ...`` / ``avsa_train`` in a subprocess, as a user would."""
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


#: How the tests run a small training or evaluation command: data loading in-process, on the CPU, quietly.
ON_CPU = ("--workers", "0", "--device", "cpu", "-q")


def run_train(*args: str, out: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``avsa-train ARGS --out OUT`` with :data:`ON_CPU`, in a subprocess (:func:`run_cli`)."""
    return run_cli("avsa_train", *args, *ON_CPU, "--out", str(out), check=check)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory) -> Path:
    """A raw folder from ``avsa-data synth`` (6 videos × 4 s, 512×256, 4 train + 2 val)."""
    out = tmp_path_factory.mktemp("synth") / "raw"
    run_cli("avsa_data", "synth", "--out", str(out), *SYNTH_ARGS, "--workers", "2")
    return out


@pytest.fixture(scope="session")
def synth_shards(synth_raw, tmp_path_factory) -> Path:
    """Shards of :func:`synth_raw` (train + val splits) with ``SHARD_ARGS``."""
    out = tmp_path_factory.mktemp("shards") / "shards"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "-j", "2", "-q")
    return out


@pytest.fixture(scope="session")
def stored_render_shards(synth_raw, tmp_path_factory) -> Path:
    """:func:`synth_shards` with every viewpoint's renders stored too (``--renders foa,mono,stereo``): the same
    samples, viewpoints and unrotated FOA; the default stores none of them (readers make them from the FOA)."""
    out = tmp_path_factory.mktemp("shards_stored") / "shards"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "--renders",
            "foa,mono,stereo", "-j", "2", "-q")
    return out
