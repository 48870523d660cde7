"""avsa_data is torch-free: importing every one of its modules must not pull torch in."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import avsa_data


def run_fresh(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit cleanly after printing ``ok``."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def assert_imports_without_torch(modules: list[str]) -> None:
    """Import ``modules`` in a fresh interpreter and fail if torch came with them."""
    run_fresh(
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "print('ok', len(sys.modules))\n"
    )


def test_avsa_data_never_imports_torch():
    mods = sorted(m.name for m in pkgutil.walk_packages(avsa_data.__path__, "avsa_data."))
    assert "avsa_data.geometry" in mods
    assert_imports_without_torch(mods)


def test_avsa_data_does_not_drive_training():
    """Data flows one way (raw → avsa_data → shards → avsa_train): no avsa_data module imports avsa_train or
    launches its commands (the demo orchestrator and its command live in avsa_train: avsa_train/demo.py,
    avsa_train/cli/demo.py, which `avsa-data demo` names lazily)."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(avsa_data.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and node.value in ("avsa_train", "avsa-train", "avsa_train"):
                offenders.append(f"{path.name}:{node.lineno} {node.value!r}")
            offenders += [f"{path.name}:{node.lineno} import {n}" for n in names if n.split(".")[0] == "avsa_train"]
    assert not offenders, offenders


def test_avsa_data_demo_command_imports_without_torch():
    """`avsa-data demo` loads its orchestrator without torch, so a missing [train] extra is one clear line."""
    assert_imports_without_torch(["avsa_train.cli.demo", "avsa_train.demo"])


def test_default_shard_job_does_not_import_scipy():
    """Importing scipy.fft costs a shard job ~0.3 CPU-s (issue 17): virtual-mic stereo (the default, stored with
    ``--renders stereo``) must be rendered and described without it; HRIR renders import it where they need it."""
    run_fresh(
        "import sys\n"
        "import numpy as np\n"
        "import avsa_data.cli.shard, avsa_data.shards\n"
        "from avsa_data.samples import SampleConfig, render_audio\n"
        "from avsa_data.viewpoints import Viewpoint\n"
        "cfg = SampleConfig()\n"
        "cfg.binaural_meta()\n"
        "out = render_audio(np.ones((4, 240), np.float32), Viewpoint(30.0, 10.0, 90.0, 90.0),\n"
        "                   SampleConfig(renders=('stereo',)))\n"
        "assert out['stereo'].shape == (2, 240), out\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] == 'scipy')\n"
        "assert not bad, bad[:5]\n"
        "print('ok')\n"
    )
