"""Latency of one signature through the OpenSSL provider and the agent, next to the Python SDK directly.

In one run, against a private emulator:

- provider: a process using the system libcrypto (through ctypes, nothing else loaded) with the hsmcert
  provider from OPENSSL_CONF signs a SHA-256 digest with an EC P-256 HSM key (EVP_PKEY_sign): provider ->
  Unix socket -> agent -> pooled HTTPS -> emulator;
- sdk: azure-keyvault-keys CryptographyClient.sign("ES256", digest) straight to the emulator, kept-alive.

Each mode is measured --runs times with --count signatures after a warm-up, the runs of both modes
interleaved; the medians of the per-run p50 and p99 are printed with the difference and ratios (targets:
the provider path adds at most 0.5 ms at p50, and its p99 is at most 1.5x the SDK's) and the number of TLS
connections the HSM saw from the agent (sampled from /proc, no relay in the path).

    python bench/provider.py [--runs 5] [--count 300] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POOL_SIZE = 2


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(runs: list[list[float]]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(_percentile(r, 0.5) for r in runs) * 1000, 3),
        "p99_ms": round(statistics.median(_percentile(r, 0.99) for r in runs) * 1000, 3),
    }


P50_TARGET_MS = 0.5
P99_TARGET_RATIO = 1.5


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import logging
    from urllib.parse import urlsplit

    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient

    from bench._private import private_stack
    from bench.nginx_handshake import ConnectionCounter
    from hsmcert.emulator import control

    logging.getLogger("azure").setLevel(logging.WARNING)

    class Token:
        def __init__(self, token: str) -> None:
            self.token = token

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken(self.token, int(time.time()) + 3600)

    digest = hashlib.sha256(b"benchmark").digest()
    with private_stack(POOL_SIZE) as stack:
        data_dir = stack.running.data_dir
        url, ca = control.service_endpoint(data_dir, "managedhsm", "local-hsm")
        credential = Token(control.token(data_dir))
        key = KeyClient(url, credential, connection_verify=str(ca)).create_ec_key(
            "bench-provider", curve="P-256", hardware_protected=True
        )
        ref = "managedhsm:local-hsm:bench-provider"
        counter = ConnectionCounter(stack.agent.pid, urlsplit(url).port or 443)
        client = CryptographyClient(key, credential, connection_verify=str(ca))
        for _ in range(20):
            client.sign("ES256", digest)
        provider_runs: list[list[float]] = []
        sdk_runs: list[list[float]] = []
        for _ in range(args.runs):  # interleaved: both modes see the same load on a shared machine
            provider_runs += stack.sign_loop(ref, args.count, 1)
            lat = []
            for _ in range(args.count):
                t = time.perf_counter()
                client.sign("ES256", digest)
                lat.append(time.perf_counter() - t)
            sdk_runs.append(lat)
        client.close()
        agent_connections = counter.stop()
    provider, sdk = _summary(provider_runs), _summary(sdk_runs)
    added = round(provider["p50_ms"] - sdk["p50_ms"], 3)
    p99_ratio = round(provider["p99_ms"] / sdk["p99_ms"], 3)
    row = {
        "key": "EC P-256 ES256",
        "runs": args.runs,
        "count": args.count,
        "provider": provider,
        "sdk": sdk,
        "added_p50_ms": added,
        "ratio_p50": round(provider["p50_ms"] / sdk["p50_ms"], 3),
        "ratio_p99": p99_ratio,
        "hsm_tls_connections": agent_connections,
        "signatures_through_agent": args.runs * (args.count + 20) + 1,
    }
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"provider+agent  p50 {provider['p50_ms']:7.3f} ms  p99 {provider['p99_ms']:7.3f} ms")
        print(f"SDK direct      p50 {sdk['p50_ms']:7.3f} ms  p99 {sdk['p99_ms']:7.3f} ms")
        verdict = "meets" if added <= P50_TARGET_MS else "misses"
        print(
            f"added at p50: {added:+.3f} ms (ratio {row['ratio_p50']:.2f}); {verdict} the +{P50_TARGET_MS} ms target"
        )
        verdict = "meets" if p99_ratio <= P99_TARGET_RATIO else "misses"
        print(f"p99 ratio: {p99_ratio:.2f}x the SDK's; {verdict} the {P99_TARGET_RATIO}x target")
        print(f"TLS connections the HSM saw from the agent: {agent_connections} "
              f"for {row['signatures_through_agent']} signatures (pool size {POOL_SIZE})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
