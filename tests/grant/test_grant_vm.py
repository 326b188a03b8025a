"""hsmcert grant --vm / --arc: the machine's identity is looked up through Azure Resource Manager, then granted.

Resource Manager is not available offline, so a small HTTPS server plays it (HSMCERT_ARM_URL points there,
REQUESTS_CA_BUNDLE trusts its certificate): it answers the machine look-up the way ARM does, with the
identity's principalId, a 404, a 403, or a machine without an identity. The grant itself goes to the emulator.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.x509_local import self_signed
from tests.hsm.conftest import run_cli

SUB, RG = "00000000-0000-0000-0000-00000000abcd", "rg-web"


class FakeArm:
    """An HTTPS server answering GET <machine resource id> from ``machines`` (name -> (status, body))."""

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self_signed(
            key,
            "arm test",
            extensions=[
                (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                (x509.BasicConstraints(ca=True, path_length=None), True),
            ],
        )
        self.ca = directory / "arm.pem"
        self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / "arm.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.machines: dict[str, tuple[int, dict[str, Any]]] = {}
        self.authorized: list[str] = []
        self.requested: list[str] = []
        arm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                arm.authorized.append(self.headers.get("Authorization", "")[:7])
                arm.requested.append(self.path)
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                status, body = arm.machines.get(name, (404, {"error": {"code": "ResourceNotFound"}}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key_path)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    fake = FakeArm(tmp_path)
    monkeypatch.setenv("HSMCERT_ARM_URL", fake.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    yield fake
    fake.server.shutdown()


def _grant(*args: str) -> Any:
    return run_cli("--output", "json", "grant", "--hsm", "local-hsm", "-g", RG, *args)


def test_a_vms_identity_is_looked_up_and_granted(emulator: Any, arm: FakeArm) -> None:
    from hsmcert.session import default_session

    key = f"vm-key-{uuid4().hex[:8]}"
    default_session().keys.create(f"managedhsm:local-hsm:{key}", "EC", curve="P-256")
    identity = str(uuid4())
    arm.machines["web01"] = (
        200,
        {"name": "web01", "identity": {"type": "SystemAssigned", "principalId": identity}},
    )
    result = _grant("--vm", "web01", "--key", key, "--granular")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["principal_id"] == identity
    assert (
        plan["machine"]
        == f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/web01"
    )
    assert plan["done"][-1] == {"action": "assigned", "scope": f"/keys/{key}", "role": "hsmcert Key Signer"}
    assert arm.authorized == ["Bearer "]  # ARM was asked with a token, once


@pytest.mark.parametrize(
    ("machine", "answer", "code", "says"),
    [
        ("gone", None, 3, "No VM, scale set or Arc machine named 'gone' in resource group rg-web"),
        (
            "locked",
            (403, {"error": {"code": "AuthorizationFailed", "message": "no"}}),
            4,
            "Azure Resource Manager refused GET on VM locked (403, AuthorizationFailed: no)",
        ),
        ("bare", (200, {"name": "bare", "identity": None}), 8, "az vm identity assign -g rg-web -n bare"),
    ],
)
def test_look_up_failures_are_one_line_with_the_fix(
    emulator: Any, arm: FakeArm, machine: str, answer: Any, code: int, says: str
) -> None:
    if answer is not None:
        arm.machines[machine] = answer
    result = _grant("--vm", machine, "--key", "k")
    assert result.code == code, result.err
    assert says in result.err and "Traceback" not in result.err


def test_an_arc_server_without_identity_is_told_to_reconnect(emulator: Any, arm: FakeArm) -> None:
    arm.machines["edge1"] = (200, {"name": "edge1", "identity": {}})
    result = _grant("--arc", "edge1", "--key", "k")
    assert result.code == 8 and "azcmagent connect" in result.err, result.err


def test_names_are_percent_encoded_path_segments(emulator: Any, arm: FakeArm) -> None:
    """A resource group name may hold parentheses: it goes into the URL encoded, as one segment."""
    identity = str(uuid4())
    arm.machines["web-02"] = (200, {"name": "web-02", "identity": {"principalId": identity}})
    result = run_cli(
        "--output",
        "json",
        "grant",
        "--hsm",
        "local-hsm",
        "-g",
        "rg(web).prod",
        "--vm",
        "web-02",
        "--key",
        "k",
    )
    assert result.code == 0, result.err
    assert arm.requested == [
        f"/subscriptions/{SUB}/resourceGroups/rg%28web%29.prod/providers/Microsoft.Compute/virtualMachines/web-02"
        "?api-version=2024-07-01"
    ]
    assert json.loads(result.out)["principal_id"] == identity


CORPUS = {
    "newline": "\nx",
    "semicolon": ";",
    "open-brace": "{",
    "close-brace": "}",
    "hash": "#",
    "quotes": "\"'",
    "dollar": "$x",
    "space": " x",
    "nul": "\x00",
    "traversal": "/../../providers/Microsoft.Compute/virtualMachines/other",
    "dotdot": "..",
    "api-version": "?api-version=2015-01-01",
    "percent-0a": "%0a",
    "backslash": "\\",
}
OPTIONS = {
    "--vm": "web01",
    "--arc": "edge1",
    "-g": RG,
    "--subscription": SUB,
    "--hsm": "local-hsm",
    "--key": "k",
    "--scope": "/keys/k",
    "--principal": "00000000-0000-0000-0000-000000000001",
}


@pytest.mark.parametrize("option", OPTIONS)
def test_hostile_names_are_refused_before_any_request(emulator: Any, arm: FakeArm, option: str) -> None:
    """Nothing reaches Resource Manager (or the HSM) from a name that is not a valid Azure name."""
    identity = {"identity": {"principalId": str(uuid4())}}
    arm.machines.update({"web01": (200, identity), "edge1": (200, identity), "other": (200, identity)})
    for label, payload in CORPUS.items():
        values = {"--hsm": "local-hsm", "-g": RG, "--subscription": SUB, "--key": "k"}
        values["--arc" if option == "--arc" else "--principal" if option == "--principal" else "--vm"] = (
            OPTIONS.get(option, "web01")
        )
        if option == "--scope":
            del values["--key"]
        values[option] = (
            payload if label == "dotdot" and option in ("--vm", "-g") else OPTIONS[option] + payload
        )
        args = [item for pair in values.items() for item in pair]
        result = run_cli("--output", "json", "grant", *args)
        assert result.code == 2, (option, label, result.code, result.err)
        assert result.err.lower().count("error:") == 1 and "Traceback" not in result.err, (label, result.err)
        assert arm.requested == [], (option, label, arm.requested)
