"""avsa_data is torch-free: importing every one of its modules must not pull torch in."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import avsa_data


def test_avsa_data_never_imports_torch():
    mods = sorted(m.name for m in pkgutil.walk_packages(avsa_data.__path__, "avsa_data."))
    assert "avsa_data.geometry" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
