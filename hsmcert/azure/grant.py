"""Give an identity (a machine's managed identity, a service principal) exactly the access it needs to keys.

Where the key is decides how:

- a Managed HSM keeps its own role assignments (local RBAC), made through azure-keyvault-administration:
  the built-in role (Managed HSM Crypto User by default) at ``/keys/<key>`` or ``/keys``; or, with
  ``granular``, the custom role "hsmcert Key Signer" (``keys/read/action`` and ``keys/sign/action`` only),
  created once per HSM;
- a Key Vault is an Azure resource: in Azure RBAC mode a role assignment through Resource Manager ("Key Vault
  Crypto User", or the custom "hsmcert Key Vault Signer" with ``granular``) at the vault or the key; in
  access-policy mode an access policy with the key permissions get and sign (:mod:`.vaultaccess`).

:func:`plan_grant` computes what to do without any request (every name is checked there), :func:`az_commands`
prints it as Azure CLI commands (``--dry-run``), :func:`resolve_principal` finds a machine's identity
(:mod:`.discovery`), :func:`apply` does it and skips what exists, :func:`wait_effective` waits until the
access is in effect (see its documentation for what it can observe), :func:`list_access` and :func:`revoke`
show and undo it.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.azure import roles
from hsmcert.azure.discovery import (
    KINDS,
    Found,
    Identity,
    Machine,
    check_guid,
    check_identity_name,
    check_machine_name,
    check_resource_group,
    check_subscription,
    principal_query,
)
from hsmcert.errors import HsmcertError, NotFoundError, PermissionDeniedError, UsageError
from hsmcert.keyref import KeyRef, Kind, check_key_name, check_service_name, parse_keyref

if TYPE_CHECKING:
    from hsmcert.azure.arm import Arm
    from hsmcert.azure.vaultaccess import Vault
    from hsmcert.session import Session

DEFAULT_WAIT = 60.0
"""Seconds :func:`wait_effective` waits by default for new access to take effect."""


def check_principal(value: str) -> str:
    return check_guid(value, "an object id", "Give the identity's object id, e.g. from az ad sp show.")


@dataclass(frozen=True)
class MachineRef:
    """A machine as the user named it: kind, name (``self``: the machine hsmcert runs on), and what is known
    of where it is. Every name is checked on creation."""

    kind: str
    name: str
    group: str | None = None
    subscription: str | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        if not self.is_self:
            check_machine_name(self.kind, self.name)
        if self.group is not None:
            check_resource_group(self.group)
        if self.subscription is not None:
            check_subscription(self.subscription)
        if self.identity is not None:
            check_identity_name(self.identity)

    @property
    def is_self(self) -> bool:
        return self.kind == "vm" and self.name == "self"

    def resolved(self) -> Machine | None:
        """The machine, when its group and subscription are known without a look-up."""
        if self.is_self or self.group is None or self.subscription is None:
            return None
        return Machine(self.kind, self.name, self.group, self.subscription)

    def principal_command(self) -> str:
        """The ``az`` command that prints the identity's object id (what a dry run prints)."""
        if self.is_self:
            imds = "http://169.254.169.254/metadata/instance/compute?api-version=2021-02-01"
            return (
                "az vm show --ids \"$(curl -s -H Metadata:true '" + imds + "' | jq -r .resourceId)\" "
                "--query identity.principalId -o tsv"
            )
        return principal_query(self.kind, self.name, self.group, self.subscription, self.identity)


@dataclass(frozen=True)
class Target:
    """Where access is given: a Managed HSM or a vault, and a scope in it (``/``, ``/keys``, ``/keys/<key>``)."""

    kind: Kind
    service: str
    key: str | None
    scope: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.service}"

    def ref(self) -> KeyRef | None:
        return KeyRef(self.kind, self.service, self.key) if self.key else None


