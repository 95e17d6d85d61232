"""Benchmark: does a meeting code's history slow its webhooks and polls? (docs/rules.md "Bounded")

    python -m benchmarks.history [--sizes 0 250 2000] [--runs 5] [--webhooks 6] [--polls 4]
                                 [--participants 10] [--budget-s 150] [--json-out PATH]

A personal room is one meeting code used day after day. On 127.0.0.1: the Firestore emulator, the
Cloud Tasks emulator and one functions-framework instance of ``ingest`` (``local.stack``), the
fake Reports API in this process, and a sink that answers every task delivery 204 (the tasks of
meetings past their deadline are due at once; nothing polls them but this benchmark). Before each
timed item the benchmark waits for the deliveries due so far, so none runs during one.

- **The history.** For each size N > 0 a code gets N past meetings, one a day, one hour each,
  never overlapping, all long before the measured ones. They are written straight into Firestore
  in the store's own format: records built by ``declarations.new_meeting_record`` (as a webhook
  builds them), then completed as their chains would have left them, written with
  ``FirestoreStore.create``. Size 0 is a fresh code: a new code for every measured item.
- **Measured items** each get their own time slot (ended 27 h apart, so no Reports query of one
  — which reaches 24 h past its window — sees another's events), the same slot for every size.
- **Webhook latency**: signed ``meeting.ended`` webhooks (new meetings), one at a time over a
  keep-alive connection, alternating between the largest room and a fresh code.
- **Poll time**: a meeting of each code is declared in this process (``accept_meeting_end``,
  untimed), ``--participants`` participants' events go into the fake Reports API, and one collect
  poll runs as a Cloud Tasks delivery runs it (``handle_collect_task``, production wiring of the
  collect function from ``app.build_runtime``), timed; the sizes in a rotating order.

Per run (``--runs``, after an unreported warm-up run): the medians of each side; the ratios
largest room / fresh code, each the median of the ratios of items made back to back (a webhook
pair; a round of polls, one per size, at one slot), so the machine's drifting load divides out;
and the growth exponent of poll time with history — per round of polls the least-squares slope
of log(time) against log(history + 1) over the sizes, and the slope between the two largest
sizes; the median of the rounds. Reported: the median of the runs. Targets: both ratios <= 1.3,
both exponents <= 0.1. Once the measured runs took ``--budget-s`` (and at least 3 were made), no
further run starts: with an unbounded history a run takes minutes, and ``make bench`` has 15.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import string
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_GCE_CHECK", "True")

from benchmarks._common import WEBHOOK_SECRET, load_average, median, target
from benchmarks.ingest import Prepared, Sender, _address
from functions.app import build_runtime
from functions.config import Settings
from functions.declarations import accept_meeting_end, new_meeting_record
from functions.meeting_codes import canonical_meeting_code
from functions.meeting_ids import meeting_id_for
from functions.model import Declared, MeetingRecord
from functions.polling import PollOutcome, handle_collect_task
from functions.ports import CollectTask, Deps
from functions.schedule import Status
from functions.signatures import sign_webhook
from local._net import LOOPBACK
from local.fake_reports import FakeReportsServer
from local.simulate import large_class, rfc3339
from local.stack import Stack

#: Measured items end this far apart: a poll's Reports query reaches 24 h past its window.
SLOT = timedelta(hours=27)
MEETING = timedelta(hours=1)
RATIO_TARGET = 1.3
EXPONENT_TARGET = 0.1
#: The warm-up run (left out of the results): webhooks per side, polls per size.
WARM_WEBHOOKS = 8
WARM_POLLS = 1
#: Runs always made, whatever --budget-s says (a slow history can take minutes per run).
MIN_RUNS = 3


class TaskSink:
    """Answers every task delivery 204: the collect URL of this benchmark's meetings.

    A measured meeting ended long ago, so its first poll's task is due at once: ``expect`` it,
    and ``settle`` before the next timed item, so no delivery (in this process, in the Tasks
    emulator) runs during one. If an expected delivery does not come within ``patience_s``, the
    sink stops waiting for the rest of the run (``gave_up``)."""

    def __init__(self, *, patience_s: float = 5.0) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.arrived:
                    sink.deliveries += 1
                    sink.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.arrived = threading.Condition()
        self.deliveries = 0
        self.expected = 0
        self.gave_up = False
        self._patience_s = patience_s
        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/"

    def expect(self, count: int = 1) -> None:
        with self.arrived:
            self.expected += count

    def settle(self) -> None:
        with self.arrived:
            if self.gave_up:
                return
            if not self.arrived.wait_for(
                lambda: self.deliveries >= self.expected, timeout=self._patience_s
            ):
                self.gave_up = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Codes:
    """Ten-letter meeting codes, like Meet's, none used twice."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._used: set[str] = set()

    def new(self) -> str:
        while True:
            code = canonical_meeting_code(
                "".join(self._rng.choice(string.ascii_lowercase) for _ in range(10))
            )
            if code not in self._used:
                self._used.add(code)
                return code


