"""Google Calendar as a source (docs/rules.md "Declarations, sources and identity", "Calendar
changes", "The daily run"; §4.1 notifications), over in-memory ports and the real use cases:
the event mapping as a table, then declarations, moves, cancellations, a changed code, a webhook
naming the event, forged notifications, renewals, removed organizers, 410s and concurrent syncs."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.calendar_events import CALENDAR_HORIZON, read_event
from functions.calendar_records import CalendarPage, OpenedChannel
from functions.calendar_sync import (
    accept_notification,
    ensure_channels,
    sync_calendar,
    token_hash,
)
from functions.declarations import accept_meeting_end
from functions.errors import AppError, Conflict, SyncTokenExpired, Unauthorized
from functions.model import Declared, meeting_id_for
from functions.ports import Deps
from functions.schedule import Status, Timing
from functions.stored_state import committed
from tests.fakes import ManualClock, MemoryQueue, MemoryStore, ScriptedReports
from tests.workspace_fakes import MemoryCalendarState

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CAL = "teacher@school.example"
STUDENT = "student@school.example"
ROOM = "resource-room@resource.calendar.google.com"
CODE = "abc-defg-hij"
ADDRESS = "http://127.0.0.1:1/calendar/notifications"
LOOKBACK = timedelta(days=2)


def rfc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def event(
    event_id: str = "ev1",
    *,
    start: datetime = NOW + timedelta(hours=2),
    minutes: int = 45,
    code: str | None = CODE,
    attendees: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "status": "confirmed",
        "start": {"dateTime": rfc(start)},
        "end": {"dateTime": rfc(start + timedelta(minutes=minutes))},
        "organizer": {"email": CAL, "self": True},
        "attendees": attendees
        if attendees is not None
        else [
            {"email": CAL, "organizer": True, "responseStatus": "accepted"},
            {"email": STUDENT, "responseStatus": "needsAction"},
            {"email": ROOM, "resource": True, "responseStatus": "accepted"},
        ],
    }
    if code is not None:
        body["conferenceData"] = {
            "conferenceId": code,
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}},
        }
    body.update(extra)
    return body


# ------------------------------------------------------------------------------------------------
# The mapping, as a table


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (event(), None),
        (event(status="cancelled"), "cancelled"),
        ({"id": "ev1", "status": "cancelled", "updated": "x"}, "cancelled"),
        (event(code=None), "no_meet"),
        (
            event(
                conferenceData={
                    "conferenceId": "x",
                    "conferenceSolution": {"key": {"type": "addOn"}},
                }
            ),
            "no_meet",
        ),
        ({**event(), "start": {"date": "2026-11-21"}, "end": {"date": "2026-11-22"}}, "all_day"),
        (event(start=NOW + CALENDAR_HORIZON), "too_far"),
        (event(endTimeUnspecified=True), "all_day"),
    ],
)
def test_which_events_declare_a_meeting(raw: dict[str, Any], why: str | None) -> None:
    action = read_event(raw, calendar_id=CAL, now=NOW)
    assert action is not None
    assert action.why == why if why != "all_day" else action.why in ("all_day", "unreadable")
    assert action.external_id == f"calendar:{CAL}:ev1"
    assert (action.declared is None) is (why is not None)


def test_a_declared_event_keeps_people_with_their_answers_and_drops_rooms() -> None:
    attendees: list[dict[str, Any]] = [
        {"email": STUDENT, "responseStatus": "declined"},
        {"email": "Tent@School.example", "responseStatus": "tentative"},
        {"email": "odd@school.example", "responseStatus": "whatever"},
        {"email": ROOM, "resource": True},
        {"displayName": "no email"},
    ]
    action = read_event(event(attendees=attendees), calendar_id=CAL, now=NOW)
    assert action is not None
    declared = action.declared
    assert declared is not None
    assert declared.rsvps == {
        STUDENT: "declined",
        "tent@school.example": "tentative",
        "odd@school.example": "needsAction",
        CAL: "accepted",
    }
    assert set(declared.expected_participants) == set(declared.rsvps)
    assert declared.calendar_event_id == "ev1"
    assert declared.organizer_email == CAL
    assert declared.meeting_code == CODE


def test_a_recurring_instance_is_a_meeting_of_its_own() -> None:
    instance = event(
        "ev1_20261127T100000Z",
        recurringEventId="ev1",
        originalStartTime={"dateTime": "2026-11-27T10:00:00Z"},
    )
    action = read_event(instance, calendar_id=CAL, now=NOW)
    assert action is not None
    assert action.external_id == f"calendar:{CAL}:ev1_20261127T100000Z"


def test_an_event_without_an_id_is_skipped() -> None:
    assert read_event({"status": "confirmed"}, calendar_id=CAL, now=NOW) is None


# ------------------------------------------------------------------------------------------------
# A small Calendar: events with change numbers, sync tokens, 410s, channels


class FakeCalendar:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, dict[str, Any]]] = {}
        self.changed: dict[str, dict[str, int]] = {}
        self.tick = itertools.count(1)
        self.expired_before = 0
        self.opened: list[tuple[str, str, str]] = []
        self.stopped: list[str] = []
        self.lists = 0
        self.before_page: Any = None

    def put(self, calendar_id: str, body: dict[str, Any]) -> None:
        self.events.setdefault(calendar_id, {})[body["id"]] = body
        self.changed.setdefault(calendar_id, {})[body["id"]] = next(self.tick)

    def events_page(
        self,
        calendar_id: str,
        *,
        as_user: str,
        sync_token: str | None = None,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        page_token: str | None = None,
    ) -> CalendarPage:
        self.lists += 1
        if self.before_page is not None:
            hook, self.before_page = self.before_page, None
            hook()
        assert sync_token is None or (time_min is None and time_max is None)
        since = 0
        if sync_token is not None:
            since = int(sync_token)
            if since <= self.expired_before:
                raise SyncTokenExpired(calendar_id)
        found = [
            body
            for event_id, body in self.events.get(calendar_id, {}).items()
            if self.changed[calendar_id][event_id] > since
        ]
        if sync_token is not None:
            found = [
                {"id": b["id"], "status": "cancelled", "updated": "x"}
                if b.get("status") == "cancelled"
                else b
                for b in found
            ]
        token = str(max(self.changed.get(calendar_id, {}).values(), default=0) + 0)
        return CalendarPage(events=found, next_sync_token=token or "0")

    def watch(
        self,
        calendar_id: str,
        *,
        as_user: str,
        channel_id: str,
        token: str,
        address: str,
        ttl_s: int,
    ) -> OpenedChannel:
        self.opened.append((calendar_id, channel_id, token))
        return OpenedChannel(
            id=channel_id,
            resource_id="res-" + calendar_id,
            expiration=NOW + timedelta(seconds=ttl_s),
        )

    def stop(self, *, as_user: str, channel_id: str, resource_id: str) -> None:
        self.stopped.append(channel_id)


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(NOW)
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.calendar = FakeCalendar()
        self.state = MemoryCalendarState()
        self.deps = Deps(
            store=self.store,
            queue=self.queue,
            reports=ScriptedReports(),
            clock=self.clock,
            timing=Timing(),
            erasure_key="k" * 32,
            calendar=self.calendar,
            calendars=self.state,
        )

    def sync(self, calendar_id: str = CAL) -> Any:
        return sync_calendar(
            self.deps, calendar_id=calendar_id, organizer_email=calendar_id, lookback=LOOKBACK
        )

    def meeting(self, event_id: str = "ev1", code: str | None = None) -> Any:
        external = f"calendar:{CAL}:{event_id}" + ("" if code is None else f":{code}")
        return self.store.meetings.get(meeting_id_for(external_id=external))

    def documents(self, meeting_id: str) -> dict[str, Mapping[str, Any]]:
        meeting = self.store.meetings[meeting_id]
        return {
            str(d["participant_key"]): d
            for d in committed(self.store.participants(meeting_id), meeting)
        }


def test_a_scheduled_class_is_declared_with_its_invitees_and_their_answers() -> None:
    world = World()
    world.calendar.put(CAL, event())
    report = world.sync()
    assert report.declared == 1
    meeting = world.meeting()
    assert meeting.source == "calendar"
    assert meeting.calendar_event_id == "ev1"
    assert set(meeting.expected_participants) == {CAL, STUDENT}
    docs = world.documents(meeting.meeting_id)
    assert docs[STUDENT]["rsvp"] == "needsAction"
    assert docs[CAL]["rsvp"] == "accepted"
    assert docs[STUDENT]["estimated"]


def test_a_moved_event_reschedules_and_a_new_answer_is_stored() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    moved = event(
        start=NOW + timedelta(hours=5),
        attendees=[{"email": STUDENT, "responseStatus": "accepted"}],
    )
    world.calendar.put(CAL, moved)
    world.sync()
    meeting = world.meeting()
    assert meeting.started_at == NOW + timedelta(hours=5)
    assert world.documents(meeting.meeting_id)[STUDENT]["rsvp"] == "accepted"
    assert meeting.chain_seq == 2


def test_a_cancelled_event_keeps_the_schedule_and_drops_the_estimates() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    world.calendar.put(CAL, {"id": "ev1", "status": "cancelled"})
    world.sync()
    meeting = world.meeting()
    assert meeting.cancelled_at == NOW
    assert meeting.expected_participants == ()
    assert world.documents(meeting.meeting_id) == {}
    assert meeting.started_at == NOW + timedelta(hours=2)
    assert meeting.status is Status.SCHEDULED
    # It comes back: declared again, cancelled_at cleared.
    world.calendar.put(CAL, event())
    world.sync()
    back = world.meeting()
    assert back.cancelled_at is None
    assert set(back.expected_participants) == {CAL, STUDENT}


@pytest.mark.parametrize(
    "change",
    [
        {"conferenceData": None},
        {"start": {"date": "2026-11-21"}, "end": {"date": "2026-11-22"}},
        {
            "start": {"dateTime": rfc(NOW + timedelta(days=40))},
            "end": {"dateTime": rfc(NOW + timedelta(days=40, hours=1))},
        },
    ],
    ids=["lost its Meet link", "turned all-day", "moved beyond 29 days"],
)
def test_an_event_that_no_longer_qualifies_cancels_its_meeting(change: dict[str, Any]) -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    changed = {k: v for k, v in {**event(), **change}.items() if v is not None}
    world.calendar.put(CAL, changed)
    world.sync()
    assert world.meeting().cancelled_at is not None


def test_a_changed_meet_code_cancels_and_declares_another_meeting() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    world.calendar.put(CAL, event(code="xyz-wxyz-xyz"))
    world.sync()
    assert world.meeting().cancelled_at is not None
    new = world.meeting(code="xyz-wxyz-xyz")
    assert new is not None
    assert new.meeting_code == "xyz-wxyz-xyz"
    assert new.cancelled_at is None
    world.sync()  # a repeated sync changes nothing
    assert len(world.store.meetings) == 2


def test_a_webhook_naming_the_event_is_the_same_meeting_and_its_id_an_alias() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    meeting = world.meeting()
    start = NOW + timedelta(hours=2)
    webhook = Declared(
        meeting_code=CODE,
        started_at=start,
        ended_at=start + timedelta(minutes=50),
        external_id="lms-42",
        calendar_event_id="ev1",
    )
    accepted = accept_meeting_end(world.deps, webhook)
    assert accepted.meeting.meeting_id == meeting.meeting_id
    stored = world.store.meetings[meeting.meeting_id]
    assert stored.aliases == ("lms-42",)
    # The webhook's times win over Calendar's; a later Calendar sync does not move them back.
    assert stored.ended_at == start + timedelta(minutes=50)
    world.calendar.put(CAL, event(attendees=[{"email": STUDENT, "responseStatus": "accepted"}]))
    world.sync()
    assert world.store.meetings[meeting.meeting_id].ended_at == start + timedelta(minutes=50)
    # The alias alone names it too.
    again = accept_meeting_end(world.deps, replace(webhook, calendar_event_id=None))
    assert again.meeting.meeting_id == meeting.meeting_id
    assert len(world.store.meetings) == 1


def test_an_event_id_and_an_external_id_naming_two_meetings_conflict() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    other = Declared(meeting_code=CODE, ended_at=NOW + timedelta(hours=9), external_id="other")
    accept_meeting_end(world.deps, other)
    before = dict(world.store.meetings)
    with pytest.raises(Conflict):
        accept_meeting_end(world.deps, replace(other, calendar_event_id="ev1"))
    assert dict(world.store.meetings) == before


def test_an_expired_sync_token_means_a_full_sync() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    world.calendar.put(CAL, event("ev2", start=NOW + timedelta(hours=6)))
    world.calendar.expired_before = 10**6
    report = world.sync()
    assert report.full
    assert world.meeting("ev2") is not None


def test_syncs_of_one_calendar_never_run_at_once_and_the_token_never_goes_back() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    generation = world.state.syncs[CAL].generation
    inner: list[AppError] = []

    def second_sync() -> None:
        try:
            world.sync()
        except AppError as error:
            inner.append(error)

    world.calendar.put(CAL, event("ev2"))
    world.calendar.before_page = second_sync
    world.sync()
    assert len(inner) == 1
    assert inner[0].status == 409
    assert inner[0].retryable
    assert world.state.syncs[CAL].generation == generation + 1
    assert world.state.syncs[CAL].lease_owner is None


def test_a_token_stored_meanwhile_is_not_overwritten_by_an_older_sync() -> None:
    world = World()
    world.calendar.put(CAL, event())
    world.sync()
    state = world.state
    taken = state.take_sync(
        CAL, organizer_email=CAL, owner="a", until=NOW + timedelta(minutes=5), now=NOW
    )
    assert taken is not None
    # The lease ran out; another sync stored a token.
    later = NOW + timedelta(minutes=6)
    other = state.take_sync(
        CAL, organizer_email=CAL, owner="b", until=later + timedelta(minutes=5), now=later
    )
    assert other is not None
    assert state.finish_sync(
        CAL, owner="b", sync_token="99", generation=other.generation, now=later
    )
    assert not state.finish_sync(
        CAL, owner="a", sync_token="1", generation=taken.generation, now=later
    )
    assert state.syncs[CAL].sync_token == "99"


# ------------------------------------------------------------------------------------------------
# Channels and notifications


def opened(world: World, organizers: list[str] | None = None) -> Any:
    return ensure_channels(
        world.deps, organizers=organizers or [CAL], address=ADDRESS, lookback=LOOKBACK
    )


def notification(world: World, channel_id: str, token: str, **overrides: str) -> dict[str, str]:
    channel = world.state.channel(channel_id)
    headers = {
        "x-goog-channel-id": channel_id,
        "x-goog-channel-token": token,
        "x-goog-resource-id": channel.resource_id if channel else "res",
        "x-goog-resource-state": "exists",
        "x-goog-message-number": "2",
    }
    headers.update(overrides)
    return headers


def test_the_first_channel_is_followed_by_a_full_sync() -> None:
    world = World()
    world.calendar.put(CAL, event())
    report = opened(world)
    assert report.opened == 1
    ((calendar_id, channel_id, token),) = world.calendar.opened
    assert calendar_id == CAL
    record = world.state.channel(channel_id)
    assert record is not None
    assert record.token_hash == token_hash(token)
    assert token not in repr(record)
    assert world.meeting() is not None


def test_a_genuine_notification_enqueues_the_sync_and_forged_ones_are_refused() -> None:
    world = World()
    opened(world)
    ((_, channel_id, token),) = world.calendar.opened
    assert (
        accept_notification(world.deps, notification(world, channel_id, token)) == "sync_enqueued"
    )
    assert world.queue.calendar_syncs == [CAL]
    assert (
        accept_notification(
            world.deps, notification(world, channel_id, token, **{"x-goog-resource-state": "sync"})
        )
        == "sync"
    )
    for forged in (
        notification(world, channel_id, token + "x"),
        notification(world, channel_id, token, **{"x-goog-resource-id": "other"}),
        notification(world, "unknown", token),
        {
            k: v
            for k, v in notification(world, channel_id, token).items()
            if k != "x-goog-channel-token"
        },
    ):
        with pytest.raises(Unauthorized):
            accept_notification(world.deps, forged)
    assert world.queue.calendar_syncs == [CAL]


def test_a_renewal_opens_the_new_channel_before_stopping_the_old_and_both_are_accepted() -> None:
    world = World()
    opened(world)
    ((_, old_id, old_token),) = world.calendar.opened
    world.clock.now = NOW + timedelta(days=6)
    report = opened(world)
    assert report.renewed == 1
    (_, new_id, new_token) = world.calendar.opened[1]
    assert world.calendar.stopped == [old_id]
    assert (
        accept_notification(world.deps, notification(world, new_id, new_token)) == "sync_enqueued"
    )
    # The old one is gone once stopped: Google may still push it briefly, and it is refused.
    with pytest.raises(Unauthorized):
        accept_notification(world.deps, notification(world, old_id, old_token))


def test_a_channel_to_an_old_address_is_replaced() -> None:
    world = World()
    opened(world)
    report = ensure_channels(
        world.deps,
        organizers=[CAL],
        address="http://127.0.0.1:2/calendar/notifications",
        lookback=LOOKBACK,
    )
    assert report.renewed == 1


def test_an_organizer_removed_has_its_channel_stopped() -> None:
    world = World()
    opened(world)
    ((_, channel_id, _token),) = world.calendar.opened
    report = opened(world, organizers=["other@school.example"])
    assert report.closed == 1
    assert channel_id in world.calendar.stopped
    assert world.state.channel(channel_id) is None
    assert CAL not in world.state.syncs


def test_the_daily_run_declares_events_that_came_into_range() -> None:
    world = World()
    far = event("far", start=NOW + timedelta(days=35))
    world.calendar.put(CAL, far)
    opened(world)
    assert world.meeting("far") is None
    world.clock.now = NOW + timedelta(days=7)
    opened(world)
    assert world.meeting("far") is not None
