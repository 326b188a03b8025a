"""Run every benchmark under bench/ in turn (``make bench``).

Each benchmark measures hsmcert and its baseline in the same run and prints both figures and the
ratio; this runner only sequences them, so the machine is never shared between two benchmarks.
Extra arguments are passed to every benchmark (for example ``--runs 3``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    scripts = sorted(
        p
        for p in here.glob("*.py")
        if p.name not in {"run_all.py", "__init__.py"} and not p.name.startswith("_")
    )
    failed: list[str] = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        if subprocess.run([sys.executable, str(script), *argv], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
