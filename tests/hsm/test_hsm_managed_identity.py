"""A user-assigned managed identity: its client id reaches the identity endpoint and the HSM sees that identity.

The emulator's managed-identity endpoint answers for the identity whose client id is asked for, as Azure's
does on a VM with several identities; a role assigned to that identity then decides what it may do.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import run_cli


@pytest.mark.parametrize("how", ["environment", "default"])
def test_the_user_assigned_identity_is_the_one_that_answers(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    client_id = str(uuid4())
    monkeypatch.delenv("HSMCERT_ACCESS_TOKEN", raising=False)
    if how == "environment":
        monkeypatch.setenv("HSMCERT_MANAGED_IDENTITY_CLIENT_ID", client_id)
    result = run_cli("--output", "json", "whoami", "--credential", "managed-identity")
    assert result.code == 0, result.err
    identity = json.loads(result.out)
    assert identity["credential"] == "managed-identity"
    if how == "environment":
        assert identity["object_id"] == client_id
    else:  # no client id: the VM's system-assigned identity (the emulator's administrator)
        assert identity["object_id"] == emulator.principal_id("admin")


def test_the_user_assigned_identity_is_refused_until_granted(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsmcert.azure import keycache
    from hsmcert.session import default_session

    name = f"mi-{uuid4().hex[:8]}"
    ref = f"managedhsm:local-hsm:{name}"
    default_session().keys.create(ref, "EC", curve="P-256")
    keycache.forget(ref)
    client_id = str(uuid4())
    with monkeypatch.context() as m:
        m.setenv("HSMCERT_MANAGED_IDENTITY_CLIENT_ID", client_id)
        refused = run_cli("key", "show", "--key", ref, "--credential", "managed-identity")
    assert refused.code == 4 and f"--principal {client_id}" in refused.err, refused.err
    keycache.forget(ref)
    granted = run_cli("grant", "--hsm", "local-hsm", "--principal", client_id, "--key", name)
    assert granted.code == 0, granted.err
    with monkeypatch.context() as m:
        m.setenv("HSMCERT_MANAGED_IDENTITY_CLIENT_ID", client_id)
        shown = run_cli("key", "show", "--key", ref, "--credential", "managed-identity")
    assert shown.code == 0, shown.err
    keycache.forget(ref)
