"""`avsa-data inspect`: contact sheet PNG and WAVs of one shard sample."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._locations import shard_location


@command("inspect", show_default=False)
@click.argument("shard", callback=shard_location)
@click.option("--key", default=None, help="Sample key {video_id}/{moment:06d}; default: the first sample.")
@click.option("--moment", type=int, default=0, show_default=True, help="Moment index within the sample.")
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Write a contact sheet: frames of every viewpoint, mask overlays, audio-direction plot.")
@click.option("--listen", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the unrotated FOA and each viewpoint's foa/mono/stereo renders as WAVs to this folder.")
def inspect_cmd(shard: Path | str, key: str | None, moment: int, png: Path | None, listen: Path | None) -> None:
    """Print a sample's metadata summary; optionally draw it (--png) or write its audio (--listen).

    SHARD is a .tar file, a shard folder (its first shard; --key finds a sample in any of them), or an fsspec URL
    of a .tar (s3://bucket/prefix/train-000000.tar).

    \b
    Examples:
      avsa-data inspect shards/
      avsa-data inspect shards/train-000000.tar --key synth_0001/000002 --png sheet.png --listen wav/
    """
    from avsa_data.inspection import contact_sheet, find_sample, write_wavs

    s = find_sample(shard, key)
    m = s.meta
    click.echo(f"{s.key}: {len(m['viewpoints'])} viewpoints × {m['moments_per_sample']} moment(s), "
               f"T={m['frames_per_clip']} frames {m['crop_size'][0]}², audio {m['audio_samples']} @ {m['sr']} Hz, "
               f"stored renders {','.join(m['renders']) or 'none (made from the FOA)'}, "
               f"labels {m['labels'].get('backend')}"
               f"{'' if m['labels'].get('present') else ' (none)'}")
    for i, v in enumerate(m["viewpoints"]):
        click.echo(f"  v{i}: az {v['azimuth']:7.2f}°  el {v['elevation']:6.2f}°  hfov {v['hfov']:5.1f}°  "
                   f"vfov {v['vfov']:5.1f}°")
    ev = m.get("events") or {}
    click.echo(f"  sound events: {ev.get('status', 'none')}" + (f" ({ev['file']})" if ev.get("file") else ""))
    for i, e in enumerate(s.events(None, moment)):
        seen = [f"v{k}" for k in range(s.num_views) if s.events(k, moment)[i]["in_view"]]
        click.echo(f"    {e['class_name']} #{e['track']}: az {e['azimuth']:7.2f}°  el {e['elevation']:6.2f}°  "
                   f"in view of {','.join(seen) or 'none'}")
    if png:
        click.echo(f"contact sheet → {contact_sheet(s, png, moment)}")
    if listen:
        click.echo(f"{len(write_wavs(s, listen, moment))} WAVs → {listen}")
