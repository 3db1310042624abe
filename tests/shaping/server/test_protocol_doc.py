"""PROTOCOL.md and protocol.py cannot drift: the document's tables equal the module's constants."""
from __future__ import annotations

import re
from pathlib import Path

from shaping import protocol

DOC = Path(protocol.__file__).with_name("PROTOCOL.md")


def tables(section: str) -> list[list[dict]]:
    """The tables under the heading ``section`` (up to the next heading of the same or higher level)."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"#+ " + re.escape(section), line))
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    body = []
    for line in lines[start + 1:]:
        m = re.match(r"(#+) ", line)
        if m and len(m.group(1)) <= level:
            break
        body.append(line)
    out, current = [], []
    for line in body + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(_parse(current))
            current = []
    return out


def _parse(rows: list[str]) -> list[dict]:
    def cells(row: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", row.strip())[1:-1]
        return [p.strip().replace("\\|", "|") for p in parts]

    head = cells(rows[0])
    assert set(rows[1].replace("|", "").strip()) <= set("-: "), "second row must be the separator"
    return [dict(zip(head, cells(r))) for r in rows[2:]]


def test_commands_table():
    (table,) = tables("Commands")
    assert {r["Command"]: int(r["Id"]) for r in table} == protocol.COMMANDS
    senders = {r["Command"]: r["Sender"] for r in table}
    assert {c for c, s in senders.items() if s in ("agent", "both")} == protocol.AGENT_COMMANDS
    assert {c for c, s in senders.items() if s in ("server", "both")} == protocol.SERVER_COMMANDS
    assert {c for c, s in senders.items() if s == "operator"} == protocol.OPERATOR_COMMANDS


def test_header_fields_table():
    (table,) = tables("Header fields")
    doc: dict[str, dict] = {}
    for r in table:
        assert r["Required"] in ("yes", "no"), r
        doc.setdefault(r["Command"], {})[r["Field"]] = (r["Type"], r["Required"] == "yes")
    assert doc == {k: v for k, v in protocol.HEADER_FIELDS.items() if v}
    assert all(not v for k, v in protocol.HEADER_FIELDS.items() if k not in doc)  # e.g. HEARTBEAT: no fields


def test_arrays_and_dtypes_tables():
    arrays, dtypes = tables("Arrays")
    doc: dict[str, dict] = {}
    for r in arrays:
        doc.setdefault(r["Command"], {})[r["Array"]] = (r["dtype"], r["Required"] == "yes")
    assert doc == protocol.ARRAYS
    assert tuple(r["dtype"] for r in dtypes) == protocol.DTYPES


def test_limits_table():
    (table,) = tables("Limits")
    assert {r["Limit"]: int(r["Default"]) for r in table} == protocol.LIMITS.to_dict()


def test_error_codes_table():
    (table,) = tables("Error codes")
    assert {r["Name"]: int(r["Code"]) for r in table} == protocol.ERRORS
    assert {r["Name"]: r["Next"] for r in table} == protocol.ERROR_ACTIONS


def test_signature_is_as_documented():
    text = DOC.read_text()
    assert f"`{protocol.MAGIC.decode()}`" in text
    assert protocol.SIGNATURE == b"SKBX\x00\x02" and f"version {protocol.VERSION}" in text
