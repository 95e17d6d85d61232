"""``python -m tests.simulation``: run seeded schedules (``make soak`` runs 100,000).

    python -m tests.simulation --runs 100000 [--start 0] [--workers 2]
    python -m tests.simulation --seed 1234 --trace       one schedule, replayed with its steps
    python -m tests.simulation --mutant NAME [--runs N]  the seeds that catch a reverted fix
    python -m tests.simulation --mutants                 every reverted fix, and its first seed
    python -m tests.simulation --erasure ...             the same, each schedule with an erasure

Exit 0 when every schedule kept every invariant (with ``--mutant``: when some schedule broke
one); else 1, with the failing seeds and the command that replays each.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from tests.simulation.mutants import BY_NAME, ERASURE_BY_NAME, ERASURE_MUTANTS, MUTANTS, Mutant
from tests.simulation.runner import first_failure, run_seeds, simulate_quietly


def _replay(seed: int, trace: bool, mutant: Mutant | None, erasure: bool) -> int:
    with mutant.applied() if mutant else contextlib.nullcontext():
        result = simulate_quietly(seed, keep_trace=trace, erasure=erasure)
    for step in result.trace:
        print(step)
    print(f"seed {result.seed}: {result.problem or 'every invariant held'} ({result.steps} steps)")
    return 0 if result.ok else 1


def _mutants(runs: int, start: int, erasure: bool) -> int:
    missed = 0
    for mutant in ERASURE_MUTANTS if erasure else MUTANTS:
        started = time.monotonic()
        with mutant.applied():
            failure = first_failure(range(start, start + runs), erasure=erasure)
        elapsed = time.monotonic() - started
        if failure is None:
            missed += 1
            print(f"{mutant.name}: no schedule of {runs} noticed ({elapsed:.1f} s)")
        else:
            print(f"{mutant.name}: seed {failure.seed} ({elapsed:.1f} s): {failure.problem}")
    return 0 if not missed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, help="replay one schedule")
    parser.add_argument("--trace", action="store_true", help="print its steps")
    parser.add_argument(
        "--mutant", choices=sorted({*BY_NAME, *ERASURE_BY_NAME}), help="with this fix reverted"
    )
    parser.add_argument("--mutants", action="store_true", help="the first seed of every mutant")
    parser.add_argument("--erasure", action="store_true", help="each schedule with an erasure")
    args = parser.parse_args(argv)
    mutant = {**BY_NAME, **ERASURE_BY_NAME}.get(args.mutant) if args.mutant else None
    if args.seed is not None:
        return _replay(args.seed, args.trace, mutant, args.erasure)
    if args.mutants:
        return _mutants(args.runs, args.start, args.erasure)
    started = time.monotonic()
    with mutant.applied() if mutant else contextlib.nullcontext():
        failures = run_seeds(
            range(args.start, args.start + args.runs), workers=args.workers, erasure=args.erasure
        )
    elapsed = time.monotonic() - started
    print(f"{args.runs} schedules in {elapsed:.1f} s, {len(failures)} failed")
    for result in failures[:50]:
        print(
            f"seed {result.seed}: {result.problem}"
            f"  (python -m tests.simulation --seed {result.seed} --trace"
            f"{' --erasure' if args.erasure else ''})"
        )
    if args.mutant:
        return 0 if failures else 1
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
