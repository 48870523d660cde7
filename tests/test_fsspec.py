"""Shards on object storage through fsspec URLs (``memory://`` in-process, ``file://`` through the CLI): the
bytes of a local run, resume after an interruption or lost objects, one-line errors for a missing backend, and
reading back with the torch-free reader, ``avsa-data verify`` / ``inspect`` and avsa-train's shard resolution."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fsspec  # noqa: F401  (part of [dev]: a missing fsspec fails here, it is not skipped)
import pytest
from conftest import SHARD_ARGS, SHARD_JOB, run_cli

from avsa_data import remote
from avsa_data.reader import iter_samples
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, ShardJobError, run_shard_job
from avsa_data.shards.config import OUTPUTS, WORK
from avsa_data.shards.video import VideoResult
from avsa_data.verify import verify_dir

#: The job of conftest's SHARD_ARGS, built in-process (test_shards checks the CLI's bytes against its shards).
JOB = SHARD_JOB
URL = "memory://avsa-tests/fsspec/shards"


def _local(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.suffix == ".tar" or p.name in OUTPUTS}


def _remote(url: str) -> dict[str, bytes]:
    store = remote.Store(url)
    return {n: store.read_bytes(n) for n in sorted(store.listing())}


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def memory_job(synth_raw, synth_shards, tmp_path_factory):
    """A memory:// job interrupted after two videos, then resumed (keeping its staging folder)."""
    assert json.loads((synth_shards / "config.json").read_text())["config_hash"] == JOB.config_hash
    staging = tmp_path_factory.mktemp("staging") / "stage"
    done: list[str] = []

    def stop_after_two(r: VideoResult) -> None:
        done.append(r.video_id)
        if len(done) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_shard_job(synth_raw, URL, JOB, workers=1, progress=False, staging=staging, on_video_done=stop_after_two)
    assert set(_remote(URL)) == {"config.json"}  # nothing but the configuration was published
    frags = {v: (staging / WORK / "frag" / f"{v}.tar").stat() for v in done}
    report = run_shard_job(synth_raw, URL, JOB, workers=2, progress=False, staging=staging, keep_work=True)
    yield {"report": report, "staging": staging, "frags": frags}
    remote.Store(URL).fs.rm(remote.Store(URL).root, recursive=True)


def test_memory_url_gets_the_local_bytes_and_resumes_from_staging(memory_job, synth_shards):
    assert _remote(URL) == _local(synth_shards)  # shards, manifest, failures and config, byte for byte
    assert memory_job["report"].samples == 18 and memory_job["report"].out == URL
    staging = memory_job["staging"]
    for vid, st in memory_job["frags"].items():  # the two videos done before the interruption were kept
        now = (staging / WORK / "frag" / f"{vid}.tar").stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert not list(staging.glob("*.tar"))  # each shard left the staging folder once uploaded


def test_lost_or_damaged_objects_are_published_again_and_a_rerun_is_a_no_op(memory_job, synth_raw, synth_shards,
                                                                            monkeypatch):
    store = remote.Store(URL)
    store.remove(["train-000001.tar"])
    store.fs.pipe_file(f"{store.root}/val-000000.tar", (synth_shards / "val-000000.tar").read_bytes()[:10240])
    uploads: list[str] = []
    put = remote.Store.put
    monkeypatch.setattr(remote.Store, "put", lambda self, local, name: (uploads.append(name), put(self, local, name)))
    kept = {"staging": memory_job["staging"], "keep_work": True, "progress": False}
    report = run_shard_job(synth_raw, URL, JOB, workers=1, **kept)
    assert not report.up_to_date
    assert uploads == ["config.json", "train-000001.tar", "val-000000.tar", "failures.jsonl", "manifest.json"]
    assert _remote(URL) == _local(synth_shards)
    uploads.clear()
    assert run_shard_job(synth_raw, URL, JOB, workers=1, **kept).up_to_date and uploads == []
    with pytest.raises(ShardJobError, match="--overwrite"):
        run_shard_job(synth_raw, URL, JobConfig(sample=SampleConfig(seed=1)), **kept)


def test_torch_free_reader_and_verify_read_the_url(memory_job, synth_shards):
    local = [(s.key, s.members) for s in iter_samples(synth_shards)]
    assert [(s.key, s.members) for s in iter_samples(URL)] == local
    one = list(iter_samples(remote.join(URL, "val-000001.tar")))
    assert [s.key for s in one] == [s.key for s in iter_samples(synth_shards / "val-000001.tar")]
    assert one[0].clip(0).shape == (8, 112, 112, 3)
    report = verify_dir(URL)
    assert report.ok and (report.shards, report.samples) == (5, 18)


