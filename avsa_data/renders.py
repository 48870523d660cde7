"""Per-view audio: a viewpoint's rotated FOA, mono and stereo, made from the moment's unrotated FOA.

This module is the one statement of how a view's audio is made and of which renders a reader can make itself.
The shard builder (:mod:`avsa_data.samples`), the reader (:meth:`avsa_data.reader.RawSample.audio`), the training
stream (:func:`avsa_train.data.items.view_audio`) and the binary negatives (:mod:`avsa_train.tasks.misalign`) call it.

Conventions. Audio is first-order ambisonics in **ambiX**: ACN channel order (W, Y, Z, X), SN3D normalisation,
float arrays shaped ``[channels, n_samples]``. A viewpoint is a ``meta.viewpoints`` record ``{azimuth,
elevation, hfov, vfov}`` (or a :class:`~avsa_data.viewpoints.Viewpoint`): **degrees**, azimuth positive to the
**left** (counter-clockwise seen from above), elevation positive up (:mod:`avsa_data.geometry`).

The renders of a viewpoint at azimuth ``φ``, elevation ``θ`` (:data:`avsa_data.shard_format.RENDERS`):

* ``foa`` ``[4, n]`` (W, Y, Z, X): the field rotated so that the viewpoint is the front
  (:func:`avsa_data.ambisonics.rotate_to_view`: yaw by ``-φ``, then pitch by ``θ``; W unchanged).
* ``mono`` ``[1, n]``: ``M = (W + X) / 2`` of the rotated field, a first-order cardioid looking at the view centre
  (:func:`avsa_data.ambisonics.mono_render`).
* ``stereo`` ``[2, n]`` (channel 0 = left ear, 1 = right ear): the rotated field binauralised for a listener facing
  the view centre (:mod:`avsa_data.binaural`): ``virtual-mic`` (cardioids at ±90°) or an HRIR renderer
  (``--binaural hrir``).

Two forms of the same renders: :func:`render_view` / :func:`render_at` run the signal path (rotate, then render:
what the builder stores and readers recompute, bit for bit), and :func:`render_matrix` writes the linear ones as a
``[C, 4]`` matrix of the unrotated FOA (what the training stream folds with its mirror and gain into one product;
equal to the signal path to float32 rounding).

Which renders are derivable (:func:`derivable_renders`): those that are such a matrix (foa, mono and virtual-mic
stereo), which a reader makes exactly from ``mMM.foa.flac`` and the viewpoint; HRIR stereo is a convolution, so a
shard stores it (:func:`stored_renders`, ``--renders auto``).

Pure numpy; never imports torch (scipy only inside the HRIR renderers).
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from . import ambisonics, binaural, hrir_sets
from .shard_format import RENDERS
from .viewpoints import Viewpoint

#: How the audio members are laid out, stated in every ``meta.json`` (``audio`` record; docs/FORMAT.md).
AUDIO_LAYOUT = {
    "channel_order": {"foa": ["W", "Y", "Z", "X"], "mono": ["M"], "stereo": ["left", "right"]},
    "ambisonics": "ambiX: first order, ACN channel order, SN3D normalisation",
    "normalisation": "SN3D",
    "mono": "M = (W + X) / 2 of the rotated FOA: a first-order cardioid looking at the viewpoint centre",
    "stereo": "binaural, channel 0 = left ear, 1 = right ear, listener facing the viewpoint centre (see binaural)",
    "angle_units": "degrees",
    "angle_convention": "azimuth positive to the left (counter-clockwise from above), elevation positive up",
}


# ---------------------------------------------------------------------------------- which renders are stored


def derivable_renders(binaural_mode: str) -> tuple[str, ...]:
    """Renders that are a fixed ``[C, 4]`` matrix of the unrotated FOA for every viewpoint (:func:`render_matrix`:
    rotation, then a cardioid for mono, two cardioids for virtual-mic stereo), so a reader makes them exactly from
    ``mMM.foa.flac`` and the viewpoint; HRIR stereo is a convolution and is not (docs/FORMAT.md "Per-view audio")."""
    return RENDERS if binaural_mode == "virtual-mic" else ("foa", "mono")


def stored_renders(requested: tuple[str, ...], binaural_mode: str) -> tuple[str, ...]:
    """The renders a shard stores per viewpoint for ``--renders`` (``requested``): ``auto`` → those a reader
    cannot derive (:func:`derivable_renders`: none with virtual-mic, ``stereo`` with ``hrir``), ``none`` or
    ``()`` → none, else the named subset of :data:`~avsa_data.shard_format.RENDERS` in canonical order. Raises
    ``ValueError`` naming the flag on anything else."""
    req = tuple(requested)
    if req == ("auto",):
        return tuple(r for r in RENDERS if r not in derivable_renders(binaural_mode))
    if req in ((), ("none",)):
        return ()
    bad = [r for r in req if r not in RENDERS]
    if bad or len(set(req)) != len(req):
        raise ValueError(f"--renders must be auto, none, or distinct names from {','.join(RENDERS)}; got "
                         f"{','.join(req) or '(empty)'}")
    return tuple(r for r in RENDERS if r in req)


def binaural_mode(meta: dict) -> str:
    """The stereo renderer a sample's ``meta.json`` records (``binaural.mode``; version-1 samples without one:
    ``virtual-mic``)."""
    return (meta.get("binaural") or {}).get("mode", "virtual-mic")


# ------------------------------------------------------------------------------------------ the linear form


def render_matrix(viewpoint: dict, render: str) -> NDArray[np.float64]:
    """``[C, 4]`` float64: the linear map from the unrotated ambiX FOA (W, Y, Z, X) to ``render`` of
    ``viewpoint`` (a ``meta.viewpoints`` entry, degrees, azimuth positive left):
    :func:`~avsa_data.ambisonics.rotate_to_view` applied to the identity, then
    :func:`~avsa_data.ambisonics.mono_render` of the rotated field for ``mono`` (a cardioid at the view centre)
    and for virtual-mic ``stereo`` (rows left, right: cardioids at ±:data:`avsa_data.binaural.VIRTUAL_MIC_AZIMUTH`,
    :func:`avsa_data.binaural.virtual_mic_binaural`). Only the :func:`derivable_renders` have one: ``stereo``
    here is the virtual-mic render whatever the shard's ``binaural`` record says."""
    v = viewpoint
    rotation = ambisonics.rotate_to_view(np.eye(4), float(v["azimuth"]), float(v["elevation"]))
    if render == "foa":
        return rotation
    if render == "mono":
        return ambisonics.mono_render(rotation)[None]
    if render == "stereo":
        az = binaural.VIRTUAL_MIC_AZIMUTH
        return np.stack([ambisonics.mono_render(rotation, az, 0.0), ambisonics.mono_render(rotation, -az, 0.0)])
    raise ValueError(f"unknown render {render!r}; choose from {RENDERS}")


