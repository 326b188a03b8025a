"""Fixtures of the Key Vault certificate tests: the session emulator's vault, an HSM CA, the CLI in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import CliResult, run_cli
from tests.hsm.conftest import _public_key_cache as _public_key_cache  # the cache out of the home

VAULT = "local-vault"


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.err
    return result


@pytest.fixture(scope="module")
def hsm_ca(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A root CA whose key is in the emulator's Managed HSM: ``{"key": REF, "cert": PATH}``."""
    work = tmp_path_factory.mktemp("kvcert-ca")
    key = f"managedhsm:local-hsm:{unique('kv-ca')}"
    ok(run_cli("key", "create", "--key", key, "--kty", "EC", "--curve", "P-384"))
    cert = work / "ca.pem"
    ok(
        run_cli(
            "selfsign", "--key", key, "--subj", "/O=hsmcert tests/CN=Vault Test Root", "--profile", "root-ca",
            "--days", "3650", "-o", str(cert),
        )
    )  # fmt: skip
    return {"key": key, "cert": cert}


@pytest.fixture
def cli(emulator: Any) -> Any:
    return run_cli


def issue_for(csr: Path, hsm_ca: dict[str, Any], out: Path, days: int = 90) -> Path:
    """``hsmcert issue`` with the HSM CA for ``csr``; the leaf then the root in ``out``."""
    leaf = out.with_suffix(".leaf.pem")
    ok(
        run_cli(
            "issue", "--ca-key", hsm_ca["key"], "--ca-cert", str(hsm_ca["cert"]), "--csr", str(csr),
            "--days", str(days), "-o", str(leaf),
        )
    )  # fmt: skip
    out.write_bytes(leaf.read_bytes() + Path(hsm_ca["cert"]).read_bytes())
    return out