def target_for(
    *,
    key: str | None = None,
    hsm: str | None = None,
    vault: str | None = None,
    scope: str | None = None,
    default_hsm: str | None = None,
) -> Target:
    """The target of ``--key`` (a key reference, or a key name in ``--hsm``/``--vault``), ``--scope`` and
    ``--hsm``/``--vault``; without any, the default HSM. No request is made."""
    if hsm and vault:
        raise UsageError("--hsm and --vault both name where the keys are; give one.")
    if key and ":" in key:
        ref = parse_keyref(key)
        if ref.version:
            raise UsageError("Access is given to a key, not to one version: leave ?version= out of --key.")
        if (hsm or vault) and (hsm or vault, "managedhsm" if hsm else "vault") != (ref.service, ref.kind):
            raise UsageError(f"--key {key} names {ref.kind} {ref.service}; leave --hsm/--vault out.")
        kind: Kind = ref.kind
        service: str = ref.service
        key = ref.key
    else:
        if key is not None:
            check_key_name(key)
        if vault:
            kind, service = "vault", vault
        elif hsm or default_hsm:
            kind, service = "managedhsm", str(hsm or default_hsm)
        else:
            raise UsageError(
                "Which HSM? Give --key managedhsm:HSM:KEY (or vault:VAULT:KEY), or --hsm NAME.",
                'Or set a default in the config file: [defaults] hsm = "NAME" (docs/grant.md).',
            )
    check_service_name(service)
    if key and scope:
        raise UsageError("--key and --scope both name a scope; give one.")
    if scope is not None:
        if kind == "vault":
            raise UsageError(
                "--scope is for a Managed HSM; for a vault give --key (or nothing, for the vault)."
            )
        if scope not in ("/", "/keys"):
            if not scope.startswith("/keys/"):
                raise UsageError(
                    f"{scope[:80]!r} is not a Managed HSM scope.", "Use /, /keys or /keys/<name>."
                )
            key = check_key_name(scope.removeprefix("/keys/"))
        return Target(kind, service, key, scope)
    if kind == "vault":
        return Target(kind, service, key, f"/keys/{key}" if key else "/")
    return Target(kind, service, key, roles.key_scope(key))


@dataclass(frozen=True)
class Assignment:
    scope: str
    role_name: str
    role_id: str | None  # None: the custom role, whose id is known once it exists


@dataclass
class GrantPlan:
    """What a grant does: the target, the identity (or how to find it), the role assignments to make."""

    target: Target
    principal_id: str | None  # None until a machine's identity is looked up
    machine_ref: MachineRef | None
    assignments: list[Assignment]
    custom_role: bool = False
    machine: Machine | None = None
    identity: Identity | None = None
    subscription: str | None = None
    mode: str | None = None  # a vault: "rbac" or "access-policy", once the vault was read
    vault_id: str | None = None
    done: list[dict[str, Any]] = field(default_factory=list)
    effective: dict[str, Any] | None = None

    @property
    def hsm(self) -> str | None:
        return self.target.service if self.target.kind == "managedhsm" else None

    def to_json(self) -> dict[str, Any]:
        machine = self.machine or (self.machine_ref.resolved() if self.machine_ref else None)
        custom = roles.SIGNER_ROLE_NAME if self.target.kind == "managedhsm" else roles.VAULT_SIGNER_ROLE_NAME
        return {
            "hsm": self.hsm,
            "vault": self.target.service if self.target.kind == "vault" else None,
            "vault_id": self.vault_id,
            "mode": self.mode or ("local-rbac" if self.target.kind == "managedhsm" else None),
            "principal_id": self.principal_id,
            "machine": machine.resource_id if machine else None,
            "identity": self.identity.to_json() if self.identity else None,
            "custom_role": custom if self.custom_role else None,
            "assignments": [{"scope": a.scope, "role": a.role_name} for a in self.assignments],
            "done": self.done,
            "effective": self.effective,
        }


