"""The task server side never imports TensorFlow: every module under shaping/ imports without it."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import shaping


def shaping_modules() -> list[str]:
    """Every module and package under shaping/, found with pkgutil (so new modules are covered too)."""
    return ["shaping"] + sorted(m.name for m in pkgutil.walk_packages(shaping.__path__, prefix="shaping."))


def test_no_module_under_shaping_imports_tensorflow():
    modules = shaping_modules()
    assert "shaping.tasks" in modules and "shaping.tasks.check" in modules
    script = (
        "import importlib, json, sys\n"
        f"failed = {{}}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed[name] = f'{type(err).__name__}: {err}'\n"
        "print(json.dumps({'failed': failed, 'tensorflow': sorted(m for m in sys.modules\n"
        "                  if m == 'tensorflow' or m.startswith('tensorflow.'))[:5]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert not report["failed"], f"modules failed to import: {report['failed']}"
    assert not report["tensorflow"], f"importing shaping pulled in TensorFlow: {report['tensorflow']}"
