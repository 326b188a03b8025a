"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py.

In CI (``CI=true``) a skipped test is reported as a failure: every component the suite drives
(nginx, haproxy, stunnel, curl, the native provider) is installed by ``make test``, so a skip there
means the set-up is broken, not that the test does not apply.

A run fails too when a process it started (an emulator, an agent, nginx, anything) outlives it
(tests/fixtures/processes.py).
"""

from __future__ import annotations

import os

import pytest

from tests.fixtures import user_dirs

# Before anything imports hsmcert: the session's own XDG cache/config/data directories, inherited by
# every process the tests start, so that no test writes into the user's real ones.
user_dirs.isolate()

pytest_plugins = [
    "tests.fixtures.process_marks",
    "tests.fixtures.emulator",
    "tests.fixtures.agent",
    "tests.fixtures.native",
    "tests.fixtures.nginx",
    "tests.fixtures.pebble",
    "tests.fixtures.processes",
]

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if _IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, where every component must be installed: {reason}"
    return report


def pytest_unconfigure(config: pytest.Config) -> None:
    user_dirs.cleanup()