def roster(participants: int) -> tuple[str, ...]:
    return tuple(f"student{index:05d}@school.example" for index in range(participants))


def past_meeting(deps: Deps, code: str, ended: datetime, participants: int) -> MeetingRecord:
    """A past meeting as its webhook created it and its chain completed it."""
    external_id = f"hist-{code}-{ended:%Y%m%d}"
    declared = Declared(
        meeting_code=code,
        ended_at=ended,
        started_at=ended - MEETING,
        external_id=external_id,
        organizer_email="teacher@school.example",
        expected_participants=roster(participants),
    )
    record = new_meeting_record(
        declared,
        meeting_id=meeting_id_for(external_id=external_id),
        source="webhook",
        deps=deps,
        now=ended + timedelta(minutes=1),
    )
    done = ended + timedelta(days=1)
    return replace(
        record,
        status=Status.COMPLETE,
        next_poll_at=None,
        last_polled_at=done,
        completed_at=done,
        chain_started=True,
        successful_polls=2,
        updated_at=done,
    )


def seed_history(
    deps: Deps, code: str, *, meetings: int, before: datetime, participants: int
) -> float:
    """``meetings`` past meetings of ``code``, one a day, the last ending before ``before``."""
    records = [
        past_meeting(deps, code, before - timedelta(days=day), participants)
        for day in range(meetings)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(deps.store.create, records))
    if not all(created):
        raise RuntimeError(f"seeding {code}: {created.count(False)} meetings existed already")
    return time.perf_counter() - started


def webhook(code: str, ended: datetime, participants: int) -> Prepared:
    body = json.dumps(
        {
            "type": "meeting.ended",
            "meeting_code": code,
            "external_id": f"hw-{uuid.uuid4().hex}",
            "started_at": rfc3339(ended - MEETING),
            "ended_at": rfc3339(ended),
            "organizer_email": "teacher@school.example",
            "expected_participants": list(roster(participants)),
        }
    ).encode()
    headers = sign_webhook(
        secret=WEBHOOK_SECRET,
        webhook_id=f"msg_{uuid.uuid4().hex}",
        timestamp=datetime.now(UTC),
        body=body,
    )
    headers["Content-Type"] = "application/json"
    return Prepared(body, headers)


def timed_webhook(sender: Sender, sink: TaskSink, request: Prepared) -> float:
    sink.settle()
    started = time.perf_counter()
    status = sender.send(request)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 202:
        raise RuntimeError(f"a new meeting's webhook answered {status}")
    sink.expect()
    return elapsed


