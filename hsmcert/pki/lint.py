"""RFC 5280 linting of certificates with pkilint's PKIX linter (imported only when used)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _validator() -> Any:
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def lint_certificate(der: bytes, *, severity: str = "WARNING") -> list[str]:
    """pkilint findings at ``severity`` or above, as ``SEVERITY code (where)`` lines; [] when clean."""
    from pkilint import loader
    from pkilint.report import ValidationFindingSeverity

    threshold = ValidationFindingSeverity[severity.upper()]
    cert = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
    findings = []
    for result in _validator().validate(cert.root):
        for desc in result.finding_descriptions:
            if desc.finding.severity <= threshold:  # lower is more severe
                findings.append(f"{desc.finding.severity} {desc.finding.code} ({result.node.path})")
    return findings
