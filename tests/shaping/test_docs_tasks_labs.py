"""docs/tasks.md and docs/labs.md stay true.

tasks.md: its Python examples run, in order, in one namespace; every built-in task of ``catalog()`` has a row
naming its arguments, evidence and side knobs and its paper; the knob table matches the knobs the tasks
declare; every name the ``Task`` base class defines is mentioned. labs.md: every TOML block parses and passes
the lab's own validation (``shaping.lab.validate_config``, then the server's on the config the lab would
write); the keys the lab reads (found in the code, not listed here) are exactly the documented ones; every
``skinnerbox`` subcommand and option is documented; the journal example runs on a journal written by a real
server. No TensorFlow, no processes.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TASKS_DOC = ROOT / "docs" / "tasks.md"
LABS_DOC = ROOT / "docs" / "labs.md"
TASKS_TEXT = TASKS_DOC.read_text()
LABS_TEXT = LABS_DOC.read_text()


def _blocks(text: str, lang: str) -> list[str]:
    return [code for tag, code in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M) if tag == lang]


def _line(text: str, code: str) -> int:
    return text[:text.index(code)].count("\n") + 1


def _section(text: str, heading: str, subsections: bool = True) -> str:
    """The text under the heading line that starts with ``heading``, up to the next heading of its level or
    higher (``subsections=False``: of any level); fenced code is left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    match = re.search(rf"^{re.escape(heading)}.*$", text, flags=re.M)
    assert match, f"no heading {heading!r}"
    level = len(heading) - len(heading.lstrip("#"))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level if subsections else 6}}} ", rest, flags=re.M)
    return rest[:end.start()] if end else rest


def _rows(section: str) -> list[list[str]]:
    """Table rows whose first cell holds inline code, as lists of stripped cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]


def _table_keys(section: str) -> set[str]:
    return {k for row in _rows(section) for k in re.findall(r"`([^`]+)`", row[0])}


TASK_BLOCKS = _blocks(TASKS_TEXT, "python")
LAB_TOML = _blocks(LABS_TEXT, "toml")
LAB_PYTHON = _blocks(LABS_TEXT, "python")


# ---------------------------------------------------------------------------------------------- tasks.md
def _builtin_names() -> list[str]:
    """``catalog()``'s built-in tasks (a class some test registered is not built in)."""
    from shaping import tasks

    return [n for n in tasks.catalog()["name"] if tasks.get(n).__module__.startswith("shaping.tasks.")]


BUILTINS = _builtin_names()


def test_tasks_page_has_examples():
    assert len(TASK_BLOCKS) >= 7 and len(BUILTINS) >= 11


@pytest.fixture(scope="module")
def task_namespace():
    """One namespace for the page's examples, run in order; the task registry is restored afterwards."""
    from shaping.tasks import registry

    saved = dict(registry._REGISTRY)
    yield {"__name__": "docs_tasks_example", "failed": None}
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.mark.parametrize("code", TASK_BLOCKS, ids=[f"line{_line(TASKS_TEXT, c)}" for c in TASK_BLOCKS])
def test_tasks_python_example_runs(code, task_namespace, tmp_path, monkeypatch):
    if task_namespace["failed"]:
        pytest.skip(f"an earlier example failed ({task_namespace['failed']})")
    monkeypatch.chdir(tmp_path)
    where = f"{TASKS_DOC}:{_line(TASKS_TEXT, code)}"
    try:
        exec(compile(code, where, "exec"), task_namespace)
    except BaseException:
        task_namespace["failed"] = where
        raise


def _task_rows() -> dict[str, list[str]]:
    section = _section(TASKS_TEXT, "## Built-in tasks")
    rows = {}
    for row in _rows(section):
        if len(row) == 7 and row[1] and not row[1].startswith("`"):  # the overview table, not the knob table
            rows[row[0].strip("`")] = row
    return rows


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_task_has_a_row(name):
    from shaping import tasks

    rows = _task_rows()
    assert name in rows, f"{name} (in catalog()) has no row in {TASKS_DOC.name}'s table of built-in tasks"
    cls = tasks.get(name)
    row = rows[name]
    own = [p for p in inspect.signature(cls.__init__).parameters.values()  # dt, tau, N_batch: in the prose
           if p.name not in ("self", "seed", "dt", "tau", "T", "N_batch") and p.kind is not p.VAR_KEYWORD]
    missing = [p.name for p in own if f"`{p.name}`" not in row[3]]
    assert not missing, f"{name}: constructor arguments not in its row: {missing}"
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    for arg, prose in (("dt", 10), ("tau", 100), ("N_batch", 128)):  # the prose's defaults, or the row says
        if defaults[arg] != prose:
            assert f"`{arg}` {defaults[arg]:g}" in row[3], f"{name}: default {arg} {defaults[arg]}: say it in its row"
    assert (f"`T` {defaults['T']:g}" if defaults["T"] is not None else "`T` (") in row[3], f"{name}: default T"
    for column, attr in ((4, "evidence_knob"), (5, "side_knob")):
        declared = getattr(cls, attr)
        assert row[column] == (f"`{declared}`" if declared else "none"), f"{name}.{attr} is {declared!r}"
    assert cls.metadata["paper_link"] in row[6], f"{name}: its paper link {cls.metadata['paper_link']}"


