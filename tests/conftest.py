"""Shared fixtures: the tiers and their prerequisites live in tests/harness."""
from __future__ import annotations

import pytest

from tests.harness.prereq import need_root
from tests.harness.registry import local_registry  # noqa: F401


@pytest.fixture(autouse=True)
def _root_for_deeper_tiers(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("e2e"):
        need_root()
