"""Painting the video: the sky/ground panorama and the visible objects, each drawn in the plane tangent to the
sphere at its direction so that it looks undistorted in a gnomonic crop centred on it.

Frames are equirectangular ``[H, W, 3]`` uint8 RGB (the centre is the front; moving right turns right).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..geometry import direction_to_equirect, direction_to_vector, equirect_to_direction, view_rotation
from ..rng import rng_for
from .classes import CLASSES
from .config import SynthConfig
from .scene import Scene, Source
from .shapes import shape_masks


def _lerp_weights(n_out: int, n_cells: int) -> tuple[NDArray, NDArray]:
    """Left grid index and (smoothstep) weight of each of ``n_out`` pixel centres over ``n_cells`` grid cells."""
    x = (np.arange(n_out) + 0.5) / n_out * n_cells
    i0 = np.minimum(np.floor(x).astype(int), n_cells - 1)
    w = x - i0
    return i0, w * w * (3.0 - 2.0 * w)  # smoothstep: no creases at cell borders


def _periodic_noise(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> NDArray:
    """Smooth value noise in [0, 1] ``[H, W]``, periodic in azimuth, interpolated from a ``cells`` = (rows, cols)
    grid of random values."""
    ny, nx = cells
    grid = rng.random((ny + 1, nx + 1))
    grid[:, nx] = grid[:, 0]  # the last column wraps to the first
    iy, wy = _lerp_weights(height, ny)
    ix, wx = _lerp_weights(width, nx)
    cols = grid[:, ix] * (1 - wx) + grid[:, ix + 1] * wx  # [ny+1, W]
    return cols[iy] * (1 - wy)[:, None] + cols[iy + 1] * wy[:, None]


def render_background(scene: Scene, width: int, height: int) -> NDArray[np.uint8]:
    """Sky/ground panorama ``[H, W, 3]`` uint8: blue sky gradient with clouds, a hilly horizon, textured ground."""
    rng = rng_for(scene.seed, scene.video_id, "background")
    az, el = equirect_to_direction(np.arange(width)[None, :], np.arange(height)[:, None], height, width)
    el = np.broadcast_to(el, (height, width))
    n1 = _periodic_noise(rng, height, width, (4, 12))
    n2 = _periodic_noise(rng, height, width, (16, 48))
    hills = 2.0 + 7.0 * _periodic_noise(rng, 2, width, (1, 9))[0]  # horizon elevation per column, degrees
    a = np.clip(el / 90.0, 0.0, 1.0)[..., None]
    sky = (1 - a) * np.array([185.0, 205.0, 228.0]) + a * np.array([60.0, 110.0, 190.0])
    cloud = np.clip((0.6 * n1 + 0.4 * n2 - 0.55) * 3.0, 0.0, 1.0)[..., None] * 0.8
    sky = (1 - cloud) * sky + cloud * np.array([236.0, 238.0, 242.0])
    hill = np.array([85.0, 110.0, 92.0]) * (0.85 + 0.3 * n2[..., None])
    depth = np.clip(-el / 90.0, 0.0, 1.0)[..., None]
    ground = np.array([128.0, 104.0, 74.0]) * (0.75 + 0.45 * (0.5 * n1 + 0.5 * n2))[..., None] * (1 - 0.4 * depth)
    img = np.where((el > hills[None, :])[..., None], sky, np.where((el > -1.0)[..., None], hill, ground))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _region(az: float, el: float, bound_deg: float, height: int, width: int) -> tuple[NDArray, NDArray]:
    """Row and column indices of the equirect pixels that may lie within ``bound_deg`` of (az, el)."""
    u, v = direction_to_equirect(az, el, height, width)
    dv = bound_deg / 180.0 * height + 1.5
    rows = np.arange(max(0, int(np.floor(v - dv))), min(height, int(np.ceil(v + dv)) + 1))
    if abs(el) + bound_deg >= 89.0:
        return rows, np.arange(width)
    half = np.rad2deg(np.arcsin(min(1.0, np.sin(np.deg2rad(bound_deg)) / np.cos(np.deg2rad(el)))))
    du = half / 360.0 * width + 1.5
    if 2 * du + 2 >= width:
        return rows, np.arange(width)
    return rows, np.arange(int(np.floor(u - du)), int(np.ceil(u + du)) + 1) % width


def object_masks(
    shape: str, az: float, el: float, radius: float, height: int, width: int
) -> tuple[NDArray, NDArray, NDArray[np.bool_], NDArray[np.bool_]]:
    """Pixels of a shape of angular ``radius`` degrees centred on (az, el) degrees in an H×W equirect.

    The shape lives in the plane tangent to the sphere at (az, el) (gnomonic coordinates, radius
    ``tan(radius)``), so a disc is a true spherical cap and every shape looks undistorted in a crop centred
    on it. Returns ``rows``, ``cols`` (index vectors of a bounding region) and ``inside``/``primary`` masks
    ``[len(rows), len(cols)]``.
    """
    bound = float(np.rad2deg(np.arctan(1.3 * np.tan(np.deg2rad(radius)))))
    rows, cols = _region(az, el, bound, height, width)
    paz, pel = equirect_to_direction(cols[None, :], rows[:, None], height, width)
    p = direction_to_vector(paz, pel)  # [r, c, 3]
    q = p @ view_rotation(az, el).T  # the object's direction becomes the front (1, 0, 0)
    x = q[..., 0]
    rho = np.tan(np.deg2rad(radius))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(x > 1e-6, q[..., 1] / x, np.inf) / rho
        t = np.where(x > 1e-6, q[..., 2] / x, np.inf) / rho
    inside, primary = shape_masks(shape, s, t)
    return rows, cols, inside, primary


def visible_objects(
    scene: Scene, t: float, height: int, width: int
) -> Iterator[tuple[Source, NDArray, NDArray, NDArray[np.bool_], NDArray[np.bool_]]]:
    """The visible sources of ``scene`` in scene order, each with its pixels at time ``t`` seconds in an H×W
    equirect: ``(source, rows, cols, inside, primary)`` as in :func:`object_masks`."""
    for src in scene.sources:
        if src.visible:
            az, el = src.direction(t)
            yield src, *object_masks(CLASSES[src.class_id - 1].shape, float(az), float(el), src.radius, height, width)


def paint_frame(background: NDArray[np.uint8], scene: Scene, t: float) -> NDArray[np.uint8]:
    """The equirect RGB frame ``[H, W, 3]`` uint8 at time ``t`` seconds: visible objects over the background."""
    frame = background.copy()
    h, w = frame.shape[:2]
    for src, rows, cols, inside, primary in visible_objects(scene, t, h, w):
        cls = CLASSES[src.class_id - 1]
        region = frame[np.ix_(rows, cols)]
        if cls.secondary is not None:
            region[inside & ~primary] = cls.secondary
        region[primary] = cls.colour
        frame[np.ix_(rows, cols)] = region
    return frame


def iter_frames(scene: Scene, cfg: SynthConfig) -> Iterator[NDArray[np.uint8]]:
    """All video frames (frame ``i`` at ``i / fps`` s), background rendered once."""
    w, h = cfg.size
    bg = render_background(scene, w, h)
    for i in range(cfg.n_frames):
        yield paint_frame(bg, scene, i / cfg.fps)
