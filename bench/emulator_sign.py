"""Signs per second through the Azure SDK against the emulator, next to in-process pyca/cryptography signing.

For RSA-2048 (RS256) and EC P-256 (ES256), at concurrency 1, 4 and 16 (threads), three rates and p50 latencies
are measured in the same run, each the median of --runs runs of --seconds seconds:

- sdk:        the unchanged azure-keyvault-keys CryptographyClient (one per thread, so one kept-alive HTTPS
              connection each) signing through the emulator: what hsmcert and a plain SDK user see;
- raw:        a minimal keep-alive HTTPS client posting the same sign request (pre-built request bytes over an
              ssl socket, the answer's status and Content-Length parsed): the emulator's own capacity, with as
              little client CPU as Python allows; ``--raw-client http.client`` uses the standard library's client
              instead (it parses every answer's headers with the email package: ~3x the client CPU);
- in-process: pyca/cryptography signing the same digest in this process with the same number of threads.
              pyca releases the GIL while OpenSSL signs, so from concurrency 2 on this uses every core: it is
              the machine's whole signing capacity, the fairest "could not be faster" figure.

Ratios are sdk / in-process and raw / in-process. Each row also prints the CPU time one call costs, in this
process (the client) and in the emulator process (read from /proc): the client, the emulator and in-process
signing share the same cores, so a ratio can only reach 0.5 when client + emulator CPU per call is at most twice
one in-process signature. Azure's documented Managed HSM limits are printed for reference.

    python bench/emulator_sign.py [--runs 3] [--seconds 2] [--concurrency 1,4,16] [--raw-client minimal] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure_cpu(
    workers: list[Callable[[], None]], seconds: float, server_pid: int
) -> tuple[float, float, float, float]:
    """``_measure`` plus the CPU microseconds per operation of this process and of the emulator process."""
    client0, server0 = time.process_time(), _process_cpu(server_pid)
    began = time.perf_counter()
    rate, p50 = _measure(workers, seconds)
    elapsed = time.perf_counter() - began
    client, server = time.process_time() - client0, _process_cpu(server_pid) - server0
    count = max(rate * elapsed, 1.0)
    return rate, p50, client / count * 1e6, server / count * 1e6


def _measure(workers: list[Callable[[], None]], seconds: float) -> tuple[float, float]:
    """Run each worker in its own thread for ``seconds``; returns (operations per second, p50 latency in ms)."""
    latencies: list[list[float]] = [[] for _ in workers]
    start = threading.Barrier(len(workers) + 1)
    stop = threading.Event()

    def loop(index: int, work: Callable[[], None]) -> None:
        mine = latencies[index]
        start.wait()
        while not stop.is_set():
            begun = time.perf_counter()
            work()
            mine.append(time.perf_counter() - begun)

    threads = [threading.Thread(target=loop, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = [x for per in latencies for x in per]
    return len(merged) / elapsed, statistics.median(merged) * 1000 if merged else float("nan")


# Managed HSM sign operations per second per HSM (Azure's documented service limits).
AZURE_LIMITS = {"RSA-2048 RS256": 900, "EC P-256 ES256": 330}


def _raw_worker(url: str, ca: str, token: str, path: str, body: bytes, client: str) -> Callable[[], None]:
    """One kept-alive HTTPS connection posting the same sign request; refuses any answer but 200 and any close."""
    import http.client
    import socket
    import ssl

    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if client == "http.client":
        conn = http.client.HTTPSConnection(host, int(port), context=context)

        def work_stdlib() -> None:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200 or response.will_close:
                raise RuntimeError(f"sign answered {response.status}")

        return work_stdlib

    sock = context.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    unread = b""

    def receive(data: bytes) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the emulator closed the kept-alive connection")
        return data + chunk

    def work() -> None:
        nonlocal unread
        sock.sendall(request)
        data = unread
        while b"\r\n\r\n" not in data:
            data = receive(data)
        head, _, rest = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:] if b":" in line)
        length = int(fields.get(b"content-length", b"0"))
        while len(rest) < length:
            rest = receive(rest)
        unread = rest[length:]
        if not head.startswith(b"HTTP/1.1 200 ") or fields.get(b"connection", b"").strip() == b"close":
            status_line = head.partition(b"\r\n")[0]
            raise RuntimeError(f"sign answered {status_line!r}")

    return work


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument(
        "--raw-client",
        choices=("minimal", "http.client"),
        default="minimal",
        help="the client of the raw mode (default: a minimal one over an ssl socket)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    import logging

    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    from hsmcert.emulator import control
    from hsmcert.emulator.api import b64u

    logging.getLogger("azure").setLevel(logging.WARNING)

    class Token:
        def __init__(self, token: str) -> None:
            self.token = token

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken(self.token, int(time.time()) + 3600)

    digest = hashlib.sha256(b"benchmark").digest()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-") as tmp:
        data_dir = Path(tmp) / "emulator"
        running = control.start(data_dir)
        try:
            url, ca = control.service_endpoint(data_dir, "managedhsm", "bench-hsm")
            credential = Token(control.token(data_dir))
            keys = KeyClient(url, credential, connection_verify=str(ca))
            cases = {
                "RSA-2048 RS256": (
                    keys.create_rsa_key("bench-rsa", size=2048, hardware_protected=True),
                    "RS256",
                    rsa.generate_private_key(65537, 2048),
                    lambda k: k.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())),
                ),
                "EC P-256 ES256": (
                    keys.create_ec_key("bench-ec", curve="P-256", hardware_protected=True),
                    "ES256",
                    ec.generate_private_key(ec.SECP256R1()),
                    lambda k: k.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))),
                ),
            }
            for label, (key, alg, local_key, local_sign) in cases.items():
                for level in levels:
                    clients = [
                        CryptographyClient(key, credential, connection_verify=str(ca)) for _ in range(level)
                    ]
                    for client in clients:  # warm up: TLS handshake, public key fetch, keep-alive connection
                        client.sign(alg, digest)  # type: ignore[arg-type]
                    sign_path = f"/keys/{key.name}/{key.properties.version}/sign?api-version=7.5"
                    sign_body = json.dumps({"alg": alg, "value": b64u(digest)}).encode()
                    modes: dict[str, list[Callable[[], None]]] = {
                        "sdk": [lambda c=c, a=alg: c.sign(a, digest) for c in clients],
                        "raw": [
                            _raw_worker(url, str(ca), credential.token, sign_path, sign_body, args.raw_client)
                            for _ in range(level)
                        ],
                        "in_process": [lambda f=local_sign, k=local_key: f(k) for _ in range(level)],
                    }
                    for work in modes["raw"]:  # warm up: TLS handshake
                        work()
                    runs: dict[str, list[tuple[float, float, float, float]]] = {mode: [] for mode in modes}
                    for _ in range(args.runs):
                        for mode, workers in modes.items():
                            runs[mode].append(_measure_cpu(workers, args.seconds, running.pid))
                    row: dict[str, Any] = {"key": label, "concurrency": level, "runs": args.runs}
                    for mode, measured in runs.items():
                        row[f"{mode}_signs_per_s"] = round(statistics.median(r[0] for r in measured), 1)
                        row[f"{mode}_p50_ms"] = round(statistics.median(r[1] for r in measured), 3)
                        row[f"{mode}_client_cpu_us"] = round(statistics.median(r[2] for r in measured))
                        if mode != "in_process":
                            row[f"{mode}_emulator_cpu_us"] = round(statistics.median(r[3] for r in measured))
                    row["sdk_ratio"] = round(row["sdk_signs_per_s"] / row["in_process_signs_per_s"], 3)
                    row["raw_ratio"] = round(row["raw_signs_per_s"] / row["in_process_signs_per_s"], 3)
                    results.append(row)
                    print(
                        f"{label:<15} c={level:<3}"
                        f" sdk {row['sdk_signs_per_s']:7.1f}/s p50 {row['sdk_p50_ms']:6.2f} ms"
                        f" | raw {row['raw_signs_per_s']:7.1f}/s p50 {row['raw_p50_ms']:6.2f} ms"
                        f" | in-process {row['in_process_signs_per_s']:8.1f}/s p50 {row['in_process_p50_ms']:6.3f} ms"
                        f" | ratio sdk {row['sdk_ratio']:.2f} raw {row['raw_ratio']:.2f}",
                        flush=True,
                    )
                    print(
                        f"{'':<15} CPU us/call: sdk client {row['sdk_client_cpu_us']} + emulator"
                        f" {row['sdk_emulator_cpu_us']} | raw client {row['raw_client_cpu_us']} + emulator"
                        f" {row['raw_emulator_cpu_us']} | in-process {row['in_process_client_cpu_us']}",
                        flush=True,
                    )
                    for client in clients:
                        client.close()
        finally:
            control.stop(running.data_dir)
    top = [r for r in results if r["concurrency"] == max(levels)]
    for row in top:
        for mode in ("sdk", "raw"):
            ratio = row[f"{mode}_ratio"]
            verdict = "meets" if ratio >= 0.5 else "misses"
            print(f"{row['key']} c={row['concurrency']} {mode}: {verdict} the 0.5 target (ratio {ratio:.2f})")
        limit = AZURE_LIMITS[row["key"]]
        print(
            f"{row['key']}: emulator {row['raw_signs_per_s']:.0f}/s raw, {row['sdk_signs_per_s']:.0f}/s via the SDK;"
            f" Azure's documented Managed HSM limit is {limit}/s"
        )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
