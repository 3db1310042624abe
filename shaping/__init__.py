"""skinnerbox's task side: tasks, shaping policies, the wire protocol, the task server and its journal.

NumPy, pandas, pyzmq and MLflow only: ``shaping`` never imports TensorFlow (the agents live in ``agents``), so
a task server host, a dashboard or a user defining tasks needs no deep-learning stack.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skinnerbox")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
