"""Crops from YUV 4:2:0 planes (avsa_data.crops_yuv) against RGB crops, the conventions, colour, and the decoder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from avsa_data import codecs, media
from avsa_data.crops import CropGrid
from avsa_data.crops_yuv import ColorSpace, YuvFrame, crop_bank, ycbcr_to_rgb_matrix
from avsa_data.geometry import angular_distance, equirect_direction_grid
from avsa_data.viewpoints import Viewpoint

H, W = 256, 512


def _smooth_rgb(h=H, w=W, seed=0):
    """A smooth colourful equirect (wraps around in azimuth) with a few sharp edges."""
    gaz, gel = equirect_direction_grid(h, w)
    a, e = np.deg2rad(gaz), np.deg2rad(gel)
    rng = np.random.default_rng(seed)
    ph = rng.uniform(0, 2 * np.pi, 3)
    img = np.stack([128 + 100 * np.sin(2 * a + ph[0]) * np.cos(e), 128 + 90 * np.cos(3 * a + 2 * e + ph[1]),
                    128 + 80 * np.sin(a - 3 * e + ph[2])], axis=-1)
    img[(gaz > 10) & (gaz < 40) & (gel > -10) & (gel < 20)] = (230, 40, 30)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


UNTAGGED = ColorSpace()


def _to_yuv420(rgb, space=UNTAGGED):
    """Encode RGB as 4:2:0 with the inverse of the module's matrix (chroma: mean of each 2×2 block)."""
    m = ycbcr_to_rgb_matrix(space).astype(np.float64)
    inv = np.linalg.inv(m[:, :3])
    ycc = (rgb.astype(np.float64) - m[:, 3]) @ inv.T
    y = np.clip(np.rint(ycc[..., 0]), 0, 255).astype(np.uint8)
    c = ycc[..., 1:].reshape(rgb.shape[0] // 2, 2, rgb.shape[1] // 2, 2, 2).mean(axis=(1, 3))
    c = np.clip(np.rint(c), 0, 255).astype(np.uint8)
    return YuvFrame(y, np.ascontiguousarray(c[..., 0]), np.ascontiguousarray(c[..., 1]), space)


def _psnr(a, b):
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


VIEWS = [Viewpoint(0, 0, 90, 90), Viewpoint(25, 5, 60, 45), Viewpoint(179.5, -20, 80, 70),
         Viewpoint(-170, 30, 40, 50), Viewpoint(-90, -28, 25, 33)]


@pytest.mark.parametrize("space", [ColorSpace(), ColorSpace("bt709"), ColorSpace("bt601", True)])
def test_bank_matches_rgb_crops(space):
    rgb = _smooth_rgb()
    yuv = _to_yuv420(rgb, space)
    grids = [CropGrid(v, (64, 64)) for v in VIEWS]
    got = crop_bank([yuv, yuv], grids)
    for g, c in zip(grids, got):
        assert c.shape == (2, 64, 64, 3) and c.dtype == np.uint8
        ref = g.sample(rgb)
        # 4:2:0 blurs the sharp red patch a little (chroma at half resolution); a geometry or colour bug is < 20 dB
        assert _psnr(c[0], ref) > 28, g.view  # seam-crossing view (179.5°) included: the azimuth wraps
        np.testing.assert_array_equal(c[0], c[1])


def test_conventions_left_is_left_up_is_up_front_is_centre():
    gaz, gel = equirect_direction_grid(H, W)

    def disc(az, el):
        img = np.full((H, W, 3), 20, np.uint8)
        img[angular_distance(gaz, gel, az, el) < 6] = 235
        return _to_yuv420(img)

    def centroid(frame, view):
        c = crop_bank([frame], [CropGrid(view, (64, 64))])[0][0, ..., 1] > 127
        yy, xx = np.nonzero(c)
        return yy.mean(), xx.mean()

    cy, cx = centroid(disc(0, 0), Viewpoint(0, 0, 90, 90))
    assert abs(cy - 31.5) < 1 and abs(cx - 31.5) < 1
    cy, cx = centroid(disc(20, 0), Viewpoint(0, 0, 90, 90))  # 20° to the left of the view
    assert cx < 31.5 - 5 and abs(cy - 31.5) < 1
    cy, cx = centroid(disc(0, 20), Viewpoint(0, 0, 90, 90))  # above
    assert cy < 31.5 - 5 and abs(cx - 31.5) < 1
    cy, cx = centroid(disc(-178, 0), Viewpoint(178, 0, 60, 60))  # across the ±180° seam, 4° to the left
    assert cx < 31.5 - 1 and abs(cy - 31.5) < 1


def test_colour_matrices():
    # 8-bit BT.709 limited-range primaries and BT.601 full-range white/black.
    m709 = ycbcr_to_rgb_matrix(ColorSpace("bt709"))
    red709 = m709[:, :3] @ np.array([63.0, 102.0, 240.0]) + m709[:, 3]
    assert np.allclose(red709, (255, 0, 0), atol=2.5)
    m601 = ycbcr_to_rgb_matrix(ColorSpace("bt601"))
    assert np.allclose(m601[:, :3] @ np.array([81.0, 90.0, 240.0]) + m601[:, 3], (255, 0, 0), atol=2.5)
    full = ycbcr_to_rgb_matrix(ColorSpace("bt601", True))
    assert np.allclose(full[:, :3] @ np.array([255.0, 128, 128]) + full[:, 3], 255, atol=1e-3)
    assert ColorSpace.from_tags(("tv", "bt709", "progressive")) == ColorSpace("bt709")
    assert ColorSpace.from_tags(("pc", "bt470bg/bt470bg/smpte170m")) == ColorSpace("bt601", True)
    assert ColorSpace.from_tags(("progressive",)) == ColorSpace()


def test_decoder_yuv_frames_match_rgb_frames(tmp_path):
    rgb = [_smooth_rgb(128, 256, seed=s) for s in range(4)]
    path = media.write_video(tmp_path / "v.mp4", rgb, 8.0, (256, 128), crf=12)
    a = dict(media.iter_video_frames_at(path, 8.0, [1, 3]))
    b = dict(media.iter_video_frames_at(path, 8.0, [1, 3], pix_fmt="yuv420p"))
    assert sorted(a) == sorted(b) == [1, 3]
    for i in a:
        assert isinstance(b[i], YuvFrame) and b[i].shape == (128, 256) and b[i].u.shape == (64, 128)
        assert _psnr(b[i].to_rgb(), a[i]) > 35  # same decoded frame; only the chroma upsampling differs
        grids = [CropGrid(v, (32, 32)) for v in VIEWS[:3]]
        for g, c in zip(grids, crop_bank([b[i]], grids)):
            assert _psnr(c[0], g.sample(a[i])) > 26  # 32² crops magnify the half-resolution chroma of the patch
    with pytest.raises(ValueError, match="pix_fmt"):
        media.iter_video_frames(path, 8.0, pix_fmt="gray")


def test_flac16_integer_path_is_byte_identical_to_libsndfile_float_path():
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (4, 3000))
    a[0, :8] = [1.0, -1.0, codecs.FLAC_MAX, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768, 2.5 / 32768, -2.5 / 32768]
    a[1] = np.round(a[1] * 65536) / 65536  # exact half-LSB values: ties must round as libsndfile does
    for x in (a, a.astype(np.float32)):  # float32 input takes the path without float64
        buf = io.BytesIO()
        sf.write(buf, np.clip(x.astype(np.float64).T, -1.0, codecs.FLAC_MAX), 24000, format="FLAC",
                 subtype="PCM_16")
        assert codecs.encode_flac(x, 24000, 16) == buf.getvalue()


