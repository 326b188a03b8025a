"""Full TLS handshakes per second through nginx: HSM key (keyless) against a local key file, in one run.

One private nginx (Debian's 1.22, own prefix, 127.0.0.1) serves two sites from the same templates: one
with a key in the emulator's Managed HSM (through the hsmcert provider and agent), one with a local key file
of the same type. ``openssl s_time -new`` clients (one process per connection in flight) make only full
handshakes, no resumption, for a fixed time at each concurrency. The emulator's raw sign rate (the SDK,
kept-alive HTTPS, same concurrency) is measured in the same run. Medians of ``--runs`` runs.

Target (issue 5): HSM-key rate >= 80% of min(local-key rate, raw sign rate).

    python bench/nginx_handshake.py [--kty ec|rsa|both] [--duration 5] [--runs 3] [--concurrency 1,4,16]
    python bench/nginx_handshake.py --soak 5      # worker memory over 5 minutes of handshakes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hsmcert.demo import Nginx, Stack, free_port

KEYS = {
    "ec": (
        ("--kty", "EC", "--curve", "P-256"),
        ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "ES256",
    ),
    "rsa": (
        ("--kty", "RSA", "--size", "2048"),
        ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "PS256",
    ),
}


def _client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}


def handshakes(port: int, concurrency: int, duration: float, tls: str = "-tls1_3") -> float:
    """Full handshakes per second from ``concurrency`` s_time clients over ``duration`` seconds."""
    seconds = max(1, round(duration))
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds), tls]
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_client_env()
        )
        for _ in range(concurrency)
    ]
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        # s_time's own "real seconds" is whole seconds; count its connections, time them here.
        match = re.search(r"(\d+) connections in [\d.]+s;", out)
        if match:
            total += int(match.group(1))
    return total / (time.monotonic() - began)


def raw_sign_rate(stack: Stack, ref: str, alg: str, concurrency: int, duration: float) -> float:
    """Signatures per second straight through the SDK (no agent, no nginx), ``concurrency`` threads."""
    os.environ.update(stack.env)
    from hsmcert.session import default_session

    key = default_session().open_key(ref)
    digest = bytes(32)
    key.sign_digest(alg, digest)
    count = [0] * concurrency
    stop = time.monotonic() + duration

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            key.sign_digest(alg, digest)
            count[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / duration


def worker_rss_kib(nginx: Nginx) -> int:
    master = nginx.master_pid()
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{master}$", text, re.MULTILINE):
            # Private memory only: the shared session cache's pages would count once per worker in VmRSS.
            match = re.search(r"^RssAnon:\s+(\d+) kB", text, re.MULTILINE)
            total += int(match.group(1)) if match else 0
    return total


class ConnectionCounter:
    """Distinct TCP connections a process holds to a port, sampled from /proc every 50 ms."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        inodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == self.port and fields[9] in inodes:
                    self.seen.add(f"{fields[1]}-{fields[9]}")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._sample()
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return len(self.seen)


def setup(
    stack: Stack, kinds: list[str], pool: int, workers: int
) -> tuple[Nginx, dict[str, dict[str, object]]]:
    """Emulator, keys, certificates, agent, and one nginx with an HSM site and a local-key site per type."""
    stack.start_emulator()
    tag = os.urandom(3).hex()
    sites: dict[str, dict[str, object]] = {}
    out = stack.workdir / "conf"
    stack.start_agent("--pool-size", str(pool))
    for kind in kinds:
        spec, genpkey, alg = KEYS[kind]
        ref = stack.create_key(f"bench-{kind}-{tag}", *spec)
        cert = stack.selfsign(ref, f"{kind}.hsm.bench", stack.workdir / f"{kind}-hsm.pem")
        local_key = stack.workdir / f"{kind}-local.key"
        local_cert = stack.workdir / f"{kind}-local.pem"
        subprocess.run(["openssl", "genpkey", *genpkey, "-out", str(local_key)], check=True, env=_client_env(),
                       capture_output=True)  # fmt: skip
        subprocess.run(
            ["openssl", "req", "-x509", "-key", str(local_key), "-subj", f"/CN={kind}.local.bench", "-days", "2",
             "-out", str(local_cert)], check=True, env=_client_env(), capture_output=True,
        )  # fmt: skip
        sites[kind] = {"ref": ref, "alg": alg, "hsm_port": free_port(), "local_port": free_port()}
        stack.hsmcert(
            "nginx", "--key", ref, "--cert", str(cert), "--server-name", f"{kind}.hsm.bench", "-o", str(out),
            "--listen", f"127.0.0.1:{sites[kind]['hsm_port']}", "--socket", str(stack.agent_socket), "--check",
            show=False,
        )  # fmt: skip
        from hsmcert import generated
        from hsmcert import nginx as lib

        local = lib.validate(
            lib.Site(ref, local_cert, f"{kind}.local.bench", out, listen=f"127.0.0.1:{sites[kind]['local_port']}",
                     local_key=local_key, socket=stack.agent_socket)
        )  # fmt: skip
        generated.write_all(lib.generate(local), force=True)
    includes = sorted(p for p in out.glob("*.bench.conf"))
    ports = [int(str(s[p])) for s in sites.values() for p in ("hsm_port", "local_port")]
    nginx = stack.start_nginx(includes, ports, openssl_cnf=out / "openssl.cnf", workers=workers,
                              user="root" if os.geteuid() == 0 else None)  # fmt: skip
    return nginx, sites


