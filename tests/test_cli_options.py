"""The command-line options are generated from the config dataclasses (avsa_data.options, avsa_data/cli/_options.py):
every default a command uses is its config's, and every command ends a user's mistake the same way."""

from __future__ import annotations

import dataclasses
import json
import re

import click
import pytest
from click.testing import CliRunner

from avsa_data.cli import main as data_cli
from avsa_data.cli._options import ConfigOption, config_from, config_options
from avsa_data.events import EventOptions
from avsa_data.layouts import LayoutSpec
from avsa_data.options import (
    field_default,
    field_hint,
    flat_build,
    flat_dict,
    flat_fields,
    flat_replace,
    flat_value,
    nested,
    option,
    option_meta,
)
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, JobStopped
from avsa_data.synth import SynthConfig
from avsa_train.cli import main as train_cli
from avsa_train.cli._common import default_workers

torch = pytest.importorskip("torch")

from avsa_train.config import TASK_DEFAULTS, TASKS, PretrainConfig, resolve  # noqa: E402
from avsa_train.tasks.action import FinetuneConfig  # noqa: E402
from avsa_train.tasks.binary_eval import BinaryEvalConfig  # noqa: E402
from avsa_train.tasks.direction_probe import DirectionProbeConfig  # noqa: E402
from avsa_train.tasks.segmentation import SegmentationConfig  # noqa: E402

#: The smallest command line of each command (its required options), and the configs it builds.
MINIMAL = {
    ("data", "synth"): (["--out", "x"], [SynthConfig]),
    ("data", "shard"): (["--src", ".", "--out", "x"], [SampleConfig, JobConfig, EventOptions, LayoutSpec]),
    ("train", "pretrain"): ([], [PretrainConfig]),
    ("train", "eval"): (["avsa", "--shards", "x", "--ckpt", "none"], [BinaryEvalConfig]),
    ("train", "segment"): (["--shards", "x", "--ckpt", "none"], [SegmentationConfig]),
    ("train", "finetune"): (["--videos", ".", "--dataset", "folder", "--ckpt", "none"], [FinetuneConfig]),
    ("train", "probe"): (["--shards", "x", "--ckpt", "none"], [DirectionProbeConfig]),
}
#: Fields whose command-line default differs from the library's on purpose, with the reason.
CLI_DEFAULTS = {"workers": default_workers()}  # downstream commands load with the cores; the library: in-process


def _command(group: str, name: str) -> click.Command:
    main = data_cli.main if group == "data" else train_cli.main
    return main.get_command(click.Context(main), name)


def _params(group: str, name: str) -> dict:
    """The values the command's callback would receive for its minimal command line."""
    args, _ = MINIMAL[(group, name)]
    cmd = _command(group, name)
    with cmd.make_context(name, list(args)) as ctx:
        return dict(ctx.params)


def test_every_command_with_config_options_is_covered():
    """Each command that generates options from a config is in MINIMAL (ablate generates none: its own lane)."""
    generating = set()
    for group, main in (("data", data_cli.main), ("train", train_cli.main)):
        for name in main.list_commands(click.Context(main)):
            cmd = main.get_command(click.Context(main), name)
            if any(isinstance(p, ConfigOption) for p in getattr(cmd, "params", [])):
                generating.add((group, name))
    assert generating == set(MINIMAL)


@pytest.mark.parametrize(("group", "name"), sorted(MINIMAL))
def test_generated_option_defaults_are_the_config_defaults(group, name):
    """Every generated option's parsed default is its field's default (``None`` where a later layer decides:
    pretrain's Table 2 per task / YAML file, eval's checkpoint-dependent --features)."""
    cmd = _command(group, name)
    params = _params(group, name)
    options = [p for p in cmd.params if isinstance(p, ConfigOption)]
    assert options, name
    for p in options:
        field_value = field_default(p.field)
        if name == "pretrain" or (name == "eval" and p.name == "features"):
            assert params[p.name] is None, (name, p.name, params[p.name])
        else:
            assert params[p.name] == field_value, (name, p.name, params[p.name], field_value)
            assert type(params[p.name]) is type(field_value), (name, p.name)


