"""Each run of the command line in one process starts afresh: nothing of a run is left for the next."""

from __future__ import annotations

import json
from typing import Any

from tests.hsm.conftest import run_cli


def test_a_runs_global_options_do_not_reach_the_next_run(emulator: Any) -> None:
    first = run_cli("--output", "json", "--verbose", "key", "list", "--hsm", "local-hsm")
    assert first.code == 0 and "keys" in json.loads(first.out)
    assert "http: Request URL" in first.err  # --verbose shows the HTTP requests of its run
    second = run_cli("key", "list", "--hsm", "local-hsm")
    assert second.code == 0 and not second.out.startswith("{"), second.out
    assert "http:" not in second.err, second.err  # ...and of its run only
    bad = run_cli("key", "show", "--key", "managedhsm:x:k")
    assert bad.code == 2 and bad.err.startswith("error:") and "Traceback" not in bad.err, bad.err


def test_a_run_builds_one_session_and_closes_it() -> None:
    from hsmcert.cli import _common

    seen = []
    with _common.run() as state:
        first = _common.session(endpoint="https://hsm.example.internal")
        seen.append(first is _common.session())
        assert state.session is first
    assert seen == [True]
    assert _common.current().session is None  # outside a run there is none
