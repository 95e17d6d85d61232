"""The pipeline through HTTP on the local stack: signed webhook → task → collect → Firestore."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from functions.adapters.firestore_store import FirestoreStore
from functions.config import Settings
from functions.declarations import new_meeting_record
from functions.model import Declared
from functions.ports import Deps
from functions.schedule import Timing
from local.client import Answer, StackClient
from local.simulate import Stay, activities_for, call_ended, large_class, rfc3339
from local.stack import Stack
from tests.e2e.conftest import wait_for
from tests.fakes import MemoryQueue, ScriptedReports
from tests.firestore_reads import ALL_TIME

CODE = "wkt-imxi-vuk"
TEACHER = "teacher@school.example"
STUDENT = "student@school.example"
M = timedelta(minutes=1)

pytestmark = pytest.mark.timeout(180)


def class_times(ended_ago: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
    end = datetime.now(UTC) - ended_ago
    end = end.replace(microsecond=end.microsecond // 1000 * 1000)
    return end - 45 * M, end


def payload(start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "meeting.ended",
        "meeting_code": CODE,
        "started_at": rfc3339(start),
        "ended_at": rfc3339(end),
    }
    body.update(extra)
    return body


def simple_class(client: StackClient, start: datetime, end: datetime, **kwargs: Any) -> None:
    client.add_activities(
        activities_for(
            [Stay(TEACHER, start - 2 * M, end), Stay(STUDENT, start, end - 5 * M)],
            meeting_code=CODE,
            conference_id="conference-1",
        ),
        **kwargs,
    )


def meeting_status(client: StackClient, meeting_id: str) -> dict[str, Any]:
    answer = client.meeting(meeting_id)
    assert answer.status == 200, answer
    result: dict[str, Any] = answer.body
    return result


def until_status(
    client: StackClient, meeting_id: str, *statuses: str, timeout_s: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view = meeting_status(client, meeting_id)
        return view if view["meeting"]["status"] in statuses else None

    result: dict[str, Any] = wait_for(check, timeout_s=timeout_s, what=f"status in {statuses}")
    return result


def accepted(answer: Answer) -> str:
    assert answer.status in (200, 202), answer
    meeting_id: str = answer.body["meeting_id"]
    return meeting_id


def test_happy_path_reaches_complete_with_exact_attendance(client: StackClient) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER, STUDENT]))
    assert answer.status == 202
    assert answer.body["status"] == "scheduled"
    assert answer.body["first_poll_at"] == rfc3339(end + timedelta(seconds=1)) or (
        answer.body["first_poll_at"] > rfc3339(end)
    )
    meeting_id = accepted(answer)
    estimated = meeting_status(client, meeting_id)
    assert {p["estimated"] for p in estimated["participants"]} == {True}

    view = until_status(client, meeting_id, "complete")
    meeting = view["meeting"]
    assert meeting["participant_count"] == 2
    assert meeting["total_attended_seconds"] == 47 * 60 + 40 * 60
    assert meeting["attendance_source"] == "reports"
    assert meeting["meeting_code"] == CODE
    by_key = {p["participant_key"]: p for p in view["participants"]}
    assert by_key[TEACHER]["attended_seconds"] == 47 * 60
    assert by_key[STUDENT]["attended_seconds"] == 40 * 60
    assert {p["meeting_status"] for p in view["participants"]} == {"complete"}
    assert {p["estimated"] for p in view["participants"]} == {False}
    requests_seen = client.reports_requests()
    assert requests_seen[0]["query"]["filters"] == "meeting_code==WKTIMXIVUK"
    assert requests_seen[0]["query"]["eventName"] == "call_ended"
    # docs/rules.md "Bounded": the query ends at now (within a day of the window's end).
    first_end = datetime.fromisoformat(requests_seen[0]["query"]["endTime"])
    assert first_end <= datetime.now(UTC)
    assert first_end > end
    assert "fields" in requests_seen[0]["query"]


def test_late_events_move_collecting_to_complete_with_an_audit_trail(
    client: StackClient, revisions_of: Callable[[str], list[dict[str, Any]]]
) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    late = call_ended(
        meeting_code=CODE,
        conference_id="conference-1",
        leave=end,
        duration_s=30 * 60,
        identifier="late@school.example",
    )
    client.add_activities([late], visible_after_s=4)
    meeting_id = accepted(
        client.meeting_ended(
            payload(start, end, expected_participants=[TEACHER, "late@school.example"])
        )
    )
    first = until_status(client, meeting_id, "collecting")
    assert first["meeting"]["missing_participants"] == ["late@school.example"]
    view = until_status(client, meeting_id, "complete")
    assert view["meeting"]["revision"] == 2
    assert view["meeting"]["missing_participants"] == []
    revisions = revisions_of(meeting_id)
    assert [r["revision"] for r in revisions] == [1, 2]
    assert revisions[1]["changes"] == [
        {"participant_key": "late@school.example", "before": 45 * 60, "after": 30 * 60}
    ]
    assert revisions[1]["reason"] == "poll"


def test_no_data_until_the_deadline_ends_no_data(client: StackClient) -> None:
    start, end = class_times()
    meeting_id = accepted(client.meeting_ended(payload(start, end)))
    view = until_status(client, meeting_id, "no_data", timeout_s=90)
    assert view["meeting"]["attempts"] >= 2
    assert view["meeting"]["next_poll_at"] is None


def test_permission_errors_are_recorded_then_fixed_delegation_completes(
    client: StackClient,
) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    client.add_fault("not_authorized", count=2)
    meeting_id = accepted(client.meeting_ended(payload(start, end)))

    def recorded_error() -> dict[str, Any] | None:
        error = meeting_status(client, meeting_id)["meeting"]["last_error"]
        return error if error else None

    error = wait_for(recorded_error, what="last_error recorded")
    assert error["code"] == "permission"
    assert "Admin SDK API" in error["message"]
    assert "Reports privilege" in error["message"]
    view = until_status(client, meeting_id, "complete")
    assert view["meeting"]["last_error"] is None
    assert view["meeting"]["participant_count"] == 2


def test_rate_limit_403_and_quota_503_are_retried_within_the_poll(client: StackClient) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    client.add_fault("rate_limit_403", count=1)
    client.add_fault("quota", count=1, retry_after_s=1)
    meeting_id = accepted(client.meeting_ended(payload(start, end)))
    view = until_status(client, meeting_id, "complete")
    assert view["meeting"]["last_error"] is None
    statuses = [r["status"] for r in client.reports_requests()]
    assert statuses[:3] == [403, 503, 200]
    # Every poll succeeded: the first one retried inside itself instead of failing.
    assert statuses.count(200) == view["meeting"]["attempts"]


def test_every_task_delivered_twice_ends_in_the_same_state_with_one_chain(
    client: StackClient, store: FirestoreStore, revisions_of: Callable[[str], list[dict[str, Any]]]
) -> None:
    client.tasks_config(deliver_twice=True)
    start, end = class_times()
    simple_class(client, start, end)
    meeting_id = accepted(client.meeting_ended(payload(start, end, external_id="twice")))
    view = until_status(client, meeting_id, "complete")
    assert view["meeting"]["revision"] == 1
    assert [r["revision"] for r in revisions_of(meeting_id)] == [1]
    dispatched = client.dispatches()
    names = {d["task"] for d in dispatched}
    assert len(dispatched) == 2 * len(names)  # each link delivered twice
    assert len(names) == view["meeting"]["attempts"]  # and the chain never forked
    attended = {p["participant_key"]: p["attended_seconds"] for p in view["participants"]}
    assert attended == {TEACHER: 47 * 60, STUDENT: 40 * 60}


def test_duplicates_replays_and_races_make_one_meeting(
    client: StackClient, store: FirestoreStore
) -> None:
    start, end = class_times()
    body = payload(start, end, external_id="race-1")
    first = client.meeting_ended(body, webhook_id="msg_first")
    assert first.status == 202
    again = client.meeting_ended(body)
    assert (again.status, again.body["meeting_id"]) == (200, first.body["meeting_id"])
    replay = client.meeting_ended(body, webhook_id="msg_first")
    assert (replay.status, replay.body["meeting_id"]) == (200, first.body["meeting_id"])

    racing = payload(start, end, external_id="race-2")
    answers: list[Answer] = []

    def send() -> None:
        answers.append(client.meeting_ended(racing))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status for a in answers) == [200, 200, 200, 200, 202]
    assert len({a.body["meeting_id"] for a in answers}) == 1
    assert len(store.with_code(CODE, ended=ALL_TIME)) == 2
    # One first link per meeting in the queue, never two.
    first_links = wait_for(
        lambda: [d for d in client.dispatches() if d["attempt"] == 1], what="first polls"
    )
    assert len({d["task"] for d in first_links}) <= 2


def test_a_chain_that_never_started_is_started_by_the_duplicate_webhook(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    settings = Settings.from_env(stack.env)
    crashed = new_meeting_record(
        Declared(meeting_code=CODE, ended_at=end, started_at=start, external_id="crash"),
        meeting_id="x-" + "0" * 24,
        source="webhook",
        deps=Deps(
            store=store,
            queue=MemoryQueue(),
            reports=ScriptedReports(),
            clock=lambda: datetime.now(UTC),
            timing=Timing(first_poll_delay_s=settings.first_poll_delay_s),
        ),
        now=datetime.now(UTC),
    )
    # The document as a crashed ingest left it: written, with no task behind it.
    from functions.model import meeting_id_for

    crashed = replace(crashed, meeting_id=meeting_id_for(external_id="crash"))
    assert store.create(crashed)
    assert not store.get(crashed.meeting_id).chain_started  # type: ignore[union-attr]
    answer = client.meeting_ended(payload(start, end, external_id="crash"))
    assert (answer.status, answer.body["meeting_id"]) == (200, crashed.meeting_id)
    view = until_status(client, crashed.meeting_id, "complete")
    assert view["meeting"]["participant_count"] == 2


def test_back_to_back_classes_in_one_room_never_share_a_second(client: StackClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    first_start, first_end = now - 100 * M, now - 55 * M
    second_start, second_end = now - 50 * M, now
    client.add_activities(
        activities_for(
            [
                Stay("tutor@school.example", first_start - 3 * M, second_end),
                Stay("first@school.example", first_start, first_end),
                Stay("second@school.example", second_start, second_end),
            ],
            meeting_code=CODE,
            conference_id="room",
        )
    )
    first = accepted(client.meeting_ended(payload(first_start, first_end, external_id="a")))
    second = accepted(client.meeting_ended(payload(second_start, second_end, external_id="b")))

    # The first class ended long ago: it may complete alone before the second is announced; the
    # second's arrival re-polls it at once and its revision grows.
    def settled(meeting_id: str, keys: set[str]) -> dict[str, Any] | None:
        view = meeting_status(client, meeting_id)
        got = {p["participant_key"] for p in view["participants"]}
        return view if view["meeting"]["status"] == "complete" and got == keys else None

    one = wait_for(lambda: settled(first, {"tutor@school.example", "first@school.example"}))
    two = wait_for(lambda: settled(second, {"tutor@school.example", "second@school.example"}))
    in_one = {p["participant_key"]: p for p in one["participants"]}
    in_two = {p["participant_key"]: p for p in two["participants"]}
    boundary = rfc3339(first_end + (second_start - first_end) / 2)
    assert in_one["tutor@school.example"]["last_leave"] == boundary
    assert in_two["tutor@school.example"]["first_join"] == boundary
    tutor_total = (
        in_one["tutor@school.example"]["attended_seconds"]
        + in_two["tutor@school.example"]["attended_seconds"]
    )
    assert tutor_total == (second_end - first_start + 3 * M).total_seconds()
    # Each session still shows its real times.
    assert in_one["tutor@school.example"]["sessions"][0]["leave_time"] == rfc3339(second_end)


def test_a_meeting_created_after_its_deadline_is_polled_once_and_final(
    client: StackClient,
) -> None:
    start, end = class_times(ended_ago=timedelta(minutes=5))
    simple_class(client, start, end)
    meeting_id = accepted(client.meeting_ended(payload(start, end)))
    view = until_status(client, meeting_id, "complete")
    assert view["meeting"]["attempts"] == 1
    assert view["meeting"]["next_poll_at"] is None


@pytest.mark.parametrize(
    ("name", "headers_or_body"),
    [
        ("unsigned", "unsigned"),
        ("stale", "stale"),
        ("wrong secret", "wrong-secret"),
        ("oversized", "oversized"),
        ("malformed JSON", "malformed"),
        ("not JSON", "text"),
        ("hostile nesting", "nesting"),
        ("bad code", "bad-code"),
        ("naive time", "naive"),
        ("future time", "future"),
        ("1,001 expected", "too-many"),
    ],
)
def test_bad_input_gets_a_4xx_and_writes_nothing(
    client: StackClient, store: FirestoreStore, name: str, headers_or_body: str
) -> None:
    start, end = class_times()
    good = payload(start, end)
    url = client.env["INGEST_URL"]
    status: int
    if headers_or_body == "unsigned":
        status = requests.post(url, json=good, timeout=30).status_code
    elif headers_or_body == "stale":
        stale = datetime.now(UTC) - timedelta(minutes=6)
        status = client.signed("POST", "/", json.dumps(good).encode(), timestamp=stale).status
    elif headers_or_body == "wrong-secret":
        other = StackClient(
            {**client.env, "WEBHOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"}
        )
        status = other.meeting_ended(good).status
    else:
        bodies = {
            "oversized": json.dumps({**good, "pad": "x" * 70_000}).encode(),
            "malformed": b'{"type": "meeting.ended", ',
            "nesting": b"[" * 100_000 + b"]" * 100_000,
            "bad-code": json.dumps({**good, "meeting_code": "abc/../x"}).encode(),
            "naive": json.dumps({**good, "ended_at": "2026-01-15T10:45:00"}).encode(),
            "future": json.dumps(
                {**good, "ended_at": rfc3339(datetime.now(UTC) + timedelta(hours=1))}
            ).encode(),
            "too-many": json.dumps(
                {**good, "expected_participants": [f"s{i}@x.example" for i in range(1001)]}
            ).encode(),
        }
        if headers_or_body == "text":
            status = client.signed(
                "POST", "/", b"hello", extra_headers={"Content-Type": "text/plain"}
            ).status
        else:
            status = client.signed("POST", "/", bodies[headers_or_body]).status
    assert 400 <= status < 500, name
    assert store.with_code(CODE, ended=ALL_TIME) == []
    assert client.dispatches() == []


def test_routes_and_unknown_meetings(client: StackClient) -> None:
    assert client.meeting("x-unknown").status == 404
    assert client.sync("x-unknown").status == 404
    assert client.call_api("DELETE", "/meetings/x-1").status == 405
    assert client.signed("GET", "/meetings/x-1").status == 404  # ingest serves POST / only
    assert client.call_api("GET", "/meetings/x-1", email=None).status == 401
    assert client.call_api("GET", "/meetings/x-1", email="someone@school.example").status == 403
    assert client.signed("GET", "/nowhere").status == 404
    collect_url = client.env["COLLECT_URL"]
    unauthenticated = requests.post(
        collect_url, json={"meeting_id": "x-1", "attempt": 1}, timeout=30
    )
    assert unauthenticated.status_code == 401


def test_manual_sync_answers_in_the_seed_shape(client: StackClient) -> None:
    start, end = class_times()
    simple_class(client, start, end)
    meeting_id = accepted(client.meeting_ended(payload(start, end, external_id="sync")))
    answer = client.sync(meeting_id)
    assert answer.status == 200, answer
    body = answer.body
    assert body["status"] == "success"
    assert body["message"] == "Synced 2 participants"
    assert body["created"] + body["updated"] <= 2
    assert len(body["participants"]) == 2
    assert set(body["participants"][0]) >= {
        "email",
        "participant_key",
        "display_name",
        "join_time",
        "leave_time",
        "duration_seconds",
        "device_type",
        "ip_address",
        "location_country",
        "location_region",
    }


def test_a_thousand_participants_across_three_pages_complete(client: StackClient) -> None:
    start, end = class_times()
    activities = large_class(
        participants=1000, meeting_code=CODE, conference_id="big", start=start, minutes=45
    )
    assert 2000 < len(activities) <= 3000
    client.add_activities(activities)
    meeting_id = accepted(client.meeting_ended(payload(start, end, external_id="big")))
    view = until_status(client, meeting_id, "complete", timeout_s=120)
    assert view["meeting"]["participant_count"] == 1000
    assert len(view["participants"]) == 1000
    first_poll = [r for r in client.reports_requests() if r["status"] == 200][:3]
    assert [("pageToken" in r["query"]) for r in first_poll] == [False, True, True]
