"""The backfill function on the local stack, called as Cloud Scheduler calls it (OIDC over HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from functions.adapters.cloud_tasks import tasks_client
from functions.adapters.firestore_store import FirestoreStore
from functions.config import Settings
from functions.model import MeetingRecord
from functions.schedule import Status
from local.client import StackClient
from local.simulate import Stay, activities_for, call_ended, rfc3339
from tests.e2e.conftest import wait_for
from tests.firestore_reads import ALL_TIME

pytestmark = pytest.mark.timeout(300)
M = timedelta(minutes=1)


def code_for(index: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"d{letters[index % 26]}{letters[index // 26]}-bcde-fgh"


def run_backfill(client: StackClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start a run as the scheduler does; wait until it and every task it caused have run."""
    name = client.trigger_backfill(body or {})
    dispatch: dict[str, Any] = wait_for(
        lambda: next(
            (d for d in client.dispatches() if d["task"] == name and d["status"] is not None),
            None,
        ),
        timeout_s=120,
        what="backfill dispatched",
    )
    if dispatch["status"] == 200:
        wait_for(lambda: queue_empty(client), timeout_s=180, what="slices and polls done")
    return dispatch


def queue_empty(client: StackClient) -> bool:
    settings = Settings.from_env(client.env)
    return not list(tasks_client(settings).list_tasks(parent=settings.queue_path))


def all_settled(store: FirestoreStore, code_count: int) -> list[MeetingRecord] | None:
    """The meetings of the first ``code_count`` codes once each code has one and all are final."""
    meetings = [m for i in range(code_count) for m in store.with_code(code_for(i), ended=ALL_TIME)]
    busy = [m for m in meetings if m.status not in (Status.COMPLETE, Status.MERGED)]
    return None if busy or len(meetings) < code_count else meetings


def test_a_day_of_fifty_conferences_with_ten_unannounced(
    client: StackClient, store: FirestoreStore
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    classes = []
    for index in range(50):
        start = now - timedelta(hours=12) + index * 12 * M
        end = start + 40 * M
        client.add_activities(
            activities_for(
                [
                    Stay(f"t{index}@school.example", start, end),
                    Stay("kid@school.example", start, end),
                ],
                meeting_code=code_for(index),
                conference_id=f"conference-{index}",
            )
        )
        classes.append((code_for(index), start, end))
    for code, start, end in classes[:40]:
        answer = client.meeting_ended(
            {
                "type": "meeting.ended",
                "meeting_code": code,
                "started_at": rfc3339(start),
                "ended_at": rfc3339(end),
            }
        )
        assert answer.status == 202, answer
    announced = wait_for(lambda: all_settled(store, 40), timeout_s=120, what="announced complete")
    before = {m.meeting_id: (m.revision, m.attempts, m.status) for m in announced}

    assert run_backfill(client)["status"] == 200
    meetings = wait_for(lambda: all_settled(store, 50), timeout_s=120, what="all complete")
    created = [m for m in meetings if m.source == "backfill"]
    assert len(created) == 10
    assert {m.meeting_code for m in created} == {c[0] for c in classes[40:]}
    assert {m.participant_count for m in created} == {2}
    after = {m.meeting_id: (m.revision, m.attempts, m.status) for m in meetings}
    assert {k: after[k] for k in before} == before  # the announced ones are untouched

    # A second run (and two at once) change nothing more.
    first, second = client.trigger_backfill(), client.trigger_backfill()
    wait_for(
        lambda: {d["task"] for d in client.dispatches() if d["status"] == 200} >= {first, second},
        timeout_s=120,
        what="both runs done",
    )
    wait_for(lambda: queue_empty(client), timeout_s=180, what="their slices done")
    again = {m.meeting_id: (m.revision, m.attempts, m.status) for m in all_settled(store, 50) or []}
    assert again == after


def test_a_webhook_after_the_backfill_absorbs_its_meeting_and_bills_once(
    client: StackClient, store: FirestoreStore
) -> None:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    start = end - 45 * M
    code = "mer-gedd-abc"
    client.add_activities(
        activities_for(
            [Stay("t@school.example", start, end), Stay("kid@school.example", start + M, end)],
            meeting_code=code,
            conference_id="conference-merge",
        )
    )
    assert run_backfill(client)["status"] == 200
    (backfilled,) = wait_for(
        lambda: [m for m in store.with_code(code, ended=ALL_TIME) if m.status is Status.COMPLETE],
        what="backfill meeting complete",
    )
    answer = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": code,
            "started_at": rfc3339(start),
            "ended_at": rfc3339(end),
            "external_id": "late-webhook",
        }
    )
    assert answer.status == 202

    def merged_and_collected() -> dict[str, MeetingRecord] | None:
        meetings = {m.meeting_id: m for m in store.with_code(code, ended=ALL_TIME)}
        webhook = meetings.get(answer.body["meeting_id"])
        old = meetings[backfilled.meeting_id]
        if old.status is Status.MERGED and webhook and webhook.status is Status.COMPLETE:
            return meetings
        return None

    meetings = wait_for(merged_and_collected, what="merged and collected")
    old = meetings[backfilled.meeting_id]
    assert old.merged_into == answer.body["meeting_id"]
    assert {p["meeting_status"] for p in store.participants(old.meeting_id)} == {"merged"}
    billable = [m for m in meetings.values() if m.status is Status.COMPLETE]
    assert [m.participant_count for m in billable] == [2]


