"""Key Vault certificates (vault services only): create with issuer Self or Unknown (a pending operation
carrying the CSR, completed by merge), import, get, list, versions, policy, delete / recover / purge.

A certificate's key is a key of the same name and version in the vault's keys, made and kept inside the
emulator (sign with it through the keys API); its secret (the exportable PFX/PEM) is not served.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import ApiError, Request, Response, b64u, bad, check_name, field_of, paged, unb64
from hsmcert.emulator.keycrypto import generate, private_der, public_jwk
from hsmcert.emulator.keys import DEFAULT_OPS, KeyVersion, new_version, parse_tags

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

SAN_KINDS = ("dns_names", "emails", "upns", "ipAddresses", "uris")
"""The subject alternative name lists of a policy (as the REST API spells them)."""
KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)


def _not_found(name: str) -> ApiError:
    return ApiError(
        404,
        "CertificateNotFound",
        f"A certificate with (name/id) {name[:130]} was not found in this key vault.",
    )


class Certificates:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.pending: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.deleted_versions: dict[str, list[dict[str, Any]]] = {}

    # --- persistence ------------------------------------------------------------------------------------

    def load(self, kind: str, ident: str, data: dict[str, Any]) -> None:
        if kind == "certificate":
            self.versions.setdefault(data["name"], []).append(data)
        elif kind == "certop":
            self.pending[ident] = data
        elif kind == "deletedcert":
            self.deleted[ident] = data

    def finish_loading(self) -> None:
        for name in list(self.deleted):
            versions = self.versions.pop(name, None)
            if versions:
                self.deleted_versions[name] = versions
            else:
                del self.deleted[name]

    def save(self, cert: dict[str, Any]) -> None:
        self.service.store.put(self.service.name, "certificate", f"{cert['name']}/{cert['version']}", cert)

    # --- shapes -----------------------------------------------------------------------------------------

    def find_version(self, name: str, version: str) -> dict[str, Any]:
        versions = self.versions.get(name)
        if not versions:
            raise _not_found(name)
        if not version:
            return versions[-1]
        for cert in versions:
            if cert["version"] == version.lower():
                return cert
        raise _not_found(f"{name}/{version}")

    def _attributes(self, cert: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(cert["attributes"])
        attrs.update(
            {"recoveryLevel": self.service.recovery_level, "recoverableDays": self.service.recoverable_days}
        )
        return attrs

    def policy_of(self, base_url: str, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"{base_url}/certificates/{name}/policy", **policy}

    def bundle(self, base_url: str, cert: dict[str, Any]) -> dict[str, Any]:
        name, version = cert["name"], cert["version"]
        result: dict[str, Any] = {
            "id": f"{base_url}/certificates/{name}/{version}",
            "kid": f"{base_url}/keys/{name}/{version}",
            "sid": f"{base_url}/secrets/{name}/{version}",
            "attributes": self._attributes(cert),
            "policy": self.policy_of(base_url, name, cert["policy"]),
        }
        if cert.get("cer"):
            der = base64.b64decode(cert["cer"])
            result["cer"] = cert["cer"]
            result["x5t"] = b64u(hashlib.sha1(der).digest())  # noqa: S324 - the x5t thumbprint is SHA-1
        if cert.get("tags"):
            result["tags"] = cert["tags"]
        return result

    def item(self, base_url: str, cert: dict[str, Any], versioned: bool) -> dict[str, Any]:
        full = self.bundle(base_url, cert)
        item = {k: v for k, v in full.items() if k in ("attributes", "tags", "x5t")}
        item["id"] = full["id"] if versioned else f"{base_url}/certificates/{cert['name']}"
        return item

    def operation(self, base_url: str, name: str, op: dict[str, Any]) -> dict[str, Any]:
        result = {
            "id": f"{base_url}/certificates/{name}/pending",
            "issuer": {"name": op["issuer"]},
            "csr": op["csr"],
            "cancellation_requested": op.get("cancellation_requested", False),
            "status": op["status"],
            "status_details": op.get("status_details", ""),
            "target": f"{base_url}/certificates/{name}",
            "request_id": op["request_id"],
        }
        if op.get("error"):
            result["error"] = op["error"]
        return result

    # --- policy -----------------------------------------------------------------------------------------

    def parse_policy(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise bad("The 'policy' field must be an object.")
        key_props = raw.get("key_props") or {}
        x509_props = raw.get("x509_props") or {}
        issuer = raw.get("issuer") or {}
        secret_props = raw.get("secret_props") or {}
        parts = (key_props, "key_props"), (x509_props, "x509_props"), (issuer, "issuer")
        for part, what in (*parts, (secret_props, "secret_props")):
            if not isinstance(part, dict):
                raise bad(f"The policy's '{what}' must be an object.")
        kty = field_of(key_props, "kty", str) or "RSA"
        if kty.replace("-HSM", "") not in ("RSA", "EC"):
            raise bad(f"A certificate key must be RSA or EC, not {kty[:20]}.")
        issuer_name = field_of(issuer, "name", str) or "Self"
        if issuer_name.lower() not in ("self", "unknown"):
            raise bad(f"The issuer '{issuer_name[:40]}' is not supported here; use Self or Unknown.")
        subject = field_of(x509_props, "subject", str) or ""
        sans = x509_props.get("sans") or {}
        if not isinstance(sans, dict) or not all(
            isinstance(names, list)
            and all(isinstance(n, str) and n.isascii() and 0 < len(n) <= 253 for n in names)
            for kind, names in sans.items()
            if kind in SAN_KINDS and names
        ):
            raise bad(
                "The policy's 'sans' must be an object of lists of names (ASCII, at most 253 characters)."
            )
        for address in sans.get("ipAddresses") or []:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise bad(f"The SAN IP address '{address[:60]}' is not an IPv4 or IPv6 address.") from None
        if not subject and not any(sans.values()):
            raise bad("The certificate policy needs a subject or subject alternative names.")
        self.x500_name(subject)
        months = field_of(x509_props, "validity_months", int) or 12
        if not 1 <= months <= 1200:
            raise bad("validity_months must be between 1 and 1200.")
        usages = x509_props.get("key_usage") or []
        if not isinstance(usages, list) or any(u not in KEY_USAGES for u in usages):
            raise bad(f"Unknown key usage; use: {', '.join(KEY_USAGES)}.")
        ekus = x509_props.get("ekus") or []
        if not isinstance(ekus, list) or not all(isinstance(e, str) for e in ekus):
            raise bad("The policy's 'ekus' must be a list of OIDs.")
        key = {
            "exportable": bool(field_of(key_props, "exportable", bool)),
            "kty": kty,
            "reuse_key": bool(field_of(key_props, "reuse_key", bool)),
        }
        if kty.startswith("RSA"):
            key["key_size"] = field_of(key_props, "key_size", int) or 2048
        else:
            key["crv"] = field_of(key_props, "crv", str) or "P-256"
        actions = raw.get("lifetime_actions")
        if actions is not None and (
            not isinstance(actions, list) or not all(isinstance(action, dict) for action in actions)
        ):
            raise bad("The policy's 'lifetime_actions' must be a list of objects.")
        now = int(time.time())
        policy = {
            "key_props": key,
            "secret_props": {
                "contentType": field_of(secret_props, "contentType", str) or "application/x-pkcs12"
            },
            "x509_props": {
                "subject": subject,
                "sans": {k: v for k, v in sans.items() if k in SAN_KINDS and v},
                "ekus": ekus,
                "key_usage": usages,
                "validity_months": months,
            },
            "lifetime_actions": actions
            or [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}],
            "issuer": {"name": "Self" if issuer_name.lower() == "self" else "Unknown"},
            "attributes": {"enabled": True, "created": now, "updated": now},
        }
        from cryptography import x509

        self.extensions(x509.CertificateSigningRequestBuilder(), policy, None)  # 400 now, before any key
        return policy

    @staticmethod
    def x500_name(subject: str) -> Any:
        from cryptography import x509

        try:
            return x509.Name.from_rfc4514_string(subject) if subject else x509.Name([])
        except ValueError:
            raise bad(f"The subject '{subject[:100]}' is not a valid X.500 name.") from None

    def extensions(self, builder: Any, policy: dict[str, Any], public: Any) -> Any:
        try:
            return self._add_extensions(builder, policy)
        except ValueError as exc:
            raise bad(f"The certificate policy cannot be used: {str(exc)[:120]}") from None

    def _add_extensions(self, builder: Any, policy: dict[str, Any]) -> Any:
        from cryptography import x509
        from cryptography.x509.oid import ObjectIdentifier

        props = policy["x509_props"]
        sans = props["sans"]
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in sans.get("dns_names", [])]
        names += [x509.RFC822Name(e) for e in sans.get("emails", [])]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sans.get("ipAddresses", [])]
        names += [x509.UniformResourceIdentifier(u) for u in sans.get("uris", [])]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not props["subject"])
        if props["ekus"]:
            try:
                oids = [ObjectIdentifier(e) for e in props["ekus"]]
            except ValueError:
                raise bad("An EKU in the policy is not a valid OID.") from None
            builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
        if props["key_usage"]:
            flags = {u: u in props["key_usage"] for u in KEY_USAGES}
            builder = builder.add_extension(
                x509.KeyUsage(
                    flags["digitalSignature"],
                    flags["nonRepudiation"],
                    flags["keyEncipherment"],
                    flags["dataEncipherment"],
                    flags["keyAgreement"],
                    flags["keyCertSign"],
                    flags["cRLSign"],
                    flags["encipherOnly"] and flags["keyAgreement"],
                    flags["decipherOnly"] and flags["keyAgreement"],
                ),
                critical=True,
            )
        return builder

    @staticmethod
    def hash_for(private: Any) -> Any:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        if isinstance(private, ec.EllipticCurvePrivateKey):
            return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(private.curve.key_size, hashes.SHA256())
        return hashes.SHA256()

    # --- create / merge / import ------------------------------------------------------------------------

    def new_key(self, name: str, version: str, policy: dict[str, Any], private: Any = None) -> Any:
        props = policy["key_props"]
        kty = props["kty"]
        if private is None:
            body = {"key_size": props.get("key_size"), "crv": props.get("crv")}
            private, _ = generate(kty, {k: v for k, v in body.items() if v is not None})
        now = int(time.time())
        size = getattr(private, "key_size", None) if kty.startswith("RSA") else None
        kv = KeyVersion(
            name, version, kty, list(DEFAULT_OPS[kty.replace("-HSM", "")]), public_jwk(private), now, now
        )
        kv.size, kv._private = size, private
        self.service.add_version(kv, private_der(private))
        return private

    @staticmethod
    def new_cert(name: str, version: str, policy: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """A certificate version (no certificate yet) with the tags and enabled flag of a request."""
        now = int(time.time())
        attrs: dict[str, Any] = body["attributes"] if isinstance(body.get("attributes"), dict) else {}
        return {
            "name": name,
            "version": version,
            "cer": None,
            "policy": policy,
            "tags": parse_tags(body) or {},
            "attributes": {
                "enabled": field_of(attrs, "enabled", bool) is not False,
                "created": now,
                "updated": now,
            },
        }

    def self_signed(self, private: Any, policy: dict[str, Any]) -> Any:
        import secrets

        from cryptography import x509

        subject = self.x500_name(policy["x509_props"]["subject"])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(private.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30 * policy["x509_props"]["validity_months"]))
        )
        builder = self.extensions(builder, policy, private.public_key())
        # as Key Vault's own: key identifiers, the authority's being the subject's (RFC 5280 4.2.1.1/2)
        ski = x509.SubjectKeyIdentifier.from_public_key(private.public_key())
        builder = builder.add_extension(ski, critical=False).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        return builder.sign(private, self.hash_for(private))

    def complete(self, cert: dict[str, Any], x509_cert: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        cert["cer"] = base64.b64encode(x509_cert.public_bytes(serialization.Encoding.DER)).decode()
        cert["attributes"].update(
            {
                "enabled": True,
                "nbf": int(x509_cert.not_valid_before_utc.timestamp()),
                "exp": int(x509_cert.not_valid_after_utc.timestamp()),
                "updated": int(time.time()),
            }
        )

    # --- reads, updates, pending ------------------------------------------------------------------------

    def pending_op(self, name: str) -> dict[str, Any]:
        op = self.pending.get(name)
        if op is None:
            raise ApiError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name[:130]}")
        return op

    # --- delete / recover / purge (the certificate's key goes with it) ----------------------------------

    def deleted_bundle(self, base_url: str, name: str) -> dict[str, Any]:
        info = self.deleted[name]
        bundle = self.bundle(base_url, self.deleted_versions[name][-1])
        bundle.update(
            {
                "recoveryId": f"{base_url}/deletedcertificates/{name}",
                "deletedDate": info["deletedDate"],
                "scheduledPurgeDate": info["scheduledPurgeDate"],
            }
        )
        return bundle

    def require_not_deleted(self, name: str) -> None:
        if name in self.deleted:
            raise ApiError(
                409,
                "Conflict",
                f"Certificate {name} is currently in a deleted but recoverable state.",
                "ObjectIsDeletedButRecoverable",
            )

    def require_deleted(self, name: str) -> None:
        if name not in self.deleted:
            raise ApiError(404, "CertificateNotFound", f"Deleted certificate not found: {name[:130]}")


def _certs(service: Service) -> Certificates:
    assert service.certificates is not None, "the certificate routes are a vault's only"
    return service.certificates


# --- handlers: each answers one route of :mod:`hsmcert.emulator.routes` ------------------------------------


def create(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    from cryptography import x509

    check_name(name, "certificate")
    body = req.json()
    policy = certs.parse_policy(body.get("policy"))
    existing = certs.pending.get(name)
    if existing is not None and existing["status"] == "inProgress":
        raise ApiError(409, "Conflict", f"A certificate operation for {name} is already in progress.")
    certs.require_not_deleted(name)
    version = new_version()
    cert = certs.new_cert(name, version, policy, body)
    private = certs.new_key(name, version, policy)
    subject = certs.x500_name(policy["x509_props"]["subject"])
    csr_builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    csr_builder = certs.extensions(csr_builder, policy, private.public_key())
    csr = csr_builder.sign(private, certs.hash_for(private))
    from cryptography.hazmat.primitives import serialization

    csr_b64 = base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
    op = {
        "issuer": policy["issuer"]["name"],
        "csr": csr_b64,
        "status": "inProgress",
        "request_id": version,
    }
    if policy["issuer"]["name"] == "Self":
        certs.complete(cert, certs.self_signed(private, policy))
        op["status"], op["status_details"] = "completed", ""
    else:
        cert["attributes"]["enabled"] = False
    certs.versions.setdefault(name, []).append(cert)
    certs.save(cert)
    certs.pending[name] = op
    service.store.put(service.name, "certop", name, op)
    # A Self certificate is ready at once, but the SDK's poller returns nothing for an operation that is
    # complete in the first answer: say "inProgress" here; its first poll (made at once) sees "completed".
    answer = certs.operation(req.base_url, name, {**op, "status": "inProgress"})
    return Response(202, answer, audit={"key": name, "version": version})


def merge(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    op = certs.pending.get(name)
    if op is None or op["status"] != "inProgress":
        raise ApiError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name[:130]}")
    x5c = req.json().get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise bad("The 'x5c' field must be a non-empty list of certificates.")
    try:
        leaf = x509.load_der_x509_certificate(unb64(x5c[0], "x5c"))
    except ValueError:
        raise bad("The first certificate of 'x5c' is not a DER X.509 certificate.") from None
    cert = certs.find_version(name, "")
    kv = service.version(name, cert["version"])
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != kv.private(service).public_key().public_bytes(*spki):
        raise bad("The certificate's public key does not match the pending certificate's key.")
    certs.complete(cert, leaf)
    certs.save(cert)
    op["status"] = "completed"
    service.store.put(service.name, "certop", name, op)
    return Response(201, certs.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})


def import_certificate(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    check_name(name, "certificate")
    body = req.json()
    value = body.get("value")
    if not isinstance(value, str) or not value:
        raise bad("The 'value' field (the PFX or PEM) is required.")
    password = body.get("pwd")
    if password is not None and not isinstance(password, str):
        raise bad("The 'pwd' field must be a string.")
    raw = value.encode() if "-----BEGIN" in value else unb64(value, "value")
    private: Any
    leaf: Any
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            private = serialization.load_pem_private_key(raw, password.encode() if password else None)
            leaf = x509.load_pem_x509_certificates(raw)[0]
        else:
            private, leaf, _ = pkcs12.load_key_and_certificates(raw, password.encode() if password else None)
    except (ValueError, TypeError, IndexError):
        raise bad("The certificate could not be read (wrong format or password).") from None
    if private is None or leaf is None:
        raise bad("The imported data must hold a private key and its certificate.")
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if not isinstance(private, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise bad("Only RSA and EC certificates can be imported.")
    raw_policy = body.get("policy") or {}
    x509_props = raw_policy.get("x509_props") or {} if isinstance(raw_policy, dict) else None
    key_props = raw_policy.get("key_props") or {} if isinstance(raw_policy, dict) else None
    if not isinstance(x509_props, dict) or not isinstance(key_props, dict):
        raise bad("The 'policy' field must be an object with 'x509_props' and 'key_props' objects.")
    if not x509_props.get("subject"):
        x509_props = {**x509_props, "subject": leaf.subject.rfc4514_string()}
    key_props = {**key_props, "kty": "RSA" if isinstance(private, rsa.RSAPrivateKey) else "EC"}
    policy = certs.parse_policy({**raw_policy, "x509_props": x509_props, "key_props": key_props})
    certs.require_not_deleted(name)
    version = new_version()
    cert = certs.new_cert(name, version, policy, body)
    certs.new_key(name, version, policy, private)
    certs.complete(cert, leaf)
    certs.versions.setdefault(name, []).append(cert)
    certs.save(cert)
    return Response(200, certs.bundle(req.base_url, cert), audit={"key": name, "version": version})


def get(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    version = req.params.get("version", "")
    cert = certs.find_version(name, version)
    return Response(200, certs.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})


def update(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    version = req.params.get("version", "")
    cert = certs.find_version(name, version)
    body = req.json()
    attrs = body.get("attributes")
    if isinstance(attrs, dict) and isinstance(attrs.get("enabled"), bool):
        cert["attributes"]["enabled"] = attrs["enabled"]
    tags = parse_tags(body)
    if tags is not None:
        cert["tags"] = tags
    cert["attributes"]["updated"] = int(time.time())
    certs.save(cert)
    return Response(200, certs.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})


def get_policy(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    cert = certs.find_version(name, "")
    return Response(200, certs.policy_of(req.base_url, name, cert["policy"]), audit={"key": name})


def list_certificates(service: Service, req: Request) -> Response:
    certs = _certs(service)
    items = [
        certs.item(req.base_url, versions[-1], False) for versions in certs.versions.values() if versions
    ]
    return Response(200, paged(items, req, "/certificates"), audit={})


def versions(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    if name not in certs.versions:
        raise _not_found(name)
    items = [certs.item(req.base_url, cert, True) for cert in certs.versions[name]]
    return Response(200, paged(items, req, f"/certificates/{name}/versions"), audit={"key": name})


def get_pending(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    return Response(200, certs.operation(req.base_url, name, certs.pending_op(name)), audit={"key": name})


def cancel_pending(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    op = certs.pending_op(name)
    if req.json().get("cancellation_requested") is True and op["status"] == "inProgress":
        op["cancellation_requested"] = True
        op["status"] = "cancelled"
        service.store.put(service.name, "certop", name, op)
    return Response(200, certs.operation(req.base_url, name, op), audit={"key": name})


def delete_pending(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    op = certs.pending_op(name)
    del certs.pending[name]
    service.store.delete(service.name, "certop", name)
    return Response(200, certs.operation(req.base_url, name, op), audit={"key": name})


def delete(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    if name not in certs.versions:
        raise _not_found(name)
    now = int(time.time())
    info = {"deletedDate": now, "scheduledPurgeDate": now + service.recoverable_days * 86400}
    service.store.put(service.name, "deletedcert", name, info)
    certs.deleted[name] = info
    certs.deleted_versions[name] = certs.versions.pop(name)
    if name in service.keys:
        service.delete_key(name)
    return Response(200, certs.deleted_bundle(req.base_url, name), audit={"key": name})


def get_deleted(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    certs.require_deleted(name)
    return Response(200, certs.deleted_bundle(req.base_url, name), audit={"key": name})


def list_deleted(service: Service, req: Request) -> Response:
    certs = _certs(service)
    items = []
    for name in certs.deleted:
        bundle = certs.deleted_bundle(req.base_url, name)
        item = {k: v for k, v in bundle.items() if k not in ("cer", "policy", "kid", "sid")}
        item["id"] = f"{req.base_url}/certificates/{name}"
        items.append(item)
    return Response(200, paged(items, req, "/deletedcertificates"), audit={})


def recover(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    certs.require_deleted(name)
    certs.versions[name] = certs.deleted_versions.pop(name)
    del certs.deleted[name]
    service.store.delete(service.name, "deletedcert", name)
    if name in service.deleted:
        service.recover_key(name)
    return Response(200, certs.bundle(req.base_url, certs.versions[name][-1]), audit={"key": name})


def purge(service: Service, req: Request) -> Response:
    certs = _certs(service)
    name = req.params["name"]
    certs.require_deleted(name)
    for cert in certs.deleted_versions.pop(name):
        service.store.delete(service.name, "certificate", f"{name}/{cert['version']}")
    del certs.deleted[name]
    service.store.delete(service.name, "deletedcert", name)
    certs.pending.pop(name, None)
    service.store.delete(service.name, "certop", name)
    if name in service.deleted:
        service.purge_key(name)
    return Response(204, None, audit={"key": name})
