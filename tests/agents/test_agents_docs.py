"""docs/agents.md stays true: its examples run, its lab-config entries build, every config() key is documented."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = [pytest.mark.tf]

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", TEXT, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
TOML = [code for lang, code in BLOCKS if lang == "toml"]
AGENT_TOML = [code for code in TOML if "[[agents]]" in code]


def _line(code: str) -> int:
    return TEXT[:TEXT.index(code)].count("\n") + 1


def _documented(key: str) -> bool:
    """``key`` appears as inline code of its own (a table row or a sentence), not only inside a longer span."""
    return f"`{key}`" in TEXT


def test_the_page_has_examples():
    assert len(PYTHON) >= 6 and len(AGENT_TOML) >= 3


@pytest.mark.parametrize("code", PYTHON, ids=[f"line{_line(c)}" for c in PYTHON])
def test_python_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray relative path lands in the tmp folder, not the repository
    namespace = {"__name__": "docs_agents_example", "tmp": tmp_path}
    exec(compile(code, f"{DOC}:{_line(code)}", "exec"), namespace)


@pytest.mark.parametrize("code", AGENT_TOML, ids=[f"line{_line(c)}" for c in AGENT_TOML])
def test_toml_agents_build(code):
    from agents import build_model
    from shaping import tasks
    from shaping.lab import model_spec

    cfg = tomllib.loads(code)
    if "task" in cfg:
        task = tasks.make(cfg["task"]["name"], **{k: v for k, v in cfg["task"].items() if k != "name"})
    else:
        task = tasks.PerceptualDiscrimination(N_batch=8, T=500)
    assert cfg["agents"], "a [[agents]] block with no entries"
    for entry in cfg["agents"]:
        spec = model_spec(entry)
        model = build_model(spec, task.spec())
        assert model.kind == spec.get("model", "Basic") and model.N_rec == spec["N_rec"], entry["name"]
        built = model.config()
        for key, value in spec.items():  # every key the entry sets reached the model (no typo dropped)
            if key in built and isinstance(value, (bool, str, int, float)):
                assert built[key] == value, (entry["name"], key, built[key])
        model.destruct()


def _configs() -> list[dict]:
    """config() of models that between them hold every key config() can write."""
    from agents import Basic, build_model

    small = {"N_in": 2, "N_rec": 6, "N_out": 2, "dt": 10, "tau": 100, "seed": 0}
    basic = Basic(small)
    explicit = Basic({**small, "rec_connectivity": np.ones((6, 6))})
    return [basic.config(), explicit.config(), build_model({"model": "LSTM", **small}, {}).config(),
            build_model({"model": "GRU", **small}, {}).config()]


def test_every_config_key_is_documented(tmp_path):
    from agents import Basic

    configs = _configs()
    path = Basic({"N_in": 2, "N_rec": 6, "N_out": 2, "dt": 10, "tau": 100, "seed": 0}).save(tmp_path / "w")
    configs.append(Basic({"load_weights_path": path}).config())
    keys = set().union(*configs)
    assert {"explicit_masks", "load_weights_path", "version"} <= keys
    missing = sorted(k for k in keys if not _documented(k))
    assert not missing, f"config() keys not documented in {DOC.name}: {missing}"


def _table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| `")]


def test_documented_defaults_match_config():
    """A parameter row ``| `key` | `literal` | ...`` states the default a bare model's config() holds."""
    basic = _configs()[0]
    checked = []
    for row in _table_rows(TEXT.split("## Parameters", 1)[1].split("\n## ", 1)[0]):
        keys = re.findall(r"`([^`]+)`", row[0])
        default = re.fullmatch(r"`([^`]+)`", row[1])
        if default is None:
            continue
        try:
            value = json.loads(default.group(1))
        except ValueError:
            continue
        for key in keys:
            if key in basic and key not in ("optimizer", "initializer"):
                assert basic[key] == value, f"{key}: the page says {value!r}, config() has {basic[key]!r}"
                checked.append(key)
    assert {"transfer_function", "rec_noise", "autapses", "rec_density", "W_rec_train", "learning_rate",
            "clip_grads", "loss_function", "regularizers", "fixed"} <= set(checked)


def test_train_keys_and_agent_keys_are_documented():
    from agents import trainer
    from shaping.lab import AGENT_KEYS

    section = TEXT.split("## Training", 1)[1].split("\n## ", 1)[0]
    rows = {k for row in _table_rows(section) for k in re.findall(r"`([^`]+)`", row[0])}
    assert rows == set(trainer._KEYS)
    section = TEXT.split("## The agent process", 1)[1].split("\n## ", 1)[0]
    rows = {k for row in _table_rows(section) for k in re.findall(r"`([^`]+)`", row[0])}
    assert rows == set(AGENT_KEYS)


def test_registered_names_are_documented():
    from agents import constraints, initializers, losses, optimizers, regularizers

    names = [n for m in (constraints, initializers, losses, optimizers, regularizers) for n in m._registry.names()]
    assert not [n for n in names if not _documented(n)]
