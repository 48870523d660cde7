"""`avsa-data verify`: check shards against their manifest and docs/FORMAT.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._locations import shard_location
from avsa_data.options import plural
from avsa_data.verify import verify_dir, verify_shard


@command(show_default=False)
@click.argument("path", callback=shard_location)
@click.option("--no-decode", is_flag=True, help="Only checksums and sample lists; do not decode members.")
@click.option("--max-report", type=int, default=50, show_default=True, help="Problems printed at most.")
def verify(path: Path | str, no_decode: bool, max_report: int) -> None:
    """Recompute checksums, decode every member and check shapes/dtypes/metadata.

    PATH is a shard folder (with manifest.json) or a single .tar, or an fsspec URL of either
    (s3://bucket/prefix, s3://bucket/prefix/train-000000.tar). A single tar is checked on its own: its tar
    framing, each meta.json against the schema, and each member against the sha256 stored in meta.json
    (format_version 2). Damage never stops the run: each problem is one line naming the shard and the
    sample key, and memory stays bounded by the format's limits (docs/FORMAT.md, "Validation and limits").
    Exits 1 if anything is wrong.

    \b
    Examples:
      avsa-data verify shards/
      avsa-data verify shards/train-000000.tar --no-decode
    """
    single = path.endswith(".tar") if isinstance(path, str) else not path.is_dir()
    report = verify_shard(path, not no_decode) if single else verify_dir(path, not no_decode)
    for p in report.problems[:max_report]:
        click.echo(f"{p['shard']}{' ' + p['key'] if p['key'] else ''}: {p['problem']}", err=True)
    if len(report.problems) > max_report:
        click.echo(f"... and {plural(len(report.problems) - max_report, 'more problem')}", err=True)
    status = "OK" if report.ok else plural(len(report.problems), "problem")
    click.echo(f"verify: {plural(report.shards, 'shard')}, {plural(report.samples, 'sample')}: {status}")
    sys.exit(0 if report.ok else 1)
