"""The install step of scripts/test and scripts/start when nothing changed.

Target (from issue 12): scripts/test and scripts/start "don't reinstall when nothing changed
(today each run spends 7.6 s in pip)". Times, in this checkout's .venv, `scripts/install-locked
requirements-test.lock` as the scripts run it: once after removing its stamp (pip checks every
pinned package against what is installed and installs nothing: the cost of an unchanged lock
without the stamp), then `--runs` times with the stamp in place (what each test run now
spends), and for comparison the old step, `pip install -e ".[test]"`, unless --skip-old.

    .venv/bin/python -m bench.install_step [--runs 5] [--skip-old]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "requirements-test.lock"
STAMP = ROOT / ".venv" / f".installed-{LOCK}"


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-old", action="store_true", help="do not time pip install -e")
    args = parser.parse_args()
    install = ["./scripts/install-locked", LOCK, "--quiet"]
    saved = STAMP.read_text() if STAMP.exists() else None
    try:
        STAMP.unlink(missing_ok=True)
        checked = timed(install)  # writes the stamp again
        skipped = [timed(install) for _ in range(args.runs)]
    finally:
        if saved is not None:
            STAMP.write_text(saved)
    old = None
    if not args.skip_old:
        pip = [".venv/bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        old = timed([*pip, "-e", ".[test]"])
    print(f"install step, lock unchanged, stamp present: median {statistics.median(skipped):.3f} s")
    print(f"  max {max(skipped):.3f} s over {args.runs} runs (pip is not started)")
    print(f"install step, stamp removed (pip checks the lock, installs nothing): {checked:.2f} s")
    if old is not None:
        print(f"the old step, pip install -e '.[test]' with nothing to install: {old:.2f} s")
    verdict = "PASS" if max(skipped) < 0.5 else "FAIL"
    print(f"no reinstall when nothing changed (< 0.5 s): {verdict}")


if __name__ == "__main__":
    main()