# ------------------------------------------------------------------------------------------ the signal path


def render_view(
    foa: NDArray, view: Viewpoint, renders: tuple[str, ...], sr: int, binaural_mode: str,
    sofa: str | os.PathLike | None = None, hrir_decoder: str = binaural.DEFAULT_HRIR_DECODER,
) -> dict[str, NDArray]:
    """The renders ``renders`` of viewpoint ``view`` (degrees) from the unrotated ambiX FOA ``[4, n]`` at ``sr``
    Hz: ``foa`` ``[4, n]`` (W, Y, Z, X rotated to the view), ``mono`` ``[1, n]``, ``stereo`` ``[2, n]`` (left,
    right; ``binaural_mode`` with the HRIR set ``sofa`` and renderer ``hrir_decoder`` for ``hrir``). The dtype
    follows ``foa``'s (stereo: float32). What the shard builder stores."""
    out: dict[str, NDArray] = {}
    if not renders:  # the default (--renders auto, virtual-mic): readers make them from the unrotated FOA
        return out
    rotated = ambisonics.rotate_to_view(foa, view.azimuth, view.elevation)
    if "foa" in renders:
        out["foa"] = rotated
    if "mono" in renders:
        out["mono"] = ambisonics.mono_render(rotated)[None]
    if "stereo" in renders:
        out["stereo"] = binaural.binauralize(rotated, sr, mode=binaural_mode, sofa=sofa, decoder=hrir_decoder)
    return out


def render_at(foa: NDArray, meta: dict, viewpoint: dict, render: str) -> NDArray[np.float32]:
    """``[C, n]`` float32 render ``render`` of the viewpoint record ``viewpoint`` (a ``meta.viewpoints`` entry,
    degrees; of this sample's bank or another's) from the unrotated ambiX FOA ``[4, n]``, with the sample's
    ``meta.json`` settings (``sr``, ``binaural``): what a reader makes for a render the shard did not store,
    equal to the builder's :func:`render_view`. Stereo of an ``hrir`` shard needs the very HRIR set that made it:
    it is found by the sha256 in ``meta.binaural`` (:func:`avsa_data.hrir_sets.locate_hrir_set`), and a missing or
    different set raises a clear ``FileNotFoundError``."""
    v = Viewpoint.from_dict(viewpoint)
    if render == "stereo":
        rotated = ambisonics.rotate_to_view(foa, v.azimuth, v.elevation)
        return stereo_renderer(meta)(rotated).astype(np.float32)
    out = render_view(foa, v, (render,), int(meta["sr"]), "virtual-mic")
    return out[render].astype(np.float32, copy=False)


def stereo_renderer(meta: dict) -> binaural.Binauralizer:
    """The :class:`~avsa_data.binaural.Binauralizer` that redoes the stereo a sample's ``meta.json`` describes
    (``binaural`` record at ``sr`` Hz), with an HRIR set checked by sha256
    (:func:`~avsa_data.hrir_sets.locate_hrir_set`; a record without ``decoder`` is format 1's ``ls``)."""
    record, sr = meta.get("binaural") or {}, int(meta["sr"])
    mode = binaural_mode(meta)
    if mode != "hrir":
        return binaural.Binauralizer(mode, sr)
    return binaural.Binauralizer("hrir", sr, hrir_sets.locate_hrir_set(record), record.get("decoder", "ls"))
