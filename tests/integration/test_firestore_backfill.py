"""Backfill discovery against Google's Firestore emulator: more codes than one read takes, so
the next group's codes are read (on a thread of the adapter) while the group before is
reconciled; one run, a second run, and two runs at once."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

os.environ.setdefault("NO_GCE_CHECK", "True")

from functions.adapters.firestore_store import FirestoreStore
from functions.backfill import CODES_PER_READ, BackfillReport, run_backfill
from functions.model import meeting_id_for
from functions.ports import Deps
from functions.schedule import Timing
from local.simulate import Stay, activities_for
from tests.fakes import ManualClock, MemoryQueue, ScriptedReports
from tests.firestore_reads import ALL_TIME
from tests.integration.test_firestore_store import client, store

__all__ = ["client", "store"]  # the fixtures, shared with the store's other tests

NOW = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)
#: Three groups of codes: the second and the third are each read ahead.
CLASSES = 2 * CODES_PER_READ + 7


def code_for(index: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"fs{letters[index % 26]}-{letters[index // 26]}xyz-abc"


def day_of_classes() -> ScriptedReports:
    reports = ScriptedReports()
    for index in range(CLASSES):
        start = NOW - timedelta(hours=20) + index * 7 * M
        reports.activities += activities_for(
            [
                Stay(f"t{index}@school.example", start, start + 45 * M),
                Stay("kid@school.example", start + 5 * M, start + 40 * M),
            ],
            meeting_code=code_for(index),
            conference_id=f"conference-{index}",
        )
    return reports


def deps_for(store: FirestoreStore, reports: ScriptedReports) -> Deps:
    return Deps(
        store=store, queue=MemoryQueue(), reports=reports, clock=ManualClock(NOW), timing=Timing()
    )


def backfill(deps: Deps) -> BackfillReport:
    return run_backfill(deps, since=NOW - timedelta(hours=48), until=NOW)


def meetings_by_code(store: FirestoreStore) -> dict[str, list[str]]:
    return {
        code_for(i): sorted(m.meeting_id for m in store.with_code(code_for(i), ended=ALL_TIME))
        for i in range(CLASSES)
    }


def expected_meetings() -> dict[str, list[str]]:
    return {
        code_for(i): [meeting_id_for(meeting_code=code_for(i), conference_id=f"conference-{i}")]
        for i in range(CLASSES)
    }


def test_discovery_over_three_groups_of_codes_finds_each_conference_once(
    store: FirestoreStore,
) -> None:
    reports = day_of_classes()

    first = backfill(deps_for(store, reports))

    assert len(first.meetings_created) == CLASSES
    assert meetings_by_code(store) == expected_meetings()
    stored = {m.meeting_id: m for m in store.ended_between(NOW - timedelta(days=3), NOW)}
    assert all(m.participant_count == 0 and m.source == "backfill" for m in stored.values())
    # A second run finds them all and changes nothing.
    again = backfill(deps_for(store, reports))
    assert again.meetings_created == []
    assert {m.meeting_id: m for m in store.ended_between(NOW - timedelta(days=3), NOW)} == stored


def test_two_discoveries_at_once_make_one_meeting_per_conference(store: FirestoreStore) -> None:
    """Each run reads ahead what the other is creating: whatever interleaving the threads take,
    every conference ends with one meeting, created by one of the runs."""
    reports = day_of_classes()
    reports_of_runs: list[BackfillReport] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            reports_of_runs.append(backfill(deps_for(store, reports)))
        except BaseException as failure:  # reported below, in the test's own thread
            failures.append(failure)

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)

    assert failures == []
    assert meetings_by_code(store) == expected_meetings()
    created = [m for report in reports_of_runs for m in report.meetings_created]
    expected = [meeting_id for ids in expected_meetings().values() for meeting_id in ids]
    assert sorted(created) == sorted(expected)  # each by one of the runs
