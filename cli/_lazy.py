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