def test_flac_decoding_through_integers_equals_libsndfile_floats():
    """``decode_flac`` reads libFLAC's integers and scales them (1.3× cheaper for the loader): the same float32
    values as libsndfile's float read, at 16 and 24 bits, full scale and the smallest steps included."""
    rng = np.random.default_rng(5)
    a = rng.uniform(-1, 1, (4, 3000)).astype(np.float32)
    a[0, :6] = [-1.0, codecs.FLAC_MAX, 2.0**-15, -(2.0**-15), 2.0**-23, 0.0]
    for bits in (16, 24):
        data = codecs.encode_flac(a, 24000, bits)
        got, sr = codecs.decode_flac(data, (4, 3000), 24000, bits)
        want = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
        assert sr == 24000 and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        assert np.abs(got - a).max() <= 2.0 ** -(bits - 1)


def test_seam_wraps_like_the_rgb_crops():
    """Grey image with a hard edge on the ±180° seam: luma taps must wrap (column W-1 next to column 0)."""
    img = np.full((H, W), 200, np.uint8)
    img[:, : W // 2] = 50
    grey = np.full((H // 2, W // 2), 128, np.uint8)
    frame = YuvFrame(img, grey, grey, ColorSpace("bt601", full_range=True))  # full range: R = G = B = Y
    for view in (Viewpoint(180, 0, 40, 40), Viewpoint(-179.9, 10, 30, 30)):
        g = CropGrid(view, (64, 64))
        got = crop_bank([frame], [g])[0][0, ..., 0].astype(int)
        ref = g.sample(img).astype(int)
        assert np.abs(got - ref).max() <= 2
