"""The ``energy`` viewpoint sampler puts views where the sound comes from; dense synthetic scenes."""

from __future__ import annotations

import numpy as np
import pytest

from avsa_data import ambisonics, synth
from avsa_data.geometry import angular_distance
from avsa_data.samples import SampleConfig, sample_viewpoints
from avsa_data.viewpoints import energy_map, sample_energy

SR = 24000


def _two_sources(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 440 * t)
    noise = rng.standard_normal(SR) * 0.5
    return (ambisonics.encode(tone, 60.0, 10.0) + ambisonics.encode(noise, -40.0, -5.0)
            + 0.02 * rng.standard_normal((4, SR)))


def test_energy_map_peaks_at_each_source():
    foa = _two_sources(np.random.default_rng(0))
    az, el = np.meshgrid(np.arange(-180.0, 180.0, 5.0), np.arange(-30.0, 31.0, 5.0))
    m = energy_map(foa, az, el)
    assert m.shape == az.shape and (m >= 0).all()
    near_a = angular_distance(az, el, 60.0, 10.0) < 15
    near_b = angular_distance(az, el, -40.0, -5.0) < 15
    far = ~(angular_distance(az, el, 60.0, 10.0) < 45) & ~(angular_distance(az, el, -40.0, -5.0) < 45)
    assert m[near_a].mean() > 10 * m[far].mean() and m[near_b].mean() > 10 * m[far].mean()


def test_energy_sampler_favours_sources_keeps_separation_and_is_deterministic():
    foa = _two_sources(np.random.default_rng(1))
    near, total = 0, 0
    for seed in range(40):
        views = sample_energy(np.random.default_rng(seed), 4, foa, min_separation=36.0)
        again = sample_energy(np.random.default_rng(seed), 4, foa, min_separation=36.0)
        assert views == again
        az = np.array([v.azimuth for v in views])
        el = np.array([v.elevation for v in views])
        for i in range(4):
            others = np.delete(np.arange(4), i)
            assert angular_distance(az[i], el[i], az[others], el[others]).min() >= 36.0 - 1e-6
            assert -30.0 <= el[i] <= 30.0 and 25.0 <= views[i].hfov <= 90.0
        d = np.minimum(angular_distance(az, el, 60.0, 10.0), angular_distance(az, el, -40.0, -5.0))
        near += int((d < 30).sum())
        total += 4
    # a uniform sampler puts ~13 % of the views within 30° of one of the two sources (100° apart)
    assert near / total > 0.4, near / total


def test_shard_sampling_passes_the_audio_and_random_stays_the_paper_sampler():
    foa = _two_sources(np.random.default_rng(2))
    cfg = SampleConfig(viewpoints_per_moment=4, sampler="energy")
    assert sample_viewpoints(cfg, "vid", 3, foa) == sample_viewpoints(cfg, "vid", 3, foa)
    with pytest.raises(ValueError, match="needs the sample's FOA"):
        sample_viewpoints(cfg, "vid", 3)
    rnd = SampleConfig(viewpoints_per_moment=4)
    assert sample_viewpoints(rnd, "vid", 3) == sample_viewpoints(rnd, "vid", 3, foa)  # audio ignored


def test_dense_scenes_and_unchanged_defaults():
    default = synth.SynthConfig(videos=6, duration=2.0)
    explicit = synth.SynthConfig(videos=6, duration=2.0, sounding_objects=(1, 4), object_radius=(10.0, 16.0))
    assert [synth.make_scene(default, i) for i in range(6)] == [synth.make_scene(explicit, i) for i in range(6)]
    dense = synth.SynthConfig(videos=6, duration=2.0, sounding_objects=(4, 6), object_radius=(14.0, 20.0))
    for i in range(6):
        srcs = synth.make_scene(dense, i).sources
        sounding_visible = [s for s in srcs if s.visible and s.sounding]
        assert 4 <= len(sounding_visible) <= 6
        assert all(14.0 <= s.radius <= 20.0 for s in srcs)
    with pytest.raises(ValueError, match="--sounding-objects"):
        synth.SynthConfig(sounding_objects=(0, 3))
    with pytest.raises(ValueError, match="--object-radius"):
        synth.SynthConfig(object_radius=(20.0, 10.0))
