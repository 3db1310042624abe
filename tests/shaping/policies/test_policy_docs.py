"""Every example spec in docs/policies.md builds (the document and the code cannot drift apart)."""
import json
import re
import sys
from pathlib import Path

import pytest

from shaping.policies import from_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[3] / "docs" / "policies.md"
BLOCKS = re.findall(r"```(json|toml)\n(.*?)```", DOC.read_text(), re.S)


def test_the_document_has_examples():
    assert sum(lang == "json" for lang, _ in BLOCKS) >= 5 and any(lang == "toml" for lang, _ in BLOCKS)


@pytest.mark.parametrize("lang, text", BLOCKS, ids=[f"{lang}{i}" for i, (lang, _) in enumerate(BLOCKS)])
def test_example_builds(lang, text, task):
    spec = json.loads(text) if lang == "json" else tomllib.loads(text)["policy"]
    policy = from_spec(spec, task, seed=0)
    assert policy.get_config()["kind"] == spec["kind"]
    task.validate_knobs(policy.conditions()["knobs"])
