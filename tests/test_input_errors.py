"""Malformed configuration files and manifests get one line naming the file and what was expected (issue 14).

``avsa_data.fsutil.read_json`` / ``parse_json`` is the shared reader for ``manifest.json`` and other JSON the
tools write; ``avsa_train.config.read_yaml`` reads ``--config`` files.
"""

from __future__ import annotations

import pytest
from conftest import run_cli

from avsa_data.fsutil import read_json
from avsa_data.remote import Store
from avsa_train.config import read_yaml, resolve

MANIFEST = b'{"complete": true, "format_version": 1, "shards": [{"name": "train-000000.tar", "samples": ["a'


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("task: avsa\nlr: [1e-4\nbatch_size: 3\n", "malformed YAML at line 3 column 11"),
        ('task: "avsa\n', "malformed YAML at line 2 column 1"),
        ("a: 1\n  b: 2\n", "malformed YAML at line 2 column 4"),
        ("- lr\n- 1e-4\n", "expected a mapping of option: value, got list"),
        ("lr: 1e-4\nbatch_size: 4.5\n", "batch_size must be int, got 4.5"),
        ("lr: fast\n", "lr must be float, got 'fast'"),
        ("color_jitter: 1\n", "color_jitter must be bool, got 1"),
        ("lr2: 1\n", "unknown keys ['lr2']"),
        ('a: !!python/object/apply:os.system ["touch PWNED"]\n', "could not determine a constructor"),
    ],
)
def test_malformed_yaml_configs_get_one_line(tmp_path, text, expect):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        read_yaml(path)
    assert str(e.value).startswith(f"{path}: ") and expect in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "PWNED").exists()


def test_yaml_numbers_in_exponent_form_are_floats(tmp_path):
    """YAML 1.1 reads ``1e-4`` as a string; the config reads it as the learning rate it means."""
    path = tmp_path / "cfg.yaml"
    path.write_text("lr: 1e-4\nweight_decay: 0\nsteps_per_epoch: null\n")
    cfg = resolve("avsa", path, {"shards": "x"})
    assert cfg.lr == 1e-4 and cfg.weight_decay == 0.0 and cfg.steps_per_epoch is None


def test_a_malformed_config_through_the_cli(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("task: avsa\nlr: [1e-4\n")
    r = run_cli("avsa_train", "pretrain", "--config", str(path), "--shards", str(tmp_path), check=False)
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(err) == 1 and str(path) in err[0] and "malformed YAML at line 3" in err[0], r.stderr


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (MANIFEST, "truncated JSON (it stops inside a value after line 1 column 94)"),
        (b"", "empty file"),
        (b'{"shards": [1,, 2]}', "malformed JSON at line 1 column 15"),
        (b'{"shards": "\xff"}', "not UTF-8 text (byte 12)"),
    ],
)
def test_a_broken_manifest_gets_one_line(tmp_path, data, expect):
    path = tmp_path / "manifest.json"
    path.write_bytes(data)
    what = "the shard manifest written by avsa-data shard"
    with pytest.raises(ValueError) as e:
        read_json(path, what)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and expect in msg and msg.endswith(f"; expected {what}") and "\n" not in msg


def test_a_truncated_manifest_in_a_store_names_its_url(tmp_path):
    (tmp_path / "manifest.json").write_bytes(MANIFEST)
    url = f"file://{tmp_path}"
    with pytest.raises(ValueError, match=r"manifest.json: truncated JSON .*; expected the manifest.json written by"):
        Store(url).read_json("manifest.json")
    (tmp_path / "manifest.json").write_bytes(b'{"shards": []}')
    assert Store(url).read_json("manifest.json") == {"shards": []} and Store(url).read_json("absent.json") is None
