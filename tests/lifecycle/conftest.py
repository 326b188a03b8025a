"""Fixtures of the lifecycle tests: a state file of the test's own, keys and a small CA in the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

HSM = "local-hsm"


def unique(prefix: str) -> str:
    return f"managedhsm:{HSM}:{prefix}-{uuid4().hex[:10]}"


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HSMCERT_CONFIG in a directory of the test's own: certificates.toml goes there."""
    directory = tmp_path / "config"
    directory.mkdir()
    monkeypatch.setenv("HSMCERT_CONFIG", str(directory / "config.toml"))
    return directory


@pytest.fixture
def hsm_session(emulator: Any) -> Iterator[Any]:
    from hsmcert.session import Session

    with Session() as session:
        yield session


def make_key(session: Any, prefix: str = "web", kty: str = "EC", **options: Any) -> str:
    ref = unique(prefix)
    session.keys.create(ref, kty, **options)
    return ref


@dataclass
class Ca:
    key: str
    cert: Path


@pytest.fixture(scope="module")
def ca(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Ca:
    """A root CA (self-signed, key in the emulator) made with hsmcert selfsign."""
    from hsmcert.pki.io import encode
    from hsmcert.pki.profiles import get_profile
    from hsmcert.pki.selfsign import build_selfsigned
    from hsmcert.pki.subject import parse_subject
    from hsmcert.session import Session

    with Session() as session:
        ref = make_key(session, "ca", "EC", curve="P-384")
        signed = build_selfsigned(
            session.private_key(ref),
            parse_subject("/O=Test/CN=Lifecycle Root"),
            profile=get_profile("root-ca"),
            days=3650,
        )
    path = tmp_path_factory.mktemp("ca") / "root.pem"
    path.write_bytes(encode(signed.obj))
    return Ca(ref, path)
