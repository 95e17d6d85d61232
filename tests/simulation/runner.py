"""Running many schedules: quietly (the use cases log every step), on several processes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from tests.simulation.simulation import Result, simulate


def simulate_quietly(seed: int, *, keep_trace: bool = False) -> Result:
    with contextlib.redirect_stderr(io.StringIO()):
        return simulate(seed, keep_trace=keep_trace)


def _chunk(seeds: list[int]) -> list[Result]:
    return [result for result in map(simulate_quietly, seeds) if not result.ok]


def first_failure(seeds: Iterable[int]) -> Result | None:
    """The first schedule among ``seeds`` that breaks an invariant, run in this process."""
    for seed in seeds:
        result = simulate_quietly(seed)
        if not result.ok:
            return result
    return None


def run_seeds(seeds: Iterable[int], *, workers: int) -> list[Result]:
    """The failing schedules among ``seeds``, in seed order."""
    ordered = list(seeds)
    if workers <= 1:
        return _chunk(ordered)
    size = max(1, min(200, len(ordered) // (workers * 4) or 1))
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        failures = [result for part in pool.map(_chunk, chunks) for result in part]
    return sorted(failures, key=lambda r: r.seed)
