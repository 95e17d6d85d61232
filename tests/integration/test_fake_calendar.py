"""The fake Calendar API v3, driven by the stock google-api-python-client.

Every fidelity point goes through ``googleapiclient.discovery.build("calendar", "v3",
static_discovery=True)`` pointed at ``<fake>/calendar/v3/``, as an adapter uses it; control calls go
over plain HTTP, and notifications land on a receiver started here on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.auth.credentials
import google.oauth2.credentials
import pytest
import requests
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from local.fake_calendar import FakeCalendarServer, format_http_date, format_time

os.environ["NO_GCE_CHECK"] = "True"

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
A = "a@x.test"
B = "b@x.test"
BASE = dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC)
TOMBSTONE_KEYS = {"kind", "etag", "id", "status", "updated"}
FULL_SYNC = "Sync token is no longer valid, a full sync is required."
GOOG_HEADERS = {
    "X-Goog-Channel-ID",
    "X-Goog-Channel-Token",
    "X-Goog-Channel-Expiration",
    "X-Goog-Resource-ID",
    "X-Goog-Resource-URI",
    "X-Goog-Resource-State",
    "X-Goog-Message-Number",
}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses name resolution of anything but loopback, so no test can reach a Google host."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


# --- local helpers: a movable clock and a notification receiver ---------------------------------


class Clock:
    """Real UTC time plus an offset the tests move."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


class Receiver:
    """What CALENDAR_NOTIFICATIONS_URL would be: records every notification, answers ``status``."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner.lock:
                    owner.pushes.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/calendar/notifications"

    def wait(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The pushes once there are ``count`` of them (fails after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                if len(self.pushes) >= count:
                    return list(self.pushes)
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} notifications, got {len(self.pushes)}")
            time.sleep(0.01)

    def states(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [
                (
                    p["headers"]["X-Goog-Channel-ID"],
                    p["headers"]["X-Goog-Resource-State"],
                    p["headers"]["X-Goog-Message-Number"],
                )
                for p in self.pushes
            ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[FakeCalendarServer]:
    srv = FakeCalendarServer(clock=clock)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "server" not in request.fixturenames:
        return
    server: FakeCalendarServer = request.getfixturevalue("server")
    server.reset()
    clock: Clock = request.getfixturevalue("clock")
    clock.offset = dt.timedelta(0)
    receiver: Receiver = request.getfixturevalue("receiver")
    with receiver.lock:
        receiver.pushes.clear()
    receiver.status = 200


def client(server: FakeCalendarServer, subject: str | None, endpoint: str | None = None) -> Any:
    credentials: google.auth.credentials.Credentials
    if subject is None:
        credentials = google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
    else:
        credentials = google.oauth2.credentials.Credentials(token=f"local-subject:{subject}")  # type: ignore[no-untyped-call]
    return build(
        "calendar",
        "v3",
        static_discovery=True,
        credentials=credentials,
        client_options={"api_endpoint": endpoint or server.url + "calendar/v3/"},
    )


@pytest.fixture(scope="module")
def cal(server: FakeCalendarServer) -> Any:
    return client(server, A)


@pytest.fixture(scope="module")
def cal_b(server: FakeCalendarServer) -> Any:
    return client(server, B)


def control(server: FakeCalendarServer, path: str, body: Any = None) -> requests.Response:
    url = f"{server.url}_fake/calendar{path}"
    if body is None:
        return requests.get(url, timeout=30)
    return requests.post(url, json=body, timeout=30)


def post(server: FakeCalendarServer, events: list[dict[str, Any]], calendar: str = A) -> Any:
    response = control(server, "/events", {"calendar_id": calendar, "events": events})
    assert response.status_code == 200, response.text
    return response.json()


def http_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as info:
        call()
    body: dict[str, Any] = json.loads(info.value.content)
    return info.value.resp.status, body


def ts(minutes: float) -> str:
    return (BASE + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(eid: str, start: float = 0, end: float = 60, **extra: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "summary": f"meeting {eid}",
        "start": {"dateTime": ts(start)},
        "end": {"dateTime": ts(end)},
        **extra,
    }


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(i["id"]) for i in items]


def list_all(cal: Any, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item and every page of a listing, following nextPageToken with list_next."""
    events = cal.events()
    request = events.list(calendarId=A, **params)
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    while request is not None:
        page = request.execute()
        pages.append(page)
        items.extend(page["items"])
        request = events.list_next(request, page)
    return items, pages


def watch(cal: Any, receiver: Receiver, cid: str = "ch1", calendar: str = A, **extra: Any) -> Any:
    body = {"id": cid, "type": "web_hook", "address": receiver.url, **extra}
    return cal.events().watch(calendarId=calendar, body=body).execute()


def close_to(ms: str, expected: dt.datetime, tolerance_s: float = 5) -> bool:
    got = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=int(ms))
    return abs((got - expected).total_seconds()) <= tolerance_s


# --- events.list: paging ---------------------------------------------------------------------


