"""Benchmark: signed ``meeting.ended`` webhooks on ONE functions-framework instance of ``ingest``.

    python -m benchmarks.ingest [--rates 20 50 200] [--seconds 10] [--workers 4 16 64]
                                [--roster 10] [--rt-samples 5] [--latency-runs 5]
                                [--latency-pairs 30] [--ceiling-seconds 5] [--json-out PATH]

Starts only what ingest needs, on 127.0.0.1: the Firestore emulator, the Cloud Tasks emulator and
``python -m functions_framework --target=ingest`` (one gunicorn worker, its default threads). Every
request is a new meeting (its own code and external id, a roster of ``--roster`` expected
participants), signed the Standard Webhooks way before the phase starts.

- **Open loop** at each fixed offered rate: requests are scheduled on a clock (request i at
  t0 + i/rate) and sent by a pool of threads, each with a keep-alive connection; latency counts from
  the scheduled time, so a server that falls behind shows its queueing delay (no coordinated
  omission). Bounded: the phase lasts ``--seconds`` and anything not sent within 2x that is dropped.
- **Closed loop** with N workers sending back to back for ``--seconds``: the maximum sustained
  throughput is the best of the worker counts.

CPU of each process (function, Firestore emulator, Tasks emulator, this load generator) is sampled
from /proc/PID/stat around each phase, to say which one saturates the 2-core machine.

Beside it, on the same emulators (issue 15; each figure beside its target in ``targets``):

- **Round trips per webhook, counted at the gRPC channel.** A second instance of ingest runs as
  ``python -m benchmarks.instrumented <functions-framework args>``: the same code, with every
  Firestore and Cloud Tasks channel wrapped in a counting interceptor (benchmarks/instrumented.py).
  Each counted webhook carries an ``X-Bench-Request`` key; per webhook: Firestore calls, Firestore
  round trips in sequence (calls that overlap in time count once: the depth of the chain), Cloud
  Tasks calls — for a new meeting and for a replay of the same signed webhook (same webhook-id).
  The median over ``--rt-samples`` webhooks. Targets: new <= 3 in sequence (plus the task
  creation), replay <= 1.
- **Webhook over one Firestore create.** ``--latency-runs`` runs, each alternating
  ``--latency-pairs`` single webhooks (new meetings, sent one at a time over a keep-alive
  connection: the HTTP hop included) with single document creates made from this process with the
  stock client; the ratio of the medians within each run, the median of the runs. Target <= 5.
- **The one-create ceiling**: the maximum sustained rate (closed loop, best of the worker counts)
  of ``benchmarks/one_create.py`` — a trivial functions-framework function doing one Firestore
  create per request — beside the webhook's.
- The open-loop phase at an offered 50/s: target p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("NO_GCE_CHECK", "True")

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from benchmarks._common import (
    WEBHOOK_SECRET,
    cpu_seconds,
    load_average,
    median,
    percentile,
    target,
    tree_cpu_seconds,
)
from benchmarks.instrumented import (
    CALLS_FILE_ENV,
    REQUEST_HEADER,
    read_calls,
    summarise_requests,
    unattributed,
)
from functions.signatures import sign_webhook
from local._net import LOOPBACK, free_port
from local.simulate import rfc3339
from local.stack import Child, Stack, answers

OPEN_LOOP_THREADS = 64
LOAD_GENERATOR = "load generator"
#: The instance of ingest whose gRPC channels are counted, and the one-create function.
COUNTED_INGEST = "ingest-counted"
ONE_CREATE = "one-create"
#: Firestore collection of the creates this process makes (the latency baseline).
BASELINE_COLLECTION = "bench_one_create"


@dataclass
class Sample:
    scheduled: float
    sent: float
    done: float
    status: int


@dataclass
class Prepared:
    body: bytes
    headers: dict[str, str]


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    dropped: int = 0
    wall_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


def prepare(count: int, *, roster: int, tag: str) -> list[Prepared]:
    """``count`` signed webhooks, each a new meeting that ended a minute ago."""
    now = datetime.now(UTC)
    ended = now - timedelta(minutes=1)
    prepared = []
    for index in range(count):
        code = f"ing-{tag}-{index:06d}"
        payload = {
            "type": "meeting.ended",
            "meeting_code": code,
            "external_id": f"bench-{tag}-{index}",
            "started_at": rfc3339(ended - timedelta(minutes=50)),
            "ended_at": rfc3339(ended),
            "organizer_email": f"teacher{index % 40}@school.example",
            "expected_participants": [
                f"student{(index * 7 + n) % 3000:04d}@school.example" for n in range(roster)
            ],
        }
        body = json.dumps(payload).encode()
        headers = sign_webhook(
            secret=WEBHOOK_SECRET, webhook_id=f"msg_{uuid.uuid4().hex}", timestamp=now, body=body
        )
        headers["Content-Type"] = "application/json"
        prepared.append(Prepared(body, headers))
    return prepared


class Sender:
    """One keep-alive connection to the function."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._connection: http.client.HTTPConnection | None = None

    def send(self, request: Prepared) -> int:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
            try:
                self._connection.request("POST", "/", body=request.body, headers=request.headers)
                response = self._connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    return 0
        return 0

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def open_loop(
    url: str, requests: Sequence[Prepared], *, rate: float, seconds: float, pids: dict[str, int]
) -> Phase:
    host, port = _address(url)
    total = min(len(requests), int(rate * seconds))
    phase = Phase(f"open {rate:g}/s")
    counter = itertools.count()
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    give_up = start + 2 * seconds

    def work() -> None:
        sender = Sender(host, port)
        try:
            while True:
                index = next(counter)
                if index >= total:
                    return
                scheduled = start + index / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                if sent > give_up:
                    with lock:
                        phase.dropped += 1
                    continue
                status = sender.send(requests[index])
                with lock:
                    phase.samples.append(Sample(scheduled, sent, time.perf_counter(), status))
        finally:
            sender.close()

    _run_threads(work, OPEN_LOOP_THREADS, phase, pids)
    return phase


