"""A local Azure Managed HSM and Key Vault that speaks the Key Vault REST API over HTTPS.

Module map, from the wire inwards:

- :mod:`.http11`: HTTP/1.1 on the emulator's ports: strict request line, headers and body; JSON answers;
  errors of HTTP itself.
- :mod:`.endpoints`: what each port answers around its routes: a service's data plane (faults, bearer
  tokens and the 401 challenge, audit), the login endpoint, the control endpoint.
- :mod:`.routes`: every route as a table of (method, path pattern, operation, handler) per resource (keys,
  deleted keys, random bytes, RBAC, certificates, login, control), one router, and the dispatcher that
  checks the caller's Managed HSM role per operation.
- Handlers, each ``(service or emulator, request) -> response``: :mod:`.keys` (key versions and the keys
  API), :mod:`.rbac` (Managed HSM local RBAC: definitions, assignments, enforcement),
  :mod:`.certificates` (Key Vault certificates), :mod:`.login` (Entra-ID-compatible tokens),
  :mod:`.controlplane` (managed-identity tokens, status, services, faults, stop).
- :mod:`.keycrypto`: key generation, JWK import, sign / verify, encrypt / decrypt, wrap / unwrap.
- :mod:`.service`: the state of one Managed HSM or vault; :mod:`.store` (SQLite, private material sealed
  with AES-GCM), :mod:`.files`, :mod:`.ca` (the emulator's own CA), :mod:`.auth` (its tokens),
  :mod:`.faults`, :mod:`.audit`; :mod:`.api` (request, response, Azure-shaped errors, validation).
- :mod:`.process`: the emulator process: start-up from the data directory, its ports, shutdown
  (``python -m hsmcert.emulator.process``).
- :mod:`.control`: the other side, for other processes: start, stop, find and call a running emulator.
"""