def test_pages_are_250_by_default_2500_at_most_sync_token_on_the_last_page_only(
    server: FakeCalendarServer, cal: Any
) -> None:
    post(server, [event(f"e{i:04d}", start=i, end=i + 30) for i in range(2600)])
    items, pages = list_all(cal, singleEvents=True)
    assert [len(p["items"]) for p in pages] == [250] * 10 + [100]
    assert ids(items) == [f"e{i:04d}" for i in range(2600)]
    for page in pages[:-1]:
        assert page["nextPageToken"]
        assert "nextSyncToken" not in page
    assert pages[-1]["nextSyncToken"]
    assert "nextPageToken" not in pages[-1]
    capped = cal.events().list(calendarId=A, maxResults=5000).execute()
    assert len(capped["items"]) == 2500
    assert "nextPageToken" in capped
    assert "nextSyncToken" not in capped
    assert server.requests()[-1]["query"]["maxResults"] == "5000"
    status, body = http_error(lambda: cal.events().list(calendarId=A, maxResults=0).execute())
    assert (status, body["error"]["errors"][0]["reason"]) == (400, "invalid")


def test_listing_shape_and_an_empty_calendar(server: FakeCalendarServer, cal: Any) -> None:
    post(server, [])
    page = cal.events().list(calendarId=A).execute()
    assert page["items"] == []
    assert page["nextSyncToken"]
    assert {k: page[k] for k in ("kind", "summary", "timeZone", "accessRole")} == {
        "kind": "calendar#events",
        "summary": A,
        "timeZone": "UTC",
        "accessRole": "reader",
    }
    assert page["etag"].startswith('"')
    assert page["updated"].endswith("Z")


def test_page_token_is_bound_to_the_query(server: FakeCalendarServer, cal: Any) -> None:
    post(server, [event(f"e{i}", start=i) for i in range(5)])
    post(server, [event("b1")], calendar=B)
    page = cal.events().list(calendarId=A, singleEvents=True, maxResults=2).execute()
    token = page["nextPageToken"]
    # maxResults may change from page to page; the query may not.
    second = (
        cal.events().list(calendarId=A, singleEvents=True, maxResults=3, pageToken=token).execute()
    )
    assert ids(second["items"]) == ["e2", "e3", "e4"]
    for request in (
        cal.events().list(calendarId=A, singleEvents=True, showDeleted=True, pageToken=token),
        cal.events().list(calendarId=A, pageToken=token),
        cal.events().list(calendarId=B, singleEvents=True, pageToken=token),
        cal.events().list(calendarId=A, singleEvents=True, pageToken="bm9wZQ"),
    ):
        status, body = http_error(request.execute)
        assert status == 400
        assert body["error"]["errors"][0]["reason"] == "invalid"


# --- events.list: time window, showDeleted, filters -----------------------------------------------


def test_time_window_lists_what_ends_after_time_min_and_starts_before_time_max(
    server: FakeCalendarServer, cal: Any
) -> None:
    post(
        server,
        [
            event("a", 0, 60),
            event("b", 60, 120),
            event("c", 120, 180),
            {"id": "d", "start": {"date": "2026-01-16"}, "end": {"date": "2026-01-17"}},
            {"id": "e", "start": {"date": "2026-01-15"}, "end": {"date": "2026-01-16"}},
            {
                "id": "f",
                "start": {"dateTime": "2026-01-15T13:00:00", "timeZone": "Europe/Paris"},
                "end": {"dateTime": "2026-01-15T14:00:00", "timeZone": "Europe/Paris"},
            },
        ],
    )

    def listed(**window: str) -> list[str]:
        return sorted(ids(cal.events().list(calendarId=A, **window).execute()["items"]))

    assert listed(timeMin=ts(60), timeMax=ts(120)) == ["b", "e"]
    assert listed(timeMin=ts(59), timeMax=ts(120)) == ["a", "b", "e"]
    assert listed(timeMin="2026-01-15T11:00:01+01:00", timeMax="2026-01-15T11:00:01Z") == [
        "b",
        "c",
        "e",
    ]
    assert listed(timeMin=ts(179.5)) == ["c", "d", "e", "f"]
    assert listed(timeMax="2026-01-15T09:00:00.900Z") == ["e"]  # milliseconds are ignored
    assert listed(timeMin="2026-01-16T00:00:00Z") == ["d"]
    assert listed(timeMax="2026-01-16T00:00:00Z") == ["a", "b", "c", "e", "f"]
    assert listed(timeMin="2026-01-15T11:59:59Z", timeMax="2026-01-15T12:00:01Z") == [
        "c",
        "e",
        "f",
    ]
    status, body = http_error(
        lambda: cal.events().list(calendarId=A, timeMin=ts(60), timeMax=ts(60)).execute()
    )
    assert status == 400
    assert body["error"]["errors"][0] == {
        "domain": "calendar",
        "reason": "timeRangeEmpty",
        "message": "The specified time range is empty.",
        "locationType": "parameter",
        "location": "timeMax",
    }
    status, body = http_error(
        lambda: cal.events().list(calendarId=A, timeMin="2026-01-15 09:00").execute()
    )
    assert (status, body["error"]["errors"][0]["reason"]) == (400, "badRequest")


