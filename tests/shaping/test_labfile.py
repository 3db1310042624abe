"""The lab file: one parser, typed tables, key lists from the dataclasses, configs derived for each process, and
user errors (ConfigError, exit status 2) told apart from bugs (a traceback)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from shaping import cli, errors, labfile
from shaping.labfile import AgentEntry, LabFile, LabSection, ServerConfig

LAB = {
    "lab": {"name": "t", "seed": 3},
    "task": {"name": "PerceptualDiscrimination", "T": 400, "N_batch": 16},
    "curricula": {"fixed": {"kind": "fixed"}, "staircase": {"kind": "staircase", "knob": "coherence",
                                                            "start": 0.5}},
    "server": {"window_trials": 64},
    "agents": [{"name": "a", "N_rec": 8, "threads": 2}, {"name": "b", "curriculum": "staircase", "N_rec": 8,
                                                         "dale_ratio": 0.8}],
}


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_key_lists_are_the_dataclass_fields():
    assert labfile.LAB_KEYS == tuple(f.name for f in dataclasses.fields(LabSection))
    assert set(labfile.AGENT_KEYS) == {f.name for f in dataclasses.fields(AgentEntry)} - {"model"}
    server_fields = {f.name for f in dataclasses.fields(ServerConfig)}
    assert set(labfile.SERVER_KEYS) | set(labfile.SERVER_SET_BY_LAB) == server_fields


def test_defaults_are_filled_once_and_round_trip():
    lab = LabFile.from_dict(LAB)
    assert (lab.lab.experiment, lab.lab.workdir, lab.lab.max_restarts) == ("t", "labs/t", 2)
    a, b = lab.agents
    assert (a.threads, a.device, a.checkpoint_every, a.curriculum, a.model) == (2, "CPU", 20, None, {"N_rec": 8})
    assert b.model == {"N_rec": 8, "dale_ratio": 0.8}
    again = LabFile.from_dict(json.loads(json.dumps(lab.to_dict())))
    assert again.to_dict() == lab.to_dict()


def test_server_and_agent_configs_are_derived_from_the_file(tmp_path):
    lab = LabFile.from_dict(LAB)
    server = lab.server_config(journal=str(tmp_path / "j"))
    assert (server.window_trials, server.seed, server.journal) == (64, 3, str(tmp_path / "j"))
    assert set(server.curricula) == {"fixed", "staircase"}
    agent = lab.agent_config("b", "tcp://127.0.0.1:1", workdir=str(tmp_path), max_batches=None, device="CPU")
    assert ((agent.curriculum, agent.threads, agent.max_batches, agent.model["dale_ratio"])
            == ("staircase", 1, None, 0.8))
    assert lab.agent_config("a", "tcp://127.0.0.1:1", max_batches=5).max_batches == 5  # the command line wins


def test_a_typo_is_named_with_the_closest_key(tmp_path):
    bad = {**LAB, "lab": {"name": "t", "max_restart": 1}}
    with pytest.raises(errors.UnknownKeyError, match=r"\[lab\]: unknown key\(s\) 'max_restart' \(did you mean "
                                                     r"'max_restarts'\?\)"):
        LabFile.from_dict(bad, source="my.toml")
    with pytest.raises(errors.ConfigError, match=r"my.toml: \[server\]: unknown key\(s\) 'windwo_trials'"):
        LabFile.from_dict({**LAB, "server": {"windwo_trials": 3}}, source="my.toml")
    with pytest.raises(errors.ConfigError, match=r"agents\[1\].curriculum = 'nope' is not one of the curricula"):
        LabFile.from_dict({**LAB, "agents": [LAB["agents"][0], {"name": "c", "curriculum": "nope"}]})
    with pytest.raises(errors.ConfigError, match=r"agents\[0\]\.threads = 0 must be an integer >= 1"):
        LabFile.from_dict({**LAB, "agents": [{"name": "a", "threads": 0}]})
    assert issubclass(errors.ConfigError, ValueError)  # code that caught ValueError still does


def test_files_that_do_not_parse_are_config_errors(tmp_path):
    with pytest.raises(errors.ConfigError, match="does not exist"):
        LabFile.load(tmp_path / "missing.toml")
    with pytest.raises(errors.ConfigError, match="is not valid TOML"):
        LabFile.load(toml_file(tmp_path, "[lab\nname = 1"))
    (tmp_path / "lab.json").write_text("{")
    with pytest.raises(errors.ConfigError, match="is not valid JSON"):
        LabFile.load(tmp_path / "lab.json")


def test_a_user_task_is_imported_beside_the_file_and_sys_path_is_restored(tmp_path):
    (tmp_path / "lf_user_tasks.py").write_text(
        "from shaping.tasks import PerceptualDiscrimination\n"
        "class Mine(PerceptualDiscrimination):\n    pass\n")
    path = toml_file(tmp_path, """
[task]
name = "lf_user_tasks:Mine"
T = 400
[curricula.fixed]
kind = "fixed"
[[agents]]
name = "a"
N_rec = 8
""")
    before = list(sys.path)
    lab = LabFile.load(path)
    assert sys.path == before
    assert lab.task["name"] == "lf_user_tasks:Mine" and lab.lab.name == "lab"  # the default name: the file's stem
    assert lab.task_path == [str(tmp_path.resolve())]


def test_a_server_run_on_a_lab_file_takes_its_server_table(tmp_path):
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({**LAB, "lab": {"name": "t", "workdir": str(tmp_path / "w")}}))
    config, tracking = labfile.load_server_file(path, {"seed": 9, "bind": None})
    assert (config.window_trials, config.seed, tracking) == (64, 9, None)
    assert config.journal == str(tmp_path / "w" / "journal")


def test_the_cli_reports_user_errors_and_keeps_tracebacks_of_bugs(tmp_path, capsys, monkeypatch):
    path = toml_file(tmp_path, '[lab]\nname = "x"\nmax_restart = 1\n[task]\nname = "PerceptualDiscrimination"\n'
                               '[curricula.f]\nkind = "fixed"\n[[agents]]\nname = "a"\n')
    assert cli.main(["lab", str(path), "--no-progress"]) == 2
    assert "did you mean 'max_restarts'" in capsys.readouterr().err

    def broken(args):
        raise KeyError("an internal bug")

    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, cli.Subcommand("broken", "", lambda p: None, broken)])
    with pytest.raises(KeyError, match="an internal bug"):  # not swallowed into "bad config", exit 2
        cli.main(["broken"])


def test_a_replicate_offsets_every_seed_and_nothing_else():
    lab = LabFile.from_dict({**LAB, "agents": [{"name": "a", "N_rec": 8, "seed": 2}, {"name": "b", "N_rec": 8}]})
    rep = lab.replicate(3)
    assert (rep.lab.seed, [a.model.get("seed") for a in rep.agents]) == (6, [3002, 3000])
    assert rep.to_dict()["curricula"] == lab.to_dict()["curricula"] and lab.lab.seed == 3  # the original is kept
