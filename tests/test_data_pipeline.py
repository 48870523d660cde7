"""The training data pipeline (avsa_train.data) on the shared synthetic shards: consistent flips, volume jitter,
the split of an epoch over (rank, worker) consumers, exact resume of the batch order, missing-render fallback."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avsa_data import ambisonics
from avsa_data.reader import RawSample, iter_samples
from avsa_data.rng import rng_for
from avsa_train.data import augment, batches, items, members, sources, stream_config

PLAIN = dict(train=True, color_jitter=False, volume_jitter=0.0, shuffle_buffer=4, batch_size=2)


def _train_keys(shards: Path) -> list[str]:
    m = json.loads((shards / "manifest.json").read_text())
    return [k for s in m["shards"] if s["split"] == "train" for k in s["samples"]]


def _first(shards: Path) -> RawSample:
    return next(iter_samples(sorted(shards.glob("train-*.tar"))[:1]))


class _Worker:
    def __init__(self, wid: int, n: int):
        self.id, self.num_workers = wid, n


@pytest.mark.parametrize("fmt,channels", [("ambi", 4), ("stereo", 2), ("mono", 1)])
def test_flip_is_consistent_across_video_audio_and_masks(synth_shards, stored_render_shards, fmt, channels):
    s = _first(synth_shards)
    cfg = stream_config.StreamConfig(views=4, moments=2, audio_format=fmt, with_masks=True, **PLAIN)
    a = items.decode_item(s, replace(cfg, flip_p=0.0), epoch=0)
    b = items.decode_item(s, replace(cfg, flip_p=1.0), epoch=0)
    assert not a["flip"] and b["flip"]
    assert a["views"].tolist() == b["views"].tolist() and len(set(a["views"].tolist())) == 4
    assert a["video"].shape == (2, 4, 3, 8, 112, 112) and a["audio"].shape == (2, 4, channels, 24000)
    # video and masks mirrored left-right (last axis = image columns)
    np.testing.assert_allclose(b["video"], a["video"][..., ::-1], atol=1e-6)
    np.testing.assert_array_equal(b["seg"], a["seg"][..., ::-1])
    np.testing.assert_array_equal(b["conf"], a["conf"][..., ::-1])
    assert a["seg"].shape == (2, 4, 56, 56) and a["seg"].max() > 0  # objects are labelled
    assert not np.array_equal(b["seg"], a["seg"])  # the scene is not left-right symmetric
    if fmt == "ambi":  # ambiX W, Y, Z, X: only Y changes sign (φ → −φ)
        np.testing.assert_array_equal(b["audio"][:, :, ambisonics.Y], -a["audio"][:, :, ambisonics.Y])
        for ch in (ambisonics.W, ambisonics.Z, ambisonics.X):
            np.testing.assert_array_equal(b["audio"][:, :, ch], a["audio"][:, :, ch])
        az, _ = ambisonics.energy_direction(a["audio"][0, 0])
        az_f, _ = ambisonics.energy_direction(b["audio"][0, 0])
        assert az_f == pytest.approx(-az, abs=1e-3)
    elif fmt == "stereo":  # left ear ↔ right ear
        np.testing.assert_array_equal(b["audio"][:, :, 0], a["audio"][:, :, 1])
        np.testing.assert_array_equal(b["audio"][:, :, 1], a["audio"][:, :, 0])
        assert not np.allclose(a["audio"][:, :, 0], a["audio"][:, :, 1])
    else:  # a cardioid at the look direction is symmetric
        np.testing.assert_array_equal(b["audio"], a["audio"])
    # the unflipped item holds the stored bank views (normalised video, physical-scale audio)
    k = int(a["views"][0])
    raw = s.clip(k, 0).astype(np.float32) / 255.0
    want = (raw - np.array(augment.VIDEO_MEAN, np.float32)) / np.array(augment.VIDEO_STD, np.float32)
    np.testing.assert_allclose(a["video"][0, 0], want.transpose(3, 0, 1, 2), atol=1e-5)
    # every render is made from the unrotated FOA (members.derived; the default shards store no per-view render):
    # equal to the builder's stored render of the view (``--renders foa,mono,stereo``, the same sample) to 2
    # steps of its 16-bit FLAC (both went through it once)
    render = stream_config.AUDIO_FORMATS[fmt][0]
    kept = next(x for x in iter_samples(sorted(stored_render_shards.glob("train-*.tar"))) if x.key == s.key)
    step = 2.0**-15 * float(kept.meta["audio_scale"])
    for j, k in enumerate(a["views"].tolist()):
        assert kept.meta["viewpoints"][k] == s.meta["viewpoints"][k]
        np.testing.assert_allclose(a["audio"][1, j], kept.audio(k, 1, render), rtol=0, atol=2 * step)


def test_volume_jitter_is_a_gain_within_ten_percent_and_deterministic(synth_shards):
    s = _first(synth_shards)
    cfg = stream_config.StreamConfig(views=2, flip_p=0.0, **{**PLAIN, "volume_jitter": 0.1})
    a = items.decode_item(s, replace(cfg, volume_jitter=0.0), epoch=3)
    gains = []
    for epoch in (3, 4, 5, 6):
        b = items.decode_item(s, cfg, epoch=epoch)
        if epoch == 3:
            np.testing.assert_array_equal(b["audio"], items.decode_item(s, cfg, epoch=3)["audio"])  # deterministic
            assert b["views"].tolist() == a["views"].tolist()
        mask = np.abs(a["audio"]) > 1e-3
        if b["views"].tolist() == a["views"].tolist():
            ratio = b["audio"][mask] / a["audio"][mask]
            np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-5)  # one gain for all channels and views
            gains.append(float(ratio.mean()))
    assert gains and all(0.9 <= g <= 1.1 for g in gains) and gains[0] != 1.0


@pytest.mark.parametrize("world,workers", [(2, 2), (1, 2), (3, 1)])
def test_each_key_exactly_once_per_epoch_across_ranks_and_workers(synth_shards, monkeypatch, world, workers):
    urls = sources.split_urls(sources.expand_urls(synth_shards), "train")
    keys = _train_keys(synth_shards)
    assert len(urls) == 3 and len(keys) == 12  # 3 shards: fewer (2×2, 3×1) and more (1×2) than consumers
    cfg = stream_config.StreamConfig(**PLAIN)
    orders = []
    for epoch in (0, 1):
        seen: Counter = Counter()
        order = []
        for rank in range(world):
            for wid in range(workers):
                monkeypatch.setattr(batches, "get_worker_info", lambda w=wid: _Worker(w, workers))
                stream = batches.ShardStream(urls, cfg, rank=rank, world_size=world, start_epoch=epoch, infinite=False)
                got = [(e, s.key) for e, s in stream.iter_raw_samples()]
                assert all(e == epoch for e, _ in got)
                seen.update(k for _, k in got)
                order += [k for _, k in got]
        assert seen == Counter(keys), (epoch, seen)
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_real_dataloader_workers_split_the_epoch(synth_shards):
    urls = sources.split_urls(sources.expand_urls(synth_shards), "train")
    cfg = stream_config.StreamConfig(views=1, **{**PLAIN, "batch_size": 1, "drop_last": False})
    seen: Counter = Counter()
    for rank in range(2):
        stream = batches.ShardStream(urls, cfg, rank=rank, world_size=2, infinite=False)
        for batch in batches.make_loader(stream, num_workers=2):
            assert batch["video"].shape == (1, 1, 1, 3, 8, 112, 112) and batch["video"].dtype == torch.float32
            assert batch["audio"].shape == (1, 1, 1, 4, 24000)
            seen.update(batch["key"])
    assert seen == Counter(_train_keys(synth_shards))


def _keys(loader: DataLoader, n: int) -> list[list[str]]:
    out = []
    for batch in loader:
        out.append(list(batch["key"]))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("done", [3, 7])
def test_resume_at_continues_the_batch_order_of_the_uninterrupted_stream(synth_shards, done):
    """With 2 workers (round-robin batches) and epochs of 12 samples: resuming at an odd batch count and past an
    epoch boundary gives exactly the batches the uninterrupted stream gives from there on."""
    urls = sources.split_urls(sources.expand_urls(synth_shards), "train")
    cfg = stream_config.StreamConfig(views=1, **PLAIN)
    sizes = sources.shard_sizes(synth_shards)
    full = _keys(batches.make_loader(batches.ShardStream(urls, cfg, sizes=sizes), num_workers=2), done + 3)
    resumed = batches.ShardStream(urls, cfg, sizes=sizes)
    resumed.resume_at(0, done)
    assert _keys(batches.make_loader(resumed, num_workers=2), 3) == full[done:]
    flat = [k for b in full for k in b]
    if done == 7:  # worker 1 reads one shard (4 samples = 2 batches) per epoch: its 4th batch is in epoch 1,
        assert len(set(flat)) < len(flat)  # so the resumed stream skipped a whole epoch by count


def test_missing_render_is_computed_like_the_stored_one(stored_render_shards):
    s = _first(stored_render_shards)
    meta = dict(s.meta)
    meta["renders"] = ["foa"]  # as a shard built with --renders foa
    kept = {k: v for k, v in s.members.items() if not k.endswith((".mono.flac", ".stereo.flac"))}
    kept["meta.json"] = json.dumps(meta, sort_keys=True).encode()
    slim = RawSample(s.key, kept, s.shard)
    scale = float(meta["audio_scale"])
    for render in ("mono", "stereo"):
        for k in (0, 5):
            stored, computed = s.audio(k, 1, render), slim.audio(k, 1, render)
            assert stored.shape == computed.shape and np.abs(stored).max() > 1e-3
            # both went through 16-bit FLAC (the render, or the FOA it is computed from): equal to 2 steps
            np.testing.assert_allclose(computed, stored, atol=2 * 2.0**-15 * scale)
    # through the pipeline: pruning keeps the unrotated FOA the fallback needs, and the items agree
    cfg = stream_config.StreamConfig(views=4, moments=2, audio_format="stereo", flip_p=1.0, **PLAIN)
    pruned = members.prune_members(slim, cfg)
    assert "m00.foa.flac" in pruned.members and "m00.v00.foa.flac" not in pruned.members
    a, b = items.decode_item(s, cfg, 0), items.decode_item(pruned, cfg, 0)
    np.testing.assert_allclose(b["audio"], a["audio"], atol=2 * 2.0**-15 * scale)
    np.testing.assert_array_equal(b["video"], a["video"])


def test_pruning_keeps_exactly_what_an_item_reads(stored_render_shards):
    s = _first(stored_render_shards)
    clips = {f"v{k:02d}.jpg": 2 for k in range(8)}
    for audio_format in ("ambi", "stereo", "mono"):
        cfg = stream_config.StreamConfig(views=4, audio_format=audio_format, **PLAIN)
        pruned = members.prune_members(s, cfg)
        kinds = Counter(name if name == "meta.json" else name.split(".", 1)[-1] for name in pruned.members)
        # 2 moments × 8 views of clips; every stored per-view render (virtual-mic stereo too) is made from each
        # moment's unrotated FOA
        assert kinds == Counter({"meta.json": 1, "foa.flac": 2, **clips}), (audio_format, kinds)
        np.testing.assert_array_equal(items.decode_item(pruned, cfg, 2)["audio"], items.decode_item(s, cfg, 2)["audio"])
    with_masks = members.prune_members(s, replace(cfg, with_masks=True))
    assert sum(n.endswith(".seg56.png") for n in with_masks.members) == 16
    # HRIR stereo is a convolution: its stored renders are read, and the unrotated FOA is not needed
    meta = {**s.meta, "binaural": {**s.meta["binaural"], "mode": "hrir"}}
    hrir = RawSample(s.key, {**s.members, "meta.json": json.dumps(meta).encode()}, s.shard)
    stereo = stream_config.StreamConfig(views=4, moments=2, audio_format="stereo", flip_p=0.0, **PLAIN)
    kinds = Counter(n if n == "meta.json" else n.split(".", 1)[-1] for n in members.prune_members(hrir, stereo).members)
    assert kinds == Counter({"meta.json": 1, **clips, **{f"v{k:02d}.stereo.flac": 2 for k in range(8)}}), kinds
    a = items.decode_item(hrir, stereo, 0)
    for j, k in enumerate(a["views"].tolist()):
        np.testing.assert_array_equal(a["audio"][1, j], hrir.audio(k, 1, "stereo"))  # the stored render itself


def test_bad_requests_fail_clearly(synth_shards):
    meta = _first(synth_shards).meta
    with pytest.raises(ValueError, match="--viewpoints"):
        stream_config.check_shards_fit(meta, stream_config.StreamConfig(views=9))
    with pytest.raises(ValueError, match="--moments-per-sample 3"):
        stream_config.check_shards_fit(meta, stream_config.StreamConfig(views=1, moments=3))
    stream_config.check_shards_fit(meta, stream_config.StreamConfig(views=8, moments=2, with_masks=True))
    with pytest.raises(ValueError, match="audio_format"):
        stream_config.StreamConfig(audio_format="5.1")
    with pytest.raises(FileNotFoundError, match="no shards"):
        sources.expand_urls(str(synth_shards / "nothing-*.tar"))


def test_colour_jitter_hue_keeps_luma_and_greys(rng):
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    for shift in (-0.2, 0.07, 0.5):
        m = augment._hue_matrix(shift)
        np.testing.assert_allclose(luma @ m, luma, atol=1e-5)  # the luma of every colour is unchanged
        np.testing.assert_allclose(np.full(3, 0.4, np.float32) @ m.T, 0.4, atol=1e-5)  # greys stay grey
    np.testing.assert_allclose(augment._hue_matrix(1.0), np.eye(3), atol=1e-5)
    red = np.array([0.8, 0.1, 0.1], np.float32)
    assert np.argmax(red @ augment._hue_matrix(0.5).T) != 0  # half a turn moves red away from red
    clip = rng.random((2, 3, 4, 4, 3)).astype(np.float32)  # [V, T, H, W, RGB]
    out = augment.colour_jitter(clip, np.random.default_rng(0), hue=0.2)
    assert out.shape == clip.shape and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, clip)


def test_a_consumer_without_samples_fails_instead_of_spinning(synth_shards, monkeypatch):
    urls = sources.split_urls(sources.expand_urls(synth_shards), "train")
    monkeypatch.setattr(batches, "get_worker_info", lambda: _Worker(12, 13))  # 13 consumers, 12 samples
    stream = batches.ShardStream(urls, stream_config.StreamConfig(**PLAIN))
    with pytest.raises(ValueError, match="more consumers than samples"):
        next(stream.iter_raw_samples())


class _CountingFile:
    """A shard file that counts the bytes read from it; ``seekable=False`` makes it look like a pipe."""

    def __init__(self, path: Path, seekable: bool = True):
        self.f, self.bytes_read, self._seekable = open(path, "rb"), 0, seekable

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.bytes_read += len(b)
        return b

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = 0) -> int:
        assert self._seekable, "a pipe cannot seek"
        return self.f.seek(offset, whence)


def test_the_loader_reads_only_the_members_an_item_uses(stored_render_shards, tmp_path):
    """On shards that store every view's renders too (``--renders foa,mono,stereo``), the loader seeks over them:
    it makes an item's audio from the unrotated FOA."""
    from avsa_data.reader import ShardFormatError, iter_raw

    path = sorted(stored_render_shards.glob("train-*.tar"))[0]
    size = path.stat().st_size
    cfg = stream_config.StreamConfig(views=4, audio_format="ambi", **PLAIN)
    wanted = members.member_wanted(cfg)
    full = list(iter_raw(path))
    for seekable in (True, False):
        f = _CountingFile(path, seekable)
        part = list(iter_raw(path, f, size, wanted=wanted))
        assert [s.key for s in part] == [s.key for s in full]
        for a, b in zip(full, part):  # exactly the wanted members, byte for byte
            assert b.members == {k: v for k, v in a.members.items() if wanted(k)}
            assert {"meta.json", "m00.foa.flac", "m00.v07.jpg"} <= set(b.members)
            assert not any(k.endswith((".v00.foa.flac", ".mono.flac", ".stereo.flac")) for k in b.members)
        if seekable:  # the per-view renders dominate a sample: they are seeked over, never read
            assert f.bytes_read < 0.4 * size, (f.bytes_read, size)
        else:
            assert f.bytes_read == size
        f.f.close()
    # an archive cut inside a member that is passed over is still refused
    cut = tmp_path / "train-000000.tar"
    cut.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(ShardFormatError, match="truncated"):
        list(iter_raw(cut, wanted=wanted))
    # the stream reads the same items either way
    stream = batches.ShardStream([str(path)], cfg, infinite=False)
    read = {s.key: s.members for _, s in stream.iter_raw_samples(prune=True)}
    assert read == {s.key: members.prune_members(s, cfg).members for s in full}


