"""``python -m tests.simulation``: run seeded schedules (``make soak`` runs 100,000).

    python -m tests.simulation --runs 100000 [--start 0] [--workers 2]
    python -m tests.simulation --seed 1234 --trace       one schedule, replayed with its steps
    python -m tests.simulation --mutant NAME [--runs N]  the seeds that catch a reverted fix
    python -m tests.simulation --mutants                 every reverted fix, and its first seed

Exit 0 when every schedule kept every invariant (with ``--mutant``: when some schedule broke
one); else 1, with the failing seeds and the command that replays each.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from tests.simulation.mutants import BY_NAME, MUTANTS
from tests.simulation.runner import first_failure, run_seeds, simulate_quietly


def _replay(seed: int, trace: bool, mutant: str | None) -> int:
    with BY_NAME[mutant].applied() if mutant else contextlib.nullcontext():
        result = simulate_quietly(seed, keep_trace=trace)
    for step in result.trace:
        print(step)
    print(f"seed {result.seed}: {result.problem or 'every invariant held'} ({result.steps} steps)")
    return 0 if result.ok else 1


def _mutants(runs: int, start: int) -> int:
    missed = 0
    for mutant in MUTANTS:
        started = time.monotonic()
        with mutant.applied():
            failure = first_failure(range(start, start + runs))
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
    parser.add_argument("--mutant", choices=sorted(BY_NAME), help="with this fix reverted")
    parser.add_argument("--mutants", action="store_true", help="the first seed of every mutant")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return _replay(args.seed, args.trace, args.mutant)
    if args.mutants:
        return _mutants(args.runs, args.start)
    started = time.monotonic()
    with BY_NAME[args.mutant].applied() if args.mutant else contextlib.nullcontext():
        failures = run_seeds(range(args.start, args.start + args.runs), workers=args.workers)
    elapsed = time.monotonic() - started
    print(f"{args.runs} schedules in {elapsed:.1f} s, {len(failures)} failed")
    for result in failures[:50]:
        print(
            f"seed {result.seed}: {result.problem}"
            f"  (python -m tests.simulation --seed {result.seed} --trace)"
        )
    if args.mutant:
        return 0 if failures else 1
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