def closed_loop(
    url: str, requests: Sequence[Prepared], *, workers: int, seconds: float, pids: dict[str, int]
) -> Phase:
    host, port = _address(url)
    phase = Phase(f"closed {workers} workers")
    counter = itertools.count()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def work() -> None:
        sender = Sender(host, port)
        try:
            while True:
                index = next(counter)
                now = time.perf_counter()
                if index >= len(requests) or now >= stop_at:
                    return
                status = sender.send(requests[index])
                with lock:
                    phase.samples.append(Sample(now, now, time.perf_counter(), status))
        finally:
            sender.close()

    _run_threads(work, workers, phase, pids)
    return phase


def _run_threads(work: Any, count: int, phase: Phase, pids: dict[str, int]) -> None:
    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    cpu_before = {name: _cpu(name, pid) for name, pid in pids.items()}
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    phase.wall_s = time.perf_counter() - started
    phase.cpu = {
        name: round((_cpu(name, pid) - cpu_before[name]) / phase.wall_s, 3)
        for name, pid in pids.items()
    }


def _cpu(name: str, pid: int) -> float:
    # The stack's processes are this process's children: count only our own threads here.
    return cpu_seconds(pid, children=False) if name == LOAD_GENERATOR else tree_cpu_seconds(pid)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"the benchmark only targets 127.0.0.1, not {url}")
    return parts.hostname, parts.port


