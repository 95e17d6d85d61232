"""Running many schedules: quietly (the use cases log every step), on several processes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from tests.simulation.simulation import Result, simulate


def simulate_quietly(
    seed: int, *, keep_trace: bool = False, erasure: bool = False, meet: bool = False
) -> Result:
    with contextlib.redirect_stderr(io.StringIO()):
        return simulate(seed, keep_trace=keep_trace, erasure=erasure, meet=meet)


def _chunk(seeds: list[int], erasure: bool = False, meet: bool = False) -> list[Result]:
    results = (simulate_quietly(seed, erasure=erasure, meet=meet) for seed in seeds)
    return [result for result in results if not result.ok]


def first_failure(
    seeds: Iterable[int], *, erasure: bool = False, meet: bool = False, skip: Iterable[int] = ()
) -> Result | None:
    """The first schedule among ``seeds`` (but ``skip``) that breaks an invariant, run in this
    process."""
    skipped = set(skip)
    for seed in seeds:
        if seed in skipped:
            continue
        result = simulate_quietly(seed, erasure=erasure, meet=meet)
        if not result.ok:
            return result
    return None


def run_seeds(
    seeds: Iterable[int], *, workers: int, erasure: bool = False, meet: bool = False
) -> list[Result]:
    """The failing schedules among ``seeds``, in seed order (``erasure``: each with an
    erasure; ``meet``: each with Meet's signals)."""
    ordered = list(seeds)
    if workers <= 1:
        return _chunk(ordered, erasure, meet)
    size = max(1, min(200, len(ordered) // (workers * 4) or 1))
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(_chunk, chunks, [erasure] * len(chunks), [meet] * len(chunks))
        failures = [result for part in parts for result in part]
    return sorted(failures, key=lambda r: r.seed)