def test_late_event_after_completion_is_repolled_and_the_revision_grows(
    client: StackClient, store: FirestoreStore, revisions_of: Callable[[str], list[dict[str, Any]]]
) -> None:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    start = end - 45 * M
    code = "lat-eevt-abc"
    client.add_activities(
        activities_for([Stay("t@school.example", start, end)], meeting_code=code, conference_id="c")
    )
    answer = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": code,
            "started_at": rfc3339(start),
            "ended_at": rfc3339(end),
        }
    )
    meeting_id = answer.body["meeting_id"]
    wait_for(
        lambda: (m := store.get(meeting_id)) is not None and m.status is Status.COMPLETE,
        what="complete",
    )
    client.add_activities(
        [
            call_ended(
                meeting_code=code,
                conference_id="c",
                leave=end,
                duration_s=1200,
                identifier="late@school.example",
            )
        ]
    )
    assert run_backfill(client)["status"] == 200
    meeting = wait_for(
        lambda: (m := store.get(meeting_id)) is not None and m.revision == 2 and m,
        what="revision 2",
    )
    assert meeting.participant_count == 2
    assert revisions_of(meeting_id)[-1]["reason"] == "backfill"


def test_a_broken_chain_is_reenqueued(client: StackClient, store: FirestoreStore) -> None:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    code = "brk-chai-nxx"
    answer = client.meeting_ended(
        {"type": "meeting.ended", "meeting_code": code, "ended_at": rfc3339(end)}
    )
    meeting_id = answer.body["meeting_id"]
    wait_for(lambda: (m := store.get(meeting_id)) and m.status is Status.NO_DATA, what="no_data")

    def break_chain(current: MeetingRecord) -> MeetingRecord:
        return replace(
            current, status=Status.SCHEDULED, next_poll_at=datetime.now(UTC) - timedelta(hours=2)
        )

    store.update(meeting_id, break_chain)
    assert run_backfill(client)["status"] == 200
    restarted = wait_for(
        lambda: (m := store.get(meeting_id)) and m.status is Status.NO_DATA and m,
        what="polled again",
    )
    assert restarted.attempts == 2


def test_a_range_older_than_180_days_is_refused(client: StackClient) -> None:
    old = rfc3339(datetime.now(UTC) - timedelta(days=200))
    assert run_backfill(client, {"since": old})["status"] == 400


def test_backfill_refuses_callers_without_the_schedulers_token(client: StackClient) -> None:
    answer = requests.post(client.env["BACKFILL_URL"], json={}, timeout=30)
    assert answer.status_code == 401
