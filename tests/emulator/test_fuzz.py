"""Bad input never makes the emulator fail: hypothesis drives its request handlers (in process and over HTTPS)
with malformed and deeply nested JSON, wrong types, out-of-range numbers, huge strings, invalid UTF-8, unknown
algorithms, wrong key types, bad base64, unknown routes, garbage headers and forged tokens, on the data plane,
the login endpoint and the control endpoint. Every answer is a 2xx or a 4xx in the endpoint's error shape, never
a 5xx or a connection closed without an answer, and the emulator keeps serving."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.emulator import auth, login, routes
from hsmcert.emulator.api import ApiError, Request
from hsmcert.emulator.faults import Faults
from hsmcert.emulator.process import Emulator

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
    "nbf",
    "exp",
    "enabled",
    "exportable",
    "release_policy",
    "lifetimeActions",
    "expiryTime",
    "x509_props",
    "key_props",
    "secret_props",
    "issuer",
    "sans",
    "dns_names",
    "emails",
    "subject",
    "ekus",
    "key_usage",
    "validity_months",
    "lifetime_actions",
    "permissions",
    "assignableScopes",
    "dataActions",
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
    st.sampled_from([2048, 256, 128, 2**70, -(2**70), 10**23, 253402300800, 2**63]),
    st.sampled_from([400, 4000]).map(lambda digits: 10**digits),
    st.sampled_from(ALGS),
    st.sampled_from(B64),
    st.sampled_from(
        ["RSA-HSM", "EC-HSM", "oct-HSM", "RSA", "P-256", "P-1", "P9999999999Y", "CN=x", "é.example"]
    ),
    st.sampled_from([70_000, 1_000]).map(lambda size: "x" * size),
    st.sampled_from(["\u202e", "\ud800", "\x00"]),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3),
    max_leaves=8,
)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(lambda d: json.dumps(d).encode()),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.sampled_from(
        [b"{", b"[1,2", b'{"alg": }', b"\xff\xfe", b"null", b'"x"', b"[NaN]", b'{"count": Infinity}']
    ),
    st.tuples(st.sampled_from(FIELDS), st.sampled_from([40, 2_000, 200_000])).map(
        lambda pair: f'{{"{pair[0]}": {_nested(pair[1])}}}'.encode()
    ),
    st.sampled_from([b'{"attributes": {"exp": 1e23}}', b'{"tags": {"a": "\\udcff"}}', b'{"kty": "\xff"}']),
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
        response = routes.dispatch(service, req)
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


BODY_ROUTES = [
    ("POST", "/keys/{new}/create"),
    ("PUT", "/keys/{new}"),
    ("PATCH", "/keys/ec/"),
    ("PATCH", "/keys/rsa/"),
    ("PUT", "/keys/ec/rotationpolicy"),
    ("POST", "/keys/restore"),
    ("POST", "/rng"),
    ("POST", "/certificates/{new}/create"),
    ("POST", "/certificates/{new}/import"),
    ("PATCH", "/certificates/{new}/"),
    ("POST", "/certificates/{new}/pending/merge"),
    ("PATCH", "/certificates/{new}/pending"),
    ("PUT", "/providers/Microsoft.Authorization/roleDefinitions/" + "1" * 8 + "-1111-1111-1111-" + "1" * 12),
    (
        "PUT",
        "/keys/providers/Microsoft.Authorization/roleAssignments/" + "2" * 8 + "-2222-2222-2222-" + "2" * 12,
    ),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["managedhsm", "vault"]),
    route=st.sampled_from(BODY_ROUTES),
    name=st.sampled_from(["new-a", "new-b", "ec"]),
    body=bodies,
)
def test_every_body_a_route_reads_is_checked(
    own: Emulator, kind: str, route: tuple[str, str], name: str, body: bytes
) -> None:
    method, path = route
    _call(own, own.service(kind, "fuzz-" + kind), method, path.replace("{new}", name), body)


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
    except (ValueError, http.client.HTTPException):  # http.client itself refuses to send that request
        conn.close()
        return
    try:
        response = conn.getresponse()
        data = response.read()
    except (http.client.HTTPException, OSError) as exc:
        conn.close()
        pytest.fail(f"the connection was closed without an answer to {method} {target}: {exc!r}")
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


# --- the named cases ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: bytes, claims: bytes) -> str:
    return f"{_b64(header)}.{_b64(claims)}.{_b64(b'signature')}"


def test_named_bad_inputs_get_400_in_azures_shape(emulator: Any) -> None:
    """Deep JSON in a body, a JWT header or a login assertion, and an expiry past the year 9999."""
    headers = {"Authorization": f"Bearer {emulator.token()}"}
    name = "fuzz-exp"

    def call(method: str, path: str, body: bytes, extra: dict[str, str] | None = None) -> tuple[int, Any]:
        host, port = emulator.url().removeprefix("https://").split(":")
        context = ssl.create_default_context(cafile=str(emulator.ca))
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        conn.request(method, path + "?api-version=7.5", body=body, headers={**headers, **(extra or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    status, answer = call(
        "POST", f"/keys/{name}/create", b'{"kty": "EC-HSM", "x": ' + _nested(100_000).encode() + b"}"
    )
    assert status == 400 and answer["error"]["code"] == "BadParameter", answer
    forged = _jwt(_nested(5_000).encode(), b"{}")
    status, answer = call("GET", "/keys", b"", {"Authorization": f"Bearer {forged}"})
    assert status == 401 and answer["error"]["code"] == "Unauthorized"
    assert call("POST", f"/keys/{name}/create", b'{"kty": "EC-HSM"}')[0] == 200
    for attributes in ({"exp": 10**23}, {"nbf": -1}, {"exp": 253402300800}):
        status, answer = call("PATCH", f"/keys/{name}/", json.dumps({"attributes": attributes}).encode())
        assert status == 400 and answer["error"]["code"] == "BadParameter", answer
        assert "is not a date" in answer["error"]["message"]
        status, answer = call(
            "POST",
            f"/keys/{name}-new/create",
            json.dumps({"kty": "EC-HSM", "attributes": attributes}).encode(),
        )
        assert status == 400 and answer["error"]["code"] == "BadParameter", answer
    status, answer = call("PATCH", f"/keys/{name}/", b'{"tags": {"a": "\\udcff"}}')
    assert status == 400 and "lone UTF-16 surrogate" in answer["error"]["message"], answer
    status, answer = call("PATCH", f"/keys/{name}/", b'{"tags": {"smile": "\\ud83d\\ude00"}}')
    assert status == 200 and answer["tags"] == {"smile": "\U0001f600"}
    status, answer = call("PATCH", f"/keys/{name}/", b'{"attributes": {"exp": 253402300799}}')
    assert status == 200 and answer["attributes"]["exp"] == 253402300799
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "hsmcert",
            "--output",
            "json",
            "key",
            "show",
            "--key",
            f"managedhsm:local-hsm:{name}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == name

    running = __import__("hsmcert.emulator.control", fromlist=["x"]).require_running(emulator.data_dir)
    form = {
        "grant_type": "client_credentials",
        "client_id": "ci",
        "scope": "https://managedhsm.azure.net/.default",
        "client_assertion_type": login.ASSERTION_TYPE,
        "client_assertion": _jwt(_nested(50_000).encode(), b"{}"),
    }
    from urllib.parse import urlencode

    head, body = _exchange(
        running.login_port,
        _request(
            "POST",
            f"/{auth.TENANT_ID}/oauth2/v2.0/token",
            {"Content-Type": "application/x-www-form-urlencoded"},
            urlencode(form).encode(),
        ),
        ssl.create_default_context(cafile=str(emulator.ca)),
    )
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert json.loads(body)["error"] == "invalid_client"


# --- raw requests: request lines, headers, bodies -------------------------------------------------------


def _request(
    method: str, target: str, headers: dict[str, str], body: bytes = b"", line: bytes | None = None
) -> bytes:
    head = line if line is not None else f"{method} {target} HTTP/1.1".encode("latin-1")
    lines = [head] + [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
    if body and "Content-Length" not in headers:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _exchange(port: int, request: bytes, tls: ssl.SSLContext | None) -> tuple[bytes, bytes]:
    """Send one request and read one final answer: (head, body). A closed connection gives (b"", b"")."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
    data = b""
    with sock:
        with contextlib.suppress(OSError):  # a server may answer and close before reading everything
            sock.sendall(request)
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0 and data.startswith(b"HTTP/1.1 100 "):
                data = data[end + 4 :]
                continue
            if end >= 0:
                head, rest = data[:end], data[end + 4 :]
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if len(rest) >= length or request.startswith(b"HEAD "):
                    return head, rest[:length]
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return b"", b""
            data += chunk


