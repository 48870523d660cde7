"""Click options generated from a config dataclass, and the few options that are not config fields.

:func:`config_options` reads a frozen config dataclass whose fields were made with
:func:`avsa_data.options.option` and adds one click option per field: the flag, the default, the type, the
allowed values, the help text and the unit all come from the field, so an option is written once, beside its
default. The command then builds its config with :func:`config_from`. A nested config's fields
(:func:`avsa_data.options.nested`) are options of the command too, named with the nested field's prefix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import click

from avsa_data.options import (
    DEVICES,
    OptionError,
    field_default,
    flat_build,
    flat_fields,
    format_value,
    option_meta,
    read_options_file,
)


class CommaList(click.ParamType):
    """``"5,8"`` → ``(5, 8)``; ``""`` or ``"none"`` → ``()`` (a tuple field written comma-separated)."""

    def __init__(self, item: type):
        self.item = item
        self.name = f"{item.__name__}[,{item.__name__}…]".upper()

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)):
            return tuple(value)
        text = str(value).strip()
        if not text or text.lower() == "none":
            return ()
        try:
            return tuple(self.item(x.strip()) for x in text.split(","))
        except ValueError:
            self.fail(f"expected comma-separated values such as {'5,8' if self.item is int else 'a,b'}, "
                      f"got {value!r}", param, ctx)


class Size(click.ParamType):
    """``"1024x512"`` → ``(1024, 512)`` pixels; ``""`` → ``None`` where the field may be ``None``."""

    name = "WIDTHxHEIGHT"

    def __init__(self, example: str = "1920x960"):
        self.example = example

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, (tuple, list)):
            return None if value is None else tuple(value)
        if not str(value).strip():
            return None
        try:
            w, h = (int(x) for x in str(value).lower().split("x"))
            if w <= 0 or h <= 0:
                raise ValueError(value)
        except ValueError:
            self.fail(f"expected WIDTHxHEIGHT, e.g. {self.example}, got {value!r}", param, ctx)
        return w, h


class ConfigOption(click.Option):
    """A click option made from a config field; ``field`` names it, ``config`` is its dataclass."""

    def __init__(self, *args, config: type, field: dataclasses.Field, shown: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.config, self.field, self.shown = config, field, shown

    def get_help_extra(self, ctx: click.Context):
        extra = super().get_help_extra(ctx)
        if "default" in extra and self.shown is not None:  # as a user types it: 1e-4, 5,8, 1024x512, 45 90
            extra["default"] = self.shown
        return extra


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``int | None`` → ``(int, True)``; ``int`` → ``(int, False)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _click_type(hint: Any, meta: dict, default: Any) -> dict:
    """The click keywords (type, nargs) of a field's annotation and metadata."""
    base, _ = _base_type(hint)
    if meta["form"] == "size":
        return {"type": Size(format_value(default, "size") if default else "1920x960"), "metavar": "WIDTHxHEIGHT"}
    if meta["form"] == "dir":
        return {"type": click.Path(exists=True, file_okay=False)}
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is tuple:
        if meta["form"] == "list" or (len(args) == 2 and args[1] is Ellipsis):
            return {"type": CommaList(args[0])}
        return {"type": click.Tuple(list(args)), "nargs": len(args)}
    if meta["choices"] is not None:
        return {"type": click.Choice(meta["choices"])}
    if meta["min"] is not None or meta["max"] is not None:
        rng = click.IntRange if base is int else click.FloatRange
        return {"type": rng(min=meta["min"], max=meta["max"])}
    return {"type": base}


