"""ambiX (ACN W,Y,Z,X; SN3D) encoding, rotation, mono render, flip and FuMa conversion: physics checks."""

from __future__ import annotations

import numpy as np
import pytest

from avsa_data import ambisonics as A
from avsa_data.geometry import angular_distance, wrap_azimuth


def _noise(rng, n=4800):
    return rng.standard_normal(n).astype(np.float32)


def test_acn_sn3d_channel_layout():
    s = np.ones(4)
    # ACN order: W, Y, Z, X. SN3D: first-order gains are the direction cosines (no √3).
    np.testing.assert_allclose(A.encode(s, 90, 0)[:, 0], [1, 1, 0, 0], atol=1e-12)  # left → Y
    np.testing.assert_allclose(A.encode(s, 0, 90)[:, 0], [1, 0, 1, 0], atol=1e-12)  # up → Z
    np.testing.assert_allclose(A.encode(s, 0, 0)[:, 0], [1, 0, 0, 1], atol=1e-12)  # front → X


def test_energy_direction_recovers_source(rng):
    for az, el in zip(rng.uniform(-180, 180, 20), rng.uniform(-70, 70, 20)):
        a, e = A.energy_direction(A.encode(_noise(rng), az, el))
        assert angular_distance(a, e, az, el) < 1e-3


@pytest.mark.parametrize("i", range(20))
def test_rotation_to_view_puts_source_in_front(i):
    rng = np.random.default_rng(i)
    az, el = rng.uniform(-180, 180), rng.uniform(-75, 75)
    if i == 0:
        az = 179.9  # near the ±180° seam
    foa = A.encode(_noise(rng), az, el)
    rot = A.rotate_to_view(foa, az, el)
    a, e = A.energy_direction(rot)
    assert angular_distance(a, e, 0, 0) < 1.0
    assert A.field_energy(rot) == pytest.approx(A.field_energy(foa), rel=1e-5)


def test_rotation_inverse_is_identity(rng):
    foa = rng.standard_normal((4, 1000))
    for az, el in [(30, 10), (-170, -45), (95, 60)]:
        back = A.rotate_from_view(A.rotate_to_view(foa, az, el), az, el)
        np.testing.assert_allclose(back, foa, atol=1e-6)


def test_rotation_equals_reencoding_at_relative_direction(rng):
    """Source at (az_s, el_s) seen from view (az_v, 0): rotated FOA = FOA encoded at az_s - az_v."""
    s = _noise(rng)
    for az_s, az_v, el_s in [(40, 10, 15), (-150, 120, -20), (0, -90, 30)]:
        rot = A.rotate_to_view(A.encode(s, az_s, el_s), az_v, 0.0)
        ref = A.encode(s, wrap_azimuth(az_s - az_v), el_s)
        np.testing.assert_allclose(rot, ref, atol=1e-5)
    # with pitch: a source straight above a view pitched up by 30° appears 60° above its front
    rot = A.rotate_to_view(A.encode(s, 0, 90), 0, 30)
    np.testing.assert_allclose(rot, A.encode(s, 0, 60), atol=1e-5)


def test_relative_direction_left_of_view_stays_left(rng):
    # a source 20° to the left of the view is at azimuth +20 after rotation (crop's left = +y)
    rot = A.rotate_to_view(A.encode(_noise(rng), 70, 0), 50, 0)
    a, e = A.energy_direction(rot)
    assert a == pytest.approx(20, abs=0.1) and e == pytest.approx(0, abs=0.1)


def test_mono_render_is_a_cardioid(rng):
    s = _noise(rng)
    look_az, look_el = 35.0, 10.0
    front = A.mono_render(A.encode(s, look_az, look_el), look_az, look_el)
    np.testing.assert_allclose(front, s, atol=1e-5)  # gain 1
    side = A.mono_render(A.encode(s, look_az + 90, 0), look_az, 0)
    np.testing.assert_allclose(side, 0.5 * s, atol=1e-5)  # gain 0.5 at 90° off
    back = A.mono_render(A.encode(s, look_az + 180, -look_el), look_az, look_el)
    np.testing.assert_allclose(back, 0.0, atol=1e-5)  # gain 0 from behind


def test_mono_beam_peaks_at_source(rng):
    foa = A.encode(_noise(rng), -120.0, 20.0)
    az = np.arange(-180, 180, 5.0)
    el = np.arange(-60, 61, 5.0)
    power = np.array([[np.mean(A.mono_render(foa, a, e) ** 2) for a in az] for e in el])
    ie, ia = np.unravel_index(np.argmax(power), power.shape)
    assert az[ia] == -120.0 and el[ie] == 20.0


def test_flip_negates_y_and_equals_reencoding_at_minus_azimuth(rng):
    s = _noise(rng)
    for az, el in [(30, 10), (-100, -20), (170, 45)]:
        np.testing.assert_allclose(A.flip_horizontal(A.encode(s, az, el)), A.encode(s, -az, el), atol=1e-6)
    foa = rng.standard_normal((4, 10))
    f = A.flip_horizontal(foa)
    np.testing.assert_array_equal(f[[0, 2, 3]], foa[[0, 2, 3]])
    np.testing.assert_array_equal(f[1], -foa[1])


def test_fuma_roundtrip_and_layout(rng):
    s = _noise(rng)
    ambix = A.encode(s, 60, 20)
    fuma = A.ambix_to_fuma(ambix)
    # FuMa: W at -3 dB, then X, Y, Z
    np.testing.assert_allclose(fuma[0], ambix[0] / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(fuma[1:], ambix[[3, 1, 2]], atol=1e-6)
    np.testing.assert_allclose(A.fuma_to_ambix(fuma), ambix, atol=1e-6)


def test_wrong_shapes_raise_clear_errors(rng):
    with pytest.raises(ValueError, match=r"\[4, n_samples\]"):
        A.rotate_to_view(rng.standard_normal((1000, 4)), 0, 0)
    with pytest.raises(ValueError, match=r"\[4, n_samples\]"):
        A.mono_render(rng.standard_normal((2, 100)))
    with pytest.raises(ValueError, match=r"\[4, n_samples\]"):
        A.fuma_to_ambix(rng.standard_normal(100))
    with pytest.raises(ValueError, match="24000 Hz"):
        A.check_sample_rate(48000, 24000)
    with pytest.raises(ValueError, match=r"\[n_samples\]"):
        A.encode(rng.standard_normal((2, 10)), 0, 0)


def test_moving_source_encoding(rng):
    n = 2000
    s = _noise(rng, n)
    az = np.linspace(-30, 30, n)
    foa = A.encode(s, az, 0.0)
    np.testing.assert_allclose(foa[:, 0], A.encode(s[:1], -30, 0)[:, 0], atol=1e-6)
    np.testing.assert_allclose(foa[:, -1], A.encode(s[-1:], 30, 0)[:, 0], atol=1e-6)
