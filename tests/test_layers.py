"""The import layers of DESIGN.md, enforced (in the spirit of import-linter's "layers" and "independence"
contracts): a module imports only layers below its own; the three kinds of process (server, agents,
dashboards) never import each other nor the launcher; no import cycle, deferred (function-level) imports
included; shaping never imports TensorFlow, Keras or agents.

Imports are read from the source (ast), so the test sees every import a module can make, not only those a
particular run happens to execute.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shaping", "agents", "dashboards")

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("shaping.errors",),
    ("shaping", "shaping.protocol", "shaping.journal", "shaping.policies", "shaping.tasks", "shaping.scoring",
     "shaping.keys", "shaping.registry", "shaping.weights"),
    ("shaping.labfile", "shaping.procs", "shaping.client"),
    ("shaping.readout", "shaping.figures"),
    ("shaping.tracking",),
    ("shaping.server", "agents", "dashboards"),  # independent of each other
    ("shaping.launchers",),
    ("shaping.lab", "shaping.cli"),
]
INDEPENDENT = ("shaping.server", "agents", "dashboards")
FORBIDDEN_IN_SHAPING = ("tensorflow", "keras", "agents")
# The one sanctioned exception: ``skinnerbox agent`` (shaping.cli) hands over to the agent process's main, by name.
ALLOWED_IN_SHAPING = {("shaping.cli", "agents.agent")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def _exists(module: str) -> bool:
    path = ROOT / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (absolute names; ``from p import m`` counts ``p.m`` when
    ``m`` is a module)."""
    module = _module_name(path)
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == \
                "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):  # importlib.import_module("pkg.mod"): hidden otherwise
            found.add(node.args[0].value)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")}
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the package (module) itself
                found.add(target)
    found.discard(module)
    return {m for m in found if m}


def _project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


GRAPH = {_module_name(p): _imports(p) for p in _project_files()}


def _group(module: str, groups: tuple[str, ...]) -> str | None:
    best = None
    for prefix in groups:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def _layer(module: str) -> int | None:
    best, index = None, None
    for i, layer in enumerate(LAYERS):
        prefix = _group(module, layer)
        if prefix is not None and (best is None or len(prefix) > len(best)):
            best, index = prefix, i
    return index


def _project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def test_every_module_has_a_layer():
    missing = sorted(m for m in GRAPH if _layer(m) is None)
    assert not missing, f"modules in no layer of tests/test_layers.py (add them where DESIGN.md puts them): {missing}"


def _violations(module: str, targets: set[str]) -> list[str]:
    """The imports of ``module`` that break the layers: a layer above, or a peer among the processes."""
    own = _layer(module)
    bad = []
    for target in sorted(targets):
        if not _project(target) or _layer(target) is None:
            continue
        if _group(module, INDEPENDENT) and _group(module, INDEPENDENT) == _group(target, INDEPENDENT):
            continue  # inside one process's own package
        if _layer(target) > own or (_layer(target) == own and own == LAYERS.index(INDEPENDENT)):
            bad.append(f"{target} (layer {_layer(target)})")
    return bad


def _forbidden(module: str, targets: set[str]) -> list[str]:
    return sorted(t for t in targets if t.split(".")[0] in FORBIDDEN_IN_SHAPING
                  and (module, t) not in ALLOWED_IN_SHAPING)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_layers_below(module):
    bad = _violations(module, GRAPH[module])
    assert not bad, f"{module} (layer {_layer(module)}) imports a peer or a layer above it: {', '.join(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.split(".")[0] == "shaping"))
def test_shaping_never_imports_tensorflow_or_agents(module):
    bad = _forbidden(module, GRAPH[module])
    assert not bad, f"{module} imports {bad}: shaping is NumPy-only and never imports the agents package"


def _cycles(graph: dict[str, set[str]] = GRAPH) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), among the graph's modules."""
    edges = {m: sorted(t for t in targets if t in graph) for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _is_package_reexport(cycle: list[str]) -> bool:
    """A package's ``__init__`` re-exporting its own submodules, which import siblings through the package:
    not a dependency cycle between concerns."""
    packages = [m for m in cycle if _is_package(m)]
    return len(packages) == 1 and all(m == packages[0] or m.startswith(packages[0] + ".") for m in cycle) \
        and all(packages[0] not in GRAPH[m] for m in cycle if m != packages[0])


def test_no_import_cycles():
    cycles = [c for c in _cycles() if not _is_package_reexport(c)]
    assert not cycles, "import cycles (deferred imports included): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_layer_test_sees_a_peer_import_a_cycle_and_a_hidden_import(tmp_path):
    """The checks above can fail: an import upwards, a peer import between processes, TensorFlow in shaping and
    a cycle are each caught; relative and ``importlib.import_module("...")`` imports are seen."""
    assert _violations("shaping.server.loop", {"shaping.lab"}) == [f"shaping.lab (layer {_layer('shaping.lab')})"]
    assert _violations("shaping.readout", {"shaping.tracking.store"})  # a layer above
    assert _violations("agents.agent", {"dashboards.data"}) and _violations("dashboards.app", {"shaping.server"})
    assert not _violations("shaping.server.loop", {"shaping.server.sessions", "shaping.journal"})
    assert _forbidden("shaping.readout", {"tensorflow", "agents.rnn"}) == ["agents.rnn", "tensorflow"]
    assert _cycles({"shaping.readout": {"shaping.figures"}, "shaping.figures": {"shaping.readout"}}) == \
        [["shaping.figures", "shaping.readout"]]
    assert "shaping.journal" in GRAPH["shaping.server.loop"]  # relative imports resolve
    assert "agents.agent" in GRAPH["shaping.cli"]  # importlib.import_module("agents.agent") is seen
