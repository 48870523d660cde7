"""Where a shard job spends CPU besides the decode (issue 17): structural guards that can fail, not timings.

The benchmark (benchmarks/shard.py) measures the cost; these tests pin the choices that keep it down while the
shard bytes stay the same (tests/test_shards.py checks the bytes)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from avsa_data import synth
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, run_shard_job

JOB = JobConfig(sample=SampleConfig(viewpoints_per_moment=2, crop_size=32), shard_size=4)
SYNTH = synth.SynthConfig(videos=2, duration=2.0, size=(256, 128), seed=7)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cost") / "raw"
    for i in range(SYNTH.videos):
        synth.write_scene(synth.make_scene(SYNTH, i), SYNTH, out)
    return out


def test_decoder_threads_leave_one_core_per_sample_builder():
    from avsa_data.shards.video import decoder_threads

    assert decoder_threads(1, cores=2) == 1  # this benchmark machine: the builder on one core, the decoder on the other
    assert decoder_threads(1, cores=16) == 15  # an idle many-core machine keeps a fast multi-threaded decode
    assert decoder_threads(4, cores=16) == 3
    assert decoder_threads(16, cores=16) == decoder_threads(32, cores=16) == 1  # at least one each
    assert decoder_threads(0, cores=2) == 1


def test_the_shard_job_decodes_with_the_decoder_thread_policy(raw, tmp_path, monkeypatch):
    from avsa_data.shards.video import decoder_threads

    decodes = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *a, **k):
            if "rawvideo" in args:
                decodes.append(list(args))
            super().__init__(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    run_shard_job(raw, tmp_path / "out", JOB, workers=1, progress=False)
    assert len(decodes) == SYNTH.videos
    for cmd in decodes:  # an input option: before -i
        assert cmd[cmd.index("-threads") + 1] == str(decoder_threads(1)) and cmd.index("-threads") < cmd.index("-i")


def test_each_video_starts_ffmpeg_three_times(raw, tmp_path, monkeypatch):
    """One probe (header + packet scan), one audio decode, one frame decode per video: the probe's result is
    handed to the audio lookup and the frame decoder instead of probing the header again (an ffmpeg start costs
    ~30 CPU-ms per video)."""
    runs: Counter = Counter()
    real = subprocess.Popen

    class Counting(real):
        def __init__(self, args, *a, **k):
            for v in sorted(raw.glob("*.mp4")):
                if str(v) in map(str, args):
                    runs[v.name] += 1
            super().__init__(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", Counting)
    report = run_shard_job(raw, tmp_path / "out", JOB, workers=1, progress=False)
    assert report.samples > 0
    assert runs == {v.name: 3 for v in raw.glob("*.mp4")}, runs


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A tar written the way the shard writer wrote it before issue 17: tarfile.addfile, member by member."""
    import io
    import tarfile

    from avsa_data.tario import canonical_tarinfo

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(canonical_tarinfo(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


KEYS = ("a", "b", "vidéo")  # a video id may be any file name: tarfile encodes member names as UTF-8


def assemble(frag: Path, wanted: set[str], dst: Path) -> bytes:
    from avsa_data.tario import copy_runs, end_of_archive, fragment_runs

    with open(frag, "rb") as src, open(dst, "wb", buffering=0) as f:
        copy_runs(src, f, fragment_runs(frag, wanted))
        f.write(end_of_archive(f.tell()))
    return dst.read_bytes()


@pytest.mark.parametrize("kernel_copy", [True, False])
@pytest.mark.parametrize("wanted", [{"a", "b", "vidéo"}, {"b"}, {"a", "vidéo"}, set()])
def test_shards_copy_fragment_blocks_byte_for_byte(tmp_path, monkeypatch, wanted, kernel_copy):
    """Phase 1 writes a fragment's tar blocks itself and assembly copies those of the wanted samples: both equal
    the tars that writing the same members with tarfile gives (sizes 0, 1, 511, 512, 513 and larger; the end-of-archive
    padding to tarfile's record size; samples left out in the middle)."""
    from avsa_data.samples import EncodedSample
    from avsa_data.tario import add_sample, end_of_archive

    rng = np.random.default_rng(0)
    sizes = [0, 1, 511, 512, 513, 10240, 20000]
    members = [(f"{key}.m{i}.bin", rng.integers(0, 256, n, dtype=np.uint8).tobytes())
               for key in KEYS for i, n in enumerate(sizes)]
    frag = tmp_path / "frag.tar"
    with open(frag, "wb") as f:  # a fragment as phase 1 writes it: each sample's members, then the archive's end
        for key in KEYS:
            mine = [(n.split(".", 1)[1], d) for n, d in members if n.split(".", 1)[0] == key]
            add_sample(f, EncodedSample(key, mine))
        f.write(end_of_archive(f.tell()))
    assert frag.read_bytes() == _tar_bytes(members)
    if not kernel_copy:  # a file system (or OS) without copy_file_range: the bytes go through memory
        def refuse(*_a, **_k):
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    got = assemble(frag, wanted, tmp_path / "shard.tar")
    assert got == _tar_bytes([(n, d) for n, d in members if n.split(".", 1)[0] in wanted])


def test_a_truncated_fragment_is_an_error(tmp_path):
    import tarfile

    whole = _tar_bytes([("a.x.bin", bytes(5000)), ("a.y.bin", bytes(5000))])
    frag = tmp_path / "frag.tar"
    for cut in (4000, 512 + 5120 + 512 + 100):  # inside the first member's data, inside the last one's
        frag.write_bytes(whole[:cut])
        with pytest.raises(tarfile.ReadError, match="past the end|unexpected end"):
            assemble(frag, {"a"}, tmp_path / "shard.tar")
