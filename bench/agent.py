"""CPU the agent spends per signature, next to one in-process pyca/cryptography signature of the same key type.

In one run, against a private emulator and a private agent (``hsmcert agent``, pool size 4):

- agent: provider clients (native/tools/sign_loop.py: the system libcrypto with the hsmcert provider, nothing
  else loaded) sign SHA-256 digests with an HSM key, 1 and 8 threads at once; the agent's CPU (user + system,
  from /proc/<pid>/stat) over the run, divided by the signatures made. The emulator's CPU per signature is
  read the same way (it is the HSM's share, not hsmcert's) and so is the clients'.
- in-process: one pyca/cryptography signature of a local key of the same type in this process (CPU time of
  one thread, which is the cost of one signature: pyca releases the GIL while OpenSSL signs).

Keys: EC P-256 (ES256) and RSA-2048 (RS256, what EVP_PKEY_sign asks for by default). Each figure is the median
of ``--runs`` runs of ``--count`` signatures per client thread; the ratio agent / in-process is printed with
the raw figures. Target: agent CPU per P-256 signature at most 6x one in-process P-256 signature.

    python bench/agent.py [--runs 5] [--count 400] [--clients 1,8] [--kty ec,rsa] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_RATIO = 6.0
WARM_UP = 20
"""Signatures sign_loop.py makes before it measures (counted: the agent's CPU covers them too)."""


def children_cpu() -> float:
    """CPU seconds of the finished child processes of this one (the provider clients)."""
    times = os.times()
    return times.children_user + times.children_system


def in_process_us(kind: str, count: int) -> float:
    """CPU microseconds of one pyca signature of a local key of type ``kind`` (median of 5 batches)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    digest = hashlib.sha256(b"benchmark").digest()
    prehashed = utils.Prehashed(hashes.SHA256())
    if kind == "ec":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ecdsa = ec.ECDSA(prehashed)

        def sign() -> None:
            ec_key.sign(digest, ecdsa)
    else:
        rsa_key = rsa.generate_private_key(65537, 2048)
        pkcs1 = padding.PKCS1v15()

        def sign() -> None:
            rsa_key.sign(digest, pkcs1, prehashed)

    for _ in range(20):
        sign()
    batches = []
    for _ in range(5):
        began = time.thread_time()
        for _ in range(count):
            sign()
        batches.append((time.thread_time() - began) / count * 1e6)
    return statistics.median(batches)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=400, help="signatures per client thread per run")
    parser.add_argument("--clients", default="1,8", help="concurrent provider client threads")
    parser.add_argument("--kty", default="ec,rsa")
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kty.split(",") if k]
    levels = [int(c) for c in args.clients.split(",")]

    from bench._private import private_stack, process_cpu

    rows: list[dict[str, Any]] = []
    with private_stack(args.pool_size) as stack:
        refs = {}
        for kind in kinds:
            spec = ["--kty", "EC", "--curve", "P-256"] if kind == "ec" else ["--kty", "RSA", "--size", "2048"]
            refs[kind] = f"managedhsm:local-hsm:bench-agent-{kind}"
            subprocess.run([sys.executable, "-m", "hsmcert", "key", "create", "--key", refs[kind], *spec],
                           env=stack.env, check=True, capture_output=True)  # fmt: skip
        agent_pid, emulator_pid = stack.agent.pid, stack.running.pid

        def provider_run(ref: str, count: int, threads: int) -> tuple[float, float, float, int]:
            """(agent, emulator, client) CPU seconds of one sign_loop.py process, and its signatures."""
            agent0, emulator0, client0 = process_cpu(agent_pid), process_cpu(emulator_pid), children_cpu()
            stack.sign_loop(ref, count, 1, threads)
            return (
                process_cpu(agent_pid) - agent0,
                process_cpu(emulator_pid) - emulator0,
                children_cpu() - client0,
                count * threads + WARM_UP,
            )

        for kind in kinds:
            provider_run(refs[kind], 20, 1)  # the agent opens the key, fills its pool
            local_us = in_process_us(kind, 200)
            for level in levels:
                count = max(50, args.count // level)
                measured = [provider_run(refs[kind], count, level) for _ in range(args.runs)]
                per = {
                    name: [m[i] / m[3] * 1e6 for m in measured]
                    for i, name in enumerate(("agent", "emulator", "client"))
                }
                row: dict[str, Any] = {
                    "key": "EC P-256 ES256" if kind == "ec" else "RSA-2048 RS256",
                    "clients": level,
                    "runs": args.runs,
                    "signatures_per_run": measured[0][3],
                    "in_process_us": round(local_us, 1),
                    "agent_us_runs": [round(x, 1) for x in per["agent"]],
                }
                for name, values in per.items():
                    row[f"{name}_us"] = round(statistics.median(values), 1)
                row["agent_ratio"] = round(row["agent_us"] / local_us, 2)
                row["emulator_ratio"] = round(row["emulator_us"] / local_us, 2)
                rows.append(row)
                print(
                    f"{row['key']:<15} clients {level}: agent {row['agent_us']:7.1f} us/signature"
                    f" ({row['agent_ratio']:5.2f}x in-process {local_us:6.1f} us)"
                    f" | emulator {row['emulator_us']:7.1f} us ({row['emulator_ratio']:.2f}x)"
                    f" | provider client {row['client_us']:6.1f} us"
                    f" | agent runs {row['agent_us_runs']}",
                    flush=True,
                )
    ec_rows = [r for r in rows if r["key"].startswith("EC")]
    if ec_rows:
        worst = max(r["agent_ratio"] for r in ec_rows)
        verdict = "meets" if worst <= TARGET_RATIO else "misses"
        print(
            f"agent CPU per P-256 signature: at most {worst:.2f}x in-process; {verdict} the {TARGET_RATIO:g}x target"
        )
    for row in rows:
        print(f"{row['key']} clients {row['clients']}: one agent core signs about "
              f"{1e6 / row['agent_us']:.0f} signatures/s")  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
