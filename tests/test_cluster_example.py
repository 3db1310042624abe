"""examples/cluster.toml and docs/cluster.md stay true.

The example is the 40-agent GPU sweep the page promises: it expands into exactly the documented agents and
factors, each a SLURM job with a GPU, all in one job array, under a server reachable from the nodes. The page
shows that file verbatim, and every TOML block on it passes the lab's own validation as ``skinnerbox lab`` runs it
(the approach of ``tests/shaping/test_docs_tasks_labs.py``: a fragment is checked on top of the page's complete
lab file). Its failure message for a host without SLURM is the one the launcher gives, and its Python example runs
on a journal written by a real task server. No TensorFlow, and no SLURM needed.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from shaping.labfile import SLURM_KEYS, LabFile, SlurmOptions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cluster.toml"
DOC = ROOT / "docs" / "cluster.md"
LABS_DOC = ROOT / "docs" / "labs.md"
DOC_TEXT = DOC.read_text()

CURRICULA = ["shaped", "control"]
DALE_RATIOS = [0.5, 0.8]
SEEDS = list(range(10))
# the sweep in file order: the last key varies fastest
COMBINATIONS = [(c, d, s) for c in CURRICULA for d in DALE_RATIOS for s in SEEDS]


def _blocks(text: str, lang: str) -> list[str]:
    return [code for tag, code in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M) if tag == lang]


def _line(text: str, code: str) -> int:
    return text[:text.index(code)].count("\n") + 1


def _section(text: str, heading: str) -> str:
    """The text under the heading line starting with ``heading`` up to the next heading of its level or higher."""
    match = re.search(rf"^{re.escape(heading)}.*$", text, flags=re.M)
    assert match, f"no heading {heading!r}"
    level = len(heading) - len(heading.lstrip("#"))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", re.sub(r"^```.*?^```", lambda m: " " * len(m.group()), rest,
                                                 flags=re.S | re.M), flags=re.M)
    return rest[:end.start()] if end else rest


def _merge(base: dict, fragment: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in fragment.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


DOC_TOML = _blocks(DOC_TEXT, "toml")
COMPLETE = [c for c in DOC_TOML if {"task", "curricula", "agents"} <= set(tomllib.loads(c))]


@pytest.fixture(scope="module")
def example() -> LabFile:
    return LabFile.load(EXAMPLE)


# ---------------------------------------------------------------------------------------------- the example
def test_the_example_expands_into_the_40_documented_agents(example):
    assert [a.name for a in example.agents] == [f"net-curriculum={c}-dale_ratio={d}-seed={s}"
                                                for c, d, s in COMBINATIONS]
    assert [a.factors for a in example.agents] == [{"curriculum": c, "dale_ratio": d, "seed": s}
                                                   for c, d, s in COMBINATIONS]
    for agent, (curriculum, dale_ratio, seed) in zip(example.agents, COMBINATIONS):
        assert agent.group == "net" and agent.curriculum == curriculum, agent.name
        assert (agent.model["dale_ratio"], agent.model["seed"]) == (dale_ratio, seed), agent.name
    assert set(example.curricula) == set(CURRICULA)
    assert len(example.factors()) == 40


def test_every_agent_is_a_slurm_job_with_a_gpu_in_one_array(example):
    from shaping.launchers import SlurmLauncher

    assert example.lab.launcher == "slurm"
    options = {a.name: example.slurm_options(a.name) for a in example.agents}
    for agent in example.agents:
        opts = options[agent.name]
        assert agent.device == "GPU", agent.name
        assert opts.gres and opts.gres.startswith("gpu:"), agent.name
        assert opts.cpus_per_task == agent.threads, f"{agent.name}: one TensorFlow thread per CPU of the job"
        params = SlurmLauncher.sbatch_parameters(opts, agent.threads, example.lab.name)
        assert params["gres"] == opts.gres and params["partition"] == opts.partition, params
        assert {"time", "cpus_per_task", "mem", "setup"} <= set(params), params
    # the launcher groups agents by their options and threads: one group is one job array of 40 tasks
    groups = {json.dumps([asdict(o), example.agent(n).threads], sort_keys=True) for n, o in options.items()}
    assert len(groups) == 1
    assert example.slurm_options().server == "host"


def test_the_server_is_reachable_from_the_nodes_with_keys(example):
    served = example.server_config("journal")
    assert served.use_curve and Path(served.keys) == EXAMPLE.parent / "keys"


def test_the_page_shows_the_example_verbatim():
    assert EXAMPLE.read_text() in DOC_TOML, f"{DOC.name} must show {EXAMPLE.name} whole, as it is"
    assert "skinnerbox lab examples/cluster.toml" in DOC_TEXT


# ---------------------------------------------------------------------------------------------- the page
def test_the_page_has_its_sections():
    for heading in ("## Install", "## Keys", "## The lab file", "## Run it", "## Where things are",
                    "## Preemption, walltime and restarts", "## The server as a job of its own",
                    "## Per-agent settings", "## When something goes wrong", "## The sweep summary",
                    "## How far it scales", "## A shared MLflow server"):
        assert re.search(rf"^{re.escape(heading)}", DOC_TEXT, flags=re.M), heading


@pytest.mark.parametrize("code", DOC_TOML, ids=[f"line{_line(DOC_TEXT, c)}" for c in DOC_TOML])
def test_toml_block_validates(code, tmp_path, monkeypatch):
    """Each block is checked as `skinnerbox lab` checks a file, then as the server reads the config the lab would
    write; a fragment (not a whole lab file) on top of the page's first complete one. Every agent's SLURM
    options are merged as the launcher would."""
    from shaping.lab import Lab
    from shaping.server import ServerConfig

    monkeypatch.chdir(tmp_path)
    cfg = tomllib.loads(code)
    if code not in COMPLETE:
        cfg = _merge(tomllib.loads(COMPLETE[0]), cfg)
    labfile = LabFile.from_dict(cfg, source=f"{DOC.name}:{_line(DOC_TEXT, code)}", task_path=[EXAMPLE.parent])
    for agent in labfile.agents:
        labfile.slurm_options(agent.name)
    lab = Lab(labfile, workdir=tmp_path / "lab", tracking_uri="none", progress=False)
    path = lab._write_configs()
    ServerConfig.from_dict(json.loads(path.read_text()), base_dir=path.parent)


def test_the_page_has_a_complete_lab_file_and_fragments():
    assert len(COMPLETE) >= 1 and len(DOC_TOML) >= 4


def test_the_launcher_keys_are_the_ones_read():
    """docs/labs.md's table (which the page links to) lists exactly the keys of [launcher.slurm], and the page
    names each of them."""
    table = _section(LABS_DOC.read_text(), "### `[launcher.slurm]`")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {k for row in rows for k in re.findall(r"`([^`]+)`", row.split("|")[1])}
    assert documented == set(SLURM_KEYS)
    listed = _section(DOC_TEXT, "## `[launcher.slurm]` keys")
    assert not [k for k in SLURM_KEYS if f"`{k}`" not in listed]


def test_the_message_without_slurm_is_the_documented_one(tmp_path, monkeypatch):
    from shaping.launchers import LaunchError, SlurmLauncher

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, scancel, srun here
    with pytest.raises(LaunchError) as err:
        SlurmLauncher(tmp_path / "slurm", lambda name: SlurmOptions(), job_name="cluster").check()
    message = str(err.value).replace(socket.gethostname(), "HOST")
    assert f"skinnerbox lab: {message}" in DOC_TEXT


# ---------------------------------------------------------------------------------------------- its Python
@pytest.fixture(scope="module")
def cluster_journal(tmp_path_factory, example):
    """``labs/cluster/journal`` written by a real task server for two of the example's agents (a shaped and a
    control one), answered by clients that return the targets; the other 38 never ran."""
    from shaping.client import TaskClient
    from shaping.server import TaskServer

    root = tmp_path_factory.mktemp("cluster_doc")
    journal_dir = root / "labs" / "cluster" / "journal"
    config = {**example.server_dict(str(journal_dir)), "bind": "tcp://127.0.0.1:0", "keys": None,
              "heartbeat_interval_s": 0.2, "expiry_s": 5.0}
    server = TaskServer(config)
    endpoint = server.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ran = [a for a in example.agents if a.factors["dale_ratio"] == 0.8 and a.factors["seed"] == 3]
    try:
        for agent in ran:
            client = TaskClient(endpoint, agent.name, curriculum=agent.curriculum, heartbeat_interval_s=0.2,
                                timeout_s=60)
            client.hello()
            for batch in client.batches():
                client.result(batch, batch.y)
            client.bye()
            client.close()
    finally:
        server.stop()
        thread.join(10)
        server.close()
    (root / "examples").mkdir()
    (root / "examples" / EXAMPLE.name).write_text(EXAMPLE.read_text())
    return root, [a.name for a in ran]


def test_the_sweep_summary_example_runs(cluster_journal, monkeypatch, capsys):
    root, ran = cluster_journal
    assert len(ran) == 2
    code = _blocks(DOC_TEXT, "python")
    assert len(code) == 1
    monkeypatch.chdir(root)
    namespace = {"__name__": "docs_cluster_example"}
    exec(compile(code[0], f"{DOC}:{_line(DOC_TEXT, code[0])}", "exec"), namespace)
    summary = namespace["summary"]
    assert len(summary) == 40 and set(summary[summary["complete"]]["agent"]) == set(ran)
    sweep = summary.attrs["sweep"]
    assert len(sweep) == 2 + 2 + 10  # curriculum, dale_ratio, seed: one row per value, as the page says
    assert list(sweep.loc[sweep["factor"] == "dale_ratio", "reached"]) == [0, 2]
    out = capsys.readouterr().out
    assert "shaped" in out and "control" in out and "0.8" in out
