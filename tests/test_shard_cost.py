"""Where a shard job spends CPU besides the decode (issue 17): structural guards that can fail, not timings.

The benchmark (benchmarks/shard.py) measures the cost; these tests pin the choices that keep it down while the
shard bytes stay the same (tests/test_shards.py checks the bytes)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

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