def test_show_deleted_lists_cancelled_events_as_google_returns_deleted_ones(
    server: FakeCalendarServer, cal: Any, clock: Clock
) -> None:
    post(server, [event("keep"), event("gone", 30, 90, attendees=[{"email": B}], location="R1")])
    clock.advance(minutes=5)
    post(server, [{"id": "gone", "status": "cancelled"}])
    assert ids(cal.events().list(calendarId=A).execute()["items"]) == ["keep"]
    items = cal.events().list(calendarId=A, showDeleted=True).execute()["items"]
    assert ids(items) == ["keep", "gone"]
    tomb = items[1]
    assert set(tomb) == TOMBSTONE_KEYS
    assert (tomb["kind"], tomb["status"]) == ("calendar#event", "cancelled")
    cancelled_at = dt.datetime.fromisoformat(tomb["updated"].replace("Z", "+00:00"))
    assert abs((cancelled_at - clock()).total_seconds()) < 5
    assert items[0]["status"] == "confirmed"
    # A deleted event keeps the times it had for the window.
    window = (
        cal.events()
        .list(calendarId=A, showDeleted=True, timeMin=ts(120), timeMax=ts(180))
        .execute()
    )
    assert window["items"] == []
    window = cal.events().list(calendarId=A, showDeleted=True, timeMin=ts(30)).execute()
    assert ids(window["items"]) == ["keep", "gone"]


def test_order_by_requires_single_events_and_instances_keep_their_fields(
    server: FakeCalendarServer, cal: Any, clock: Clock
) -> None:
    instance = event(
        "weekly_20260115T100000Z",
        60,
        90,
        recurringEventId="weekly",
        originalStartTime={"dateTime": ts(60)},
    )
    post(server, [event("late", 300, 360), instance])
    clock.advance(minutes=1)
    post(server, [event("early", -60, 0)])
    status, body = http_error(
        lambda: cal.events().list(calendarId=A, orderBy="startTime").execute()
    )
    assert status == 400
    assert body["error"]["message"] == (
        "The requested ordering is not available for the particular query."
    )
    by_start = cal.events().list(calendarId=A, orderBy="startTime", singleEvents=True).execute()
    assert ids(by_start["items"]) == ["early", "weekly_20260115T100000Z", "late"]
    by_update = cal.events().list(calendarId=A, orderBy="updated").execute()
    assert ids(by_update["items"])[-1] == "early"
    listed = by_start["items"][1]
    assert listed["recurringEventId"] == "weekly"
    assert listed["originalStartTime"] == {"dateTime": ts(60)}
    assert listed["iCalUID"] == "weekly@google.com"  # shared by every instance
    assert by_start["items"][0]["iCalUID"] == "early@google.com"


def test_filters_q_ical_uid_event_types_updated_min_properties_and_max_attendees(
    server: FakeCalendarServer, cal: Any, clock: Clock
) -> None:
    people = [{"email": A, "self": True}, {"email": B}, {"email": "c@x.test"}]
    post(
        server,
        [
            event("p", summary="Physics", attendees=people, iCalUID="shared@x"),
            event("f", summary="Focus", eventType="focusTime"),
            event("x", extendedProperties={"private": {"k": "v"}, "shared": {"s": "1"}}),
        ],
    )
    clock.advance(minutes=10)
    post(server, [event("new"), {"id": "f", "status": "cancelled"}])

    def listed(**params: Any) -> list[str]:
        return ids(cal.events().list(calendarId=A, **params).execute()["items"])

    assert listed(q="physICS") == ["p"]
    assert listed(q="c@x.test") == ["p"]
    assert listed(iCalUID="shared@x") == ["p"]
    assert sorted(listed(eventTypes=["default"])) == ["new", "p", "x"]
    assert listed(eventTypes=["focusTime"], showDeleted=True) == ["f"]
    # updatedMin includes what was deleted since, whatever showDeleted says.
    assert sorted(listed(updatedMin=format_time(clock() - dt.timedelta(minutes=1)))) == [
        "f",
        "new",
    ]
    assert listed(privateExtendedProperty="k=v", sharedExtendedProperty="s=1") == ["x"]
    assert listed(privateExtendedProperty="k=w") == []
    omitted = cal.events().list(calendarId=A, q="physics", maxAttendees=2).execute()["items"][0]
    assert omitted["attendees"] == [{"email": A, "self": True}]
    assert omitted["attendeesOmitted"] is True
    full = cal.events().list(calendarId=A, q="physics", maxAttendees=3).execute()["items"][0]
    assert len(full["attendees"]) == 3
    assert "attendeesOmitted" not in full


# --- incremental sync ------------------------------------------------------------------------


