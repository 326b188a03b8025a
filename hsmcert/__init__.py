"""hsmcert: certificates, CSRs and keyless TLS with private keys that never leave an HSM.

The package is a library first. Public modules:

- :mod:`hsmcert.errors`   the one error type callers catch
- :mod:`hsmcert.keyref`   key references (``managedhsm:H:k`` and friends)
- :mod:`hsmcert.config`   where a reference's service lives (Azure or the emulator) and which CA to trust
- :mod:`hsmcert.signer`   pyca/cryptography private keys whose signatures happen in the HSM
- :mod:`hsmcert.pki`      CSRs, certificates, profiles, inspection and verification
- :mod:`hsmcert.emulator` a local Managed HSM / Key Vault
- :mod:`hsmcert.agent`    the signing agent that serves the OpenSSL provider

The command line (:mod:`hsmcert.cli`) only parses arguments, calls these and renders results.
"""

__version__ = "0.1.0"