def plan_grant(
    target: Target | str,
    *,
    principal_id: str | None,
    machine: Machine | MachineRef | None = None,
    key: str | None = None,
    scope: str | None = None,
    role: str = "crypto-user",
    granular: bool = False,
) -> GrantPlan:
    """Work out the role assignments that give the identity access (no network).

    ``target``: a :class:`Target`, or a Managed HSM name (then ``key``/``scope`` as :func:`target_for` takes
    them). Every name is checked here: the service name becomes a host name, the key name part of a URL.
    """
    if isinstance(target, str):
        target = target_for(hsm=target, key=key, scope=scope)
    if principal_id is not None:
        check_principal(principal_id)
    ref = (
        MachineRef(machine.kind, machine.name, machine.resource_group, machine.subscription)
        if isinstance(machine, Machine)
        else machine
    )
    if granular:
        if not target.key:
            raise UsageError("--granular needs --key: the custom role is assigned for one key.")
        name = roles.SIGNER_ROLE_NAME if target.kind == "managedhsm" else roles.VAULT_SIGNER_ROLE_NAME
        return GrantPlan(target, principal_id, ref, [Assignment(target.scope, name, None)], True)
    if target.kind == "managedhsm":
        found = roles.role_by_slug(role)
        if found is None:
            slugs = ", ".join(r.slug for r in roles.BUILTIN_ROLES)
            raise UsageError(f"Unknown role {role!r}.", f"Use one of: {slugs} (or the Azure role name).")
        return GrantPlan(target, principal_id, ref, [Assignment(target.scope, found.name, found.id)])
    vault_role = roles.vault_role_by_slug(role)
    if vault_role is None:
        slugs = ", ".join(r.slug for r in roles.VAULT_ROLES)
        raise UsageError(
            f"Unknown role {role!r} for a vault.", f"Use one of: {slugs} (or the Azure role name)."
        )
    return GrantPlan(target, principal_id, ref, [Assignment(target.scope, vault_role.name, vault_role.id)])


# -- az commands (--dry-run) ------------------------------------------------------------------------


def _assignee(plan_principal: str | None, ref: MachineRef | None, commands: list[str]) -> str:
    if plan_principal:
        return shlex.quote(plan_principal)
    if ref is None:
        raise UsageError("Name the identity: --principal OBJECT_ID or --vm NAME.")
    commands.append(f"principal=$({ref.principal_command()})")
    return '"$principal"'


def _vault_scope_shell(vault: str, scope: str) -> str:
    suffix = "" if scope == "/" else scope
    return f'"$(az keyvault show -n {shlex.quote(vault)} --query id -o tsv){suffix}"'


def az_commands(plan: GrantPlan) -> list[str]:
    """The Azure CLI commands that do what :func:`apply` would do (no request is made)."""
    commands: list[str] = []
    assignee = _assignee(plan.principal_id, plan.machine_ref, commands)
    target = plan.target
    if target.kind == "managedhsm":
        if plan.custom_role:
            definition = {
                "roleName": roles.SIGNER_ROLE_NAME,
                "description": roles.SIGNER_ROLE_DESCRIPTION,
                "actions": [],
                "dataActions": list(roles.SIGNER_ROLE_ACTIONS),
            }
            commands.append(
                shlex.join(
                    [
                        "az", "keyvault", "role", "definition", "create", "--hsm-name", target.service,
                        "--role-definition", json.dumps(definition, separators=(",", ":")),
                    ]
                )
            )  # fmt: skip
        for a in plan.assignments:
            commands.append(
                f"az keyvault role assignment create --hsm-name {shlex.quote(target.service)} --role {shlex.quote(a.role_name)}"
                f" --scope {shlex.quote(a.scope)} --assignee-object-id {assignee} --assignee-principal-type ServicePrincipal"
            )
        return commands
    if plan.custom_role:
        sub = plan.subscription or (plan.machine_ref.subscription if plan.machine_ref else None)
        if sub is None:
            commands.append("subscription=$(az account show --query id -o tsv)")
        definition = {
            "Name": roles.VAULT_SIGNER_ROLE_NAME,
            "Description": roles.SIGNER_ROLE_DESCRIPTION,
            "Actions": [],
            "DataActions": list(roles.VAULT_SIGNER_ACTIONS),
            "AssignableScopes": [f"/subscriptions/{sub or '@SUBSCRIPTION@'}"],
        }
        text = json.dumps(definition, separators=(",", ":"))
        quoted = (
            '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'
        )
        quoted = quoted.replace("@SUBSCRIPTION@", "$subscription")
        commands.append(f"az role definition create --role-definition {quoted}")
    for a in plan.assignments:
        commands.append(
            f"az role assignment create --role {shlex.quote(a.role_name)} --scope {_vault_scope_shell(target.service, a.scope)}"
            f" --assignee-object-id {assignee} --assignee-principal-type ServicePrincipal"
        )
    commands.append(
        "# a vault in access-policy mode (properties.enableRbacAuthorization false) gets instead: "
        f"az keyvault set-policy -n {shlex.quote(target.service)} --object-id {assignee} "
        f"--key-permissions {' '.join(roles.ACCESS_POLICY_KEY_PERMISSIONS)}"
    )
    return commands


