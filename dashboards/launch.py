"""Starting the dashboard: the ``streamlit run`` command line for a lab, and a blocking :func:`serve`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["app_path", "app_command", "serve"]


def app_path() -> Path:
    """The Streamlit script, ``dashboards/app.py``."""
    return Path(__file__).resolve().with_name("app.py")


def app_command(lab_dir: str | os.PathLike, *, port: int | None = None, address: str = "127.0.0.1",
                tracking_uri: str | None = None, refresh_s: float = 5.0, headless: bool = True,
                python: str | None = None) -> list[str]:
    """The command line that serves the dashboard of ``lab_dir``.

    Args:
        lab_dir: the lab directory (or its journal directory).
        port: TCP port (None: Streamlit's default, 8501).
        address: interface to listen on; loopback by default (the dashboard has no authentication).
        tracking_uri: MLflow store (None: the one the lab's journal names).
        refresh_s: seconds between automatic refreshes (0: never).
        headless: do not open a browser window.
        python: the interpreter (default: this one).

    Example: ``subprocess.run(app_command("labs/demo", port=8502))``, which is
    ``python -m streamlit run dashboards/app.py --server.address 127.0.0.1 --server.port 8502 ... -- --lab
    labs/demo --refresh-s 5``.
    """
    if refresh_s < 0:
        raise ValueError(f"app_command: refresh_s must be >= 0 s (0: never), got {refresh_s!r}")
    cmd = [python or sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.address", address,
           "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer", "--server.fileWatcherType", "none"]
    if port is not None:
        cmd += ["--server.port", str(int(port))]
    cmd += ["--", "--lab", str(Path(lab_dir).resolve()), "--refresh-s", f"{float(refresh_s):g}"]
    if tracking_uri:
        cmd += ["--tracking-uri", tracking_uri]
    return cmd


def serve(lab_dir: str | os.PathLike, **kwargs: object) -> int:
    """Serve the dashboard in the foreground until Ctrl-C; returns Streamlit's exit status. ``kwargs`` are
    :func:`app_command`'s."""
    try:
        return subprocess.call(app_command(lab_dir, **kwargs))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 0