def timed_poll(
    deps: Deps,
    sink: TaskSink,
    reports: FakeReportsServer,
    code: str,
    ended: datetime,
    participants: int,
) -> float:
    """Declare a meeting of ``code`` (untimed), give Reports its events, time one collect poll."""
    external_id = f"hp-{uuid.uuid4().hex}"
    reports.add_activities(
        large_class(
            participants=participants,
            meeting_code=code,
            conference_id=external_id,
            start=ended - MEETING,
            minutes=60,
        )
    )
    meeting = accept_meeting_end(
        deps,
        Declared(
            meeting_code=code,
            ended_at=ended,
            started_at=ended - MEETING,
            external_id=external_id,
            expected_participants=roster(participants),
        ),
    ).meeting
    sink.expect()  # its first poll, due at once
    sink.settle()
    task = CollectTask(meeting.meeting_id, meeting.chain_seq, "poll")
    started = time.perf_counter()
    outcome = handle_collect_task(deps, task)
    elapsed = (time.perf_counter() - started) * 1000
    if not isinstance(outcome, PollOutcome):
        raise RuntimeError(f"the poll of {meeting.meeting_id} did not run: {outcome}")
    return elapsed


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ys against xs."""
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def exponents(sizes: Sequence[int], times: Sequence[float]) -> dict[str, float]:
    """Growth exponents of ``times`` against history size: the fit over all sizes, and the slope
    between the two largest (log of time against log of history + 1)."""
    xs = [math.log(size + 1) for size in sizes]
    ys = [math.log(max(t, 1e-9)) for t in times]
    return {
        "fit": round(slope(xs, ys), 4),
        "two_largest": round((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 4),
    }


def measure(
    *,
    sizes: Sequence[int],
    runs: int,
    webhooks: int,
    polls: int,
    participants: int,
    budget_s: float = 150.0,
) -> dict[str, Any]:
    load_at_start = load_average()
    sizes = sorted(set(sizes))
    if len(sizes) < 2 or sizes[0] != 0:
        raise SystemExit("--sizes needs 0 (a fresh code) and at least one history size")
    codes = Codes(seed=15)
    sink = TaskSink()
    sink.start()
    reports = FakeReportsServer()
    reports.start()
    stack = Stack({**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET})
    env = stack.plan()
    env["COLLECT_URL"] = sink.url  # every child and this process: deliveries go to the sink
    stack.children = [c for c in stack.children if c.name in ("tasks-emulator", "ingest")]
    started = time.perf_counter()
    stack.start()
    try:
        startup_s = time.perf_counter() - started
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
        settings = Settings.from_env({**env, "REPORTS_API_ENDPOINT": reports.url}, role="collect")
        deps = build_runtime(settings, role="collect").deps
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        slots = WARM_WEBHOOKS + WARM_POLLS + runs * (webhooks + polls) + 1
        history_before = now - SLOT * (slots + 2)
        rooms = {size: codes.new() for size in sizes if size > 0}
        seeding = {
            size: round(
                seed_history(
                    deps, code, meetings=size, before=history_before, participants=participants
                ),
                2,
            )
            for size, code in rooms.items()
        }
        print(f"seeded {sum(rooms)} past meetings in {sum(seeding.values()):.1f} s", flush=True)
        slot_ends = (now - SLOT * index for index in itertools.count(1))
        sender = Sender(*_address(env["INGEST_URL"]))
        run_results = []
        measuring = time.perf_counter()
        # Run 0 is the warm-up, left out: the function's and this process's first requests,
        # and the emulator's JIT (its first few hundred requests are markedly slower).
        for run in range(runs + 1):
            measured = _run(
                run,
                sender=sender,
                sink=sink,
                deps=deps,
                reports=reports,
                rooms=rooms,
                codes=codes,
                sizes=sizes,
                slot_ends=slot_ends,
                webhooks=WARM_WEBHOOKS if run == 0 else webhooks,
                polls=WARM_POLLS if run == 0 else polls,
                participants=participants,
            )
            if run > 0:
                run_results.append(measured)
            spent = time.perf_counter() - measuring
            if len(run_results) >= MIN_RUNS and spent > budget_s and run < runs:
                print(f"stopping after {run} runs: {spent:.0f} s > --budget-s", flush=True)
                break
        sender.close()
        death = stack.first_death()
    finally:
        stack.stop()
        reports.stop()
        sink.stop()
    return _result(
        sizes=sizes,
        runs=run_results,
        webhooks=webhooks,
        polls=polls,
        participants=participants,
        startup_s=startup_s,
        seeding=seeding,
        sink=sink,
        runs_planned=runs,
        load_at_start=load_at_start,
        death=death,
    )


def _run(
    run: int,
    *,
    sender: Sender,
    sink: TaskSink,
    deps: Deps,
    reports: FakeReportsServer,
    rooms: dict[int, str],
    codes: Codes,
    sizes: Sequence[int],
    slot_ends: Iterator[datetime],
    webhooks: int,
    polls: int,
    participants: int,
) -> dict[str, Any]:
    largest = sizes[-1]
    webhook_ms: dict[str, list[float]] = {"history": [], "fresh": []}
    for index in range(webhooks):
        ended = next(slot_ends)
        order = ("history", "fresh") if index % 2 == 0 else ("fresh", "history")
        for side in order:
            code = rooms[largest] if side == "history" else codes.new()
            webhook_ms[side].append(timed_webhook(sender, sink, webhook(code, ended, participants)))
    poll_ms: dict[int, list[float]] = {size: [] for size in sizes}
    for index in range(polls):
        ended = next(slot_ends)
        shift = (run * polls + index) % len(sizes)
        for size in [*sizes[shift:], *sizes[:shift]]:
            code = rooms[size] if size > 0 else codes.new()
            poll_ms[size].append(timed_poll(deps, sink, reports, code, ended, participants))
    webhook_p50 = {side: median(values) for side, values in webhook_ms.items()}
    poll_p50 = [median(poll_ms[size]) for size in sizes]
    # Paired: each ratio and exponent from items made back to back (one webhook pair, one round
    # of polls at one slot), so the machine's load, which drifts, divides out; then the median.
    rounds = [[poll_ms[size][index] for size in sizes] for index in range(polls)]
    round_exponents = [exponents(sizes, times) for times in rounds]
    webhook_pairs = zip(webhook_ms["history"], webhook_ms["fresh"], strict=True)
    result: dict[str, Any] = {
        "webhook_history_p50_ms": round(webhook_p50["history"], 2),
        "webhook_fresh_p50_ms": round(webhook_p50["fresh"], 2),
        "webhook_ratio": round(median([h / max(f, 1e-9) for h, f in webhook_pairs]), 3),
        "poll_p50_ms": {str(size): round(t, 2) for size, t in zip(sizes, poll_p50, strict=True)},
        "poll_ratio": round(median([t[-1] / max(t[0], 1e-9) for t in rounds]), 3),
        "exponent": {
            kind: round(median([e[kind] for e in round_exponents]), 4)
            for kind in ("fit", "two_largest")
        },
    }
    label = f"run {run}" if run else "warm-up"
    print(
        f"{label}: webhook {result['webhook_history_p50_ms']:.1f} ms with {largest} past "
        f"meetings vs {result['webhook_fresh_p50_ms']:.1f} ms fresh (x{result['webhook_ratio']}); "
        "poll "
        + ", ".join(f"{size}: {t:.1f} ms" for size, t in zip(sizes, poll_p50, strict=True))
        + f" (x{result['poll_ratio']}); exponent fit {result['exponent']['fit']}, two largest "
        f"{result['exponent']['two_largest']}",
        flush=True,
    )
    return result


def _result(
    *,
    sizes: Sequence[int],
    runs: list[dict[str, Any]],
    webhooks: int,
    polls: int,
    participants: int,
    startup_s: float,
    seeding: dict[int, float],
    sink: TaskSink,
    runs_planned: int,
    load_at_start: list[float],
    death: str | None,
) -> dict[str, Any]:
    largest = sizes[-1]
    summary: dict[str, Any] = {
        "webhook_history_p50_ms": median([r["webhook_history_p50_ms"] for r in runs]),
        "webhook_fresh_p50_ms": median([r["webhook_fresh_p50_ms"] for r in runs]),
        "webhook_ratio": median([r["webhook_ratio"] for r in runs]),
        "poll_p50_ms": {
            str(size): round(median([r["poll_p50_ms"][str(size)] for r in runs]), 2)
            for size in sizes
        },
        "poll_ratio": median([r["poll_ratio"] for r in runs]),
        "exponent_fit": median([r["exponent"]["fit"] for r in runs]),
        "exponent_two_largest": median([r["exponent"]["two_largest"] for r in runs]),
    }
    targets = [
        target(
            f"webhook latency: {largest:,}-meeting room / fresh code",
            summary["webhook_ratio"],
            RATIO_TARGET,
            unit="x",
            digits=3,
        ),
        target(
            f"poll time: {largest:,}-meeting room / fresh code",
            summary["poll_ratio"],
            RATIO_TARGET,
            unit="x",
            digits=3,
        ),
        target(
            "poll time growth exponent (fit over sizes " + ", ".join(map(str, sizes)) + ")",
            summary["exponent_fit"],
            EXPONENT_TARGET,
            digits=3,
        ),
        target(
            f"poll time growth exponent ({sizes[-2]:,} → {largest:,} past meetings)",
            summary["exponent_two_largest"],
            EXPONENT_TARGET,
            digits=3,
        ),
    ]
    return {
        "benchmark": "history",
        "sizes": list(sizes),
        "runs_count": len(runs),
        "webhooks_per_run": webhooks,
        "polls_per_run": polls,
        "participants": participants,
        "startup_s": round(startup_s, 2),
        "seeding_s": {str(size): seconds for size, seconds in seeding.items()},
        "runs_planned": runs_planned,
        "task_deliveries": sink.deliveries,
        "task_sink_gave_up": sink.gave_up,
        "runs": runs,
        **{key: round(value, 3) for key, value in summary.items() if key != "poll_p50_ms"},
        "poll_p50_ms": summary["poll_p50_ms"],
        "targets": targets,
        "targets_met": all(t["met"] for t in targets),
        "process_died": death,
        "load_average": {"start": load_at_start, "end": load_average(), "cores": os.cpu_count()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 250, 2000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--webhooks", type=int, default=6, help="per side and run")
    parser.add_argument("--polls", type=int, default=4, help="per size and run")
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=150.0,
        help=f"no further run once the measured ones took this long (at least {MIN_RUNS} runs)",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = measure(
        sizes=args.sizes,
        runs=args.runs,
        webhooks=args.webhooks,
        polls=args.polls,
        participants=args.participants,
        budget_s=args.budget_s,
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
