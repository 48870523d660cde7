"""Pseudo-label backends: precomputed label folders (ids and panoptic layouts), the ONNX cube-face backend, the
shipped COCO-panoptic → AVSA-32 class map, nearest-neighbour mask crops, and ``avsa-data labels classes``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from avsa_data import codecs, shard_format
from avsa_data.crops import CropGrid
from avsa_data.geometry import angular_distance, equirect_direction_grid
from avsa_data.labels import LabelError, make_backend
from avsa_data.labels.classmap import ClassMap
from avsa_data.labels.cubemap import FACE_NAMES, equirect_to_faces, faces_to_equirect
from avsa_data.labels.onnx_model import OnnxLabels, OnnxSettings, softmax, write_colour_model
from avsa_data.labels.precomputed import PrecomputedLabels
from avsa_data.reader import iter_samples
from avsa_data.synth import SynthConfig
from avsa_data.viewpoints import Viewpoint

GREY, RED, GREEN, BLUE = (128, 128, 128), (230, 25, 25), (25, 210, 25), (25, 25, 230)
RAW01 = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the colour model takes RGB in [0, 1]


# ------------------------------------------------------------------------------------------------ helpers


def save_png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codecs.encode_png(a) if a.ndim == 2 else _rgb_png(a))


def _rgb_png(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def write_ids_folder(folder: Path, frames: np.ndarray, conf: np.ndarray | None = None, fps: float | None = 4.0,
                     numbers: list[int] | None = None) -> None:
    """``{n:06d}.png`` (+ ``.conf.png``) and ``labels.json`` for label frames ``[F, H, W]``."""
    numbers = list(range(len(frames))) if numbers is None else numbers
    for n, f in zip(numbers, frames):
        save_png(folder / f"{n:06d}.png", f)
    if conf is not None:
        for n, c in zip(numbers, conf):
            save_png(folder / f"{n:06d}.conf.png", codecs.confidence_to_uint8(c))
    if fps is not None:
        (folder / "labels.json").write_text(json.dumps({"fps": fps}))


def write_truth_labels(raw: Path, label_dir: Path) -> None:
    """Precomputed labels (ids layout) for every synth video of ``raw`` from its ``.truth.npz``."""
    for npz in sorted(raw.glob("*.truth.npz")):
        with np.load(npz) as d:
            write_ids_folder(label_dir / npz.name.split(".")[0], d["labels"], d["confidence"].astype(np.float32),
                             fps=float(d["label_fps"]))
            names = [str(x) for x in d["class_names"]]
    (label_dir / "classes.json").write_text(json.dumps({"classes": names}))


def paint_discs(h: int, w: int, discs: list[tuple[float, float, float, int]], colours, background=GREY):
    """An RGB equirect and its class map with discs (az, el, radius in degrees, class id)."""
    az, el = equirect_direction_grid(h, w)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background
    lab = np.zeros((h, w), np.int64)
    for a, e, r, c in discs:
        m = angular_distance(az, el, a, e) < r
        img[m] = colours[c]
        lab[m] = c
    return img, lab


def colour_confidence(rgb, scale: float = 10.0) -> tuple[int, float]:
    """Class and max softmax probability of the colour model for one RGB colour (0..255)."""
    x = np.asarray(rgb, np.float64) / 255.0
    logits = [0.0] + [scale * (x[c] - 1.5 * (x.sum() - x[c]) - 0.2) for c in range(3)]
    p = np.exp(np.array(logits) - max(logits))
    p /= p.sum()
    return int(np.argmax(p)), float(p.max())


def crop_edges(row_values: np.ndarray, level: float) -> list[float]:
    """Sub-pixel column positions where a row crosses ``level`` (linear interpolation)."""
    s = row_values - level
    out = []
    for i in np.flatnonzero(np.sign(s[:-1]) != np.sign(s[1:])):
        out.append(i + s[i] / (s[i] - s[i + 1]))
    return out


# ------------------------------------------------------------------------------------------- class maps


def test_shipped_class_map_is_the_papers_32_classes():
    cm = ClassMap.load("coco_panoptic_to_avsa32")
    assert len(cm.classes) == 33 and cm.classes[0] == "unlabeled" and cm.ignore == {0}
    assert cm.num_source == 135 and cm.panoptic == (80, 54)
    mapped = cm.lut[cm.lut > 0]
    assert sorted(mapped.tolist()) == list(range(1, 33))  # each of the 32 classes has exactly one source category
    # reference order: filtered index i → avsa id i + 1 (things first, then stuff)
    for src, out, name in [(0, 1, "person"), (2, 2, "car"), (66, 16, "keyboard"), (120, 17, "sky"),
                           (132, 18, "wall"), (116, 32, "window")]:
        assert cm.lut[src] == out and cm.classes[out] == name == cm.source_classes[src]
    assert cm.lut[1] == 0 and cm.source_classes[1] == "bicycle"  # not among the 32 → unlabeled
    # panoptic merge (reference: datasets/video_db.py load_segm_clip): a thing wins, else 80 + stuff, 134 = void
    things = np.array([[0, 2, 80, 80, 80, 80]])
    stuff = np.array([[5, 5, 40, 36, 54, 0]])
    src = cm.merge_panoptic(things, stuff, "t")
    assert src.tolist() == [[0, 2, 120, 116, 134, 80]]
    classes, ignored = cm.apply(src, "t")
    assert classes.tolist() == [[1, 2, 17, 32, 0, 0]] and ignored.tolist() == [[False] * 4 + [True] * 2]
    with pytest.raises(LabelError, match="stuff class id 55 is outside"):
        cm.merge_panoptic(np.array([[80]]), np.array([[55]]), "t")


def test_class_map_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelError, match="not valid JSON"):
        ClassMap.load(bad)
    with pytest.raises(LabelError, match="no such file"):
        ClassMap.load(tmp_path / "nope.json")
    with pytest.raises(LabelError, match="have no output id"):
        ClassMap.from_dict({"classes": ["a", "b"], "source_classes": ["x", "y", "z"], "map": {"0": 1}})
    cm = ClassMap.identity(["bg", "a", "b"])
    with pytest.raises(LabelError, match="class id 3 is outside the class map"):
        cm.apply(np.array([[0, 3]]), "f.png")


# ---------------------------------------------------------------------------------- precomputed backend


def _frames(n: int = 8, h: int = 16, w: int = 32) -> np.ndarray:
    """Label frames whose every pixel holds (frame number mod 3) so the chosen frame is visible."""
    return np.stack([np.full((h, w), i % 3, np.uint8) for i in range(n)])


def _backend(label_dir: Path, **kw) -> PrecomputedLabels:
    return PrecomputedLabels(label_dir=label_dir, class_map=ClassMap.identity(["a", "b", "c"]), **kw)


def test_precomputed_picks_the_nearest_frame_and_refuses_far_ones(tmp_path):
    frames = _frames()
    conf = np.linspace(0.1, 0.9, 8)[:, None, None] * np.ones((8, 16, 32))
    write_ids_folder(tmp_path / "v", frames, conf, fps=4.0)
    labels = _backend(tmp_path).open(Path("/videos/v.mp4"), "v")
    for t, frame in [(0.0, 0), (0.12, 0), (0.13, 1), (1.1, 4), (1.9, 7), (1.75 + 0.25, 7)]:
        lab = labels.at(t)
        assert lab.classes.dtype == np.uint8 and lab.confidence.dtype == np.float32
        assert (lab.classes == frame % 3).all()
        np.testing.assert_allclose(lab.confidence, np.round(conf[frame] * 255) / 255, atol=1e-6)
    with pytest.raises(LabelError, match="no label frame within 0.250 s of t=2.100"):
        labels.at(2.1)  # last frame at 1.75 s, tolerance one frame interval (0.25 s)
    d = _backend(tmp_path).describe()
    assert d["backend"] == "precomputed" and d["classes"] == {"0": "a", "1": "b", "2": "c"}


def test_precomputed_frame_rate_sources(tmp_path):
    write_ids_folder(tmp_path / "v", _frames(), fps=None, numbers=[2 * i for i in range(8)])  # every other frame
    with pytest.raises(LabelError, match=r"no frame rate: write labels.json .* or pass --label-fps"):
        _backend(tmp_path).open(Path("v.mp4"), "v")
    labels = _backend(tmp_path, label_fps=8.0).open(Path("v.mp4"), "v")  # frames 0, 2, 4 ... at 8 fps
    assert (labels.at(0.5).classes == 2).all()  # frame number 4 = t 0.5 s = 3rd file (index 2)
    (tmp_path / "v" / "labels.json").write_text(json.dumps({"fps": 4.0}))  # labels.json wins over --label-fps
    labels = _backend(tmp_path, label_fps=8.0, max_gap=0.5).open(Path("v.mp4"), "v")
    assert (labels.at(1.0).classes == 2).all()
    # the video folder may also be named after the video file's stem
    assert _backend(tmp_path).open(Path("/x/v.mp4"), "other_id").fps == 4.0
    with pytest.raises(LabelError, match="no label folder"):
        _backend(tmp_path).open(Path("/x/w.mp4"), "w")


def test_precomputed_missing_frames_are_an_error(tmp_path):
    write_ids_folder(tmp_path / "v", _frames()[[0, 1, 2, 6, 7]], numbers=[0, 1, 2, 6, 7])
    with pytest.raises(LabelError, match=r"missing label frames between t=0.500 s and t=1.500 s"):
        _backend(tmp_path).open(Path("v.mp4"), "v")
    _backend(tmp_path, max_gap=0.5).open(Path("v.mp4"), "v")  # a wider tolerance accepts the gap
    write_ids_folder(tmp_path / "late", _frames()[3:], numbers=[3, 4, 5, 6, 7])
    with pytest.raises(LabelError, match="first label frame is at t=0.750 s"):
        _backend(tmp_path).open(Path("late.mp4"), "late")


def test_precomputed_wrong_resolution_and_bad_images(tmp_path):
    write_ids_folder(tmp_path / "aspect", np.zeros((2, 16, 48), np.uint8))
    with pytest.raises(LabelError, match=r"000000.png: label image is 48×16; expected a 2:1 equirect"):
        _backend(tmp_path).open(Path("aspect.mp4"), "aspect")
    write_ids_folder(tmp_path / "sizes", _frames(4))
    save_png(tmp_path / "sizes" / "000002.png", np.zeros((8, 16), np.uint8))
    with pytest.raises(LabelError, match=r"000002.png: label image is 16×8 but 000000.png is 32×16"):
        _backend(tmp_path).open(Path("sizes.mp4"), "sizes")
    write_ids_folder(tmp_path / "conf", _frames(4), np.ones((4, 16, 32)))
    save_png(tmp_path / "conf" / "000001.conf.png", np.zeros((8, 16), np.uint8))
    with pytest.raises(LabelError, match=r"000001.conf.png: confidence is 16×8 but the class ids are 32×16"):
        _backend(tmp_path).open(Path("conf.mp4"), "conf")
    write_ids_folder(tmp_path / "rgb", _frames(4))
    save_png(tmp_path / "rgb" / "000003.png", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(LabelError, match="expected a single-channel class-id PNG"):
        _backend(tmp_path).open(Path("rgb.mp4"), "rgb")
    write_ids_folder(tmp_path / "trunc", _frames(4))
    data = (tmp_path / "trunc" / "000001.png").read_bytes()
    (tmp_path / "trunc" / "000001.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LabelError, match="000001.png: unreadable label image"):
        _backend(tmp_path).open(Path("trunc.mp4"), "trunc")
    write_ids_folder(tmp_path / "ids", _frames(4))
    save_png(tmp_path / "ids" / "000002.png", np.full((16, 32), 7, np.uint8))
    with pytest.raises(LabelError, match=r"ids/000002.png: class id 7 is outside the class map"):
        _backend(tmp_path).open(Path("ids.mp4"), "ids")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelError, match="no label frames"):
        _backend(tmp_path).open(Path("empty.mp4"), "empty")


def test_precomputed_16_bit_ids(tmp_path):
    names = [f"c{i}" for i in range(300)]
    a = np.zeros((16, 32), np.uint16)
    a[:, 16:] = 299
    write_ids_folder(tmp_path / "v", np.stack([a, a]))
    labels = PrecomputedLabels(label_dir=tmp_path, class_map=ClassMap.identity(names)).open(Path("v.mp4"), "v")
    lab = labels.at(0.0)
    assert lab.classes.dtype == np.uint16 and lab.classes.max() == 299 and (lab.confidence == 1).all()
    # ids above 255 stay 16-bit in the shard's mask PNGs (8-bit while every id of the frame fits)
    from avsa_data.samples import _mask_members

    assert codecs.class_dtype(lab.classes) == np.uint16 and codecs.class_dtype(a[:, :16]) == np.uint8
    assert codecs.class_dtype(a[:0]) == np.uint8
    view = Viewpoint(-90.0, 0.0, 90.0, 90.0)  # looks at the right half (ids 299)
    members = dict(_mask_members(lab, codecs.class_dtype(lab.classes), CropGrid(view, (8, 8)),
                                 CropGrid(view, (4, 4)), 0, 0))
    seg = codecs.decode_png(members[shard_format.seg_member(0, 0)], (8, 8))
    assert seg.dtype == np.uint16 and (seg == 299).all()


def test_precomputed_panoptic_layout_with_the_default_map(tmp_path):
    folder = tmp_path / "yt_abc-10"
    h, w = 8, 16
    for n in range(3):
        things = np.full((h, w, 3), 80, np.uint8)  # the reference stores RGB PNGs and reads channel 0
        things[:, :4, 0] = 0  # person
        stuff = np.full((h, w, 3), 40, np.uint8)  # sky
        stuff[:, 12:, 0] = 54  # void
        stuff[:, 8:12, 0] = 10  # a stuff category that is not among the 32 (source 90)
        save_png(folder / f"things-{n:04d}.png", things)
        save_png(folder / f"stuff-{n:04d}.png", stuff)
    save_png(folder / "conf-0001.png", np.full((h, w), 200, np.uint8))
    backend = PrecomputedLabels(label_dir=tmp_path)  # no classes.json → the shipped COCO-panoptic → AVSA-32 map
    d = backend.describe()
    assert d["classes"]["1"] == "person" and d["classes"]["17"] == "sky" and d["ignored_class_ids"] == [0]
    assert len(d["class_map"]["sha256"]) == 64 and d["class_map"]["name"] == "coco_panoptic_to_avsa32"
    labels = backend.open(Path("yt_abc-10.mp4"), "yt_abc-10")
    assert labels.fps == 4.0  # the reference's label rate by default
    lab = labels.at(0.25)
    assert lab.classes[0].tolist() == [1] * 4 + [17] * 4 + [0] * 8
    assert lab.confidence[0].tolist() == pytest.approx([200 / 255] * 8 + [0.0] * 8)
    assert (labels.at(0.0).confidence[:, :8] == 1).all()
    (folder / "stuff-0002.png").unlink()
    with pytest.raises(LabelError, match="things-0002.png but no stuff-0002.png"):
        backend.open(Path("yt_abc-10.mp4"), "yt_abc-10")


def test_make_backend_validates_options(tmp_path):
    with pytest.raises(LabelError, match="needs --label-dir"):
        make_backend("precomputed")
    with pytest.raises(ValueError, match="--label-dir is not used by --labels onnx"):
        make_backend("onnx", label_dir=str(tmp_path), model="m.onnx")
    with pytest.raises(ValueError, match="--label-max-gap is not used by --labels synthetic"):
        make_backend("synthetic", max_gap="1")
    with pytest.raises(LabelError, match="--label-fps: expected a number"):
        make_backend("precomputed", label_dir=str(tmp_path), label_fps="fast")


# ---------------------------------------------------------------------------------- crops of label maps


@pytest.mark.parametrize("view", [Viewpoint(0.0, 0.0, 60.0, 60.0), Viewpoint(12.0, 20.0, 90.0, 70.0),
                                  Viewpoint(-170.0, -25.0, 45.0, 45.0)])
def test_mask_edges_line_up_with_image_edges_in_crops(view):
    """Left half of the sphere (azimuth in (0°, 180°)) red + class 1, the rest grey + class 0: the class edge of
    the nearest-sampled label crop sits within 1 pixel of the colour edge of the bilinear RGB crop."""
    h, w = 256, 512
    az, _ = equirect_direction_grid(h, w)
    left = (az > 0) & (az < 180)
    img = np.where(left[..., None], np.array(RED, np.uint8), np.array(GREY, np.uint8)).astype(np.uint8)
    labels = left.astype(np.uint8) * 5  # class 5: a blended id would show up between 0 and 5
    grid = CropGrid(view, (112, 112))
    rgb = grid.sample(img)  # bilinear
    seg = grid.sample(labels, mode="nearest")
    assert set(np.unique(seg)) <= {0, 5}  # never a blended id
    rows = 0
    for r in range(112):
        img_edges = crop_edges(rgb[r, :, 1].astype(np.float64), (RED[1] + GREY[1]) / 2)
        seg_edges = [i + 0.5 for i in np.flatnonzero(np.diff(seg[r].astype(int)))]
        assert len(img_edges) == len(seg_edges)
        for a, b in zip(img_edges, seg_edges):
            assert abs(a - b) <= 1.0, (r, a, b)
        rows += bool(img_edges)
    assert rows >= 100  # the edge crosses (nearly) every row of these views


# -------------------------------------------------------------------------------------- cube faces, ONNX


def test_cube_faces_are_upright_views_in_project_conventions():
    """Faces of an equirect holding each pixel's own (azimuth, elevation): face centres look front, right, back,
    left, up, down; columns turn right (azimuth decreases), rows go down; up has the back at its top."""
    h, w, n = 180, 360, 33
    az, el = equirect_direction_grid(h, w)
    faces = equirect_to_faces(np.stack([np.cos(np.deg2rad(az)), np.sin(np.deg2rad(az)), el], -1), n)
    face_az = np.rad2deg(np.arctan2(faces[..., 1], faces[..., 0]))
    face_el = faces[..., 2]
    c = n // 2
    expect = {"front": (0, 0), "right": (-90, 0), "back": (180, 0), "left": (90, 0)}
    for f, name in enumerate(FACE_NAMES):
        if name in expect:
            assert abs(((face_az[f, c, c] - expect[name][0]) + 180) % 360 - 180) < 1.0 and abs(face_el[f, c, c]) < 1
            assert face_el[f, 0, c] > 40 and face_el[f, -1, c] < -40  # rows go down
            assert ((face_az[f, c, 0] - face_az[f, c, -1]) % 360) < 180  # columns turn right
    up, down = FACE_NAMES.index("up"), FACE_NAMES.index("down")
    assert face_el[up, c, c] > 85 and face_el[down, c, c] < -85
    assert abs(abs(face_az[up, 0, c]) - 180) < 1 and abs(face_az[down, 0, c]) < 1  # up: back at top; down: front
    assert abs(face_az[up, c, -1] + 90) < 1 and abs(face_az[down, c, -1] + 90) < 1  # right edge = our right


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> Path:
    return write_colour_model(tmp_path_factory.mktemp("onnx") / "colour.onnx", face_size=64)


def test_onnx_discs_come_back_at_the_right_place_across_seams(colour_model):
    """Discs straddling cube seams and corners come back as the right class at the right place, with
    confidence = the model's max softmax probability."""
    discs = [(45.0, 0.0, 14.0, 1),  # front/left seam
             (-135.0, 38.0, 14.0, 2),  # right/back seam near the up face
             (180.0, -20.0, 12.0, 3),  # the equirect's wrap-around column
             (135.0, -40.0, 12.0, 1)]  # back/left/down corner
    colours = {1: RED, 2: GREEN, 3: BLUE}
    img, _ = paint_discs(256, 512, discs, colours)
    backend = OnnxLabels(model=colour_model, settings=OnnxSettings(**RAW01))
    assert backend.face_size == 64 and backend.label_size == (256, 128) and backend.batch == 6
    timings: dict = {}
    lab = backend.label_equirect(img, timings)
    assert set(timings) == {"faces", "model", "softmax", "projection"}
    assert lab.classes.shape == (128, 256)
    az, el = equirect_direction_grid(128, 256)
    expected = np.zeros((128, 256), np.int64)
    inside = np.zeros((128, 256), bool)
    band = np.zeros((128, 256), bool)  # within 4° of a disc edge: blurred by the two bilinear resamplings
    for a, e, r, c in discs:
        d = angular_distance(az, el, a, e)
        expected[d < r] = c
        inside |= d < r - 4
        band |= np.abs(d - r) < 4
    assert np.array_equal(lab.classes[~band], expected[~band])
    for c, col in colours.items():
        assert colour_confidence(col)[0] == c
        np.testing.assert_allclose(lab.confidence[inside & (expected == c)], colour_confidence(col)[1], rtol=1e-5)
        # every disc is found, on both sides of its seam
        for a, e, r, cc in discs:
            if cc == c:
                near = angular_distance(az, el, a, e) < r - 4
                assert (lab.classes[near] == c).all()
    np.testing.assert_allclose(lab.confidence[~band & (expected == 0)], colour_confidence(GREY)[1], rtol=1e-5)


