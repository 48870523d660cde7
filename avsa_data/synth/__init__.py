"""Synthetic 360° videos with first-order ambisonics and exact ground truth (``avsa-data synth``).

Each video is a scene: a textured sky/ground equirect panorama and a few objects of distinct visual
classes. A *source* is one object: it may be **visible** (painted as a class-specific shape of angular
radius ``radius`` degrees around its direction, in the tangent plane of that direction so it looks right in
gnomonic crops) and/or **sounding** (a class-specific sound encoded into ambiX FOA at its true direction,
per sample when it moves). Scenes mix sounding visible objects, visible silent ones and invisible
(off-screen) sounds, plus diffuse noise at ``snr_db``. Sources move slowly in azimuth and switch on/off.

Outputs per video (docs/FORMAT.md, section *Raw input*): ``{id}.mp4`` (H.264 + 4-channel audio, or a
``{id}.wav`` sidecar), ``{id}.truth.npz`` (class maps, confidence, source tracks) and ``{id}.json``; per folder
``videos.csv`` (``video_id,split``) and ``synth.json``. With ``layout="starss23"`` the same scenes are written in
the STARSS23 / DCASE layout instead (:func:`write_scene`): video, FOA and exact sound-event CSVs in separate
folders, plus ``metadata_dev/classes.json``. Everything is a pure function of the seed: the same
seed gives byte-identical files, whatever the worker count.

One module per concept, data flowing down the list:

* :mod:`~avsa_data.synth.classes`: the object classes (shape, colours, sound);
* :mod:`~avsa_data.synth.config`: :class:`SynthConfig`, the generator's parameters;
* :mod:`~avsa_data.synth.scene`: sources, blobs and the random scene of each video;
* :mod:`~avsa_data.synth.shapes`: the table of shapes (name → tangent-plane masks);
* :mod:`~avsa_data.synth.paint`: background and objects painted into equirect frames;
* :mod:`~avsa_data.synth.sound`: the table of class sounds, envelopes, diffuse noise and the FOA mix;
* :mod:`~avsa_data.synth.truth`: class maps, confidence, source tracks and sound events;
* :mod:`~avsa_data.synth.writer`: one scene's files and the parallel folder writer;
* :mod:`~avsa_data.synth.fixtures`: broken inputs for testing readers.

Every public name is re-exported here, so ``from avsa_data import synth; synth.generate(...)`` works.
"""

from __future__ import annotations

from .classes import CLASS_NAMES, CLASSES, ObjectClass, class_id
from .config import AUDIO_LAYOUTS, FORMAT_VERSION, LAYOUTS, SynthConfig
from .fixtures import CORRUPT_VARIANTS, write_corrupt_variants
from .paint import iter_frames, object_masks, paint_frame, render_background, visible_objects
from .scene import Blob, Scene, Source, make_scene, video_id
from .shapes import SHAPES, shape_masks
from .sound import SOUNDS, class_sound, diffuse_noise, envelope, fibonacci_directions, render_foa
from .truth import EVENT_CLASS_NAMES, label_frame, render_truth, scene_events
from .writer import STARSS23_SPLIT_FOLDERS, default_workers, generate, npz_bytes, split_of, write_scene

__all__ = [
    "AUDIO_LAYOUTS",
    "CLASSES",
    "CLASS_NAMES",
    "CORRUPT_VARIANTS",
    "EVENT_CLASS_NAMES",
    "FORMAT_VERSION",
    "LAYOUTS",
    "SHAPES",
    "SOUNDS",
    "STARSS23_SPLIT_FOLDERS",
    "Blob",
    "ObjectClass",
    "Scene",
    "Source",
    "SynthConfig",
    "class_id",
    "class_sound",
    "default_workers",
    "diffuse_noise",
    "envelope",
    "fibonacci_directions",
    "generate",
    "iter_frames",
    "label_frame",
    "make_scene",
    "npz_bytes",
    "object_masks",
    "paint_frame",
    "render_background",
    "render_foa",
    "render_truth",
    "scene_events",
    "shape_masks",
    "split_of",
    "video_id",
    "visible_objects",
    "write_corrupt_variants",
    "write_scene",
]
