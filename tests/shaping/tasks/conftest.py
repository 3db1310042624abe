"""Shared fixtures for the task tests: one parametrised ``task`` per built-in, with readable ids."""
from __future__ import annotations

import pytest
from builtin_cases import CASES


@pytest.fixture(params=sorted(CASES))
def name(request) -> str:
    return request.param


@pytest.fixture
def case(name):
    return CASES[name]


@pytest.fixture
def task(case):
    return case.factory(seed=1234)
