"""Google Calendar as a source on the local stack (docs/rules.md, §4.1, §6 fake Calendar, §7): the
organizer's channel is opened by ``subscriptions --ensure``, the fake Calendar pushes real
notifications (headers, no body) to ``ingest``, the backfill function syncs, and the meetings are
read back from Firestore."""

from __future__ import annotations

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
from functions.model import MeetingRecord, meeting_id_for
from functions.schedule import Status
from functions.stored_state import committed
from local.client import StackClient
from local.simulate import Stay, activities_for, rfc3339
from local.stack import LOCAL_ORGANIZER, Stack
from tests.e2e.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CODE = "cal-endr-abc"
STUDENT = "student@school.test"
NO_SHOW = "noshow@school.test"
M = timedelta(minutes=1)

pytestmark = pytest.mark.timeout(240)


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


def calendar_url(stack: Stack) -> str:
    return stack.env["CALENDAR_API_ENDPOINT"].removesuffix("calendar/v3/")


def post(stack: Stack, path: str, body: dict[str, Any]) -> Any:
    response = requests.post(calendar_url(stack) + path, json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def channels(stack: Stack) -> list[dict[str, Any]]:
    response = requests.get(calendar_url(stack) + "_fake/calendar/channels", timeout=30)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["channels"]
    return found


def open_channel(stack: Stack, client: StackClient) -> dict[str, Any]:
    client.add_meet(users=[{"id": "100", "primaryEmail": LOCAL_ORGANIZER}])
    result = run_cli(stack, "subscriptions", "--ensure")
    assert result.returncode == 0, result.stderr
    (channel,) = channels(stack)
    assert channel["calendar_id"] == LOCAL_ORGANIZER
    assert channel["address"] == stack.env["CALENDAR_NOTIFICATIONS_URL"]
    return channel


def lesson(
    event_id: str, start: datetime, end: datetime, *, code: str = CODE, **extra: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "status": "confirmed",
        "summary": "Chemistry",
        "start": {"dateTime": rfc3339(start)},
        "end": {"dateTime": rfc3339(end)},
        "organizer": {"email": LOCAL_ORGANIZER, "self": True},
        "attendees": [
            {"email": LOCAL_ORGANIZER, "organizer": True, "responseStatus": "accepted"},
            {"email": STUDENT, "responseStatus": "accepted"},
            {"email": NO_SHOW, "responseStatus": "declined"},
            {"email": "room-1@resource.calendar.google.com", "resource": True},
        ],
        "conferenceData": {
            "conferenceId": code,
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://meet.google.com/{code}"}],
        },
        **extra,
    }


def put_events(stack: Stack, *events: dict[str, Any]) -> Any:
    return post(
        stack, "_fake/calendar/events", {"calendar_id": LOCAL_ORGANIZER, "events": list(events)}
    )


def meeting_of(
    store: FirestoreStore, event_id: str, code: str | None = None
) -> MeetingRecord | None:
    external = f"calendar:{LOCAL_ORGANIZER}:{event_id}" + ("" if code is None else f":{code}")
    return store.get(meeting_id_for(external_id=external))


def documents(store: FirestoreStore, meeting: MeetingRecord) -> dict[str, dict[str, Any]]:
    return {
        str(d["participant_key"]): dict(d)
        for d in committed(store.participants(meeting.meeting_id), meeting)
    }


def test_a_class_added_in_the_calendar_is_collected_with_its_no_show_absent(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    open_channel(stack, client)
    end = datetime.now(UTC) - timedelta(seconds=3)
    start = end - 30 * M
    answer = put_events(stack, lesson("lesson-1", start, end))
    assert [n["status"] for n in answer["notified"]] == [200]
    meeting = wait_for(
        lambda: (
            (m := meeting_of(store, "lesson-1")) is not None
            and NO_SHOW in documents(store, m)
            and m
        ),
        what="the calendar meeting and its estimates",
    )
    assert meeting.source == "calendar"
    assert set(meeting.expected_participants) == {LOCAL_ORGANIZER, STUDENT, NO_SHOW}
    docs = documents(store, meeting)
    assert docs[NO_SHOW]["rsvp"] == "declined"
    assert docs[NO_SHOW]["estimated"]
    client.add_activities(
        activities_for(
            [Stay(LOCAL_ORGANIZER, start, end), Stay(STUDENT, start + 2 * M, end)],
            meeting_code=CODE,
            conference_id="cal-conf-1",
        )
    )
    final = wait_for(
        lambda: (m := store.get(meeting.meeting_id)) is not None and m.is_final and m,
        timeout_s=90,
        what="the meeting to complete",
    )
    assert final.status is Status.COMPLETE
    docs = documents(store, final)
    assert docs[NO_SHOW]["absent"]
    assert docs[NO_SHOW]["rsvp"] == "declined"
    assert docs[STUDENT]["attended_seconds"] == 28 * 60


def test_a_move_a_cancellation_and_a_changed_code(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    open_channel(stack, client)
    start = datetime.now(UTC) + 3 * 60 * M
    put_events(stack, lesson("lesson-2", start, start + 45 * M))
    first = wait_for(lambda: meeting_of(store, "lesson-2"), what="the meeting")
    put_events(stack, lesson("lesson-2", start + 60 * M, start + 105 * M))
    moved = wait_for(
        lambda: (
            (m := meeting_of(store, "lesson-2")) is not None
            and m.started_at
            == start.replace(microsecond=(start.microsecond // 1000) * 1000) + 60 * M
            and m
        ),
        what="the move",
    )
    assert moved.meeting_id == first.meeting_id
    # Cancelled: the schedule stays, the estimates go.
    put_events(stack, {"id": "lesson-2", "status": "cancelled"})
    cancelled = wait_for(
        lambda: (m := store.get(first.meeting_id)) is not None and m.cancelled_at is not None and m,
        what="the cancellation",
    )
    assert documents(store, cancelled) == {}
    # Another event whose Meet code changes: the old meeting cancelled, a new one declared.
    put_events(stack, lesson("lesson-3", start, start + 45 * M))
    wait_for(lambda: meeting_of(store, "lesson-3"), what="lesson-3")
    put_events(stack, lesson("lesson-3", start, start + 45 * M, code="new-code-xyz"))
    renamed = wait_for(lambda: meeting_of(store, "lesson-3", "new-code-xyz"), what="the new code")
    assert renamed.meeting_code == "new-code-xyz"
    old = meeting_of(store, "lesson-3")
    assert old is not None
    assert old.cancelled_at is not None


def test_a_webhook_naming_the_event_is_the_same_meeting(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    open_channel(stack, client)
    end = datetime.now(UTC) - 2 * M
    start = end - 40 * M
    put_events(stack, lesson("lesson-6", start, end))
    first = wait_for(lambda: meeting_of(store, "lesson-6"), what="the meeting")
    webhook = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": CODE,
            "started_at": rfc3339(start),
            "ended_at": rfc3339(end + M),
            "external_id": "lms-lesson-6",
            "calendar_event_id": "lesson-6",
        }
    )
    assert webhook.status == 200, webhook.body
    assert webhook.body["meeting_id"] == first.meeting_id
    aliased = store.get(first.meeting_id)
    assert aliased is not None
    assert aliased.aliases == ("lms-lesson-6",)
    assert aliased.ended_at > end  # the webhook's times win over Calendar's
    again = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": CODE,
            "ended_at": rfc3339(end + M),
            "external_id": "lms-lesson-6",
        }
    )
    assert again.body["meeting_id"] == first.meeting_id


def test_forged_notifications_are_refused_and_read_nothing(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    channel = open_channel(stack, client)
    url = stack.env["CALENDAR_NOTIFICATIONS_URL"]
    base = {
        "X-Goog-Channel-ID": channel["id"],
        "X-Goog-Channel-Token": channel["token"],
        "X-Goog-Resource-ID": channel["resourceId"],
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "7",
    }
    dispatched = len(client.dispatches())
    for forged in (
        {**base, "X-Goog-Channel-Token": "guess"},
        {**base, "X-Goog-Resource-ID": "other"},
        {**base, "X-Goog-Channel-ID": "unknown"},
        {k: v for k, v in base.items() if k != "X-Goog-Channel-Token"},
    ):
        assert requests.post(url, headers=forged, timeout=30).status_code == 401
    assert (
        requests.post(
            url, headers={**base, "X-Goog-Resource-State": "sync"}, timeout=30
        ).status_code
        == 200
    )
    assert len(client.dispatches()) == dispatched


def test_an_expired_sync_token_and_two_changes_at_once_lose_nothing(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    open_channel(stack, client)
    start = datetime.now(UTC) + 60 * M
    post(stack, "_fake/calendar/expire-sync-tokens", {})
    put_events(stack, lesson("lesson-4", start, start + 30 * M))
    put_events(stack, lesson("lesson-5", start + 60 * M, start + 90 * M))
    wait_for(lambda: meeting_of(store, "lesson-4"), what="lesson-4 after a 410")
    wait_for(lambda: meeting_of(store, "lesson-5"), what="lesson-5")
    result = run_cli(stack, "subscriptions", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [r for r in json.loads(result.stdout) if r["kind"] == "calendar"]
    assert row["calendar"] == LOCAL_ORGANIZER
    assert row["last_notification_at"] is not None
    assert row["last_sync_at"] is not None


def test_an_organizer_removed_has_the_channel_stopped(stack: Stack, client: StackClient) -> None:
    open_channel(stack, client)
    result = run_cli(stack, "subscriptions", "--ensure", ORGANIZERS="someone@school.test")
    assert result.returncode in (0, 1), result.stderr  # someone is not in the Directory
    assert [c["calendar_id"] for c in channels(stack)] == ["someone@school.test"]


class Instrumented:
    """The stack's real Calendar adapter, with a hook before a chosen call: what Google does
    meanwhile (a change pushed, sync tokens expiring) happens at that exact point."""

    def __init__(self, inner: Any, **hooks: Any) -> None:
        self.inner = inner
        self.hooks = hooks

    def events_page(self, calendar_id: str, **kwargs: Any) -> Any:
        hook = self.hooks.pop("events_page", None)
        if hook is not None and kwargs.get("sync_token"):
            hook()
        elif hook is not None:
            self.hooks["events_page"] = hook
        return self.inner.events_page(calendar_id, **kwargs)

    def watch(self, calendar_id: str, **kwargs: Any) -> Any:
        return self.inner.watch(calendar_id, **kwargs)

    def stop(self, **kwargs: Any) -> None:
        hook = self.hooks.pop("stop", None)
        if hook is not None:
            hook()
        self.inner.stop(**kwargs)


def operator_deps(stack: Stack, calendar: Any) -> Any:
    from dataclasses import replace

    from functions.adapters.firestore_calendar import FirestoreCalendarState
    from functions.app import build_runtime
    from functions.config import Settings

    settings = Settings.from_env(stack.env, role="cli")
    deps = build_runtime(settings).deps
    return replace(
        deps, calendar=calendar, calendars=FirestoreCalendarState.from_settings(settings)
    )


def stock_calendar(stack: Stack) -> Any:
    from functions.adapters.calendar import GoogleCalendarApi
    from functions.config import Settings

    return GoogleCalendarApi.from_settings(Settings.from_env(stack.env, role="cli"))


def test_a_renewal_during_which_both_channels_push_loses_nothing(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    from functions.calendar_sync import ensure_channels

    old = open_channel(stack, client)
    start = datetime.now(UTC) + 60 * M
    pushed: list[Any] = []

    def change_while_both_are_open() -> None:
        pushed.append(put_events(stack, lesson("lesson-7", start, start + 30 * M)))

    calendar = Instrumented(stock_calendar(stack), stop=change_while_both_are_open)
    report = ensure_channels(
        operator_deps(stack, calendar),
        organizers=[LOCAL_ORGANIZER],
        address=stack.env["CALENDAR_NOTIFICATIONS_URL"],
        lookback=timedelta(days=2),
        renew_within=timedelta(days=8),  # every channel is "about to expire"
    )
    assert report.renewed == 1
    ((answer),) = pushed
    assert sorted(n["status"] for n in answer["notified"]) == [200, 200]  # old and new accepted
    (new,) = channels(stack)
    assert new["id"] != old["id"]
    wait_for(lambda: meeting_of(store, "lesson-7"), what="the change pushed during the renewal")


def test_a_410_while_a_sync_is_running_means_a_full_sync_and_loses_nothing(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    from functions.calendar_sync import sync_calendar

    open_channel(stack, client)
    start = datetime.now(UTC) + 60 * M
    put_events(stack, lesson("lesson-8", start, start + 30 * M))
    wait_for(lambda: meeting_of(store, "lesson-8"), what="lesson-8")
    before = operator_deps(stack, None).calendars.sync_state(LOCAL_ORGANIZER)
    assert before is not None
    assert before.sync_token

    def expire() -> None:
        post(stack, "_fake/calendar/config", {"push": False})  # this sync alone reads the change
        put_events(stack, lesson("lesson-9", start + 60 * M, start + 90 * M))
        post(stack, "_fake/calendar/expire-sync-tokens", {})

    deps = operator_deps(stack, Instrumented(stock_calendar(stack), events_page=expire))
    report = sync_calendar(
        deps,
        calendar_id=LOCAL_ORGANIZER,
        organizer_email=LOCAL_ORGANIZER,
        lookback=timedelta(days=2),
    )
    post(stack, "_fake/calendar/config", {"push": True})
    assert report.full
    assert meeting_of(store, "lesson-9") is not None
    after = deps.calendars.sync_state(LOCAL_ORGANIZER)
    assert after.generation > before.generation
    assert after.sync_token != before.sync_token
