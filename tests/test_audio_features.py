"""Device-side log-spectrograms: frame count, frequency axis, tone localisation, batching, fixed normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsa_train.audio_features import IV_STD, Spectrogram, feature_channels, mel_filterbank

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


# ------------------------------------------------------------------------------ mel128+iv: intensity vectors
# Output channels of mel128+iv: 0-3 log-mel of W, Y, Z, X; 4-6 intensity vector (Y, Z, X) in the mel bands.
IV_Y, IV_Z, IV_X = 4, 5, 6


def plane_wave(az_deg: float, el_deg: float = 0.0, seed: int = 0, seconds: float = 1.0) -> torch.Tensor:
    """ambiX FOA ``[4, n]`` of a band-limited (100 Hz - 8 kHz) noise plane wave from (az, el), RMS 0.1."""
    from avsa_data.ambisonics import encode

    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[(f < 100) | (f > 8000)] = 0
    s = np.fft.irfft(spec, n)
    s *= 0.1 / np.sqrt(np.mean(s**2))
    return torch.tensor(encode(s, az_deg, el_deg), dtype=torch.float32)


def excited_bands(spec: Spectrogram, wave: torch.Tensor) -> torch.Tensor:
    """Mel bands whose W level is within 6 dB of the loudest: inside the source's pass band. (A band that
    straddles its edge averages loud bins with near-silent ones, whose IV is ~0: shorter, same direction.)"""
    w = spec(wave)[0].mean(-1)
    return w > w.max() - 6.0 / 24.0


def test_iv_front_and_back_differ_only_in_the_sign_of_x():
    """0° and 180°: identical mel128 (|X| is equal), but IV X of opposite sign; +1/IV_STD in front."""
    spec_iv, spec_mel = Spectrogram("mel128+iv"), Spectrogram("mel128")
    front, back = plane_wave(0.0), plane_wave(180.0)
    f_iv, b_iv = spec_iv(front), spec_iv(back)
    assert f_iv.shape == (7, 128, 100)
    assert torch.allclose(spec_mel(front), spec_mel(back), atol=1e-5)  # magnitudes cannot tell
    assert torch.allclose(f_iv[:4], spec_mel(front), atol=1e-5)  # the first 4 channels are mel128
    assert torch.allclose(f_iv[:4], b_iv[:4], atol=1e-5)
    assert torch.allclose(f_iv[IV_X], -b_iv[IV_X], atol=1e-5)
    band = excited_bands(spec_iv, front)
    assert band.sum() > 60
    # a plane wave gives the unit vector (u_y, u_z, u_x) / IV_STD in every band it excites
    scale = 1.0 / IV_STD
    x = f_iv[IV_X][band]
    assert torch.allclose(x, torch.full_like(x, scale), rtol=0.02)
    assert f_iv[IV_Y][band].abs().max() < 0.02 * scale and f_iv[IV_Z][band].abs().max() < 0.02 * scale


def test_iv_left_and_right_differ_only_in_the_sign_of_y():
    spec_iv = Spectrogram("mel128+iv")
    left, right = spec_iv(plane_wave(90.0, seed=1)), spec_iv(plane_wave(-90.0, seed=1))
    assert torch.allclose(left[:4], right[:4], atol=1e-5)
    assert torch.allclose(left[IV_Y], -right[IV_Y], atol=1e-5)
    assert torch.allclose(left[IV_X], right[IV_X], atol=1e-5) and torch.allclose(left[IV_Z], right[IV_Z], atol=1e-5)
    band = excited_bands(spec_iv, plane_wave(90.0, seed=1))
    assert (left[IV_Y][band] > 0.98 / IV_STD).all()  # +y is the left


def test_horizontal_flip_negates_the_iv_y_channel_only():
    """The training pipeline's flip (avsa_train.data.items.AUDIO_MIRRORS) of a two-source reverberant-ish scene."""
    from avsa_data.synth import diffuse_noise
    from avsa_train.data.items import AUDIO_MIRRORS

    rng = np.random.default_rng(3)
    foa = plane_wave(35.0, 10.0, seed=4) + 0.5 * plane_wave(-120.0, -20.0, seed=5)
    foa = foa + torch.tensor(0.02 * diffuse_noise(rng, SR, SR), dtype=torch.float32)
    flipped = torch.from_numpy(AUDIO_MIRRORS["ambi"](foa.numpy()))
    spec = Spectrogram("mel128+iv")
    a, b = spec(foa), spec(flipped)
    assert a[IV_Y].abs().mean() > 0.1  # there is something to negate
    assert torch.allclose(b[IV_Y], -a[IV_Y], atol=1e-5)
    keep = [c for c in range(7) if c != IV_Y]
    assert torch.allclose(b[keep], a[keep], atol=1e-5)


