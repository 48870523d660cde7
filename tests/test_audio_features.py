"""Device-side log-spectrograms: frame count, frequency axis, tone localisation, batching, fixed normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsa_train.audio_features import Spectrogram, mel_filterbank

SR = 24000


def tone(freq_hz: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = np.arange(int(SR * seconds)) / SR
    return torch.tensor(amp * np.sin(2 * np.pi * freq_hz * t), dtype=torch.float32)


def slaney_mel_centres_hz(n_mels: int = 128, fmax: float = SR / 2) -> list[float]:
    """Centre frequencies of the Slaney mel bands, written out: 3 mels per 200 Hz below 1 kHz, then a log
    step of ln(6.4)/27 per mel; n_mels + 2 points evenly spaced in mels over [0, fmax], interior points."""
    step = math.log(6.4) / 27

    def to_mel(f):
        return f / (200 / 3) if f < 1000 else 15 + math.log(f / 1000) / step

    def to_hz(m):
        return m * (200 / 3) if m < 15 else 1000 * math.exp(step * (m - 15))

    top = to_mel(fmax)
    return [to_hz(top * k / (n_mels + 1)) for k in range(1, n_mels + 1)]


def test_one_second_gives_100_frames():
    wave = torch.zeros(2, 4, SR)
    assert Spectrogram("mel128")(wave).shape == (2, 4, 128, 100)
    assert Spectrogram("stft129")(wave).shape == (2, 4, 129, 100)
    assert Spectrogram("stft129").hop == 240
    assert Spectrogram("mel128")(torch.zeros(1, 2 * SR)).shape == (1, 128, 200)


def test_stft_tone_peaks_at_its_bin():
    spec = Spectrogram("stft129")
    # bin spacing 24000 / 256 = 93.75 Hz: 3000 Hz is bin 32, 1500 Hz bin 16, 9375 Hz bin 100
    for freq, k in [(3000.0, 32), (1500.0, 16), (9375.0, 100)]:
        out = spec(tone(freq))
        assert int(out.mean(-1).argmax()) == k
        assert torch.all(out.argmax(0)[5:-5] == k)  # every frame away from the edges


def test_mel_tone_peaks_at_its_band():
    spec = Spectrogram("mel128")
    centres = slaney_mel_centres_hz()
    assert centres[47] == pytest.approx(1319.26, abs=0.01)
    # Above ~1.3 kHz the mel bands are wider than the 46.9 Hz FFT bins: the argmax is exact.
    for k in (50, 80, 110, 127):
        assert int(spec(tone(centres[k])).mean(-1).argmax()) == k
    # Below, bands are narrower than an FFT bin; the peak is within one band.
    for k in (10, 30):
        assert abs(int(spec(tone(centres[k])).mean(-1).argmax()) - k) <= 1


def test_mel_filterbank_is_slaney_normalised_triangles():
    fb = mel_filterbank(SR, 512, 128)
    assert fb.shape == (128, 257)
    assert np.all(fb >= 0)
    # each triangle peaks at the FFT bin nearest its centre and integrates (in Hz) to ~1 (area normalisation)
    centres = slaney_mel_centres_hz()
    bin_hz = SR / 512
    for k in (60, 90, 120):
        assert abs(int(fb[k].argmax()) - round(centres[k] / bin_hz)) <= 1
        assert fb[k].sum() * bin_hz == pytest.approx(1.0, rel=0.05)


def test_batching_equals_per_item():
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(3, 4, SR, generator=g)
    for kind in ("mel128", "stft129"):
        spec = Spectrogram(kind)
        batched = spec(wave)
        for b in range(3):
            alone = spec(wave[b])
            assert torch.allclose(batched[b], alone, atol=1e-4)
            for c in range(4):
                assert torch.allclose(batched[b, c], spec(wave[b, c]), atol=1e-4)


def test_fixed_normalisation_keeps_levels_between_channels():
    """A gain g shifts the features by exactly 10·log10(g)/std: absolute and inter-channel levels survive."""
    g = torch.Generator().manual_seed(1)
    noise = 0.1 * torch.randn(SR, generator=g)
    spec = Spectrogram("mel128", std=24.0)
    out = spec(torch.stack([noise, 0.5 * noise]))
    diff = out[0] - out[1]
    assert torch.allclose(diff, torch.full_like(diff, 10 * math.log10(2.0) / 24.0), atol=1e-3)
    # per-bin statistics are accepted
    spec2 = Spectrogram("stft129", mean=np.linspace(-40, -20, 129), std=np.full(129, 20.0))
    assert torch.isfinite(spec2(noise)).all()
    with pytest.raises(ValueError, match="one per frequency bin"):
        Spectrogram("stft129", mean=np.zeros(128))


def test_dtype_and_bad_input():
    spec = Spectrogram("stft129")
    noise = 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(2))
    out64 = spec(noise.double())
    assert out64.dtype == torch.float64
    assert torch.allclose(out64.float(), spec(noise), atol=1e-3)
    with pytest.raises(ValueError, match="kind"):
        Spectrogram("mfcc")
    with pytest.raises(ValueError, match="float"):
        spec(torch.zeros(SR, dtype=torch.int16))
    with pytest.raises(ValueError, match="multiple"):
        Spectrogram(sr=22050)
