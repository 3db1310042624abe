"""Sweeps in the report and the dashboard, on a real swept lab (labsim.SWEEP_LAB: one [agents.sweep] of 2
curricula x 2 noise floors x 2 seeds, and one agent outside it; the lab.json is the real expansion): the Sweep
section and view show trials to criterion by factor with the journal's numbers, and the factor filters the views.
Expected numbers come from the journal's events (labsim.expected_sweep), without shaping.readout or dashboards.data."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from labsim import expected_sweep
from PIL import Image
from test_app import run_app, tab

from dashboards import data as lab_data
from dashboards import report
from shaping import figures, journal

FIGURE = re.compile(r"<figure id='fig-([^']+)' data-figure='[^']+'><img alt='[^']+' "
                    r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


class _Cells(HTMLParser):
    """The header and body cells of the first table fed to it, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.done = False

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and not self.done:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.done = True

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def html_table(html: str, name: str) -> list[dict[str, str]]:
    """The rows of the report's table ``name``: column -> the cell's text."""
    parser = _Cells()
    parser.feed(html[html.index(f'id="table-{name}"') - 40:])
    header, *rows = parser.rows
    return [dict(zip(header, r)) for r in rows]


def number(text: str) -> float:
    return float(text) if text else float("nan")


@pytest.fixture(scope="module")
def written(sweep_lab):
    path = report.write_report(sweep_lab["lab"])
    return path.read_text(encoding="utf-8")


def test_the_lab_is_a_sweep_with_agents_on_both_sides_of_criterion(sweep_lab):
    want = expected_sweep(sweep_lab)
    assert len(sweep_lab["factors"]) == 8 and "solo" not in sweep_lab["factors"]
    assert want[("sd_min", "30.0")]["reached"] == 0 and want[("sd_min", "0.06")]["reached"] >= 2


def test_the_report_has_a_sweep_section_with_the_journal_numbers(sweep_lab, written):
    assert "<h2>Sweep</h2>" in written
    assert written.index("<h2>Sweep</h2>") < written.index("<h2>Comparison across conditions</h2>")
    table = html_table(written, "sweep")
    assert list(table[0]) == ["factor", "value", "agents", "reached", "median", "q1", "q3"]
    want = expected_sweep(sweep_lab)
    got = {(r["factor"], r["value"]): r for r in table}
    assert set(got) == set(want)  # solo (no factors) is in no group
    for group, w in want.items():
        r = got[group]
        assert (int(r["agents"]), int(r["reached"])) == (w["agents"], w["reached"]), group
        for k in ("median", "q1", "q3"):  # written to 4 significant digits
            got_k = number(r[k])
            assert (np.isnan(got_k) and np.isnan(w[k])) or got_k == pytest.approx(w[k], rel=1e-3), (group, k)
    agents = html_table(written, "sweep-agents")
    assert sorted(r["agent"] for r in agents) == sorted(sweep_lab["factors"])


def test_the_report_draws_the_sweep_figure(written):
    found = dict(FIGURE.findall(written))
    assert "sweep" in found
    with Image.open(io.BytesIO(base64.b64decode(found["sweep"]))) as im:
        im.verify()
        assert im.size[0] > 600 and im.size[1] > 200


def test_a_lab_without_sweeps_has_no_sweep_section(lab):
    built = report.build_report(lab["lab"])
    assert "Sweep" not in [h for h, _ in built.sections] and "sweep" not in built.figures


def test_the_sweep_figure_marks_each_agent_that_did_not_reach_criterion(sweep_lab):
    sweep = lab_data.sweep_of(lab_data.read_lab(sweep_lab["lab"]), lab_data.read_lab_config(sweep_lab["lab"]))
    fig = figures.sweep_trials(sweep.summary, sweep.factors, sweep.table)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["curriculum", "sd_min", "seed"]
    want = expected_sweep(sweep_lab)
    events = journal.load_events(sweep_lab["lab"] / "journal")
    done = set(events[events["event"] == "complete"]["agent"])
    for ax in panels:
        marks = {}
        for coll in ax.collections:
            kind, _, agent = (coll.get_gid() or "").partition(":")
            if kind:
                marks[agent] = (kind, coll.get_facecolors()[:, 3].max(initial=0.0) > 0)  # filled or open
        assert marks == {a: ("reached", True) if a in done else ("not-reached", False) for a in sweep_lab["factors"]}
        y = {c.get_gid(): c.get_offsets()[0, 1] for c in ax.collections if c.get_gid()}
        hits = [v for g, v in y.items() if g.startswith("reached:")]
        misses = [v for g, v in y.items() if g.startswith("not-reached:")]
        assert min(misses) > max(hits) and ax.get_ylim()[1] > max(misses)  # a band above every agent that did
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == [f"{v}\n{w['reached']}/{w['agents']}" for (k, v), w in want.items() if k == ax.get_title()]


def test_filter_agents_by_a_factor(sweep_lab):
    agents = sweep_lab["agents"]
    factors = sweep_lab["factors"]
    easy = lab_data.filter_agents(agents, factors, "curriculum", ["easy"])
    assert easy == [a for a in agents if a in factors and factors[a]["curriculum"] == "easy"] and len(easy) == 4
    assert lab_data.filter_agents(agents, factors, "sd_min", ["30.0", "0.06"]) == [a for a in agents if a in factors]
    assert lab_data.filter_agents(agents, factors, None, None) == agents


def test_the_dashboard_has_a_sweep_tab_with_the_table(sweep_lab):
    at = run_app(sweep_lab["lab"])
    assert [t.label for t in at.tabs] == ["Status", "Agent", "Compare", "Sweep", "Psychometrics", "Connectivity",
                                          "MLflow"]
    view = tab(at, "Sweep")
    assert view.image
    table = view.dataframe[0].value
    want = expected_sweep(sweep_lab)
    got = {(r["factor"], r["value"]): (r["agents"], r["reached"]) for r in table.to_dict("records")}
    assert got == {g: (w["agents"], w["reached"]) for g, w in want.items()}
    assert {m.label: m.value for m in view.metric}["Reached criterion"] == str(
        sum(w["reached"] for (k, _), w in want.items() if k == "seed"))


def test_the_dashboard_filters_and_groups_by_a_factor(sweep_lab):
    at = run_app(sweep_lab["lab"])
    assert len(at.selectbox(key="agent").options) == 9
    at.selectbox(key="sweep_factor").set_value("curriculum").run()
    at.multiselect(key="sweep_values-curriculum").set_value(["mixed"]).run()
    assert not at.exception
    options = list(at.selectbox(key="agent").options)
    assert len(options) == 4 and all("curriculum=mixed" in a for a in options)
    at.selectbox(key="group_by").set_value("seed").run()
    assert not at.exception
    summary = tab(at, "Compare").dataframe[0].value
    events = journal.load_events(sweep_lab["lab"] / "journal")
    done = events[(events["event"] == "complete") & events["agent"].isin(options)]
    assert "seed" in summary.columns
    complete = summary[summary["milestone"] == "complete"].set_index("seed")["n"].to_dict()
    assert complete == {str(s): int((done["agent"].str.endswith(f"seed={s}")).sum()) for s in (0, 1)
                        if (done["agent"].str.endswith(f"seed={s}")).any()}
