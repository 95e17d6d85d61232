"""Benchmark: the backfill scan and meeting discovery over N events (issue 5, point 6).

    python -m benchmarks.backfill [--events 50000 200000] [--runs 3] [--json-out PATH]

Per size: seeded ``call_ended`` events of many conferences of realistic sizes (a few people to a
few hundred, about 2.5 sessions each), spread over a 2-day range, none announced. The fake Reports
API (this process) serves them to the real GoogleReportsSource adapter; the Firestore emulator holds
the meetings discovery creates. ``run_backfill`` runs in its own subprocess so its peak RSS is clean
(the high-water mark after the run minus before it, the clients already built: VmHWM, i.e.
``ru_maxrss`` of this process alone — Linux carries the parent's ``ru_maxrss`` over fork+exec).
The created meetings' collect tasks go to a queue that only records them (collecting is measured
by the poll benchmark).

Reported: wall time (scan = until the last slice is read; discovery = the rest), peak RSS, Reports
requests in total and per slice against ⌈slice events / 1000⌉, events/s, meetings created against
conferences, and the growth exponent log(t2/t1)/log(n2/n1) between consecutive sizes (target ≈ 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_GCE_CHECK", "True")

import itertools

from benchmarks._common import bench_env, merge_env
from functions.backfill import DEFAULT_SLICE, slices
from local.fake_reports import FakeReportsServer
from local.firestore_emulator import FirestoreEmulator
from local.simulate import large_class

ROOT = Path(__file__).resolve().parent.parent
RANGE = timedelta(days=2)
WORKERS = 4
#: Runs of the largest size: machine noise moves one run's wall / scan.
RUNS = 3
#: Issue 15, point 4, at the largest size: wall time at most this many times the scan's
#: (median of the runs), peak RSS at most this, and wall time growing no faster than linearly
#: (growth exponent against the previous size at most this).
WALL_OVER_SCAN_TARGET = 2.0
PEAK_RSS_TARGET_MIB = 256
GROWTH_TARGET = 1.1
#: (weight, smallest, largest) participants: meetings of a few, classes, assemblies, lectures.
SIZES = ((50, 2, 8), (35, 15, 35), (12, 40, 100), (3, 150, 400))


def generate(events: int, *, until: datetime, seed: int = 11) -> tuple[list[dict[str, Any]], int]:
    """``events`` activities of many conferences over ``[until - RANGE, until]``; the count of
    conferences. Codes recur (a class meets every day), as in a school's Workspace."""
    rng = random.Random(seed)
    since = until - RANGE
    activities: list[dict[str, Any]] = []
    conferences = 0
    while len(activities) < events:
        _, low, high = rng.choices(SIZES, weights=[s[0] for s in SIZES])[0]
        participants = rng.randint(low, high)
        minutes = rng.randint(30, 90)
        start = since + timedelta(
            seconds=rng.randint(0, int((RANGE - timedelta(minutes=minutes + 10)).total_seconds()))
        )
        code = f"bf{conferences % 997:04d}-{conferences % 7}x"  # about 3 conferences per code
        batch = large_class(
            participants=participants,
            meeting_code=code,
            conference_id=f"conf-{conferences:06d}-{rng.getrandbits(48):012x}",
            start=start,
            minutes=minutes,
            seed=rng.getrandbits(32),
        )
        activities += batch[: events - len(activities)]
        conferences += 1
    return activities, conferences


_CHILD = r"""
import json, os, resource, sys, time
from datetime import datetime, timedelta, UTC
args = json.loads(sys.argv[1])
from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.adapters.reports import GoogleReportsSource
from functions.backfill import run_backfill
from functions.config import Settings
from functions.ports import Deps
from benchmarks.backfill import RecordingQueue

settings = Settings.from_env(args["env"])
queue = RecordingQueue()
deps = Deps(
    store=FirestoreStore(firestore_client(settings)),
    queue=queue,
    reports=GoogleReportsSource.from_settings(settings),
    clock=lambda: datetime.now(UTC),
)
since = datetime.fromisoformat(args["since"])
until = datetime.fromisoformat(args["until"])
slice_done = []
def hwm():
    # VmHWM: this process's own high-water mark. ru_maxrss would do, but Linux carries the
    # parent's high-water mark over fork+exec, and the parent holds every generated event.
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
before = hwm()
maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu_before = time.process_time()
started = time.perf_counter()
report = run_backfill(
    deps, since=since, until=until, workers=args["workers"],
    slice_length=timedelta(seconds=args["slice_s"]),
    on_slice_done=lambda done, total: slice_done.append(time.perf_counter()),
)
wall = time.perf_counter() - started
peak = hwm()
maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "wall_s": wall,
    "scan_s": max(slice_done) - started,
    "cpu_s": time.process_time() - cpu_before,
    "before_kib": before,
    "peak_kib": peak,
    "ru_maxrss_before_kib": maxrss_before,
    "ru_maxrss_after_kib": maxrss_after,
    "report": report.to_json(),
    "tasks_recorded": len(queue.tasks),
}))
"""


