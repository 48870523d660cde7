"""`avsa-data shard`: parse options, build a JobConfig, run avsa_data.shards.run_shard_job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._locations import output_folder
from avsa_data.cli._options import config_from, config_options, shared
from avsa_data.layouts import LayoutSpec
from avsa_data.options import plural
from avsa_data.samples import SampleConfig
from avsa_data.shards import ENGINES, JobConfig, run_shard_job


def _shard_size(value: str) -> tuple[int | None, float | None]:
    v = value.strip().lower()
    try:
        if v.endswith("mb"):
            return None, float(v[:-2])
        return int(v), None
    except ValueError as e:
        raise click.BadParameter(f"expected a sample count (256) or a size (500MB), got {value!r}",
                                 param_hint="'--shard-size'") from e


#: --help sections of `avsa-data shard` (option names; the rest is listed last).
SECTIONS = {
    "Input": ["src", "list_file", "name", "audio_dir", "events_dir", "classes", "hop", "ambi_format",
              "max_av_mismatch", "max_resolution"],
    "Output": ["out", "staging", "shard_size", "overwrite", "keep_work"],
    "Sampling": ["fps", "clip_seconds", "stride", "moments_per_video", "moments_per_sample", "moment_gap",
                 "viewpoints_per_moment", "sampler", "hfov", "min_separation", "crop_size", "jpeg_quality",
                 "equirect_size", "keep_equirect", "seed"],
    "Audio": ["sr", "audio_seconds", "audio_bits", "renders", "binaural", "sofa", "hrir_decoder"],
    "Labels": ["labels", "labels_optional", "label_dir", "class_map", "label_fps", "max_gap"],
    "ONNX labels (--labels onnx)": ["model", "onnx_size", "onnx_mean", "onnx_std", "onnx_output", "onnx_layout",
                                    "onnx_fov", "onnx_device", "onnx_threads"],
    "Execution": ["workers", "engine", "ray_address", "strict", "quiet"],
}


@command(sections=SECTIONS)
@click.option("--src", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Folder searched recursively for .mp4/.mkv/.webm/.mov 360° equirect videos. Audio: a 4-channel "
                   "track in the container, or a same-stem sidecar .wav/.flac (see --layout for other layouts).")
@config_options(LayoutSpec)
@click.option("--out", callback=output_folder, required=True,
              help="Output folder for {split}-NNNNNN.tar shards, manifest.json and failures.jsonl; or an fsspec "
                   "URL (s3://bucket/prefix, gs://…; pip install 'avsa[cloud]' s3fs) to upload them to.")
@click.option("--staging", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With a URL --out: a local scratch folder the job owns, for the per-video work and one shard at "
                   "a time (rerun with the same one to resume).  [default: a folder named after the URL in the "
                   "system temp folder]")
@click.option("--list", "list_file", type=click.Path(path_type=Path, dir_okay=False),
              help="CSV with columns video_id (or path) and split.  [default: SRC/videos.csv if present, else all "
                   "train]")
@click.option("--hfov", nargs=2, type=float, default=(SampleConfig.hfov_min, SampleConfig.hfov_max),
              metavar="MIN MAX", help="Min and max horizontal field of view (degrees).")
@config_options(JobConfig)
@click.option("--shard-size", default=str(JobConfig.shard_size),
              help="Samples per shard (e.g. 256) or a size target (e.g. 500MB).")
@click.option("--engine", type=click.Choice(ENGINES), default="local",
              help="local: a process pool on this machine; ray: one Ray task per video (pip install 'avsa[ray]').")
@click.option("--ray-address", default=None,
              help="With --engine ray: an existing cluster ('auto', 'ray://host:10001').  [default: start a local "
                   "one]")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=min(4, os.cpu_count() or 1),
              help="Parallel worker processes.")
@click.option("--overwrite", is_flag=True,
              help="Rebuild an existing output made with another configuration, another --src, or from inputs "
                   "that changed or disappeared since. (Videos added to --src need no flag: a rerun adds them; nor "
                   "does an output with no finished shard yet.)")
@click.option("--strict", is_flag=True, help="Exit non-zero if any video fails.")
@click.option("--keep-work", is_flag=True,
              help="Keep the per-video fragments in OUT/.work (with a URL --out: the staging folder) after the job.")
@shared("quiet")
def shard(src, out, staging, list_file, hfov, shard_size, engine, ray_address, workers, overwrite, strict, keep_work,
          quiet, **opts):
    """Turn raw 360° videos into WebDataset shards of viewpoint banks (see docs/FORMAT.md).

    Each sample is one moment (or M moments) of one video with K viewpoints: the moment's unrotated FOA and,
    per viewpoint, the NFOV crop clip and (with --labels) segmentation + confidence masks. Each viewpoint's
    rotated FOA, mono and virtual-mic binaural renders are a matrix of that FOA, made by readers; --renders
    stores them too (auto, the default, stores only --binaural hrir stereo, which is a convolution).
    Resumable: rerun the same command after an interruption, or after an environment error (disk full, out of
    memory; exit status 75). Bad inputs go to OUT/failures.jsonl. Rerun after adding videos to --src to add
    their samples as new shards (finished shards are not rewritten). One job at a time per --out. Ctrl-C stops
    at once (exit status 130); the rerun keeps every finished video.

    \b
    Examples:
      avsa-data shard --src raw/ --out shards/ --labels synthetic
      avsa-data shard --src /data/yt360/ --out /data/yt360-shards/ -j 16 --labels none
      avsa-data shard --src STARSS23/ --out starss-shards/ --binaural hrir --sofa default
      avsa-data shard --src raw/ --out s3://bucket/shards --staging /scratch/stage
    """
    n_shard, mb = _shard_size(shard_size)
    if staging is not None and not isinstance(out, str):
        raise click.BadParameter("only applies when --out is a URL (s3://bucket/prefix)", param_hint="'--staging'")
    job = config_from(JobConfig, opts, hfov_min=hfov[0], hfov_max=hfov[1], shard_size=n_shard,
                      shard_mb=mb).with_hrir_set()
    report = run_shard_job(src, out, job, workers=workers, list_file=list_file, overwrite=overwrite,
                           keep_work=keep_work, progress=not quiet, engine=engine, ray_address=ray_address,
                           staging=staging, layout=config_from(LayoutSpec, opts))
    state = ("up to date" if report.up_to_date else f"updated (+{plural(report.added, 'video')})" if report.added
             else "done")
    click.echo(f"{state}: {plural(report.samples, 'sample')} in {plural(report.shards, 'shard')} from "
               f"{report.ok}/{plural(report.videos, 'video')} → {report.out}"
               + (f"; {report.failed} failed (see {report.out}/failures.jsonl)"
                                            if report.failed else ""))
    if report.ok == 0 or (strict and report.failed):
        sys.exit(1)