@pytest.mark.parametrize(("group", "name"), sorted(MINIMAL))
def test_config_built_from_no_flags_is_the_default_config(group, name):
    """The config a command builds when no option is given equals the dataclass's own defaults, hand-written
    options (--hfov, --shard-size, --workers) included."""
    params = _params(group, name)
    _, configs = MINIMAL[(group, name)]
    if name == "pretrain":
        for task in TASKS:
            built = resolve(task, None, {**params, "shards": "x"})
            assert built == PretrainConfig(**{**TASK_DEFAULTS[task], "task": task, "shards": "x"})
        return
    for cls in configs:
        extra = {}
        if cls is SampleConfig:
            extra = {"hfov_min": params["hfov"][0], "hfov_max": params["hfov"][1]}
        if cls is JobConfig:
            from avsa_data.cli.shard import _shard_size

            n, mb = _shard_size(params["shard_size"])
            extra = {"shard_size": n, "shard_mb": mb}
        if cls is BinaryEvalConfig:
            extra = {"task": "avsa", "features": "transformer"}
        built = config_from(cls, params, **extra)
        expected = flat_build(cls, {k: v for k, v in CLI_DEFAULTS.items() if k in {n for n, *_ in flat_fields(cls)}})
        assert built == expected, (name, cls.__name__)


def test_every_cli_field_documents_itself():
    for cls in (SynthConfig, SampleConfig, JobConfig, EventOptions, LayoutSpec, PretrainConfig, BinaryEvalConfig,
                SegmentationConfig, FinetuneConfig, DirectionProbeConfig):
        for _, _, f, _ in flat_fields(cls):  # a nested protocol's fields too
            meta = option_meta(f)
            if meta is None:
                continue
            assert meta["help"].strip().endswith((".", ")")), (cls.__name__, f.name)
            if meta["choices"] is not None and field_default(f) is not None:
                assert field_default(f) in meta["choices"], (cls.__name__, f.name)


def _help(main, *args) -> str:
    return " ".join(CliRunner().invoke(main, [*args, "--help"]).output.split())  # unwrapped


def test_help_shows_the_config_defaults_as_typed():
    out = _help(train_cli.main, "segment")
    assert "[default: 5,8]" in out and "[default: 45 90]" in out and "[default: 1e-4]" in out
    out = _help(train_cli.main, "pretrain")
    assert "[default: Table 2: avc 112, avts 28, avsa 28]" in out and "--color-jitter / --no-color-jitter" in out
    out = _help(data_cli.main, "synth")
    assert "[default: 1024x512]" in out and "--size WIDTHxHEIGHT" in out


# ------------------------------------------------------------------------------------------- one error path


def _synth_raising(monkeypatch, tmp_path, exc: BaseException):
    import avsa_data.cli.synth

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(avsa_data.cli.synth, "generate", boom)
    return CliRunner().invoke(data_cli.main, ["synth", "--out", str(tmp_path / "o"), "-q"])


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, tmp_path):
    r = _synth_raising(monkeypatch, tmp_path, ValueError("bad input.mp4: no audio\n  details"))
    assert r.exit_code == 1 and r.stderr == "Error: bad input.mp4: no audio\n", r.output
    r = _synth_raising(monkeypatch, tmp_path, FileNotFoundError("missing.csv"))
    assert r.exit_code == 1 and r.stderr == "Error: missing.csv\n"
    r = _synth_raising(monkeypatch, tmp_path, JobStopped("disk full writing x: free space and rerun"))
    assert r.exit_code == 75 and r.stderr.startswith("Error: disk full")
    r = _synth_raising(monkeypatch, tmp_path, ZeroDivisionError("a bug"))
    assert isinstance(r.exception, ZeroDivisionError)  # not turned into a tidy line: the traceback stays
    r = _synth_raising(monkeypatch, tmp_path, KeyError("a bug"))
    assert isinstance(r.exception, KeyError)


