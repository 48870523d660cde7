"""Malformed shards against `verify`, the numpy reader and the training loader (issue 14, items 5, 6, 11).

Every damaged shard here must give problem lines (or one clear error) naming the shard and the key, never a
traceback, and nothing may allocate more than the shape ``meta.json`` allows: the checks run under an address
space cap (:func:`memory_cap`), so a decompression bomb or a huge declared size fails the test with a
MemoryError instead of passing quietly. Ends with a hypothesis fuzz test over bytes, headers and meta fields.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import tarfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avsa_data import codecs, shard_format
from avsa_data.reader import ShardFormatError, iter_raw, iter_samples
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig
from avsa_data.synth import SynthConfig
from avsa_data.verify import verify_dir, verify_shard

#: Address space a check may add to the process: far above what a tiny shard needs, far below any bomb here.
CAP = 256 << 20
SHARD = "train-000000.tar"


@contextmanager
def memory_cap(extra: int = CAP):
    """Lower the soft RLIMIT_AS to the current virtual size + ``extra`` bytes for the block, then restore it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith("VmSize:"))
    cap = vm + extra if hard == resource.RLIM_INFINITY else min(hard, vm + extra)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def tiny(test_data) -> Path:
    """Two one-sample shards (K=2 views, M=2 moments, 16 px crops, T=2, 8 kHz, masks, every member kind: the
    per-view renders stored too): a few hundred KB."""
    raw = test_data.raw(SynthConfig(videos=1, duration=2.0, size=(128, 64), seed=1))
    sample = SampleConfig(viewpoints_per_moment=2, crop_size=16, fps=8.0, clip_seconds=0.25, sr=8000,
                          audio_seconds=0.25, moments_per_sample=2, moment_gap=0.5, renders=("foa", "mono", "stereo"))
    out = test_data.shards(raw, JobConfig(sample=sample, labels="synthetic", shard_size=1), workers=1)
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "train-000001.tar"]
    return out


def _members(tar: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar) as t:
        return [(ti.name, t.extractfile(ti).read()) for ti in t]


def _write(tar: Path, members: list) -> None:
    """Write ``(name, bytes)`` members (or ready TarInfo/bytes pairs) as a ustar tar, like the shard writer."""
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            ti = name if isinstance(name, tarfile.TarInfo) else tarfile.TarInfo(name)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)


def _copy(tiny: Path, dst: Path) -> Path:
    shutil.copytree(tiny, dst)
    return dst


def _with_meta(members, change, rehash: bool = True):
    """Members with the first sample's meta.json changed by ``change(meta)``; ``rehash``: keep meta_sha256
    consistent, so only the schema or the decoders can catch the change."""
    out = []
    for i, (name, data) in enumerate(members):
        if i == 0:
            meta = json.loads(data)
            meta = change(meta) or meta
            if rehash and isinstance(meta, dict):
                meta["meta_sha256"] = codecs.meta_digest(meta)
            data = codecs.encode_json(meta)  # canonical, as the writer makes it
        out.append((name, data))
    return out


def _replace(members, suffix: str, data: bytes):
    return [(n, data if n.endswith("." + suffix) else d) for n, d in members]


def _problems(report) -> list[str]:
    return [f"{p['shard']} {p['key']}: {p['problem']}" for p in report.problems]


def _verify_both(folder: Path) -> tuple[list[str], list[str]]:
    """Problems of ``verify`` on the folder (with manifest) and on the damaged tar alone, under the memory cap."""
    with memory_cap():
        d = verify_dir(folder)
        s = verify_shard(folder / SHARD)
    assert d.samples >= 1 and d.shards == 2  # the other shard was checked too
    assert not [p for p in d.problems if p["shard"] != SHARD and "sha256 mismatch with manifest" not in p["problem"]]
    for r in (d, s):
        assert not [p for p in r.problems if "could not check" in p["problem"]], _problems(r)
    return _problems(d), _problems(s)


# ---------------------------------------------------------------------------------------------- item 5


def test_clean_shards_verify_and_carry_member_checksums(tiny):
    r = verify_dir(tiny)
    assert r.ok and r.samples == 2, _problems(r)
    s = next(iter_samples(tiny / SHARD))
    assert s.meta["format_version"] == shard_format.FORMAT_VERSION == 3
    assert set(s.meta["member_sha256"]) == set(shard_format.expected_members(s.meta)) - {"meta.json"}
    assert s.meta["meta_sha256"] == codecs.meta_digest(s.meta)


