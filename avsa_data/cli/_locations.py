"""Click callbacks for arguments that are a local path or an fsspec URL (``s3://bucket/prefix``)."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data import remote


def shard_location(ctx, param, value: str) -> Path | str:
    """An existing local path (Path), or a URL (str, as typed; checked when it is read)."""
    if remote.is_url(value):
        return value
    path = Path(value)
    if not path.exists():
        raise click.BadParameter(f"{value} does not exist", ctx=ctx, param=param)
    return path


def output_folder(ctx, param, value: str) -> Path | str:
    """A local folder to create or reuse (Path), or a URL to publish to (str, as typed)."""
    if remote.is_url(value):
        return value
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{value} is a file, not a folder", ctx=ctx, param=param)
    return path