def revoke_commands(target: Target, principal: str | None, ref: MachineRef | None) -> list[str]:
    """The Azure CLI commands that remove what a grant of ``target`` made."""
    commands: list[str] = []
    assignee = _assignee(principal, ref, commands)
    if target.kind == "managedhsm":
        commands.append(
            f"az keyvault role assignment delete --hsm-name {shlex.quote(target.service)} --assignee {assignee}"
            f" --scope {shlex.quote(target.scope)}"
        )
        return commands
    commands.append(
        f"az role assignment delete --assignee {assignee} --scope {_vault_scope_shell(target.service, target.scope)}"
    )
    commands.append(
        "# a vault in access-policy mode: "
        f"az keyvault delete-policy -n {shlex.quote(target.service)} --object-id {assignee}"
    )
    return commands


# -- finding the identity ---------------------------------------------------------------------------


def resolve_principal(
    session: Session, plan: GrantPlan, *, subscription: str | None = None, enable_identity: bool = False
) -> GrantPlan:
    """Look up the machine of ``plan`` through Resource Manager and set its principal (a no-op for a
    principal given by object id)."""
    from hsmcert.azure import discovery

    ref = plan.machine_ref
    if plan.principal_id is not None or ref is None:
        return plan
    arm = session.arm()
    if ref.is_self:
        from hsmcert.azure.imds import this_machine

        kind, name, group, sub = this_machine(session.environ)
        where = "the instance metadata service"
        found = discovery.locate_machine(arm, sub, name, [kind], group, where)
    else:
        sub, where = session_subscription(session, arm, subscription or ref.subscription)
        kinds = [ref.kind] if ref.kind != "vm" else ["vm", "vmss", "arc"]
        found = discovery.locate_machine(arm, sub, ref.name, kinds, ref.group, f"subscription from {where}")
    enable: Callable[[], Found] | None = None
    if enable_identity:
        enable = lambda: discovery.enable_system_identity(arm, found)  # noqa: E731
    identity = discovery.identity_of(found, ref.identity, enable=enable)
    if (
        enable_identity
        and identity.kind == "system"
        and not (found.resource.get("identity") or {}).get("principalId")
    ):
        plan.done.append({"action": "enabled identity", "machine": found.machine.resource_id})
    plan.machine, plan.identity, plan.principal_id = found.machine, identity, identity.principal_id
    plan.subscription = plan.subscription or found.machine.subscription
    return plan


def session_subscription(session: Session, arm: Arm | None, given: str | None) -> tuple[str, str]:
    """The subscription (and where it came from), as :func:`hsmcert.azure.discovery.resolve_subscription`
    finds it with the session's environment; the Azure CLI's account is not read for the emulator."""
    from hsmcert.azure.discovery import resolve_subscription

    emulated = session.arm_endpoint().source == "emulator"
    return resolve_subscription(arm, given, session.environ, read_cli_profile=not emulated)


# -- applying ---------------------------------------------------------------------------------------


def apply_grant(plan: GrantPlan, client: Any) -> GrantPlan:
    """Create the custom role (once) and the role assignments in a Managed HSM, skipping those that exist.

    ``client`` is an ``azure.keyvault.administration.KeyVaultAccessControlClient`` for the HSM.
    """
    from azure.keyvault.administration import KeyVaultDataAction, KeyVaultPermission, KeyVaultRoleScope

    if plan.principal_id is None:
        raise UsageError("The identity's object id is unknown.")
    custom_id: str | None = None
    if plan.custom_role:
        for definition in client.list_role_definitions(KeyVaultRoleScope.GLOBAL):
            if definition.role_name == roles.SIGNER_ROLE_NAME:
                custom_id = definition.id
                break
        if custom_id is None:
            created = client.set_role_definition(
                KeyVaultRoleScope.GLOBAL,
                role_name=roles.SIGNER_ROLE_NAME,
                description=roles.SIGNER_ROLE_DESCRIPTION,
                permissions=[
                    KeyVaultPermission(
                        data_actions=[KeyVaultDataAction(a) for a in roles.SIGNER_ROLE_ACTIONS]
                    )
                ],
            )
            custom_id = created.id
            plan.done.append({"action": "created role", "role": roles.SIGNER_ROLE_NAME})
    for a in plan.assignments:
        definition_id = custom_id if a.role_id is None else roles.role_by_slug(a.role_id).definition_id  # type: ignore[union-attr]
        existing = [
            x
            for x in client.list_role_assignments(a.scope)
            if x.properties.principal_id == plan.principal_id
            and x.properties.scope == a.scope
            and str(x.properties.role_definition_id)
            .lower()
            .endswith(str(definition_id).rsplit("/", 1)[-1].lower())
        ]
        if existing:
            plan.done.append({"action": "already assigned", "scope": a.scope, "role": a.role_name})
            continue
        client.create_role_assignment(a.scope, definition_id, plan.principal_id)
        plan.done.append({"action": "assigned", "scope": a.scope, "role": a.role_name})
    return plan


