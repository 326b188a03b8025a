"""A local Azure Managed HSM and Key Vault that speaks the Key Vault REST API over HTTPS.

Modules: :mod:`.control` (data directory, start/stop/status, service endpoints, tokens), :mod:`.server`
(HTTPS servers, routing, authentication, faults), :mod:`.keys` (the keys API), :mod:`.rbac` (Managed HSM
local RBAC), :mod:`.certificates` (Key Vault certificates), :mod:`.store` (SQLite persistence with private
material encrypted at rest), :mod:`.ca` (the emulator's own CA), :mod:`.auth` (tokens), :mod:`.audit`.
"""
