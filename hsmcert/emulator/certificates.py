"""Key Vault certificates (vault services only): create with issuer Self or Unknown (a pending operation
carrying the CSR, completed by merge), import, get, list, versions, policy, delete / recover / purge.

A certificate's key is a key of the same name and version in the vault's keys, made and kept inside the
emulator (sign with it through the keys API); its secret (the exportable PFX/PEM) is not served.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import ApiError, Request, Response, b64u, bad, check_name, field_of, paged, unb64
from hsmcert.emulator.keys import (
    DEFAULT_OPS,
    KeyVersion,
    generate,
    new_version,
    parse_tags,
    private_der,
    public_jwk,
)

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

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

    def _save(self, cert: dict[str, Any]) -> None:
        self.service.store.put(self.service.name, "certificate", f"{cert['name']}/{cert['version']}", cert)

    # --- routing ----------------------------------------------------------------------------------------

    def route(self, req: Request, segs: list[str]) -> tuple[str | None, str | None, Any]:
        method, n = req.method, len(segs)
        head = segs[0].lower()
        third = segs[2].lower() if n > 2 else ""

        def only(want: str, op: str, name: str | None, handler: Any) -> tuple[str | None, str | None, Any]:
            if method != want:
                raise ApiError(
                    405, "MethodNotAllowed", f"The method {method} is not allowed for {req.path[:200]}."
                )
            return f"certificate-{op}", name, handler

        if head == "deletedcertificates":
            if n == 1:
                return only("GET", "deleted-list", None, lambda: self.deleted_list(req))
            name = segs[1]
            if n == 2 and method == "DELETE":
                return "certificate-purge", name, lambda: self.purge(req, name)
            if n == 2:
                return only("GET", "deleted-get", name, lambda: self.deleted_get(req, name))
            if n == 3 and third == "recover":
                return only("POST", "recover", name, lambda: self.recover(req, name))
        elif n == 1:
            return only("GET", "list", None, lambda: self.list(req))
        else:
            name = segs[1]
            if n == 2 and method == "DELETE":
                return "certificate-delete", name, lambda: self.delete(req, name)
            if n == 2:
                return only("GET", "get", name, lambda: self.get(req, name, ""))
            if n == 3 and third == "create":
                return only("POST", "create", name, lambda: self.create(req, name))
            if n == 3 and third == "import":
                return only("POST", "import", name, lambda: self.import_(req, name))
            if n == 3 and third == "versions":
                return only("GET", "versions", name, lambda: self.list_versions(req, name))
            if n == 3 and third == "policy":
                return only("GET", "policy", name, lambda: self.get_policy(req, name))
            if n == 3 and third == "pending":
                if method == "DELETE":
                    return "certificate-pending-delete", name, lambda: self.pending_delete(req, name)
                if method == "PATCH":
                    return "certificate-pending-cancel", name, lambda: self.pending_cancel(req, name)
                return only("GET", "pending", name, lambda: self.pending_get(req, name))
            if n == 4 and third == "pending" and segs[3].lower() == "merge":
                return only("POST", "merge", name, lambda: self.merge(req, name))
            if n == 3:
                version = segs[2]
                if method == "PATCH":
                    return "certificate-update", name, lambda: self.update(req, name, version)
                return only("GET", "get", name, lambda: self.get(req, name, version))
        raise ApiError(404, "NotFound", f"The route {method} {req.path[:200]} does not exist.")

    # --- shapes -----------------------------------------------------------------------------------------

    def _version(self, name: str, version: str) -> dict[str, Any]:
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

    def _policy(self, base_url: str, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"{base_url}/certificates/{name}/policy", **policy}

    def bundle(self, base_url: str, cert: dict[str, Any]) -> dict[str, Any]:
        name, version = cert["name"], cert["version"]
        result: dict[str, Any] = {
            "id": f"{base_url}/certificates/{name}/{version}",
            "kid": f"{base_url}/keys/{name}/{version}",
            "sid": f"{base_url}/secrets/{name}/{version}",
            "attributes": self._attributes(cert),
            "policy": self._policy(base_url, name, cert["policy"]),
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

    def _parse_policy(self, raw: Any) -> dict[str, Any]:
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
            if kind in ("dns_names", "emails", "upns") and names
        ):
            raise bad(
                "The policy's 'sans' must be an object of lists of names (ASCII, at most 253 characters)."
            )
        if not subject and not any(sans.values()):
            raise bad("The certificate policy needs a subject or subject alternative names.")
        self._name(subject)
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
            "exportable": bool(key_props.get("exportable", False)),
            "kty": kty,
            "reuse_key": bool(key_props.get("reuse_key", False)),
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
            "secret_props": {"contentType": str(secret_props.get("contentType") or "application/x-pkcs12")},
            "x509_props": {
                "subject": subject,
                "sans": {k: v for k, v in sans.items() if k in ("dns_names", "emails", "upns") and v},
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

        self._extensions(x509.CertificateSigningRequestBuilder(), policy, None)  # 400 now, before any key
        return policy

    @staticmethod
    def _name(subject: str) -> Any:
        from cryptography import x509

        try:
            return x509.Name.from_rfc4514_string(subject) if subject else x509.Name([])
        except ValueError:
            raise bad(f"The subject '{subject[:100]}' is not a valid X.500 name.") from None

    def _extensions(self, builder: Any, policy: dict[str, Any], public: Any) -> Any:
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
    def _hash_for(private: Any) -> Any:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        if isinstance(private, ec.EllipticCurvePrivateKey):
            return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(private.curve.key_size, hashes.SHA256())
        return hashes.SHA256()

    # --- create / merge / import ------------------------------------------------------------------------

    def _new_key(self, name: str, version: str, policy: dict[str, Any], private: Any = None) -> Any:
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
    def _new_cert(name: str, version: str, policy: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """A certificate version (no certificate yet) with the tags and enabled flag of a request."""
        now = int(time.time())
        attrs: dict[str, Any] = body["attributes"] if isinstance(body.get("attributes"), dict) else {}
        return {
            "name": name,
            "version": version,
            "cer": None,
            "policy": policy,
            "tags": parse_tags(body) or {},
            "attributes": {"enabled": bool(attrs.get("enabled", True)), "created": now, "updated": now},
        }

    def create(self, req: Request, name: str) -> Response:
        from cryptography import x509

        check_name(name, "certificate")
        body = req.json()
        policy = self._parse_policy(body.get("policy"))
        existing = self.pending.get(name)
        if existing is not None and existing["status"] == "inProgress":
            raise ApiError(409, "Conflict", f"A certificate operation for {name} is already in progress.")
        if name in self.deleted:
            raise ApiError(
                409,
                "Conflict",
                f"Certificate {name} is currently in a deleted but recoverable state.",
                "ObjectIsDeletedButRecoverable",
            )
        version = new_version()
        cert = self._new_cert(name, version, policy, body)
        private = self._new_key(name, version, policy)
        subject = self._name(policy["x509_props"]["subject"])
        csr_builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        csr_builder = self._extensions(csr_builder, policy, private.public_key())
        csr = csr_builder.sign(private, self._hash_for(private))
        from cryptography.hazmat.primitives import serialization

        csr_b64 = base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
        op = {
            "issuer": policy["issuer"]["name"],
            "csr": csr_b64,
            "status": "inProgress",
            "request_id": version,
        }
        if policy["issuer"]["name"] == "Self":
            self._complete(cert, self._self_signed(private, policy))
            op["status"], op["status_details"] = "completed", ""
        else:
            cert["attributes"]["enabled"] = False
        self.versions.setdefault(name, []).append(cert)
        self._save(cert)
        self.pending[name] = op
        self.service.store.put(self.service.name, "certop", name, op)
        # A Self certificate is ready at once, but the SDK's poller returns nothing for an operation that is
        # complete in the first answer: say "inProgress" here; its first poll (made at once) sees "completed".
        answer = self.operation(req.base_url, name, {**op, "status": "inProgress"})
        return Response(202, answer, audit={"key": name, "version": version})

    def _self_signed(self, private: Any, policy: dict[str, Any]) -> Any:
        import secrets

        from cryptography import x509

        subject = self._name(policy["x509_props"]["subject"])
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
        builder = self._extensions(builder, policy, private.public_key())
        return builder.sign(private, self._hash_for(private))

    def _complete(self, cert: dict[str, Any], x509_cert: Any) -> None:
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

    def merge(self, req: Request, name: str) -> Response:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        op = self.pending.get(name)
        if op is None or op["status"] != "inProgress":
            raise ApiError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name[:130]}")
        x5c = req.json().get("x5c")
        if not isinstance(x5c, list) or not x5c:
            raise bad("The 'x5c' field must be a non-empty list of certificates.")
        try:
            leaf = x509.load_der_x509_certificate(unb64(x5c[0], "x5c"))
        except ValueError:
            raise bad("The first certificate of 'x5c' is not a DER X.509 certificate.") from None
        cert = self._version(name, "")
        kv = self.service.version(name, cert["version"])
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if leaf.public_key().public_bytes(*spki) != kv.private(self.service).public_key().public_bytes(*spki):
            raise bad("The certificate's public key does not match the pending certificate's key.")
        self._complete(cert, leaf)
        self._save(cert)
        op["status"] = "completed"
        self.service.store.put(self.service.name, "certop", name, op)
        return Response(201, self.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})

    def import_(self, req: Request, name: str) -> Response:
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
                private, leaf, _ = pkcs12.load_key_and_certificates(
                    raw, password.encode() if password else None
                )
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
        policy = self._parse_policy({**raw_policy, "x509_props": x509_props, "key_props": key_props})
        if name in self.deleted:
            raise ApiError(
                409,
                "Conflict",
                f"Certificate {name} is deleted but recoverable.",
                "ObjectIsDeletedButRecoverable",
            )
        version = new_version()
        cert = self._new_cert(name, version, policy, body)
        self._new_key(name, version, policy, private)
        self._complete(cert, leaf)
        self.versions.setdefault(name, []).append(cert)
        self._save(cert)
        return Response(200, self.bundle(req.base_url, cert), audit={"key": name, "version": version})

    # --- reads, updates, pending ------------------------------------------------------------------------

    def get(self, req: Request, name: str, version: str) -> Response:
        cert = self._version(name, version)
        return Response(200, self.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})

    def update(self, req: Request, name: str, version: str) -> Response:
        cert = self._version(name, version)
        body = req.json()
        attrs = body.get("attributes")
        if isinstance(attrs, dict) and isinstance(attrs.get("enabled"), bool):
            cert["attributes"]["enabled"] = attrs["enabled"]
        tags = parse_tags(body)
        if tags is not None:
            cert["tags"] = tags
        cert["attributes"]["updated"] = int(time.time())
        self._save(cert)
        return Response(200, self.bundle(req.base_url, cert), audit={"key": name, "version": cert["version"]})

    def get_policy(self, req: Request, name: str) -> Response:
        cert = self._version(name, "")
        return Response(200, self._policy(req.base_url, name, cert["policy"]), audit={"key": name})

    def list(self, req: Request) -> Response:
        items = [
            self.item(req.base_url, versions[-1], False) for versions in self.versions.values() if versions
        ]
        return Response(200, paged(items, req, "/certificates"), audit={})

    def list_versions(self, req: Request, name: str) -> Response:
        if name not in self.versions:
            raise _not_found(name)
        items = [self.item(req.base_url, cert, True) for cert in self.versions[name]]
        return Response(200, paged(items, req, f"/certificates/{name}/versions"), audit={"key": name})

    def _pending(self, name: str) -> dict[str, Any]:
        op = self.pending.get(name)
        if op is None:
            raise ApiError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name[:130]}")
        return op

    def pending_get(self, req: Request, name: str) -> Response:
        return Response(200, self.operation(req.base_url, name, self._pending(name)), audit={"key": name})

    def pending_cancel(self, req: Request, name: str) -> Response:
        op = self._pending(name)
        if req.json().get("cancellation_requested") is True and op["status"] == "inProgress":
            op["cancellation_requested"] = True
            op["status"] = "cancelled"
            self.service.store.put(self.service.name, "certop", name, op)
        return Response(200, self.operation(req.base_url, name, op), audit={"key": name})

    def pending_delete(self, req: Request, name: str) -> Response:
        op = self._pending(name)
        del self.pending[name]
        self.service.store.delete(self.service.name, "certop", name)
        return Response(200, self.operation(req.base_url, name, op), audit={"key": name})

    # --- delete / recover / purge (the certificate's key goes with it) ----------------------------------

    def _deleted_bundle(self, base_url: str, name: str) -> dict[str, Any]:
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

    def delete(self, req: Request, name: str) -> Response:
        if name not in self.versions:
            raise _not_found(name)
        now = int(time.time())
        info = {"deletedDate": now, "scheduledPurgeDate": now + self.service.recoverable_days * 86400}
        self.service.store.put(self.service.name, "deletedcert", name, info)
        self.deleted[name] = info
        self.deleted_versions[name] = self.versions.pop(name)
        if name in self.service.keys:
            self.service.handle_delete(req, name)
        return Response(200, self._deleted_bundle(req.base_url, name), audit={"key": name})

    def _require_deleted(self, name: str) -> None:
        if name not in self.deleted:
            raise ApiError(404, "CertificateNotFound", f"Deleted certificate not found: {name[:130]}")

    def deleted_get(self, req: Request, name: str) -> Response:
        self._require_deleted(name)
        return Response(200, self._deleted_bundle(req.base_url, name), audit={"key": name})

    def deleted_list(self, req: Request) -> Response:
        items = []
        for name in self.deleted:
            bundle = self._deleted_bundle(req.base_url, name)
            item = {k: v for k, v in bundle.items() if k not in ("cer", "policy", "kid", "sid")}
            item["id"] = f"{req.base_url}/certificates/{name}"
            items.append(item)
        return Response(200, paged(items, req, "/deletedcertificates"), audit={})

    def recover(self, req: Request, name: str) -> Response:
        self._require_deleted(name)
        self.versions[name] = self.deleted_versions.pop(name)
        del self.deleted[name]
        self.service.store.delete(self.service.name, "deletedcert", name)
        if name in self.service.deleted:
            self.service.handle_recover(req, name)
        return Response(200, self.bundle(req.base_url, self.versions[name][-1]), audit={"key": name})

    def purge(self, req: Request, name: str) -> Response:
        self._require_deleted(name)
        for cert in self.deleted_versions.pop(name):
            self.service.store.delete(self.service.name, "certificate", f"{name}/{cert['version']}")
        del self.deleted[name]
        self.service.store.delete(self.service.name, "deletedcert", name)
        self.pending.pop(name, None)
        self.service.store.delete(self.service.name, "certop", name)
        if name in self.service.deleted:
            self.service.handle_purge(req, name)
        return Response(204, None, audit={"key": name})