class RecordingQueue:
    """A task queue that only records (named tasks are created once, as in Cloud Tasks)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Any] = {}

    def enqueue(self, task: Any, *, task_id: str, at: datetime) -> bool:
        if task_id in self.tasks:
            return False
        self.tasks[task_id] = (task, at)
        return True


def measure(
    sizes: Sequence[int], *, workers: int = WORKERS, runs: int = RUNS
) -> list[dict[str, Any]]:
    """One result per size; the largest size is run ``runs`` times on the same events (each run
    a new process and an emptied emulator), its result the run of median wall / scan, with every
    run's figures under ``runs``."""
    results: list[dict[str, Any]] = []
    with FirestoreEmulator(project="bench-backfill") as firestore, FakeReportsServer() as reports:
        env = bench_env(firestore.host, "127.0.0.1:9", reports.url)
        env["GOOGLE_CLOUD_PROJECT"] = "bench-backfill"
        for size in sizes:
            reports.reset()
            # A whole number of seconds, a little in the past: the fake refuses future times.
            until = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
            since = until - RANGE
            generated = time.perf_counter()
            activities, conferences = generate(size, until=until)
            reports.add_activities(activities)
            setup_s = time.perf_counter() - generated
            ranges = slices(since, until, DEFAULT_SLICE)
            per_slice_events = _events_per_slice(activities, ranges)
            del activities
            done = []
            for _ in range(runs if size == max(sizes) else 1):
                firestore.clear()
                logged = len(reports.requests())
                child = _run_child(
                    {
                        "env": env,
                        "since": since.isoformat(),
                        "until": until.isoformat(),
                        "workers": workers,
                        "slice_s": DEFAULT_SLICE.total_seconds(),
                    },
                    env,
                )
                per_slice_requests = _requests_per_slice(reports.requests()[logged:], ranges)
                done.append(
                    _result(size, conferences, child, ranges, per_slice_events, per_slice_requests)
                )
                done[-1]["setup_s"] = round(setup_s, 2)
                print(_line(done[-1]), flush=True)
            results.append(_median_run(done))
    _add_growth(results)
    return results


