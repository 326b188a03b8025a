"""Subjects (distinguished names) from the two spellings people type.

OpenSSL's form lists the most significant part first, separated by ``/``; a ``+`` joins attributes of
one multi-valued RDN and a backslash escapes the next character::

    /C=US/O=Acme\\, Inc./CN=a+serialNumber=1

RFC 4514's form lists the most specific part first, separated by ``,``, with ``\\,`` or ``\\2C`` escapes::

    CN=a+serialNumber=1,O=Acme\\, Inc.,C=US

Both give the same :class:`cryptography.x509.Name`:

>>> parse_subject("/C=US/O=Acme\\\\, Inc./CN=a+serialNumber=1") == parse_subject(
...     "CN=a+serialNumber=1,O=Acme\\\\, Inc.,C=US")
True
>>> parse_subject("CN=www.example.com,O=Example,C=DE").rfc4514_string()
'CN=www.example.com,O=Example,C=DE'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509

_FORMS = "Use /C=US/O=Org/CN=name (OpenSSL form) or CN=name,O=Org,C=US (RFC 4514 form)."

# Accepted attribute names (matched case-insensitively) -> cryptography NameOID attribute name.
_NAMES = {
    "c": "COUNTRY_NAME",
    "countryname": "COUNTRY_NAME",
    "st": "STATE_OR_PROVINCE_NAME",
    "s": "STATE_OR_PROVINCE_NAME",
    "stateorprovincename": "STATE_OR_PROVINCE_NAME",
    "l": "LOCALITY_NAME",
    "localityname": "LOCALITY_NAME",
    "o": "ORGANIZATION_NAME",
    "organizationname": "ORGANIZATION_NAME",
    "ou": "ORGANIZATIONAL_UNIT_NAME",
    "organizationalunitname": "ORGANIZATIONAL_UNIT_NAME",
    "cn": "COMMON_NAME",
    "commonname": "COMMON_NAME",
    "serialnumber": "SERIAL_NUMBER",
    "emailaddress": "EMAIL_ADDRESS",
    "email": "EMAIL_ADDRESS",
    "dc": "DOMAIN_COMPONENT",
    "domaincomponent": "DOMAIN_COMPONENT",
    "uid": "USER_ID",
    "userid": "USER_ID",
    "street": "STREET_ADDRESS",
    "streetaddress": "STREET_ADDRESS",
    "title": "TITLE",
    "gn": "GIVEN_NAME",
    "givenname": "GIVEN_NAME",
    "sn": "SURNAME",
    "surname": "SURNAME",
    "initials": "INITIALS",
    "pseudonym": "PSEUDONYM",
    "generationqualifier": "GENERATION_QUALIFIER",
    "dnqualifier": "DN_QUALIFIER",
    "postalcode": "POSTAL_CODE",
    "businesscategory": "BUSINESS_CATEGORY",
    "jurisdictionc": "JURISDICTION_COUNTRY_NAME",
    "jurisdictioncountryname": "JURISDICTION_COUNTRY_NAME",
    "jurisdictionst": "JURISDICTION_STATE_OR_PROVINCE_NAME",
    "jurisdictionstateorprovincename": "JURISDICTION_STATE_OR_PROVINCE_NAME",
    "jurisdictionl": "JURISDICTION_LOCALITY_NAME",
    "jurisdictionlocalityname": "JURISDICTION_LOCALITY_NAME",
    "organizationidentifier": "ORGANIZATION_IDENTIFIER",
}

# RFC 5280 upper bounds (ub-*) for the attributes that have one.
_MAX_LENGTH = {
    "COUNTRY_NAME": 2,
    "JURISDICTION_COUNTRY_NAME": 2,
    "COMMON_NAME": 64,
    "ORGANIZATION_NAME": 64,
    "ORGANIZATIONAL_UNIT_NAME": 64,
    "LOCALITY_NAME": 128,
    "STATE_OR_PROVINCE_NAME": 128,
    "SERIAL_NUMBER": 64,
    "EMAIL_ADDRESS": 255,
    "TITLE": 64,
    "POSTAL_CODE": 40,
    "DN_QUALIFIER": 64,
}
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_PRINTABLE_ONLY = {"COUNTRY_NAME", "JURISDICTION_COUNTRY_NAME", "SERIAL_NUMBER", "DN_QUALIFIER"}
_IA5_ONLY = {"EMAIL_ADDRESS", "DOMAIN_COMPONENT"}
_SPACE = " \t\r\n"  # stripped around values and the whole subject unless escaped
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def _split(text: str, separators: str) -> list[str]:
    """Split on unescaped separator characters, keeping escapes in the parts (they are resolved later)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                raise UsageError(f"The subject {text!r} ends with a lone backslash.", _FORMS)
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str, *, hex_escapes: bool) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            pair = value[i + 1 : i + 3]
            if hex_escapes and re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"The escaped value {value!r} is not valid UTF-8.", _FORMS) from None