def test_clips_normalised_on_the_device_equal_the_workers_float_clips(synth_shards):
    """The GPU path (``video_on_device``: uint8 clips and a colour transform, finished by ``model_video`` for
    the whole batch) gives the items of the worker-side float path: same jitter, flip, pivot and bounds."""
    samples = [s for _, s in zip(range(3), iter_samples(sorted(synth_shards.glob("train-*.tar"))))]
    cfg = stream_config.StreamConfig(views=3, moments=2, flip_p=0.5, color_jitter=True, volume_jitter=0.1, train=True)
    flips = set()
    for epoch in (0, 1, 2):
        floats = [items.decode_item(s, cfg, epoch) for s in samples]
        raws = [items.decode_item(s, replace(cfg, video_on_device=True), epoch) for s in samples]
        assert raws[0]["video"].dtype == np.uint8 and raws[0]["video"].shape == (2, 3, 8, 112, 112, 3)
        batch = batches.collate(raws)
        got = augment.model_video(batch, torch.device("cpu"))
        want = batches.collate(floats)["video"]
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
        flips |= {bool(f) for f in batch["flip"]}
        np.testing.assert_array_equal(np.stack([r["audio"] for r in raws]), np.stack([f["audio"] for f in floats]))
    assert flips == {True, False}  # flipped and unflipped items were compared
    # float batches pass through unchanged
    assert augment.model_video({"video": want}, torch.device("cpu")) is want


