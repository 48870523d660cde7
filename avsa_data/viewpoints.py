"""Viewpoints: where the virtual NFOV camera (and the listener) looks, and how banks of them are sampled.

A :class:`Viewpoint` is (azimuth, elevation, hfov, vfov) in **degrees**, in the conventions of
:mod:`avsa_data.geometry` (azimuth positive to the left, elevation positive up). ``vfov`` is
derived from an aspect ratio: ``vfov = aspect · hfov``, as in the reference implementation where the
crop's vertical extent is ``aspect · hfov`` and the output is resized to a fixed square.

All samplers are deterministic functions of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from .geometry import angular_distance, wrap_azimuth

#: Reference (Table 2) horizontal field-of-view range, degrees.
HFOV_RANGE = (25.0, 90.0)
#: Reference aspect-ratio range (vfov / hfov), sampled log-uniformly.
ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
#: Reference centre band: the middle third of the frame height, i.e. elevation in ±30°.
ELEVATION_RANGE = (-30.0, 30.0)
#: Reference minimum separation between the viewpoints of one moment: 0.2 in the reference's
#: normalised (2u, v) equirect plane, i.e. 0.2 · 180° = 36° (we measure it as a great-circle angle).
MIN_SEPARATION_DEG = 36.0


@dataclass(frozen=True)
class Viewpoint:
    """A viewing direction and field of view, all in degrees."""

    azimuth: float
    elevation: float
    hfov: float = 90.0
    vfov: float = 90.0

    def __post_init__(self) -> None:
        for name in ("hfov", "vfov"):
            v = getattr(self, name)
            if not (0.0 < v < 180.0):
                raise ValueError(f"Viewpoint.{name} must be in (0, 180) degrees, got {v}")
        if not (-90.0 <= self.elevation <= 90.0):
            raise ValueError(f"Viewpoint.elevation must be in [-90, 90] degrees, got {self.elevation}")

    @property
    def aspect(self) -> float:
        return self.vfov / self.hfov

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Viewpoint:
        return cls(float(d["azimuth"]), float(d["elevation"]), float(d["hfov"]), float(d["vfov"]))

    def rotated(self, yaw_deg: float) -> Viewpoint:
        """The same view turned left by ``yaw_deg`` degrees."""
        return Viewpoint(float(wrap_azimuth(self.azimuth + yaw_deg)), self.elevation, self.hfov, self.vfov)

    def mirrored(self) -> Viewpoint:
        """The view of the horizontally flipped world (azimuth negated)."""
        return Viewpoint(float(wrap_azimuth(-self.azimuth)), self.elevation, self.hfov, self.vfov)


def sample_fov(
    rng: np.random.Generator,
    hfov_range: tuple[float, float] = HFOV_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> tuple[float, float]:
    """(hfov, vfov) in degrees: hfov uniform in ``hfov_range``, aspect log-uniform in ``aspect_range``."""
    hfov = float(rng.uniform(*hfov_range))
    aspect = math.exp(float(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1]))))
    return hfov, min(hfov * aspect, 179.0)


def sample_random(
    rng: np.random.Generator,
    k: int,
    *,
    min_separation: float = MIN_SEPARATION_DEG,
    elevation_range: tuple[float, float] = ELEVATION_RANGE,
    hfov_range: tuple[float, float] = HFOV_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
    max_tries: int = 10_000,
) -> list[Viewpoint]:
    """K random viewpoints, pairwise at least ``min_separation`` degrees apart (great circle).

    Centre azimuth is uniform over 360° (separation therefore wraps around ±180°), elevation uniform
    in ``elevation_range``; fields of view from :func:`sample_fov`. Raises ``ValueError`` if the
    constraint cannot be met within ``max_tries`` draws.
    """
    if k < 1:
        raise ValueError(f"need at least one viewpoint, got k={k}")
    az: list[float] = []
    el: list[float] = []
    tries = 0
    while len(az) < k:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"could not place {k} viewpoints {min_separation}° apart in elevation band {elevation_range}"
            )
        a = float(rng.uniform(-180.0, 180.0))
        e = float(rng.uniform(*elevation_range))
        if az and np.min(angular_distance(a, e, np.array(az), np.array(el))) < min_separation:
            continue
        az.append(a)
        el.append(e)
    views = []
    for a, e in zip(az, el):
        hfov, vfov = sample_fov(rng, hfov_range, aspect_range)
        views.append(Viewpoint(a, e, hfov, vfov))
    return views


def sample_grid(
    rng: np.random.Generator | None,
    k: int,
    *,
    elevation: float = 0.0,
    hfov: float | None = None,
    hfov_range: tuple[float, float] = HFOV_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
    random_offset: bool = True,
) -> list[Viewpoint]:
    """K viewpoints at regularly spaced azimuths (360/K apart) and one elevation.

    With ``random_offset`` the whole grid is turned by a random yaw. With ``hfov`` fixed the fields of
    view are square (hfov = vfov); otherwise they are drawn by :func:`sample_fov`.
    """
    if k < 1:
        raise ValueError(f"need at least one viewpoint, got k={k}")
    offset = float(rng.uniform(0.0, 360.0 / k)) if (random_offset and rng is not None) else 0.0
    views = []
    for i in range(k):
        a = float(wrap_azimuth(offset + i * 360.0 / k))
        if hfov is not None:
            h, v = float(hfov), float(hfov)
        else:
            if rng is None:
                raise ValueError("sample_grid needs an rng when hfov is not fixed")
            h, v = sample_fov(rng, hfov_range, aspect_range)
        views.append(Viewpoint(a, float(elevation), h, v))
    return views


def from_list(items: Iterable[Sequence[float] | dict]) -> list[Viewpoint]:
    """Explicit viewpoints from ``(az, el[, hfov[, vfov]])`` tuples or dicts (degrees)."""
    views = []
    for it in items:
        if isinstance(it, dict):
            views.append(Viewpoint.from_dict({"hfov": 90.0, "vfov": it.get("hfov", 90.0), **it}))
            continue
        vals = [float(x) for x in it]
        if len(vals) < 2 or len(vals) > 4:
            raise ValueError(f"a viewpoint is (az, el[, hfov[, vfov]]) in degrees, got {it!r}")
        az, el = vals[0], vals[1]
        hfov = vals[2] if len(vals) > 2 else 90.0
        vfov = vals[3] if len(vals) > 3 else hfov
        views.append(Viewpoint(az, el, hfov, vfov))
    return views


#: Fraction of the ``energy`` sampler's probability spread uniformly over the band, so that silent directions
#: still get views (the negatives the spatial task needs) and a wrong energy map cannot starve any direction.
ENERGY_UNIFORM_FRACTION = 0.25
#: Angular width (degrees, 1 σ) of the kernel that smooths the energy map: views land near, not exactly on, a source.
ENERGY_KERNEL_DEG = 15.0
#: Spacing of the candidate-centre grid of the ``energy`` sampler (degrees).
ENERGY_GRID_DEG = 5.0


def energy_map(
    foa: NDArray, az_deg: NDArray, el_deg: NDArray, kernel_deg: float = ENERGY_KERNEL_DEG, n_fft: int = 512,
    max_bins: int = 2000,
) -> NDArray[np.float64]:
    """Sound energy arriving from each direction ``(az_deg[i], el_deg[i])`` of an ambiX FOA window ``[4, n]``.

    Every time-frequency bin of a short-time Fourier transform (``n_fft`` samples, Hann, hop ``n_fft/2``) has an
    active intensity ``Re(conj(W) · (X, Y, Z))`` that points at the source dominating that bin (DirAC). The map
    adds, for the ``max_bins`` strongest bins, the bin's amplitude ``|W|`` through a von Mises–Fisher kernel of
    width ``kernel_deg`` around its direction. Several sources with different spectra therefore give several
    peaks; the diffuse noise spreads thinly. Returns a non-negative array shaped like ``az_deg``.
    """
    from .geometry import direction_to_vector

    a = np.asarray(foa, dtype=np.float64)
    n = a.shape[1]
    n_fft = min(n_fft, n - n % 2) if n >= 2 else 2
    hop = max(1, n_fft // 2)
    starts = np.arange(0, max(1, n - n_fft + 1), hop)
    frames = np.stack([a[:, s : s + n_fft] for s in starts], axis=1) * np.hanning(n_fft)  # [4, F, n_fft]
    spec = np.fft.rfft(frames, axis=-1).reshape(4, -1)  # [4, bins]
    w, y, z, x = spec
    inten = np.real(np.conj(w)[None] * np.stack([x, y, z]))  # [3, bins], Cartesian (x front, y left, z up)
    amp = np.abs(w)
    if amp.size > max_bins:
        keep = np.argpartition(amp, -max_bins)[-max_bins:]
        inten, amp = inten[:, keep], amp[keep]
    norm = np.linalg.norm(inten, axis=0)
    ok = norm > 0
    dirs = (inten[:, ok] / norm[ok]).T  # [N, 3]
    cand = direction_to_vector(np.asarray(az_deg, dtype=np.float64), np.asarray(el_deg, dtype=np.float64))
    kappa = 1.0 / np.deg2rad(kernel_deg) ** 2
    out = np.exp(kappa * (cand.reshape(-1, 3) @ dirs.T - 1.0)) @ amp[ok]
    return out.reshape(np.shape(az_deg))


def sample_energy(
    rng: np.random.Generator,
    k: int,
    foa: NDArray,
    *,
    min_separation: float = MIN_SEPARATION_DEG,
    elevation_range: tuple[float, float] = ELEVATION_RANGE,
    hfov_range: tuple[float, float] = HFOV_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
    uniform_fraction: float = ENERGY_UNIFORM_FRACTION,
) -> list[Viewpoint]:
    """K viewpoints that favour the directions the sound comes from, pairwise ≥ ``min_separation`` apart.

    Centres are drawn one after the other from a grid (``ENERGY_GRID_DEG`` spacing, elevation in
    ``elevation_range``) with probability ``(1 − uniform_fraction) · energy + uniform_fraction · uniform``, where
    ``energy`` is the normalised :func:`energy_map` of ``foa`` (the sample's unrotated ambiX window); candidates
    closer than ``min_separation`` plus one grid step to a chosen centre are removed. Each centre is then moved
    uniformly within half a grid cell, and fields of view come from :func:`sample_fov`. Deterministic given
    ``rng`` and ``foa``. Useful on real data too: no ground truth is needed, only the audio.
    """
    if k < 1:
        raise ValueError(f"need at least one viewpoint, got k={k}")
    if not 0.0 <= uniform_fraction <= 1.0:
        raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
    step = ENERGY_GRID_DEG
    az_c = np.arange(-180.0, 180.0, step)
    el_c = np.arange(elevation_range[0] + step / 2, elevation_range[1], step)
    if el_c.size == 0:
        el_c = np.array([(elevation_range[0] + elevation_range[1]) / 2])
    az_g, el_g = (g.ravel() for g in np.meshgrid(az_c, el_c))
    energy = energy_map(foa, az_g, el_g)
    total = float(energy.sum())
    uniform = np.full(az_g.shape, 1.0 / az_g.size)
    p = (1.0 - uniform_fraction) * energy / total + uniform_fraction * uniform if total > 0 else uniform
    alive = np.ones(az_g.shape, dtype=bool)
    views = []
    for _ in range(k):
        q = np.where(alive, p, 0.0)
        if q.sum() <= 0:
            raise ValueError(f"could not place {k} viewpoints {min_separation}° apart in elevation band "
                             f"{elevation_range}")
        i = int(rng.choice(q.size, p=q / q.sum()))
        a = float(wrap_azimuth(az_g[i] + rng.uniform(-step / 2, step / 2)))
        e = float(np.clip(el_g[i] + rng.uniform(-step / 2, step / 2), *elevation_range))
        # one grid step of margin: a later centre moves at most half a cell diagonal (< step) from its grid point
        alive &= angular_distance(a, e, az_g, el_g) >= min_separation + step
        hfov, vfov = sample_fov(rng, hfov_range, aspect_range)
        views.append(Viewpoint(a, e, hfov, vfov))
    return views


SAMPLERS = ("random", "grid", "energy")


def sample_bank(
    rng: np.random.Generator, k: int, sampler: str = "random", foa: NDArray | None = None, **kwargs
) -> list[Viewpoint]:
    """Dispatch to a named sampler (``random`` with margin, ``grid``, or ``energy``, which needs ``foa``)."""
    if sampler == "random":
        return sample_random(rng, k, **kwargs)
    if sampler == "grid":
        return sample_grid(rng, k, **kwargs)
    if sampler == "energy":
        if foa is None:
            raise ValueError("the energy viewpoint sampler needs the sample's FOA window")
        return sample_energy(rng, k, foa, **kwargs)
    raise ValueError(f"unknown viewpoint sampler {sampler!r}; choose one of {SAMPLERS}")
