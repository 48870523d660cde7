"""Helpers shared by the benchmark scripts (not a benchmark itself): CPU clocks and a description of the machine."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished children (ffmpeg, ``avsa-data``)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + r.ru_utime + r.ru_stime


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def mem_gib() -> float | None:
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    except (OSError, StopIteration):
        return None
    return round(kb / 2**20, 1)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """Platform, CPU model, CPUs, memory, and the load average when called (the machine may be shared)."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "mem_GiB": mem_gib(), "load_average_at_start": load_average()}


def add_synth_options(ap: argparse.ArgumentParser) -> None:
    """The options of the synthetic dataset a benchmark makes with ``avsa-data synth`` (same defaults in every
    benchmark that times the data path: 4 videos × 10 s at 1920×960)."""
    ap.add_argument("--videos", type=int, default=4, help="synthetic videos to make")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per synthetic video")
    ap.add_argument("--size", default="1920x960", help="equirectangular frame size WxH (pixels)")


def run_cli(args: list[str]) -> None:
    """Run ``python -m avsa_data …`` / ``avsa_train …`` as a user would (the command echoed first)."""
    print("+", " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def synth_shards(work: Path, synth_args: list[str], shard_args: list[str]) -> Path:
    """``WORK/shards`` from ``avsa-data synth --out WORK/raw SYNTH_ARGS`` and ``avsa-data shard --src WORK/raw
    --out WORK/shards SHARD_ARGS``; kept between runs (nothing is built when its manifest exists)."""
    raw, shards = work / "raw", work / "shards"
    if not (shards / "manifest.json").is_file():
        run_cli(["avsa_data", "synth", "--out", str(raw), *synth_args])
        run_cli(["avsa_data", "shard", "--src", str(raw), "--out", str(shards), *shard_args])
    return shards