def test_onnx_probability_output_nhwc_and_class_map_merge(tmp_path, colour_model):
    img, _ = paint_discs(128, 256, [(0.0, 0.0, 20.0, 1), (90.0, 10.0, 20.0, 2)], {1: RED, 2: GREEN})
    ref = OnnxLabels(model=colour_model, settings=OnnxSettings(**RAW01)).label_equirect(img)
    probs = write_colour_model(tmp_path / "probs.onnx", face_size=None, softmax_output=True)
    dyn = OnnxLabels(model=probs, settings=OnnxSettings(size=64, output="probs", **RAW01))
    lab = dyn.label_equirect(img)
    assert np.array_equal(lab.classes, ref.classes)
    np.testing.assert_allclose(lab.confidence, ref.confidence, atol=1e-5)
    nhwc = _nhwc_colour_model(tmp_path / "nhwc.onnx")
    lab = OnnxLabels(model=nhwc, settings=OnnxSettings(layout="nhwc", **RAW01)).label_equirect(img)
    assert np.array_equal(lab.classes, ref.classes)
    # a class map merging red and green into "warm": probabilities add up; "other" is ignored (confidence 0)
    cmap = tmp_path / "merge.json"
    cmap.write_text(json.dumps({"classes": ["other", "warm", "blue"], "source_classes": ["o", "r", "g", "b"],
                                "map": {"0": 0, "1": 1, "2": 1, "3": 2}, "ignore": [0]}))
    merged = make_backend("onnx", model=str(colour_model), class_map=str(cmap), onnx_mean="0,0,0", onnx_std="1,1,1")
    lab = merged.label_equirect(img)
    assert np.array_equal(lab.classes, np.where(ref.classes == 2, 1, ref.classes))
    assert (lab.confidence[lab.classes == 0] == 0).all()
    x = np.array(RED, np.float64) / 255
    logits = np.array([0.0] + [10 * (x[c] - 1.5 * (x.sum() - x[c]) - 0.2) for c in range(3)], np.float32)
    p = softmax(logits[None, :, None, None])[0, :, 0, 0]
    az, el = equirect_direction_grid(128, 256)
    np.testing.assert_allclose(lab.confidence[angular_distance(az, el, 0, 0) < 12], p[1] + p[2], rtol=1e-5)
    assert merged.describe()["class_map"]["sha256"] == hashlib.sha256(cmap.read_bytes()).hexdigest()


