"""Shared pytest fixtures. Everything here is generated locally (:mod:`avsa_data.synth`); nothing is downloaded.

Synthetic raw sets and their shards come from :func:`test_data`, which builds each configuration once per session
through the library (no subprocess); tests that change files work on a :func:`copy_of` them."""

from __future__ import annotations

import os

# Before any test imports torch: OpenMP threads wait passively (see avsa_train/__init__.py). Subprocesses inherit.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avsa_data import synth
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, run_shard_job

#: The synthetic dataset used across the suite: small enough for 2 CPU cores, big enough to train on
#: (``avsa-data synth --videos 6 --duration 4 --size 512x256 --seed 3 --val-fraction 0.34``).
SYNTH = synth.SynthConfig(videos=6, duration=4.0, size=(512, 256), seed=3, val_fraction=0.34)
#: Shard options of the shared shard set: K=8 views, two moments per sample (AVTS), every render, masks.
SHARD_ARGS = ["--labels", "synthetic", "--moments-per-sample", "2", "--moment-gap", "1.0", "--shard-size", "4",
              "--seed", "0"]
#: :data:`SHARD_ARGS` as the library's job (test_shards checks that the command line's bytes equal its shards).
SHARD_JOB = JobConfig(sample=SampleConfig(moments_per_sample=2, moment_gap=1.0, seed=0), labels="synthetic",
                      shard_size=4)


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


class TestData:
    """Synthetic raw folders and shard folders, each made once per session under ``root`` and then shared: a
    raw folder per :class:`~avsa_data.synth.SynthConfig`, a shard folder per (source folder, job configuration).
    Tests read them and must not change them (:func:`copy_of` gives a private copy)."""

    __test__ = False  # not a test class

    def __init__(self, root: Path):
        self.root = root
        self._made: dict[tuple, Path] = {}

    def raw(self, cfg: synth.SynthConfig, workers: int = 2) -> Path:
        """The folder ``avsa-data synth`` writes for ``cfg`` (:func:`avsa_data.synth.generate`)."""
        key = ("raw", cfg)
        if key not in self._made:
            out = self.root / f"{len(self._made):02d}-raw" / ("STARSS23" if cfg.layout == "starss23" else "raw")
            synth.generate(cfg, out, workers=workers, progress=False)
            self._made[key] = out
        return self._made[key]

    def shards(self, src: Path, job: JobConfig, workers: int = 2) -> Path:
        """The shards ``avsa-data shard --src SRC`` writes with ``job`` (:func:`avsa_data.shards.run_shard_job`;
        the bytes do not depend on ``workers``)."""
        key = ("shards", str(src), job.config_hash)
        if key not in self._made:
            out = self.root / f"{len(self._made):02d}-shards" / "shards"
            run_shard_job(src, out, job, workers=workers, progress=False)
            self._made[key] = out
        return self._made[key]


@pytest.fixture(scope="session")
def test_data(tmp_path_factory) -> TestData:
    """The session's shared synthetic data (:class:`TestData`)."""
    return TestData(tmp_path_factory.mktemp("data"))


def copy_of(folder: Path, dst: Path) -> Path:
    """A private copy of a shared ``folder`` at ``dst``, for a test that changes, adds or removes files."""
    return Path(shutil.copytree(folder, dst))


@pytest.fixture(scope="session")
def synth_raw(test_data) -> Path:
    """The raw folder of :data:`SYNTH` (6 videos × 4 s, 512×256, 4 train + 2 val)."""
    return test_data.raw(SYNTH)


@pytest.fixture(scope="session")
def synth_shards(test_data, synth_raw) -> Path:
    """Shards of :func:`synth_raw` (train + val splits) with :data:`SHARD_JOB`."""
    return test_data.shards(synth_raw, SHARD_JOB)


@pytest.fixture(scope="session")
def stored_render_shards(test_data, synth_raw) -> Path:
    """:func:`synth_shards` with every viewpoint's renders stored too (``--renders foa,mono,stereo``): the same
    samples, viewpoints and unrotated FOA; the default stores none of them (readers make them from the FOA)."""
    job = replace(SHARD_JOB, sample=replace(SHARD_JOB.sample, renders=("foa", "mono", "stereo")))
    return test_data.shards(synth_raw, job)
