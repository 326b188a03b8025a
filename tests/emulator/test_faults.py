"""Faults on purpose: 429 with Retry-After, 503, dropped connections, latency; at start and at run time."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.conftest import unique
from tests.fixtures.emulator import start_emulator


def _get(emulator: Any, url: str, path: str = "/keys?api-version=7.5") -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(emulator.ca))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {emulator.token()}"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture()
def faulty(emulator: Any) -> Iterator[tuple[str, str]]:
    """A Managed HSM of its own (faults set on it alone); faults cleared afterwards."""
    name = unique("faulty")
    url = emulator.url("managedhsm", name)
    yield name, url
    emulator.set_faults()


def test_throttle_answers_429_with_retry_after(emulator: Any, faulty: tuple[str, str]) -> None:
    name, url = faulty
    emulator.set_faults(throttle=1.0, retry_after=7, services=[name])
    status, headers, body = _get(emulator, url)
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(body)["error"]["code"] == "Throttled"
    assert _get(emulator, emulator.url("managedhsm", "local-hsm"))[0] == 200  # other services are untouched


def test_the_sdk_retries_through_throttling_and_503s(
    emulator: Any, faulty: tuple[str, str], credential: Any
) -> None:
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient

    name, url = faulty
    keys = KeyClient(url, credential, connection_verify=str(emulator.ca))
    key = keys.create_ec_key(unique(), curve="P-256", hardware_protected=True)
    emulator.set_faults(throttle=0.3, unavailable=0.2, retry_after=0, services=[name])
    crypto = CryptographyClient(
        key,
        credential,
        connection_verify=str(emulator.ca),
        retry_backoff_factor=0.01,
        retry_total=30,
        retry_status=30,
    )
    for _ in range(10):
        assert crypto.sign("ES256", bytes(32)).signature
    assert emulator.audit()[-1]["operation"] in ("sign", "get")


def test_unavailable_and_dropped_connections(emulator: Any, faulty: tuple[str, str]) -> None:
    name, url = faulty
    emulator.set_faults(unavailable=1.0, services=[name])
    status, _, body = _get(emulator, url)
    assert status == 503 and json.loads(body)["error"]["code"] == "ServiceUnavailable"
    emulator.set_faults(drop=1.0, services=[name])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        _get(emulator, url)
    emulator.set_faults()
    assert _get(emulator, url)[0] == 200


def test_latency_is_added(emulator: Any, faulty: tuple[str, str]) -> None:
    name, url = faulty
    emulator.set_faults(latency_ms=300, services=[name])
    started = time.monotonic()
    assert _get(emulator, url)[0] == 200
    assert time.monotonic() - started >= 0.3


def test_bad_fault_settings_are_refused(emulator: Any) -> None:
    from hsmcert.errors import UsageError

    with pytest.raises(UsageError, match="between 0 and 1"):
        emulator.set_faults(throttle=2)
    with pytest.raises(UsageError, match="Unknown fault"):
        emulator.set_faults(explode=1)


@pytest.mark.process
def test_faults_at_start_and_from_the_cli(tmp_path: Path) -> None:
    own = start_emulator(tmp_path / "emu", throttle=1.0)
    try:
        assert _get(own, own.url())[0] == 429
        hsmcert = [sys.executable, "-m", "hsmcert"]
        done = subprocess.run(
            [
                *hsmcert,
                "--output",
                "json",
                "emulator",
                "faults",
                "--data",
                str(own.data_dir),
                "--latency-ms",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["throttle"] == 0 and json.loads(done.stdout)["latency_ms"] == 5
        assert _get(own, own.url())[0] == 200
        done = subprocess.run(
            [*hsmcert, "emulator", "faults", "--data", str(own.data_dir), "--drop", "1.5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "between 0 and 1" in done.stderr and "Traceback" not in done.stderr
        for option, value in (("--latency-ms", "inf"), ("--latency-ms", "nan"), ("--latency-ms", "1e12")):
            done = subprocess.run(
                [*hsmcert, "emulator", "faults", "--data", str(own.data_dir), option, value],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 2, (value, done.stdout, done.stderr)
            assert "between 0 and 60000 ms" in done.stderr and "Traceback" not in done.stderr
        assert _get(own, own.url())[0] == 200  # the refused values changed nothing
    finally:
        own.stop()


@pytest.mark.parametrize(
    "settings",
    [
        {"latency_ms": float("inf")},
        {"latency_ms": float("nan")},
        {"latency_ms": 1e12},
        {"latency_ms": -1},
        {"retry_after": 1e300},
        {"throttle": True},
        {"throttle": float("nan")},
        {"unavailable": "1e999"},
        {"services": ["bad name!"]},
        {"services": ["x" * 64]},
    ],
)
def test_non_finite_and_absurd_fault_values_are_refused(emulator: Any, settings: dict[str, Any]) -> None:
    from hsmcert.errors import UsageError

    with pytest.raises(
        UsageError, match=r"between|needs a number|NaN is not JSON|Infinity is not JSON|service names"
    ):
        emulator.set_faults(**settings)
    assert _get(emulator, emulator.url())[0] == 200