def bench(args: argparse.Namespace) -> int:
    kinds = ["ec", "rsa"] if args.kty == "both" else [args.kty]
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-") as tmp, Stack(Path(tmp)) as stack:
        nginx, sites = setup(stack, kinds, args.pool_size, args.workers)
        from urllib.parse import urlsplit

        assert stack.agent is not None
        counter = ConnectionCounter(stack.agent.pid, urlsplit(stack.env["AZURE_MANAGEDHSM_URL"]).port or 0)
        if args.soak:
            return soak(nginx, sites[kinds[0]], args)
        print(
            f"full handshakes/s, TLS 1.3, no resumption; {args.duration:.0f} s per point, median of {args.runs} runs"
        )
        print(
            f"{'key':4} {'conc':>4} {'hsm':>9} {'local':>9} {'raw sign':>9} {'hsm/local':>9} {'hsm/min':>8}"
        )
        failed = False
        for kind in kinds:
            site = sites[kind]
            for level in levels:
                hsm = statistics.median(handshakes(int(str(site["hsm_port"])), level, args.duration)
                                        for _ in range(args.runs))  # fmt: skip
                local = statistics.median(handshakes(int(str(site["local_port"])), level, args.duration)
                                          for _ in range(args.runs))  # fmt: skip
                raw = statistics.median(raw_sign_rate(stack, str(site["ref"]), str(site["alg"]), level, args.duration)
                                        for _ in range(args.runs))  # fmt: skip
                bound = min(local, raw)
                ratio = hsm / bound if bound else 0.0
                failed |= ratio < 0.8
                print(f"{kind:4} {level:>4} {hsm:>9.1f} {local:>9.1f} {raw:>9.1f} {hsm / local if local else 0:>9.2f}"
                      f" {ratio:>8.2f}{'' if ratio >= 0.8 else '  < 0.80 target'}")  # fmt: skip
        signs = sum(1 for line in stack.emulator_audit() if line.get("operation") == "sign")
        print(f"HSM signatures in this run (emulator audit): {signs}")
        connections = counter.stop()
        print(f"TLS connections from the agent to the HSM: {connections} (pool size {args.pool_size})")
        verdict = "met" if not failed and connections <= args.pool_size else "NOT met"
        print(f"targets (>= 0.80 of min(local, raw sign); connections <= pool size): {verdict}")
        return 0


def soak(nginx: Nginx, site: dict[str, object], args: argparse.Namespace) -> int:
    port = int(str(site["hsm_port"]))
    end = time.monotonic() + args.soak * 60
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    print(
        f"soak: {args.soak} min of full handshakes at concurrency 4; nginx workers' private memory (RssAnon, KiB, all workers)"
    )
    handshakes(port, 4, 5)  # warm-up: caches and pools filled before the first sample
    samples.append((time.monotonic() - start, worker_rss_kib(nginx)))
    print(f"  t={samples[-1][0]:6.0f}s  rss={samples[-1][1]} KiB  (after warm-up)", flush=True)
    while time.monotonic() < end:
        rate = handshakes(port, 4, min(15.0, max(1.0, end - time.monotonic())))
        rss = worker_rss_kib(nginx)
        samples.append((time.monotonic() - start, rss))
        print(f"  t={samples[-1][0]:6.0f}s  rss={rss} KiB  rate={rate:.0f}/s", flush=True)
    first, last = samples[0][1], samples[-1][1]
    growth = (last - first) / first * 100 if first else 0.0
    print(f"worker memory growth: {growth:+.1f}% ({first} -> {last} KiB); target < 5%")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kty", choices=["ec", "rsa", "both"], default="both")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--pool-size", type=int, default=4, help="the agent's HTTPS connections to the HSM")
    parser.add_argument(
        "--workers", type=int, default=4 * (os.cpu_count() or 1),
        help="nginx worker processes (a worker waits while the HSM signs: use more than the cores)",
    )  # fmt: skip
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES")
    return bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
