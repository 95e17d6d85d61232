"""The ``meet_events`` handler (docs/api.md "meet_events") over in-memory ports: who may push, what an unusable
push answers (204, nothing stored), dedupe by ``ce-id``, finding an organizer who can read the
record, lifecycle events, and unknown types acknowledged."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import app
from functions.config import Settings
from functions.errors import WorkspaceError
from functions.meet_records import (
    CONFERENCE_ENDED,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_EXPIRED,
    SUBSCRIPTION_SUSPENDED,
    Conference,
    MeetAttendee,
    MeetSessionTimes,
    MeetSpace,
    SubscriptionRecord,
    user_target,
)
from functions.ports import Deps
from functions.schedule import Timing
from tests.fakes import FakeIdTokens, ManualClock, MemoryQueue, MemoryStore, ScriptedReports
from tests.workspace_fakes import FakeDirectory, FakeWorkspaceEvents, MemoryWorkspaceState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = NOW - timedelta(hours=2)
END = NOW - timedelta(hours=1)
URL = "http://127.0.0.1:11/"
PUSH = "pubsub-push@acme.iam.gserviceaccount.com"
TOPIC = "projects/acme-attendance/topics/workspace-events"
ORGANIZER = "organizer@school.example"
OTHER = "other@school.example"
RECORD = "conferenceRecords/rec-1"
SPACE = "spaces/space-1"
CODE = "abc-mnop-xyz"
SETTINGS = replace(
    Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "acme-attendance",
            "TASKS_LOCATION": "here",
            "TASKS_QUEUE": "q",
            "COLLECT_URL": "http://127.0.0.1:9/",
            "TASKS_SERVICE_ACCOUNT": "tasks@acme.iam.gserviceaccount.com",
            "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
            "ERASURE_KEY": "k" * 32,
            "MEET_EVENTS_URL": URL,
            "PUBSUB_PUSH_SERVICE_ACCOUNT": PUSH,
            "WORKSPACE_EVENTS_TOPIC": TOPIC,
            "ORGANIZERS": f"{OTHER},{ORGANIZER}",
        },
        role="meet_events",
    )
)


class FakeMeet:
    """Meet REST as one organizer may read it: ``readers`` of the space, else None (403)."""

    def __init__(self) -> None:
        self.readers = {ORGANIZER}
        self.records = {RECORD: Conference(name=RECORD, space=SPACE, start=START, end=END)}
        self.calls: list[tuple[str, str, str]] = []
        self.failure: WorkspaceError | None = None

    def conference(self, name: str, *, as_user: str) -> Conference | None:
        self.calls.append(("conference", name, as_user))
        if self.failure is not None:
            raise self.failure
        return self.records.get(name) if as_user in self.readers else None

    def space(self, name: str, *, as_user: str) -> MeetSpace | None:
        return MeetSpace(name=name, meeting_code=CODE) if as_user in self.readers else None

    def attendees(self, conference: str, *, as_user: str) -> list[MeetAttendee]:
        return [
            MeetAttendee(
                name=f"{conference}/participants/p1",
                kind="signed_in",
                user="users/7",
                display_name="Student",
                sessions=(
                    MeetSessionTimes(
                        name=f"{conference}/participants/p1/participantSessions/s1",
                        start=START,
                        end=END,
                    ),
                ),
            )
        ]


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(NOW)
        self.store = MemoryStore()
        self.meet = FakeMeet()
        self.directory = FakeDirectory({ORGANIZER: "1", OTHER: "2", "student@school.example": "7"})
        self.events = FakeWorkspaceEvents(self.clock, directory=self.directory)
        self.state = MemoryWorkspaceState()
        deps = Deps(
            store=self.store,
            queue=MemoryQueue(),
            reports=ScriptedReports(),
            clock=self.clock,
            timing=Timing(),
            erasure_key=SETTINGS.erasure_key,
            meet=self.meet,
            directory=self.directory,
            events=self.events,
            workspace=self.state,
        )
        self.rt = app.Runtime(SETTINGS, deps, FakeIdTokens(URL))

    def push(self, body: bytes, *, email: str | None = PUSH) -> tuple[int, dict[str, Any]]:
        request = app.HttpRequest(
            method="POST",
            path="/",
            headers={} if email is None else {"authorization": f"Bearer {email}"},
            body=body,
            content_type="application/json",
            content_length=len(body),
        )
        return app.meet_events(request, self.rt)


def envelope(
    event_type: str, data: dict[str, Any], *, event_id: str = "evt-1", **attributes: str
) -> bytes:
    return json.dumps(
        {
            "message": {
                "attributes": {
                    "ce-specversion": "1.0",
                    "ce-type": event_type,
                    "ce-id": event_id,
                    "ce-source": "//meet.googleapis.com/" + SPACE,
                    **attributes,
                },
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "messageId": "1",
                "publishTime": "2026-11-20T12:00:00Z",
            },
            "subscription": "projects/acme-attendance/subscriptions/meet-events",
        }
    ).encode()


ENDED = envelope(CONFERENCE_ENDED, {"conferenceRecord": {"name": RECORD}})


def test_a_push_without_a_token_is_401_and_another_identity_403() -> None:
    world = World()
    assert world.push(ENDED, email=None)[0] == 401
    assert world.push(ENDED, email="someone@else.example")[0] == 403
    assert world.store.meetings == {}
    assert world.state.events == {}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"message": "x"}',
        b'{"message": {"data": "%%%", "attributes": {"ce-id": "1", "ce-type": "t"}}}',
        json.dumps(
            {
                "message": {
                    "data": base64.b64encode(b"[1]").decode(),
                    "attributes": {"ce-id": "1", "ce-type": "t"},
                }
            }
        ).encode(),
        json.dumps({"message": {"attributes": {"ce-type": CONFERENCE_ENDED}}}).encode(),
        json.dumps({"message": {"attributes": {"ce-id": "1", "ce-type": 5}}}).encode(),
    ],
)
def test_an_unusable_authenticated_push_answers_204_and_stores_nothing(body: bytes) -> None:
    world = World()
    status, _ = world.push(body)
    assert status == 204
    assert world.store.meetings == {}
    assert world.state.events == {}


def test_a_conference_ended_event_creates_the_meeting_and_its_preliminary_view() -> None:
    world = World()
    status, answer = world.push(ENDED)
    assert (status, answer) == (200, {"handled": "conference_ended"})
    (meeting,) = world.store.meetings.values()
    assert meeting.source == "meet"
    assert meeting.meeting_code == CODE
    assert meeting.attendance_source == "meet"
    keys = {d["participant_key"] for d in world.store.participants(meeting.meeting_id)}
    assert keys == {"student@school.example"}
    assert world.state.space_reader(SPACE) == ORGANIZER
    # OTHER was tried first (ORGANIZERS order) and could not read the record.
    assert [c[2] for c in world.meet.calls] == [OTHER, ORGANIZER]


def test_the_organizer_known_to_read_the_space_is_asked_first() -> None:
    world = World()
    world.state.remember_space_reader(SPACE, ORGANIZER)
    world.push(ENDED)
    assert [c[2] for c in world.meet.calls] == [ORGANIZER]


def test_a_replayed_event_is_handled_once() -> None:
    world = World()
    world.push(ENDED)
    meetings = dict(world.store.meetings)
    calls = len(world.meet.calls)
    status, answer = world.push(ENDED)
    assert (status, answer) == (200, {"handled": "duplicate"})
    assert dict(world.store.meetings) == meetings
    assert len(world.meet.calls) == calls


def test_the_same_conference_under_another_event_id_changes_nothing() -> None:
    world = World()
    world.push(ENDED)
    meetings = dict(world.store.meetings)
    world.push(envelope(CONFERENCE_ENDED, {"conferenceRecord": {"name": RECORD}}, event_id="evt-2"))
    assert dict(world.store.meetings) == meetings


def test_a_record_nobody_can_read_is_acknowledged() -> None:
    world = World()
    world.meet.readers = set()
    assert world.push(ENDED) == (200, {"handled": "unreadable"})
    assert world.store.meetings == {}


def test_a_transient_meet_failure_answers_5xx_so_pubsub_retries() -> None:
    world = World()
    world.meet.failure = WorkspaceError("Meet REST API 503 after 6 attempt(s)", kind="transient")
    status, _ = world.push(ENDED)
    assert status == 503 or status == 502
    assert world.state.events == {}  # not remembered: the redelivery handles it
    world.meet.failure = None
    assert world.push(ENDED)[0] == 200


def test_unknown_event_types_are_acknowledged() -> None:
    world = World()
    body = envelope("google.workspace.meet.participant.v2.joined", {"participantSession": {}})
    assert world.push(body) == (200, {"handled": "ignored"})


def subscribed(world: World) -> str:
    created = world.events.create(
        as_user=ORGANIZER,
        target=user_target("1"),
        event_types=[CONFERENCE_ENDED],
        topic=TOPIC,
    )
    world.state.save_subscription(
        SubscriptionRecord(
            organizer_email=ORGANIZER,
            user_id="1",
            subscription=created.name,
            state=created.state,
            expire_time=created.expire_time,
        )
    )
    return created.name


def lifecycle(event_type: str, name: str, event_id: str) -> bytes:
    source = "//workspaceevents.googleapis.com/" + name
    return envelope(
        event_type,
        {"subscription": {"name": name}},
        event_id=event_id,
        **{"ce-source": source, "ce-subject": source},
    )


def test_a_reminder_renews_the_subscription() -> None:
    world = World()
    name = subscribed(world)
    world.clock.now = NOW + timedelta(days=6, hours=12)
    status, _answer = world.push(lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, name, "r-1"))
    assert status == 200
    (live,) = world.events.live()
    assert live.expire_time is not None
    assert live.expire_time >= world.clock.now + timedelta(days=6)
    record = world.state.subscription(ORGANIZER)
    assert record is not None
    assert record.last_event_at == world.clock.now


def test_an_expired_subscription_is_created_again() -> None:
    world = World()
    name = subscribed(world)
    world.clock.now = NOW + timedelta(days=7, minutes=1)
    assert world.push(lifecycle(SUBSCRIPTION_EXPIRED, name, "x-1"))[0] == 200
    (live,) = world.events.live()
    assert live.name != name
    record = world.state.subscription(ORGANIZER)
    assert record is not None
    assert record.subscription == live.name


def test_a_suspended_subscription_is_recorded_and_reactivated() -> None:
    world = World()
    name = subscribed(world)
    world.events.suspend(name, "USER_SCOPE_REVOKED")
    assert world.push(lifecycle(SUBSCRIPTION_SUSPENDED, name, "s-1"))[0] == 200
    (live,) = world.events.live()
    assert live.state == "ACTIVE"