def test_bad_values_rejected_by_click_or_by_the_config(tmp_path):
    r = CliRunner().invoke(data_cli.main, ["synth", "--out", str(tmp_path / "o"), "--videos", "-1"])
    assert r.exit_code == 2 and "--videos" in r.stderr  # the field's range, checked by click
    r = CliRunner().invoke(data_cli.main, ["synth", "--out", str(tmp_path / "o"), "--size", "big"])
    assert r.exit_code == 2 and "expected WIDTHxHEIGHT, e.g. 1024x512" in r.stderr
    r = CliRunner().invoke(data_cli.main, ["synth", "--out", str(tmp_path / "o"), "--size", "300x100"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--size" in r.stderr and "2:1" in r.stderr  # the config
    r = CliRunner().invoke(train_cli.main, ["segment", "--shards", "x", "--ckpt", "none", "--milestones", "5,x"])
    assert r.exit_code == 2 and "comma-separated" in r.stderr
    assert not (tmp_path / "o").exists()


def test_every_field_with_choices_is_checked_by_its_config():
    """The allowed values live once, in the field metadata: every config refuses a value outside them with a
    line naming the flag (the same list the command line offers)."""

    from avsa_data.options import flag_of, option_meta
    from avsa_data.samples import SampleConfig
    from avsa_data.synth import SynthConfig
    from avsa_train.config import PretrainConfig
    from avsa_train.tasks.binary_eval import BinaryEvalConfig
    from avsa_train.tasks.segmentation import SegmentationConfig

    def build(kind, **changes):
        if kind is PretrainConfig:
            return dataclasses.replace(PretrainConfig(shards="x"), **changes).validate()
        return kind(**changes)

    checked = 0
    for kind in (PretrainConfig, SampleConfig, SynthConfig, BinaryEvalConfig, SegmentationConfig):
        for f in dataclasses.fields(kind):
            meta = option_meta(f)
            if meta is None or meta["choices"] is None or f.name == "device":
                continue
            bad = 3 if isinstance(meta["choices"][0], int) else "not-a-choice"
            with pytest.raises(ValueError, match=f"{flag_of(f)} must be one of"):
                build(kind, **{f.name: bad})
            checked += 1
    assert checked >= 18


def test_entry_points_live_inside_the_project_packages():
    """No top-level `cli` package is installed (it could collide with another distribution's); the console
    scripts, `python -m avsa_data` / `python -m avsa_train` (and `torchrun -m avsa_train`) reach the commands."""
    import subprocess
    import sys
    from pathlib import Path

    import tomllib

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"avsa-data": "avsa_data.cli.main:main",
                                             "avsa-train": "avsa_train.cli.main:main"}
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["avsa_data*", "avsa_train*"]
    assert not (root / "cli").exists()
    for package, command in (("avsa_data", "shard"), ("avsa_train", "pretrain")):
        r = subprocess.run([sys.executable, "-m", package, command, "--help"], capture_output=True, text=True,
                           cwd=root)
        assert r.returncode == 0 and r.stdout.startswith(f"Usage: {package.replace('_', '-')} {command}"), r.stderr


def test_every_command_has_help_sections_examples_and_config():
    """Each command's --help lists its options in sections (more than one where it has many) with examples,
    and takes --config FILE."""
    for main in (data_cli.main, train_cli.main):
        for name in main.list_commands(click.Context(main)):
            cmd = main.get_command(click.Context(main), name)
            commands = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
            for c in commands:
                out = CliRunner().invoke(c, ["--help"], prog_name=name).output
                assert "Examples:" in out and "--config" in out, (name, c.name)
                if len(c.params) > 12:
                    assert len(getattr(c, "sections", {})) >= 2, (name, c.name)


@pytest.mark.parametrize(
    ("value", "hint", "text", "want"),
    [
        (4, int, False, 4),
        (4, float, False, 4.0),
        ("1e-4", float, False, 1e-4),  # YAML 1.1 reads 1e-4 as a string
        (None, int | None, False, None),
        ([50, 70], tuple[float, float], False, (50.0, 70.0)),
        ("7", int, True, 7),
        ("none", float | None, True, None),
        ("False", bool, True, False),
        ("1, 2,3", tuple[int, ...], True, (1, 2, 3)),
        ("50,70", tuple[float, float] | None, True, (50.0, 70.0)),
        ("mel128", str, True, "mel128"),
    ],
)
def test_config_values_are_typed_by_the_fields_hints(value, hint, text, want):
    from avsa_data.options import typed_value

    got = typed_value(value, hint, text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    ("value", "hint", "text", "says"),
    [
        (4.5, int, False, "must be int, got 4.5"),
        (True, int, False, "must be int, got True"),  # a YAML boolean is not a number
        ("3", int, False, "must be int, got '3'"),  # a YAML string is not an int
        (1, bool, False, "must be bool, got 1"),
        ("none", int | None, False, "must be int or None"),  # only YAML null is None
        ("yes", bool, True, "must be bool (true or false)"),
        ("3", tuple[float, float], True, "must be tuple of 2 float"),  # not a 1-tuple
        ("1,x", tuple[int, ...], True, "must be int, got 'x'"),
        (3, str, False, "must be str, got 3"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(value, hint, text, says):
    from avsa_data.options import typed_value

    with pytest.raises(ValueError, match=re.escape(says)):
        typed_value(value, hint, text)


# ------------------------------------------------------------------------------------------- nested configs


@dataclasses.dataclass(frozen=True)
class _Part:
    seed: int = option(0, help="Seed.")
    jitter: bool = option(True, help="Jitter.")


@dataclasses.dataclass(frozen=True)
class _Whole:
    lr: float = option(0.1, help="Learning rate.")
    part: _Part = nested(_Part)
    other: _Part = nested(_Part, "other_")


def test_a_nested_config_is_options_of_its_owner_under_flat_prefixed_names():
    @click.command()
    @config_options(_Whole)
    def cmd(**opts):
        click.echo(repr(config_from(_Whole, opts)))

    names = [p.name for p in cmd.params]
    assert names == ["lr", "seed", "jitter", "other_seed", "other_jitter"]
    r = CliRunner().invoke(cmd, ["--seed", "3", "--other-seed", "5", "--no-other-jitter"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == repr(_Whole(part=_Part(3, True), other=_Part(5, False)))
    w = _Whole()
    assert list(flat_dict(w).items()) == [("lr", 0.1), ("seed", 0), ("jitter", True), ("other_seed", 0),
                                          ("other_jitter", True)]
    changed = flat_replace(w, other_seed=7, lr=0.5)
    assert changed == _Whole(lr=0.5, other=_Part(seed=7)) and flat_value(changed, "other_seed") == 7
    assert flat_build(_Whole, {"other_jitter": False, "unknown": 1}) == _Whole(other=_Part(jitter=False))
    assert field_hint(_Whole, "other_seed") is int and field_hint(_Whole, "jitter") is bool
    with pytest.raises(TypeError, match="no options"):
        flat_replace(w, other_nope=1)

    @dataclasses.dataclass(frozen=True)
    class Clash:
        a: _Part = nested(_Part)
        b: _Part = nested(_Part)

    with pytest.raises(TypeError, match="repeat the options"):
        flat_fields(Clash)


def test_the_task_configs_save_their_nested_protocol_flat_as_before():
    """BinaryEvalConfig and SegmentationConfig nest the DownstreamProtocol, and still save (eval JSON ``config``,
    the command's flags and --config keys) the flat layout their outputs have always had, in that order."""
    binary = ["task", "views", "epochs", "batch_size", "lr", "milestones", "gamma", "weight_decay", "hidden",
              "dropout", "misalign_rate", "negatives", "min_yaw", "controls", "features", "test_draws", "augment",
              "head_epochs", "standardize", "shuffle_buffer", "seed", "workers", "train_split", "eval_split"]
    segment = ["views", "epochs", "batch_size", "lr", "weight_decay", "milestones", "gamma", "hfov_range",
               "eval_hfov_range", "fpn_dim", "segm_dim", "use_audio", "use_context", "backbone",
               "confidence_threshold", "shuffle_buffer", "seed", "workers", "train_split", "eval_split"]
    assert list(flat_dict(BinaryEvalConfig())) == binary
    assert list(flat_dict(SegmentationConfig())) == segment
    cfg = flat_replace(SegmentationConfig(), seed=4, eval_split="test")
    assert cfg.protocol.seed == 4 and cfg.protocol.eval_split == "test" and flat_dict(cfg)["seed"] == 4
    assert json.loads(json.dumps(flat_dict(cfg))) == {**flat_dict(SegmentationConfig()), "seed": 4,
                                                      "eval_split": "test", "hfov_range": [45.0, 90.0],
                                                      "eval_hfov_range": [45.0, 90.0], "milestones": [5, 8]}