def _median_run(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall / scan (the lower middle of an even count), with every run's."""
    ordered = sorted(done, key=lambda r: r["wall_over_scan"])
    middle = ordered[(len(ordered) - 1) // 2]
    keys = ("wall_s", "scan_s", "discovery_s", "wall_over_scan", "peak_rss_mib")
    return {**middle, "runs": [{k: r[k] for k in keys} for r in done]}


def _events_per_slice(
    activities: Sequence[dict[str, Any]], ranges: Sequence[tuple[datetime, datetime]]
) -> list[int]:
    counts = [0] * len(ranges)
    starts = [r[0] for r in ranges]
    for item in activities:
        when = datetime.fromisoformat(item["id"]["time"].replace("Z", "+00:00"))
        for index in range(len(ranges) - 1, -1, -1):
            if when >= starts[index]:
                if when <= ranges[index][1]:
                    counts[index] += 1
                break
    return counts


def _requests_per_slice(
    log: Sequence[dict[str, Any]], ranges: Sequence[tuple[datetime, datetime]]
) -> list[int]:
    by_start: Counter[str] = Counter()
    for entry in log:
        query = entry.get("query") or {}
        if "startTime" in query and str(entry.get("path", "")).endswith("/applications/meet"):
            by_start[str(query["startTime"])] += 1
    return [by_start[_rfc3339(start)] for start, _ in ranges]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _run_child(arguments: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(arguments)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=merge_env({**env, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}),
        timeout=900,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"backfill child failed: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _result(
    size: int,
    conferences: int,
    child: dict[str, Any],
    ranges: Sequence[tuple[datetime, datetime]],
    per_slice_events: list[int],
    per_slice_requests: list[int],
) -> dict[str, Any]:
    report = child["report"]
    targets = [max(1, math.ceil(n / 1000)) for n in per_slice_events]
    return {
        "events": size,
        "conferences": conferences,
        "slices": len(ranges),
        "workers": WORKERS,
        "wall_s": round(child["wall_s"], 3),
        "scan_s": round(child["scan_s"], 3),
        "discovery_s": round(child["wall_s"] - child["scan_s"], 3),
        "wall_over_scan": round(child["wall_s"] / child["scan_s"], 3),
        "cpu_s": round(child["cpu_s"], 3),
        "events_per_s": round(size / child["wall_s"]),
        "scan_events_per_s": round(size / child["scan_s"]),
        "peak_rss_mib": round((child["peak_kib"] - child["before_kib"]) / 1024, 1),
        "baseline_rss_mib": round(child["before_kib"] / 1024, 1),
        "events_read": report["events_read"],
        "conferences_seen": report["conferences_seen"],
        "meetings_created": report["meetings_created"],
        "tasks_recorded": child["tasks_recorded"],
        "requests": report["requests"],
        "requests_target": sum(targets),
        "requests_floor": math.ceil(size / 1000),
        "per_slice_events": per_slice_events,
        "per_slice_requests": per_slice_requests,
        "per_slice_targets": targets,
        "per_slice_met": per_slice_requests == targets,
    }


def _add_growth(results: list[dict[str, Any]]) -> None:
    for previous, current in itertools.pairwise(results):
        ratio = math.log(current["events"] / previous["events"])
        for key in ("wall_s", "scan_s", "discovery_s", "peak_rss_mib"):
            if previous[key] > 0 and current[key] > 0:
                exponent = math.log(current[key] / previous[key]) / ratio
                current[f"growth_{key.removesuffix('_s').removesuffix('_mib')}"] = round(
                    exponent, 3
                )


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['events']:>7} events, {r['conferences']} conferences: {r['wall_s']:.1f} s "
        f"(scan {r['scan_s']:.1f} s, discovery {r['discovery_s']:.1f} s), "
        f"{r['events_per_s']:,} ev/s, peak +{r['peak_rss_mib']:.1f} MiB, "
        f"requests {r['requests']} (target {r['requests_target']}), "
        f"created {r['meetings_created']}/{r['conferences']}"
    )


def targets(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 15, point 4, at the largest size: {figure, value, unit, target, met}."""
    if not results:
        return []
    largest = results[-1]
    runs = largest.get("runs") or [largest]
    ratio = statistics.median(r["wall_over_scan"] for r in runs)
    growth = largest.get("growth_wall")
    n = f"{largest['events']:,}-event backfill"
    return [
        {
            "figure": f"{n}: wall / scan (median of {len(runs)} runs)",
            "value": round(ratio, 3),
            "unit": "x",
            "target": f"<= {WALL_OVER_SCAN_TARGET:g}x",
            "met": ratio <= WALL_OVER_SCAN_TARGET,
        },
        {
            "figure": f"{n}: peak RSS",
            "value": largest["peak_rss_mib"],
            "unit": " MiB",
            "target": f"<= {PEAK_RSS_TARGET_MIB} MiB",
            "met": largest["peak_rss_mib"] <= PEAK_RSS_TARGET_MIB,
        },
        {
            "figure": f"{n}: growth exponent of wall time against the previous size",
            "value": growth,
            "unit": "",
            "target": f"<= {GROWTH_TARGET:g} (linear)",
            "met": growth is not None and growth <= GROWTH_TARGET,
        },
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--runs", type=int, default=RUNS, help="runs of the largest size")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    results = measure(args.events, runs=args.runs)
    for target in targets(results):
        verdict = "met" if target["met"] else "NOT met"
        print(
            f"{target['figure']}: {target['value']}{target['unit']} ({target['target']}): {verdict}"
        )
    for r in results[1:]:
        print(
            f"growth {r['events']}: wall {r.get('growth_wall', 'n/a')}, "
            f"scan {r.get('growth_scan', 'n/a')}, discovery {r.get('growth_discovery', 'n/a')} "
            "(target ≈ 1)"
        )
    for r in results:
        print(f"per-slice requests {r['events']}: {r['per_slice_requests']}")
        print(f"        targets        : {r['per_slice_targets']}")
    if args.json_out:
        payload = {"benchmark": "backfill", "backfill": results, "targets": targets(results)}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
