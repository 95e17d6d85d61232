"""The Meet path on the local stack (docs/rules.md "Meet signals", §4.3, §6, §7 ``subscriptions``):
the fake Meet publishes CloudEvents exactly as Pub/Sub push delivers them to ``meet_events``;
every answer, document and subscription is read back from the real servers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.adapters.firestore_store import FirestoreStore
from functions.meet_records import (
    CONFERENCE_ENDED,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_EXPIRED,
)
from functions.model import meeting_id_for
from functions.schedule import Status
from functions.stored_state import committed
from local.client import StackClient
from local.simulate import Stay, activities_for, rfc3339
from local.stack import FUNCTIONS, LOCAL_ORGANIZER, Stack
from tests.e2e.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CODE = "abc-mnop-xyz"
SPACE = "spaces/space-e2e"
TEACHER = "teacher@school.test"
STUDENT = "student@school.test"
M = timedelta(minutes=1)

pytestmark = pytest.mark.timeout(240)


def meet_class(
    client: StackClient,
    record: str,
    start: datetime,
    end: datetime,
    stays: dict[str, tuple[str, datetime, datetime]],
) -> None:
    """A conference in the fake Meet: its space, its record, and each person's one session."""
    participants, sessions, users = [], [], []
    for index, (email, (user_id, join, leave)) in enumerate(sorted(stays.items())):
        participant = f"{record}/participants/p{index}"
        participants.append(
            {
                "name": participant,
                "signedinUser": {"user": f"users/{user_id}", "displayName": email.split("@")[0]},
                "earliestStartTime": rfc3339(join),
                "latestEndTime": rfc3339(leave),
            }
        )
        sessions.append(
            {
                "name": f"{participant}/participantSessions/s0",
                "startTime": rfc3339(join),
                "endTime": rfc3339(leave),
            }
        )
        users.append({"id": user_id, "primaryEmail": email})
    client.add_meet(
        spaces=[
            {"name": SPACE, "meetingCode": CODE, "meetingUri": f"https://meet.google.com/{CODE}"}
        ],
        conference_records=[
            {"name": record, "space": SPACE, "startTime": rfc3339(start), "endTime": rfc3339(end)}
        ],
        participants=participants,
        participant_sessions=sessions,
        users=[*users, {"id": "100", "primaryEmail": LOCAL_ORGANIZER}],
    )


def ended(client: StackClient, record: str, event_id: str | None = None) -> int:
    return client.publish_meet_event(
        CONFERENCE_ENDED, {"conferenceRecord": {"name": record}}, event_id=event_id
    )


def documents(store: FirestoreStore, meeting_id: str) -> dict[str, dict[str, Any]]:
    meeting = store.get(meeting_id)
    assert meeting is not None
    return {
        str(d["participant_key"]): dict(d)
        for d in committed(store.participants(meeting_id), meeting)
    }


