"""Running many schedules: quietly (the use cases log every step), on several processes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from tests.simulation.simulation import Result, simulate


def simulate_quietly(seed: int, *, keep_trace: bool = False, erasure: bool = False) -> Result:
    with contextlib.redirect_stderr(io.StringIO()):
        return simulate(seed, keep_trace=keep_trace, erasure=erasure)


def _chunk(seeds: list[int], erasure: bool = False) -> list[Result]:
    results = (simulate_quietly(seed, erasure=erasure) for seed in seeds)
    return [result for result in results if not result.ok]


def first_failure(seeds: Iterable[int], *, erasure: bool = False) -> Result | None:
    """The first schedule among ``seeds`` that breaks an invariant, run in this process."""
    for seed in seeds:
        result = simulate_quietly(seed, erasure=erasure)
        if not result.ok:
            return result
    return None


def run_seeds(seeds: Iterable[int], *, workers: int, erasure: bool = False) -> list[Result]:
    """The failing schedules among ``seeds``, in seed order (``erasure``: each with an
    erasure)."""
    ordered = list(seeds)
    if workers <= 1:
        return _chunk(ordered, erasure)
    size = max(1, min(200, len(ordered) // (workers * 4) or 1))
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(_chunk, chunks, [erasure] * len(chunks))
        failures = [result for part in parts for result in part]
    return sorted(failures, key=lambda r: r.seed)
