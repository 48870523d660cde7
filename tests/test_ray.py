"""`avsa-data shard --engine ray`: same bytes as the local engine, and resumable after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import ray  # noqa: E402,F401  (the [ray] extra is part of [dev]: a missing Ray fails here, it is not skipped)
from conftest import SHARD_ARGS, run_cli


def _tars(d):
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.tar"))} | {"manifest": (d / "manifest.json").read_bytes()}


@pytest.fixture(scope="module", autouse=True)
def _no_stray_ray():
    yield
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)


def test_ray_engine_is_byte_identical_to_local(synth_raw, synth_shards, tmp_path):
    out = tmp_path / "ray"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "--engine", "ray",
            "-j", "2", "-q")
    assert _tars(out) == _tars(synth_shards)


def test_ray_engine_publishes_to_a_url(synth_raw, synth_shards, tmp_path):
    """With a URL --out the Ray tasks write fragments to the staging folder and the driver uploads the shards."""
    out = tmp_path / "bucket"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", out.as_uri(), *SHARD_ARGS, "--engine", "ray",
            "--staging", str(tmp_path / "staging"), "-j", "2", "-q")
    assert _tars(out) == _tars(synth_shards)
    assert not (tmp_path / "staging").exists()


def test_killed_ray_job_resumes_to_the_same_bytes(synth_raw, synth_shards, tmp_path):
    out = tmp_path / "ray_killed"
    cmd = [sys.executable, "-m", "avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS,
           "--engine", "ray", "-j", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        frag = out / ".work" / "frag"
        if frag.exists() and len(list(frag.glob("*.tar"))) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "--engine", "ray",
            "-j", "2", "-q")
    assert _tars(out) == _tars(synth_shards)
