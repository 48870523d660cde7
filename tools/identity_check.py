"""Did a restructuring change any output? Record the outputs of two revisions and compare them.

    python tools/identity_check.py --base main --head HEAD        # both sides, then compare (exit 1 on a change)
    python tools/identity_check.py record --rev REV --out a.json  # one side
    python tools/identity_check.py compare a.json b.json

``record`` checks REV out into a temporary detached worktree and runs a fixed, small pipeline with that tree on
``PYTHONPATH`` (``python -m avsa_data …`` / ``python -m avsa_train …``, so the tree under test is what runs):

* ``synth`` (6 videos × 2 s, 256×128, 2 held out, STARSS23 layout, seed 3);
* ``shard`` with ``-j 1``, ``-j 2`` and ``-j 2 --sampler energy`` (``--labels synthetic``, seed 0): every file's
  sha256 (shards, ``manifest.json`` with the job's config hash, ``config.json``, ``failures.jsonl``);
* ``pretrain`` AVC 3 steps, then AVSA 3 steps from it (width ×0.125, batch 4, CPU, seed 0): the loss and metrics
  of every step (``metrics.jsonl``) and every checkpoint tensor (``torch.load(weights_only=True)``);
* ``eval avc``, ``eval avsa``, ``probe`` and ``segment`` of the AVSA checkpoint (one epoch, tiny): their JSON
  and per-item JSONL outputs.

Volatile fields (:data:`VOLATILE_KEYS`, :data:`VOLATILE_SUFFIXES`: wall and CPU times, dates, absolute
paths) are dropped before hashing; nothing else is. ``ablate`` is not run (its cells are these same commands).
About 3 minutes a side on 2 cores.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: JSON keys whose values differ between two runs of the same tree (found by recording one revision twice):
#: times, dates, where the run lived, which process and which package version wrote it.
VOLATILE_KEYS: frozenset[str] = frozenset({"time", "samples_per_s"})
VOLATILE_SUFFIXES: tuple[str, ...] = ("_seconds", "wall_s", "mtime_ns")


def volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or key.endswith(VOLATILE_SUFFIXES)


def normalise(x):
    """``x`` with the volatile keys of every nested dict removed."""
    if isinstance(x, dict):
        return {k: normalise(v) for k, v in sorted(x.items()) if not volatile(k)}
    if isinstance(x, list):
        return [normalise(v) for v in x]
    return x


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict:
    """sha256 of a file; for JSON / JSONL, of its normalised content, which is also kept (for the diff)."""
    if path.suffix == ".json":
        content = normalise(json.loads(path.read_text()))
        return {"sha256": digest(json.dumps(content, sort_keys=True).encode()), "json": content}
    if path.suffix == ".jsonl":
        rows = [normalise(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
        return {"sha256": digest(json.dumps(rows, sort_keys=True).encode()), "json": rows}
    return {"sha256": digest(path.read_bytes())}


def checkpoint_entries(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    out = {}

    def walk(prefix: str, x) -> None:
        if isinstance(x, torch.Tensor):
            out[prefix] = {"sha256": digest(x.detach().cpu().contiguous().numpy().tobytes()),
                           "dtype": str(x.dtype), "shape": list(x.shape)}
        elif isinstance(x, dict):
            for k, v in x.items():
                if not volatile(str(k)):
                    walk(f"{prefix}.{k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(f"{prefix}[{i}]", v)
        else:
            out[prefix] = {"value": repr(x)}

    walk(path.name, state)
    return out


def pipeline(tree: Path, work: Path, echo=print) -> dict[str, dict]:
    """Run the fixed pipeline with ``tree`` on ``PYTHONPATH`` into ``work``; return name → entry."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}

    def run(name: str, *args: str) -> None:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", *args], env=env, cwd=work, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"identity_check: step {name} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
        echo(f"  {name}: {time.time() - t0:.1f} s")

    raw = work / "raw"
    run("synth", "avsa_data", "synth", "--out", str(raw), "--videos", "6", "--duration", "2", "--size", "256x128",
        "--val-fraction", "0.34", "--seed", "3", "--layout", "starss23", "-q")
    entries: dict[str, dict] = {}
    for name, extra in (("j1", ["-j", "1"]), ("j2", ["-j", "2"]), ("energy", ["-j", "2", "--sampler", "energy"])):
        out = work / f"shards-{name}"
        run(f"shard {name}", "avsa_data", "shard", "--src", str(raw), "--out", str(out), "--labels", "synthetic",
            "--seed", "0", "-q", *extra)
        for p in sorted(out.rglob("*")):
            if p.is_file() and p.name != ".lock":
                entries[f"shards-{name}/{p.relative_to(out)}"] = (
                    file_entry(p) if p.suffix == ".json" else {"sha256": digest(p.read_bytes())})
    shards = str(work / "shards-j2")
    pre = ["--shards", shards, "--width", "0.125", "--batch-size", "4", "--workers", "0", "--device", "cpu",
           "--seed", "0", "--quiet"]
    run("pretrain avc", "avsa_train", "pretrain", "--task", "avc", "--out", str(work / "avc"), "--max-steps", "3", *pre)
    run("pretrain avsa", "avsa_train", "pretrain", "--task", "avsa", "--out", str(work / "avsa"), "--max-steps", "3",
        "--viewpoints", "4", "--init", str(work / "avc" / "checkpoint.pt"), *pre)
    ckpt = str(work / "avsa" / "checkpoint.pt")
    common = ["--ckpt", ckpt, "--shards", shards, "--workers", "0", "--device", "cpu", "--seed", "0", "--quiet",
              "--eval-split", "test"]
    for task in ("avc", "avsa"):
        run(f"eval {task}", "avsa_train", "eval", task, *common, "--out", str(work / "eval"), "--epochs", "1",
            "--test-draws", "1")
    run("probe", "avsa_train", "probe", *common, "--out", str(work / "eval"))
    run("segment", "avsa_train", "segment", *common, "--out", str(work / "eval"), "--epochs", "1",
        "--milestones", "1", "--batch-size", "4")
    for run_dir in ("avc", "avsa"):
        entries[f"{run_dir}/metrics.jsonl"] = file_entry(work / run_dir / "metrics.jsonl")
        for k, v in checkpoint_entries(work / run_dir / "checkpoint.pt").items():
            entries[f"{run_dir}/{k}"] = v
    for p in sorted((work / "eval").rglob("*")):
        if p.is_file() and p.suffix in (".json", ".jsonl") and not p.name.startswith("."):
            entries[f"eval/{p.relative_to(work / 'eval')}"] = file_entry(p)
    return entries


