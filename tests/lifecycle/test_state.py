"""certificates.toml: what hsmcert writes reads back the same, and bad entries get one clear sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsmcert.errors import NotFoundError, UsageError
from hsmcert.lifecycle.state import ManagedCert, Store, state_path


def record(name: str = "www", **changes: object) -> ManagedCert:
    fields: dict[str, object] = {
        "name": name,
        "key": "managedhsm:contoso:web?version=abc123",
        "issuer": {"kind": "hsmcert-ca", "ca_key": "managedhsm:contoso:ca", "ca_cert": "/etc/ssl/ca.pem"},
        "subject": "/O=Contoso\\, Inc./CN=www.example.com",
        "cert": f"/etc/ssl/{name}.pem",
        "fullchain": f"/etc/ssl/{name}-fullchain.pem",
        "sans": ["DNS:www.example.com", "IP:192.0.2.1"],
        "days": 30,
        "deploy_hooks": ["systemctl reload app"],
        "nginx": {"server_name": "www.example.com", "out_dir": "/etc/hsmcert/nginx"},
    }
    fields.update(changes)
    return ManagedCert(**fields)  # type: ignore[arg-type]


def test_a_saved_state_reads_back_the_same(tmp_path: Path) -> None:
    store = Store(tmp_path / "certificates.toml")
    store.put(record())
    store.put(record("api", issuer={"kind": "self-signed"}, nginx=None, deploy_hooks=[], renew_before="30d"))
    store.save()
    text = (tmp_path / "certificates.toml").read_text()
    assert text.startswith("# Certificates managed by hsmcert")
    assert "[certificates.www.issuer]" in text
    again = Store(tmp_path / "certificates.toml")
    assert list(again) == list(store)
    assert again.get("www") == record()
    assert again.find("/etc/ssl/api.pem").name == "api"


def test_a_person_can_write_the_file(tmp_path: Path) -> None:
    path = tmp_path / "certificates.toml"
    path.write_text(
        '[certificates.db]\nkey = "vault:kv1:db"\ncert = "/srv/db.pem"\nsubject = "/CN=db.internal"\n'
        '[certificates.db.issuer]\nkind = "self-signed"\n'
    )
    cert = Store(path).get("db")
    assert (cert.profile, cert.days, cert.sans, cert.issuer_kind) == ("tls-server", 90, [], "self-signed")


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            'key = 3\ncert = "/a"\n[certificates.x.issuer]\nkind = "self-signed"\n',
            "certificates.x.key must be a string",
        ),
        ('key = "vault:kv:k"\ncert = "/a"\n', "certificates.x.issuer must be a table"),
        ('key = "vault:kv:k"\n[certificates.x.issuer]\nkind = "self-signed"\n', "certificates.x.cert"),
        ('key = "vault:kv:k"\ncert = "/a"\ndays = 0\n[certificates.x.issuer]\nkind = "a"\n', ".days must be"),
        (
            'key = "vault:kv:k"\ncert = "/a"\nsans = "DNS:a"\n[certificates.x.issuer]\nkind = "a"\n',
            ".sans must",
        ),
    ],
)
def test_a_bad_entry_is_named(tmp_path: Path, table: str, says: str) -> None:
    path = tmp_path / "certificates.toml"
    path.write_text("[certificates.x]\n" + table)
    with pytest.raises(UsageError) as caught:
        Store(path)
    assert says in caught.value.message


def test_broken_toml_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "certificates.toml"
    path.write_text("[certificates.x\n")
    with pytest.raises(UsageError, match="Cannot read"):
        Store(path)


def test_files_belong_to_one_certificate(tmp_path: Path) -> None:
    store = Store(tmp_path / "certificates.toml")
    store.put(record())
    with pytest.raises(UsageError, match="already managed as 'www'"):
        store.put(record("other", cert="/etc/ssl/www.pem", fullchain=None))


def test_unknown_name_lists_the_known(tmp_path: Path) -> None:
    store = Store(tmp_path / "certificates.toml")
    store.put(record())
    with pytest.raises(NotFoundError, match=r"managed: www"):
        store.get("nope")


def test_bad_names_are_refused() -> None:
    store_name = "../etc"
    with pytest.raises(UsageError, match="not a usable certificate name"):
        Store.__new__(Store).put(record(store_name))


def test_the_state_sits_next_to_the_config_file(tmp_path: Path) -> None:
    env = {"HSMCERT_CONFIG": str(tmp_path / "etc" / "config.toml")}
    assert state_path(env) == tmp_path / "etc" / "certificates.toml"


def test_a_second_renewal_run_is_refused_while_one_runs(config_dir: Path) -> None:
    from hsmcert.lifecycle.state import state_path_lock
    from tests.hsm.conftest import run_cli

    with state_path_lock():
        busy = run_cli("renew", "--all")
    assert busy.code == 5 and "Another hsmcert renew is running" in busy.err
    assert run_cli("renew", "--all").code == 0  # nothing managed: nothing to do
