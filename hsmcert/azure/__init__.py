"""Azure Managed HSM and Key Vault through the Azure SDKs.

- :mod:`~hsmcert.azure.hsm`: one key (open, sign, decrypt);
- :mod:`~hsmcert.azure.keys`: create, list, show and rotate keys;
- :mod:`~hsmcert.azure.clients`: the SDK clients of one endpoint and credential, and the transport options;
- :mod:`~hsmcert.azure.credentials`: the credential chain;
- :mod:`~hsmcert.azure.errors`: azure-core exceptions turned into hsmcert errors with a remedy;
- :mod:`~hsmcert.azure.keyinfo` and :mod:`~hsmcert.azure.keycache`: public keys and their cache;
- :mod:`~hsmcert.azure.grant` and :mod:`~hsmcert.azure.roles`: access for machine identities, with
  :mod:`~hsmcert.azure.arm` (a Resource Manager client), :mod:`~hsmcert.azure.discovery` (subscription,
  machine, identity), :mod:`~hsmcert.azure.vaultaccess` (vault RBAC and access policies) and
  :mod:`~hsmcert.azure.imds` (the instance metadata service).

:class:`hsmcert.session.Session` is the entry point: it builds and owns the clients and the key cache.
Only the SDKs' public API is used here (their default transport included); the agent's pooled transport and
the private SDK internals it needs live in :mod:`hsmcert.agent.transport` and :mod:`hsmcert.agent.sdkcompat`.
"""
