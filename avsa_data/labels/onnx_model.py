"""``--labels onnx``: pseudo-labels from a user-supplied ONNX semantic-segmentation model, run on cube faces.

Segmentation models are trained on perspective images, so an equirect frame is cut into the six faces of a
cube map (:mod:`avsa_data.labels.cubemap`, ``--onnx-fov`` degrees each, 90 by default), the six faces go through
the model **in one batch** (one ``session.run``; a model whose batch size is fixed to 1 is run face by face),
and the per-face class probabilities are projected back onto an equirect of ``4·n × 2·n`` pixels (``n`` = the
model's output side; ``360/fov·n`` wide with wider faces). Confidence = the (interpolated) maximum softmax
probability; the class map (``--class-map``, optional) may merge the model's classes (their probabilities
add up) and mark classes whose pixels get confidence 0.

Model contract (docs/LABELS.md): one input ``[N, 3, S, S]`` float32 RGB (``--onnx-layout nhwc``:
``[N, S, S, 3]``), normalised as ``(rgb / 255 − mean) / std`` (``--onnx-mean``, ``--onnx-std``; ImageNet's by
default); ``S`` is the model's static input side, else ``--onnx-size`` (default 512). The first output is
``[N, K, s, s]`` (``nhwc``: ``[N, s, s, K]``) class scores: ``--onnx-output logits`` (softmax applied here) or
``probs``. ``s`` may differ from ``S`` (strided outputs). No weights are ever downloaded.

``onnxruntime`` is an optional dependency (``pip install 'avsa[onnx]'``) imported only when this backend is
used; ``--onnx-device auto`` uses CUDA when onnxruntime offers it. The model file's sha256 goes into every
sample's ``meta.json``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from avsa_data import media
from avsa_data.fsutil import sha256_file
from avsa_data.media import commands as ffmpeg_commands
from avsa_data.options import DEVICES

from .base import LabelBackend, LabelError, LabelFrame
from .classmap import ClassMap
from .cubemap import equirect_to_faces, faces_to_equirect

OUTPUT_KINDS = ("logits", "probs")
TENSOR_LAYOUTS = ("nchw", "nhwc")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Face side (pixels) when the model's input size is dynamic and ``--onnx-size`` is not given.
DEFAULT_FACE_SIZE = 512


@dataclass(frozen=True)
class OnnxSettings:
    """How faces are fed to the model. ``size`` = face side in pixels (``None``: the model's static size, else
    :data:`DEFAULT_FACE_SIZE`); ``mean``/``std`` per RGB channel on [0, 1] values; ``fov`` face field of view
    (degrees); ``threads`` = onnxruntime intra-op threads (0 = its default)."""

    size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output: str = "logits"
    layout: str = "nchw"
    fov: float = 90.0
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        for flag, value, allowed in (("--onnx-output", self.output, OUTPUT_KINDS),
                                     ("--onnx-layout", self.layout, TENSOR_LAYOUTS),
                                     ("--onnx-device", self.device, DEVICES)):
            if value not in allowed:
                raise LabelError(f"{flag} must be one of {allowed}, got {value!r}")
        if self.size is not None and self.size < 8:
            raise LabelError(f"--onnx-size must be ≥ 8 pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise LabelError("--onnx-mean and --onnx-std need 3 values (R,G,B); std > 0")
        if not 90.0 <= self.fov < 180.0:
            raise LabelError(f"--onnx-fov must be in [90, 180) degrees, got {self.fov}")


def normalise_faces(faces: NDArray[np.float32], mean, std, layout: str = "nchw") -> NDArray[np.float32]:
    """``[6, S, S, 3]`` RGB in 0..255 → model input ``(rgb/255 − mean)/std``, ``[6, 3, S, S]`` (or NHWC)."""
    x = (faces / np.float32(255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x if layout == "nhwc" else x.transpose(0, 3, 1, 2), dtype=np.float32)


def softmax(x: NDArray[np.float32], axis: int = 1) -> NDArray[np.float32]:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32, copy=False)


def _providers(ort, device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise LabelError(f"--onnx-device cuda: onnxruntime has no CUDA provider (available: {available}); "
                             "install onnxruntime-gpu or use --onnx-device cpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _dim(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


@dataclass
class OnnxLabels(LabelBackend):
    """The backend: loads the model when made (a shard job makes one in its main process, and one per video in
    a pool or Ray worker; see the module docstring)."""

    name: str = "onnx"
    model: Path = Path("model.onnx")
    settings: OnnxSettings = field(default_factory=OnnxSettings)
    class_map: ClassMap | None = None

    def __post_init__(self) -> None:
        self.model = Path(self.model)
        if not self.model.is_file():
            raise LabelError(f"--model {self.model}: no such file")
        self.sha256 = sha256_file(self.model)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise LabelError("--labels onnx needs onnxruntime: pip install 'avsa[onnx]'") from e
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.settings.threads:
            opts.intra_op_num_threads = int(self.settings.threads)
        try:
            self.session = ort.InferenceSession(str(self.model), sess_options=opts,
                                                providers=_providers(ort, self.settings.device))
        except Exception as e:  # onnxruntime raises its own exception types for broken files
            raise LabelError(f"--model {self.model}: not a loadable ONNX model ({str(e).splitlines()[0]})") from e
        self._inspect()

    # ------------------------------------------------------------------------------------------ the model

    def _inspect(self) -> None:
        """Input name/size/batch, then one probe run on a blank face for the output's classes and size."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise LabelError(f"--model {self.model}: expected one image input and a score output, got "
                             f"{len(inputs)} inputs and {len(outputs)} outputs")
        inp = inputs[0]
        self.input_name, self.output_name = inp.name, outputs[0].name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise LabelError(f"--model {self.model}: input {inp.name} has shape {shape}; expected 4-D "
                             f"{'[N, 3, S, S]' if self.settings.layout == 'nchw' else '[N, S, S, 3]'}")
        nchw = self.settings.layout == "nchw"
        ch, hh, ww = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
        if _dim(ch) not in (None, 3):
            raise LabelError(f"--model {self.model}: input has {ch} channels; expected 3 (RGB) in "
                             f"{self.settings.layout.upper()} (see --onnx-layout)")
        static = _dim(hh), _dim(ww)
        if static[0] and static[1] and static[0] != static[1]:
            raise LabelError(f"--model {self.model}: input is {static[1]}×{static[0]}; cube faces need a square input")
        if static[0] and self.settings.size and self.settings.size != static[0]:
            raise LabelError(f"--onnx-size {self.settings.size} but the model's input is fixed to {static[0]} pixels")
        self.face_size = int(static[0] or self.settings.size or DEFAULT_FACE_SIZE)
        batch = _dim(shape[0])
        if batch not in (None, 1, 6):
            raise LabelError(f"--model {self.model}: input batch is fixed to {batch}; need 6 (the cube faces), 1 or "
                             "dynamic")
        self.batch = 1 if batch == 1 else 6
        if "float" not in inp.type or "16" in inp.type:
            raise LabelError(f"--model {self.model}: input type {inp.type}; expected tensor(float)")
        scores = self._run(np.zeros((1, self.face_size, self.face_size, 3), np.float32))
        k, s = scores.shape[1], scores.shape[2]
        if k < 2:
            raise LabelError(f"--model {self.model}: output has {k} class channel(s); expected ≥ 2 (see --onnx-layout)")
        self.num_model_classes, self.output_size = int(k), int(s)
        self._reduce = None
        if self.class_map is not None:
            if self.class_map.num_source != k:
                raise LabelError(f"--class-map {self.class_map.name}: has {self.class_map.num_source} source classes "
                                 f"but the model outputs {k}")
            if not np.array_equal(self.class_map.lut, np.arange(k)):
                self._reduce = self.class_map.reduction_matrix()
        else:
            self.class_map = ClassMap.identity(self._model_class_names(k), name="model")
        self.class_names = list(self.class_map.classes)
        eq_w = int(round(360.0 / self.settings.fov * self.output_size / 2.0)) * 2
        self.label_size = (eq_w, eq_w // 2)

    def _model_class_names(self, k: int) -> list[str]:
        """Class names from the model's metadata (``classes``: a JSON list), else ``class_0 .. class_{K-1}``."""
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        raw = meta.get("classes") or meta.get("class_names")
        if raw:
            try:
                names = json.loads(raw)
                if isinstance(names, list) and len(names) == k:
                    return [str(n) for n in names]
            except json.JSONDecodeError:
                pass
        return [f"class_{i}" for i in range(k)]

    def _run(self, faces: NDArray[np.float32]) -> NDArray[np.float32]:
        """Model scores ``[F, K, s, s]`` for faces ``[F, S, S, 3]`` (0..255): normalise, run, check."""
        s = self.settings
        x = normalise_faces(faces, s.mean, s.std, s.layout)
        try:
            if self.batch == len(x):
                out = self.session.run([self.output_name], {self.input_name: x})[0]
            else:
                out = np.concatenate([self.session.run([self.output_name], {self.input_name: x[i:i + 1]})[0]
                                      for i in range(len(x))])
        except Exception as e:  # onnxruntime's own exception types
            raise LabelError(f"--model {self.model}: inference failed ({str(e).splitlines()[0]})") from e
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(x):
            raise LabelError(f"--model {self.model}: output {self.output_name} has shape {out.shape}; expected "
                             f"{'[N, K, s, s]' if s.layout == 'nchw' else '[N, s, s, K]'}")
        if s.layout == "nhwc":
            out = out.transpose(0, 3, 1, 2)
        if out.shape[2] != out.shape[3]:
            raise LabelError(f"--model {self.model}: output is {out.shape[3]}×{out.shape[2]}; expected square maps")
        return out

    # -------------------------------------------------------------------------------------------- labels

    def label_equirect(self, frame: NDArray[np.uint8], timings: dict[str, float] | None = None) -> LabelFrame:
        """Labels of one equirect RGB frame ``[H, W, 3]`` uint8, at :attr:`label_size` (W, H).

        ``timings`` (optional) receives the seconds spent in each step: ``faces`` (equirect → cube faces),
        ``model`` (normalise + session.run), ``softmax`` (softmax + class-map merge) and ``projection``.
        """
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise LabelError(f"expected an RGB equirect [H, W, 3], got shape {frame.shape}")
        t0 = time.perf_counter()
        faces = equirect_to_faces(frame, self.face_size, self.settings.fov)
        t1 = time.perf_counter()
        scores = self._run(faces)
        t2 = time.perf_counter()
        probs = softmax(scores, axis=1) if self.settings.output == "logits" else scores
        if self._reduce is not None:
            probs = np.einsum("ok,fkhw->fohw", self._reduce, probs, optimize=True).astype(np.float32)
        t3 = time.perf_counter()
        w, h = self.label_size
        classes, conf = faces_to_equirect(probs, h, w, self.settings.fov)
        if self.class_map.ignore:
            conf[np.isin(classes, sorted(self.class_map.ignore))] = 0.0
        t4 = time.perf_counter()
        if timings is not None:
            for key, dt in (("faces", t1 - t0), ("model", t2 - t1), ("softmax", t3 - t2), ("projection", t4 - t3)):
                timings[key] = timings.get(key, 0.0) + dt
        dtype = np.uint8 if len(self.class_names) <= 256 else np.uint16
        return LabelFrame(classes.astype(dtype), conf)

    def open(self, video_path: Path, video_id: str) -> OnnxVideoLabels:
        try:
            pr = media.probe(video_path, scan_packets=False)
        except media.MediaError as e:
            raise LabelError(f"--labels onnx: cannot read {Path(video_path).name} ({e})") from e
        if not pr.has_video or not pr.width or not pr.height:
            raise LabelError(f"--labels onnx: {Path(video_path).name} has no readable video stream")
        return OnnxVideoLabels(self, Path(video_path), int(pr.width), int(pr.height))

    def describe(self) -> dict:
        s = self.settings
        return {
            "backend": self.name,
            **self.class_map.describe(),
            "model": {"path": str(self.model), "sha256": self.sha256, "input": self.input_name,
                      "output": self.output_name, "classes": self.num_model_classes},
            "onnx": {"face_size": self.face_size, "output_size": self.output_size, "mean": list(s.mean),
                     "std": list(s.std), "output": s.output, "layout": s.layout, "fov": s.fov,
                     "projection": "cubemap", "label_size": list(self.label_size)},
        }

    @property
    def produces_masks(self) -> bool:
        return True

    @classmethod
    def from_options(cls, model: str | None = None, class_map: str | None = None, onnx_size: str | None = None,
                     onnx_mean: str | None = None, onnx_std: str | None = None, onnx_output: str | None = None,
                     onnx_layout: str | None = None, onnx_fov: str | None = None, onnx_device: str | None = None,
                     onnx_threads: str | None = None) -> OnnxLabels:
        """Build from the string options of ``avsa-data shard`` (``--model`` is required)."""
        if not model:
            raise LabelError("--labels onnx needs --model path/to/model.onnx")
        kw: dict = {}
        if onnx_size:
            kw["size"] = _number(onnx_size, "--onnx-size", int)
        if onnx_mean:
            kw["mean"] = _triple(onnx_mean, "--onnx-mean")
        if onnx_std:
            kw["std"] = _triple(onnx_std, "--onnx-std")
        if onnx_output:
            kw["output"] = onnx_output
        if onnx_layout:
            kw["layout"] = onnx_layout.lower()
        if onnx_fov:
            kw["fov"] = _number(onnx_fov, "--onnx-fov", float)
        if onnx_device:
            kw["device"] = onnx_device
        if onnx_threads:
            kw["threads"] = _number(onnx_threads, "--onnx-threads", int)
        return cls(model=Path(model), settings=OnnxSettings(**kw),
                   class_map=ClassMap.load(class_map) if class_map else None)


def _number(value: str, option: str, kind):
    try:
        return kind(value)
    except ValueError:
        raise LabelError(f"{option}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def _triple(value: str, option: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise LabelError(f"{option}: expected three comma-separated numbers R,G,B, got {value!r}")
    return parts  # type: ignore[return-value]


def read_frame_at(path: Path, t: float, width: int, height: int) -> NDArray[np.uint8]:
    """The RGB frame ``[H, W, 3]`` shown at ``t`` seconds: ffmpeg input seek, the first frame at or after ``t``
    (or the video's last frame when ``t`` falls after it)."""
    n = width * height * 3

    def frames_from(start: float, count: int) -> tuple[bytes, str]:
        out = subprocess.run(ffmpeg_commands.seek_video_frames(str(path), start, count), capture_output=True)
        return (out.stdout if out.returncode == 0 else b""), out.stderr.decode("utf-8", "replace").strip()

    data, err = frames_from(max(float(t), 0.0), 1)
    if len(data) < n and t > 0:
        data, err = frames_from(max(float(t) - 1.0, 0.0), 1000)  # t is past the last frame: take that one
    if len(data) < n:
        raise LabelError(f"--labels onnx: no video frame at t={t:.3f} s in {Path(path).name}"
                         + (f" ({err.splitlines()[-1]})" if err else ""))
    last = (len(data) // n - 1) * n
    return np.frombuffer(data[last:last + n], dtype=np.uint8).reshape(height, width, 3)


def write_colour_model(path: str | Path, face_size: int | None = 64, scale: float = 10.0, softmax_output: bool = False
                       ) -> Path:
    """Write a tiny ONNX model (a 1×1 convolution; needs the ``onnx`` package) for smoke tests and benchmarks.

    Input ``[N, 3, S, S]`` RGB in [0, 1] (use ``--onnx-mean 0,0,0 --onnx-std 1,1,1``; ``face_size=None`` makes
    S dynamic), output ``[N, 4, S, S]`` logits (``softmax_output``: probabilities) of the classes
    :data:`COLOUR_CLASSES`: 0 ``other`` = 0, and for colour c in (red, green, blue)
    ``scale · (c − 1.5·(sum of the other two) − 0.2)``, so saturated red/green/blue pixels win their class.
    """
    import onnx
    from onnx import TensorProto, helper

    w = np.zeros((4, 3, 1, 1), np.float32)
    b = np.zeros(4, np.float32)
    for c in range(3):
        w[c + 1, :, 0, 0] = -1.5 * scale
        w[c + 1, c, 0, 0] = scale
        b[c + 1] = -0.2 * scale
    side = face_size if face_size else "S"
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["logits" if softmax_output else "scores"])]
    if softmax_output:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    graph = helper.make_graph(
        nodes, "avsa_colour_classes",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, side, side])],
        [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
         helper.make_tensor("B", TensorProto.FLOAT, b.shape, b)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="avsa")
    model.ir_version = 8
    helper.set_model_props(model, {"classes": json.dumps(list(COLOUR_CLASSES))})
    onnx.checker.check_model(model)
    p = Path(path)
    p.write_bytes(model.SerializeToString())
    return p


#: Classes of :func:`write_colour_model`.
COLOUR_CLASSES = ("other", "red", "green", "blue")


@dataclass
class OnnxVideoLabels:
    """Labels of one video, computed on demand at the requested times (a few recent results are kept)."""

    backend: OnnxLabels
    video_path: Path
    width: int
    height: int
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def at(self, t: float, frame: NDArray[np.uint8] | None = None) -> LabelFrame:
        """Labels at ``t`` seconds; ``frame`` (the decoded equirect at ``t``) saves decoding it again."""
        key = round(float(t), 6)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if frame is None:
            frame = read_frame_at(self.video_path, float(t), self.width, self.height)
        lab = self.backend.label_equirect(frame)
        self._cache[key] = lab
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return lab
