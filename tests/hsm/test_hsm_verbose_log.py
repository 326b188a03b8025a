"""--verbose shows each HTTP request to the HSM, and never the bearer token."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from uuid import uuid4


def test_verbose_logs_requests_with_the_token_redacted(emulator: Any) -> None:
    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:verbose-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    token = emulator.token("admin")
    env = {**os.environ, "HSMCERT_ACCESS_TOKEN": token, "HSMCERT_CACHE_DIR": "/nonexistent/no-cache"}
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "--verbose", "csr", "--key", ref, "--subj", "/CN=v", "--credential", "env-token"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "http: Request URL:" in result.stderr and "/sign?" in result.stderr
    assert "'Authorization': 'REDACTED'" in result.stderr
    assert token not in result.stderr and token[:40] not in result.stdout + result.stderr
    assert token.split(".")[2] not in result.stderr  # not even the signature part


def test_a_library_user_logging_everything_at_debug_sees_no_token(emulator: Any) -> None:
    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:debuglog-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "RSA", size=2048)
    token = emulator.token("admin")
    program = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
        "from cryptography.hazmat.primitives import hashes\n"
        "from cryptography.hazmat.primitives.asymmetric import padding\n"
        "from hsmcert.signer import load_private_key\n"
        "from hsmcert.session import Session\n"
        f"key = load_private_key({ref!r}, session=Session(credential='env-token'))\n"
        "key.sign(b'data', padding.PKCS1v15(), hashes.SHA256())\n"
        "print('signed')\n"
    )
    env = {**os.environ, "HSMCERT_ACCESS_TOKEN": token}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0 and "signed" in result.stdout, result.stderr
    assert "Authorization" in result.stderr  # the requests are logged...
    assert token.split(".")[2] not in result.stderr  # ...without the token