def vault_of(session: Session, plan: GrantPlan, subscription: str | None = None) -> Vault:
    """The plan's vault, read through Resource Manager (its resource id and access mode)."""
    from hsmcert.azure import vaultaccess

    arm = session.arm()
    sub = plan.subscription
    if sub is None:
        sub, _ = session_subscription(session, arm, subscription)
    plan.subscription = sub
    vault = vaultaccess.find_vault(arm, sub, plan.target.service)
    plan.vault_id, plan.mode = vault.id, "rbac" if vault.rbac else "access-policy"
    return vault


def apply_vault(session: Session, plan: GrantPlan, vault: Vault) -> GrantPlan:
    """Give the access in a vault: role assignments (Azure RBAC) or an access policy, as the vault uses."""
    from hsmcert.azure import vaultaccess

    arm = session.arm()
    principal = plan.principal_id
    if principal is None:
        raise UsageError("The identity's object id is unknown.")
    if not vault.rbac:
        made = vaultaccess.add_policy(arm, vault, principal)
        permissions = list(roles.ACCESS_POLICY_KEY_PERMISSIONS)
        plan.done.append(
            {
                "action": "added policy" if made else "already allowed",
                "scope": vault.id,
                "permissions": permissions,
            }
        )
        return plan
    subscription = vault.subscription
    for a in plan.assignments:
        scope = vault.scope(plan.target.key if a.scope != "/" else None)
        if a.role_id is None:
            definition, created = vaultaccess.ensure_signer_role(arm, subscription)
            if created:
                plan.done.append({"action": "created role", "role": a.role_name})
        else:
            definition = roles.vault_role_by_slug(a.role_id).definition_id(subscription)  # type: ignore[union-attr]
        made = vaultaccess.assign(arm, scope, definition, principal)
        plan.done.append(
            {"action": "assigned" if made else "already assigned", "scope": scope, "role": a.role_name}
        )
    return plan


def apply(session: Session, plan: GrantPlan, *, subscription: str | None = None) -> GrantPlan:
    """Make the plan's assignments (or access policy), skipping what exists."""
    if plan.target.kind == "managedhsm":
        return session.grant(plan)
    return apply_vault(session, plan, vault_of(session, plan, subscription))


# -- waiting for the access to take effect ----------------------------------------------------------


def wait_effective(
    session: Session, plan: GrantPlan, *, timeout: float = DEFAULT_WAIT, interval: float = 2.0
) -> dict[str, Any]:
    """Wait (at most ``timeout`` seconds) until the new access is in effect, as far as can be observed.

    Azure gives no way to test another principal's data-plane access, so the probe is what Azure offers:

    - the service lists the assignment (or the vault's access policy) for the principal at the scope;
    - and, when a token of the principal itself is at hand (``--vm self`` on the machine, through its
      instance metadata service; or the caller is the principal), a data-plane read of the key with it.

    Returns ``{"effective": bool, "probe": "listed" | "data-plane", "seconds": float}``; not effective
    after ``timeout`` means Azure may take minutes more (Azure RBAC for Key Vault can take up to ten).
    """
    principal = plan.principal_id
    if principal is None:
        raise UsageError("The identity's object id is unknown.")
    probe_session = _principal_session(session, plan)
    started = time.monotonic()
    probe = "data-plane" if probe_session is not None else "listed"
    try:
        while True:
            if _listed(session, plan) and (probe_session is None or _data_plane_ok(probe_session, plan)):
                plan.effective = {
                    "effective": True,
                    "probe": probe,
                    "seconds": round(time.monotonic() - started, 1),
                }
                return plan.effective
            if time.monotonic() - started + interval > timeout:
                plan.effective = {
                    "effective": False,
                    "probe": probe,
                    "seconds": round(time.monotonic() - started, 1),
                }
                return plan.effective
            time.sleep(interval)
    finally:
        if probe_session is not None:
            probe_session.close()


