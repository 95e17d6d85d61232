"""``python -m tests.fuzz --requests N [--seed S]``: start the local stack (the end-to-end tests'
short timings), send N generated requests, stop the stack, print the summary.

Exits 0 when no answer was a 5xx, none was missing or undocumented, and the unauthenticated
batch wrote nothing; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")

from local.stack import Stack
from tests.e2e.conftest import E2E_TIMINGS
from tests.fuzz.harness import run


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="how many (default 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    args = parser.parse_args(argv)
    if args.requests < 10:
        parser.error("--requests must be at least 10")

    started = time.monotonic()
    stack = Stack({**os.environ, **E2E_TIMINGS})
    try:
        stack.plan()
        stack.start()
        _progress(f"stack ready in {time.monotonic() - started:.1f} s")
        summary = run(stack.env, requests_count=args.requests, seed=args.seed, progress=_progress)
    finally:
        stack.stop()
    print(summary.report(), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