def test_a_loader_worker_runs_numpys_blas_on_one_thread():
    """An idle OpenBLAS pool spin-waits after each small product (the renders' rotations): a worker's BLAS
    gets one thread, and glibc keeps its freed buffers (avsa_train.allocator)."""
    import subprocess
    import sys

    code = ("import threadpoolctl; from avsa_train.data import batches; "
            "before = {i['user_api']: i['num_threads'] for i in threadpoolctl.threadpool_info()}; "
            "batches.loader_worker_init(0); after = [i['num_threads'] for i in "
            "threadpoolctl.threadpool_info() if i['user_api'] == 'blas']; print(before.get('blas'), set(after))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OPENBLAS_NUM_THREADS": "2"}).stdout.split(maxsplit=1)
    # 2 threads before (OpenBLAS caps them at the usable cores), 1 in the worker (every BLAS library)
    assert out[0] == str(min(2, len(__import__("os").sched_getaffinity(0)))) and out[1].strip() == "{1}", out
    loader = batches.make_loader(batches.ShardStream(["x.tar"], stream_config.StreamConfig()), num_workers=1)
    assert loader.worker_init_fn is batches.loader_worker_init


def test_a_view_outside_the_bank_is_refused_not_counted_from_its_end(synth_shards):
    from avsa_data.reader import ShardFormatError

    s = _first(synth_shards)
    for fmt_ in ("ambi", "mono"):  # derived from the unrotated FOA
        for k in (-1, s.num_views):
            with pytest.raises(ShardFormatError, match=rf"no viewpoint {k} \(the bank has 8\)"):
                items.view_audio(s, [0, k], 0, fmt_)
    slim = RawSample(s.key, {k: v for k, v in s.members.items() if not k.endswith(".mono.flac")}, s.shard)
    with pytest.raises(ShardFormatError, match=r"no viewpoint -1"):  # a render computed by the reader
        slim.audio(-1, 0, "mono")


