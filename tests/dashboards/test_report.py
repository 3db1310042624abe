"""The static HTML report: self-contained, every figure present and a real PNG, logged to the parent run."""
from __future__ import annotations

import base64
import io
import re

import pytest
from labsim import JournalWriter
from PIL import Image

from dashboards import report
from shaping import journal

FIGURE = re.compile(r"<figure id='fig-([^']+)' data-figure='[^']+'><img alt='[^']+' "
                    r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


@pytest.fixture(scope="module")
def written(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sub" / "lab-report.html"
    path = report.write_report(lab["lab"], out)
    return path, path.read_text(encoding="utf-8")


def expected_figures(lab) -> set[str]:
    """What the report must hold, from the journal and the weights folder (not from the report code): a
    psychometric figure per stated span, i.e. per graduation and completion here (labsim's agents all finish)."""
    events = journal.load_events(lab["lab"] / "journal")
    names = {"lab-accuracy", "compare"}
    for agent in lab["agents"]:
        e = events[events["agent"] == agent]
        spans = int(e["event"].isin(["graduated", "complete"]).sum())
        names |= {f"{agent}-timeline", f"{agent}-curves", f"{agent}-eigenspectrum", f"{agent}-connectivity-across"}
        names |= {f"{agent}-psychometric-{i}" for i in range(spans)}
        names |= {f"{agent}-wrec-{p.stem[len(agent) + 1:] or 'final'}" for p in lab["weights"][agent]}
    return names


def test_every_figure_is_an_embedded_png(lab, written):
    path, html = written
    assert path.name == "lab-report.html" and path.is_file()
    found = dict(FIGURE.findall(html))
    assert set(found) == expected_figures(lab)
    for name, data in found.items():
        png = base64.b64decode(data)
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
            assert im.size[0] > 200 and im.size[1] > 100, name
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained


def test_figure_list_and_tables(lab, written):
    _, html = written
    built = report.build_report(lab["lab"])
    assert set(built.figures) == expected_figures(lab)
    for name in built.tables:
        assert f'id="table-{name}"' in html
    assert {"agents", "graduation-summary", "mlflow-runs"} <= set(built.tables)
    for agent in lab["agents"]:
        assert f"Agent {agent}" in html


def test_numbers_in_the_report_are_the_journal_ones(lab, written):
    _, html = written
    trials = journal.load(lab["lab"] / "journal")
    table = html[html.index('id="table-agents"'):]
    table = table[:table.index("</table>")]
    for agent, n in trials.groupby("agent").size().items():
        row = table[table.index(f"<td>{agent}</td>"):]
        row = row[:row.index("</tr>")]
        assert f"<td>{n}</td>" in row


def test_logged_to_the_parent_run(lab, tmp_path):
    from mlflow import MlflowClient

    path = report.write_report(lab["lab"], tmp_path / "report.html", log_to_mlflow=True)
    client = MlflowClient(tracking_uri=lab["tracking_uri"])
    names = [f.path for f in client.list_artifacts(lab["parent_run_id"], "report")]
    assert names == ["report/report.html"]
    local = client.download_artifacts(lab["parent_run_id"], "report/report.html", str(tmp_path / "dl"))
    assert open(local, encoding="utf-8").read() == path.read_text(encoding="utf-8")


def test_report_of_a_lab_that_just_started(tmp_path):
    w = JournalWriter(tmp_path)
    w.hello()
    try:
        path = report.write_report(tmp_path, log_to_mlflow=True)  # no parent run: a warning, no failure
    finally:
        w.close()
    html = path.read_text(encoding="utf-8")
    assert path == tmp_path / "report.html"
    assert "no scored batch yet" in html and {"lab-accuracy", "compare"} <= set(dict(FIGURE.findall(html)))


def _save_tau_file(path, tau_ms, dt, n=12):
    """A weight file as a train_tau network saves it: per-unit ``tau`` (ms) and ``dt`` in the config (without
    ``tau_ms``, as any other network saves it)."""
    import numpy as np

    from shaping.weights import save_weights

    rng = np.random.default_rng(0)
    arrays = {"W_in": rng.normal(size=(n, 2)), "W_rec": rng.normal(size=(n, n)), "W_out": rng.normal(size=(2, n)),
              "b_rec": np.zeros(n), "b_out": np.zeros(2), "init_state": np.zeros((1, n))}
    if tau_ms is not None:
        arrays["tau"] = np.asarray(tau_ms, dtype=np.float32)
    return save_weights(path, arrays, {"config": {"N_rec": n, "dt": dt, "train_tau": tau_ms is not None}})


def test_a_tau_figure_per_snapshot_that_holds_tau(tmp_path):
    import numpy as np

    w = JournalWriter(tmp_path)
    w.hello()
    w.scored()
    w.close()
    (tmp_path / "weights").mkdir()
    taus = {"a1_stage0_easy_trial16": np.linspace(10, 20, 12), "a1": np.linspace(10, 80, 12)}
    for stem, tau in taus.items():
        _save_tau_file(tmp_path / "weights" / f"{stem}.npz", tau, dt=10.0)
    _save_tau_file(tmp_path / "weights" / "a1_stage1_mid_trial32.npz", None, dt=10.0)
    built = report.build_report(tmp_path)
    assert {"a1-tau-stage0_easy_trial16", "a1-tau-final"} <= set(built.figures)
    # a file without tau: its W_rec, no tau figure
    assert "a1-wrec-stage1_mid_trial32" in built.figures and "a1-tau-stage1_mid_trial32" not in built.figures
    html = report.render_html(built)
    pngs = dict(FIGURE.findall(html))
    with Image.open(io.BytesIO(base64.b64decode(pngs["a1-tau-final"]))) as im:
        assert im.size[0] > 100
