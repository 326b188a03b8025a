"""CPU per TLS handshake through nginx, by process: HSM key (keyless) against a local key file, in one run.

One private nginx (Debian's 1.22, own prefix, 127.0.0.1) serves two sites from the same templates: one
with a key in the emulator's Managed HSM (through the hsmcert provider and agent), one with a local key file
of the same type. ``openssl s_time -new`` clients (one process per connection in flight) make only full
handshakes for a fixed time at each concurrency. For each site the CPU of nginx (master and workers), the
agent, the emulator and the clients is read from /proc and divided by the handshakes made, with the HSM
signatures per handshake (the emulator's audit). Medians of ``--runs`` runs. The machine's cores are shared
by the load generator, nginx, the agent and the emulator, so rates measure the machine; CPU per handshake
measures each part.

Targets:
- hsmcert's own CPU per HSM-key handshake (the agent, plus the provider's share of nginx's workers: their
  CPU on the HSM site less their CPU on the local site without its local signature) at most nginx's own CPU
  per handshake with a local key;
- the agent opens at most ``--pool-size`` TLS connections to the HSM;
- resumed connections cost no HSM signature: a Python ssl client that keeps its sessions reconnects
  ``--resume`` times with TLS 1.2 session IDs (tickets off) and with TLS 1.3 tickets.

    python bench/nginx_handshake.py [--kty ec|rsa|both] [--duration 5] [--runs 3] [--concurrency 1,4]
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
    # the workers of the private nginx run as this user (root: as root), who can reach the agent's socket
    import pwd

    main_conf = stack.workdir / "main-nginx.conf"
    main_conf.write_text(f"user {pwd.getpwuid(os.geteuid()).pw_name};\nevents {{}}\n")
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
            "--nginx-conf", str(main_conf), show=False,
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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (nginx's workers)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


class CpuMeter:
    """CPU seconds per process group over one measurement: nginx (master and workers), the agent, the
    emulator, and the clients (this process's finished children, i.e. the s_time processes)."""

    def __init__(self, nginx: Nginx, agent_pid: int, emulator_pid: int) -> None:
        self.nginx, self.agent_pid, self.emulator_pid = nginx, agent_pid, emulator_pid

    def read(self) -> dict[str, float]:
        master = self.nginx.master_pid()
        times = os.times()
        return {
            "nginx": sum(_cpu(p) for p in [master, *_children(master)]),
            "agent": _cpu(self.agent_pid),
            "emulator": _cpu(self.emulator_pid),
            "clients": times.children_user + times.children_system,
        }


def _cpu(pid: int) -> float:
    from bench._private import process_cpu

    try:
        return process_cpu(pid)
    except OSError:
        return 0.0


def measured_handshakes(
    meter: CpuMeter, port: int, concurrency: int, duration: float, stack: Stack
) -> dict[str, float]:
    """Full handshakes (s_time -new) for ``duration``: rate, CPU microseconds per handshake by process, and
    HSM signatures per handshake (the emulator's audit)."""
    signs0 = _hsm_signatures(stack)
    before = meter.read()
    began = time.monotonic()
    rate = handshakes(port, concurrency, duration)
    count = max(1.0, rate * (time.monotonic() - began))
    after = meter.read()
    row = {name: (after[name] - before[name]) / count * 1e6 for name in before}
    row["rate"] = rate
    row["hsm_signatures"] = (_hsm_signatures(stack) - signs0) / count
    return row


def _hsm_signatures(stack: Stack) -> int:
    return sum(1 for line in stack.emulator_audit() if line.get("operation") == "sign")


def resumed(port: int, tls: str, count: int) -> tuple[int, int]:
    """(resumed, made) of ``count`` connections after a first full handshake, each offering the session
    of the previous one: TLS 1.2 by session ID (tickets off, as the site serves it), TLS 1.3 by the
    tickets the server sent, kept by this client."""
    import socket
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench's self-signed certificate; only resumption is measured
    version = ssl.TLSVersion.TLSv1_3 if tls == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = context.maximum_version = version
    if tls == "1.2":
        context.options |= ssl.OP_NO_TICKET
    session = None
    reused = 0
    for index in range(count + 1):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        with context.wrap_socket(raw, session=session) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            while conn.recv(65536):  # read to the end: a TLS 1.3 ticket arrives after the handshake
                pass
            if index and conn.session_reused:
                reused += 1
            session = conn.session
    return reused, count


def bench(args: argparse.Namespace) -> int:
    kinds = ["ec", "rsa"] if args.kty == "both" else [args.kty]
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-") as tmp, Stack(Path(tmp)) as stack:
        nginx, sites = setup(stack, kinds, args.pool_size, args.workers)
        from urllib.parse import urlsplit

        from bench.agent import in_process_us
        from hsmcert.emulator import control

        assert stack.agent is not None
        counter = ConnectionCounter(stack.agent.pid, urlsplit(stack.env["AZURE_MANAGEDHSM_URL"]).port or 0)
        if args.soak:
            return soak(nginx, sites[kinds[0]], args)
        emulator = control.running(stack.emulator_dir)
        assert emulator is not None
        meter = CpuMeter(nginx, stack.agent.pid, emulator.pid)
        print(
            f"full handshakes, TLS 1.3, no resumption; {args.duration:.0f} s per point, median of {args.runs} runs"
        )
        print("CPU us per handshake by process; hsmcert = agent + the provider's share of nginx's workers")
        print(f"{'key':4} {'conc':>4} {'site':5} {'hs/s':>7} {'nginx':>7} {'agent':>7} {'emul':>7} {'clients':>7}"
              f" {'signs/hs':>8}")  # fmt: skip
        failed = False
        summary: list[str] = []
        for kind in kinds:
            site = sites[kind]
            local_sign = in_process_us(kind, 100)
            for level in levels:
                rows: dict[str, dict[str, float]] = {}
                for name in ("hsm", "local"):
                    port = int(str(site[f"{name}_port"]))
                    handshakes(port, level, 1)  # warm-up: connections, caches
                    runs = [
                        measured_handshakes(meter, port, level, args.duration, stack)
                        for _ in range(args.runs)
                    ]
                    rows[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    r = rows[name]
                    print(f"{kind:4} {level:>4} {name:5} {r['rate']:>7.1f} {r['nginx']:>7.0f} {r['agent']:>7.0f}"
                          f" {r['emulator']:>7.0f} {r['clients']:>7.0f} {r['hsm_signatures']:>8.2f}", flush=True)  # fmt: skip
                hsm, local = rows["hsm"], rows["local"]
                # The local site's nginx also signs (one in-process signature); the HSM site's does not.
                provider_share = max(0.0, hsm["nginx"] - (local["nginx"] - local_sign))
                own = hsm["agent"] + provider_share
                ok = own <= local["nginx"]
                failed |= not ok
                summary.append(
                    f"{kind} c={level}: hsmcert {own:.0f} us/handshake (agent {hsm['agent']:.0f} + provider in nginx"
                    f" {provider_share:.0f}) vs nginx's own {local['nginx']:.0f} us with a local key"
                    f" ({own / local['nginx']:.2f}x; local signature {local_sign:.0f} us)"
                    f"{'' if ok else '  > target'}"
                )
        print("\n".join(summary))
        for kind in kinds:
            port = int(str(sites[kind]["hsm_port"]))
            for tls in ("1.2", "1.3"):
                signs0 = _hsm_signatures(stack)
                reused, made = resumed(port, tls, args.resume)
                signs = _hsm_signatures(stack) - signs0
                # the first connection is a full handshake: one signature
                ok = reused == made and signs <= 1
                failed |= not ok
                print(f"{kind} TLS {tls} resumption: {reused}/{made} connections resumed, "
                      f"{signs} HSM signatures (1 for the first, full handshake){'' if ok else '  NOT met'}")  # fmt: skip
        connections = counter.stop()
        print(f"TLS connections from the agent to the HSM: {connections} (pool size {args.pool_size})")
        failed |= connections > args.pool_size
        print(f"targets (hsmcert's CPU <= nginx's own with a local key; connections <= pool size; resumed"
              f" handshakes sign nothing): {'met' if not failed else 'NOT met'}")  # fmt: skip
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
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--resume", type=int, default=50, help="resumed connections per TLS version and key")
    parser.add_argument("--pool-size", type=int, default=4, help="the agent's HTTPS connections to the HSM")
    parser.add_argument(
        "--workers", type=int, default=4 * (os.cpu_count() or 1),
        help="nginx worker processes (a worker waits while the HSM signs: use more than the cores)",
    )  # fmt: skip
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES")
    return bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
