"""What signing a release costs in CI: one `hsmcert sign` for many files against the per-file ways.

In one run against a private emulator (EC P-256 key), medians of --runs runs each:

1. --files files (default 1,000) signed by one `hsmcert sign --format raw`: wall time, and the HSM operations
   the emulator's audit log records (target: one sign per file plus at most one key fetch);
2. the same files signed by a loop of `openssl dgst -sha256 -sign local.pem` (a local key: the floor);
3. a loop of `hsmcert exec -- openssl dgst -sha256 -sign REF` per file (what a pipeline did before
   `hsmcert sign`), timed on --exec-sample files and scaled to --files (it costs about a second a file);
4. a 4-command pipeline (`key create --exist-ok`, `sign --format checksums`, `sign --format raw-base64`,
   `verify-signature`) on 3 files: its total wall time against 4 times the bare import time of the
   libraries a command needs (typer, rich, cryptography, azure-identity, azure-keyvault-keys) (target:
   within 2x).

Prints raw figures and ratios (text, or --json). A benchmark, not a test.

    python bench/ci_signing.py [--runs 3] [--files 1000] [--exec-sample 10] [--json]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IMPORTS = "import typer, rich, cryptography.x509, azure.identity, azure.keyvault.keys"


def _hsmcert() -> list[str]:
    exe = Path(sys.executable).parent / "hsmcert"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hsmcert"]


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed: {done.stderr.decode(errors='replace')[-800:]}")


def _timed(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _median(
    fn: Callable[[], None], runs: int, prepare: Callable[[], None] = lambda: None
) -> tuple[float, list[float]]:
    samples = []
    for _ in range(runs):
        prepare()
        samples.append(_timed(fn))
    return statistics.median(samples), samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--exec-sample", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from hsmcert.emulator import control
    from hsmcert.emulator.audit import read_audit

    report: dict[str, Any] = {"files": args.files, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-ci-") as tmp:
        root = Path(tmp)
        running = control.start(root / "emulator", exit_with=os.getpid())
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_"))}
            env.update(running.env())
            env["HSMCERT_CACHE_DIR"] = str(root / "cache")
            ref = f"managedhsm:{control.DEFAULT_HSM}:bench-ci"
            _run([*_hsmcert(), "key", "create", "--key", ref, "--kty", "EC", "--curve", "P-256"], env, root)
            local = root / "local.pem"
            _run(
                [
                    "openssl",
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    str(local),
                ],
                env,
                root,
            )
            work = root / "files"
            work.mkdir()
            names = [f"artifact-{i:04d}.bin" for i in range(args.files)]
            for name in names:
                (work / name).write_bytes(os.urandom(4096))
            audit = running.data_dir / "audit.jsonl"

            def clean() -> None:
                for sig in work.glob("*.sig"):
                    sig.unlink()

            # 1. one hsmcert sign
            ops: list[list[str]] = []

            def sign_all() -> None:
                mark = len(read_audit(audit))
                _run([*_hsmcert(), "-q", "sign", "--key", ref, *names], env, work)
                ops.append([e["operation"] for e in read_audit(audit)[mark:] if e.get("key") == "bench-ci"])

            t_sign, s_sign = _median(sign_all, args.runs, clean)
            last = ops[-1]
            report["hsmcert_sign"] = {
                "median_s": round(t_sign, 2),
                "samples_s": [round(s, 2) for s in s_sign],
                "per_file_ms": round(t_sign / args.files * 1000, 2),
                "hsm_signs": last.count("sign"),
                "hsm_key_fetches": last.count("get"),
                "hsm_requests_per_file": round(len(last) / args.files, 3),
            }

            # 2. a loop of openssl dgst with a local key
            def openssl_loop() -> None:
                for name in names:
                    _run(
                        ["openssl", "dgst", "-sha256", "-sign", str(local), "-out", f"{name}.sig", name],
                        env,
                        work,
                    )

            t_local, s_local = _median(openssl_loop, args.runs, clean)
            report["openssl_local_loop"] = {
                "median_s": round(t_local, 2),
                "samples_s": [round(s, 2) for s in s_local],
                "per_file_ms": round(t_local / args.files * 1000, 2),
            }

            # 3. hsmcert exec -- openssl dgst, per file (sampled)
            sample = names[: args.exec_sample]

            def exec_loop() -> None:
                for name in sample:
                    _run(
                        [
                            *_hsmcert(),
                            "exec",
                            "--",
                            "openssl",
                            "dgst",
                            "-sha256",
                            "-sign",
                            ref,
                            "-out",
                            f"{name}.sig",
                            name,
                        ],
                        env,
                        work,
                    )

            t_exec, _ = _median(exec_loop, args.runs, clean)
            per_exec = t_exec / len(sample)
            report["hsmcert_exec_loop"] = {
                "sample_files": len(sample),
                "median_sample_s": round(t_exec, 2),
                "per_file_ms": round(per_exec * 1000, 1),
                "scaled_s": round(per_exec * args.files, 1),
            }

            # 4. a 4-command pipeline against the bare import time
            small = root / "pipeline"
            small.mkdir()
            for i in range(3):
                (small / f"app-{i}.tar.gz").write_bytes(os.urandom(4096))
            apps = [f"app-{i}.tar.gz" for i in range(3)]

            def reset() -> None:
                for p in small.iterdir():
                    if not p.name.endswith(".tar.gz"):
                        p.unlink()

            def pipeline() -> None:
                _run(
                    [
                        *_hsmcert(),
                        "-q",
                        "key",
                        "create",
                        "--key",
                        ref,
                        "--kty",
                        "EC",
                        "--curve",
                        "P-256",
                        "--exist-ok",
                    ],
                    env,
                    small,
                )
                _run([*_hsmcert(), "-q", "sign", "--key", ref, "--format", "checksums", *apps], env, small)
                _run([*_hsmcert(), "-q", "sign", "--key", ref, "--format", "raw-base64", *apps], env, small)
                _run([*_hsmcert(), "-q", "verify-signature", "SHA256SUMS", "--key", ref], env, small)

            t_pipe, s_pipe = _median(pipeline, args.runs, reset)
            t_import, _ = _median(lambda: _run([sys.executable, "-c", IMPORTS], env, small), args.runs)
            report["pipeline_4_commands"] = {
                "median_s": round(t_pipe, 2),
                "samples_s": [round(s, 2) for s in s_pipe],
                "bare_import_s": round(t_import, 3),
                "ratio_to_4_imports": round(t_pipe / (4 * t_import), 2),
            }
            report["ratios"] = {
                "hsmcert_sign_vs_openssl_local_loop": round(t_sign / t_local, 2),
                "hsmcert_exec_loop_vs_hsmcert_sign": round(per_exec * args.files / t_sign, 1),
            }
        finally:
            control.stop(running.data_dir)
            shutil.rmtree(root / "files", ignore_errors=True)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s, o, e, p = (
        report[k] for k in ("hsmcert_sign", "openssl_local_loop", "hsmcert_exec_loop", "pipeline_4_commands")
    )
    print(f"{args.files} files, EC P-256, medians of {args.runs} runs")
    print(
        f"  hsmcert sign (one command):        {s['median_s']:8.2f} s  {s['per_file_ms']:7.2f} ms/file  "
        f"HSM: {s['hsm_signs']} signs + {s['hsm_key_fetches']} key fetch ({s['hsm_requests_per_file']} per file)"
    )
    print(f"  openssl dgst loop, local key:      {o['median_s']:8.2f} s  {o['per_file_ms']:7.2f} ms/file")
    print(
        f"  hsmcert exec -- openssl dgst loop: {e['scaled_s']:8.1f} s  {e['per_file_ms']:7.1f} ms/file "
        f"(timed on {e['sample_files']} files, scaled)"
    )
    print(
        f"  ratios: sign / openssl loop = {report['ratios']['hsmcert_sign_vs_openssl_local_loop']}x; "
        f"exec loop / sign = {report['ratios']['hsmcert_exec_loop_vs_hsmcert_sign']}x"
    )
    print(
        f"  4-command pipeline: {p['median_s']:.2f} s; bare import {p['bare_import_s']:.3f} s; "
        f"pipeline / (4 x import) = {p['ratio_to_4_imports']}x (target <= 2x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
