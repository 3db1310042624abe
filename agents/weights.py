"""Weight files: the format is :mod:`shaping.weights` (NumPy only, shared with the dashboards); re-exported here
for the agents and for scripts written against ``agents.weights``."""
from shaping.weights import (  # noqa: F401
                             FORMAT_VERSION,
                             META_KEY,
                             load_weights,
                             package_version,
                             parse_snapshot_tag,
                             read_npz,
                             resolve,
                             save_weights,
                             snapshot_tag,
                             write_npz,
)
