"""What is in a CSR or certificate, as a JSON-ready dict and as text for people."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from hsmcert.pki.san import format_san
from hsmcert.pki.signing import key_shape, signature_is_valid, spki_sha256
from hsmcert.pki.subject import openssl_form
from hsmcert.timestamps import rfc3339

_KU_FLAGS = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


def _when(value: dt.datetime) -> str:
    return rfc3339(value.timestamp())


def _signature_algorithm(obj: Any) -> str:
    oid = obj.signature_algorithm_oid
    name: str = getattr(oid, "_name", oid.dotted_string)
    if name == "rsassaPss":
        hash_alg = obj.signature_hash_algorithm
        name = f"rsassaPss ({hash_alg.name.upper() if hash_alg else '?'})"
    return name


def _public_key(public_key: Any) -> dict[str, Any]:
    kty, curve, size = key_shape(public_key)
    return {"type": kty, "curve": curve, "size": size, "spki_sha256": spki_sha256(public_key)}


def _extensions(obj: Any) -> dict[str, Any]:
    from cryptography import x509

    out: dict[str, Any] = {}
    others: list[str] = []
    for ext in obj.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            out["subject_alt_names"] = [format_san(n) for n in value]
        elif isinstance(value, x509.KeyUsage):
            out["key_usage"] = [label for attr, label in _KU_FLAGS if getattr(value, attr)]
        elif isinstance(value, x509.ExtendedKeyUsage):
            out["extended_key_usage"] = [getattr(o, "_name", o.dotted_string) for o in value]
        elif isinstance(value, x509.BasicConstraints):
            out["basic_constraints"] = {"ca": value.ca, "path_length": value.path_length}
        elif isinstance(value, x509.SubjectKeyIdentifier):
            out["subject_key_id"] = value.digest.hex()
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            out["authority_key_id"] = value.key_identifier.hex() if value.key_identifier else None
        else:
            others.append(getattr(ext.oid, "_name", ext.oid.dotted_string))
        if ext.critical:
            out.setdefault("critical", []).append(getattr(ext.oid, "_name", ext.oid.dotted_string))
    if others:
        out["other"] = others
    return out


def describe(obj: Any) -> dict[str, Any]:
    """The fields of a CSR or certificate (the ``inspect --output json`` shape, see the docs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data: dict[str, Any] = {
        "subject": obj.subject.rfc4514_string(),
        "subject_openssl": openssl_form(obj.subject),
        "public_key": _public_key(obj.public_key()),
        "signature_algorithm": _signature_algorithm(obj),
        "extensions": _extensions(obj),
    }
    if isinstance(obj, x509.CertificateSigningRequest):
        data["kind"] = "csr"
        data["signature_valid"] = signature_is_valid(obj.public_key(), obj)
        return data
    self_issued = obj.issuer == obj.subject
    data.update(
        kind="certificate",
        issuer=obj.issuer.rfc4514_string(),
        serial=format(obj.serial_number, "x"),
        not_before=_when(obj.not_valid_before_utc),
        not_after=_when(obj.not_valid_after_utc),
        self_signed=self_issued and signature_is_valid(obj.public_key(), obj),
        sha256=hashlib.sha256(obj.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )
    return data


def render_text(data: dict[str, Any]) -> str:
    """A readable summary of :func:`describe`'s dict."""
    pk = data["public_key"]
    key = f"{pk['type']} {pk['curve'] or pk['size']}" if pk["type"] == "EC" else f"RSA {pk['size']}"
    lines = [
        f"{'certificate' if data['kind'] == 'certificate' else 'certificate request'}",
        f"  subject:    {data['subject_openssl']}",
    ]
    if data["kind"] == "certificate":
        lines += [
            f"  issuer:     {data['issuer']}",
            f"  serial:     {data['serial']}",
            f"  valid:      {data['not_before']} to {data['not_after']}",
        ]
    lines += [
        f"  key:        {key} (SPKI sha256 {pk['spki_sha256']})",
        f"  signature:  {data['signature_algorithm']}",
    ]
    if data["kind"] == "csr":
        lines.append(f"  self-signature: {'valid' if data['signature_valid'] else 'INVALID'}")
    else:
        lines.append(f"  self-signed: {'yes' if data['self_signed'] else 'no'}")
        lines.append(f"  sha256:     {data['sha256']}")
    ext = data["extensions"]
    if "subject_alt_names" in ext:
        lines.append(f"  SANs:       {', '.join(ext['subject_alt_names'])}")
    if "basic_constraints" in ext:
        bc = ext["basic_constraints"]
        path = "" if bc["path_length"] is None else f", pathlen {bc['path_length']}"
        lines.append(f"  CA:         {'yes' if bc['ca'] else 'no'}{path}")
    if "key_usage" in ext:
        lines.append(f"  key usage:  {', '.join(ext['key_usage'])}")
    if "extended_key_usage" in ext:
        lines.append(f"  ext usage:  {', '.join(ext['extended_key_usage'])}")
    if ext.get("subject_key_id"):
        lines.append(f"  SKI:        {ext['subject_key_id']}")
    if ext.get("authority_key_id"):
        lines.append(f"  AKI:        {ext['authority_key_id']}")
    if ext.get("other"):
        lines.append(f"  other ext:  {', '.join(ext['other'])}")
    return "\n".join(lines)