BAD_META = {
    "a list": (lambda m: [m], "must be a JSON object"),
    "crop_size strings": (lambda m: m.update(crop_size=["16", "16"]), "crop_size"),
    "crop_size float": (lambda m: m.update(crop_size=[16.5, 16]), "crop_size"),
    "frames_per_clip float": (lambda m: m.update(frames_per_clip=2.5), "frames_per_clip"),
    "moments_per_sample 1e9": (lambda m: m.update(moments_per_sample=10**9), "moments_per_sample"),
    "moments_per_sample float 1e9": (lambda m: m.update(moments_per_sample=1e9), "moments_per_sample"),
    "audio_scale string": (lambda m: m.update(audio_scale="1.0"), "audio_scale"),
    "audio_samples huge": (lambda m: m.update(audio_samples=2**40), "audio_samples"),
    "viewpoints dict": (lambda m: m.update(viewpoints={"a": 1}), "viewpoints"),
    "renders unknown": (lambda m: m.update(renders=["foa", "surround"]), "renders"),
    "crop too big for T": (lambda m: m.update(crop_size=[1024, 1024], frames_per_clip=256), "decodes to more"),
    "key mismatch": (lambda m: m.update(moment=7), "key"),
    "unknown field": (lambda m: m.update(colour="red"), "unknown field 'colour'"),
    "format_version 99": (lambda m: m.update(format_version=99), "format_version"),
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_malformed_meta_is_a_problem_line_not_a_crash(tiny, tmp_path, case):
    change, word = BAD_META[case]
    d = _copy(tiny, tmp_path / "d")
    _write(d / SHARD, _with_meta(_members(tiny / SHARD), change))
    in_dir, alone = _verify_both(d)
    for problems in (in_dir, alone):
        hits = [p for p in problems if "synth_0000/000000" in p and "meta.json" in p and word in p]
        assert hits, (case, problems)


#: Metas that only ``strict`` (verify) objects to: a reader may still use them.
STRICT_ONLY_META = {
    "no source": lambda m: m.update(source=None),
    "labels classes a list": lambda m: m["labels"].update(classes=["dog"]),
    "unknown field": lambda m: m.update(colour="red"),
}


@pytest.mark.parametrize("case", ["clean", *sorted(STRICT_ONLY_META), *sorted(BAD_META)])
def test_meta_check_gives_both_schema_answers_in_one_pass(tiny, case):
    meta = json.loads(dict(_members(tiny / SHARD))[f"synth_0000/000000.{shard_format.meta_member()}"])
    change = STRICT_ONLY_META.get(case) or BAD_META.get(case, (lambda m: None, ""))[0]
    meta = change(meta) or meta
    problems, usable = shard_format.meta_check(meta)
    assert problems == shard_format.meta_problems(meta, strict=True)
    assert usable == (not shard_format.meta_problems(meta, strict=False))
    assert usable == (case == "clean" or case in STRICT_ONLY_META) and bool(problems) == (case != "clean")


def test_verify_runs_the_meta_schema_once_per_sample(tiny, monkeypatch):
    calls = []
    real = shard_format._schema_problems
    monkeypatch.setattr(shard_format, "_schema_problems",
                        lambda meta, strict: (calls.append(strict), real(meta, strict))[1])
    r = verify_dir(tiny)
    assert r.ok and r.samples == 2 and calls == [True, True], (calls, _problems(r))


def test_member_header_declaring_one_tib_is_checked_against_the_file_size(tiny, tmp_path):
    d = _copy(tiny, tmp_path / "d")
    data = bytearray((d / SHARD).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
        ti = [x for x in t][3]
    hdr = ti.offset
    data[hdr + 124 : hdr + 136] = b"\x80" + (1 << 40).to_bytes(11, "big")  # GNU base-256 size: 1 TiB
    data[hdr + 148 : hdr + 156] = b"        "
    data[hdr + 148 : hdr + 156] = b"%06o\0 " % sum(data[hdr : hdr + 512])
    (d / SHARD).write_bytes(bytes(data))
    in_dir, alone = _verify_both(d)
    for problems in (in_dir, alone):
        assert any(f"declares {1 << 40} bytes but the file has" in p and ti.name in p for p in problems), problems
    with memory_cap(), pytest.raises(ShardFormatError, match="declares 1099511627776 bytes"):
        list(iter_samples(d / SHARD))


def _tar_ops(tiny: Path):
    m = _members(tiny / SHARD)
    key = m[0][0].split(".")[0]
    jpg = next(i for i, (n, _) in enumerate(m) if n.endswith(".m00.v00.jpg"))
    flipped = bytearray(m[jpg][1])
    flipped[len(flipped) // 2] ^= 0x10  # inside the entropy-coded data: decodes, to other pixels

    def meta_digit(meta):
        meta["viewpoints"][0]["azimuth"] += 1.0  # valid JSON, valid schema: only meta_sha256 can tell

    fifo = tarfile.TarInfo(f"{key}.fifo")
    fifo.type = tarfile.FIFOTYPE
    folder = tarfile.TarInfo(f"{key}.dir")
    folder.type = tarfile.DIRTYPE
    return {
        "duplicate key": (m + _members(tiny / "train-000001.tar") + m[:3], "duplicate sample key"),
        "duplicate member": (m[:2] + m[1:], "duplicate member"),
        "absolute name": (m + [("/etc/evil.meta.json", b"{}")], "'/etc/evil.meta.json' is not"),
        "dotdot name": (m + [(f"../{key}.m00.v00.jpg", m[jpg][1])], "absolute and '..' paths are refused"),
        "directory": (m[:1] + [(folder, None)] + m[1:], "is a directory, not a regular file"),
        "fifo": (m[:1] + [(fifo, None)] + m[1:], "is a FIFO, not a regular file"),
        "jpeg bit flip": (m[:jpg] + [(m[jpg][0], bytes(flipped))] + m[jpg + 1 :],
                          "m00.v00.jpg: sha256 mismatch with meta.json member_sha256"),
        "meta value flip": (_with_meta(m, meta_digit, rehash=False), "meta.json: sha256 mismatch"),
        "audio_scale type": (_with_meta(m, lambda x: x.update(audio_scale=[1.0])), "audio_scale must be"),
    }


@pytest.mark.parametrize("case", ["duplicate key", "duplicate member", "absolute name", "dotdot name", "directory",
                                  "fifo", "jpeg bit flip", "meta value flip", "audio_scale type"])
def test_damage_that_used_to_pass_is_reported(tiny, tmp_path, case):
    members, words = _tar_ops(tiny)[case]
    d = _copy(tiny, tmp_path / "d")
    _write(d / SHARD, members)
    in_dir, alone = _verify_both(d)
    for problems in (in_dir, alone):
        assert any(words in p and p.startswith(SHARD) for p in problems), (case, problems)
    if case in ("directory", "fifo"):  # readers skip entries without data (as webdataset does)
        assert next(iter_samples(d / SHARD)).clip(1, 1).shape == (2, 16, 16, 3)
    elif case not in ("jpeg bit flip", "meta value flip"):  # only the checksums (verify) see those
        with pytest.raises(ShardFormatError, match=f"{SHARD}: "):
            _ = [s.meta for s in iter_samples(d / SHARD)]


@pytest.mark.parametrize("case", ["trailing garbage", "zeroed header", "garbage header", "cut mid-member"])
def test_tar_framing_damage_in_single_tar_mode(tiny, tmp_path, case):
    d = _copy(tiny, tmp_path / "d")
    data = bytearray((d / SHARD).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
        ti = [x for x in t][10]
    if case == "trailing garbage":
        data += b"GARBAGE!" * 100
        words = "after the end-of-archive marker"
    elif case == "zeroed header":
        data[ti.offset : ti.offset + 512] = bytes(512)
        words = "after the end-of-archive marker"
    elif case == "garbage header":
        data[ti.offset : ti.offset + 512] = np.random.default_rng(0).integers(0, 256, 512, np.uint8).tobytes()
        words = "invalid tar header"
    else:
        data = data[: ti.offset_data + 100]
        words = "but the file has 100 left"
    (d / SHARD).write_bytes(bytes(data))
    with memory_cap():
        alone = _problems(verify_shard(d / SHARD))
    assert any(words in p and p.startswith(SHARD) for p in alone), alone
    with pytest.raises(ShardFormatError, match=words):
        list(iter_samples(d / SHARD))  # the reader refuses it too (tarfile used to stop there silently)


@pytest.mark.parametrize("field", [(100, b"0000755\0"), (108, b"0001750\0"), (136, b"14000000000\0"), (265, b"root\0")])
def test_a_header_field_changed_with_a_valid_checksum_is_reported(tiny, tmp_path, field):
    """mode, uid, mtime, uname: tar accepts them, but they are not the deterministic headers of docs/FORMAT.md."""
    start, value = field
    data = bytearray((tiny / SHARD).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
        ti = [x for x in t][5]
    h = ti.offset
    data[h + start : h + start + len(value)] = value
    data[h + 148 : h + 156] = b"        "
    data[h + 148 : h + 156] = b"%06o\0 " % sum(data[h : h + 512])
    (tmp_path / SHARD).write_bytes(bytes(data))
    assert next(iter_samples(tmp_path / SHARD)).clip(0, 0).shape == (2, 16, 16, 3)  # readers do not care
    problems = _problems(verify_shard(tmp_path / SHARD))
    hits = [p for p in problems if f"the header of member {ti.name!r}" in p and "not the deterministic one" in p]
    assert hits, problems


def test_version_1_shards_still_read_and_verify(tiny, tmp_path):
    def v1(meta):
        meta["format_version"] = 1
        del meta["member_sha256"], meta["meta_sha256"]

    _write(tmp_path / SHARD, _with_meta(_members(tiny / SHARD), v1, rehash=False))
    r = verify_shard(tmp_path / SHARD)
    assert r.ok, _problems(r)
    s = next(iter_samples(tmp_path / SHARD))
    assert s.meta["format_version"] == 1 and s.clip(1, 1).shape == (2, 16, 16, 3)


# ---------------------------------------------------------------------------------------------- item 6


def _jpeg_claiming(data: bytes, h: int, w: int) -> bytes:
    """``data`` with its SOF header patched to claim ``h × w`` pixels (the entropy data stays small)."""
    b = bytearray(data)
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(b)


def _flac_claiming(data: bytes, frames: int) -> bytes:
    """``data`` with its STREAMINFO total-samples field (36 bits at byte 21.5) set to ``frames``."""
    b = bytearray(data)
    v = int.from_bytes(b[18:26], "big")
    v = (v & ~((1 << 36) - 1)) | frames
    b[18:26] = v.to_bytes(8, "big")
    return bytes(b)


def _bomb_members(tiny: Path, kind: str):
    m = _members(tiny / SHARD)
    get = dict((n.split(".", 1)[1], d) for n, d in m)
    if kind == "jpeg":  # 16384 × 16384 × 3 = 768 MiB if decoded
        return _replace(m, "m00.v00.jpg", _jpeg_claiming(get["m00.v00.jpg"], 16384, 16384)), "m00.v00.jpg"
    if kind == "flac":  # a stream declaring 2^35 samples × 4 channels (512 GiB of float32)
        return _replace(m, "m00.v00.foa.flac", _flac_claiming(get["m00.v00.foa.flac"], 1 << 35)), "m00.v00.foa.flac"
    if kind == "flac silence":  # an honest bomb: 178 KB of FLAC, 32 Mi samples × 4 channels = 512 MiB decoded
        buf = io.BytesIO()
        import soundfile as sf

        with sf.SoundFile(buf, "w", 8000, 4, format="FLAC", subtype="PCM_16") as f:
            for _ in range(32):
                f.write(np.zeros((1 << 20, 4), np.int16))
        return _replace(m, "m00.v00.foa.flac", buf.getvalue()), "m00.v00.foa.flac"
    big = np.zeros((4096, 4096), np.uint8)  # png: a 16 MiB mask where 16 × 16 is declared
    return _replace(m, "m00.v00.seg.png", codecs.encode_png(big)), "m00.v00.seg.png"


@pytest.mark.parametrize("kind", ["jpeg", "flac", "flac silence", "png"])
def test_decompression_bombs_are_refused_before_decoding(tiny, tmp_path, kind):
    members, name = _bomb_members(tiny, kind)
    d = _copy(tiny, tmp_path / "d")
    _write(d / SHARD, members)
    in_dir, alone = _verify_both(d)
    for problems in (in_dir, alone):
        assert any(f"{name}: " in p and "refused before decoding" in p for p in problems), problems
    s = next(iter_samples(d / SHARD))
    with memory_cap(), pytest.raises(ShardFormatError, match=f"{SHARD}: synth_0000/000000.{name}: .*expected"):
        if name.endswith(".jpg"):
            s.clip(0, 0)
        elif name.endswith(".flac"):
            s.audio(0, 0, "foa")
        else:
            s.masks(0, 0)


def test_training_loader_refuses_a_jpeg_bomb_naming_shard_and_key(tiny, tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841 - avsa_train needs it
    from avsa_train.data.batches import ShardStream, make_loader
    from avsa_train.data.stream_config import StreamConfig

    # every clip claims 16384 × 16384 pixels, so whichever views the loader draws hit one
    members = [(n, _jpeg_claiming(d, 16384, 16384) if n.endswith(".jpg") else d) for n, d in _members(tiny / SHARD)]
    _write(tmp_path / SHARD, members)
    cfg = StreamConfig(views=1, batch_size=1, shuffle_buffer=1, audio_format="mono")
    stream = ShardStream([str(tmp_path / SHARD)], cfg, infinite=False)
    with memory_cap(), pytest.raises(ShardFormatError) as e:
        next(iter(stream))
    msg = str(e.value)
    assert str(tmp_path / SHARD) in msg and "synth_0000/000000" in msg and "expected 32×16" in msg, msg
    with pytest.raises(ShardFormatError) as e:  # from a DataLoader worker: the first line still says it all
        next(iter(make_loader(stream, num_workers=1, pin_memory=False)))
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{tmp_path / SHARD}: synth_0000/000000.m0") and "expected 32×16" in first, first
    assert first.endswith("(in DataLoader worker process 0)"), first


def test_eval_donor_bank_refuses_a_flac_bomb_and_a_huge_header(tiny, tmp_path):
    pytest.importorskip("torch")
    from avsa_train.tasks.misalign import DonorBank

    members, _ = _bomb_members(tiny, "flac silence")
    members = _replace(members, "m00.foa.flac", dict((n.split(".", 1)[1], d) for n, d in members)["m00.v00.foa.flac"])
    _write(tmp_path / SHARD, members)
    bank = DonorBank([str(tmp_path / SHARD)])
    with memory_cap(), pytest.raises(ShardFormatError, match=r"synth_0000/000000\.m00\.foa\.flac: FLAC stream info"):
        bank.world_foa(0)
    data = bytearray((tiny / SHARD).read_bytes())
    h = _headers(bytes(data))[2]
    data[h + 124 : h + 136] = b"\x80" + (1 << 40).to_bytes(11, "big")
    data[h + 148 : h + 156] = b"        "
    data[h + 148 : h + 156] = b"%06o\0 " % sum(data[h : h + 512])
    (tmp_path / SHARD).write_bytes(bytes(data))
    with memory_cap(), pytest.raises(ShardFormatError, match=f"{SHARD}: (corrupt or truncated tar|.*past the end)"):
        DonorBank([str(tmp_path / SHARD)])


# --------------------------------------------------------------------------------------------- item 11


def test_reader_errors_name_the_shard_the_key_and_what_was_expected(tiny, tmp_path):
    m = _members(tiny / SHARD)
    cases = {
        "missing": ([x for x in m if not x[0].endswith(".m00.v00.jpg")], lambda s: s.clip(0, 0),
                    "synth_0000/000000: member m00.v00.jpg missing"),
        "flac": (_replace(m, "m00.v00.mono.flac", b"fLaC not really"), lambda s: s.audio(0, 0, "mono"),
                 "synth_0000/000000.m00.v00.mono.flac: not a readable FLAC"),
        "json": (_replace(m, "meta.json", b'{"format_version": 2, "key": '), lambda s: s.meta,
                 "synth_0000/000000.meta.json: meta.json is not UTF-8 JSON"),
        "meta type": (_with_meta(m, lambda x: x.update(frames_per_clip="8")), lambda s: s.clip(0, 0),
                      "synth_0000/000000.meta.json: meta.json frames_per_clip must be an integer in 1..256"),
    }
    for case, (members, use, words) in cases.items():
        _write(tmp_path / SHARD, members)
        s = next(iter_samples(tmp_path / SHARD))
        with pytest.raises(ShardFormatError) as e:
            use(s)
        assert str(e.value).startswith(f"{tmp_path / SHARD}: ") and words in str(e.value), (case, str(e.value))
        assert "\n" not in str(e.value)
    (tmp_path / "x.tar").write_bytes(b"not a tar at all" * 64)
    with pytest.raises(ShardFormatError, match=r"x\.tar: invalid tar header at byte 0"):
        list(iter_raw(tmp_path / "x.tar"))


def test_truncated_manifest_is_one_line_for_verify_and_the_loader(tiny, tmp_path):
    d = _copy(tiny, tmp_path / "d")
    man = d / "manifest.json"
    man.write_bytes(man.read_bytes()[:100])
    r = verify_dir(d)
    assert [p["problem"] for p in r.problems] == [r.problems[0]["problem"]]
    assert r.problems[0]["problem"].startswith("manifest.json: truncated JSON (it stops inside a value after line ")
    assert r.problems[0]["problem"].endswith("; expected the manifest.json written by avsa-data shard")
    from avsa_train.data.sources import read_manifest

    with pytest.raises(ValueError, match=r"manifest\.json: truncated JSON .*; expected the manifest\.json written by"):
        read_manifest(d)
    man.write_text(json.dumps({"shards": [{"name": "../../etc/passwd", "bytes": 1, "sha256": "x"}, 7]}))
    r = verify_dir(d)
    assert any("is not '{split}-NNNNNN.tar'" in p["problem"] for p in r.problems), _problems(r)
    assert any("not an object" in p["problem"] for p in r.problems), _problems(r)
    assert any("not listed in manifest" in p["problem"] for p in r.problems), _problems(r)


# ------------------------------------------------------------------------------------------------ fuzz

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
_FIELDS = sorted(shard_format.META_FIELDS | shard_format.CHECKSUM_FIELDS)
#: Values that confuse types and ranges (strings for numbers, floats for ints, huge, negative, empty, nested).
_TRICKY = [None, True, "1", "", 1.5, -1, 0, 2, 10**9, 2**70, 1e9, 1e308, -1e308, [], {}, [1], [1, 2], ["16", "16"],
           [16.5, 16], [0, 0], [[0, 2], [4, 6]], ["foa", "foa"], {"mode": "hrir"}, {"present": 1}, [{"a": 1}]]


@st.composite
def _mutation(draw):
    kind = draw(st.sampled_from(["flip", "header", "meta", "meta", "truncate", "append", "zero-block"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                   min_size=1, max_size=8))
    if kind == "header":
        field = draw(st.sampled_from([(0, 100), (100, 8), (124, 12), (148, 8), (156, 1), (257, 8), (345, 155)]))
        return kind, (draw(st.integers(0, 40)), field, draw(st.binary(min_size=1, max_size=12)),
                      draw(st.booleans()), draw(st.integers(0, 2**40)))
    if kind == "meta":
        changes = draw(st.lists(st.tuples(st.sampled_from(_FIELDS), st.sampled_from(_TRICKY) | _JSON),
                                min_size=1, max_size=3))
        return kind, (changes, draw(st.booleans()))
    if kind == "truncate":
        return kind, draw(st.floats(0, 1, exclude_max=True))
    if kind == "append":
        return kind, draw(st.binary(min_size=1, max_size=600))
    return kind, draw(st.integers(0, 40))


def _headers(data: bytes) -> list[int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [ti.offset for ti in t]


def _end_of_archive(data: bytes) -> int:
    """Offset just past the two zero blocks that end the archive; what follows is record padding (zeros) that
    tar writers add and readers ignore, so cutting only that is no damage."""
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        last = t.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512 + 1024


def _mutate(data: bytes, mutation, members) -> tuple[bytes, bool]:
    """Apply one mutation; also say whether it must be detected (False: a meta change re-hashed, which may be
    a valid value)."""
    kind, arg = mutation
    b = bytearray(data)
    if kind == "flip":
        for where, mask in arg:
            b[int(where * len(b))] ^= mask
        return bytes(b), True
    if kind == "header":
        i, (start, width), junk, fix_checksum, size = arg
        offsets = _headers(data)
        h = offsets[i % len(offsets)]
        old = bytes(b[h + start : h + start + width])
        if start == 124 and fix_checksum:  # a plausible size field, base-256 (any size)
            b[h + 124 : h + 136] = b"\x80" + size.to_bytes(11, "big")
        else:
            b[h + start : h + start + width] = (junk * width)[:width]
        if fix_checksum and start != 148:
            b[h + 148 : h + 156] = b"        "
            b[h + 148 : h + 156] = b"%06o\0 " % sum(b[h : h + 512])
        return bytes(b), bytes(b[h + start : h + start + width]) != old
    if kind == "meta":
        changes, rehash = arg
        differs = []

        def change(meta):
            differs.append(any(f not in meta or meta[f] != v for f, v in changes))
            meta.update(changes)

        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for name, d in _with_meta(members, change, rehash):
                ti = tarfile.TarInfo(name)
                ti.size = len(d)
                t.addfile(ti, io.BytesIO(d))
        return out.getvalue(), differs[0] and not rehash
    if kind == "truncate":
        cut = int(arg * len(b))
        return bytes(b[:cut]), cut < _end_of_archive(data)
    if kind == "append":
        return bytes(b) + arg, any(arg)  # zeros after the end blocks are still a valid end
    offsets = _headers(data)
    h = offsets[arg % len(offsets)]
    b[h : h + 512] = bytes(512)
    return bytes(b), True


@settings(max_examples=int(os.environ.get("AVSA_FUZZ_EXAMPLES", "60")), deadline=None,
          derandomize=not os.environ.get("AVSA_FUZZ_RANDOM"),  # CI: the same examples every run
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=_mutation())
def test_fuzz_verify_reports_never_raises_and_stays_under_the_memory_cap(tiny, tmp_path_factory, mutation):
    d = tmp_path_factory.mktemp("fuzz") / "shards"
    shutil.copytree(tiny, d)
    original = (tiny / SHARD).read_bytes()
    damaged, must_detect = _mutate(original, mutation, _members(tiny / SHARD))
    (d / SHARD).write_bytes(damaged)
    with memory_cap():
        in_dir = verify_dir(d)
        alone = verify_shard(d / SHARD)
    for r in (in_dir, alone):
        assert not [p for p in r.problems if "could not check" in p["problem"]], _problems(r)
        assert all(p["shard"] in (SHARD, "train-000001.tar") for p in r.problems), _problems(r)
    assert in_dir.shards == 2
    changed = damaged != original
    if changed:  # the manifest's sha256 always notices; a single tar must notice on its own
        assert not in_dir.ok
    if changed and must_detect:
        assert not alone.ok, (mutation, _problems(alone))
    shutil.rmtree(d.parent)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_reader_reads_what_tarfile_wrote_in_every_header_flavour(tmp_path, tar_format):
    """Members as tarfile writes them: plain ustar headers (parsed straight from the fields), a ustar name
    prefix, GNU long names, pax paths and sizes; names, sizes and bytes must come out as tarfile reads them."""
    from avsa_data.tario import iter_tar

    names = [f"vid_{'x' * 60}/000000.meta.json", "ab/000000.m00.v00.jpg", "ab/000000.m00.foa.flac"]
    if tar_format != tarfile.USTAR_FORMAT:  # longer than ustar's 100 + 155 name fields; non-ASCII
        names += [f"{'d' * 120}/{'é' * 90}/000001.meta.json", "ab/000002.m00.v01.jpg"]
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=tar_format) as t:
        for i, name in enumerate(names):
            data = bytes(range(256)) * (i + 1) + name.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_700_000_000 + i
            t.addfile(ti, io.BytesIO(data))
    with tarfile.open(path) as t:
        want = [(ti.name, t.extractfile(ti).read()) for ti in t]
    with open(path, "rb") as f:
        assert list(iter_tar(f, str(path), path.stat().st_size)) == want
    with open(path, "rb") as f:  # members passed over unread: the names still come out right
        got = list(iter_tar(f, str(path), path.stat().st_size, wanted=lambda n: n.endswith(".jpg")))
    assert got == [(n, d if n.endswith(".jpg") else None) for n, d in want]
