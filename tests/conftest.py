"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.agent",
    "tests.fixtures.native",
    "tests.fixtures.nginx",
]