def test_incremental_sync_returns_every_change_since_the_token(
    server: FakeCalendarServer, cal: Any
) -> None:
    post(server, [event("e1"), event("e2"), event("e3")])
    items, pages = list_all(cal, singleEvents=True, timeMin=ts(-60), showDeleted=True)
    assert sorted(ids(items)) == ["e1", "e2", "e3"]
    token = pages[-1]["nextSyncToken"]
    post(
        server,
        [
            event("e1", summary="moved", start=30, end=90),
            {"id": "e2", "status": "cancelled"},
            event("e4", start=60 * 24 * 90, end=60 * 24 * 90 + 30),  # far outside the window
        ],
    )
    changes = cal.events().list(calendarId=A, singleEvents=True, syncToken=token).execute()
    assert ids(changes["items"]) == ["e1", "e2", "e4"]
    moved, deleted, added = changes["items"]
    assert (moved["summary"], moved["start"]) == ("moved", {"dateTime": ts(30)})
    assert set(deleted) == TOMBSTONE_KEYS
    assert deleted["status"] == "cancelled"
    assert added["status"] == "confirmed"
    assert "nextPageToken" not in changes
    # Nothing changed since: an empty page and a new token; showDeleted does not hide deletions.
    again = cal.events().list(calendarId=A, syncToken=changes["nextSyncToken"]).execute()
    assert again["items"] == []
    post(server, [{"id": "e3", "status": "cancelled"}])
    last = (
        cal.events()
        .list(calendarId=A, syncToken=again["nextSyncToken"], showDeleted=False)
        .execute()
    )
    assert ids(last["items"]) == ["e3"]
    assert set(last["items"][0]) == TOMBSTONE_KEYS
    # The same token can be used again: it names a point in the calendar's history.
    assert ids(cal.events().list(calendarId=A, syncToken=token).execute()["items"]) == [
        "e1",
        "e2",
        "e4",
        "e3",
    ]


def test_incremental_sync_pages_carry_the_sync_token_on_the_last_page_only(
    server: FakeCalendarServer, cal: Any
) -> None:
    post(server, [])
    token = cal.events().list(calendarId=A).execute()["nextSyncToken"]
    post(server, [event(f"n{i}") for i in range(7)])
    items, pages = list_all(cal, syncToken=token, maxResults=3)
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert ids(items) == [f"n{i}" for i in range(7)]
    assert all("nextPageToken" in p and "nextSyncToken" not in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1]
    assert "nextPageToken" not in pages[-1]


def test_a_change_made_while_paging_comes_back_in_the_next_incremental_sync(
    server: FakeCalendarServer, cal: Any
) -> None:
    post(server, [event(f"e{i}", start=i) for i in range(4)])
    events = cal.events()
    request = events.list(calendarId=A, maxResults=2)
    first = request.execute()
    assert ids(first["items"]) == ["e0", "e1"]
    post(server, [event("e0", summary="changed while paging")])
    second = events.list_next(request, first).execute()
    assert ids(second["items"]) == ["e2", "e3"]
    changes = events.list(calendarId=A, syncToken=second["nextSyncToken"]).execute()
    assert ids(changes["items"]) == ["e0"]
    assert changes["items"][0]["summary"] == "changed while paging"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("iCalUID", "u@x"),
        ("orderBy", "updated"),
        ("privateExtendedProperty", "k=v"),
        ("q", "physics"),
        ("sharedExtendedProperty", "k=v"),
        ("timeMin", "2026-01-15T00:00:00Z"),
        ("timeMax", "2026-01-15T00:00:00Z"),
        ("updatedMin", "2026-01-15T00:00:00Z"),
    ],
)
def test_sync_token_refuses_the_parameters_it_cannot_be_combined_with(
    server: FakeCalendarServer, cal: Any, name: str, value: str
) -> None:
    post(server, [event("e1")])
    token = cal.events().list(calendarId=A).execute()["nextSyncToken"]
    status, body = http_error(
        lambda: cal.events().list(calendarId=A, syncToken=token, **{name: value}).execute()
    )
    assert status == 400
    error = body["error"]
    assert error["code"] == 400
    assert error["errors"][0]["domain"] == "global"
    assert error["errors"][0]["reason"] == "invalid"
    assert error["errors"][0]["location"] == name
    assert error["message"] == error["errors"][0]["message"]
    assert name in error["message"]


def test_expired_sync_tokens_answer_410_and_a_full_sync_starts_over(
    server: FakeCalendarServer, cal: Any, cal_b: Any
) -> None:
    post(server, [event(f"e{i}") for i in range(3)])
    token = cal.events().list(calendarId=A).execute()["nextSyncToken"]
    post(server, [event("e1", summary="changed"), event("e2", summary="changed")])
    events = cal.events()
    request = events.list(calendarId=A, syncToken=token, maxResults=1)
    first = request.execute()
    assert control(server, "/expire-sync-tokens", {}).json() == {"ok": True}
    expected = {
        "error": {
            "code": 410,
            "message": FULL_SYNC,
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": FULL_SYNC,
                    "locationType": "parameter",
                    "location": "syncToken",
                }
            ],
        }
    }
    assert http_error(lambda: events.list(calendarId=A, syncToken=token).execute()) == (
        410,
        expected,
    )
    # The next page of an incremental listing carries the same syncToken: also gone.
    assert http_error(lambda: events.list_next(request, first).execute())[0] == 410
    fresh = events.list(calendarId=A).execute()
    assert len(fresh["items"]) == 3
    assert events.list(calendarId=A, syncToken=fresh["nextSyncToken"]).execute()["items"] == []
    # A token that is not ours, or is another calendar's, is gone too.
    tampered = "1" + fresh["nextSyncToken"]
    assert http_error(lambda: events.list(calendarId=A, syncToken=tampered).execute())[0] == 410
    post(server, [], calendar=B)
    assert (
        http_error(
            lambda: (
                cal_b.events()
                .list(calendarId="primary", syncToken=fresh["nextSyncToken"])
                .execute()
            )
        )[0]
        == 410
    )