def _assert_answered(head: bytes, body: bytes, what: Any) -> None:
    assert head.startswith(b"HTTP/1.1 "), ("no answer: the connection was closed", what)
    status = int(head[9:12])
    assert status < 500, (status, what, body[:300])


@pytest.fixture(scope="module")
def tls(own: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(own.ca_path))


header_names = st.sampled_from(
    [
        "Authorization",
        "Content-Length",
        "Host",
        "Content-Type",
        "Connection",
        "Expect",
        "Transfer-Encoding",
        "X-Ms-Foo",
        "Accept",
    ]
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
    st.sampled_from(
        [
            "abc",
            "-1",
            "+0",
            "0x10",
            "",
            " 0",
            "00",
            "1_0",
            "99999999999999999999",
            "0, 0",
            "1e3",
            "100-continue",
            "chunked",
            "close",
            "keep-alive",
            "Bearer",
            "Bearer a.b.c",
            "Bearer ...",
            "Basic eDp5",
            "[::1]:443",
            "\x00",
            "ÿ",
        ]
    ),
)
tokens = st.one_of(
    st.tuples(
        st.sampled_from([b"{", b"[]", b'{"alg": "HS256"}', b'{"alg": NaN}', _nested(20_000).encode()]),
        st.binary(max_size=30),
    ).map(lambda parts: "Bearer " + _jwt(parts[0], parts[1])),
    st.text(max_size=20).map(lambda text: "Bearer " + text.encode("latin-1", "replace").decode("latin-1")),
)
lines = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.sampled_from(
        [
            b"GET /keys HTTP/1.1 extra",
            b"GET keys HTTP/1.1",
            b"GET /keys HTTP/2",
            b"GET /keys HTTP/1.0",
            b"get /keys HTTP/1.1",
            b"BREW /keys HTTP/1.1",
            b"GET /keys/\xff\xfe/create HTTP/1.1",
            b"GET /" + b"a" * 7_000 + b" HTTP/1.1",
            b"",
            b"\x00\x01\x02",
            b"GET /keys?api-version=7.5&%ff%fe=%00 HTTP/1.1",
        ]
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=methods,
    path=paths,
    line=lines,
    headers=st.dictionaries(header_names, header_values, max_size=4),
    token=tokens | st.none(),
    extra=st.lists(st.sampled_from([b"no colon", b" folded", b": empty name", b"X-A: \x7f"]), max_size=2),
    many=st.sampled_from([0, 0, 0, 120]),
)
def test_raw_requests_are_always_answered(
    own: Emulator,
    tls: ssl.SSLContext,
    method: str,
    path: str,
    line: bytes | None,
    headers: dict[str, str],
    token: str | None,
    extra: list[bytes],
    many: int,
) -> None:
    service = own.service("managedhsm", "fuzz-managedhsm")
    fields = {"Host": f"127.0.0.1:{service.port}", "Connection": "close", **headers}
    fields.setdefault("Authorization", token or f"Bearer {auth.issue(own.token_secret)}")
    fields.update({f"X-Many-{i}": "1" for i in range(many)})
    # A body only as long as a Content-Length the server accepts says: a server that refuses a request
    # closes the connection without reading what follows, and one that accepts it waits for all of it.
    declared = fields.get("Content-Length", "").strip()
    size = int(declared) if declared.isascii() and declared.isdigit() and len(declared) < 16 else 0
    if size > 4096:
        fields["Content-Length"] = "9" * 16  # not a body this test sends: too long a number, refused
        size = 0
    target = path.encode("utf-8", "surrogatepass").decode("latin-1").replace(" ", "%20") + "?api-version=7.5"
    request = _request(method, target, fields, line=line) + b"{" * size
    if extra:
        head, _, rest = request.partition(b"\r\n")
        request = head + b"\r\n" + b"\r\n".join(extra) + b"\r\n" + rest
    _assert_answered(*_exchange(service.port, request, tls), (request[:300],))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        st.binary(max_size=40),
        values.map(lambda v: json.dumps(v).encode()),
        st.just(_nested(30_000).encode()),
    ),
    claims=st.one_of(
        st.binary(max_size=40),
        st.fixed_dictionaries(
            {},
            optional={
                "exp": scalars,
                "nbf": scalars,
                "aud": scalars,
                "sub": scalars,
                "iss": scalars,
            },
        ).map(lambda d: json.dumps(d).encode()),
    ),
    form=st.dictionaries(
        st.sampled_from(["grant_type", "client_id", "scope", "client_assertion_type", "client_secret"]),
        st.text(max_size=20),
        max_size=5,
    ),
)
def test_login_assertions_never_fail_the_endpoint(
    own: Emulator, tls: ssl.SSLContext, header: bytes, claims: bytes, form: dict[str, str]
) -> None:
    from urllib.parse import urlencode

    fields = {
        "grant_type": "client_credentials",
        "client_id": "ci",
        "scope": "https://managedhsm.azure.net/.default",
        "client_assertion_type": login.ASSERTION_TYPE,
        **form,
        "client_assertion": _jwt(header, claims),
    }
    body = urlencode(fields).encode()
    request = _request(
        "POST",
        f"/{auth.TENANT_ID}/oauth2/v2.0/token",
        {"Host": "127.0.0.1", "Connection": "close", "Content-Type": "application/x-www-form-urlencoded"},
        body,
    )
    head, answer = _exchange(own.login_port, request, tls)
    _assert_answered(head, answer, fields)
    assert "error" in json.loads(answer) or "access_token" in json.loads(answer)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(
        [
            ("PUT", "/control/faults"),
            ("POST", "/control/services"),
            ("GET", "/control/status"),
            ("GET", "/msi/token"),
            ("POST", "/control/nothing"),
            ("DELETE", "/control/faults"),
        ]
    ),
    body=st.one_of(
        bodies,
        st.dictionaries(
            st.sampled_from(
                [
                    "throttle",
                    "unavailable",
                    "drop",
                    "latency_ms",
                    "retry_after",
                    "services",
                    "kind",
                    "name",
                    "latency",
                ]
            ),
            st.one_of(
                scalars,
                st.sampled_from([1e309, -1e309, "inf", "nan", "1e999", "fuzz-x", "managedhsm", ["a", 1]]),
            ),
            max_size=4,
        ).map(lambda d: json.dumps(d).encode()),
    ),
    query=st.sampled_from(
        ["", "?resource=x", "?client_id=%ff", "?resource=" + "r" * 5000, "?object_id=" + "ä" * 10]
    ),
    secret=st.booleans(),
)
def test_the_control_endpoint_never_fails(
    own: Emulator, route: tuple[str, str], body: bytes, query: str, secret: bool
) -> None:
    method, path = route
    fields = {"Host": "127.0.0.1", "Connection": "close"}
    if secret:
        fields.update({"X-Hsmcert-Control": own.identity_secret, "X-IDENTITY-HEADER": own.identity_secret})
    try:
        head, answer = _exchange(own.control_port, _request(method, path + query, fields, body), None)
        _assert_answered(head, answer, (route, body[:200], query))
    finally:
        own.faults = Faults()
    if path == "/control/faults" and head.startswith(b"HTTP/1.1 200"):
        assert all(
            v == v and abs(v) != float("inf") for v in json.loads(answer).values() if isinstance(v, float)
        )