def _option(config: type, name: str, f: dataclasses.Field, hint: Any, unset: str | None,
            prefix: str) -> click.Option:
    """One click option, ``name``, of field ``f``. ``unset``: the option defaults to ``None`` and this text says
    what that means (the command or a later layer, e.g. a YAML file, decides); ``prefix`` starts that note in the
    help."""
    meta = option_meta(f)
    default = field_default(f)
    base, _ = _base_type(hint)
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    if name != f.name:  # a nested config's field: its prefix goes in front of the flag (both of an on/off pair)
        lead = name[: len(name) - len(f.name)].replace("_", "-")
        flag = "/".join("--" + (f"no-{lead}{x[5:]}" if x.startswith("--no-") else lead + x[2:])
                        for x in flag.split("/"))
    decls = [flag, *([meta["short"]] if meta["short"] else []), name]
    kw: dict[str, Any] = {"help": meta["help"]}
    if base is bool:
        if "/" in flag:
            pass  # an explicit --x/--no-x pair
        elif default is True:
            decls[0] = f"{flag}/--no-{flag[2:]}"
        else:
            kw["is_flag"] = True
    else:
        kw.update(_click_type(hint, meta, default))
        if kw.get("nargs", 1) > 1:
            kw["metavar"] = " ".join(["MIN", "MAX"] if kw["nargs"] == 2 else [meta["unit"] or "VALUE"] * kw["nargs"])
        elif meta["unit"]:
            kw["metavar"] = meta["unit"]
    note = unset if unset is not None else meta["default_doc"] if default is None else None
    if unset is not None:
        kw["default"] = None
    else:
        kw["default"] = default
        if default is not None and base is not bool:
            shown = format_value(default, meta["form"])
            kw["shown"] = shown.replace(",", " ") if kw.get("nargs", 1) > 1 else shown
    if note:
        kw["help"] = f"{meta['help']}  [{prefix}{note}]"
    return ConfigOption(decls, config=config, field=f, **kw)


def cli_fields(config: type) -> list[tuple[str, dataclasses.Field, type]]:
    """The fields of ``config`` (and of its nested configs) that are command-line options: ``(option name, field,
    the dataclass declaring it)``."""
    return [(name, f, owner) for name, _, f, owner in flat_fields(config)
            if (m := option_meta(f)) is not None and m["cli"]]


def config_options(config: type, *, unset: dict[str, str] | None = None,
                   all_unset: typing.Callable[[dataclasses.Field], str] | None = None):
    """A decorator adding one click option per command-line field of ``config`` (in field order).

    ``unset``: field → what a ``None``
    default means (the command decides). ``all_unset``: every option defaults to ``None`` and the callable says
    where the value then comes from (``pretrain``: Table 2 per task ← YAML file ← flags).
    """
    made, hints = [], {}
    for name, f, owner in cli_fields(config):
        note = all_unset(f) if all_unset else (unset or {}).get(name)
        hint = hints.setdefault(owner, typing.get_type_hints(owner))[f.name]
        made.append(_option(owner, name, f, hint, note, "default: "))

    def decorate(fn):
        for opt in reversed(made):
            fn.__click_params__ = [*getattr(fn, "__click_params__", []), opt]
        return fn

    return decorate


def config_from(config: type, values: dict, **extra):
    """``config`` built from the values of its options (``None`` = not given: the field's default) and
    ``extra`` fields; other keys of ``values`` are ignored. Nested configs are built from their options too,
    unless ``extra`` gives them. A value the config refuses is an :class:`~avsa_data.options.OptionError` (exit
    status 2)."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return flat_build(config, {**given, **extra})
    except OptionError:
        raise
    except ValueError as e:  # the config's own checks refuse what the options asked for
        raise OptionError(str(e)) from None


# ------------------------------------------------------------------------ options that are not config fields


def _shared() -> dict[str, typing.Callable]:
    return {
        "device": click.option("--device", type=click.Choice(DEVICES), default="auto",
                               help="auto = CUDA when available."),
        "quiet": click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    }


def stack(*decorators):
    """One decorator applying ``decorators`` so that their options are listed in the order given."""

    def decorate(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return decorate


def shared(*names: str):
    """The shared hand-written options (``device``, ``quiet``) in the order given."""
    table = _shared()
    return stack(*(table[n] for n in names))


# ------------------------------------------------------------------------------------------- --config FILE


def _read_config_file(ctx: click.Context, param: click.Parameter, value):
    """``--config FILE``: its option: value pairs become the command's defaults (``ctx.default_map``), so every
    flag given on the command line wins; a key that is not one of the command's options is refused."""
    if value is None:
        return None
    names = [p.name for p in ctx.command.params if p.name and p.name != param.name and p.expose_value]
    try:
        values = read_options_file(value, names)
    except OptionError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def config_file_option(fn):
    """The ``--config FILE`` option of a command (every command has one; ``pretrain`` its own, which also sets
    the fields that are not flags). Its keys are the command's options, and a run folder's ``*config.yaml`` is
    such a file: ``--config RUN/config.yaml`` repeats the run."""
    return click.option(
        "--config", "config_file", type=click.Path(exists=True, dir_okay=False), is_eager=True,
        callback=_read_config_file, expose_value=False,
        help="YAML file of option: value (the long flags' names, e.g. `epochs: 3`; a run folder's *config.yaml "
        "repeats that run). Flags given on the command line win.",
    )(fn)
