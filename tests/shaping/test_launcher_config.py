"""Launcher settings in the lab file: ``[lab] launcher``, the ``[launcher.slurm]`` table (SlurmOptions: the names of
hydra's submitit launcher, each type and range checked), per-agent ``[agents.launcher]`` overrides and their
merge (:meth:`LabFile.slurm_options`); every mistake is a ConfigError naming the key."""
from __future__ import annotations

import dataclasses
import json

import pytest

from shaping import errors, labfile
from shaping.labfile import LabFile, SlurmOptions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BASE = {"lab": {"name": "l"}, "task": {"name": "PerceptualDiscrimination", "T": 400, "N_batch": 16},
        "curricula": {"fixed": {"kind": "fixed"}}, "agents": [{"name": "a", "threads": 3}, {"name": "b"}]}

SLURM_LAB = """
[lab]
name = "cluster"
launcher = "slurm"

[task]
name = "PerceptualDiscrimination"
T = 400

[curricula.fixed]
kind = "fixed"

[launcher.slurm]
partition = "gpu"
account = "lab42"
timeout_min = 240
gres = "gpu:1"
mem_gb = 8
setup = ["module load cuda", "source .venv/bin/activate"]
additional_parameters = { constraint = "a100", mail_type = "FAIL" }
server = "job"

[[agents]]
name = "big"
threads = 4
[agents.launcher]
gres = "gpu:a100:2"
timeout_min = 600
additional_parameters = { mail_type = "NONE" }

[[agents]]
name = "small"
N_rec = 32
[agents.launcher]
gres = "shard:2"
cpus_per_task = 2

[[agents]]
name = "net"
[agents.sweep]
seed = [0, 1]
"""


def lab(**sections) -> dict:
    return {**BASE, **sections}


def error_of(data: dict) -> errors.ConfigError:
    with pytest.raises(errors.ConfigError) as info:
        LabFile.from_dict(data, source="lab.toml")
    return info.value


def test_the_defaults_are_the_local_launcher_and_submitits():
    plain = LabFile.from_dict(BASE)
    assert plain.lab.launcher == "local" and plain.launcher == {}
    o = plain.slurm_options()
    assert (o.timeout_min, o.array_parallelism, o.max_num_timeout, o.signal_delay_s, o.server) == (60, 256, 3, 90,
                                                                                                   "host")
    assert (o.partition, o.account, o.qos, o.gres, o.cpus_per_task, o.mem_gb) == (None,) * 6
    assert (o.setup, o.additional_parameters) == ([], {})
    assert plain.slurm_options("a").cpus_per_task == 3  # unset: the agent's threads
    assert labfile.SLURM_KEYS == tuple(f.name for f in dataclasses.fields(SlurmOptions))
    assert set(labfile.AGENT_LAUNCHER_KEYS) == set(labfile.SLURM_KEYS) - {"server", "array_parallelism"}
    assert "launcher" in labfile.SECTIONS and "launcher" in labfile.LAB_KEYS
    assert {"launcher", "factors", "group"} <= set(labfile.AGENT_KEYS)