def _nhwc_colour_model(path: Path) -> Path:
    import onnx
    from onnx import helper

    m = onnx.load(str(write_colour_model(path, face_size=64)))
    g = m.graph
    conv = g.node[0]
    conv.input[0], conv.output[0] = "nchw_in", "nchw_out"
    g.node.insert(0, helper.make_node("Transpose", ["image"], ["nchw_in"], perm=[0, 3, 1, 2]))
    g.node.append(helper.make_node("Transpose", ["nchw_out"], ["scores"], perm=[0, 2, 3, 1]))
    g.input[0].CopyFrom(helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", 64, 64, 3]))
    g.output[0].CopyFrom(helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["N", 64, 64, 4]))
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())
    return path


def test_onnx_bad_models_and_options(tmp_path, colour_model):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07" + bytes(range(256)) * 4)
    with pytest.raises(LabelError, match="broken.onnx: not a loadable ONNX model"):
        make_backend("onnx", model=str(broken))
    with pytest.raises(LabelError, match="needs --model"):
        make_backend("onnx")
    with pytest.raises(LabelError, match="--onnx-size 32 but the model's input is fixed to 64 pixels"):
        make_backend("onnx", model=str(colour_model), onnx_size="32")
    with pytest.raises(LabelError, match="--onnx-mean: expected three comma-separated numbers"):
        make_backend("onnx", model=str(colour_model), onnx_mean="0.5")
    with pytest.raises(LabelError, match="has 135 source classes but the model outputs 4"):
        make_backend("onnx", model=str(colour_model), class_map="coco_panoptic_to_avsa32")
    d = make_backend("onnx", model=str(colour_model)).describe()
    assert d["model"]["sha256"] == hashlib.sha256(colour_model.read_bytes()).hexdigest()
    assert d["classes"] == {"0": "other", "1": "red", "2": "green", "3": "blue"}  # from the model's metadata
    assert d["onnx"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and d["onnx"]["projection"] == "cubemap"


def test_cube_projection_of_one_hot_maps_is_exact_away_from_edges():
    h, w = 128, 256
    discs = [(45.0, 45.0, 20.0, 1), (-100.0, -60.0, 15.0, 2), (170.0, 5.0, 10.0, 3)]
    _, lab = paint_discs(h, w, discs, {1: RED, 2: GREEN, 3: BLUE})
    onehot = np.eye(4, dtype=np.float32)[lab]
    probs = np.moveaxis(equirect_to_faces(onehot, 96, fov_deg=100.0), -1, 1)
    classes, conf = faces_to_equirect(probs, h, w, fov_deg=100.0)
    az, el = equirect_direction_grid(h, w)
    far = np.ones((h, w), bool)
    for a, e, r, _ in discs:
        far &= np.abs(angular_distance(az, el, a, e) - r) > 3
    assert np.array_equal(classes[far], lab[far]) and np.allclose(conf[far], 1.0)


# --------------------------------------------------------------------------------- through the shard CLI


@pytest.fixture(scope="module")
def tiny_raw(test_data) -> Path:
    """Two tiny synth videos (3 s, 256×128)."""
    return test_data.raw(SynthConfig(videos=2, duration=3.0, size=(256, 128), seed=5))


SHARD = ["--viewpoints-per-moment", "3", "--shard-size", "100", "-q", "-j", "2"]


def _truth(raw: Path, vid: str) -> dict:
    with np.load(raw / f"{vid}.truth.npz") as d:
        return {k: d[k] for k in ("labels", "confidence", "label_times")}


def _check_masks_are_truth_crops(sample, truth: dict) -> None:
    """Every mask equals the nearest-sampled crop of the truth frame nearest to the label time, and class-1
    (red disc) pixels are red in the centre frame of the RGB crop (same grid)."""
    meta = sample.meta
    for m, t in enumerate(meta["label_times"]):
        i = int(np.argmin(np.abs(truth["label_times"] - t)))
        conf = codecs.confidence_to_uint8(truth["confidence"][i].astype(np.float32))
        for k, v in enumerate(meta["viewpoints"]):
            grid = CropGrid(Viewpoint.from_dict(v), tuple(meta["crop_size"]))
            seg, c = sample.masks(k, m)
            assert np.array_equal(seg, grid.sample(truth["labels"][i], mode="nearest"))
            assert np.array_equal(codecs.confidence_to_uint8(c), grid.sample(conf, mode="nearest"))
            red = (seg == 1) & (c >= shard_format.CONFIDENCE_THRESHOLD)
            if red.sum() > 20:
                px = sample.clip(k, m)[meta["frames_per_clip"] // 2][red].astype(int)
                assert np.mean((px[:, 0] > 150) & (px[:, 1] < 110) & (px[:, 2] < 110)) > 0.9


def test_shard_cli_precomputed_failures_and_labels_optional(tiny_raw, tmp_path):
    labels = tmp_path / "labels"
    write_truth_labels(tiny_raw, labels)
    broken = labels / "synth_0001" / "000003.png"
    a = np.asarray(Image.open(broken)).copy()
    a[5, 7] = 42  # a class id outside the 9-class map
    save_png(broken, a)
    out = tmp_path / "shards"
    r = run_cli("avsa_data", "shard", "--src", str(tiny_raw), "--out", str(out), "--labels", "precomputed",
                "--label-dir", str(labels), *SHARD)
    assert "1 failed" in r.stdout
    fails = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert len(fails) == 1 and fails[0]["video_id"] == "synth_0001" and fails[0]["stage"] == "labels"
    assert "synth_0001/000003.png: class id 42 is outside the class map" in fails[0]["reason"]
    good = list(iter_samples(out))
    assert good and {s.meta["video_id"] for s in good} == {"synth_0000"}
    truth = _truth(tiny_raw, "synth_0000")
    for s in good:
        lab = s.meta["labels"]
        assert lab["present"] and lab["backend"] == "precomputed" and lab["confidence_threshold"] == 0.75
        assert lab["classes"]["1"] == "red_disc" and len(lab["class_map"]["sha256"]) == 64
        _check_masks_are_truth_crops(s, truth)

    out2 = tmp_path / "shards_optional"
    run_cli("avsa_data", "shard", "--src", str(tiny_raw), "--out", str(out2), "--labels", "precomputed",
            "--label-dir", str(labels), "--labels-optional", *SHARD)
    assert (out2 / "failures.jsonl").read_text() == ""
    samples = list(iter_samples(out2))
    by_video = {v: [s for s in samples if s.meta["video_id"] == v] for v in ("synth_0000", "synth_0001")}
    assert all(by_video.values())
    for s in by_video["synth_0001"]:
        assert s.meta["labels"]["present"] is False and "class id 42 is outside" in s.meta["labels"]["error"]
        assert s.masks(0) is None and not any(".seg" in n or ".conf" in n for n in s.members)
    assert [s.members for s in by_video["synth_0000"]] == [s.members for s in good]

    # avsa-data labels classes: per-class pixel counts and the confident fraction, as text and JSON
    r = run_cli("avsa_data", "labels", "classes", str(out2), "--json")
    stats = json.loads(r.stdout)
    counts = np.zeros(9, np.int64)
    confident = 0
    for s in by_video["synth_0000"]:
        for m in range(s.meta["moments_per_sample"]):
            for k in range(s.num_views):
                seg, c = s.masks(k, m)
                counts += np.bincount(seg.ravel(), minlength=9)
                confident += int((c >= 0.75).sum())
    assert [row["pixels"] for row in stats["classes"]] == counts.tolist()
    assert [row["name"] for row in stats["classes"]][:2] == ["background", "red_disc"]
    assert stats["samples_without_masks"] == len(by_video["synth_0001"])
    assert stats["confident_fraction"] == pytest.approx(confident / counts.sum())
    assert sum(row["fraction"] for row in stats["classes"]) == pytest.approx(1.0)
    text = run_cli("avsa_data", "labels", "classes", str(out2)).stdout
    assert "red_disc" in text and f"= {confident / counts.sum():.4f}" in text and "class id 42" in text


def test_shard_cli_onnx_labels_follow_the_picture(tiny_raw, tmp_path, colour_model):
    out = tmp_path / "shards"
    run_cli("avsa_data", "shard", "--src", str(tiny_raw), "--out", str(out), "--labels", "onnx", "--model",
            str(colour_model), "--onnx-mean", "0,0,0", "--onnx-std", "1,1,1", "--strict", *SHARD)
    samples = list(iter_samples(out))
    assert samples
    sha = hashlib.sha256(colour_model.read_bytes()).hexdigest()
    agree = total_truth = total_pred = both = 0
    for s in samples:
        lab = s.meta["labels"]
        assert lab["present"] and lab["backend"] == "onnx" and lab["model"]["sha256"] == sha
        truth = _truth(tiny_raw, s.meta["video_id"])
        for m, t in enumerate(s.meta["label_times"]):
            i = int(np.argmin(np.abs(truth["label_times"] - t)))
            for k, v in enumerate(s.meta["viewpoints"]):
                grid = CropGrid(Viewpoint.from_dict(v), tuple(s.meta["crop_size"]))
                true_red = grid.sample(truth["labels"][i], mode="nearest") == 1
                true_conf = grid.sample(truth["confidence"][i].astype(np.float32), mode="nearest") >= 0.75
                seg, _ = s.masks(k, m)
                pred_red = seg == 1
                total_truth += int((true_red & true_conf).sum())
                agree += int((pred_red & true_red & true_conf).sum())
                total_pred += int(pred_red.sum())
                both += int((pred_red & true_red).sum())
    assert total_truth > 200  # the red disc is in view
    assert agree / total_truth > 0.9 and both / total_pred > 0.8


def test_shard_cli_broken_onnx_model_is_a_clear_error(tiny_raw, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    r = run_cli("avsa_data", "shard", "--src", str(tiny_raw), "--out", str(tmp_path / "s"), "--labels", "onnx",
                "--model", str(broken), "-q", check=False)
    assert r.returncode != 0 and "not a loadable ONNX model" in r.stderr
    r = run_cli("avsa_data", "shard", "--src", str(tiny_raw), "--out", str(tmp_path / "s2"), "--labels", "precomputed",
                "-q", check=False)
    assert r.returncode != 0 and "needs --label-dir" in r.stderr


def test_label_options_hash_as_the_strings_the_backends_read():
    """The label options given enter the job's configuration hash as sorted [name, string] pairs, exactly the
    strings the backend parses; an option not given is not part of the hash (so the backend's default may
    change without invalidating shards made without it)."""
    from avsa_data.labels.options import LabelOptions
    from avsa_data.shards import JobConfig

    opts = LabelOptions(label_fps=4.0, label_dir="labels/", onnx_size=512)
    assert opts.given() == {"label_dir": "labels/", "label_fps": "4.0", "onnx_size": "512"}
    assert opts.hashed() == [["label_dir", "labels/"], ["label_fps", "4.0"], ["onnx_size", "512"]]
    job = JobConfig(labels="precomputed", label_options=opts)
    assert job.hashed_fields()["label_options"] == opts.hashed()
    assert JobConfig().hashed_fields()["label_options"] == []
    assert JobConfig(label_options=opts).config_hash != JobConfig().config_hash
