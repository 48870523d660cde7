"""Config fields that describe themselves: the one place of an option's default, help, unit and allowed values.

A task's frozen config dataclass is the source of truth of its command-line options. A field made with
:func:`option` carries, in its ``metadata``, the help text, the unit, the allowed values (``choices`` or a
``min``/``max`` range) and, where it differs from the field name, the flag; ``cli/_options.py`` turns such a
dataclass into click options, so each option is written once, beside its default. Torch-free.

Metadata keys (all optional but ``help``): ``help``, ``unit`` (shown as the option's metavar), ``choices``,
``min`` / ``max`` (inclusive), ``flag`` (e.g. ``"--confidence"`` or ``"--color-jitter/--no-color-jitter"``),
``short`` (``"-q"``), ``form`` (see :data:`FORMS`), ``default_doc`` (what a ``None`` default means), ``cli``
(``False``: no flag, e.g. a field set only by a YAML file or by the library).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

#: Compute devices a command can be asked to use; ``auto`` = CUDA when available. (``cuda:N`` is also accepted
#: where a library function takes a device, but not offered as a flag value.)
DEVICES = ("auto", "cpu", "cuda")

#: How a value is written on the command line when its type does not say it: ``size``: a ``(W, H)`` pair as
#: ``WIDTHxHEIGHT``; ``list``: a tuple as comma-separated values; ``dir``: an existing folder (a ``str``).
FORMS = (None, "size", "list", "dir")

_MISSING: Any = dataclasses.MISSING


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


def option_meta(f: dataclasses.Field) -> dict | None:
    """The option metadata of a field made with :func:`option`, else ``None``."""
    return f.metadata.get("option")


def flag_of(f: dataclasses.Field) -> str:
    """The long flag of a field (``--audio-format``; the first of an on/off pair such as ``--color-jitter``)."""
    meta = option_meta(f) or {}
    return (meta.get("flag") or "--" + f.name.replace("_", "-")).split("/")[0]


def check_choices(config: Any, skip: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the flag when a field of ``config`` holds a value outside its ``choices``
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
            raise ValueError(f"{flag_of(f)} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")


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
