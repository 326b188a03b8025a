"""Certificate lifecycle: the certificates hsmcert manages, their expiry, and their renewal.

- :mod:`.state`: the managed-certificate state, ``certificates.toml`` (documented, human-editable).
- :mod:`.issuers`: the issuer registry (self-signed, hsmcert-ca, and the kinds other modules plug in).
"""
