"""``python -m agents``: one agent process (see :mod:`agents.agent`); what ``skinnerbox lab`` starts."""
import sys

# An agent process never reads or writes parquet: keep pandas from importing pyarrow eagerly (about 40 MB
# of resident memory per agent process, which matters when dozens share a machine).
sys.modules.setdefault("pyarrow", None)

from agents.agent import main  # noqa: E402

raise SystemExit(main())
