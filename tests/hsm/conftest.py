"""Fixtures of the HSM-access tests: keys made once per module in the shared emulator."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest

HSM = "local-hsm"


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run ``hsmcert ARGS`` in this process (the emulator's variables are in os.environ)."""
    from hsmcert.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_out, old_err = sys.stdout, sys.stderr
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    return run_cli


@pytest.fixture(scope="session")
def make_key(emulator: Any) -> Callable[..., str]:
    """Create a key in the emulator's default Managed HSM; returns its reference text."""
    from hsmcert.session import default_session

    def make(kty: str = "RSA", *, size: int | None = None, curve: str | None = None, **kwargs: Any) -> str:
        ref = f"managedhsm:{HSM}:{unique(kty.lower())}"
        default_session().keys.create(ref, kty, size=size, curve=curve, **kwargs)
        return ref

    return make


@pytest.fixture(scope="session")
def rsa_ref(make_key: Callable[..., str]) -> str:
    return make_key("RSA", size=2048)


@pytest.fixture(scope="session")
def ec_refs(make_key: Callable[..., str]) -> dict[str, str]:
    return {curve: make_key("EC", curve=curve) for curve in ("P-256", "P-384", "P-521")}


@pytest.fixture(scope="session", autouse=True)
def _public_key_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Keep the on-disk public-key cache of these tests out of the user's home."""
    import os

    old = os.environ.get("HSMCERT_CACHE_DIR")
    os.environ["HSMCERT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("HSMCERT_CACHE_DIR", None)
    else:
        os.environ["HSMCERT_CACHE_DIR"] = old
