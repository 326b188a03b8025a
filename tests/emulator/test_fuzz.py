"""Bad input never makes the emulator fail: hypothesis drives its request handlers (in process and over HTTPS)
with malformed JSON, wrong types, unknown algorithms, wrong key types, bad base64 and unknown routes. Every answer
is a 2xx or a 4xx in Azure's error shape, never a 500, and the emulator keeps serving."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.emulator.api import ApiError, Request
from hsmcert.emulator.server import Emulator

NAMES = ["rsa", "ec", "aes", "missing", "bad name!", "x" * 130]
VERSIONS = ["", "0" * 32, "zz", "a" * 40]
WORDS = [
    "keys",
    "deletedkeys",
    "rng",
    "certificates",
    "deletedcertificates",
    "providers",
    "Microsoft.Authorization",
    "roleAssignments",
    "roleDefinitions",
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "wrapkey",
    "unwrapkey",
    "create",
    "backup",
    "restore",
    "rotate",
    "versions",
    "rotationpolicy",
    "recover",
    "pending",
    "merge",
    "import",
    "policy",
    "",
    "%00",
    "..",
]
FIELDS = [
    "alg",
    "value",
    "digest",
    "kty",
    "key_size",
    "crv",
    "key_ops",
    "attributes",
    "tags",
    "count",
    "x5c",
    "policy",
    "properties",
    "key",
    "iv",
    "tag",
    "aad",
    "Hsm",
    "public_exponent",
    "roleDefinitionId",
    "principalId",
    "pwd",
]
ALGS = [
    "RS256",
    "PS512",
    "ES256",
    "ES384",
    "ES256K",
    "RSA-OAEP",
    "RSA1_5",
    "A128KW",
    "A256GCM",
    "A128CBCPAD",
    "CKM_AES_KEY_WRAP_PAD",
    "HS256",
    "none",
]
B64 = [
    "AAAA",
    "",
    "!!!",
    "A",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "_-_-",
    "AAAAAAAAAAAAAAAAAAAAAA==",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from([2048, 256, 128, 2**70, -(2**70)]),
    st.sampled_from(ALGS),
    st.sampled_from(B64),
    st.sampled_from(["RSA-HSM", "EC-HSM", "oct-HSM", "RSA", "P-256", "P-1"]),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(lambda d: json.dumps(d).encode()),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"{", b"[1,2", b'{"alg": }', b"\xff\xfe", b"null", b'"x"']),
)
segments = st.one_of(
    st.sampled_from(WORDS), st.sampled_from(NAMES), st.sampled_from(VERSIONS), st.text(max_size=6)
)
paths = st.lists(segments, min_size=0, max_size=6).map(lambda segs: "/" + "/".join(segs))
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator object of this module's own, driven in process (its ports are not used)."""
    emulator = Emulator(Path(tmp_path_factory.mktemp("fuzz")))
    emulator.start()
    try:
        for kind in ("managedhsm", "vault"):
            service = emulator.service(kind, "fuzz-" + kind)
            for name, body in (
                ("rsa", {"kty": "RSA-HSM"}),
                ("ec", {"kty": "EC-HSM"}),
                ("aes", {"kty": "oct-HSM"}),
            ):
                if kind == "vault" and name == "aes":
                    continue
                _call(emulator, service, "POST", f"/keys/{name}/create", json.dumps(body).encode())
        yield emulator
    finally:
        emulator.shutdown()


def _call(emulator: Emulator, service: Any, method: str, path: str, body: bytes) -> int:
    req = Request(
        method,
        path,
        {"api-version": "7.5"},
        body,
        f"https://127.0.0.1:{service.port}",
        emulator.admin,
        "admin",
    )
    try:
        response = emulator.dispatch(service, req)
    except ApiError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.code, exc.message)
        assert exc.body()["error"]["code"] and exc.body()["error"]["message"]
        return exc.status
    assert response.status < 400
    json.dumps(response.body)
    return response.status


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["managedhsm", "vault"]), method=methods, path=paths, body=bodies)
def test_handlers_answer_4xx_not_500(own: Emulator, kind: str, method: str, path: str, body: bytes) -> None:
    _call(own, own.service(kind, "fuzz-" + kind), method, path, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["managedhsm", "vault"]),
    op=st.sampled_from(["sign", "verify", "encrypt", "decrypt", "wrapkey", "unwrapkey"]),
    name=st.sampled_from(["rsa", "ec", "aes"]),
    body=st.dictionaries(
        st.sampled_from(["alg", "value", "digest", "iv", "tag", "aad"]),
        st.one_of(st.sampled_from(ALGS), st.sampled_from(B64), values),
        max_size=6,
    ),
)
def test_crypto_operations_with_wrong_inputs(
    own: Emulator, kind: str, op: str, name: str, body: dict[str, Any]
) -> None:
    _call(own, own.service(kind, "fuzz-" + kind), "POST", f"/keys/{name}//{op}", json.dumps(body).encode())


@pytest.fixture(scope="module")
def wire(emulator: Any) -> Iterator[tuple[http.client.HTTPSConnection, dict[str, str]]]:
    url = emulator.url("managedhsm", "local-hsm")
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(emulator.ca))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    yield conn, {"Authorization": f"Bearer {emulator.token()}"}
    conn.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=methods,
    path=paths,
    body=bodies,
    query=st.sampled_from(["", "?api-version=7.5", "?$skiptoken=x", "?maxresults=-1&%zz"]),
)
def test_over_https_never_500_and_the_connection_stays_usable(
    wire: Any, method: str, path: str, body: bytes, query: str
) -> None:
    conn, headers = wire
    target = path.replace(" ", "%20").encode("ascii", "backslashreplace").decode() + query
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except (http.client.HTTPException, OSError):
        conn.close()  # a request line the server rejects closes the connection; reconnect
        conn.connect()
        return
    assert response.status < 500, (method, target, response.status, data[:200])
    if response.status >= 400 and method != "HEAD":
        assert json.loads(data)["error"]["code"]


def test_oversized_and_chunked_bodies_are_refused_and_serving_goes_on(emulator: Any, wire: Any) -> None:
    conn, headers = wire
    conn.close()
    conn.request("POST", "/keys/x/create", body=b"{" + b" " * (2 << 20) + b"}", headers=headers)
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"]
    conn.close()
    conn.putrequest("POST", "/keys/x/create")
    conn.putheader("Authorization", headers["Authorization"])
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 411
    response.read()
    conn.close()
    conn.request("GET", "/keys?api-version=7.5", headers=headers)
    assert conn.getresponse().status == 200