def _listed(session: Session, plan: GrantPlan) -> bool:
    from hsmcert.azure import vaultaccess

    principal = str(plan.principal_id)
    if plan.target.kind == "managedhsm":
        rows = list_access(session, plan.target, principal)
        return all(any(r["scope"] == a.scope for r in rows) for a in plan.assignments)
    arm = session.arm()
    vault = vaultaccess.find_vault(arm, str(plan.subscription), plan.target.service)
    if not vault.rbac:
        return set(roles.ACCESS_POLICY_KEY_PERMISSIONS) <= vaultaccess.policy_of(vault, principal)
    scope = vault.scope(plan.target.key)
    return any(
        str((x.get("properties") or {}).get("principalId", "")).lower() == principal.lower()
        for x in vaultaccess.assignments(arm, scope, principal)
    )


def _principal_session(session: Session, plan: GrantPlan) -> Session | None:
    """A session acting as the plan's principal, when this machine can have one: the machine's own identity
    through its instance metadata service (``--vm self``), or the caller when it is the principal."""
    from hsmcert.azure.credentials import last_object_id

    if plan.machine_ref is not None and plan.machine_ref.is_self:
        from hsmcert.azure.imds import ImdsCredential

        identity = plan.identity
        credential = ImdsCredential(
            session.environ,
            client_id=identity.client_id if identity and identity.kind == "user" else None,
        )
        return session.with_credential(credential)
    if last_object_id() == plan.principal_id:
        return session.with_credential(session.credential)
    return None


def _data_plane_ok(probe: Session, plan: GrantPlan) -> bool:
    target = plan.target
    try:
        if target.key:
            probe.open_key(KeyRef(target.kind, target.service, target.key), refresh=True)
        else:
            probe.keys.list(target.kind, target.service)
    except PermissionDeniedError:
        return False
    finally:
        if target.key:
            from hsmcert.azure import keycache

            keycache.forget(str(KeyRef(target.kind, target.service, target.key)))
    return True


# -- listing and revoking ---------------------------------------------------------------------------


def list_access(
    session: Session, target: Target, principal: str | None = None, *, subscription: str | None = None
) -> list[dict[str, Any]]:
    """Who has which role at which scope of the target (a Managed HSM's local RBAC, or a vault's Azure RBAC
    assignments or access policies), optionally only ``principal``'s."""
    if target.kind == "managedhsm":
        return _list_hsm(session, target, principal)
    return _list_vault(session, target, principal, subscription)


def _hsm_client(session: Session, target: Target) -> tuple[Any, Any]:
    from azure.keyvault.administration import KeyVaultAccessControlClient

    service = session.clients(session.service_endpoint("managedhsm", target.service))
    return KeyVaultAccessControlClient(service.url, session.credential, **service.client_kwargs()), service


def _list_hsm(session: Session, target: Target, principal: str | None) -> list[dict[str, Any]]:
    from azure.keyvault.administration import KeyVaultRoleScope

    client, service = _hsm_client(session, target)
    with service.translating(target.label, "role management"):
        names = {
            str(d.name).lower(): d.role_name for d in client.list_role_definitions(KeyVaultRoleScope.GLOBAL)
        }
        rows = []
        for a in client.list_role_assignments(KeyVaultRoleScope.GLOBAL):
            props = a.properties
            scope = str(getattr(props.scope, "value", props.scope))  # the SDK gives its enum for / and /keys
            if principal and str(props.principal_id).lower() != principal.lower():
                continue
            if target.key and scope not in ("/", "/keys", target.scope):
                continue
            definition = str(props.role_definition_id).rsplit("/", 1)[-1].lower()
            rows.append(
                {
                    "service": target.label,
                    "principal_id": props.principal_id,
                    "role": names.get(definition, definition),
                    "scope": scope,
                    "kind": "role assignment",
                    "id": a.name,
                }
            )
    return sorted(rows, key=lambda r: (r["scope"], r["role"], r["principal_id"]))