def summarise(phase: Phase, *, offered: float | None) -> dict[str, Any]:
    ok = [s for s in phase.samples if 200 <= s.status < 300]
    latencies = [(s.done - s.scheduled) * 1000 for s in ok]
    service = [(s.done - s.sent) * 1000 for s in ok]
    if ok:
        first = min(s.sent for s in phase.samples)
        last = max(s.done for s in phase.samples)
        span = max(last - first, 1e-9)
    else:
        span = phase.wall_s
    return {
        "phase": phase.name,
        "offered_per_s": offered,
        "requests": len(phase.samples),
        "ok": len(ok),
        "errors": len(phase.samples) - len(ok),
        "dropped": phase.dropped,
        "achieved_per_s": round(len(ok) / span, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "service_p50_ms": round(percentile(service, 0.50), 1),
        "service_p99_ms": round(percentile(service, 0.99), 1),
        "wall_s": round(phase.wall_s, 2),
        "cpu_cores": phase.cpu,
    }


def keyed(request: Prepared, key: str) -> Prepared:
    """The same signed webhook, counted under ``key`` by the instrumented instance."""
    return Prepared(request.body, {**request.headers, REQUEST_HEADER: key})


def round_trips(url: str, calls_file: Path, *, samples: int, roster: int) -> dict[str, Any]:
    """Each sample: a new meeting's webhook, then the same signed webhook again (a replay), one
    at a time to the instrumented instance; what each did at the gRPC channels."""
    host, port = _address(url)
    sender = Sender(host, port)
    statuses: dict[str, int] = {}
    try:
        for index, request in enumerate(prepare(3, roster=roster, tag="rtwarm")):
            sender.send(keyed(request, f"warm-{index}"))  # lazily built clients, first channels
        for index, request in enumerate(prepare(samples, roster=roster, tag="rt")):
            for kind in ("new", "replay"):
                key = f"{kind}-{index}"
                statuses[key] = sender.send(keyed(request, key))
    finally:
        sender.close()
    time.sleep(0.3)  # the last lines are written before the answer; a margin all the same
    lines = read_calls(calls_file)
    summary = summarise_requests(lines)
    result: dict[str, Any] = {"samples": samples, "unattributed_calls": unattributed(lines)}
    for kind in ("new", "replay"):
        rows = [summary[f"{kind}-{i}"] for i in range(samples) if f"{kind}-{i}" in summary]
        result[kind] = {
            "statuses": sorted({statuses[f"{kind}-{i}"] for i in range(samples)}),
            "measured": len(rows),
            **{
                name: median([float(getattr(r, name)) for r in rows])
                for name in (
                    "firestore_calls",
                    "firestore_sequential",
                    "tasks_calls",
                    "sequential",
                    "left_open",
                )
            },
            "latency_ms": round(median([r.latency_ms or 0.0 for r in rows]), 2),
            "per_sample": [
                {k: v for k, v in asdict(r).items() if k not in ("methods", "key")} for r in rows
            ],
            "methods_first_sample": rows[0].methods if rows else {},
        }
    return result


def latency_vs_create(
    url: str, client: firestore.Client, *, runs: int, pairs: int, roster: int
) -> dict[str, Any]:
    """Sequential single webhooks (new meetings) alternating with single Firestore creates from
    this process, ``pairs`` of each per run; the ratio of the medians is taken within a run."""
    host, port = _address(url)
    collection = client.collection(BASELINE_COLLECTION)
    for _ in range(3):  # this process's channel, connected before anything is timed
        collection.document().create({"warm": True})
    results: list[dict[str, Any]] = []
    for run in range(runs):
        sender = Sender(host, port)
        webhooks = prepare(pairs, roster=roster, tag=f"lat{run}")
        sender.send(prepare(1, roster=roster, tag=f"latwarm{run}")[0])  # the connection
        webhook_ms: list[float] = []
        create_ms: list[float] = []
        statuses: set[int] = set()
        try:
            for index, webhook in enumerate(webhooks):
                order = ("webhook", "create") if index % 2 == 0 else ("create", "webhook")
                for what in order:
                    started = time.perf_counter()
                    if what == "webhook":
                        statuses.add(sender.send(webhook))
                        webhook_ms.append((time.perf_counter() - started) * 1000)
                    else:
                        collection.document().create(_baseline_document(index, roster))
                        create_ms.append((time.perf_counter() - started) * 1000)
        finally:
            sender.close()
        webhook_median, create_median = median(webhook_ms), median(create_ms)
        results.append(
            {
                "webhook_p50_ms": round(webhook_median, 2),
                "create_p50_ms": round(create_median, 2),
                "ratio": round(webhook_median / max(create_median, 1e-9), 3),
                "webhook_statuses": sorted(statuses),
            }
        )
        print(
            f"latency run {run + 1}: webhook p50 {webhook_median:.1f} ms, one create p50 "
            f"{create_median:.1f} ms, ratio {results[-1]['ratio']:.2f}",
            flush=True,
        )
    return {
        "runs": results,
        "pairs_per_run": pairs,
        "webhook_p50_ms": round(median([r["webhook_p50_ms"] for r in results]), 2),
        "create_p50_ms": round(median([r["create_p50_ms"] for r in results]), 2),
        "ratio": round(median([r["ratio"] for r in results]), 3),
        "ratio_min": min(r["ratio"] for r in results),
        "ratio_max": max(r["ratio"] for r in results),
    }


def _baseline_document(index: int, roster: int) -> dict[str, Any]:
    """About what a webhook's meeting holds: a code, times, a roster."""
    now = datetime.now(UTC)
    return {
        "meeting_code": f"base-{index:06d}",
        "ended_at": now,
        "started_at": now - timedelta(minutes=50),
        "status": "scheduled",
        "expected_participants": [f"student{n:04d}@school.example" for n in range(roster)],
        "created_at": now,
    }


def one_create_ceiling(
    url: str, *, workers: Sequence[int], seconds: float, pids: dict[str, int]
) -> dict[str, Any]:
    """Closed loops on the one-create function: its maximum sustained rate on this machine."""
    body = json.dumps({"type": "one.create"}).encode()
    requests = [Prepared(body, {"Content-Type": "application/json"})] * int(1000 * seconds)
    closed_loop(url, requests[:20], workers=2, seconds=seconds, pids={})  # warm
    phases = []
    for count in workers:
        phases.append(
            summarise(
                closed_loop(url, requests, workers=count, seconds=seconds, pids=pids),
                offered=None,
            )
        )
        print("one-create " + _line(phases[-1]), flush=True)
    best = max(phases, key=lambda p: p["achieved_per_s"])
    return {
        "seconds_per_phase": seconds,
        "phases": phases,
        "max_throughput_per_s": best["achieved_per_s"],
        "max_throughput_workers": best["phase"],
    }


def _function_child(name: str, port: int, argv: Sequence[str]) -> Child:
    return Child(
        name,
        [sys.executable, "-m", *argv, f"--host={LOOPBACK}", f"--port={port}"],
        ready=answers(f"http://{LOOPBACK}:{port}/"),
    )


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    trips, latency = result["round_trips"], result["latency_vs_create"]
    rows = [
        target(
            "new meeting: Firestore round trips in sequence",
            trips["new"]["firestore_sequential"],
            3,
        ),
        target(
            "new meeting: Cloud Tasks calls (the task creation)", trips["new"]["tasks_calls"], 1
        ),
        target(
            "replay: Firestore round trips in sequence", trips["replay"]["firestore_sequential"], 1
        ),
        target(
            "webhook p50 / one Firestore create p50 (interleaved)", latency["ratio"], 5, unit="x"
        ),
    ]
    at_50 = [p for p in result["phases"] if p["offered_per_s"] == 50]
    rows.append(
        target(
            "open loop at 50/s offered: p99 latency",
            at_50[0]["p99_ms"] if at_50 else None,
            100,
            unit=" ms",
            digits=1,
        )
    )
    return rows


def measure(
    *,
    rates: Sequence[float],
    seconds: float,
    workers: Sequence[int],
    roster: int,
    rt_samples: int = 5,
    latency_runs: int = 5,
    latency_pairs: int = 30,
    ceiling_seconds: float = 5.0,
) -> dict[str, Any]:
    load_at_start = load_average()
    calls_dir = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    calls_file = calls_dir / "calls.jsonl"
    stack = Stack({**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET, CALLS_FILE_ENV: str(calls_file)})
    env = stack.plan()
    stack.children = [c for c in stack.children if c.name in ("tasks-emulator", "ingest")]
    counted_port, one_create_port = free_port(), free_port()
    stack.children += [
        _function_child(
            COUNTED_INGEST,
            counted_port,
            ["benchmarks.instrumented", "--target=ingest", "--source=main.py"],
        ),
        _function_child(
            ONE_CREATE,
            one_create_port,
            ["functions_framework", "--target=one_create", "--source=benchmarks/one_create.py"],
        ),
    ]
    started = time.perf_counter()
    stack.start()
    try:
        startup_s = time.perf_counter() - started
        ingest = next(c for c in stack.children if c.name == "ingest")
        tasks = next(c for c in stack.children if c.name == "tasks-emulator")
        assert ingest.process is not None
        assert tasks.process is not None
        assert stack.firestore is not None
        assert stack.firestore.pid is not None
        pids = {
            "ingest function": ingest.process.pid,
            "firestore emulator": stack.firestore.pid,
            "tasks emulator": tasks.process.pid,
            LOAD_GENERATOR: os.getpid(),
        }
        url = env["INGEST_URL"]
        warm = prepare(20, roster=roster, tag="warm")
        closed_loop(url, warm, workers=2, seconds=seconds, pids={})  # imports, first connections
        trips = round_trips(
            f"http://{LOOPBACK}:{counted_port}/", calls_file, samples=rt_samples, roster=roster
        )
        print(
            "round trips per webhook (median of "
            f"{rt_samples}): new {trips['new']['firestore_calls']:g} Firestore calls, "
            f"{trips['new']['firestore_sequential']:g} in sequence, "
            f"{trips['new']['tasks_calls']:g} Cloud Tasks; replay "
            f"{trips['replay']['firestore_calls']:g} Firestore calls, "
            f"{trips['replay']['firestore_sequential']:g} in sequence, "
            f"{trips['replay']['tasks_calls']:g} Cloud Tasks",
            flush=True,
        )
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
        client = firestore.Client(
            project=env["GOOGLE_CLOUD_PROJECT"],
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        latency = latency_vs_create(
            url, client, runs=latency_runs, pairs=latency_pairs, roster=roster
        )
        phases = []
        for rate in rates:
            batch = prepare(int(rate * seconds), roster=roster, tag=f"r{rate:g}")
            phases.append(
                summarise(
                    open_loop(url, batch, rate=rate, seconds=seconds, pids=pids), offered=rate
                )
            )
            print(_line(phases[-1]), flush=True)
        for count in workers:
            batch = prepare(int(400 * seconds), roster=roster, tag=f"w{count}")
            phases.append(
                summarise(
                    closed_loop(url, batch, workers=count, seconds=seconds, pids=pids),
                    offered=None,
                )
            )
            print(_line(phases[-1]), flush=True)
        one_create = next(c for c in stack.children if c.name == ONE_CREATE)
        assert one_create.process is not None
        ceiling = one_create_ceiling(
            f"http://{LOOPBACK}:{one_create_port}/",
            workers=workers,
            seconds=ceiling_seconds,
            pids={**pids, "ingest function": one_create.process.pid},
        )
        death = stack.first_death()
    finally:
        stack.stop()
        shutil.rmtree(calls_dir, ignore_errors=True)
    closed = [p for p in phases if p["offered_per_s"] is None]
    best = max(closed, key=lambda p: p["achieved_per_s"])
    busiest = max(best["cpu_cores"].items(), key=lambda item: item[1])
    total_cpu = round(sum(best["cpu_cores"].values()), 3)
    result = {
        "benchmark": "ingest",
        "roster": roster,
        "seconds_per_phase": seconds,
        "function_threads": (os.cpu_count() or 1) * 4,
        "startup_s": round(startup_s, 2),
        "phases": phases,
        "max_throughput_per_s": best["achieved_per_s"],
        "max_throughput_workers": best["phase"],
        "saturation": {
            "busiest_process": busiest[0],
            "busiest_cores": busiest[1],
            "total_cores_used": total_cpu,
            "machine_cores": os.cpu_count(),
            "cpu_ms_per_request": {
                name: round(1000 * cores / max(best["achieved_per_s"], 1e-9), 1)
                for name, cores in best["cpu_cores"].items()
            },
        },
        "round_trips": trips,
        "latency_vs_create": latency,
        "one_create_ceiling": ceiling,
        "process_died": death,
        "load_average": {"start": load_at_start, "end": load_average(), "cores": os.cpu_count()},
    }
    result["targets"] = _targets(result)
    result["targets_met"] = all(t["met"] for t in result["targets"])
    return result


def _line(p: dict[str, Any]) -> str:
    cpu = ", ".join(f"{name} {cores:.2f}" for name, cores in p["cpu_cores"].items())
    return (
        f"{p['phase']:>18}: {p['achieved_per_s']:7.1f}/s ok {p['ok']} err {p['errors']} "
        f"dropped {p['dropped']}  p50 {p['p50_ms']:.1f} ms  p99 {p['p99_ms']:.1f} ms  "
        f"cores: {cpu}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 50, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--roster", type=int, default=10, help="expected participants per webhook")
    parser.add_argument("--rt-samples", type=int, default=5, help="webhooks counted at gRPC")
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--latency-pairs", type=int, default=30, help="webhooks (and creates)")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0, help="one-create phases")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = measure(
        rates=args.rates,
        seconds=args.seconds,
        workers=args.workers,
        roster=args.roster,
        rt_samples=args.rt_samples,
        latency_runs=args.latency_runs,
        latency_pairs=args.latency_pairs,
        ceiling_seconds=args.ceiling_seconds,
    )
    saturation = result["saturation"]
    print(
        f"max sustained: {result['max_throughput_per_s']}/s ({result['max_throughput_workers']}); "
        f"busiest: {saturation['busiest_process']} at {saturation['busiest_cores']} cores, "
        f"all processes {saturation['total_cores_used']} of {saturation['machine_cores']} cores"
    )
    print(
        f"one-create ceiling: {result['one_create_ceiling']['max_throughput_per_s']}/s "
        f"({result['one_create_ceiling']['max_throughput_workers']})"
    )
    for row in result["targets"]:
        print(
            f"  {'met ' if row['met'] else 'MISS'}  {row['figure']}: {row['value']}{row['unit']} "
            f"(target {row['target']})"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
