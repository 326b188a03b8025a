"""How fast the CLI starts, and what one `hsmcert csr` costs against the emulator, next to the baselines.

In one run, medians of --runs runs each:

1. start-up: `hsmcert --help` and `hsmcert --version` wall time against `python -c pass` (ratio; target <= 8x);
2. `hsmcert csr` against a private emulator, for an EC P-256 and an RSA-2048 key: the HTTP requests each CSR
   makes (counted in the client process by a hook on http.client, split by destination: the HSM and the
   managed-identity token endpoint; and the HSM operations in the emulator's audit log), first with an empty
   public-key cache and then with the cache warm (expected: three HSM requests, the unauthenticated request
   that elicits the service's challenge, which the SDK's public API makes once per process, the public key
   and the sign; two when the public key is cached), and the median wall time against
   `openssl req -new -key local.pem` for the same subject with a local key of the same type.

    python bench/cli.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SUBJECT = "/C=US/O=Bench/CN=bench.example.com"

# Loaded into the measured `hsmcert` process through PYTHONPATH: one line per HTTP request it sends.
_HOOK = """
import http.client, os
_log = os.environ.get("HSMCERT_BENCH_REQUESTS")
if _log:
    _orig = http.client.HTTPConnection.putrequest
    def _counted(self, method, url, *args, **kwargs):
        with open(_log, "a") as fh:
            fh.write(f"{self.host}:{self.port} {method} {url.split('?')[0]}\\n")
        return _orig(self, method, url, *args, **kwargs)
    http.client.HTTPConnection.putrequest = _counted