# --- calendars and authentication ------------------------------------------------------------


def test_unknown_calendar_is_404_and_primary_is_the_subject(
    server: FakeCalendarServer, cal: Any, cal_b: Any, receiver: Receiver
) -> None:
    status, body = http_error(lambda: cal.events().list(calendarId="nobody@x.test").execute())
    assert status == 404
    assert body["error"]["errors"][0] == {
        "domain": "global",
        "reason": "notFound",
        "message": "Not Found",
    }
    assert http_error(lambda: cal.events().list(calendarId="primary").execute())[0] == 404
    post(server, [event("mine")])
    post(server, [event("theirs")], calendar=B)
    assert ids(cal.events().list(calendarId="primary").execute()["items"]) == ["mine"]
    assert ids(cal_b.events().list(calendarId="primary").execute()["items"]) == ["theirs"]
    # A watch creates the calendar it watches, empty.
    watch(cal, receiver, calendar="room@x.test")
    assert cal.events().list(calendarId="room@x.test").execute()["items"] == []


def raw_get(server: FakeCalendarServer, path: str, **headers: str) -> requests.Response:
    """A request the stock client would not send (it validates enums; it refreshes on 401)."""
    return requests.get(f"{server.url}calendar/v3/{path}", headers=headers, timeout=30)


def test_requests_without_credentials_are_401_and_enums_are_checked(
    server: FakeCalendarServer,
) -> None:
    post(server, [event("e1")])
    answer = raw_get(server, "calendars/a%40x.test/events")
    assert answer.status_code == 401
    detail = answer.json()["error"]["errors"][0]
    assert (detail["reason"], detail["location"]) == ("required", "Authorization")
    assert server.requests()[-1]["subject"] is None
    bearer = {"Authorization": f"Bearer local-subject:{A}"}
    assert raw_get(server, "calendars/a%40x.test/events", **bearer).status_code == 200
    for query in ("eventTypes=party", "orderBy=size", "showDeleted=perhaps", "maxResults=many"):
        answer = raw_get(server, f"calendars/a%40x.test/events?{query}", **bearer)
        assert answer.status_code == 400, query
        assert answer.json()["error"]["errors"][0]["reason"] == "invalid"


def test_an_api_endpoint_without_calendar_v3_is_404_with_a_hint(
    server: FakeCalendarServer,
) -> None:
    post(server, [event("e1")])
    wrong = client(server, A, endpoint=server.url)
    status, body = http_error(lambda: wrong.events().list(calendarId=A).execute())
    assert status == 404
    assert "calendar/v3/" in body["error"]["message"]
    assert server.requests()[-1]["path"] == "/calendars/a%40x.test/events"


# --- events.watch and notifications ----------------------------------------------------------


def test_watch_answers_a_channel_then_pushes_sync_without_a_body(
    server: FakeCalendarServer, cal: Any, receiver: Receiver, clock: Clock
) -> None:
    answer = watch(cal, receiver, token="secret-1")
    assert set(answer) == {"kind", "id", "resourceId", "resourceUri", "token", "expiration"}
    assert (answer["kind"], answer["id"], answer["token"]) == ("api#channel", "ch1", "secret-1")
    assert answer["resourceUri"] == (
        "https://www.googleapis.com/calendar/v3/calendars/a@x.test/events?alt=json"
    )
    assert isinstance(answer["expiration"], str)
    assert close_to(answer["expiration"], clock() + dt.timedelta(seconds=604800))
    push = receiver.wait(1)[0]
    assert push["path"] == "/calendar/notifications"
    assert push["body"] == b""
    headers = push["headers"]
    assert headers["Content-Length"] == "0"
    assert "Content-Type" not in headers
    assert set(headers) >= GOOG_HEADERS
    assert headers["X-Goog-Channel-ID"] == "ch1"
    assert headers["X-Goog-Channel-Token"] == "secret-1"
    assert headers["X-Goog-Resource-ID"] == answer["resourceId"]
    assert headers["X-Goog-Resource-URI"] == answer["resourceUri"]
    assert (headers["X-Goog-Resource-State"], headers["X-Goog-Message-Number"]) == ("sync", "1")
    expires = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        milliseconds=int(answer["expiration"])
    )
    assert headers["X-Goog-Channel-Expiration"] == format_http_date(expires)
    assert headers["X-Goog-Channel-Expiration"].endswith(" GMT")
    # The resource id is stable per calendar.
    other = watch(cal, receiver, cid="ch2")
    assert other["resourceId"] == answer["resourceId"]
    assert "token" not in other
    assert watch(cal, receiver, cid="ch3", calendar=B)["resourceId"] != answer["resourceId"]
    listed = control(server, "/channels").json()["channels"]
    assert listed[0] == {
        "id": "ch1",
        "resourceId": answer["resourceId"],
        "calendar_id": A,
        "address": receiver.url,
        "token": "secret-1",
        "expiration": answer["expiration"],
    }
    assert [c["id"] for c in listed] == ["ch1", "ch2", "ch3"]
    assert listed[1]["token"] is None


