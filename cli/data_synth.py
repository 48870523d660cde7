"""`avsa-data synth`: parse options, build a SynthConfig, run avsa_data.synth.generate."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data import media
from avsa_data.synth import AUDIO_LAYOUTS, SynthConfig, default_workers, generate


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in value.lower().split("x"))
    except ValueError as e:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, e.g. 1024x512, got {value!r}") from e
    return w, h


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Output folder: {id}.mp4 (+ {id}.wav), {id}.truth.npz, {id}.json, videos.csv, synth.json.",
)
@click.option("--videos", type=click.IntRange(min=0), default=8, help="Number of videos.")
@click.option("--duration", type=float, default=10.0, help="Length of each video (seconds).")
@click.option("--seed", type=int, default=0, help="Master seed; the same seed gives byte-identical files.")
@click.option("--size", default="1024x512", help="Equirect frame size WIDTHxHEIGHT (2:1, even).")
@click.option("--fps", type=float, default=16.0, help="Video frame rate (frames per second).")
@click.option("--sr", type=int, default=24000, help="Audio sample rate (Hz).")
@click.option(
    "--format",
    "ambi_format",
    type=click.Choice(list(media.AMBI_FORMATS)),
    default="ambix",
    help="Channel convention of the written FOA: ambiX (ACN W,Y,Z,X; SN3D) or FuMa (W,X,Y,Z; W at -3 dB).",
)
@click.option(
    "--audio-layout",
    type=click.Choice(list(AUDIO_LAYOUTS)),
    default="container",
    help="4-channel track inside the .mp4, or a same-stem .wav sidecar (PCM s16le) next to it.",
)
@click.option(
    "--audio-codec",
    type=click.Choice(sorted(media.AUDIO_CODECS)),
    default="aac",
    help="Codec of the in-container track (the sidecar is always PCM).",
)
@click.option(
    "--snr-db",
    type=float,
    default=20.0,
    help="Sources-to-diffuse-noise power ratio on the W channel (dB); 'inf' for no noise.",
)
@click.option("--label-fps", type=float, default=4.0, help="Rate of the ground-truth class maps (frames per second).")
@click.option("--label-size", default="256x128", help="Size WIDTHxHEIGHT of the ground-truth class maps.")
@click.option("--val-fraction", type=float, default=0.25, help="Fraction of videos (the last ones) marked 'val'.")
@click.option(
    "--sounding-objects",
    type=(int, int),
    default=(1, 4),
    help="MIN MAX sounding visible objects per video (distinct classes, at most 8). The demo uses denser "
    "scenes (docs/SYNTH.md) so that most viewpoints see a sound source.",
)
@click.option(
    "--object-radius",
    type=(float, float),
    default=(10.0, 16.0),
    help="MIN MAX angular radius of the objects (degrees).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel processes [default: min(4, CPUs)]. Does not change the output.",
)
@click.option(
    "--corrupt",
    is_flag=True,
    help="Also write broken inputs (truncated, no audio, stereo, short audio, unreadable) for testing readers.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth(
    out,
    videos,
    duration,
    seed,
    size,
    fps,
    sr,
    ambi_format,
    audio_layout,
    audio_codec,
    snr_db,
    label_fps,
    label_size,
    val_fraction,
    sounding_objects,
    object_radius,
    workers,
    corrupt,
    quiet,
):
    """Write synthetic 360° videos with ambisonic audio and exact ground truth (docs/SYNTH.md)."""
    try:
        cfg = SynthConfig(
            videos=videos,
            duration=duration,
            seed=seed,
            size=_size(size),
            fps=fps,
            sr=sr,
            ambi_format=ambi_format,
            audio_layout=audio_layout,
            audio_codec=audio_codec,
            snr_db=snr_db,
            label_fps=label_fps,
            label_size=_size(label_size),
            val_fraction=val_fraction,
            sounding_objects=tuple(sounding_objects),
            object_radius=tuple(object_radius),
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    n_workers = workers or default_workers()
    metas = generate(cfg, out, workers=n_workers, progress=not quiet, corrupt=corrupt)
    n_val = sum(m["split"] == "val" for m in metas)
    click.echo(
        f"wrote {len(metas)} videos ({len(metas) - n_val} train, {n_val} val) to {out}"
        + (" plus corrupt variants" if corrupt else "")
    )
