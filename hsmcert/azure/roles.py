"""Managed HSM local RBAC: the built-in roles, the data actions each key operation needs, scopes.

One table that the grant command, the error messages of a refused operation (which role, which scope, which
command) and the emulator's enforcement all read, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "Microsoft.KeyVault/managedHsm/"


@dataclass(frozen=True)
class Role:
    slug: str
    """hsmcert's short name, as given to ``hsmcert grant --role``."""
    name: str
    """Azure's role name, as given to ``az keyvault role assignment create --role``."""
    id: str
    data_actions: tuple[str, ...]

    @property
    def definition_id(self) -> str:
        return f"Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{self.id}"


_KEY_USER_ACTIONS = tuple(
    f"{PREFIX}keys/{action}"
    for action in (
        "read/action",
        "write/action",
        "create",
        "delete",
        "import/action",
        "rotate/action",
        "backup/action",
        "restore/action",
        "release/action",
        "encrypt/action",
        "decrypt/action",
        "wrap/action",
        "unwrap/action",
        "sign/action",
        "verify/action",
        "derive/action",
    )
) + (f"{PREFIX}rng/action", f"{PREFIX}roleAssignments/read/action", f"{PREFIX}roleDefinitions/read/action")

_ROLE_MANAGEMENT = tuple(
    f"{PREFIX}{action}"
    for action in (
        "roleAssignments/read/action",
        "roleAssignments/write/action",
        "roleAssignments/delete/action",
        "roleDefinitions/read/action",
        "roleDefinitions/write/action",
        "roleDefinitions/delete/action",
    )
)

BUILTIN_ROLES: tuple[Role, ...] = (
    Role("crypto-user", "Managed HSM Crypto User", "21dbd100-6940-42c2-9190-5d6cb909625b", _KEY_USER_ACTIONS),
    Role(
        "crypto-officer",
        "Managed HSM Crypto Officer",
        "515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
        (
            *_ROLE_MANAGEMENT,
            f"{PREFIX}keys/deletedKeys/read/action",
            f"{PREFIX}keys/deletedKeys/recover/action",
            f"{PREFIX}keys/deletedKeys/delete",
            f"{PREFIX}keys/export/action",
            f"{PREFIX}keys/read/action",
        ),
    ),
    Role(
        "administrator",
        "Managed HSM Administrator",
        "a290e904-7015-4bba-90c8-60543313cdb4",
        (
            *_ROLE_MANAGEMENT,
            f"{PREFIX}securitydomain/download/action",
            f"{PREFIX}securitydomain/upload/action",
            f"{PREFIX}securitydomain/upload/read",
            f"{PREFIX}backup/start/action",
            f"{PREFIX}backup/status/action",
            f"{PREFIX}restore/start/action",
            f"{PREFIX}restore/status/action",
            f"{PREFIX}settings/read/action",
            f"{PREFIX}settings/write/action",
        ),
    ),
    Role(
        "policy-administrator",
        "Managed HSM Policy Administrator",
        "4bd23610-cdcf-4971-bdee-bdc562cc28e4",
        _ROLE_MANAGEMENT,
    ),
    Role(
        "crypto-auditor",
        "Managed HSM Crypto Auditor",
        "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3",
        (
            f"{PREFIX}keys/read/action",
            f"{PREFIX}keys/deletedKeys/read/action",
            f"{PREFIX}roleAssignments/read/action",
            f"{PREFIX}roleDefinitions/read/action",
        ),
    ),
    Role(
        "service-encryption-user",
        "Managed HSM Crypto Service Encryption User",
        "33413926-3206-4cdd-b39a-83574fe37a17",
        (f"{PREFIX}keys/read/action", f"{PREFIX}keys/wrap/action", f"{PREFIX}keys/unwrap/action"),
    ),
)

