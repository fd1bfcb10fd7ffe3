"""Suite-wide settings: one intra-op thread per test process.

The CI machine has 2 cores and the integration tests run worker subprocesses beside pytest; with
torch's default threads they oversubscribe the cores and run many times slower.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start

import torch  # noqa: E402

torch.set_num_threads(1)

from .s3server import MotoServer, credentials_env  # noqa: E402

# Fixtures that mean "a real chromium" or "real worker / server processes": a test using one
# (directly or through another fixture) gets the browser or e2e marker, so the fast lane
# (make test-fast: -m "not slow and not browser and not e2e") leaves it out without a list.
BROWSER_FIXTURES = frozenset({"browser"})
E2E_FIXTURES = frozenset({"stack", "shared_stack", "s3_server", "s3_bucket"})


# Under pytest-xdist (make test: -n 2 --dist loadgroup) the tests that use the machine's shared
# services (Redis databases, PostgreSQL, fixed ports, chromium, worker and server processes: the
# api, worker, frontend and benchmark tests) run one at a time in one process, as they always
# did; the library's tests (tests/rpg_core: in-process, temporary files only) run beside them,
# with the long tests elsewhere marked ``isolated`` (benchmark dry runs on temporary files).
SERIAL_GROUP = "services"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        beside = item.nodeid.startswith("tests/rpg_core/") or item.get_closest_marker("isolated")
        if not beside:
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUP))
        names = set(getattr(item, "fixturenames", ()))
        if names & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if names & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 API server process (moto's standalone server) for the session, with boto3's
    credential variables set for this process and the processes it starts."""
    saved = {k: os.environ.get(k) for k in credentials_env()}
    os.environ.update(credentials_env())
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> str:
    """A fresh bucket on the session's server."""
    return s3_server.make_bucket()
