"""Subjects in both spellings, SANs, profiles: what users type and the errors they get."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from hsmcert.errors import UsageError
from hsmcert.pki.profiles import get_profile
from hsmcert.pki.san import format_san, parse_sans
from hsmcert.pki.subject import openssl_form, parse_subject


def test_openssl_form_with_escape_and_multivalued_rdn() -> None:
    name = parse_subject("/C=US/O=Acme\\, Inc./CN=a+serialNumber=1")
    assert [len(r) for r in name.rdns] == [1, 1, 2]
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme, Inc."
    assert name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "1"
    assert name.rdns[0].get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"


def test_rfc4514_form_gives_the_same_name() -> None:
    a = parse_subject("/C=US/O=Acme\\, Inc./CN=a+serialNumber=1")
    assert parse_subject("CN=a+serialNumber=1,O=Acme\\, Inc.,C=US") == a
    assert parse_subject("CN=a+serialNumber=1,O=Acme\\2C Inc.,C=US") == a
    assert openssl_form(a) == "/C=US/O=Acme, Inc./CN=a+serialNumber=1"


def test_openssl_form_keeps_commas_and_accepts_long_names_and_oids() -> None:
    name = parse_subject("/countryName=de/organizationName=A, B/2.5.4.3=host/emailAddress=a@b.example")
    assert name.rfc4514_string() == "1.2.840.113549.1.9.1=a@b.example,CN=host,O=A\\, B,C=DE"
    assert name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0]._type.name == "IA5String"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("/", "empty"),
        ("/CN", "not NAME=VALUE"),
        ("/XX=1", "Unknown subject attribute"),
        ("/C=USA", "two-letter"),
        ("/CN=", "empty value"),
        ("/CN=" + "a" * 65, "at most 64"),
        ("/serialNumber=a_b", "may only contain"),
        ("CN=a\\", "lone backslash"),
        ("CN=#0403616263", "BER"),
    ],
)
def test_bad_subjects_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_subject(text)
    assert words in err.value.message
    assert "\n" not in err.value.message


def test_sans_of_each_type_and_commas_inside_uris() -> None:
    names = parse_sans(
        ["DNS:www.example.com, ip:2001:db8::1", "email:ops@example.com,URI:https://x.example/a,b"]
    )
    assert [format_san(n) for n in names] == [
        "DNS:www.example.com",
        "IP:2001:db8::1",
        "email:ops@example.com",
        "URI:https://x.example/a,b",
    ]
    assert parse_sans("DNS:*.example.com,DNS:*.example.com") == [x509.DNSName("*.example.com")]
    assert parse_sans("DNS:bücher.example") == [x509.DNSName("xn--bcher-kva.example")]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("www.example.com", "does not start with"),
        ("DNS:", "no value"),
        ("DNS:-bad.example", "invalid label"),
        ("DNS:a.*.example", "invalid label"),
        ("DNS:a..example", "invalid label"),
        ("IP:300.1.1.1", "not an IPv4 or IPv6"),
        ("email:nobody", "not an address"),
        ("URI:no-scheme", "absolute ASCII URI"),
        ("DNS:a.example,", "empty entry"),
    ],
)
def test_bad_sans_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_sans(text)
    assert words in err.value.message


def test_profiles() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_pub = rsa.generate_private_key(65537, 2048).public_key()
    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    server = get_profile("TLS-Server")
    assert server.key_usage(rsa_pub).key_encipherment
    assert not server.key_usage(ec_pub).key_encipherment
    assert not get_profile("tls-client").key_usage(rsa_pub).key_encipherment
    root = get_profile("root-ca")
    assert root.basic_constraints().ca and root.basic_constraints().path_length is None
    assert get_profile("intermediate-ca").basic_constraints(2).path_length == 2
    assert root.extended_key_usage() is None
    with pytest.raises(UsageError, match="Unknown profile"):
        get_profile("email")
