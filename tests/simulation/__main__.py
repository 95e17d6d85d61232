"""``python -m tests.simulation``: run seeded schedules (``make soak`` runs 100,000).

    python -m tests.simulation --runs 100000 [--start 0] [--workers 2]
    python -m tests.simulation --seed 1234 --trace       one schedule, replayed with its steps
    python -m tests.simulation --mutant NAME [--runs N]  the seeds that catch a reverted fix
    python -m tests.simulation --mutants                 every reverted fix, and its first seed
    python -m tests.simulation --erasure ...             the same, each schedule with an erasure
    python -m tests.simulation --meet ...                the same, with Meet's signals

Exit 0 when every schedule kept every invariant (with ``--mutant``: when some schedule broke
one); else 1, with the failing seeds and the command that replays each. With ``--meet``, the
schedules that show a bug of ``functions/`` already reported (``meet.KNOWN_MEET_BUGS``) are
counted apart and do not fail the run. With ``--mutants``, the schedules that break an invariant
without any mutant are run first and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from tests.simulation.meet import known_bug
from tests.simulation.mutants import (
    BY_NAME,
    ERASURE_BY_NAME,
    ERASURE_MUTANTS,
    MEET_BY_NAME,
    MEET_MUTANTS,
    MUTANTS,
    Mutant,
)
from tests.simulation.runner import first_failure, run_seeds, simulate_quietly

ALL_MUTANTS = {**BY_NAME, **ERASURE_BY_NAME, **MEET_BY_NAME}


def _mode(erasure: bool, meet: bool) -> str:
    return (" --erasure" if erasure else "") + (" --meet" if meet else "")


def _replay(seed: int, trace: bool, mutant: Mutant | None, erasure: bool, meet: bool) -> int:
    with mutant.applied() if mutant else contextlib.nullcontext():
        result = simulate_quietly(seed, keep_trace=trace, erasure=erasure, meet=meet)
    for step in result.trace:
        print(step)
    print(f"seed {result.seed}: {result.problem or 'every invariant held'} ({result.steps} steps)")
    return 0 if result.ok else 1


def _mutants(runs: int, start: int, erasure: bool, meet: bool, workers: int) -> int:
    seeds = range(start, start + runs)
    failing = [r.seed for r in run_seeds(seeds, workers=workers, erasure=erasure, meet=meet)]
    if failing:
        print(f"{len(failing)} schedules fail without any mutant, skipped: {failing[:20]}")
    missed = 0
    for mutant in ERASURE_MUTANTS if erasure else MEET_MUTANTS if meet else MUTANTS:
        started = time.monotonic()
        with mutant.applied():
            failure = first_failure(seeds, erasure=erasure, meet=meet, skip=failing)
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
    parser.add_argument("--mutant", choices=sorted(ALL_MUTANTS), help="with this fix reverted")
    parser.add_argument("--mutants", action="store_true", help="the first seed of every mutant")
    parser.add_argument("--erasure", action="store_true", help="each schedule with an erasure")
    parser.add_argument("--meet", action="store_true", help="with Meet's conference-ended signals")
    args = parser.parse_args(argv)
    if args.erasure and args.meet:
        parser.error("--erasure and --meet are separate modes")
    mutant = ALL_MUTANTS.get(args.mutant) if args.mutant else None
    if args.seed is not None:
        return _replay(args.seed, args.trace, mutant, args.erasure, args.meet)
    if args.mutants:
        return _mutants(args.runs, args.start, args.erasure, args.meet, args.workers)
    started = time.monotonic()
    with mutant.applied() if mutant else contextlib.nullcontext():
        failures = run_seeds(
            range(args.start, args.start + args.runs),
            workers=args.workers,
            erasure=args.erasure,
            meet=args.meet,
        )
    elapsed = time.monotonic() - started
    print(f"{args.runs} schedules in {elapsed:.1f} s, {len(failures)} failed")
    # With Meet signals, the violations of the bugs KNOWN_MEET_BUGS lists are counted apart:
    # they fail the run only with a mutant applied (which is then what is looked for).
    known: dict[str, list[int]] = {}
    unexplained = []
    for result in failures:
        bug = known_bug(result.problem) if args.meet and not args.mutant else None
        if bug is None:
            unexplained.append(result)
        else:
            known.setdefault(bug, []).append(result.seed)
    for bug, seeds in sorted(known.items()):
        print(f"known bug {bug}: {len(seeds)} schedules, seeds {seeds[:10]}")
    for result in unexplained[:50]:
        print(
            f"seed {result.seed}: {result.problem}"
            f"  (python -m tests.simulation --seed {result.seed} --trace"
            f"{_mode(args.erasure, args.meet)})"
        )
    if args.mutant:
        return 0 if failures else 1
    return 0 if not unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