def test_the_table_lists_built_in_tasks_only():
    assert set(_task_rows()) == set(BUILTINS)


def test_knob_table_matches_the_declared_knobs():
    from shaping import tasks

    documented = {}
    for row in _rows(_section(TASKS_TEXT, "## Built-in tasks")):
        if len(row) == 7 and row[1].startswith("`"):
            documented[(row[0].strip("`"), row[1].strip("`"))] = row
    declared = {(n, k.name): k for n in BUILTINS for k in tasks.get(n).knobs}
    assert set(documented) == set(declared)
    for key, knob in declared.items():
        _, _, span, unit, default, easier, _ = documented[key]
        low, high = (float(v) for v in span.split(" to "))
        assert (low, high, unit) == (knob.low, knob.high, knob.unit), key
        assert easier == (knob.easier or "side"), key
        value = json.loads(default.strip("`"))
        want = knob.default
        if isinstance(want, dict):
            assert value == want, key
        else:
            assert np.allclose(value, want, atol=1e-3), key


def test_every_name_of_the_base_class_is_mentioned():
    from shaping.tasks import Task

    instance = Task(1, 1, 10, 100, 100, 1, seed=0)
    names = {n for n in set(dir(Task)) | set(vars(instance)) if not n.startswith("_")}
    missing = sorted(n for n in names if f"`{n}`" not in TASKS_TEXT and f"`{n}(" not in TASKS_TEXT)
    assert not missing, f"Task attributes not mentioned in {TASKS_DOC.name}: {missing}"


# ---------------------------------------------------------------------------------------------- what the lab reads
def accepted() -> dict[str, set[str]]:
    """What a lab file may hold: the schema's own key lists, derived from its dataclasses' fields
    (shaping.labfile is the only parser, and refuses any other key)."""
    from shaping.labfile import AGENT_KEYS, LAB_KEYS, SECTIONS, SERVER_KEYS

    return {"sections": set(SECTIONS), "lab": set(LAB_KEYS), "task": {"name"}, "agents": set(AGENT_KEYS),
            "server": set(SERVER_KEYS)}


def _server_file_keys() -> set[str]:
    """``ServerConfig``'s fields and ``tracking`` (what ``skinnerbox server`` takes out of the file before them)."""
    from shaping.labfile import ServerConfig

    return {f.name for f in dataclasses.fields(ServerConfig)} | {"tracking"}


# ---------------------------------------------------------------------------------------------- labs.md keys
def test_documented_sections_are_the_ones_read():
    assert _table_keys(_section(LABS_TEXT, "## The lab file", subsections=False)) == accepted()["sections"]


@pytest.mark.parametrize("section", ["lab", "task", "agents", "server"])
def test_documented_keys_are_the_ones_read(section):
    heading = {"lab": "### `[lab]`", "task": "### `[task]`", "agents": "### `[[agents]]`",
               "server": "### `[server]`"}[section]
    documented = _table_keys(_section(LABS_TEXT, heading))
    assert documented == accepted()[section], (f"[{section}]: documented but not read: "
                                               f"{sorted(documented - accepted()[section])}; read but not "
                                               f"documented: {sorted(accepted()[section] - documented)}")


def test_server_file_keys_are_documented():
    documented = _table_keys(_section(LABS_TEXT, "## A server on its own"))
    assert documented == _server_file_keys()


def test_lab_has_toml_examples():
    assert len(LAB_TOML) >= 3 and sum("[[agents]]" in c for c in LAB_TOML) >= 2


