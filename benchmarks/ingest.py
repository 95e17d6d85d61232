"""Benchmark: signed ``meeting.ended`` webhooks on ONE functions-framework instance of ``ingest``.

    python -m benchmarks.ingest [--rates 20 50 200] [--seconds 10] [--workers 4 16 64]
                                [--roster 10] [--json-out PATH]

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
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("NO_GCE_CHECK", "True")

from benchmarks._common import WEBHOOK_SECRET, cpu_seconds, percentile, tree_cpu_seconds
from functions.signatures import sign_webhook
from local.simulate import rfc3339
from local.stack import Stack

OPEN_LOOP_THREADS = 64
LOAD_GENERATOR = "load generator"


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


def measure(
    *, rates: Sequence[float], seconds: float, workers: Sequence[int], roster: int
) -> dict[str, Any]:
    stack = Stack({**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET})
    env = stack.plan()
    stack.children = [c for c in stack.children if c.name in ("tasks-emulator", "ingest")]
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
        death = stack.first_death()
    finally:
        stack.stop()
    closed = [p for p in phases if p["offered_per_s"] is None]
    best = max(closed, key=lambda p: p["achieved_per_s"])
    busiest = max(best["cpu_cores"].items(), key=lambda item: item[1])
    total_cpu = round(sum(best["cpu_cores"].values()), 3)
    return {
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
        "process_died": death,
    }


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
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = measure(
        rates=args.rates, seconds=args.seconds, workers=args.workers, roster=args.roster
    )
    saturation = result["saturation"]
    print(
        f"max sustained: {result['max_throughput_per_s']}/s ({result['max_throughput_workers']}); "
        f"busiest: {saturation['busiest_process']} at {saturation['busiest_cores']} cores, "
        f"all processes {saturation['total_cores_used']} of {saturation['machine_cores']} cores"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