@pytest.mark.parametrize("fmt", ["ambi", "mono", "stereo"])
def test_breaking_the_spatial_link_turns_each_samples_field_by_its_own_random_yaw(synth_shards, fmt):
    """The causal control of pre-training (``break_spatial_link``): an item's audio is that of its sound field
    turned about the vertical by a yaw drawn per (seed, epoch, sample) — the same for all its views — and rendered
    at the item's views; the video and the views stay the item's own."""
    from avsa_train.tasks.misalign import rotated

    cfg = stream_config.StreamConfig(views=3, moments=2, audio_format=fmt, train=True, flip_p=0.0, volume_jitter=0.0,
                         color_jitter=False)
    broken = replace(cfg, break_spatial_link=True)
    samples = list(iter_samples(synth_shards))[:3]
    yaws = []
    for s in samples:
        for epoch in (0, 1):
            a, b = items.decode_item(s, cfg, epoch), items.decode_item(s, broken, epoch)
            np.testing.assert_array_equal(a["video"], b["video"])
            assert a["views"].tolist() == b["views"].tolist()
            yaw = float(rng_for(cfg.seed, "spatial-link", epoch, s.key).uniform(-180.0, 180.0))
            yaws.append(yaw)
            turned = rotated(s, yaw)  # the sample's field turned by the yaw, rendered by the builder's functions
            render = stream_config.AUDIO_FORMATS[fmt][0]
            for m in range(2):
                for j, k in enumerate(b["views"]):
                    np.testing.assert_allclose(b["audio"][m, j], turned.audio(int(k), m, render), atol=2e-4)
            assert float(np.abs(a["audio"] - b["audio"]).max()) > 1e-3 or abs(yaw) < 1.0
    assert len({round(y, 3) for y in yaws}) == len(yaws)  # a new yaw per sample and per epoch


def test_hfov_range_draws_views_from_the_range_else_the_whole_bank(synth_shards):
    """Segmentation's ``hfov_range``: the drawn views are those of the bank whose horizontal field of view lies in
    the range (degrees); a sample with none in range falls back to its whole bank."""
    s = _first(synth_shards)
    hfovs = sorted(float(v["hfov"]) for v in s.meta["viewpoints"])
    lo, hi = hfovs[0], hfovs[len(hfovs) // 2]  # the narrower half of the bank
    inside = items.views_in_range(s, (lo, hi))
    assert 0 < len(inside) < len(hfovs)
    drawn = set()
    for epoch in range(12):
        cfg = stream_config.StreamConfig(views=1, hfov_range=(lo, hi), **PLAIN)
        drawn |= {int(k) for k in items.decode_item(s, cfg, epoch)["views"]}
    assert drawn <= set(inside) and len(drawn) > 1
    everything = set()
    for epoch in range(24):
        cfg = stream_config.StreamConfig(views=1, hfov_range=(170.0, 180.0), **PLAIN)
        everything |= {int(k) for k in items.decode_item(s, cfg, epoch)["views"]}
    assert len(everything) > len(inside)  # out-of-range views too: the fallback is the whole bank
