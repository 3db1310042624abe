"""Dashboards: a shaping-specific view of a lab, live while it trains and afterwards.

- :mod:`dashboards.data`: journal, status file, weight files and MLflow runs -> pandas tables (no Streamlit).
- :mod:`dashboards.figures`: the figures :mod:`shaping.figures` does not have (comparison, connectivity across
  snapshots, the lab's accuracy curves).
- :mod:`dashboards.app`: the Streamlit app; :mod:`dashboards.launch`: its command line (``app_command``,
  ``serve``).
- :mod:`dashboards.report`: the static HTML report (``write_report``).

Everything here reads; nothing writes the journal, and only :func:`dashboards.report.write_report` with
``log_to_mlflow=True`` writes to the MLflow store (the report, as an artifact of the lab's parent run).
"""
