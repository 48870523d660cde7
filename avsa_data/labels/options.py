"""The label backends' options as one config: each field is a flag of ``avsa-data shard`` (``--label-dir``,
``--model``, ``--onnx-*``), typed and documented once here. :data:`avsa_data.labels.BACKEND_OPTIONS` says which
backend reads which; one the chosen backend does not read is an error. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from avsa_data.labels.onnx_model import OUTPUT_KINDS, TENSOR_LAYOUTS
from avsa_data.options import DEVICES, option


@dataclass(frozen=True)
class LabelOptions:
    """Options of ``--labels precomputed`` and ``--labels onnx``; ``None`` = not given (the backend's default,
    and not part of the configuration hash)."""

    label_dir: str | None = option(None, help="precomputed: folder with one sub-folder of label PNGs per video id "
                                   "(ids or things/stuff layout).")
    class_map: str | None = option(None, help="precomputed/onnx: class-map JSON (source ids → output classes), or a "
                                   "shipped one by name.", default_doc="precomputed: LABEL_DIR/classes.json, else "
                                   "coco_panoptic_to_avsa32")
    label_fps: float | None = option(None, help="precomputed: label frames per second where a video folder has no "
                                     "labels.json.", default_doc="4 with the things/stuff layout")
    max_gap: float | None = option(None, flag="--label-max-gap", help="precomputed: tolerated distance (s) to the "
                                   "nearest label frame.", default_doc="one frame interval")
    model: str | None = option(None, help="onnx: the semantic-segmentation model (.onnx).")
    onnx_size: int | None = option(None, help="onnx: cube-face side in pixels.",
                                   default_doc="the model's fixed input size, else 512")
    onnx_mean: str | None = option(None, help="onnx: per-channel mean of RGB in [0,1].",
                                   default_doc="0.485,0.456,0.406")
    onnx_std: str | None = option(None, help="onnx: per-channel std.", default_doc="0.229,0.224,0.225")
    onnx_output: str | None = option(None, choices=OUTPUT_KINDS, help="onnx: the model outputs logits (softmax "
                                     "applied) or probabilities.", default_doc="logits")
    onnx_layout: str | None = option(None, choices=TENSOR_LAYOUTS, help="onnx: tensor layout of the model's input "
                                     "and output.", default_doc="nchw")
    onnx_fov: float | None = option(None, help="onnx: field of view of each cube face in degrees (more than 90: "
                                    "overlapping faces).", default_doc="90")
    onnx_device: str | None = option(None, choices=DEVICES, help="onnx: execution provider (auto: CUDA when "
                                     "onnxruntime has it).", default_doc="auto")
    onnx_threads: int | None = option(None, help="onnx: onnxruntime threads per worker (0: onnxruntime's choice).",
                                      default_doc="0")

    def given(self) -> dict[str, str]:
        """The options given, as the strings the backends parse (:func:`avsa_data.labels.make_backend`)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}

    def hashed(self) -> list[list[str]]:
        """The options given as sorted ``[name, string]`` pairs: their part of the shard job's configuration hash."""
        return [list(kv) for kv in sorted(self.given().items())]
