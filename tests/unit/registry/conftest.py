from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.registry.fake import FakeRegistry, running


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    yield from running()
