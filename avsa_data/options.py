"""Config fields that describe themselves: the one place of an option's default, help, unit and allowed values.

A task's frozen config dataclass is the source of truth of its command-line options. A field made with
:func:`option` carries, in its ``metadata``, the help text, the unit, the allowed values (``choices`` or a
``min``/``max`` range) and, where it differs from the field name, the flag; ``avsa_data/cli/_options.py`` turns such a
dataclass into click options, so each option is written once, beside its default. Torch-free.

Metadata keys (all optional but ``help``): ``help``, ``unit`` (shown as the option's metavar), ``choices``,
``min`` / ``max`` (inclusive), ``flag`` (e.g. ``"--confidence"`` or ``"--color-jitter/--no-color-jitter"``),
``short`` (``"-q"``), ``form`` (see :data:`FORMS`), ``default_doc`` (what a ``None`` default means), ``cli``
(``False``: no flag, e.g. a field set only by a YAML file or by the library).

A config can hold a shared part as a nested config (:func:`nested`): its fields are its owner's options, written
flat on the command line, in ``--config`` files and in saved configurations (:func:`flat_fields`,
:func:`flat_dict`, :func:`flat_replace`), so nesting a part changes no flag, key or saved byte.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Compute devices a command can be asked to use; ``auto`` = CUDA when available. (``cuda:N`` is also accepted
#: where a library function takes a device, but not offered as a flag value.)
DEVICES = ("auto", "cpu", "cuda")

#: How a value is written on the command line when its type does not say it: ``size``: a ``(W, H)`` pair as
#: ``WIDTHxHEIGHT``; ``list``: a tuple as comma-separated values; ``dir``: an existing folder (a ``str``).
FORMS = (None, "size", "list", "dir")

_MISSING: Any = dataclasses.MISSING


class OptionError(ValueError):
    """An option's value, or a combination of option values, is refused: one line that names the option and
    says the fix. The commands end with exit status 2 for it (as for the values click itself refuses), before
    anything is written; 1 is kept for bad input data."""


def option(
    default: Any = _MISSING,
    *,
    help: str,  # noqa: A002 - the name click uses
    default_factory: Callable[[], Any] = _MISSING,
    unit: str | None = None,
    choices: tuple | None = None,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    flag: str | None = None,
    short: str | None = None,
    form: str | None = None,
    default_doc: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its option metadata (see the module docstring)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    meta = {
        "help": help,
        "unit": unit,
        "choices": tuple(choices) if choices is not None else None,
        "min": min,
        "max": max,
        "flag": flag,
        "short": short,
        "form": form,
        "default_doc": default_doc,
        "cli": cli,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"option": meta})


def nested(config: type, prefix: str = "") -> Any:
    """A field holding a sub-config of type ``config`` (its defaults), whose fields are options of its owner named
    ``prefix + name`` (flag ``--prefix-name``): the shared part of several configs, written once."""
    return dataclasses.field(default_factory=config, metadata={"nested": prefix})


def nested_prefix(f: dataclasses.Field) -> str | None:
    """The prefix of a field made with :func:`nested`, else ``None``."""
    return f.metadata.get("nested")


def flat_fields(config: Any, prefix: str = "") -> list[tuple[str, tuple[str, ...], dataclasses.Field, type]]:
    """Every leaf field of the dataclass ``config`` (a class or an instance) in field order, a nested config's
    in its place: ``(flat name, attribute path, field, the dataclass declaring it)``. Two leaves with one flat
    name are a ``TypeError`` (a prefix tells them apart)."""
    cls = config if isinstance(config, type) else type(config)
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, tuple[str, ...], dataclasses.Field, type]] = []
    for f in dataclasses.fields(cls):
        inner = nested_prefix(f)
        if inner is None:
            out.append((prefix + f.name, (f.name,), f, cls))
            continue
        for name, path, leaf, owner in flat_fields(hints[f.name], prefix + inner):
            out.append((name, (f.name, *path), leaf, owner))
    names = [name for name, *_ in out]
    if len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}: nested configs repeat the options "
                        f"{sorted({n for n in names if names.count(n) > 1})}; give the nested field a prefix")
    return out


def flat_get(config: Any, path: tuple[str, ...]) -> Any:
    """The value at attribute ``path`` (from :func:`flat_fields`) of ``config``."""
    for name in path:
        config = getattr(config, name)
    return config


def flat_value(config: Any, name: str) -> Any:
    """The value of option ``name`` (a flat name, :func:`flat_fields`) of ``config``; ``KeyError`` for another."""
    for flat, path, _, _ in flat_fields(config):
        if flat == name:
            return flat_get(config, path)
    raise KeyError(name)


def flat_dict(config: Any) -> dict:
    """``config`` as one flat mapping of option name: value (nested configs inlined in their place), as
    ``dataclasses.asdict`` gives a config without nested parts."""
    return {name: _plain(flat_get(config, path)) for name, path, _, _ in flat_fields(config)}


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def flat_build(config: type, values: dict) -> Any:
    """``config`` from flat option values (names as :func:`flat_fields` gives them; absent: the default); other
    keys are ignored; a nested config may also be given whole, under its field's name. The dataclasses' own
    checks run as they are built."""
    hints = typing.get_type_hints(config)
    kwargs = {}
    for f in dataclasses.fields(config):
        inner = nested_prefix(f)
        if f.name in values and (inner is None or dataclasses.is_dataclass(values[f.name])):
            kwargs[f.name] = values[f.name]
        elif inner is not None:
            part = {k[len(inner):]: v for k, v in values.items() if k.startswith(inner)}
            kwargs[f.name] = flat_build(hints[f.name], part)
    return config(**kwargs)


def flat_replace(config: Any, **changes: Any) -> Any:
    """``config`` with the flat options ``changes`` replaced (``dataclasses.replace`` through nested parts);
    an unknown name is a ``TypeError``."""
    paths = {name: path for name, path, _, _ in flat_fields(config)}
    unknown = sorted(set(changes) - set(paths))
    if unknown:
        raise TypeError(f"{type(config).__name__} has no options {unknown}")
    return _replace_at(config, [(paths[name], value) for name, value in changes.items()])


def _replace_at(config: Any, changes: list[tuple[tuple[str, ...], Any]]) -> Any:
    """``config`` with each ``(attribute path, value)`` of ``changes`` replaced."""
    direct = {path[0]: value for path, value in changes if len(path) == 1}
    deeper: dict[str, list] = {}
    for path, value in changes:
        if len(path) > 1:
            deeper.setdefault(path[0], []).append((path[1:], value))
    direct.update({head: _replace_at(getattr(config, head), sub) for head, sub in deeper.items()})
    return dataclasses.replace(config, **direct)


def option_meta(f: dataclasses.Field) -> dict | None:
    """The option metadata of a field made with :func:`option`, else ``None``."""
    return f.metadata.get("option")


def flag_of(f: dataclasses.Field) -> str:
    """The long flag of a field (``--audio-format``; the first of an on/off pair such as ``--color-jitter``)."""
    meta = option_meta(f) or {}
    return (meta.get("flag") or "--" + f.name.replace("_", "-")).split("/")[0]


def check_choices(config: Any, skip: tuple[str, ...] = ()) -> None:
    """Raise :class:`OptionError` naming the flag when a field of ``config`` holds a value outside its ``choices``
    (the same list the command line offers; ``None`` passes where it is the field's default). Fields in ``skip``
    are checked by their config (e.g. ``device``, which also takes ``cuda:N``)."""
    for f in dataclasses.fields(config):
        meta = option_meta(f)
        if meta is None or meta["choices"] is None or f.name in skip:
            continue
        value = getattr(config, f.name)
        if value is None and field_default(f) is None:
            continue
        if value not in meta["choices"]:
            raise OptionError(f"{flag_of(f)} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")


def check_range(flag: str, low: float, high: float, lowest: float, highest: float, unit: str = "") -> None:
    """Refuse a ``MIN MAX`` pair (one flag, two values) unless ``lowest < MIN ≤ MAX < highest``, with one
    :class:`OptionError` line naming ``flag``; swapped values are answered with the order to type them in."""
    if lowest < low <= high < highest:
        return
    units = f" {unit}" if unit else ""
    fix = (f"; give the smaller first: {flag} {format_value(float(high))} {format_value(float(low))}"
           if high < low and lowest < high and low < highest else "")
    raise OptionError(f"{flag} MIN MAX must satisfy {format_value(float(lowest))} < MIN ≤ MAX < "
                      f"{format_value(float(highest))}{units}, got {format_value(float(low))} "
                      f"{format_value(float(high))}{fix}")


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory); ``MISSING`` when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def format_value(value: Any, form: str | None = None) -> str:
    """A value as a user writes it on the command line: ``1e-4``, ``5,8``, ``1024x512``, ``on``/``off``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{float(mantissa):g}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ("x" if form == "size" else ",").join(format_value(v) for v in value)
    return str(value)


def per_task(values: dict[str, Any]) -> str:
    """``{"avc": 1e-5, "avsa": 1e-4}`` → ``"1e-5 avc; 1e-4 avsa"`` (a default that depends on the task)."""
    return "; ".join(f"{format_value(v)} {task}" for task, v in values.items())


def read_options_file(path: str | os.PathLike, valid: Iterable[str]) -> dict:
    """The mapping of option: value of a ``--config`` YAML file (keys as the long flags, ``_`` or ``-`` between
    words; returned with ``_``). A malformed file, another document than a mapping, or a key not in ``valid``
    is an :class:`OptionError` naming the file (and the line where parsing stopped)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_bytes()) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise OptionError(
            f"{path}: malformed YAML{where} ({e.problem or e.context}); expected a mapping of option: value"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # e.g. bytes that are not UTF-8
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OptionError(f"{path}: not a YAML file ({why}); expected a mapping of option: value") from None
    if not isinstance(data, dict):
        raise OptionError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    valid = sorted(valid)
    unknown = sorted(k for k in data if k not in valid)
    if unknown:
        raise OptionError(f"{path}: unknown keys {unknown}; valid keys: {valid}")
    return data


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps``, ``0 problems`` (``many``: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def field_hint(config: type, name: str) -> Any:
    """The type hint of option ``name`` of the dataclass ``config`` (a field, or a nested config's field under its
    flat name: :func:`flat_fields`), resolved, not the annotation's text; ``KeyError`` for another name."""
    for flat, _, f, owner in flat_fields(config):
        if flat == name:
            return typing.get_type_hints(owner)[f.name]
    raise KeyError(name)


def type_name(hint: Any) -> str:
    """``int``, ``float or None``, ``tuple of int``, ``tuple of 2 float``: a hint as an error message says it."""
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {type_name(args[0])}"
        return f"tuple of {len(args)} {type_name(args[0])}" if len(set(args)) == 1 else str(hint)
    return getattr(hint, "__name__", str(hint))


def typed_value(value: Any, hint: Any, text: bool = False) -> Any:
    """``value`` as a value of a config field of type ``hint`` (:func:`field_hint`), or ``ValueError``.

    ``text=False``: a value a YAML file gave, kept as YAML typed it: ``null`` for a field that may be ``None``,
    a YAML boolean for a bool, an integer for an int, a number for a float (or a string such as ``1e-4``, which
    YAML 1.1 reads as a string), a string for a str, a list for a tuple.
    ``text=True``: the text of a ``FIELD=VALUE`` override: ``none``, ``true``/``false``, a number, comma-separated
    items for a tuple (a fixed-length tuple takes exactly that many), any text for a str.
    """
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or text and str(value).strip().lower() == "none"):
            return None
        for kind in (a for a in args if a is not type(None)):
            try:
                return typed_value(value, kind, text)
            except ValueError:
                continue
    elif origin is tuple:
        items = [x.strip() for x in value.split(",") if x.strip()] if text and isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            kinds = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
            if len(kinds) == len(items):
                return tuple(typed_value(x, k, text) for x, k in zip(items, kinds))
    elif isinstance(value, str) and text:
        return _from_text(value.strip(), hint)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if hint is float:
            return float(value)
        if isinstance(value, int):
            return value
    elif hint is float and isinstance(value, str):
        return _from_text(value, float)
    elif hint is str and isinstance(value, str):
        return value
    raise ValueError(f"must be {type_name(hint)}{' (true or false)' if hint is bool and text else ''}, "
                     f"got {value!r}")


def _from_text(raw: str, hint: Any) -> Any:
    """``raw`` as a bool (``true``/``false``), int, float or str; ``ValueError`` otherwise."""
    if hint is bool and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if hint is str:
        return raw
    if hint in (int, float):
        try:
            return hint(raw)
        except ValueError:
            pass
    raise ValueError(f"must be {type_name(hint)}{' (true or false)' if hint is bool else ''}, got {raw!r}")
