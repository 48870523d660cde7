"""NFOV crops and viewpoint samplers against the conventions (bright disc at a known direction, flips)."""

from __future__ import annotations

import numpy as np
import py360convert
import pytest

from avsa_data import viewpoints as vp
from avsa_data.crops import CropGrid, crop, py360_angles
from avsa_data.geometry import angular_distance, equirect_direction_grid, wrap_azimuth
from avsa_data.viewpoints import Viewpoint

H, W = 256, 512


def _disc_equirect(az, el, radius_deg=6.0, h=H, w=W):
    gaz, gel = equirect_direction_grid(h, w)
    img = np.zeros((h, w, 3), np.uint8)
    img[angular_distance(gaz, gel, az, el) < radius_deg] = 255
    return img


def _centroid(mask):
    yy, xx = np.nonzero(mask)
    return yy.mean(), xx.mean()


def _directions():
    rng = np.random.default_rng(7)
    dirs = [(179.0, 0.0), (-179.0, 10.0), (180.0, -20.0), (45.0, 60.0), (-120.0, -60.0), (0.0, 0.0)]
    dirs += [(float(a), float(e)) for a, e in zip(rng.uniform(-180, 180, 16), rng.uniform(-60, 60, 16))]
    return dirs


@pytest.mark.parametrize("az,el", _directions())
def test_disc_lands_at_crop_centre(az, el):
    img = _disc_equirect(az, el)
    out = crop(img, Viewpoint(az, el, 60.0, 60.0), (64, 64))
    mask = out[..., 0] > 127
    assert mask.sum() > 20
    cy, cx = _centroid(mask)
    assert abs(cy - 31.5) < 1.0 and abs(cx - 31.5) < 1.0


def test_left_of_view_is_left_of_crop_and_up_is_up():
    img = _disc_equirect(20.0, 0.0)  # 20° to the left of a view at azimuth 0
    cy, cx = _centroid(crop(img, Viewpoint(0, 0, 90, 90), (64, 64))[..., 0] > 127)
    assert cx < 31.5 - 5 and abs(cy - 31.5) < 1
    img = _disc_equirect(0.0, 20.0)  # above
    cy, cx = _centroid(crop(img, Viewpoint(0, 0, 90, 90), (64, 64))[..., 0] > 127)
    assert cy < 31.5 - 5 and abs(cx - 31.5) < 1


def test_matches_py360convert_e2p_with_negated_azimuth(rng, monkeypatch):
    # py360convert samples with OpenCV when it is installed, whose remap stores coordinates in 1/32 pixel
    # (fixed point): compare with its exact floating-point (scipy) path, the reference geometry.
    monkeypatch.setattr(py360convert.utils, "cv2", None)
    img = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    view = Viewpoint(60, 20, 60, 45)
    u_deg, v_deg = py360_angles(view)
    assert u_deg == -60
    ref = py360convert.e2p(img, (view.hfov, view.vfov), u_deg, v_deg, (64, 64))
    ours = crop(img, view, (64, 64))
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    # The grid itself is py360convert's, written out (crops._camera_rays / _equirect_fractions): bit-identical.
    from py360convert.utils import uv2coor, xyz2uv, xyzpers

    from avsa_data.crops import _grid_fractions

    xyz = xyzpers(np.deg2rad(view.hfov), np.deg2rad(view.vfov), -np.deg2rad(u_deg), np.deg2rad(v_deg), (64, 64), 0.0)
    u, v = xyz2uv(xyz.astype(np.float64))
    cx, cy = uv2coor(u[..., 0], v[..., 0], 1, 1)
    fx, fy = _grid_fractions(view, 64, 64)
    np.testing.assert_array_equal(fx, cx + 0.5)
    np.testing.assert_array_equal(fy, cy + 0.5)


