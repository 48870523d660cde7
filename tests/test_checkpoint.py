"""Checkpoint safety and integrity (issue 14): no unpickling of code, checksums, durable writes, leftovers.

The malicious checkpoint is a real ``torch.save`` file whose config holds an object whose ``__reduce__`` creates
a marker file when unpickled; a control test proves the payload is live (the marker does appear with
``weights_only=False``), so the refusals below are not vacuous.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from avsa_data.fsutil import atomic_write, remove_stale_tmp
from avsa_train.checkpoint import (
    CheckpointError,
    build_model,
    config_changes,
    load_checkpoint,
    load_encoders,
    save_checkpoint,
    state_checksum,
)

CONFIG = {"width": 0.125, "audio_format": "mono", "spec": "stft129", "depth": 1, "task": "avsa"}


class Payload:
    """Unpickling this runs ``touch MARKER`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CONFIG)


@pytest.fixture
def good(tmp_path, model) -> Path:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sum(p.sum() for p in model.parameters()).backward()
    opt.step()  # an optimiser state with tensors, floats, tuples and bools
    return save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, opt, None, 7, 1, CONFIG)


def _evil(tmp_path: Path, model) -> tuple[Path, Path]:
    """A checkpoint shaped like avsa's whose config carries :class:`Payload`; returns (file, marker)."""
    marker = tmp_path / "PWNED"
    state = {k: getattr(model, k).state_dict() for k in ("video", "audio", "translator")}
    state.update(config={**CONFIG, "note": Payload(marker)}, step=1, epoch=0, format=1)
    path = tmp_path / "evil" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path, marker


def _tensor_offset(path: Path, member: str = "data/0") -> tuple[int, int]:
    """(offset, size) of a stored tensor's raw bytes inside the checkpoint's zip."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/" + member))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


# --------------------------------------------------------------------------------------------- round trip


def test_a_good_checkpoint_round_trips(good, model):
    state = load_checkpoint(good)
    assert state["format"] == 2 and state["checksum"].startswith("sha256:") and state["step"] == 7
    assert state["checksum"] == state_checksum(state)
    for k in ("video", "audio", "translator"):
        torch.testing.assert_close(state[k], getattr(model, k).state_dict(), rtol=0, atol=0)
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    video, audio, translator, cfg = load_encoders(good)
    assert cfg == CONFIG and translator.depth == 1
    torch.testing.assert_close(video.state_dict(), model.video.state_dict(), rtol=0, atol=0)
    assert [p.name for p in good.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_saved_configs_become_plain_types(tmp_path, model):
    """Paths, numpy numbers and arrays are stored as str / float / tensor (weights_only loads them)."""
    cfg = {**CONFIG, "shards": Path("/data/shards"), "lr": np.float32(0.5), "steps": np.int64(3),
           "mean": np.arange(3.0)}
    state = load_checkpoint(save_checkpoint(tmp_path / "c.pt", model, None, None, 1, 0, cfg))
    assert state["config"]["shards"] == "/data/shards" and state["config"]["lr"] == 0.5
    assert type(state["config"]["steps"]) is int and torch.equal(state["config"]["mean"], torch.arange(3.0).double())
    with pytest.raises(TypeError, match=r"checkpoint\['config'\]\['bad'\] is a builtins.object"):
        save_checkpoint(tmp_path / "d.pt", model, None, None, 1, 0, {**CONFIG, "bad": object()})
    assert not (tmp_path / "d.pt").exists()


def test_a_format_1_checkpoint_without_checksum_still_loads(tmp_path, good):
    old = tmp_path / "old.pt"
    state = load_checkpoint(good)
    del state["checksum"]
    state["format"] = 1
    torch.save(state, old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_checkpoint(old)["step"] == 7
    assert any("integrity cannot be checked" in str(w.message) for w in caught)


# ------------------------------------------------------------------------------------------------- integrity


def test_a_bit_flip_in_a_tensor_is_detected(good):
    state = load_checkpoint(good)
    offset, size = _tensor_offset(good)
    data = bytearray(good.read_bytes())
    data[offset + size // 2] ^= 0x04  # one bit of a stored weight
    good.write_bytes(bytes(data))
    assert torch.load(good, weights_only=True)["checksum"] == state["checksum"]  # torch itself does not notice
    with pytest.raises(CheckpointError, match="checksum mismatch") as e:
        load_checkpoint(good)
    assert str(good) in str(e.value) and "\n" not in str(e.value)


def test_a_changed_number_is_detected(tmp_path, good):
    state = load_checkpoint(good)
    state["step"] = 8  # an edited (or corrupted) field, re-saved without a new checksum
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "edited.pt")


def test_a_truncated_checkpoint_gets_one_line(tmp_path, good):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable avsa checkpoint") as e:
        load_checkpoint(cut)
    assert str(cut) in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------- security


def test_one_rule_decides_whether_a_checkpoint_continues_a_run():
    """``config_changes``: pretrain --resume warns about the data-order options it returns, ablate resumes a
    cell only when it returns none. Where, on which device and how verbosely a run works never count; a worker
    count left to resolve at start (``None``) matches the saved, resolved one; a key the checkpoint lacks counts."""
    from avsa_train.config import DATA_ORDER_KEYS, PretrainConfig

    saved = PretrainConfig(shards="s", workers=3).as_dict()
    assert config_changes(saved, dict(saved)) == []
    moved = PretrainConfig(shards="s", workers=None, out="elsewhere", device="cpu", quiet=True).as_dict()
    assert config_changes(saved, moved) == []
    other = PretrainConfig(shards="s", workers=2, lr=0.5, batch_size=4, seed=9).as_dict()
    assert config_changes(saved, other) == ["batch_size", "lr", "seed", "workers"]  # sorted
    assert config_changes(saved, other, DATA_ORDER_KEYS) == ["seed", "batch_size", "workers"]  # as asked
    old = {k: v for k, v in saved.items() if k != "spec"}  # a checkpoint from before an option existed
    assert config_changes(old, saved) == ["spec"]
    assert config_changes({**saved, "max_steps": 10}, saved) == ["max_steps"]  # None matches only for workers


def test_the_payload_is_live(tmp_path, model):
    """Control: unpickled the unsafe way, the evil checkpoint does run its command."""
    path, marker = _evil(tmp_path, model)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_pickled_object_is_refused_by_the_library(tmp_path, model):
    path, marker = _evil(tmp_path, model)
    for load in (load_checkpoint, load_encoders):
        with pytest.raises(CheckpointError, match="refused to load: it holds a pickled posix.system") as e:
            load(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("flag", ["--init", "--resume", "--ckpt"])
def test_a_pickled_object_is_refused_through_the_cli(tmp_path, model, flag, synth_shards):
    """pretrain --init / --resume and eval --ckpt exit non-zero with one line naming the file; nothing runs."""
    path, marker = _evil(tmp_path, model)
    shards = str(synth_shards)
    args = {
        "--init": ["avsa_train", "pretrain", "--shards", shards, "--init", str(path), "--out", str(tmp_path / "o")],
        "--resume": ["avsa_train", "pretrain", "--resume", "--out", str(path.parent)],
        "--ckpt": ["avsa_train", "eval", "avc", "--shards", shards, "--ckpt", str(path), "--out", str(tmp_path / "o")],
    }[flag]
    r = run_cli(*args, "--device", "cpu", check=False, timeout=300)
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(err) == 1 and err[0].startswith("Error: ") and str(path) in err[0] and "refused" in err[0], r.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------------ durable atomic writes


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced, real = [], os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write(tmp_path / "x.bin", lambda f: f.write(b"data"))
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    assert synced[0].endswith(f".x.bin.{os.getpid()}.tmp")  # the data, before the rename
    assert synced[-1] == str(tmp_path)  # the rename


def test_a_failed_write_leaves_neither_file(tmp_path):
    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "checkpoint.pt", fail)
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import sys, time
from avsa_data.fsutil import atomic_write
def write(f):
    f.write(b"x" * 1000); f.flush(); print("writing", flush=True); time.sleep(600)
atomic_write(sys.argv[1], write)
"""


def test_a_writer_killed_mid_write_leaves_a_temp_that_the_next_run_removes(tmp_path):
    """kill -9 during a checkpoint write: no checkpoint.pt appears; the stale .checkpoint.pt.PID.tmp is removed
    by remove_stale_tmp, while a live writer's temporary file and unrelated files are kept."""
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "checkpoint.pt")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    stale = tmp_path / f".checkpoint.pt.{p.pid}.tmp"
    assert stale.is_file() and not (tmp_path / "checkpoint.pt").exists()
    live = tmp_path / f".metrics.jsonl.{os.getpid()}.tmp"  # this process is alive
    other = tmp_path / f".notes.txt.{p.pid}.tmp"
    for f in (live, other):
        f.write_bytes(b"")
    removed = remove_stale_tmp(tmp_path, keep=lambda name: name in ("checkpoint.pt", "metrics.jsonl"))
    assert removed == [stale] and live.exists() and other.exists() and not stale.exists()


# --------------------------------------------------------------------------- pretrain: stale temps, torn metrics


def test_resume_removes_stale_temps_and_tolerates_a_torn_metrics_line(synth_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "run"
    base = ["avsa_train", "pretrain", "--shards", str(synth_shards / "train-000000.tar"), "--task", "avc",
            "--batch-size", "2", "--steps-per-epoch", "2", "--workers", "0", "--width", "0.125", "--device", "cpu",
            "-q"]
    run_cli(*base, "--out", str(run), "--max-steps", "2")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [run / f".checkpoint.pt.{dead.pid}.tmp", run / f".checkpoint-step4.pt.{dead.pid}.tmp"]
    for f in stale:
        f.write_bytes(b"\x00" * 100)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    assert len(lines) == 2
    metrics.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[1][:17])  # a kill while writing step 3's line
    r = run_cli("avsa_train", "pretrain", "--out", str(run), "--resume", "--max-steps", "3", "-q")
    assert "dropped its torn last line" in r.stderr and "removed 2 temporary file(s)" in r.stderr, r.stderr
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3]
    assert not any(f.exists() for f in stale)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