def _find_vault(session: Session, target: Target, subscription: str | None) -> Vault:
    from hsmcert.azure import vaultaccess

    arm = session.arm()
    sub, _ = session_subscription(session, arm, subscription)
    return vaultaccess.find_vault(arm, sub, target.service)


def _list_vault(
    session: Session, target: Target, principal: str | None, subscription: str | None
) -> list[dict[str, Any]]:
    from hsmcert.azure import vaultaccess

    arm = session.arm()
    vault = _find_vault(session, target, subscription)
    rows: list[dict[str, Any]] = []
    if not vault.rbac:
        for entry in vault.access_policies:
            oid = str(entry.get("objectId", ""))
            if principal and oid.lower() != principal.lower():
                continue
            keys = sorted(str(p).lower() for p in (entry.get("permissions") or {}).get("keys") or [])
            rows.append(
                {
                    "service": target.label,
                    "principal_id": oid,
                    "role": "keys: " + (",".join(keys) or "none"),
                    "scope": vault.id,
                    "kind": "access policy",
                    "id": None,
                }
            )
        return rows
    scope = vault.scope(target.key)
    found = vaultaccess.assignments(arm, scope, principal)
    names = vaultaccess.role_names(
        arm, sorted({str((x.get("properties") or {}).get("roleDefinitionId", "")) for x in found})
    )
    for x in found:
        props = x.get("properties") or {}
        rows.append(
            {
                "service": target.label,
                "principal_id": props.get("principalId"),
                "role": names.get(str(props.get("roleDefinitionId", "")), ""),
                "scope": props.get("scope"),
                "kind": "role assignment",
                "id": x.get("name"),
            }
        )
    return sorted(rows, key=lambda r: (str(r["scope"]), str(r["role"]), str(r["principal_id"])))


def revoke(
    session: Session,
    target: Target,
    principal: str,
    *,
    subscription: str | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Remove what grants made for ``principal`` at the target: its role assignments at the target's scope
    (a key's; with no key, every key scope and ``/keys``), or the get and sign permissions of its access
    policy. Returns what was (or, with ``dry_run``, would be) removed; nothing to remove is no error."""
    check_principal(principal)
    if target.kind == "managedhsm":
        return _revoke_hsm(session, target, principal, dry_run)
    from hsmcert.azure import vaultaccess

    arm = session.arm()
    vault = _find_vault(session, target, subscription)
    if not vault.rbac:
        if vaultaccess.remove_policy(arm, vault, principal, dry_run=dry_run):
            return [
                {
                    "action": "removed policy",
                    "scope": vault.id,
                    "permissions": list(roles.ACCESS_POLICY_KEY_PERMISSIONS),
                }
            ]
        return []
    gone = vaultaccess.unassign(arm, vault.scope(target.key), principal, dry_run=dry_run)
    names = vaultaccess.role_names(
        arm, [str((x.get("properties") or {}).get("roleDefinitionId", "")) for x in gone]
    )
    return [
        {
            "action": "removed",
            "scope": (x.get("properties") or {}).get("scope"),
            "role": names.get(str((x.get("properties") or {}).get("roleDefinitionId", ""))),
        }
        for x in gone
    ]


def _revoke_hsm(session: Session, target: Target, principal: str, dry_run: bool) -> list[dict[str, Any]]:
    rows = _list_hsm(session, target, principal)
    if target.key or target.scope == "/":
        chosen = [r for r in rows if r["scope"] == target.scope]
    else:
        chosen = [r for r in rows if r["scope"] == "/keys" or r["scope"].startswith("/keys/")]
    client, service = _hsm_client(session, target)
    with service.translating(target.label, "role management"):
        for row in chosen:
            if not dry_run:
                client.delete_role_assignment(row["scope"], row["id"])
    return [{"action": "removed", "scope": r["scope"], "role": r["role"]} for r in chosen]


__all__ = [
    "KINDS",
    "Assignment",
    "GrantPlan",
    "HsmcertError",
    "MachineRef",
    "NotFoundError",
    "Target",
    "apply",
    "az_commands",
    "check_principal",
    "list_access",
    "plan_grant",
    "resolve_principal",
    "revoke",
    "revoke_commands",
    "target_for",
    "wait_effective",
]