def test_changes_push_exists_to_every_open_channel_with_increasing_numbers(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    watch(cal, receiver, cid="with-token", token="t")
    watch(cal, receiver, cid="plain")
    watch(cal, receiver, cid="elsewhere", calendar=B)
    receiver.wait(3)
    assert post(server, [event("e1")]) == {
        "notified": [{"channel": "with-token", "status": 200}, {"channel": "plain", "status": 200}]
    }
    receiver.status = 500
    assert post(server, [event("e1", summary="again")])["notified"][0]["status"] == 500
    pushes = receiver.wait(7)
    assert sorted(receiver.states()[3:]) == [
        ("plain", "exists", "2"),
        ("plain", "exists", "3"),
        ("with-token", "exists", "2"),
        ("with-token", "exists", "3"),
    ]
    for push in pushes[3:]:
        assert push["body"] == b""
        token = push["headers"].get("X-Goog-Channel-Token")
        assert token == ("t" if push["headers"]["X-Goog-Channel-ID"] == "with-token" else None)
    assert all(p["headers"]["X-Goog-Channel-ID"] != "elsewhere" for p in pushes[3:])
    log = control(server, "/pushes").json()
    assert [(p["channel"], p["state"], p["status"]) for p in log if p["channel"] == "plain"] == [
        ("plain", "sync", 200),
        ("plain", "exists", 200),
        ("plain", "exists", 500),
    ]


def test_sync_comes_first_even_when_a_change_follows_the_watch_at_once(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    for i in range(5):
        watch(cal, receiver, cid=f"c{i}")
        post(server, [event(f"e{i}")])
    receiver.wait(20)
    for i in range(5):
        mine = [(s, n) for c, s, n in receiver.states() if c == f"c{i}"]
        assert mine == [("sync", "1")] + [("exists", str(n)) for n in range(2, 2 + 5 - i)]


def test_channels_stop_answers_empty_and_ends_the_pushes(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    answer = watch(cal, receiver)
    receiver.wait(1)
    status, body = http_error(
        lambda: cal.channels().stop(body={"id": "ch1", "resourceId": "other"}).execute()
    )
    assert (status, body["error"]["errors"][0]["reason"]) == (404, "notFound")
    stop = {"id": "ch1", "resourceId": answer["resourceId"]}
    assert cal.channels().stop(body=stop).execute() == ""
    assert server.requests()[-1]["status"] == 204
    assert control(server, "/channels").json() == {"channels": []}
    assert post(server, [event("e1")]) == {"notified": []}
    time.sleep(0.1)
    assert receiver.states() == [("ch1", "sync", "1")]
    assert http_error(lambda: cal.channels().stop(body=stop).execute())[0] == 404
    unknown = {"id": "never", "resourceId": answer["resourceId"]}
    assert http_error(lambda: cal.channels().stop(body=unknown).execute())[0] == 404


def test_channels_expire_by_the_clock(
    server: FakeCalendarServer, cal: Any, receiver: Receiver, clock: Clock
) -> None:
    short = watch(cal, receiver, cid="short", params={"ttl": "60"})
    assert close_to(short["expiration"], clock() + dt.timedelta(seconds=60), 2)
    capped = watch(cal, receiver, cid="capped", params={"ttl": str(30 * 86400)})
    assert close_to(capped["expiration"], clock() + dt.timedelta(days=7), 2)
    asked = int((clock() + dt.timedelta(hours=1)).timestamp() * 1000)
    chosen = watch(cal, receiver, cid="chosen", expiration=asked)
    assert chosen["expiration"] == str(asked)
    receiver.wait(3)
    clock.advance(seconds=61)
    assert post(server, [event("e1")])["notified"] == [
        {"channel": "capped", "status": 200},
        {"channel": "chosen", "status": 200},
    ]
    assert [c["id"] for c in server.channels()] == ["capped", "chosen"]
    stop = {"id": "short", "resourceId": short["resourceId"]}
    assert http_error(lambda: cal.channels().stop(body=stop).execute())[0] == 404
    clock.advance(hours=2)
    assert post(server, [event("e1")])["notified"] == [{"channel": "capped", "status": 200}]
    clock.advance(days=7)
    assert post(server, [event("e1")])["notified"] == []
    assert server.channels() == []
    time.sleep(0.1)
    assert [c for c, s, _ in receiver.states() if s == "exists"] == ["capped", "chosen", "capped"]


@pytest.mark.parametrize(
    "address",
    [
        "https://example.com/calendar/notifications",
        "http://10.0.0.8/calendar/notifications",
        "http://localhost:9/calendar/notifications",
        "ftp://127.0.0.1/calendar/notifications",
        "http://user@127.0.0.1:9/calendar/notifications",
        "127.0.0.1:9/calendar/notifications",
    ],
)
def test_watch_refuses_addresses_off_loopback(
    server: FakeCalendarServer, cal: Any, receiver: Receiver, address: str
) -> None:
    body = {"id": "ch1", "type": "web_hook", "address": address}
    status, error = http_error(lambda: cal.events().watch(calendarId=A, body=body).execute())
    assert status == 400
    assert error["error"]["errors"][0]["reason"] == "push.webhookUrlUnauthorized"
    assert server.channels() == []
    assert control(server, "/notify", {"channel": "x", "address": address}).status_code == 400
    time.sleep(0.05)
    assert receiver.pushes == []


def test_watch_validates_the_channel(
    server: FakeCalendarServer, cal: Any, receiver: Receiver, clock: Clock
) -> None:
    answer = watch(cal, receiver, cid="used", type="webhook")
    cal.channels().stop(body={"id": "used", "resourceId": answer["resourceId"]}).execute()
    past = int((clock() - dt.timedelta(minutes=1)).timestamp() * 1000)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"id": "used"}, "channelIdNotUnique"),  # even once stopped
        ({"id": "x" * 65}, "invalid"),
        ({"id": "has space"}, "invalid"),
        ({"type": "email"}, "invalid"),
        ({"params": {"ttl": "soon"}}, "invalid"),
        ({"params": {"ttl": "0"}}, "invalid"),
        ({"expiration": past}, "invalid"),
        ({"token": "t" * 257}, "invalid"),
    ]
    for extra, reason in cases:
        body = {"id": "fresh", "type": "web_hook", "address": receiver.url, **extra}
        status, error = http_error(cal.events().watch(calendarId=A, body=body).execute)
        assert (status, error["error"]["errors"][0]["reason"]) == (400, reason), extra
    missing = {"id": "fresh", "type": "web_hook"}
    status, error = http_error(lambda: cal.events().watch(calendarId=A, body=missing).execute())
    assert (status, error["error"]["errors"][0]["reason"]) == (400, "required")
    assert watch(cal, receiver, cid="x" * 64, token="t" * 256)["id"] == "x" * 64


