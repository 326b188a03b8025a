"""PKI on HSM keys: subjects, SANs, profiles, CSRs, self-signed and CA-issued certificates, inspection, checks.

Every builder takes any pyca/cryptography private key (HSM-backed from :mod:`hsmcert.signer`, or local) and
verifies the signature it got back before returning. Nothing here imports the CLI.
"""
