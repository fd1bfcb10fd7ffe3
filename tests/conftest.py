"""Suite-wide settings: one intra-op thread per test process.

The CI machine has 2 cores and the integration tests run worker subprocesses beside pytest; with
torch's default threads they oversubscribe the cores and run many times slower.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start

import torch  # noqa: E402

torch.set_num_threads(1)


# Fixtures that mean "a real chromium" or "real worker / server processes": a test using one
# (directly or through another fixture) gets the browser or e2e marker, so the fast lane
# (make test-fast: -m "not slow and not browser and not e2e") leaves it out without a list.
BROWSER_FIXTURES = frozenset({"browser"})
E2E_FIXTURES = frozenset({"stack", "shared_stack"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if names & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