def test_an_unannounced_class_preliminary_within_seconds_then_reports_complete(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    end = datetime.now(UTC) - timedelta(seconds=5)
    start = end - 30 * M
    record = "conferenceRecords/e2e-1"
    meet_class(
        client,
        record,
        start,
        end,
        {TEACHER: ("1", start, end), STUDENT: ("2", start + 5 * M, end - 5 * M)},
    )
    assert ended(client, record, "evt-a") == 200
    meeting_id = meeting_id_for(external_id="meet:" + record)
    meeting = store.get(meeting_id)
    assert meeting is not None
    assert meeting.source == "meet"
    assert meeting.attendance_source == "meet"
    prelim = documents(store, meeting_id)
    assert prelim[STUDENT]["preliminary"] is True
    assert prelim[STUDENT]["attended_seconds"] == 20 * 60
    # A replay of the same push changes nothing.
    revision = meeting.revision
    assert ended(client, record, "evt-a") == 200
    again = store.get(meeting_id)
    assert again is not None
    assert again.revision == revision
    # Reports catches up: its data replaces the preliminary view whole.
    client.add_activities(
        activities_for(
            [Stay(TEACHER, start, end), Stay(STUDENT, start + 6 * M, end - 5 * M)],
            meeting_code=CODE,
            conference_id="reports-conf-1",
        )
    )
    final = wait_for(
        lambda: (m := store.get(meeting_id)) is not None and m.is_final and m,
        timeout_s=90,
        what="the meet meeting to finish",
    )
    assert final.status is Status.COMPLETE
    assert final.attendance_source == "reports"
    docs = documents(store, meeting_id)
    assert docs[STUDENT]["preliminary"] is False
    assert docs[STUDENT]["attended_seconds"] == 19 * 60
    # No function logged a participant's email, the organizer's, or the record's users.
    logs = {name: text for name, text in stack.output().items() if name in FUNCTIONS}
    assert "meet_events" in logs
    assert "conference ended handled" in logs["meet_events"]
    for text in logs.values():
        for secret in (STUDENT, TEACHER, LOCAL_ORGANIZER, "users/2"):
            assert secret not in text


def test_an_event_for_a_declared_class_makes_no_second_meeting(
    client: StackClient, store: FirestoreStore
) -> None:
    end = datetime.now(UTC) - timedelta(seconds=5)
    start = end - 30 * M
    answer = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": CODE,
            "started_at": rfc3339(start),
            "ended_at": rfc3339(end),
            "external_id": "lesson-e2e-2",
        }
    )
    assert answer.status == 202, answer.body
    record = "conferenceRecords/e2e-2"
    meet_class(client, record, start, end, {STUDENT: ("2", start, end)})
    assert ended(client, record) == 200
    meeting_id = answer.body["meeting_id"]
    assert store.get(meeting_id_for(external_id="meet:" + record)) is None
    docs = documents(store, meeting_id)
    assert docs[STUDENT]["preliminary"] is True


def test_a_personal_room_conference_spanning_two_classes_splits_without_a_meet_meeting(
    client: StackClient, store: FirestoreStore
) -> None:
    end = datetime.now(UTC) - timedelta(seconds=5)
    start = end - 120 * M
    ids = []
    for index, (a, b) in enumerate([(start, start + 60 * M), (start + 60 * M, end)]):
        answer = client.meeting_ended(
            {
                "type": "meeting.ended",
                "meeting_code": CODE,
                "started_at": rfc3339(a),
                "ended_at": rfc3339(b),
                "external_id": f"room-class-{index}",
            }
        )
        assert answer.status == 202, answer.body
        ids.append(answer.body["meeting_id"])
    record = "conferenceRecords/e2e-room"
    meet_class(client, record, start, end, {TEACHER: ("1", start, end)})
    assert ended(client, record) == 200
    assert store.get(meeting_id_for(external_id="meet:" + record)) is None
    for meeting_id in ids:
        assert documents(store, meeting_id)[TEACHER]["attended_seconds"] == 60 * 60


def push(stack: Stack, client: StackClient, body: bytes, token: str | None) -> int:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return requests.post(
        stack.env["MEET_EVENTS_URL"], data=body, headers=headers, timeout=30
    ).status_code