def test_horizontal_flip_consistency(rng):
    img = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    for view in [Viewpoint(35, 10, 70, 50), Viewpoint(-179, -30, 40, 40)]:
        a = crop(img, view)
        b = crop(img[:, ::-1], view.mirrored())
        np.testing.assert_array_equal(a[:, ::-1], b)


def test_one_grid_serves_clip_and_lower_res_labels():
    view = Viewpoint(-75, 15, 80, 60)
    grid = CropGrid(view, (56, 56))
    clip = np.stack([_disc_equirect(-75, 15, 10), _disc_equirect(-75, 15, 10)])
    out = grid.sample(clip)
    assert out.shape == (2, 56, 56, 3)
    labels = np.zeros((H // 4, W // 4), np.uint8)
    gaz, gel = equirect_direction_grid(H // 4, W // 4)
    labels[angular_distance(gaz, gel, -75, 15) < 10] = 7
    lab = grid.sample(labels, mode="nearest")
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 7}  # nearest: ids never blended
    assert lab[28, 28] == 7 and lab[0, 0] == 0
    # label map edge agrees with the image's disc edge to within a (low-res label) pixel
    img_mask = out[0, ..., 0] > 127
    assert np.mean(img_mask == (lab == 7)) > 0.9


def test_poles_do_not_crash_and_are_uniform():
    img = np.zeros((H, W, 3), np.uint8)
    img[:24] = 200  # rows above elevation ~73°: a 20° view at the pole sees only these
    out = crop(img, Viewpoint(12, 90, 20, 20), (32, 32))
    assert out.shape == (32, 32, 3) and out.mean() > 150


def test_random_sampler_respects_margin_band_and_fovs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        bank = vp.sample_random(rng, 8)
        az = np.array([v.azimuth for v in bank])
        el = np.array([v.elevation for v in bank])
        assert np.all((el >= -30) & (el <= 30))
        for i in range(8):
            for j in range(i + 1, 8):
                assert angular_distance(az[i], el[i], az[j], el[j]) >= vp.MIN_SEPARATION_DEG - 1e-9
        for v in bank:
            assert 25 <= v.hfov <= 90
            assert 3 / 4 - 1e-9 <= v.aspect <= 4 / 3 + 1e-9
    # wrap-around: a viewpoint at 179° and one at -179° are 2° apart and never drawn together
    assert angular_distance(179, 0, -179, 0) < vp.MIN_SEPARATION_DEG


def test_samplers_are_deterministic():
    a = vp.sample_random(np.random.default_rng(5), 6)
    b = vp.sample_random(np.random.default_rng(5), 6)
    assert a == b
    assert a != vp.sample_random(np.random.default_rng(6), 6)


def test_grid_and_list_samplers():
    g = vp.sample_grid(None, 4, elevation=10.0, hfov=60.0, random_offset=False)
    assert [v.azimuth for v in g] == [0.0, 90.0, -180.0, -90.0]
    assert all(v.elevation == 10.0 and v.hfov == 60.0 for v in g)
    gr = vp.sample_grid(np.random.default_rng(1), 8)
    d = np.diff(np.sort(wrap_azimuth([v.azimuth for v in gr])))
    np.testing.assert_allclose(d, 45.0, atol=1e-9)
    lst = vp.from_list([(10, 5), (20, -5, 45), {"azimuth": 30, "elevation": 0, "hfov": 50, "vfov": 40}])
    assert lst[0] == Viewpoint(10, 5, 90, 90) and lst[1] == Viewpoint(20, -5, 45, 45)
    assert lst[2] == Viewpoint(30, 0, 50, 40)
    with pytest.raises(ValueError, match="unknown viewpoint sampler"):
        vp.sample_bank(np.random.default_rng(0), 4, "spiral")
    with pytest.raises(ValueError, match="could not place"):
        vp.sample_random(np.random.default_rng(0), 40, min_separation=60)
    with pytest.raises(ValueError, match="hfov"):
        Viewpoint(0, 0, 200, 10)