def test_train_side_lists_and_streams_an_fsspec_folder(memory_job, synth_shards):
    from avsa_train.data import partition, sources

    urls = sources.expand_urls(URL)
    names = sorted(p.name for p in synth_shards.glob("*.tar"))
    assert urls == [f"{URL}/{n}" for n in names]
    assert sources.expand_urls(f"{URL}/val-*.tar") == [f"{URL}/val-000000.tar", f"{URL}/val-000001.tar"]
    assert sources.expand_urls(f"{URL}/train-{{000000..000001}}.tar") == urls[:2]
    assert sources.has_manifest(URL) and sources.count_samples(URL, "train") == 12
    assert sources.shard_sizes(URL) == {u: n for u, n in zip(urls, (4, 4, 4, 4, 2))}
    train = sources.split_urls(urls, "train")
    keys = [s.key for s in partition.iter_epoch_raw(train, 0, 0, 0, 1, shuffle=False, buffer=1)]
    assert keys == [s.key for s in iter_samples([synth_shards / n for n in names if n.startswith("train")])]
    assert sources.peek_meta(train)["key"] == keys[0]


def test_file_url_through_the_cli_verify_and_inspect(memory_job, synth_raw, synth_shards, tmp_path):
    url = (tmp_path / "bucket" / "shards").as_uri()
    staging = remote.default_staging(url)
    assert staging.parent.parent == Path(tempfile.gettempdir())
    shutil.copytree(memory_job["staging"], staging)  # the work of an earlier, interrupted run of this command
    bucket = tmp_path / "bucket" / "shards"
    bucket.mkdir(parents=True)
    (bucket / ".train-000000.tar.4242.tmp").write_bytes(b"an upload cut short")
    cmd = ["avsa_data", "shard", "--src", str(synth_raw), "--out", url, *SHARD_ARGS, "-j", "1", "-q"]
    assert "done: 18 samples in 5 shards" in run_cli(*cmd).stdout
    assert _local(bucket) == _local(synth_shards)
    assert not staging.exists()  # the default staging folder goes once the job is published
    assert not list(bucket.glob(".*"))  # temp names (here: uploaded, then renamed) are never left behind
    assert "up to date" in run_cli(*cmd).stdout
    other = run_cli(*cmd, "--seed", "1", check=False)
    assert other.returncode == 2 and "--overwrite" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert "18 samples: OK" in run_cli("avsa_data", "verify", url).stdout
    assert "v7:" in run_cli("avsa_data", "inspect", f"{url}/val-000001.tar").stdout
    local = run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(tmp_path / "local"), "--staging",
                    str(tmp_path / "s"), check=False)
    assert local.returncode == 2 and "'--staging': only applies when --out is a URL" in local.stderr


def _missing_backend() -> tuple[str, str]:
    """A URL scheme fsspec knows whose implementation package is not installed, and that package."""
    from fsspec.registry import known_implementations

    for scheme in ("s3", "gs", "az", "oci", "ocilake", "dropbox", "webdav"):
        pkg = known_implementations.get(scheme, {}).get("class", ".").split(".")[0]
        if pkg and importlib.util.find_spec(pkg) is None:
            return scheme, pkg
    pytest.skip("every candidate fsspec backend is installed")


def test_a_missing_backend_or_fsspec_is_one_clear_line(synth_raw, tmp_path, monkeypatch):
    scheme, pkg = _missing_backend()
    url = f"{scheme}://avsa-test-bucket/shards"
    for args in (["shard", "--src", str(synth_raw), "--out", url, "-q"], ["verify", url]):
        r = run_cli("avsa_data", *args, check=False)
        assert r.returncode == 1 and r.stderr.strip() == f"Error: {scheme}:// needs {pkg}: pip install {pkg}"
    assert not remote.default_staging(url).exists()  # refused before any work
    with pytest.raises(remote.StorageError, match="not a protocol fsspec knows"):
        remote.Store("nosuchscheme://bucket/x")
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    with pytest.raises(ShardJobError, match=r"need fsspec: pip install 'avsa\[cloud\]'"):
        run_shard_job(synth_raw, "memory://x/y", JOB, progress=False, staging=tmp_path / "s")


def test_reading_a_url_stays_torch_free(memory_job, synth_shards, tmp_path):
    shutil.copytree(synth_shards, tmp_path / "copy")
    code = (
        "import sys\n"
        "from avsa_data.reader import iter_samples\n"
        f"n = sum(1 for _ in iter_samples({(tmp_path / 'copy').as_uri()!r}))\n"
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "print(n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "18", out.stderr


def test_a_damaged_object_is_one_line_naming_its_url_and_overwrite_rebuilds(memory_job, synth_raw, synth_shards,
                                                                          tmp_path):
    url = "memory://avsa-tests/fsspec/damaged"
    store = remote.Store(url)
    store.fs.pipe_file(f"{store.root}/config.json", (synth_shards / "config.json").read_bytes()[:50])
    staging = tmp_path / "stage"
    shutil.copytree(memory_job["staging"], staging)  # its fragments: the rebuild does no phase 1 again
    with pytest.raises(ShardJobError) as e:
        run_shard_job(synth_raw, url, JOB, progress=False, staging=staging)
    assert str(e.value).startswith(f"{url}/config.json: truncated JSON (it stops inside a value after line ")
    assert str(e.value).endswith("; expected the config.json written by avsa-data shard; pass --overwrite to "
                                 "rebuild the output") and "\n" not in str(e.value)
    report = run_shard_job(synth_raw, url, JOB, progress=False, staging=staging, overwrite=True)
    assert report.samples == 18 and _remote(url) == _local(synth_shards)
    store.fs.rm(store.root, recursive=True)
