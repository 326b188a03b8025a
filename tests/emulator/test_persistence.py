"""Keys, versions, roles and assignments survive stop / start; nothing private is stored in the clear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.administration import (
    KeyVaultAccessControlClient,
    KeyVaultRoleScope,
    KeyVaultSetting,
    KeyVaultSettingsClient,
)
from azure.keyvault.keys import JsonWebKey, KeyClient
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsmcert.azure import roles
from tests.emulator.conftest import Token, unique
from tests.fixtures.emulator import start_emulator


def _numbers(value: int, size: int) -> list[bytes]:
    """The byte strings that would betray ``value`` in a file: big-endian raw, and its hex."""
    raw = value.to_bytes(size, "big")
    return [raw, raw[::-1], raw.hex().encode(), raw.hex().upper().encode()]


@pytest.mark.process
def test_restart_keeps_everything_and_the_files_hold_no_private_key(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path / "emu")
    try:
        url = emulator.url("managedhsm", "restart-hsm")
        admin = Token(emulator.token())
        vault_admin = Token(emulator.token(audience="https://vault.azure.net"))
        ca = str(emulator.ca)
        keys = KeyClient(url, admin, connection_verify=ca)
        rsa_private = rsa.generate_private_key(65537, 2048)
        n = rsa_private.private_numbers()
        jwk = JsonWebKey(
            kty="RSA",
            n=n.public_numbers.n.to_bytes(256, "big"),
            e=n.public_numbers.e.to_bytes(3, "big"),
            d=n.d.to_bytes(256, "big"),
            p=n.p.to_bytes(128, "big"),
            q=n.q.to_bytes(128, "big"),
        )
        imported = keys.import_key("imported", jwk, hardware_protected=True)
        ec_private = ec.generate_private_key(ec.SECP256R1())
        e = ec_private.private_numbers()
        keys.import_key(
            "imported-ec",
            JsonWebKey(
                kty="EC",
                crv="P-256",
                x=e.public_numbers.x.to_bytes(32, "big"),
                y=e.public_numbers.y.to_bytes(32, "big"),
                d=e.private_value.to_bytes(32, "big"),
            ),
            hardware_protected=True,
        )
        aes = bytes(range(32))
        keys.import_key("imported-aes", JsonWebKey(kty="oct-HSM", k=aes), hardware_protected=True)
        first = keys.create_ec_key("made", curve="P-384", hardware_protected=True)
        second = keys.rotate_key("made")
        access = KeyVaultAccessControlClient(url, admin, connection_verify=ca)
        user = roles.role_by_slug("crypto-user")
        assert user is not None
        principal = unique("app")
        assignment = access.create_role_assignment(
            "/keys/made", user.definition_id, emulator.principal_id(principal)
        )
        custom = access.set_role_definition(KeyVaultRoleScope.GLOBAL, role_name="persisted role")
        settings = KeyVaultSettingsClient(url, admin, connection_verify=ca)
        settings.update_setting(KeyVaultSetting(name="AllowKeyManagementOperationsThroughARM", value=True))
        from azure.keyvault.certificates import CertificateClient, CertificatePolicy

        vault_url = emulator.url("vault", "restart-vault")
        certs = CertificateClient(vault_url, vault_admin, connection_verify=ca)
        made = certs.begin_create_certificate(
            "kept", CertificatePolicy(issuer_name="Self", subject="CN=kept")
        ).result()
        certs.begin_create_certificate(
            "waiting", CertificatePolicy(issuer_name="Unknown", subject="CN=w")
        ).result()
        port = url.rsplit(":", 1)[1]
        assert emulator.stop()

        for path in tmp_path.joinpath("emu").iterdir():
            if path.name == "master.key":
                assert path.stat().st_mode & 0o777 == 0o600
                continue
            data = path.read_bytes()
            secrets = [
                *_numbers(n.d, 256),
                *_numbers(n.p, 128),
                *_numbers(n.q, 128),
                *_numbers(e.private_value, 32),
                aes,
                aes.hex().encode(),
            ]
            for secret in secrets:
                assert secret not in data, f"{path.name} holds private material"
        import base64

        db = (tmp_path / "emu" / "emulator.db").read_bytes()
        assert base64.urlsafe_b64encode(n.d.to_bytes(256, "big")).rstrip(b"=")[:40] not in db

        emulator.start()
        assert emulator.url("managedhsm", "restart-hsm").endswith(f":{port}")  # the port is remembered
        admin = Token(emulator.token())
        vault_admin = Token(emulator.token(audience="https://vault.azure.net"))
        keys = KeyClient(url, admin, connection_verify=ca)
        versions = {p.version for p in keys.list_properties_of_key_versions("made")}
        assert versions == {first.properties.version, second.properties.version}
        assert keys.get_key("made").properties.version == second.properties.version
        again = keys.get_key("imported")
        assert again.key.n == imported.key.n
        signature = CryptographyClient(again, admin, connection_verify=ca).sign("RS256", bytes(32)).signature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        rsa_private.public_key().verify(
            signature, bytes(32), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        wrapped = CryptographyClient(keys.get_key("imported-aes"), admin, connection_verify=ca).wrap_key(
            "A256KW", bytes(16)
        )
        from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

        assert aes_key_unwrap(aes, wrapped.encrypted_key) == bytes(16)
        access = KeyVaultAccessControlClient(url, admin, connection_verify=ca)
        names = {a.name for a in access.list_role_assignments("/keys/made")}
        assert assignment.name in names
        assert custom.name in {d.name for d in access.list_role_definitions(KeyVaultRoleScope.GLOBAL)}
        settings = KeyVaultSettingsClient(url, admin, connection_verify=ca)
        assert settings.get_setting("AllowKeyManagementOperationsThroughARM").getboolean() is True
        certs = CertificateClient(vault_url, vault_admin, connection_verify=ca)
        assert certs.get_certificate("kept").cer == made.cer
        assert certs.get_certificate_operation("waiting").status == "inProgress"
        stranger = Token(emulator.token(principal))
        assert CryptographyClient(keys.get_key("made"), stranger, connection_verify=ca).sign(
            "ES384", bytes(48)
        )
    finally:
        emulator.stop()


def test_a_second_emulator_on_the_same_directory_is_refused(emulator: Any) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "hsmcert.emulator.process", "--data", str(emulator.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1 and "already runs" in done.stderr