#: The work folder of a record. Shards record their source paths, so both sides of a comparison must use the same.
WORK = Path(tempfile.gettempdir()) / "avsa-identity-work"


def record(rev: str, out: Path, repo: Path = REPO, echo=print, work: Path = WORK) -> dict:
    """Record the outputs of ``rev`` into ``out`` (JSON), working in ``work`` (emptied first). Another record
    in the same ``work`` waits for this one (a lock beside it), instead of emptying it under its feet."""
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp, open(f"{work}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"waiting for another identity check working in {work} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        tree = Path(tmp) / "tree"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-q", str(tree), sha], check=True)
        try:
            echo(f"record {rev} ({sha[:10]}):")
            entries = pipeline(tree, work, echo)
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=False)
    result = {"rev": rev, "commit": sha, "entries": entries}
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def compare(a: dict, b: dict, echo=print) -> int:
    """Print every output that differs between two records; 0 when none does, else 1."""
    ea, eb = a["entries"], b["entries"]
    differ = 0
    for name in sorted(set(ea) | set(eb)):
        x, y = ea.get(name), eb.get(name)
        if x is None or y is None:
            echo(f"only in {'base' if y is None else 'head'}: {name}")
            differ += 1
        elif x.get("sha256") != y.get("sha256") or x.get("value") != y.get("value"):
            differ += 1
            echo(f"differs: {name}{first_difference(x.get('json'), y.get('json'))}")
    echo(f"{len(set(ea) | set(eb))} outputs compared ({a['commit'][:10]} → {b['commit'][:10]}): "
         + ("identical" if not differ else f"{differ} differ"))
    return 1 if differ else 0


def first_difference(x, y, where: str = "") -> str:
    if x is None or y is None or x == y:
        return ""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                return first_difference(x.get(k), y.get(k), f"{where}.{k}") or f" at {where}.{k}"
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            if u != v:
                return first_difference(u, v, f"{where}[{i}]") or f" at {where}[{i}]"
    return f" at {where or '/'}: {json.dumps(x)[:80]} → {json.dumps(y)[:80]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/identity_check.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="revision before the change")
    ap.add_argument("--head", help="revision after it")
    ap.add_argument("--keep", type=Path, help="folder for the two records (default: a temporary one)")
    ap.add_argument("--work", type=Path, default=WORK,
                    help=f"work folder of the pipeline, the same for both sides (default: {WORK})")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("record", help="record one revision's outputs")
    r.add_argument("--rev", required=True)
    r.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="compare two records")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "record":
        record(args.rev, args.out, work=args.work)
        return 0
    if args.cmd == "compare":
        return compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()))
    if not (args.base and args.head):
        ap.error("give --base and --head, or a subcommand (record, compare)")
    keep = args.keep or Path(tempfile.mkdtemp(prefix="identity-records-"))
    keep.mkdir(parents=True, exist_ok=True)
    a = record(args.base, keep / "base.json", work=args.work)
    b = record(args.head, keep / "head.json", work=args.work)
    print(f"records: {keep}")
    return compare(a, b)


if __name__ == "__main__":
    sys.exit(main())