@pytest.mark.parametrize(
    "az,el,view_az,view_el",
    [(0, 0, 0, 0), (30, 0, 0, 0), (150, 20, 0, 0), (-100, -35, 0, 0), (60, 10, 45, 0), (-170, 30, 120, -20)],
)
def test_band_averaged_iv_points_at_the_source_within_3_degrees(az, el, view_az, view_el):
    """A class sound of the synthesiser from (az, el) with diffuse noise 10 dB below, rotated to a viewpoint
    as the shards are: the mean IV over bands and frames points at the source's view-relative direction."""
    from avsa_data.ambisonics import encode, rotate_to_view
    from avsa_data.geometry import angular_distance, vector_to_direction, view_rotation
    from avsa_data.synth import class_sound, diffuse_noise

    rng = np.random.default_rng(abs(az) + 7)
    s = class_sound(1 + (abs(az) % 5), SR, SR, rng)
    foa = encode(0.1 * s, az, el) + 0.1 * 10 ** (-10 / 20) * diffuse_noise(rng, SR, SR)
    rotated = rotate_to_view(foa, view_az, view_el)
    iv = Spectrogram("mel128+iv")(torch.tensor(rotated, dtype=torch.float32))[IV_Y:].mean(dim=(1, 2))
    y, z, x = iv.tolist()
    got_az, got_el = vector_to_direction(np.array([x, y, z]))
    want_az, want_el = vector_to_direction(
        view_rotation(view_az, view_el)
        @ np.array(
            [
                math.cos(math.radians(el)) * math.cos(math.radians(az)),
                math.cos(math.radians(el)) * math.sin(math.radians(az)),
                math.sin(math.radians(el)),
            ]
        )
    )
    assert float(angular_distance(got_az, got_el, want_az, want_el)) < 3.0, (got_az, got_el, want_az, want_el)


def test_iv_is_bounded_batched_and_needs_foa():
    g = torch.Generator().manual_seed(6)
    wave = 0.1 * torch.randn(3, 4, SR // 2, generator=g)  # uncorrelated channels: no plane wave
    spec = Spectrogram("mel128+iv")
    out = spec(wave)
    assert out.shape == (3, 7, 128, 50)
    length = out[:, IV_Y:].norm(dim=1) * IV_STD
    assert length.max() <= 1.0 + 1e-4  # a weighted mean of vectors in the unit ball
    for b in range(3):
        assert torch.allclose(out[b], spec(wave[b]), atol=1e-4)
    silent = spec(torch.zeros(4, SR))
    assert torch.all(silent[IV_Y:] == 0)  # a silent bin has no direction
    assert spec.out_channels(4) == 7 and Spectrogram("mel128").out_channels(2) == 2
    with pytest.raises(ValueError, match="first-order ambisonics"):
        spec(torch.zeros(2, SR))
    with pytest.raises(ValueError, match="ambisonics"):
        feature_channels("mel128+iv", 1)


def test_iv_spec_builds_a_7_channel_encoder_for_ambi_only():
    from avsa_train.config import PretrainConfig
    from avsa_train.models.avsa import AVSAModel

    model = AVSAModel(width=0.125, spec="mel128+iv", depth=0)
    assert model.audio.in_channels == 7
    video = torch.zeros(2, 1, 2, 3, 4, 32, 32)
    audio = plane_wave(0.0)[None, None, None].expand(2, 1, 2, 4, SR).contiguous()
    ev, ea = model(video, audio, output="embeddings")
    assert ea.shape == (2, 2, 128) and torch.isfinite(ea).all()
    PretrainConfig(shards="x", spec="mel128+iv").validate()
    with pytest.raises(ValueError, match="--audio-format ambi"):
        PretrainConfig(shards="x", spec="mel128+iv", audio_format="stereo").validate()
    with pytest.raises(ValueError, match="ambisonics"):
        AVSAModel(width=0.125, spec="mel128+iv", audio_format="mono")
