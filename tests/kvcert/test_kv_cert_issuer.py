"""The ``kv-cert`` issuer of hsmcert renew: a new version of a Key Vault certificate object (Self, and Unknown
signed by an HSM CA key), the leaf for the key version the vault made, checked as the renewal engine does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.errors import UsageError
from hsmcert.lifecycle import issuers
from hsmcert.lifecycle.state import ManagedCert
from hsmcert.pki.io import load_certificates
from hsmcert.pki.lint import lint_certificate
from hsmcert.pki.signing import same_public_key, signature_is_valid
from tests.pki.helpers import assert_chain_verifies, write_pem

from .conftest import VAULT, ok, unique


def _created(cli: Any, name: str, *extra: str) -> dict[str, Any]:
    args = ("--output", "json", "kv-cert", "create", "--vault", VAULT, name, "--subj", f"/CN={name}.test")
    document: dict[str, Any] = json.loads(ok(cli(*args, "--san", f"DNS:{name}.test", *extra)).out)
    return document


def _record(name: str, key: str, tmp_path: Path, **issuer: str) -> ManagedCert:
    return ManagedCert(
        name=name,
        key=key,
        issuer={"kind": "kv-cert", "vault": VAULT, **issuer},
        subject=f"/CN={name}.test",
        cert=str(tmp_path / f"{name}.pem"),
        sans=[f"DNS:{name}.test"],
    )


def _check_like_the_engine(issued: issuers.Issued) -> None:
    """The leaf is for the key version named, signed by its signer (else the chain's first, else itself),
    pkilint-clean."""
    from hsmcert.session import default_session

    assert issued.key is not None
    key = default_session().open_key(issued.key)
    assert same_public_key(issued.leaf.public_key(), key.public_key)
    signer = issued.issuer_certificate
    assert signature_is_valid(signer.public_key(), issued.leaf)
    assert lint_certificate(issued.leaf.public_bytes(Encoding.DER)) == []


def test_the_kind_is_registered_and_checks_its_parameters() -> None:
    issuer = issuers.get("kv-cert")
    assert "kv-cert" in issuers.kinds()
    assert issuer.check({"vault": "Contoso"}) == {"vault": "contoso"}
    for bad in ({}, {"vault": "contoso", "colour": "red"}, {"vault": "contoso", "ca_key": "managedhsm:h:k"}):
        with pytest.raises(UsageError):
            issuer.check(bad)


def test_self_issued_object_renews_as_a_new_version_with_a_new_key_version(cli: Any, tmp_path: Path) -> None:
    from hsmcert.session import default_session

    name = unique("life")
    made = _created(cli, name, "--kty", "EC-HSM")
    record = _record(name, made["key"], tmp_path)
    session = default_session()
    issued = issuers.get("kv-cert").issue(record, session, session.private_key(record.key))
    _check_like_the_engine(issued)
    assert issued.key != made["key"] and issued.key is not None
    assert issued.key.startswith(f"vault:{VAULT}:{name}?version=")
    assert issued.chain == []
    shown = json.loads(ok(cli("--output", "json", "kv-cert", "show", "--vault", VAULT, name)).out)
    assert shown["key"] == issued.key and shown["serial"] == format(issued.leaf.serial_number, "x")


def test_unknown_issuer_object_renews_through_an_hsm_ca(
    cli: Any, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    from hsmcert.session import default_session

    name = unique("life-ca")
    _created(cli, name, "--kty", "RSA-HSM", "--size", "2048", "--issuer", "Unknown")
    params = {"ca_key": hsm_ca["key"], "ca_cert": str(hsm_ca["cert"])}
    record = _record(name, f"vault:{VAULT}:{name}", tmp_path, **params)
    session = default_session()
    issuer = issuers.get("kv-cert")
    # the first version waits for its chain: a renewal without a CA would leave it so; with one it is merged
    ok(cli("kv-cert", "cancel", "--vault", VAULT, name))
    issued = issuer.issue(record, session, session.private_key(record.key))
    root = load_certificates(hsm_ca["cert"])[0]
    _check_like_the_engine(issued)
    assert issued.chain == [] and issued.signer == root  # the root signed the leaf; it is not sent
    assert issued.leaf.issuer.rfc4514_string() == "CN=Vault Test Root,O=hsmcert tests"
    assert_chain_verifies(write_pem(tmp_path / "leaf.pem", issued.leaf), Path(hsm_ca["cert"]))

    # without a CA the pending version is cancelled and the failure says why
    bare = _record(name, f"vault:{VAULT}:{name}", tmp_path)
    with pytest.raises(UsageError, match="names no CA"):
        issuer.issue(bare, session, session.private_key(bare.key))
    pending = cli("kv-cert", "pending", "--vault", VAULT, name, "-o", str(tmp_path / "p.csr"))
    assert pending.code == 3
