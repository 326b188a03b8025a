"""Latency of one signature through the OpenSSL provider and the agent, next to the Python SDK directly.

In one run, against a private emulator:

- provider: a process using the system libcrypto (through ctypes, nothing else loaded) with the hsmcert
  provider from OPENSSL_CONF signs a SHA-256 digest with an EC P-256 HSM key (EVP_PKEY_sign): provider ->
  Unix socket -> agent -> pooled HTTPS -> emulator;
- sdk: azure-keyvault-keys CryptographyClient.sign("ES256", digest) straight to the emulator, kept-alive.

Each mode is measured --runs times with --count signatures after a warm-up; the medians of the per-run
p50 and p99 are printed with the difference (target: the provider path adds at most 0.5 ms at p50) and the
number of TLS connections the HSM saw from the agent (sampled from /proc, no relay in the path).

    python bench/provider.py [--runs 3] [--count 300] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGN_LOOP = ROOT / "native" / "tools" / "sign_loop.py"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(runs: list[list[float]]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(_percentile(r, 0.5) for r in runs) * 1000, 3),
        "p99_ms": round(statistics.median(_percentile(r, 0.99) for r in runs) * 1000, 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import logging
    from urllib.parse import urlsplit

    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient

    from bench.nginx_handshake import ConnectionCounter
    from hsmcert.emulator import control
    from hsmcert.provider import openssl_cnf, provider_path

    logging.getLogger("azure").setLevel(logging.WARNING)
    subprocess.run(["make", "-s", "-C", str(ROOT / "native")], check=True)

    class Token:
        def __init__(self, token: str) -> None:
            self.token = token

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken(self.token, int(time.time()) + 3600)

    digest = hashlib.sha256(b"benchmark").digest()
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-") as tmp:
        data_dir = Path(tmp) / "emulator"
        running = control.start(data_dir)
        agent = None
        try:
            env = dict(os.environ)
            env.update(running.env())
            env["HSMCERT_EMULATOR"] = str(data_dir)
            url, ca = control.service_endpoint(data_dir, "managedhsm", "local-hsm")
            credential = Token(control.token(data_dir))
            key = KeyClient(url, credential, connection_verify=str(ca)).create_ec_key(
                "bench-provider", curve="P-256", hardware_protected=True
            )
            ref = "managedhsm:local-hsm:bench-provider"
            hsm_port = urlsplit(url).port or 443
            sock = Path(tmp) / "run" / "agent.sock"
            agent = subprocess.Popen(
                [sys.executable, "-m", "hsmcert", "agent", "--socket", str(sock), "--audit", str(Path(tmp) / "a.jsonl"),
                 "--pool-size", "2"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not sock.exists():
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise SystemExit("the agent did not start")
                time.sleep(0.05)
            counter = ConnectionCounter(agent.pid, hsm_port)
            conf = Path(tmp) / "openssl.cnf"
            conf.write_text(openssl_cnf(sock, module=provider_path()))
            child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENSSL_CONF": str(conf)}
            result = subprocess.run(
                [sys.executable, str(SIGN_LOOP), ref, str(args.count), str(args.runs)],
                env=child_env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"provider signing failed: {result.stderr.strip()[-2000:]}")
            provider_runs = json.loads(result.stdout)

            agent_connections = counter.stop()
            client = CryptographyClient(key, credential, connection_verify=str(ca))
            for _ in range(20):
                client.sign("ES256", digest)
            sdk_runs: list[list[float]] = []
            for _ in range(args.runs):
                lat = []
                for _ in range(args.count):
                    t = time.perf_counter()
                    client.sign("ES256", digest)
                    lat.append(time.perf_counter() - t)
                sdk_runs.append(lat)
            client.close()
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(15)
            control.stop(running.data_dir)
    provider, sdk = _summary(provider_runs), _summary(sdk_runs)
    added = round(provider["p50_ms"] - sdk["p50_ms"], 3)
    row = {
        "key": "EC P-256 ES256",
        "runs": args.runs,
        "count": args.count,
        "provider": provider,
        "sdk": sdk,
        "added_p50_ms": added,
        "ratio_p50": round(provider["p50_ms"] / sdk["p50_ms"], 3),
        "hsm_tls_connections": agent_connections,
        "signatures_through_agent": args.runs * args.count + 20,
    }
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"provider+agent  p50 {provider['p50_ms']:7.3f} ms  p99 {provider['p99_ms']:7.3f} ms")
        print(f"SDK direct      p50 {sdk['p50_ms']:7.3f} ms  p99 {sdk['p99_ms']:7.3f} ms")
        verdict = "meets" if added <= 0.5 else "misses"
        print(f"added at p50: {added:+.3f} ms (ratio {row['ratio_p50']:.2f}); {verdict} the 0.5 ms target")
        print(f"TLS connections the HSM saw from the agent: {agent_connections} "
              f"for {row['signatures_through_agent']} signatures (pool size 2)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
