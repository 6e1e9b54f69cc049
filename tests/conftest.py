"""Root conftest: the harness fixtures (tests/harness/fixtures.py) and marker wiring."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.harness.fixtures"]

# Fixtures that need root; tests using them get the `root` marker (select with -m "not root").
_ROOT_FIXTURES = frozenset({"dockerd", "buildah", "nested_overlay", "overlay_dockerd_failure"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _ROOT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)
