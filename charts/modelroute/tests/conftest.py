"""Shared fixtures of the chart tests; helpers are in rendering.py, the contract in contract.py."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python
import pytest

from rendering import CHART


def pytest_configure(config: pytest.Config) -> None:
    # kubernetes-validate 1.28 still calls jsonschema's deprecated RefResolver (fine with the
    # pinned jsonschema), and its schemas name a metaschema jsonschema does not know.
    config.addinivalue_line(
        "filterwarnings", "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"
    )
    config.addinivalue_line("filterwarnings", "ignore:The metaschema specified by:DeprecationWarning")


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded
