"""Pre-training throughput: the shard loader alone, the model step alone, and the full training step, in one run.

    python benchmarks/train_step.py [--shards shards/] [--task avsa --width 0.25 --batch-size 4 --workers 2]

Three measurements of the same configuration (samples per second; a sample is one item of V viewpoints):

* **loader**: batches from ``avsa_train.data`` (DataLoader with ``--workers`` worker processes, worker-side
  batching, pinned memory on CUDA): read, pick V of the K bank views, decode JPEG clips and FLAC renders,
  augment, collate;
* **model step**: forward (spectrograms on the device, encoders, translator), loss, backward and Adam on one
  batch held in memory — the compute alone;
* **full step**: the training loop's step fed by the loader (``avsa_train.pretrain.train_step`` and
  ``avsa_train.fit.optimizer_step``, the functions ``avsa-train pretrain`` runs), with the
  fraction of wall time spent waiting for data.

The ratios say whether the loader keeps the device fed: ``loader / model step`` > 1 means it can, and the
full step then runs at the model step's speed (``full / model step`` ≈ 1, data wait ≈ 0). On CUDA the script
also reports GPU utilisation (``torch.cuda.utilization``, needs pynvml) and peak memory; without CUDA it says so.
Without ``--shards`` it builds a small synthetic shard set first (``avsa-data synth`` + ``avsa-data shard``).

Writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from avsa_data.options import DEVICES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import synth_shards  # noqa: E402


def make_shards(work: Path) -> Path:
    return synth_shards(
        work,
        ["--videos", "4", "--duration", "6", "--size", "512x256", "--val-fraction", "0"],
        ["--shard-size", "4", "-q", "-j", str(os.cpu_count() or 1)],
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class UtilisationSampler:
    """``torch.cuda.utilization`` (NVML) every ``every`` seconds in a background thread until :meth:`stop`."""

    def __init__(self, device: torch.device, every: float = 0.2):
        self.device, self.every, self.values = device, every, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.values.append(torch.cuda.utilization(self.device))
            except Exception:  # noqa: BLE001 - pynvml missing or unsupported
                return

    def stop(self) -> list[int]:
        self._done.set()
        self._thread.join()
        return self.values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, default=None, help="shard folder (default: build a small synthetic one)")
    ap.add_argument("--work", type=Path, default=None, help="where to build the synthetic shards")
    ap.add_argument("--task", default="avsa", choices=["avc", "avsa"])
    ap.add_argument("--width", type=float, default=None, help="encoder width (default: 1.0 on CUDA, 0.25 on CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: Table 2 on CUDA, 4 on CPU")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: as avsa-train)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps / batches per measurement")
    ap.add_argument("--full-warmup", type=int, default=None,
                    help="untimed full steps before the timed ones (default: workers × 4, the batches the "
                    "DataLoader's workers make ahead: while they fill that queue they compete with the training "
                    "process for the CPU, which an H200 run showed as a slower full step at 12 workers)")
    ap.add_argument("--device", default="auto", choices=DEVICES)
    args = ap.parse_args()

    from avsa_train import distributed as D
    from avsa_train.config import resolve
    from avsa_train.data.batches import ShardStream, auto_workers, make_loader
    from avsa_train.data.sources import expand_urls, shard_sizes, split_urls
    from avsa_train.fit import optimizer_step
    from avsa_train.pretrain import build_model, negatives_at, set_cpu_threads, stream_config, train_step

    device = D.device_for(args.device)
    cuda = device.type == "cuda"
    shards = args.shards or make_shards(args.work or Path(tempfile.mkdtemp(prefix="avsa-train-step-")))
    opts = {"shards": str(shards), "device": device.type, "quiet": True}
    if args.width is not None or not cuda:
        opts["width"] = args.width if args.width is not None else 0.25
    if args.batch_size is not None or not cuda:
        opts["batch_size"] = args.batch_size if args.batch_size is not None else 4
    opts["workers"] = args.workers if args.workers is not None else auto_workers()
    cfg = resolve(args.task, None, opts)
    urls = split_urls(expand_urls(cfg.shards), "train")
    scfg = stream_config(cfg, device)  # on CUDA: uint8 clips normalised on the device, as avsa-train does
    n = args.steps
    if cuda:
        torch.backends.cudnn.benchmark = not cfg.deterministic  # as avsa-train pretrain does
    else:
        set_cpu_threads(cfg.workers)  # as avsa-train pretrain does

    def loader():
        return make_loader(
            ShardStream(urls, scfg, sizes=shard_sizes(cfg.shards)), num_workers=cfg.workers, seed=cfg.seed
        )

    # 1. the loader alone (the first batch, which pays for the worker start-up, is not timed)
    it = iter(loader())
    first = next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    loader_sps = n * cfg.batch_size / (time.perf_counter() - t0)
    del it

    # 2. the model step alone, on a batch in device memory
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if cuda and cfg.amp else None
    negatives = negatives_at(cfg, 10**6)

    def step(batch: dict) -> float:
        """The training step of ``avsa-train pretrain``: its step function, then the optimiser step of ``fit``."""
        out = train_step(model, batch, cfg, negatives, device, scaler is not None)
        optimizer_step(out.loss, opt, scaler)
        return float(out.loss.detach())

    held = {k: first[k].to(device) for k in ("video", "audio", "colour") if k in first}
    step(held)  # warm-up (cuDNN autotuning, allocator)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step(held)
    _sync(device)
    model_sps = n * cfg.batch_size / (time.perf_counter() - t0)

    # 3. the full step, fed by the loader (GPU utilisation sampled by a thread, outside the timed loop: an NVML
    #    query inside it costs tens of ms in some virtual machines and slowed the step it measured)
    it = iter(loader())
    warm = args.full_warmup if args.full_warmup is not None else 4 * cfg.workers
    for _ in range(max(1, warm)):
        step(next(it))
    wait = 0.0
    _sync(device)
    sampler = UtilisationSampler(device) if cuda else None
    t0 = time.perf_counter()
    for _ in range(n):
        tw = time.perf_counter()
        b = next(it)
        wait += time.perf_counter() - tw
        step(b)
    _sync(device)
    total = time.perf_counter() - t0
    util = sampler.stop() if sampler is not None else []
    full_sps = n * cfg.batch_size / total
    del it

    result = {
        "benchmark": "train_step",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "device": str(device) if not cuda else torch.cuda.get_device_name(device),
        "config": {
            "task": cfg.task,
            "width": cfg.width,
            "batch_size": cfg.batch_size,
            "viewpoints": cfg.viewpoints,
            "audio_format": cfg.audio_format,
            "workers": cfg.workers,
            "steps": n,
            "full_warmup_steps": max(1, warm),
            "amp": bool(scaler),
            "shards": str(shards),
        },
        "samples_per_s": {
            "loader": round(loader_sps, 2),
            "model_step": round(model_sps, 2),
            "full_step": round(full_sps, 2),
        },
        "ratios": {
            "loader_over_model_step": round(loader_sps / model_sps, 2),
            "full_over_model_step": round(full_sps / model_sps, 2),
            "full_over_loader": round(full_sps / loader_sps, 2),
        },
        "data_wait_fraction": round(wait / total, 3),
    }
    if cuda:
        result["gpu"] = {
            "utilisation_percent_mean": round(sum(util) / len(util), 1) if util else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        }
    else:
        result["gpu"] = None
        result["note"] = "no CUDA device here: CPU timings only, GPU utilisation not measured"
    out = HERE / "results" / "train_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    sps = result["samples_per_s"]
    print(
        f"device: {result['device']}; {cfg.task}, width {cfg.width}, batch {cfg.batch_size} × "
        f"{cfg.viewpoints} views, {cfg.workers} workers"
    )
    for k in ("loader", "model_step", "full_step"):
        print(f"  {k:12} {sps[k]:9.2f} samples/s")
    r = result["ratios"]
    print(
        f"  loader / model step {r['loader_over_model_step']}×, full / model step {r['full_over_model_step']}×, "
        f"data wait {100 * result['data_wait_fraction']:.0f} % of the full step"
    )
    print(result.get("note") or f"  GPU utilisation {result['gpu']['utilisation_percent_mean']} %")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
