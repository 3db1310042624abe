"""``skinnerbox lab`` with ``launcher = "slurm"`` where SLURM is missing: one clear line, exit 2, nothing started.
Runs everywhere (it needs no SLURM: it removes it from PATH)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAB = """
[lab]
name = "nosl"
launcher = "slurm"
tracking_uri = "none"
[task]
name = "PerceptualDiscrimination"
T = 500
[curricula.fixed]
kind = "fixed"
[[agents]]
name = "a"
"""


def test_no_sbatch_on_path_is_one_line_and_starts_nothing(tmp_path):
    (tmp_path / "nosl.toml").write_text(LAB)
    done = subprocess.run([sys.executable, "-m", "shaping.cli", "lab", "nosl.toml", "--workdir", "lab",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert "needs SLURM's sbatch" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "lab" / "journal").exists()  # refused before the server or any job started