def test_malformed_and_unauthenticated_pushes(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    audience = stack.env["MEET_EVENTS_URL"]
    good = client.mint(audience=audience, email=stack.env["PUBSUB_PUSH_SERVICE_ACCOUNT"])
    data = base64.b64encode(
        json.dumps({"conferenceRecord": {"name": "conferenceRecords/x"}}).encode()
    )
    envelope = json.dumps(
        {
            "message": {
                "data": data.decode(),
                "attributes": {"ce-type": CONFERENCE_ENDED, "ce-id": "m1"},
            }
        }
    ).encode()
    assert push(stack, client, envelope, None) == 401
    assert push(stack, client, envelope, "not-a-jwt") == 401
    assert (
        push(stack, client, envelope, client.mint(audience=audience, email="x@local.test")) == 403
    )
    assert (
        push(
            stack,
            client,
            envelope,
            client.mint(
                audience="http://127.0.0.1:1/", email=stack.env["PUBSUB_PUSH_SERVICE_ACCOUNT"]
            ),
        )
        == 401
    )
    assert push(stack, client, b"{not json", good) == 204
    assert push(stack, client, b'{"message": {"data": "!!"}}', good) == 204
    assert client.publish_meet_event(CONFERENCE_ENDED, {}, raw={"message": {}}) == 204
    assert (
        client.publish_meet_event(
            CONFERENCE_ENDED, {"conferenceRecord": {"name": "x"}}, token=False
        )
        == 401
    )
    assert list(store.ended_between(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + M)) == []


def run_cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions", *args],
        env={**os.environ, **stack.env, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def organizer_directory(client: StackClient) -> None:
    client.add_meet(
        users=[
            {"id": "100", "primaryEmail": LOCAL_ORGANIZER},
            {"id": "200", "primaryEmail": "second@school.test"},
        ]
    )


def subscriptions_json(stack: Stack) -> list[dict[str, Any]]:
    result = run_cli(stack, "subscriptions", "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return [row for row in rows if row["kind"] == "meet"]


def test_subscriptions_ensure_shows_reuses_renews_and_recreates(
    stack: Stack, client: StackClient
) -> None:
    organizer_directory(client)
    client.meet_control("config", {"operation_polls_before_done": 2})
    result = run_cli(stack, "subscriptions", "--ensure")
    assert result.returncode == 0, result.stderr
    assert LOCAL_ORGANIZER in result.stdout
    (live,) = client.meet_subscriptions()
    assert live["targetResource"] == "//cloudidentity.googleapis.com/users/100"
    assert live["notificationEndpoint"]["pubsubTopic"] == stack.env["WORKSPACE_EVENTS_TOPIC"]
    (row,) = subscriptions_json(stack)
    assert row["organizer"] == LOCAL_ORGANIZER
    assert row["subscription"] == live["name"]
    assert row["state"] == "ACTIVE"
    # A reminder renews it; an expired one is created again.
    expire_before = live["expireTime"]
    status = client.publish_meet_event(
        SUBSCRIPTION_EXPIRATION_REMINDER,
        {"subscription": {"name": live["name"]}},
        subscription=live["name"],
    )
    assert status == 200
    (renewed,) = client.meet_subscriptions()
    assert renewed["name"] == live["name"]
    assert renewed["expireTime"] >= expire_before
    client.meet_control("subscriptions/expire", {"name": live["name"]})
    status = client.publish_meet_event(
        SUBSCRIPTION_EXPIRED, {"subscription": {"name": live["name"]}}, subscription=live["name"]
    )
    assert status == 200
    (recreated,) = client.meet_subscriptions()
    assert recreated["name"] != live["name"]
    (row,) = subscriptions_json(stack)
    assert row["subscription"] == recreated["name"]
    assert row["last_event_at"] is not None


def test_already_exists_is_reused_and_a_removed_organizer_is_closed(
    stack: Stack, client: StackClient
) -> None:
    organizer_directory(client)
    # Someone (an earlier deployment) already subscribed the second organizer.
    created = requests.post(
        stack.env["WORKSPACE_EVENTS_API_ENDPOINT"] + "v1/subscriptions",
        json={
            "targetResource": "//cloudidentity.googleapis.com/users/200",
            "eventTypes": [CONFERENCE_ENDED],
            "notificationEndpoint": {"pubsubTopic": stack.env["WORKSPACE_EVENTS_TOPIC"]},
        },
        timeout=30,
    ).json()["response"]
    both = f"{LOCAL_ORGANIZER},second@school.test"
    result = run_cli(stack, "subscriptions", "--ensure", ORGANIZERS=both)
    assert result.returncode == 0, result.stderr
    names = {s["targetResource"]: s["name"] for s in client.meet_subscriptions()}
    assert names["//cloudidentity.googleapis.com/users/200"] == created["name"]
    assert len(names) == 2
    result = run_cli(stack, "subscriptions", "--ensure", ORGANIZERS=LOCAL_ORGANIZER)
    assert result.returncode == 0, result.stderr
    remaining = client.meet_subscriptions()
    assert [s["targetResource"] for s in remaining] == ["//cloudidentity.googleapis.com/users/100"]
    assert [r["organizer"] for r in subscriptions_json(stack)] == [LOCAL_ORGANIZER]
