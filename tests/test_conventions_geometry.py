"""The spatial conventions of docs/CONVENTIONS.md, each checked so that a sign or axis error fails."""

from __future__ import annotations

import numpy as np
import pytest

from avsa_data import geometry as g


def test_axes_front_left_up():
    np.testing.assert_allclose(g.direction_to_vector(0, 0), [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(g.direction_to_vector(90, 0), [0, 1, 0], atol=1e-12)  # azimuth + = left = +y
    np.testing.assert_allclose(g.direction_to_vector(-90, 0), [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(g.direction_to_vector(0, 90), [0, 0, 1], atol=1e-12)  # elevation + = up = +z
    np.testing.assert_allclose(g.direction_to_vector(180, 0), [-1, 0, 0], atol=1e-12)
    # right-handed: x × y = z
    np.testing.assert_allclose(np.cross([1, 0, 0], [0, 1, 0]), [0, 0, 1])


def test_vector_direction_roundtrip(rng):
    az = rng.uniform(-180, 180, 200)
    el = rng.uniform(-89, 89, 200)
    a2, e2 = g.vector_to_direction(g.direction_to_vector(az, el) * 3.0)
    np.testing.assert_allclose(g.wrap_azimuth(a2 - az), 0, atol=1e-9)
    np.testing.assert_allclose(e2, el, atol=1e-9)


def test_equirect_centre_is_front_and_right_is_turning_right():
    H, W = 180, 360
    az, el = g.equirect_to_direction(W / 2 - 0.5, H / 2 - 0.5, H, W)
    assert abs(az) < 1e-9 and abs(el) < 1e-9
    az_r, _ = g.equirect_to_direction(W / 2 - 0.5 + 10, H / 2 - 0.5, H, W)
    assert az_r < 0  # moving right in the image = turning right = azimuth decreasing
    az_l, _ = g.equirect_to_direction(W / 2 - 0.5 - 10, H / 2 - 0.5, H, W)
    assert az_l > 0
    _, el_up = g.equirect_to_direction(W / 2, 10, H, W)
    assert el_up > 0  # top rows are up
    # a quarter of the width to the left of centre is azimuth +90 (left)
    az_q, _ = g.equirect_to_direction(W / 4 - 0.5, H / 2 - 0.5, H, W)
    assert az_q == pytest.approx(90.0)


def test_equirect_roundtrip(rng):
    H, W = 240, 480
    az = rng.uniform(-180, 180, 100)
    el = rng.uniform(-89, 89, 100)
    u, v = g.direction_to_equirect(az, el, H, W)
    a2, e2 = g.equirect_to_direction(u, v, H, W)
    np.testing.assert_allclose(g.wrap_azimuth(a2 - az), 0, atol=1e-9)
    np.testing.assert_allclose(e2, el, atol=1e-9)


def test_view_rotation_brings_view_to_front(rng):
    for az, el in zip(rng.uniform(-180, 180, 50), rng.uniform(-80, 80, 50)):
        R = g.view_rotation(az, el)
        np.testing.assert_allclose(R @ g.direction_to_vector(az, el), [1, 0, 0], atol=1e-12)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        # no roll: the world's up stays in the view's vertical plane (y component 0 after rotation)
        assert abs((R @ [0, 0, 1])[1]) < 1e-12


def test_yaw_is_positive_to_the_left():
    np.testing.assert_allclose(g.rotation_yaw(90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_angular_distance_wraps():
    assert g.angular_distance(179, 0, -179, 0) == pytest.approx(2.0)
    assert g.angular_distance(0, 90, 123, 90) == pytest.approx(0.0, abs=1e-6)
