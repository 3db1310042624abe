"""Multi-region networks: connectivity masks, Dale signs and unit labels from a readable spec.

A spec is plain data (JSON-able), so a lab config can hold it and a model's ``config()`` can give it back.
Units are numbered region by region, in the order the regions are listed; inside a Dale region the
excitatory units come first. Connections are written pre -> post (the masks are ``[post, pre]``, see
:mod:`agents.constraints`). Every random draw comes from the ``seed`` the model passes in.

Gallery (each line is one entry of the spec)::

    "regions": {"sensory": 30, "motor": 20}                 # two regions, 50 units
    "regions": [{"name": "PFC", "N": 40, "dale_ratio": 0.8}, {"name": "PPC", "N": 40, "dale_ratio": 0.8}]
    "dale_ratio": 0.8                                       # default for every region that sets none
    "connections": ["sensory -> sensory"]                   # all-to-all inside a region (p = 1)
    "connections": ["sensory -> motor: 0.2"]                # each synapse exists with probability 0.2
    "connections": [("motor", "sensory", 0.1)]              # the same as a (pre, post, p) triple
    "connections": [{"pre": "PFC", "post": "PPC", "p": 0.1, "source": "E"}]   # long-range, excitatory only
    "inputs": ["sensory"]                                   # only sensory units receive the inputs
    "inputs": {"sensory": [0], "motor": [1]}                # input channel 0 to sensory, 1 to motor
    "outputs": ["motor"]                                    # only motor units project to the outputs

Defaults: without ``connections`` each region is fully connected to itself and to no other region; without
``inputs``/``outputs`` every region receives every input / projects to every output. Self-connections
follow the model's ``autapses`` flag, applied after this builder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .dale import MATRICES, dale_signs, validate_dale_ratio


@dataclass
class Regions:
    """What :func:`build_regions` returns.

    Attributes:
        names: region names in unit order.
        sizes: units per region.
        labels: region name of each recurrent unit, length ``N_rec``.
        masks: ``{"W_in": (N_rec, N_in), "W_rec": (N_rec, N_rec), "W_out": (N_out, N_rec)}`` 0/1 float32.
        sign_rec: ``(N_rec,)`` +1/-1 when the regions obey Dale's principle, else None.
    """

    names: list[str]
    sizes: list[int]
    labels: list[str]
    masks: dict[str, np.ndarray]
    sign_rec: np.ndarray | None

    @property
    def N_rec(self) -> int:
        return int(sum(self.sizes))

    def units(self, name: str) -> np.ndarray:
        """Indices of the units of region ``name``."""
        return np.flatnonzero(np.asarray(self.labels) == name)


_ARROW = re.compile(r"^\s*([^\s:>-][^:>]*?)\s*->\s*([^:]+?)\s*(?::\s*([0-9.eE+-]+)\s*)?$")


def _regions_list(spec: Mapping[str, Any]) -> list[dict]:
    raw = spec.get("regions")
    if isinstance(raw, Mapping):
        raw = [{"name": k, **(v if isinstance(v, Mapping) else {"N": v})} for k, v in raw.items()]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"regions spec: 'regions' must be a non-empty list of {{'name', 'N'}} or a "
                         f"{{name: N}} mapping, got {raw!r}")
    out, seen = [], set()
    for r in raw:
        if not isinstance(r, Mapping) or "name" not in r or "N" not in r:
            raise ValueError(f"regions spec: each region needs 'name' and 'N', got {r!r}")
        name, n = str(r["name"]), r["N"]
        if name in seen:
            raise ValueError(f"regions spec: region {name!r} is listed twice")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"regions spec: region {name!r} needs a positive integer N, got {n!r}")
        seen.add(name)
        out.append({"name": name, "N": int(n), "dale_ratio": r.get("dale_ratio", spec.get("dale_ratio"))})
    return out


def _connection(entry: Any) -> tuple[str, str, float, str]:
    if isinstance(entry, str):
        m = _ARROW.match(entry)
        if not m:
            raise ValueError(f"regions spec: cannot read connection {entry!r}; write 'pre -> post' or "
                             f"'pre -> post: p'")
        return m.group(1), m.group(2), float(m.group(3)) if m.group(3) else 1.0, "all"
    if isinstance(entry, Mapping):
        return (str(entry["pre"]), str(entry["post"]), float(entry.get("p", 1.0)),
                str(entry.get("source", "all")))
    if isinstance(entry, (list, tuple)) and len(entry) in (2, 3):
        return str(entry[0]), str(entry[1]), float(entry[2]) if len(entry) == 3 else 1.0, "all"
    raise ValueError(f"regions spec: a connection is 'pre -> post: p', (pre, post, p) or "
                     f"{{'pre', 'post', 'p', 'source'}}, got {entry!r}")


def _channels(value: Any, names: list[str], n_channels: int, what: str) -> dict[str, list[int]]:
    if value is None:
        return {name: list(range(n_channels)) for name in names}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        out = {}
        for name, chans in value.items():
            chans = [int(c) for c in (chans if isinstance(chans, (list, tuple)) else [chans])]
            bad = [c for c in chans if not 0 <= c < n_channels]
            if bad:
                raise ValueError(f"regions spec: {what} channels {bad} of region {name!r} are outside "
                                 f"0..{n_channels - 1}")
            out[str(name)] = chans
        return out
    return {str(name): list(range(n_channels)) for name in value}


def build_regions(spec: Mapping[str, Any], N_in: int, N_out: int, seed: int = 0) -> Regions:
    """Masks, Dale signs and labels of a multi-region network (see the module docstring for the spec).

    Args:
        spec: the region spec.
        N_in: number of input channels. N_out: number of output channels.
        seed: seed of the random synapse draws (connections with p < 1).

    Raises:
        ValueError: an unknown region name (the message lists the known ones), a bad size or probability,
            or a mix of Dale and non-Dale regions.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"regions spec must be a mapping, got {type(spec).__name__}")
    known = {"regions", "connections", "inputs", "outputs", "dale_ratio"}
    extra = set(spec) - known
    if extra:
        raise ValueError(f"regions spec: unknown keys {sorted(extra)}; known keys: {sorted(known)}")
    regions = _regions_list(spec)
    names = [r["name"] for r in regions]
    sizes = [r["N"] for r in regions]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    index = {name: np.arange(starts[i], starts[i + 1]) for i, name in enumerate(names)}
    N_rec = int(starts[-1])

    def check(name: str, where: str) -> np.ndarray:
        if name not in index:
            raise ValueError(f"regions spec: {where} names region {name!r}; regions are {names}")
        return index[name]

    ratios = [r["dale_ratio"] for r in regions]
    if any(d is not None for d in ratios) and any(d is None for d in ratios):
        missing = [r["name"] for r in regions if r["dale_ratio"] is None]
        raise ValueError(f"regions spec: either every region obeys Dale's principle or none does; "
                         f"{missing} set no dale_ratio")
    sign_rec = None
    if ratios[0] is not None:
        sign_rec = np.concatenate([dale_signs(validate_dale_ratio(d, n), n) for d, n in zip(ratios, sizes)])

    rng = np.random.default_rng(int(seed))
    rec = np.zeros((N_rec, N_rec), dtype=np.float32)
    connections = spec.get("connections")
    if connections is None:
        connections = [f"{n} -> {n}" for n in names]
    for entry in connections:
        pre, post, p, source = _connection(entry)
        pre_idx, post_idx = check(pre, "a connection"), check(post, "a connection")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"regions spec: connection {pre} -> {post} has p={p}; need 0 <= p <= 1")
        if source not in ("all", "E", "I"):
            raise ValueError(f"regions spec: connection {pre} -> {post}: source must be 'all', 'E' or 'I', "
                             f"got {source!r}")
        if source != "all":
            if sign_rec is None:
                raise ValueError(f"regions spec: connection {pre} -> {post} sets source={source!r}, which "
                                 f"needs Dale's principle (a dale_ratio)")
            pre_idx = pre_idx[(sign_rec[pre_idx] > 0) == (source == "E")]
        block = (rng.random((len(post_idx), len(pre_idx))) < p).astype(np.float32)
        rec[np.ix_(post_idx, pre_idx)] = np.maximum(rec[np.ix_(post_idx, pre_idx)], block)

    w_in = np.zeros((N_rec, N_in), dtype=np.float32)
    for name, chans in _channels(spec.get("inputs"), names, N_in, "input").items():
        w_in[np.ix_(check(name, "inputs"), chans)] = 1.0
    w_out = np.zeros((N_out, N_rec), dtype=np.float32)
    for name, chans in _channels(spec.get("outputs"), names, N_out, "output").items():
        w_out[np.ix_(chans, check(name, "outputs"))] = 1.0
    labels = [name for name, n in zip(names, sizes) for _ in range(n)]
    masks = dict(zip(MATRICES, (w_in, rec, w_out)))
    return Regions(names, sizes, labels, masks, sign_rec)