@pytest.mark.parametrize(
    "body",
    [
        {"policy": {"key_props": {"exportable": "yes"}, "x509_props": {"subject": "CN=a"}}},
        {"policy": {"secret_props": {"contentType": 5}, "x509_props": {"subject": "CN=a"}}},
        {"policy": {"secret_props": [1], "x509_props": {"subject": "CN=a"}}},
        {"policy": {"x509_props": {"subject": "CN=a"}}, "attributes": {"enabled": "false"}},
        {"policy": {"x509_props": {"subject": "CN=a"}}, "tags": {"t": 1}},
        {"policy": {"x509_props": {"subject": "CN=a", "sans": {"dns_names": "a.example"}}}},
        {"policy": {"x509_props": {"subject": "CN=a", "sans": {"dns_names": ["é.example"]}}}},
        {"policy": {"x509_props": {"subject": "CN=a", "ekus": ["not an oid"]}}},
        {"policy": {"x509_props": {"subject": "CN=a"}, "lifetime_actions": [1]}},
    ],
)
def test_certificate_requests_of_the_wrong_shape_are_400_and_make_no_key(own: Emulator, body: Any) -> None:
    service = own.service("vault", "fuzz-vault")
    req = Request(
        "POST", "/certificates/shaped/create", {}, json.dumps(body).encode(), "https://127.0.0.1", own.admin
    )
    with pytest.raises(ApiError) as refused:
        routes.dispatch(service, req)
    assert (refused.value.status, refused.value.code) == (400, "BadParameter"), refused.value.message
    assert "shaped" not in service.keys


def test_a_body_too_large_is_refused_before_the_client_sends_it(own: Emulator, tls: ssl.SSLContext) -> None:
    """With Expect: 100-continue the client waits: the refusal comes first, and no 100 Continue before it."""
    service = own.service("managedhsm", "fuzz-managedhsm")
    head = _request(
        "POST",
        "/keys/big/create?api-version=7.5",
        {
            "Host": "127.0.0.1",
            "Authorization": f"Bearer {auth.issue(own.token_secret)}",
            "Content-Length": str(64 << 20),
            "Expect": "100-continue",
        },
    )
    raw = socket.create_connection(("127.0.0.1", service.port), timeout=20)
    with tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(head)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