def test_a_slurm_lab_merges_each_agents_overrides(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text(SLURM_LAB)
    lab = LabFile.load(path)
    assert lab.lab.launcher == "slurm" and [a.name for a in lab.agents] == ["big", "small", "net-seed=0",
                                                                            "net-seed=1"]
    own = lab.slurm_options()
    assert (own.partition, own.gres, own.mem_gb, own.server, own.cpus_per_task) == ("gpu", "gpu:1", 8.0, "job", None)
    assert isinstance(own.mem_gb, float)
    big = lab.slurm_options("big")
    assert (big.gres, big.timeout_min, big.partition, big.account, big.cpus_per_task) == ("gpu:a100:2", 600, "gpu",
                                                                                          "lab42", 4)
    assert big.additional_parameters == {"constraint": "a100", "mail_type": "NONE"}  # merged key by key
    assert big.setup == ["module load cuda", "source .venv/bin/activate"]
    small = lab.slurm_options("small")
    assert (small.gres, small.cpus_per_task, small.timeout_min) == ("shard:2", 2, 240)
    assert small.additional_parameters == {"constraint": "a100", "mail_type": "FAIL"}
    swept = lab.slurm_options("net-seed=1")
    assert (swept.gres, swept.cpus_per_task) == ("gpu:1", 1)
    # options are copies: changing one agent's does not change the lab's
    big.setup.append("echo hi")
    assert lab.slurm_options().setup == ["module load cuda", "source .venv/bin/activate"]
    with pytest.raises(errors.ConfigError, match="no agent named 'nope'"):
        lab.slurm_options("nope")


def test_lab_json_keeps_the_launcher_tables(tmp_path):
    lab = LabFile.from_dict(tomllib.loads(SLURM_LAB))
    (tmp_path / "lab.json").write_text(json.dumps(lab.to_dict()))
    again = LabFile.load(tmp_path / "lab.json")
    assert again.to_dict() == lab.to_dict()
    assert again.slurm_options("big") == lab.slurm_options("big")
    assert again.agent("big").launcher == {"gres": "gpu:a100:2", "timeout_min": 600,
                                           "additional_parameters": {"mail_type": "NONE"}}
    assert "launcher" not in again.agent("big").model


def test_slurm_tables_are_allowed_in_a_local_lab():
    data = tomllib.loads(SLURM_LAB)
    data["lab"]["launcher"] = "local"
    local = LabFile.from_dict(data)
    assert local.lab.launcher == "local" and local.slurm_options("big").gres == "gpu:a100:2"


@pytest.mark.parametrize("table, message", [
    ({"timeout_min": 0}, r"launcher\.slurm\.timeout_min = 0 must be an integer >= 1 \(minutes\)"),
    ({"timeout_min": 1.5}, r"launcher\.slurm\.timeout_min = 1\.5 must be an integer"),
    ({"timeout_min": True}, r"launcher\.slurm\.timeout_min = True must be an integer"),
    ({"array_parallelism": 0}, r"launcher\.slurm\.array_parallelism = 0 must be an integer >= 1"),
    ({"max_num_timeout": -1}, r"launcher\.slurm\.max_num_timeout = -1 must be an integer >= 0"),
    ({"signal_delay_s": "90"}, r"launcher\.slurm\.signal_delay_s = '90' must be an integer >= 0 \(seconds\)"),
    ({"cpus_per_task": 0}, r"launcher\.slurm\.cpus_per_task = 0 must be an integer >= 1"),
    ({"mem_gb": 0}, r"launcher\.slurm\.mem_gb = 0 must be a positive number of GB"),
    ({"mem_gb": "8G"}, r"launcher\.slurm\.mem_gb = '8G' must be a positive number of GB"),
    ({"partition": ""}, r"launcher\.slurm\.partition = '' must be a non-empty string"),
    ({"qos": 3}, r"launcher\.slurm\.qos = 3 must be a non-empty string"),
    ({"gres": "gpu 1"}, r"launcher\.slurm\.gres = 'gpu 1' must be SLURM's name\[:type\]\[:count\]"),
    ({"gres": "gpu:1,"}, r"launcher\.slurm\.gres = 'gpu:1,' must be"),
    ({"gres": 1}, r"launcher\.slurm\.gres = 1 must be"),
    ({"setup": "module load cuda"}, r"launcher\.slurm\.setup = 'module load cuda' must be a list of shell lines"),
    ({"setup": ["ok", 3]}, r"launcher\.slurm\.setup = \['ok', 3\] must be a list of shell lines"),
    ({"additional_parameters": ["x"]}, r"launcher\.slurm\.additional_parameters = \['x'\] must be a table"),
    ({"additional_parameters": {"x": [1]}}, r"launcher\.slurm\.additional_parameters\.x = \[1\] must be a string"),
    ({"server": "login"}, r"launcher\.slurm\.server = 'login' must be 'host' .* or 'job'"),
])
def test_each_slurm_setting_is_checked(table, message):
    err = error_of(lab(launcher={"slurm": table}))
    assert str(err).startswith("lab.toml: ")
    with pytest.raises(errors.ConfigError, match=message):
        LabFile.from_dict(lab(launcher={"slurm": table}))


def test_gres_takes_slurms_forms():
    for gres in ("gpu:1", "shard:2", "gpu:a100:2", "gpu", "gpu:1,shard:4", "gpu:tesla_v100-sxm2:1"):
        assert SlurmOptions(gres=gres).gres == gres


def test_unknown_keys_name_the_closest_one():
    err = error_of(lab(launcher={"slurm": {"partiton": "gpu"}}))
    assert isinstance(err, errors.UnknownKeyError)
    assert "launcher.slurm: unknown key(s) 'partiton' (did you mean 'partition'?)" in str(err)
    err = error_of(lab(launcher={"slurn": {}}))
    assert isinstance(err, errors.UnknownKeyError)
    assert "[launcher]: unknown table(s) 'slurn' (did you mean 'slurm'?)" in str(err)
    err = error_of(lab(agents=[{"name": "a", "launcher": {"time_min": 5}}]))
    assert isinstance(err, errors.UnknownKeyError)
    assert "agents[0].launcher: unknown key(s) 'time_min' (did you mean 'timeout_min'?)" in str(err)
    assert "[launcher] must be a table" in str(error_of(lab(launcher="slurm")))


def test_the_launcher_must_be_known():
    assert ("lab.launcher = 'ray' must be 'local' (agents as processes on this machine) or 'slurm'"
            in str(error_of(lab(lab={"launcher": "ray"}))))


@pytest.mark.parametrize("override, message", [
    ({"timeout_min": -5}, r"agents\[1\]\.launcher\.timeout_min = -5 must be an integer >= 1"),
    ({"gres": "gpu::"}, r"agents\[1\]\.launcher\.gres = 'gpu::' must be SLURM's"),
    ({"server": "job"}, r"agents\[1\]\.launcher\.server is one setting for the whole lab: set it in \[launcher"),
    ({"array_parallelism": 4}, r"agents\[1\]\.launcher\.array_parallelism is one setting for the whole lab"),
    ("gpu", r"agents\[1\]\.launcher = 'gpu' must be a table \(\[agents\.launcher\]\)"),
])
def test_agent_overrides_are_checked_like_the_labs(override, message):
    with pytest.raises(errors.ConfigError, match=message):
        LabFile.from_dict(lab(agents=[{"name": "a"}, {"name": "b", "launcher": override}]))


def test_a_sweep_may_not_vary_the_launcher_but_its_agents_share_it():
    with pytest.raises(errors.ConfigError, match=r"agents\[0\]\.sweep\.launcher: 'launcher' cannot be swept"):
        LabFile.from_dict(lab(agents=[{"name": "n", "sweep": {"launcher": [{"gres": "gpu:1"}]}}]))
    shared = LabFile.from_dict(lab(agents=[{"name": "n", "launcher": {"gres": "shard:1"},
                                            "sweep": {"seed": [1, 2]}}]))
    assert [shared.slurm_options(a.name).gres for a in shared.agents] == ["shard:1", "shard:1"]
    shared.agents[0].launcher["gres"] = "gpu:1"
    assert shared.agents[1].launcher == {"gres": "shard:1"}  # each agent has its own table