def _merge(base: dict, fragment: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in fragment.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("code", LAB_TOML, ids=[f"line{_line(LABS_TEXT, c)}" for c in LAB_TOML])
def test_toml_example_validates(code, tmp_path, monkeypatch):
    """A lab file is validated as `skinnerbox lab` does, and the server config the lab would write as the
    server does; a block starting ``# server.toml`` is a server's own file. A fragment (no [[agents]])
    is checked on top of the page's first complete lab file."""
    from shaping.lab import Lab, validate_config
    from shaping.server import ServerConfig

    monkeypatch.chdir(tmp_path)
    cfg = tomllib.loads(code)
    if code.startswith("# server.toml"):
        ServerConfig.from_dict(cfg, base_dir=tmp_path)
        return
    if not {"task", "curricula", "agents"} <= set(cfg):
        cfg = _merge(tomllib.loads(next(c for c in LAB_TOML if "[[agents]]" in c and "[lab]" in c)), cfg)
    keys = accepted()
    assert set(cfg) <= keys["sections"], f"sections the lab does not read: {set(cfg) - keys['sections']}"
    for section in ("lab", "server"):
        assert set(cfg.get(section, {})) <= keys[section], f"[{section}] keys the lab ignores"
    validated = validate_config(cfg, source=f"{LABS_DOC.name}:{_line(LABS_TEXT, code)}")
    lab = Lab(validated, workdir=tmp_path / "lab", tracking_uri="none", progress=False)
    path = lab._write_configs()
    ServerConfig.from_dict(json.loads(path.read_text()), base_dir=path.parent)


# ---------------------------------------------------------------------------------------------- the command
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


def _agent_options() -> set[str]:
    """The options of ``skinnerbox agent``, which ``agents.agent.main`` parses (read without TensorFlow)."""
    tree = ast.parse((ROOT / "agents/agent.py").read_text())
    main = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "main")
    return {n.args[0].value for n in ast.walk(main) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "add_argument" and str(getattr(n.args[0], "value", "")).startswith("--")}


def test_every_subcommand_and_option_is_documented():
    from shaping.cli import build_parser

    parser = build_parser()
    assert {"--log-level"} == _long_options(parser) and "`--log-level`" in LABS_TEXT
    commands = _subparsers(parser)
    assert {"lab", "server", "agent", "keys", "dashboard", "report", "sync"} <= set(commands)
    for name, sub in commands.items():
        section = _section(LABS_TEXT, f"### `skinnerbox {name}")
        options = _agent_options() if name == "agent" else _long_options(sub)
        assert options, name
        missing = sorted(o for o in options if f"`{o}" not in section)
        assert not missing, f"skinnerbox {name}: options not documented: {missing}"
        heading = re.search(rf"^### `skinnerbox {name}([^`]*)`", LABS_TEXT, flags=re.M).group(1)
        for action in sub._actions:
            if not action.option_strings and action.dest != "agent_args":
                assert action.dest.upper() in heading, f"skinnerbox {name}: positional {action.dest}"


# ---------------------------------------------------------------------------------------------- results
@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    """``labs/demo/journal`` written by a real task server, answered by a client that returns the targets."""
    from shaping.client import TaskClient
    from shaping.server import TaskServer

    root = tmp_path_factory.mktemp("labs_doc")
    stages = [{"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.8, "min_trials": 32}},
              {"name": "final", "knobs": {"coherence": [0.1, 0.7]}, "graduate": {"accuracy": 0.8, "min_trials": 32}}]
    server = TaskServer({"task": {"name": "PerceptualDiscrimination", "T": 400, "N_batch": 16},
                         "curricula": {"shaped": {"kind": "stages", "window": 32, "stages": stages}},
                         "journal": str(root / "labs" / "demo" / "journal"), "seed": 0,
                         "heartbeat_interval_s": 0.2, "expiry_s": 5.0})
    endpoint = server.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        client = TaskClient(endpoint, "shaped", heartbeat_interval_s=0.2, timeout_s=20)
        client.hello()
        for batch in client.batches():
            client.result(batch, batch.y)
        client.bye()
        client.close()
    finally:
        server.stop()
        thread.join(10)
        server.close()
    return root


@pytest.mark.parametrize("code", LAB_PYTHON, ids=[f"line{_line(LABS_TEXT, c)}" for c in LAB_PYTHON])
def test_labs_python_example_runs(code, lab_root, monkeypatch, capsys):
    monkeypatch.chdir(lab_root)
    namespace = {"__name__": "docs_labs_example"}
    exec(compile(code, f"{LABS_DOC}:{_line(LABS_TEXT, code)}", "exec"), namespace)
    assert set(namespace["trials"]["stage"]) == {"easy", "final"}
    assert set(namespace["events"]["event"]) >= {"graduated", "complete"}
    assert "shaped" in capsys.readouterr().out