"""


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def _median(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, list[float]]:
    _time(cmd, env)  # warm the page cache and .pyc files
    samples = [_time(cmd, env) for _ in range(runs)]
    return statistics.median(samples), samples


def _hsmcert() -> list[str]:
    exe = Path(sys.executable).parent / "hsmcert"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hsmcert"]


def startup(runs: int) -> list[dict[str, Any]]:
    base, base_samples = _median([sys.executable, "-c", "pass"], runs)
    rows = []
    for args in (["--help"], ["--version"]):
        t, samples = _median([*_hsmcert(), *args], runs)
        ratio = t / base
        rows.append(
            {
                "command": f"hsmcert {args[0]}",
                "median_ms": round(t * 1000, 1),
                "baseline_ms": round(base * 1000, 1),
                "ratio": round(ratio, 2),
                "samples_ms": [round(s * 1000, 1) for s in samples],
                "baseline_samples_ms": [round(s * 1000, 1) for s in base_samples],
            }
        )
        verdict = "meets" if ratio <= 8 else "misses"
        print(
            f"hsmcert {args[0]:<9} median {t * 1000:7.1f} ms | python -c pass {base * 1000:6.1f} ms | "
            f"ratio {ratio:5.2f} ({verdict} the <= 8x target)",
            flush=True,
        )
    return rows


def _requests(log: Path, hsm_port: int) -> tuple[int, int, list[str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    hsm = [line for line in lines if line.split(" ", 1)[0].endswith(f":{hsm_port}")]
    return len(hsm), len(lines) - len(hsm), lines


def _ops_since(audit: Path, start: int, key: str) -> list[str]:
    from hsmcert.emulator.audit import read_audit

    return [e["operation"] for e in read_audit(audit)[start:] if e.get("key") == key]


def csr_cost(runs: int) -> list[dict[str, Any]]:
    from hsmcert.emulator import control
    from hsmcert.emulator.audit import read_audit
    from hsmcert.session import default_session

    rows = []
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-cli-") as tmp:
        root = Path(tmp)
        running = control.start(root / "emulator", exit_with=os.getpid())
        saved = dict(os.environ)
        try:
            os.environ.update(running.env())
            hook_dir = root / "hook"
            hook_dir.mkdir()
            (hook_dir / "sitecustomize.py").write_text(_HOOK)
            log = root / "requests.log"
            url, _ = control.service_endpoint(running.data_dir, "managedhsm", control.DEFAULT_HSM)
            hsm_port = int(url.rsplit(":", 1)[1])
            env = {
                **os.environ,
                "PYTHONPATH": str(hook_dir),
                "HSMCERT_BENCH_REQUESTS": str(log),
                "HSMCERT_CACHE_DIR": str(root / "cache"),
            }
            cases = {
                "EC P-256": ("EC", None, "P-256", ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                "RSA-2048": ("RSA", 2048, None, ["rsa", "-pkeyopt", "rsa_keygen_bits:2048"]),
            }
            for label, (kty, size, curve, gen) in cases.items():
                name = f"bench-{kty.lower()}"
                ref = f"managedhsm:{control.DEFAULT_HSM}:{name}"
                default_session().keys.create(ref, kty, size=size, curve=curve)
                local = root / f"{name}.pem"
                subprocess.run(
                    ["openssl", "genpkey", "-algorithm", gen[0], *gen[1:], "-out", str(local)],
                    check=True,
                    capture_output=True,
                )
                cmd = [*_hsmcert(), "csr", "--key", ref, "--subj", SUBJECT, "-o", "-", "-q"]
                audit = running.data_dir / "audit.jsonl"

                mark = len(read_audit(audit))
                _time(cmd, env)  # cold: empty public-key cache, new process
                cold_hsm, cold_other, cold_lines = _requests(log, hsm_port)
                cold_ops = _ops_since(audit, mark, name)
                mark = len(read_audit(audit))
                t, samples = _median(cmd, runs, env)
                per_run = runs + 1
                warm_hsm, warm_other, _ = _requests(log, hsm_port)
                warm_ops = len(_ops_since(audit, mark, name)) / per_run
                from hsmcert.session import default_session

                pinned = str(
                    default_session().open_key(ref).ref
                )  # managedhsm:H:k?version=v: served from the disk cache
                pinned_cmd = [*_hsmcert(), "csr", "--key", pinned, "--subj", SUBJECT, "-o", "-", "-q"]
                mark = len(read_audit(audit))
                tp, pinned_samples = _median(pinned_cmd, runs, env)
                pinned_hsm, _, _ = _requests(log, hsm_port)
                pinned_ops = _ops_since(audit, mark, name)
                base, base_samples = _median(
                    ["openssl", "req", "-new", "-key", str(local), "-subj", SUBJECT], runs
                )
                row = {
                    "key": label,
                    "cold_hsm_requests": cold_hsm,
                    "cold_other_requests": cold_other,
                    "cold_audit_operations": cold_ops,
                    "hsm_requests_per_csr": warm_hsm / per_run,
                    "other_requests_per_csr": warm_other / per_run,
                    "audit_operations_per_csr": warm_ops,
                    "pinned_hsm_requests_per_csr": pinned_hsm / per_run,
                    "pinned_audit_operations": sorted(set(pinned_ops)),
                    "median_ms": round(t * 1000, 1),
                    "pinned_median_ms": round(tp * 1000, 1),
                    "openssl_median_ms": round(base * 1000, 1),
                    "ratio": round(t / base, 2),
                    "samples_ms": [round(x * 1000, 1) for x in samples],
                    "pinned_samples_ms": [round(x * 1000, 1) for x in pinned_samples],
                    "openssl_samples_ms": [round(x * 1000, 1) for x in base_samples],
                    "cold_requests": cold_lines,
                }
                rows.append(row)
                print(
                    f"hsmcert csr {label:<8} HSM requests per CSR: first ever {cold_hsm} ({', '.join(cold_ops)}"
                    f"{'; + the unauthenticated challenge' if cold_hsm > len(cold_ops) else ''}), then {warm_hsm / per_run:.1f}"
                    f" (public key + sign), {pinned_hsm / per_run:.1f} with a pinned ?version= (key cached);"
                    f" + {warm_other / per_run:.1f} managed-identity token request per process",
                    flush=True,
                )
                print(
                    f"hsmcert csr {label:<8} median {t * 1000:7.1f} ms ({tp * 1000:.1f} ms pinned) vs"
                    f" openssl req -new -key local.pem {base * 1000:6.1f} ms: ratio {t / base:.1f}",
                    flush=True,
                )
                for line in cold_lines:
                    print(f"    cold request: {line}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            control.stop(running.data_dir)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args, _ = parser.parse_known_args(argv)  # bench/run_all.py passes every benchmark the same flags
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is needed for the baseline")
    results = {"startup": startup(args.runs), "csr": csr_cost(args.runs)}
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
