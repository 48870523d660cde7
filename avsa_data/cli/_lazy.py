"""A click group whose sub-commands are imported only when used, so `--help` and start-up stay fast."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """``commands`` maps a command name to ``"module:attribute"`` of a click command."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands:
            mod, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(mod), attr)
        return super().get_command(ctx, name)


def lazy_group(name: str, commands: dict[str, str], help: str) -> LazyGroup:  # noqa: A002 - click's name
    """A console-script group (``avsa-data``, ``avsa-train``) of lazily imported ``commands``, with --version."""
    from avsa_data.cli._command import CONTEXT

    group = LazyGroup(name, lazy_commands=commands, context_settings=CONTEXT, help=help)
    return click.version_option(package_name="avsa")(group)
