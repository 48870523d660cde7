"""`avsa-data shard`: parse options, build a JobConfig, run avsa_data.shards.run_shard_job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from avsa_data import format as fmt
from avsa_data.labels import BACKENDS
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, ShardJobError, run_shard_job
from avsa_data.viewpoints import HFOV_RANGE, MIN_SEPARATION_DEG
from cli._locations import output_folder


def _size(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        w, h = (int(x) for x in value.lower().split("x"))
    except ValueError as e:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, e.g. 1920x960, got {value!r}",
                                 param_hint="'--equirect-size'") from e
    return w, h


def _shard_size(value: str) -> tuple[int | None, float | None]:
    v = value.strip().lower()
    try:
        if v.endswith("mb"):
            return None, float(v[:-2])
        return int(v), None
    except ValueError as e:
        raise click.BadParameter(f"expected a sample count (256) or a size (500MB), got {value!r}",
                                 param_hint="'--shard-size'") from e


def _label_options(**options) -> tuple[tuple[str, str], ...]:
    """The given backend options as sorted (name, string) pairs: a stable part of the config hash."""
    return tuple(sorted((k, str(v)) for k, v in options.items() if v is not None))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--src", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Folder searched recursively for .mp4/.mkv/.webm/.mov 360° equirect videos. Audio: a 4-channel "
                   "track in the container, or a same-stem sidecar .wav/.flac.")
@click.option("--out", callback=output_folder, required=True,
              help="Output folder for {split}-NNNNNN.tar shards, manifest.json and failures.jsonl; or an fsspec "
                   "URL (s3://bucket/prefix, gs://…; pip install 'avsa[cloud]' s3fs) to upload them to.")
@click.option("--staging", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With a URL --out: a local scratch folder the job owns, for the per-video work and one shard at "
                   "a time (rerun with the same one to resume). Default: a folder named after the URL in the "
                   "system temp folder.")
@click.option("--list", "list_file", type=click.Path(path_type=Path, dir_okay=False),
              help="CSV with columns video_id (or path) and split. Default: SRC/videos.csv if present, else all train.")
@click.option("--ambi-format", type=click.Choice(["ambix", "fuma"]), default="ambix",
              help="Channel convention of the input audio; FuMa is converted to ambiX (ACN/SN3D).")
@click.option("--fps", type=float, default=16.0, help="Video frame rate of the crops (frames per second).")
@click.option("--clip-seconds", type=float, default=0.5,
              help="Video clip length per moment (s); 0.5 s × 16 fps = 8 frames.")
@click.option("--sr", type=int, default=24000, help="Audio sample rate (Hz).")
@click.option("--audio-seconds", type=float, default=1.0, help="Audio window per moment, centred on the moment.")
@click.option("--stride", type=float, default=1.0, help="Seconds between consecutive samples of a video.")
@click.option("--moments-per-video", type=int, default=None,
              help="Instead of --stride, take this many evenly spaced samples per video.")
@click.option("--moments-per-sample", type=int, default=1,
              help="M consecutive moments per sample sharing one viewpoint bank (AVTS temporal negatives).")
@click.option("--moment-gap", type=float, default=1.0, help="Seconds between the M moments of one sample.")
@click.option("--viewpoints-per-moment", "-k", type=int, default=8,
              help="K viewpoints in each sample's bank; the trainer draws its V views from it.")
@click.option("--sampler", type=click.Choice(["random", "grid", "energy"]), default="random",
              help="random (the paper): uniform azimuth, elevation in ±30°, pairwise ≥ --min-separation; grid: K "
                   "azimuths; energy: like random, but centres favour the directions the sound comes from (75 % "
                   "drawn from the FOA's time-frequency energy map, 25 % uniform; docs/FORMAT.md).")
@click.option("--min-separation", type=float, default=MIN_SEPARATION_DEG,
              help="Minimum great-circle angle (degrees) between viewpoints of one bank (random and energy "
                   "samplers).")
@click.option("--hfov", nargs=2, type=float, default=HFOV_RANGE, help="Min and max horizontal field of view (degrees).")
@click.option("--crop-size", type=int, default=112, help="Crop side in pixels (square).")
@click.option("--jpeg-quality", type=int, default=90, help="JPEG quality of the crop clips.")
@click.option("--audio-bits", type=click.Choice(["16", "24"]), default="16",
              help="FLAC bit depth of the audio members (16 matches 16-bit/AAC sources; 24 for 24-bit masters).")
@click.option("--renders", default=",".join(fmt.RENDERS),
              help="Audio renders to precompute per viewpoint (subset of foa,mono,stereo); missing ones are "
                   "rendered on the fly by readers from the unrotated FOA.")
@click.option("--binaural", type=click.Choice(["virtual-mic", "hrir"]), default="virtual-mic",
              help="Stereo render: virtual cardioids at ±90°, or an HRIR decoder from --sofa.")
@click.option("--sofa", default=None, help="SOFA HRIR file for --binaural hrir, or 'default' for an installed set.")
@click.option("--labels", type=click.Choice(list(BACKENDS)), default="none",
              help="Pseudo-label backend for segmentation masks (docs/LABELS.md): synthetic (the synth truth "
                   "sidecar), precomputed (--label-dir), onnx (--model).")
@click.option("--labels-optional", is_flag=True,
              help="Write samples without masks (and say so in meta.json) when a video's labels are unusable.")
@click.option("--label-dir", default=None,
              help="precomputed: folder with one sub-folder of label PNGs per video id (ids or things/stuff layout).")
@click.option("--class-map", default=None,
              help="precomputed/onnx: class-map JSON (source ids → output classes), or a shipped one by name. "
                   "precomputed default: LABEL_DIR/classes.json, else coco_panoptic_to_avsa32.")
@click.option("--label-fps", type=float, default=None,
              help="precomputed: label frames per second where a video folder has no labels.json "
                   "(things/stuff layout default: 4).")
@click.option("--label-max-gap", type=float, default=None,
              help="precomputed: tolerated distance (s) to the nearest label frame (default: one frame interval).")
@click.option("--model", default=None, help="onnx: the semantic-segmentation model (.onnx).")
@click.option("--onnx-size", type=int, default=None,
              help="onnx: cube-face side in pixels (default: the model's fixed input size, else 512).")
@click.option("--onnx-mean", default=None, help="onnx: per-channel mean of RGB in [0,1] (default 0.485,0.456,0.406).")
@click.option("--onnx-std", default=None, help="onnx: per-channel std (default 0.229,0.224,0.225).")
@click.option("--onnx-output", type=click.Choice(["logits", "probs"]), default=None,
              help="onnx: the model outputs logits (softmax applied; default) or probabilities.")
@click.option("--onnx-layout", type=click.Choice(["nchw", "nhwc"]), default=None,
              help="onnx: tensor layout of the model's input and output (default nchw).")
@click.option("--onnx-fov", type=float, default=None,
              help="onnx: field of view of each cube face in degrees (default 90; more = overlapping faces).")
@click.option("--onnx-device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="onnx: execution provider (auto: CUDA when onnxruntime has it).")
@click.option("--onnx-threads", type=int, default=None, help="onnx: onnxruntime threads per worker (0 = its default).")
@click.option("--equirect-size", default=None, help="Decode the equirect at WIDTHxHEIGHT (default: native).")
@click.option("--keep-equirect", type=int, default=None,
              help="Also keep a low-res equirect centre frame of this width per moment.")
@click.option("--shard-size", default="256", help="Samples per shard (e.g. 256) or a size target (e.g. 500MB).")
@click.option("--seed", type=int, default=0, help="Seed; all randomness derives from (seed, video id, moment).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              help="local: a process pool on this machine; ray: one Ray task per video (pip install 'avsa[ray]').")
@click.option("--ray-address", default=None,
              help="With --engine ray: an existing cluster ('auto', 'ray://host:10001'); default starts a local one.")
@click.option("--workers", "-j", type=int, default=min(4, os.cpu_count() or 1), help="Parallel worker processes.")
@click.option("--max-av-mismatch", type=float, default=0.5, help="Tolerated audio/video duration mismatch (s).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output made with a different configuration.")
@click.option("--strict", is_flag=True, help="Exit non-zero if any video fails.")
@click.option("--keep-work", is_flag=True,
              help="Keep the per-video fragments in OUT/.work (with a URL --out: the staging folder) after the job.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def shard(src, out, list_file, ambi_format, fps, clip_seconds, sr, audio_seconds, stride, moments_per_video,
          moments_per_sample, moment_gap, viewpoints_per_moment, sampler, min_separation, hfov, crop_size,
          jpeg_quality, audio_bits, renders, binaural, sofa, labels, labels_optional, label_dir, class_map, label_fps,
          label_max_gap, model, onnx_size, onnx_mean, onnx_std, onnx_output, onnx_layout, onnx_fov, onnx_device,
          onnx_threads, equirect_size, keep_equirect, shard_size, seed, engine, ray_address, workers, max_av_mismatch,
          overwrite, strict, keep_work, quiet, staging):
    """Turn raw 360° videos into WebDataset shards of viewpoint banks (see docs/FORMAT.md).

    Each sample is one moment (or M moments) of one video with K viewpoints; per viewpoint: the NFOV crop
    clip, the rotated FOA, the mono and binaural renders, and (with --labels) segmentation + confidence masks.
    Resumable: rerun the same command after an interruption. Bad inputs go to OUT/failures.jsonl.
    """
    n_shard, mb = _shard_size(shard_size)
    if staging is not None and not isinstance(out, str):
        raise click.BadParameter("only applies when --out is a URL (s3://bucket/prefix)", param_hint="'--staging'")
    try:
        cfg = SampleConfig(
            fps=fps, clip_seconds=clip_seconds, sr=sr, audio_seconds=audio_seconds, stride=stride,
            moments_per_video=moments_per_video, moments_per_sample=moments_per_sample, moment_gap=moment_gap,
            viewpoints_per_moment=viewpoints_per_moment, sampler=sampler, hfov_min=hfov[0], hfov_max=hfov[1],
            min_separation=min_separation, crop_size=crop_size, jpeg_quality=jpeg_quality,
            audio_bits=int(audio_bits),
            renders=tuple(r.strip() for r in renders.split(",") if r.strip()), binaural=binaural, sofa=sofa,
            ambi_format=ambi_format, equirect_size=_size(equirect_size), keep_equirect=keep_equirect, seed=seed,
        )
        if binaural == "hrir":
            from avsa_data.binaural import resolve_sofa

            cfg = SampleConfig(**{**cfg.__dict__, "sofa": str(resolve_sofa(sofa or "default"))})
        label_options = _label_options(label_dir=label_dir, class_map=class_map, label_fps=label_fps,
                                       max_gap=label_max_gap, model=model, onnx_size=onnx_size, onnx_mean=onnx_mean,
                                       onnx_std=onnx_std, onnx_output=onnx_output, onnx_layout=onnx_layout,
                                       onnx_fov=onnx_fov, onnx_device=onnx_device, onnx_threads=onnx_threads)
        job = JobConfig(sample=cfg, labels=labels, label_options=label_options, labels_optional=labels_optional,
                        shard_size=n_shard, shard_mb=mb, max_av_mismatch=max_av_mismatch)
        report = run_shard_job(src, out, job, workers=workers, list_file=list_file, overwrite=overwrite,
                               keep_work=keep_work, progress=not quiet,
                               engine=engine, ray_address=ray_address, staging=staging)
    except (ShardJobError, ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    state = "up to date" if report.up_to_date else "done"
    click.echo(f"{state}: {report.samples} samples in {report.shards} shards from {report.ok}/{report.videos} "
               f"videos → {report.out}" + (f"; {report.failed} failed (see {report.out}/failures.jsonl)"
                                            if report.failed else ""))
    if report.ok == 0 or (strict and report.failed):
        sys.exit(1)