def _attribute(name: str, raw_value: str, *, hex_escapes: bool, subject: str) -> x509.NameAttribute[Any]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    key = name.strip()
    if not key:
        raise UsageError(f"An attribute in the subject {subject!r} has no name before '='.", _FORMS)
    attr = _NAMES.get(key.lower())
    if attr is not None:
        oid = getattr(NameOID, attr)
    elif _OID.match(key):
        oid = ObjectIdentifier(key)
    else:
        raise UsageError(
            f"Unknown subject attribute {key!r} in {subject!r}.",
            "Use C, ST, L, O, OU, CN, serialNumber, emailAddress, DC, UID, street, title, GN, SN, "
            "postalCode, organizationIdentifier or a dotted OID.",
        )
    raw = _strip_unescaped(raw_value)
    value = _unescape(raw, hex_escapes=hex_escapes)
    if raw.startswith("#") and hex_escapes:
        raise UsageError(f"BER-encoded values ({key}={value}) are not supported.", "Write the value as text.")
    if not value:
        raise UsageError(f"The subject attribute {key} in {subject!r} has an empty value.", _FORMS)
    limit = _MAX_LENGTH.get(attr or "")
    if attr in ("COUNTRY_NAME", "JURISDICTION_COUNTRY_NAME"):
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise UsageError(
                f"The country {key}={value!r} must be a two-letter ISO 3166 code.", "For example C=US."
            )
        value = value.upper()
    elif limit is not None and len(value) > limit:
        raise UsageError(
            f"The subject attribute {key} is {len(value)} characters long; at most {limit} are allowed.",
            "Shorten it (a long host name belongs in --san DNS:...).",
        )
    if attr in _PRINTABLE_ONLY and not _PRINTABLE.match(value):
        raise UsageError(
            f"{key}={value!r} may only contain letters, digits, spaces and ' ( ) + , - . / : = ?",
            "Remove the other characters.",
        )
    if attr in _IA5_ONLY and not value.isascii():
        raise UsageError(f"{key}={value!r} must be ASCII.", "Write an internationalised domain in punycode.")
    try:
        return x509.NameAttribute(oid, value)
    except ValueError as exc:
        raise UsageError(f"Bad subject attribute {key}={value!r}: {exc}", _FORMS) from None


def parse_subject(text: str) -> x509.Name:
    """The :class:`~cryptography.x509.Name` for an OpenSSL-form (``/``) or RFC 4514 (``,``) subject."""
    from cryptography import x509

    source = _strip_unescaped(text)
    if not source or source == "/":
        raise UsageError("The subject is empty.", _FORMS)
    openssl_form = source.startswith("/")
    if openssl_form:
        rdn_texts = _split(source[1:], "/")
        if rdn_texts and rdn_texts[-1] == "":
            rdn_texts.pop()  # a trailing slash
    else:
        rdn_texts = list(reversed(_split(source, ",;")))
    rdns: list[x509.RelativeDistinguishedName] = []
    for rdn_text in rdn_texts:
        attributes: list[x509.NameAttribute[Any]] = []
        for ava in _split(rdn_text, "+"):
            name, sep, value = _partition_unescaped(ava)
            if not sep:
                raise UsageError(
                    f"{ava.strip() or 'An empty part'!r} in the subject {text!r} is not NAME=VALUE.", _FORMS
                )
            attributes.append(_attribute(name, value, hex_escapes=not openssl_form, subject=text))
        try:
            rdns.append(x509.RelativeDistinguishedName(attributes))
        except ValueError as exc:
            raise UsageError(f"Bad RDN {rdn_text!r} in the subject: {exc}.", _FORMS) from None
    return x509.Name(rdns)


def _strip_unescaped(raw: str) -> str:
    """``raw`` without surrounding spaces, keeping an escaped trailing space (``a\\ ``)."""
    text = raw.lstrip(_SPACE)
    while text and text[-1] in _SPACE and not _escaped_at(text, len(text) - 1):
        text = text[:-1]
    return text


def _escaped_at(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _partition_unescaped(ava: str) -> tuple[str, str, str]:
    i = 0
    while i < len(ava):
        if ava[i] == "\\":
            i += 2
            continue
        if ava[i] == "=":
            return ava[:i], "=", ava[i + 1 :]
        i += 1
    return ava, "", ""


def openssl_form(name: x509.Name) -> str:
    """The OpenSSL-form spelling of ``name`` (most significant first), as ``openssl x509 -subject`` prints.

    >>> openssl_form(parse_subject("CN=a+serialNumber=1,O=Acme\\\\, Inc.,C=US"))
    '/C=US/O=Acme, Inc./CN=a+serialNumber=1'
    """
    parts = []
    for rdn in name.rdns:
        avas = []
        for attr in rdn:
            label = attr.rfc4514_attribute_name
            short = {"2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "emailAddress"}
            label = short.get(attr.oid.dotted_string, label)
            value = str(attr.value).replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+")
            if value[:1] in tuple(_SPACE):
                value = "\\" + value
            if value[-1:] in tuple(_SPACE) and len(value) > 1:
                value = value[:-1] + "\\" + value[-1]
            avas.append(f"{label}={value}")
        parts.append("+".join(avas))
    return "/" + "/".join(parts)
