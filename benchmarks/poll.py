"""Benchmark: one poll of a meeting, with the real adapters on the local stand-ins.

    python -m benchmarks.poll [--participants 10 100 1000] [--json-out PATH]

For each size: a meeting is accepted, its events (about 2.5 sessions per participant) are loaded
into the fake Reports API, then polled twice: the first poll finds everything; the second the same
data. Reported per poll: Reports requests (target ⌈events/1000⌉), participant-document writes
(target: participants whose attendance changed — all of them first, 0 on the unchanged re-poll),
other writes (meeting document transactions, revision records) and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_GCE_CHECK", "True")

from functions.adapters.cloud_tasks import CloudTasksQueue, tasks_client
from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.adapters.reports import GoogleReportsSource, reports_service
from functions.config import Settings
from functions.model import MeetingRecord, RevisionRecord
from functions.schedule import Timing
from functions.service import Declared, Deps, accept_meeting_end, poll_meeting
from local.fake_reports import FakeReportsServer
from local.firestore_emulator import FirestoreEmulator
from local.simulate import large_class
from local.tasks_emulator import TasksEmulator

PROJECT = "bench-attendance"


class CountingStore(FirestoreStore):
    """The real Firestore store, counting the writes each poll makes."""

    meeting_writes = 0
    revision_writes = 0

    def update(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> MeetingRecord | None:
        wrote = False

        def counted(current: MeetingRecord) -> MeetingRecord | None:
            nonlocal wrote
            updated = change(current)
            wrote = updated is not None
            return updated

        result = super().update(meeting_id, counted)
        self.meeting_writes += int(wrote)
        return result

    def write_revision(self, meeting_id: str, revision: RevisionRecord) -> None:
        self.revision_writes += 1
        super().write_revision(meeting_id, revision)


@dataclass
class PollMeasure:
    participants: int
    poll: str
    events: int
    reports_requests: int
    reports_requests_target: int
    participant_writes: int
    participant_writes_target: int
    meeting_writes: int
    revision_writes: int
    wall_s: float


def measure(sizes: Sequence[int]) -> list[PollMeasure]:
    results: list[PollMeasure] = []
    with FirestoreEmulator(project=PROJECT) as firestore, TasksEmulator() as tasks:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host
        reports = FakeReportsServer()
        reports.start()
        try:
            settings = Settings.from_env(
                {
                    "GOOGLE_CLOUD_PROJECT": PROJECT,
                    "TASKS_LOCATION": "local",
                    "TASKS_QUEUE": "bench",
                    "COLLECT_URL": "http://127.0.0.1:9/",
                    "TASKS_SERVICE_ACCOUNT": "tasks@bench.iam.gserviceaccount.com",
                    "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "FIRESTORE_EMULATOR_HOST": firestore.host,
                    "CLOUD_TASKS_EMULATOR_HOST": tasks.address,
                    "REPORTS_API_ENDPOINT": reports.url,
                }
            )
            tasks.create_queue(settings.queue_path)
            tasks_client(settings)  # fail early if the emulator is unreachable
            for size in sizes:
                results += _measure_size(size, settings, reports)
        finally:
            reports.stop()
    return results


def _measure_size(size: int, settings: Settings, reports: FakeReportsServer) -> list[PollMeasure]:
    store = CountingStore(firestore_client(settings))
    deps = Deps(
        store=store,
        queue=CloudTasksQueue.from_settings(settings),
        reports=GoogleReportsSource(reports_service(settings)),
        clock=lambda: datetime.now(UTC),
        timing=Timing(first_poll_delay_s=3600),  # no chain poll fires during the benchmark
    )
    end = datetime.now(UTC) - timedelta(minutes=5)
    code = f"bch-{size:04d}-abc"[:12]
    activities = large_class(
        participants=size,
        meeting_code=code,
        conference_id=f"bench-{size}",
        start=end - timedelta(minutes=60),
        minutes=60,
    )
    reports.add_activities(activities)
    meeting = accept_meeting_end(
        deps, Declared(meeting_code=code, ended_at=end, external_id=f"bench-{size}")
    ).meeting
    measures = []
    for label, expected_writes in (("first", size), ("unchanged re-poll", 0)):
        before_requests = len(reports.requests())
        store.meeting_writes = store.revision_writes = 0
        started = time.perf_counter()
        outcome = poll_meeting(deps, meeting.meeting_id, reason="manual")
        wall = time.perf_counter() - started
        measures.append(
            PollMeasure(
                participants=size,
                poll=label,
                events=len(activities),
                reports_requests=len(reports.requests()) - before_requests,
                reports_requests_target=math.ceil(len(activities) / 1000),
                participant_writes=outcome.participant_writes,
                participant_writes_target=expected_writes,
                meeting_writes=store.meeting_writes,
                revision_writes=store.revision_writes,
                wall_s=round(wall, 3),
            )
        )
    return measures


def render(results: Sequence[PollMeasure]) -> str:
    header = (
        "| participants | poll | events | Reports requests (target) | participant writes "
        "(target) | meeting writes | revision writes | wall s |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = [
        f"| {m.participants} | {m.poll} | {m.events} | {m.reports_requests} "
        f"({m.reports_requests_target}) | {m.participant_writes} ({m.participant_writes_target}) "
        f"| {m.meeting_writes} | {m.revision_writes} | {m.wall_s:.3f} |"
        for m in results
    ]
    return header + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    results = measure(args.participants)
    print(render(results))
    met = all(
        m.reports_requests == m.reports_requests_target
        and m.participant_writes == m.participant_writes_target
        for m in results
    )
    print("targets met" if met else "targets MISSED")
    if args.json_out:
        payload: dict[str, Any] = {"poll": [asdict(m) for m in results], "targets_met": met}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
