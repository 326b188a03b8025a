"""hsmcert key create | list | show | rotate against the emulator, through the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .conftest import HSM, unique


def test_create_show_list_rotate(emulator: Any, cli: Any) -> None:
    name = unique("cli")
    ref = f"managedhsm:{HSM}:{name}"
    made = cli("key", "create", "--key", ref, "--kty", "EC", "--curve", "P-384", "--label", "tlsKey",
               "--tag", "env=test", "--output", "json")  # fmt: skip
    assert made.code == 0, made.err
    data = json.loads(made.out)
    assert data["kty"] == "EC" and data["curve"] == "P-384" and data["size"] == 384
    assert data["key_type"] == "EC-HSM" and data["key_ops"] == ["sign", "verify"]
    assert data["tags"] == {"env": "test", "p11_pri_CKA_LABEL": "tlsKey", "p11_pub_CKA_LABEL": "tlsKey"}
    assert data["label"] == "tlsKey" and data["ref"] == f"{ref}?version={data['version']}"
    assert load_pem_public_key(data["public_key_pem"].encode()).key_size == 384

    shown = json.loads(cli("key", "show", "--key", ref, "--output", "json").out)
    assert shown["version"] == data["version"] and shown["spki_sha256"] == data["spki_sha256"]

    listed = json.loads(cli("--output", "json", "key", "list", "--hsm", HSM, "--label", "tlsKey").out)
    assert listed["service"] == f"managedhsm:{HSM}"
    entry = next(k for k in listed["keys"] if k["name"] == name)
    assert entry["ref"] == ref and entry["label"] == "tlsKey" and entry["enabled"] is True
    assert all(k["label"] == "tlsKey" for k in listed["keys"])

    rotated = cli("key", "rotate", "--key", ref, "--output", "json")
    assert rotated.code == 0, rotated.err
    new = json.loads(rotated.out)
    assert new["version"] != data["version"] and new["label"] == "tlsKey"
    assert json.loads(cli("key", "show", "--key", ref, "--output", "json").out)["version"] == new["version"]
    old = json.loads(cli("key", "show", "--key", data["ref"], "--output", "json").out)
    assert old["version"] == data["version"]

    text = cli("key", "show", "--key", ref)
    assert "label:      tlsKey" in text.out and "BEGIN PUBLIC KEY" in text.out


def test_rsa_key_defaults(emulator: Any, cli: Any) -> None:
    made = cli(
        "key", "create", "--key", f"managedhsm:{HSM}:{unique('rsa')}", "--kty", "rsa", "--output", "json"
    )
    assert made.code == 0, made.err
    data = json.loads(made.out)
    assert data["size"] == 3072 and data["key_ops"] == ["sign", "verify", "decrypt", "encrypt"]


def test_existing_key_is_not_replaced(emulator: Any, cli: Any) -> None:
    ref = f"managedhsm:{HSM}:{unique('dup')}"
    assert cli("key", "create", "--key", ref, "--kty", "EC").code == 0
    again = cli("key", "create", "--key", ref, "--kty", "EC")
    assert again.code == 7 and "already exists" in again.err and "hsmcert key rotate" in again.err


def test_bad_input_is_one_line_and_exit_2(emulator: Any, cli: Any) -> None:
    ref = f"managedhsm:{HSM}:{unique('bad')}"
    for args, text in [
        (("--kty", "DSA"), "Unknown key type"),
        (("--kty", "RSA", "--size", "1024"), "not 1024"),
        (("--kty", "EC", "--curve", "P-192"), "Unknown curve"),
        (("--kty", "EC", "--tag", "novalue"), "Invalid tag"),
        (("--kty", "EC", "--ops", "sign,fly"), "Unknown key operation"),
    ]:
        result = cli("key", "create", "--key", ref, *args)
        assert result.code == 2 and text in result.err and "Traceback" not in result.err, (args, result.err)
    bad_ref = cli("key", "show", "--key", "managedhsm:x")
    assert bad_ref.code == 2 and "Invalid key reference" in bad_ref.err
    assert cli("key", "list").code == 2


def test_missing_key_exit_3(emulator: Any, cli: Any) -> None:
    result = cli("key", "show", "--key", f"managedhsm:{HSM}:{unique('nope')}")
    assert result.code == 3 and "no key" in result.err


@pytest.mark.process
def test_the_key_and_auth_commands_load_no_sdk_at_start_up() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import hsmcert.cli.keys, hsmcert.cli.auth; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('azure', 'cryptography')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