# --- control: events, holding, hand-made notifications, faults -------------------------------


def test_posted_events_are_stamped_by_the_fake_and_invalid_bodies_change_nothing(
    server: FakeCalendarServer, cal: Any, clock: Clock
) -> None:
    clock.advance(hours=-3)
    post(server, [event("e1", updated="2000-01-01T00:00:00Z", etag='"mine"'), {**event("x")}])
    first = cal.events().list(calendarId=A).execute()["items"][0]
    assert first["kind"] == "calendar#event"
    assert first["status"] == "confirmed"
    assert first["iCalUID"] == "e1@google.com"
    assert first["etag"] != '"mine"'
    stamped = dt.datetime.fromisoformat(first["updated"].replace("Z", "+00:00"))
    assert abs((stamped - clock()).total_seconds()) < 5
    assert first["created"] == first["updated"]
    clock.advance(minutes=1)
    post(server, [event("e1", summary="replaced")])
    replaced = cal.events().list(calendarId=A).execute()["items"][0]
    assert replaced["summary"] == "replaced"
    assert replaced["created"] == first["created"]
    assert replaced["updated"] > first["updated"]
    assert replaced["etag"] != first["etag"]
    generated = post(server, [{"start": {"date": "2026-02-01"}, "end": {"date": "2026-02-02"}}])
    assert generated == {"notified": []}
    stored = control(server, f"/events?calendar_id={A}").json()["events"]
    assert len(stored) == 3
    assert stored[-1]["id"]
    assert stored[-1]["iCalUID"] == stored[-1]["id"] + "@google.com"
    before = cal.events().list(calendarId=A).execute()["items"]
    for bad in (
        [event("ok"), {"id": "no-times"}],
        [event("ok"), event("backwards", start=60, end=0)],
        [event("ok"), {"id": "y", "start": {"dateTime": "soon"}, "end": {"dateTime": ts(1)}}],
        [event("ok"), {**event("z"), "recurringEventId": "r"}],
        [event("ok"), {**event("z"), "status": "maybe"}],
        [event("ok"), "not an object"],
    ):
        response = control(server, "/events", {"calendar_id": A, "events": bad})
        assert response.status_code == 400
        assert response.json()["error"].startswith("events[1]")
    assert cal.events().list(calendarId=A).execute()["items"] == before
    assert control(server, "/events", {"calendar_id": "primary", "events": []}).status_code == 400
    assert control(server, "/events", {"calendar": A, "events": []}).status_code == 400