# The least-privilege custom role of `hsmcert grant --granular`: read the public key and sign, one key.
SIGNER_ROLE_NAME = "hsmcert Key Signer"
SIGNER_ROLE_DESCRIPTION = "Read the public key and sign with it; nothing else (made by hsmcert grant)."
SIGNER_ROLE_ACTIONS = (f"{PREFIX}keys/read/action", f"{PREFIX}keys/sign/action")

# Key operation (as the REST API names it) -> the data action it needs.
OPERATION_ACTIONS: dict[str, str] = {
    "get": "keys/read/action",
    "list": "keys/read/action",
    "versions": "keys/read/action",
    "update": "keys/write/action",
    "create": "keys/create",
    "import": "keys/import/action",
    "delete": "keys/delete",
    "backup": "keys/backup/action",
    "restore": "keys/restore/action",
    "rotate": "keys/rotate/action",
    "sign": "keys/sign/action",
    "verify": "keys/verify/action",
    "encrypt": "keys/encrypt/action",
    "decrypt": "keys/decrypt/action",
    "wrapkey": "keys/wrap/action",
    "unwrapkey": "keys/unwrap/action",
    "release": "keys/release/action",
    "deleted-get": "keys/deletedKeys/read/action",
    "recover": "keys/deletedKeys/recover/action",
    "purge": "keys/deletedKeys/delete",
    "rng": "rng/action",
}


def role_by_slug(slug: str) -> Role | None:
    for role in BUILTIN_ROLES:
        if slug.lower() in (role.slug, role.name.lower(), role.id):
            return role
    return None


def key_scope(key: str | None) -> str:
    """The narrowest scope covering ``key``: ``/keys/<key>``, or ``/keys`` for every key."""
    return f"/keys/{key}" if key else "/keys"


def role_for_operation(operation: str) -> Role:
    """The built-in role a user would normally be given for ``operation`` (for remedies)."""
    action = PREFIX + OPERATION_ACTIONS.get(operation, "keys/read/action")
    for slug in ("crypto-user", "crypto-officer"):
        role = role_by_slug(slug)
        if role is not None and action in role.data_actions:
            return role
    return BUILTIN_ROLES[0]


# -- Key Vault (Azure RBAC through Resource Manager) ------------------------------------------------------

VAULT_PREFIX = "Microsoft.KeyVault/vaults/"


@dataclass(frozen=True)
class VaultRole:
    """An Azure built-in role for Key Vault data, by the same slug as its Managed HSM counterpart."""

    slug: str
    name: str
    id: str

    def definition_id(self, subscription: str) -> str:
        """The role definition's resource id, as a role assignment names it."""
        return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{self.id}"


VAULT_ROLES: tuple[VaultRole, ...] = (
    VaultRole("crypto-user", "Key Vault Crypto User", "12338af0-0e69-4776-bea7-57ae8d297424"),
    VaultRole("crypto-officer", "Key Vault Crypto Officer", "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"),
    VaultRole("administrator", "Key Vault Administrator", "00482a5a-887f-4fb3-b363-3b7fe8e74483"),
    VaultRole("reader", "Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2"),
    VaultRole(
        "service-encryption-user",
        "Key Vault Crypto Service Encryption User",
        "e147488a-f6f5-4113-8e2d-b22465e65bf6",
    ),
)

# The least-privilege custom role of `hsmcert grant --granular` on a vault (an Azure custom role).
VAULT_SIGNER_ROLE_NAME = "hsmcert Key Vault Signer"
VAULT_SIGNER_ACTIONS = (f"{VAULT_PREFIX}keys/read", f"{VAULT_PREFIX}keys/sign/action")
# What a vault in access-policy mode gets instead: the same two operations.
ACCESS_POLICY_KEY_PERMISSIONS = ("get", "sign")


def vault_role_by_slug(slug: str) -> VaultRole | None:
    for role in VAULT_ROLES:
        if slug.lower() in (role.slug, role.name.lower(), role.id):
            return role
    return None
