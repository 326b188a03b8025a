"""Each run of the command line in one process starts afresh: nothing of a run is left for the next."""

from __future__ import annotations

import json

from tests.hsm.conftest import run_cli


def test_a_runs_global_options_do_not_reach_the_next_run() -> None:
    first = run_cli("--output", "json", "--quiet", "provider", "path")
    assert first.code == 0 and "path" in json.loads(first.out)
    second = run_cli("provider", "path")
    assert second.code == 0 and not second.out.startswith("{"), second.out
    bad = run_cli("key", "show", "--key", "managedhsm:x:k")  # exit 2, said although the run before was quiet
    assert bad.code == 2 and "error:" in bad.err


def test_a_run_builds_one_session_and_closes_it() -> None:
    from hsmcert.cli import _common

    seen = []
    with _common.run() as state:
        first = _common.session(endpoint="https://hsm.example.internal")
        seen.append(first is _common.session())
        assert state.session is first
    assert seen == [True]
    assert _common.current().session is None  # outside a run there is none