def test_held_notifications_are_flushed_in_order(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    assert control(server, "/config", {"push": False}).json()["push"] is False
    watch(cal, receiver)
    assert post(server, [event("e1")]) == {
        "notified": [{"channel": "ch1", "status": None, "held": True}]
    }
    time.sleep(0.1)
    assert receiver.pushes == []
    assert control(server, "/config").json() == {"push": False, "held": 2}
    flushed = control(server, "/config", {"push": True}).json()
    assert [(f["state"], f["message_number"], f["status"]) for f in flushed["flushed"]] == [
        ("sync", 1, 200),
        ("exists", 2, 200),
    ]
    assert receiver.states() == [("ch1", "sync", "1"), ("ch1", "exists", "2")]
    assert post(server, [event("e2")])["notified"] == [{"channel": "ch1", "status": 200}]


def test_notify_sends_hand_made_and_forged_notifications(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    answer = watch(cal, receiver, token="real")
    receiver.wait(1)
    forged = control(
        server,
        "/notify",
        {
            "channel": "ch1",
            "headers": {"X-Goog-Channel-Token": "forged", "X-Goog-Resource-URI": None},
        },
    ).json()
    assert forged["status"] == 200
    push = receiver.wait(2)[1]
    assert push["headers"]["X-Goog-Channel-Token"] == "forged"
    assert "X-Goog-Resource-URI" not in push["headers"]
    assert push["headers"]["X-Goog-Message-Number"] == "2"
    assert push["headers"]["X-Goog-Resource-State"] == "exists"
    cal.channels().stop(body={"id": "ch1", "resourceId": answer["resourceId"]}).execute()
    # A stopped channel still sends what is sent by hand (a late notification).
    assert server.notify("ch1", "not_exists")["status"] == 200
    assert receiver.wait(3)[2]["headers"]["X-Goog-Resource-State"] == "not_exists"
    stranger = control(server, "/notify", {"channel": "stranger", "address": receiver.url}).json()
    assert stranger["status"] == 200
    assert receiver.wait(4)[3]["headers"]["X-Goog-Channel-ID"] == "stranger"
    assert control(server, "/notify", {"channel": "stranger"}).status_code == 404
    assert control(server, "/notify", {"channel": "ch1", "state": "gone"}).status_code == 400


def test_faults_answer_calendar_errors_by_prefix_and_count(
    server: FakeCalendarServer, cal: Any, receiver: Receiver
) -> None:
    post(server, [event("e1")])
    response = control(
        server,
        "/faults",
        {
            "faults": [
                {
                    "path_prefix": "/calendar/v3/calendars/",
                    "status": 503,
                    "count": 2,
                    "retry_after_s": 1.5,
                },
                {
                    "path_prefix": "/calendar/v3/channels/",
                    "status": 403,
                    "reason": "rateLimitExceeded",
                },
            ]
        },
    )
    assert response.json() == {"added": 2}
    for _ in range(2):
        with pytest.raises(HttpError) as info:
            cal.events().list(calendarId=A).execute()
        assert info.value.resp.status == 503
        assert info.value.resp.get("retry-after") == "2"
        assert json.loads(info.value.content)["error"]["errors"][0]["reason"] == "backendError"
    assert ids(cal.events().list(calendarId=A).execute()["items"]) == ["e1"]
    status, body = http_error(
        lambda: cal.channels().stop(body={"id": "c", "resourceId": "r"}).execute()
    )
    assert status == 403
    assert body["error"]["errors"][0] == {
        "domain": "usageLimits",
        "reason": "rateLimitExceeded",
        "message": "Rate Limit Exceeded",
    }
    server.add_faults({"path_prefix": "/calendar/", "status": 410})
    assert http_error(lambda: cal.events().list(calendarId=A).execute())[1]["error"]["message"] == (
        FULL_SYNC
    )
    assert [r["status"] for r in server.requests()] == [503, 503, 200, 403, 410]
    assert control(server, "/faults", {"path_prefix": "calendar", "status": 503}).status_code == 400
    assert control(server, "/faults", {"path_prefix": "/c", "status": 200}).status_code == 400


def test_request_log_and_reset(server: FakeCalendarServer, cal: Any, receiver: Receiver) -> None:
    post(server, [event("e1")])
    cal.events().list(
        calendarId=A, singleEvents=True, eventTypes=["default", "focusTime"]
    ).execute()
    watch(cal, receiver)
    receiver.wait(1)
    log = control(server, "/requests").json()
    assert [(r["method"], r["path"], r["status"], r["subject"]) for r in log] == [
        ("GET", "/calendar/v3/calendars/a%40x.test/events", 200, A),
        ("POST", "/calendar/v3/calendars/a%40x.test/events/watch", 200, A),
    ]
    assert log[0]["query"]["singleEvents"] == "true"
    assert log[0]["query"]["eventTypes"] == ["default", "focusTime"]
    assert control(server, "/reset", {}).json() == {"ok": True}
    assert control(server, "/requests").json() == []
    assert control(server, "/channels").json() == {"channels": []}
    assert http_error(lambda: cal.events().list(calendarId=A).execute())[0] == 404
    assert control(server, "/health").json() == {"ok": True}
    assert requests.get(f"{server.url}_fake/health", timeout=10).json() == {"ok": True}


# --- small parts, lifecycle and the CLI ------------------------------------------------------


def test_time_formats() -> None:
    when = dt.datetime(2026, 12, 8, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert format_http_date(when) == "Tue, 08 Dec 2026 10:00:00 GMT"
    assert format_time(when) == "2026-12-08T10:00:00.123Z"
    paris = dt.timezone(dt.timedelta(hours=1))
    assert format_http_date(when.astimezone(paris)) == "Tue, 08 Dec 2026 10:00:00 GMT"


def test_stop_is_idempotent_and_url_needs_a_start() -> None:
    srv = FakeCalendarServer()
    with pytest.raises(RuntimeError):
        _ = srv.url
    with srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.url.endswith("/")
    srv.stop()


def test_cli_ready_line_and_clean_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.fake_calendar", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake-calendar ready url=http://127.0.0.1:")
        url = line.split("url=", 1)[1]
        assert url.endswith("/")
        assert requests.get(f"{url}_fake/calendar/health", timeout=10).json() == {"ok": True}
        answer = requests.post(
            f"{url}_fake/calendar/events", json={"calendar_id": A, "events": []}, timeout=10
        )
        assert answer.json() == {"notified": []}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
