"""Property tests: any name hsmcert prints (OpenSSL form) or cryptography prints (RFC 4514) parses back."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmcert.errors import UsageError
from hsmcert.pki.subject import openssl_form, parse_subject

_TEXT = st.text(
    st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"), blacklist_characters="\x00"),
    min_size=1,
    max_size=16,
).filter(lambda v: v.strip() == v or v.strip() != "")
_OIDS = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.LOCALITY_NAME,
]

_ATTRS = st.builds(
    lambda oid, value: x509.NameAttribute(oid, value),
    st.sampled_from(_OIDS),
    _TEXT.filter(lambda v: v.strip()),
)
_NAMES = st.lists(
    st.lists(_ATTRS, min_size=1, max_size=3, unique_by=lambda a: a.oid).map(x509.RelativeDistinguishedName),
    min_size=1,
    max_size=4,
).map(x509.Name)


@settings(max_examples=150, deadline=None)
@given(_NAMES)
def test_both_spellings_round_trip(name: x509.Name) -> None:
    assert parse_subject(openssl_form(name)) == name
    assert parse_subject(name.rfc4514_string()) == name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        parse_subject(text)
    except UsageError as exc:
        assert exc.message and "\n" not in exc.message
