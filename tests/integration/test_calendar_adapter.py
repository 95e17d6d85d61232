"""GoogleCalendarApi, built as production builds it: the stock googleapiclient client from the
static discovery document, google_auth_httplib2 and httplib2 doing the HTTP.

The first part answers the client from a recording connection (the exact requests, and what each
Google answer becomes); the second runs it against the local fake of Calendar v3
(:mod:`local.fake_calendar`), with static ``local-subject:<email>`` tokens. Only the sleeps are
recorded instead of slept.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import datetime as dt
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth
import google.oauth2.credentials
import httplib2
import pytest

from functions.adapters.backoff import Backoff
from functions.adapters.calendar import (
    ADDRESS_HELP,
    CALENDAR_API,
    ENABLE_HELP,
    EVENTS_PAGE_SIZE,
    GoogleCalendarApi,
    calendar_endpoint,
    channel_of,
    expiration_of,
    page_of,
    redact,
    rfc3339,
)
from functions.adapters.google_credentials import (
    MEET_SCOPE,
    CredentialsFor,
    SubjectConnections,
    keyless_delegated_credentials,
)
from functions.adapters.workspace import workspace_service
from functions.calendar_records import CALENDAR_EVENTS_SCOPE, CalendarPage, OpenedChannel
from functions.config import Settings
from functions.errors import SyncTokenExpired, WorkspaceError
from functions.ports import CalendarApi
from local.fake_calendar import FakeCalendarServer
from local.fake_google_auth import FakeIam, FakeSourceCredentials, FakeTokenServer

ORGANIZER = "olive.organizer@school.example"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
STAND_IN = "http://127.0.0.1:9/"


class Sleeps:
    """Records the delays the adapter asks for instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution of anything but loopback fails, and so does any lookup of Application
    Default Credentials: against a stand-in the adapter must not look for Google credentials."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    def no_default(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("google.auth.default() was called")

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.setattr(google.auth, "default", no_default)
    monkeypatch.delenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", raising=False
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def backoff(sleeps: Sleeps, **options: Any) -> Backoff:
    return Backoff(sleep=sleeps, jitter=lambda: 1.0, base_delay_s=0.01, **options)


def settings_for(endpoint: str | None) -> Settings:
    env = {
        "GOOGLE_CLOUD_PROJECT": "demo-attendance",
        "TASKS_LOCATION": "europe-west1",
        "TASKS_QUEUE": "collect",
        "COLLECT_URL": "http://127.0.0.1:9/collect",
        "TASKS_SERVICE_ACCOUNT": "tasks@demo-attendance.iam.gserviceaccount.com",
        "REPORTS_ADMIN_SUBJECT": "reports-admin@school.example",
    }
    if endpoint is not None:
        env["CALENDAR_API_ENDPOINT"] = endpoint
    return Settings.from_env(env, role="cli")


def static_token(subject: str) -> Any:
    return google.oauth2.credentials.Credentials(token="local-subject:" + subject)  # type: ignore[no-untyped-call]


def google_error(status: int, reason: str = "", message: str = "") -> dict[str, Any]:
    """Calendar's error body: the legacy ``errors[]`` with a reason, and ``error.message``."""
    text = message or {404: "Not Found", 410: "Gone", 503: "Backend Error"}.get(status, "Error")
    entries = [{"domain": "global", "reason": reason, "message": text}] if reason else []
    return {"error": {"code": status, "message": text, "errors": entries}}


# ----------------------------------------------------------------------------- recorded HTTP


class Recorded:
    """The requests sent (subject, method, path, query, body) and the answers queued for them:
    ``(status, JSON body or None, headers)``; an empty queue answers 200 ``{}``."""

    def __init__(self, *answers: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def answer(self, subject: str, uri: str, method: str, body: Any, headers: Any) -> Any:
        parts = urllib.parse.urlsplit(uri)
        self.sent.append(
            {
                "subject": subject,
                "method": method,
                "path": parts.path,
                "query": dict(urllib.parse.parse_qsl(parts.query)),
                "body": json.loads(body) if body else None,
                "authorization": dict(headers or {}).get("authorization"),
            }
        )
        status, payload, *more = self.answers.pop(0) if self.answers else (200, {})
        info = {
            "status": str(status),
            "content-type": "application/json",
            **(more[0] if more else {}),
        }
        content = b"" if payload is None else json.dumps(payload).encode()
        return httplib2.Response(info), content


class Answering:
    """An httplib2.Http for the API's requests, answered from :class:`Recorded`."""

    def __init__(self, recorded: Recorded, subject: str) -> None:
        self.recorded = recorded
        self.subject = subject

    def request(
        self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any
    ) -> Any:
        return self.recorded.answer(self.subject, uri, method, body, headers)

    def close(self) -> None:
        pass


class RecordingConnections(SubjectConnections):
    """The real authorised connections (static tokens by default, or delegated credentials),
    whose requests to the API are answered from :class:`Recorded`; a token exchange still goes
    to its token server."""

    def __init__(self, recorded: Recorded, credentials_for: CredentialsFor = static_token) -> None:
        super().__init__(credentials_for)
        self.recorded = recorded

    def http(self, subject: str) -> Any:
        authorised = super().http(subject)
        authorised.http = Answering(self.recorded, subject)
        return authorised


def recorded_api(recorded: Recorded, sleeps: Sleeps) -> GoogleCalendarApi:
    return GoogleCalendarApi(
        workspace_service("calendar", "v3", calendar_endpoint(STAND_IN)),
        RecordingConnections(recorded),
        backoff=backoff(sleeps),
    )


def test_the_adapter_implements_the_port(sleeps: Sleeps) -> None:
    # Checked by mypy: the adapter is assignable to its port.
    port: CalendarApi = recorded_api(Recorded(), sleeps)
    assert port is not None


@pytest.mark.parametrize(
    ("setting", "endpoint"),
    [
        (None, None),
        ("", None),
        ("http://127.0.0.1:8085", "http://127.0.0.1:8085/calendar/v3/"),
        ("http://127.0.0.1:8085/", "http://127.0.0.1:8085/calendar/v3/"),
        ("http://127.0.0.1:8085/calendar/v3", "http://127.0.0.1:8085/calendar/v3/"),
        ("http://127.0.0.1:8085/calendar/v3/", "http://127.0.0.1:8085/calendar/v3/"),
        ("http://127.0.0.1:8085/proxy/", "http://127.0.0.1:8085/proxy/calendar/v3/"),
    ],
)
def test_the_endpoint_ends_in_calendar_v3(setting: str | None, endpoint: str | None) -> None:
    assert calendar_endpoint(setting) == endpoint


def test_from_settings_points_the_client_at_calendar_v3() -> None:
    stand_in = GoogleCalendarApi.from_settings(settings_for("http://127.0.0.1:8085"))
    assert stand_in._service._baseUrl == "http://127.0.0.1:8085/calendar/v3/"
    google_itself = GoogleCalendarApi.from_settings(settings_for(None))
    assert google_itself._service._baseUrl == "https://www.googleapis.com/calendar/v3/"


def test_a_full_listing_and_an_incremental_one_ask_what_google_documents(sleeps: Sleeps) -> None:
    recorded = Recorded(
        (200, {"items": [{"id": "e1"}], "nextPageToken": "p2"}),
        (200, {"items": [{"id": "e2"}], "nextSyncToken": "s1"}),
        (200, {"items": [], "nextSyncToken": "s2"}),
    )
    api = recorded_api(recorded, sleeps)
    later = T0 + dt.timedelta(days=29, microseconds=1500)

    first = api.events_page(ORGANIZER, as_user=ORGANIZER, time_min=T0, time_max=later)
    last = api.events_page(
        ORGANIZER, as_user=ORGANIZER, time_min=T0, time_max=later, page_token="p2"
    )
    delta = api.events_page(ORGANIZER, as_user=ORGANIZER, sync_token="s1")

    assert first == CalendarPage(events=({"id": "e1"},), next_page_token="p2")
    assert last == CalendarPage(events=({"id": "e2"},), next_sync_token="s1")
    assert delta == CalendarPage(events=(), next_sync_token="s2")
    path = f"/calendar/v3/calendars/{urllib.parse.quote(ORGANIZER)}/events"
    assert [(r["method"], r["path"]) for r in recorded.sent] == [("GET", path)] * 3
    common = {"singleEvents": "true", "showDeleted": "true", "maxResults": str(EVENTS_PAGE_SIZE)}
    window = {"timeMin": "2026-03-02T09:00:00.000Z", "timeMax": "2026-03-31T09:00:00.001Z"}
    assert recorded.sent[0]["query"] == {**common, **window, "alt": "json"}
    assert recorded.sent[1]["query"] == {**common, **window, "pageToken": "p2", "alt": "json"}
    assert recorded.sent[2]["query"] == {**common, "syncToken": "s1", "alt": "json"}
    assert {r["subject"] for r in recorded.sent} == {ORGANIZER}
    assert {r["authorization"] for r in recorded.sent} == {f"Bearer local-subject:{ORGANIZER}"}


def test_a_sync_token_is_never_combined_with_a_time_range(sleeps: Sleeps) -> None:
    recorded = Recorded()
    api = recorded_api(recorded, sleeps)
    with pytest.raises(ValueError, match="cannot combine"):
        api.events_page("primary", as_user=ORGANIZER, sync_token="s1", time_min=T0)
    with pytest.raises(ValueError, match="cannot combine"):
        api.events_page("primary", as_user=ORGANIZER, sync_token="s1", time_max=T0)
    with pytest.raises(ValueError, match="aware"):
        api.events_page("primary", as_user=ORGANIZER, time_min=dt.datetime(2026, 3, 2))  # noqa: DTZ001
    with pytest.raises(ValueError, match="calendar id"):
        api.events_page(" ", as_user=ORGANIZER)
    assert recorded.sent == []
    assert rfc3339(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == (
        "2026-03-02T09:00:00.000Z"
    )


def test_watch_and_stop_send_the_channel(sleeps: Sleeps) -> None:
    recorded = Recorded(
        (
            200,
            {
                "kind": "api#channel",
                "id": "ch-1",
                "resourceId": "res-1",
                "resourceUri": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
                "token": "tok",
                "expiration": "1772442000000",
            },
        ),
        (204, None),
    )
    api = recorded_api(recorded, sleeps)

    opened = api.watch(
        "primary",
        as_user=ORGANIZER,
        channel_id="ch-1",
        token="tok",
        address="https://collector.example/calendar",
        ttl_s=86400,
    )
    api.stop(as_user=ORGANIZER, channel_id="ch-1", resource_id="res-1")

    assert opened == OpenedChannel(
        id="ch-1", resource_id="res-1", expiration=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    )
    watch, stop = recorded.sent
    assert (watch["method"], watch["path"]) == (
        "POST",
        "/calendar/v3/calendars/primary/events/watch",
    )
    assert watch["body"] == {
        "id": "ch-1",
        "type": "web_hook",
        "address": "https://collector.example/calendar",
        "token": "tok",
        "params": {"ttl": "86400"},
    }
    assert (stop["method"], stop["path"], stop["query"]) == (
        "POST",
        "/calendar/v3/channels/stop",
        {},
    )
    assert stop["body"] == {"id": "ch-1", "resourceId": "res-1"}
    with pytest.raises(ValueError, match="channel id"):
        api.watch(
            "primary", as_user=ORGANIZER, channel_id="x" * 65, token="t", address="a", ttl_s=1
        )
    with pytest.raises(ValueError, match="ttl"):
        api.watch("primary", as_user=ORGANIZER, channel_id="c", token="t", address="a", ttl_s=0)


def test_pages_and_channels_are_read_defensively() -> None:
    page = page_of({"items": [{"id": "a"}, "junk", 3, None, {"id": "b"}], "nextSyncToken": "s"})
    assert page == CalendarPage(events=({"id": "a"}, {"id": "b"}), next_sync_token="s")
    # A sync token next to a next page is not the last page's: it is dropped.
    assert page_of({"items": "x", "nextPageToken": "p", "nextSyncToken": "s"}) == CalendarPage(
        events=(), next_page_token="p"
    )
    assert page_of({"nextPageToken": "", "nextSyncToken": 7}) == CalendarPage(events=())
    with pytest.raises(WorkspaceError, match="repeated a page token") as info:
        page_of({"nextPageToken": "p"}, page_token="p")
    assert info.value.kind == "transient"

    assert expiration_of("1772442000000") == T0
    assert expiration_of(1772442000123) == T0 + dt.timedelta(milliseconds=123)
    for bad in (None, "", "soon", "-5", "1.5", True, 1.5e12, "9" * 15, "9" * 16):
        assert expiration_of(bad) is None, bad
    assert channel_of({"id": "c", "resourceId": "r"}, "c") == OpenedChannel(
        id="c", resource_id="r", expiration=None
    )
    assert channel_of({"resourceId": "r", "expiration": "x"}, "c") == OpenedChannel(
        id="c", resource_id="r", expiration=None
    )
    assert channel_of({"id": "c"}, "c") is None
    assert channel_of({"id": "other", "resourceId": "r"}, "c") is None


def test_redaction_removes_the_subject_and_every_address() -> None:
    text = redact(
        f"credentials for {ORGANIZER!r} unavailable: see x.y+z@group.calendar.google.com",
        subject=ORGANIZER,
    )
    assert text == "credentials for the organizer unavailable: see <address>"
    assert redact("no address here") == "no address here"


# ----------------------------------------------------------------------------- answers


def errors_of(
    sleeps: Sleeps, status: int, reason: str = "", message: str = ""
) -> dict[str, BaseException | None]:
    """What each call raises when Google answers ``status`` (with ``reason``) to it."""
    raised: dict[str, BaseException | None] = {}
    calls: dict[str, Callable[[GoogleCalendarApi], object]] = {
        "list": lambda api: api.events_page(ORGANIZER, as_user=ORGANIZER, sync_token="s"),
        "watch": lambda api: api.watch(
            ORGANIZER, as_user=ORGANIZER, channel_id="c", token="t", address="a", ttl_s=60
        ),
        "stop": lambda api: api.stop(as_user=ORGANIZER, channel_id="c", resource_id="r"),
    }
    for name, call in calls.items():
        api = recorded_api(Recorded((status, google_error(status, reason, message))), sleeps)
        try:
            call(api)
        except Exception as error:
            raised[name] = error
        else:
            raised[name] = None
    return raised


def test_410_is_an_expired_sync_token(sleeps: Sleeps) -> None:
    raised = errors_of(sleeps, 410, "fullSyncRequired")
    assert isinstance(raised["list"], SyncTokenExpired)
    assert raised["list"].calendar_id == ORGANIZER
    assert isinstance(raised["watch"], WorkspaceError)
    assert raised["stop"] is None
    assert sleeps.delays == []


def test_404_is_a_calendar_the_organizer_cannot_read_and_a_stopped_channel(sleeps: Sleeps) -> None:
    raised = errors_of(sleeps, 404, "notFound")
    for name in ("list", "watch"):
        error = raised[name]
        assert isinstance(error, WorkspaceError), name
        assert error.kind == "permission"
        assert error.message == (
            "the organizer's primary calendar is not readable as the organizer (404): the "
            "organizer must be a Workspace user of this domain whose primary calendar exists"
        )
    assert raised["stop"] is None

    api = recorded_api(Recorded((404, google_error(404)), (404, google_error(404))), sleeps)
    with pytest.raises(WorkspaceError) as info:
        api.events_page("c0ffee@group.calendar.google.com", as_user=ORGANIZER)
    assert info.value.message.startswith("the calendar is not readable as the organizer (404)")
    with pytest.raises(WorkspaceError) as info:
        api.events_page("team-room", as_user=ORGANIZER)
    assert info.value.message.startswith("calendar 'team-room' is not readable as the organizer")


@pytest.mark.parametrize("reason", ["accessNotConfigured", "SERVICE_DISABLED"])
def test_403_api_not_enabled(sleeps: Sleeps, reason: str) -> None:
    message = "Google Calendar API has not been used in project 123 before or it is disabled."
    for name, error in errors_of(sleeps, 403, reason, message).items():
        assert isinstance(error, WorkspaceError), name
        assert error.kind == "permission"
        assert error.message.endswith(": enable the Google Calendar API in the project")


def test_401_and_an_insufficient_scope_name_the_calendar_scope(sleeps: Sleeps) -> None:
    for status, reason in ((401, "authError"), (403, "insufficientPermissions")):
        for name, error in errors_of(sleeps, status, reason).items():
            assert isinstance(error, WorkspaceError), name
            assert error.kind == "permission"
            assert (
                f"authorise the service account's client id for {CALENDAR_EVENTS_SCOPE}"
                in error.message
            )
            assert "Domain-wide delegation" in error.message


def test_a_plain_403_is_a_calendar_the_organizer_may_not_read(sleeps: Sleeps) -> None:
    message = f"The user {ORGANIZER} may not see calendar x@group.calendar.google.com"
    for name, error in errors_of(sleeps, 403, "forbidden", message).items():
        assert isinstance(error, WorkspaceError), name
        assert error.kind == "permission"
        assert error.message.endswith(": the organizer may not read that calendar")
        assert "@" not in error.message


def test_a_400_on_watch_names_the_address(sleeps: Sleeps) -> None:
    raised = errors_of(sleeps, 400, "invalid", "WebHook callback must be HTTPS: a")
    watch = raised["watch"]
    assert isinstance(watch, WorkspaceError)
    assert watch.kind == "permission"
    assert "the notification address must be an HTTPS URL" in watch.message
    for name in ("list", "stop"):
        error = raised[name]
        assert isinstance(error, WorkspaceError), name
        assert error.kind == "transient"
        assert "answered 400" in error.message
    duplicate = errors_of(sleeps, 400, "channelIdNotUnique", "Channel id not unique")["watch"]
    assert isinstance(duplicate, WorkspaceError)
    assert duplicate.kind == "transient"
    assert "HTTPS" not in duplicate.message


def test_5xx_and_rate_limits_are_retried_with_the_shared_backoff(sleeps: Sleeps) -> None:
    recorded = Recorded(
        (503, google_error(503, "backendError")),
        (403, google_error(403, "rateLimitExceeded")),
        (429, google_error(429, "rateLimitExceeded"), {"retry-after": "3"}),
        (200, {"items": [{"id": "e1"}], "nextSyncToken": "s"}),
    )
    api = recorded_api(recorded, sleeps)
    page = api.events_page(ORGANIZER, as_user=ORGANIZER)
    assert page.events == ({"id": "e1"},)
    assert len(recorded.sent) == 4
    assert sleeps.delays == [0.01, 0.02, 3.0]

    always = Recorded(*[(503, google_error(503, "backendError"))] * 10)
    with pytest.raises(WorkspaceError) as info:
        recorded_api(always, Sleeps()).stop(as_user=ORGANIZER, channel_id="c", resource_id="r")
    assert info.value.kind == "quota"  # 503 is how Google says "slow down"
    assert len(always.sent) == 6
    assert info.value.message.startswith(f"{CALENDAR_API} 503 backendError after 6 attempt(s)")


def test_answers_that_are_not_objects_are_transient(sleeps: Sleeps) -> None:
    api = recorded_api(Recorded((200, ["not", "an", "object"]), (200, {"id": "c"})), sleeps)
    with pytest.raises(WorkspaceError, match="non-object"):
        api.events_page("primary", as_user=ORGANIZER)
    with pytest.raises(WorkspaceError, match="no channel") as info:
        api.watch("primary", as_user=ORGANIZER, channel_id="c", token="t", address="a", ttl_s=9)
    assert info.value.kind == "transient"


# ----------------------------------------------------------------------------- delegation


def delegated(
    token_server: FakeTokenServer, iam: FakeIam, recorded: Recorded, sleeps: Sleeps
) -> GoogleCalendarApi:
    def credentials(subject: str) -> Any:
        return keyless_delegated_credentials(
            subject=subject,
            source=FakeSourceCredentials(),
            request=iam,
            token_uri=token_server.token_uri,
            scopes=[CALENDAR_EVENTS_SCOPE],
        )

    return GoogleCalendarApi(
        workspace_service("calendar", "v3", calendar_endpoint(STAND_IN)),
        RecordingConnections(recorded, credentials),
        backoff=backoff(sleeps),
    )


def test_keyless_delegation_asks_for_the_calendar_scope(sleeps: Sleeps) -> None:
    iam = FakeIam()
    recorded = Recorded((200, {"items": [], "nextSyncToken": "s"}))
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=CALENDAR_EVENTS_SCOPE, iam=iam
    ) as token_server:
        api = delegated(token_server, iam, recorded, sleeps)
        assert api.events_page("primary", as_user=ORGANIZER).next_sync_token == "s"
        grants = token_server.requests()
    assert [(g["status"], g["claims"]["sub"], g["claims"]["scope"]) for g in grants] == [
        (200, ORGANIZER, CALENDAR_EVENTS_SCOPE)
    ]
    (sent,) = recorded.sent
    assert sent["authorization"].startswith("Bearer ")


def test_a_scope_not_authorised_is_a_permission_error_without_the_address(sleeps: Sleeps) -> None:
    iam = FakeIam()
    recorded = Recorded()
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=MEET_SCOPE, iam=iam
    ) as token_server:
        api = delegated(token_server, iam, recorded, sleeps)
        with pytest.raises(WorkspaceError) as info:
            api.events_page("primary", as_user=ORGANIZER)
    assert info.value.kind == "permission"
    assert "unauthorized_client" in info.value.message
    assert (
        f"authorise the service account's client id for {CALENDAR_EVENTS_SCOPE}"
        in info.value.message
    )
    assert "@" not in info.value.message
    assert recorded.sent == []
    assert sleeps.delays == []


def test_an_organizer_outside_the_workspace_or_no_address_at_all(sleeps: Sleeps) -> None:
    iam = FakeIam()
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=CALENDAR_EVENTS_SCOPE, iam=iam
    ) as token_server:
        api = delegated(token_server, iam, Recorded(), sleeps)
        stranger = "stranger@elsewhere.example"
        with pytest.raises(WorkspaceError) as info:
            api.events_page(stranger, as_user=stranger)
        assert info.value.kind == "permission"
        assert info.value.message.startswith(
            "the organizer must be a Workspace user of this domain"
        )
        assert "@" not in info.value.message
        with pytest.raises(WorkspaceError) as info:
            api.stop(as_user="olive", channel_id="c", resource_id="r")
    assert info.value.kind == "permission"
    assert "unavailable" in info.value.message
    assert "olive" not in info.value.message


# ----------------------------------------------------------------------------- the fake Calendar


class Clock:
    """The fake's clock (channel expiry, ``updated``), moved by the tests."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class Receiver:
    """A push receiver on 127.0.0.1: records every notification's headers, answers 200."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self._changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with owner._changed:
                    owner.headers.append(dict(self.headers.items()))
                    owner._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/calendar/notifications"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def states(self, count: int, *, timeout_s: float = 5.0) -> list[str]:
        """The ``X-Goog-Resource-State`` of the first ``count`` notifications, once arrived."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.headers) < count and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return [h.get("X-Goog-Resource-State", "") for h in self.headers]


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[FakeCalendarServer]:
    with FakeCalendarServer(clock=clock) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeCalendarServer, clock: Clock) -> FakeCalendarServer:
    server.reset()
    clock.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return server


@pytest.fixture
def calendar(fake: FakeCalendarServer, sleeps: Sleeps) -> GoogleCalendarApi:
    return GoogleCalendarApi.from_settings(settings_for(fake.url), backoff=backoff(sleeps))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def meeting(number: int, **fields: Any) -> dict[str, Any]:
    start = T0 + dt.timedelta(minutes=number)
    code = f"abc-mnop-{number % 1000:03d}"
    return {
        "id": f"ev{number:05d}",
        "summary": f"Lesson {number}",
        "start": {"dateTime": stamp(start)},
        "end": {"dateTime": stamp(start + dt.timedelta(minutes=45))},
        "organizer": {"email": ORGANIZER, "self": True},
        "conferenceData": {
            "conferenceId": code,
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://meet.google.com/{code}"}],
        },
        **fields,
    }


def stamp(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def full_listing(
    calendar: GoogleCalendarApi, calendar_id: str = ORGANIZER
) -> tuple[list[dict[str, Any]], str, int]:
    """Every event over [T0 - 1 day, T0 + 29 days), the sync token, and how many pages."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        page = calendar.events_page(
            calendar_id,
            as_user=ORGANIZER,
            time_min=T0 - dt.timedelta(days=1),
            time_max=T0 + dt.timedelta(days=29),
            page_token=token,
        )
        pages += 1
        events.extend(dict(event) for event in page.events)
        if page.next_page_token is None:
            assert page.next_sync_token is not None
            return events, page.next_sync_token, pages
        assert page.next_sync_token is None
        token = page.next_page_token


def test_a_full_listing_across_pages_then_incremental_changes(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    count = EVENTS_PAGE_SIZE + 40
    fake.add_events(ORGANIZER, [meeting(number) for number in range(count)])
    far = meeting(99999, start={"dateTime": "2027-01-01T09:00:00Z"})
    far["end"] = {"dateTime": "2027-01-01T10:00:00Z"}
    fake.add_events(ORGANIZER, [far, meeting(count, status="cancelled")])

    events, token, pages = full_listing(calendar)

    assert pages == 2
    assert len(events) == count + 1  # the cancelled one too (showDeleted), not the far one
    assert {e["id"] for e in events if e["status"] == "cancelled"} == {f"ev{count:05d}"}
    assert events[0]["conferenceData"]["conferenceId"] == "abc-mnop-000"
    listing = fake.requests()
    assert [(r["method"], r["status"], r["subject"]) for r in listing] == [
        ("GET", 200, ORGANIZER)
    ] * 2
    assert listing[0]["path"] == f"/calendar/v3/calendars/{urllib.parse.quote(ORGANIZER)}/events"
    first = listing[0]["query"]
    assert (first["singleEvents"], first["showDeleted"], first["maxResults"]) == (
        "true",
        "true",
        "2500",
    )
    assert "pageToken" in listing[1]["query"]

    moved = meeting(3, start={"dateTime": stamp(T0 + dt.timedelta(hours=5))})
    moved["end"] = {"dateTime": stamp(T0 + dt.timedelta(hours=6))}
    fake.add_events(
        ORGANIZER, [moved, {"id": "ev00004", "status": "cancelled"}, meeting(count + 1)]
    )

    delta = calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token=token)

    assert delta.next_page_token is None
    assert delta.next_sync_token not in (None, token)
    by_id = {e["id"]: e for e in delta.events}
    assert set(by_id) == {"ev00003", "ev00004", f"ev{count + 1:05d}"}
    assert by_id["ev00003"]["start"] == moved["start"]
    assert by_id["ev00004"]["status"] == "cancelled"
    incremental = fake.requests()[-1]["query"]
    assert incremental["syncToken"] == token
    assert not {"timeMin", "timeMax"} & set(incremental)

    assert delta.next_sync_token is not None
    quiet = calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token=delta.next_sync_token)
    assert quiet.events == ()
    assert quiet.next_sync_token is not None


def test_primary_is_the_organizers_calendar(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    fake.add_events(ORGANIZER, [meeting(1)])
    page = calendar.events_page("primary", as_user=ORGANIZER)
    assert [e["id"] for e in page.events] == ["ev00001"]
    assert fake.requests()[-1]["path"] == "/calendar/v3/calendars/primary/events"


def test_an_expired_sync_token_asks_for_a_full_sync(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, sleeps: Sleeps
) -> None:
    fake.add_events(ORGANIZER, [meeting(1)])
    _, token, _ = full_listing(calendar)
    fake.expire_sync_tokens()

    with pytest.raises(SyncTokenExpired) as info:
        calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token=token)
    assert info.value.calendar_id == ORGANIZER
    assert (info.value.status, info.value.code) == (410, "sync_token_expired")
    assert sleeps.delays == []  # not retried
    assert fake.requests()[-1]["status"] == 410

    # A full sync starts again, and its token works.
    events, fresh, _ = full_listing(calendar)
    assert [e["id"] for e in events] == ["ev00001"]
    assert calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token=fresh).events == ()


def test_watch_opens_a_channel_that_notifies_the_address(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, receiver: Receiver, clock: Clock
) -> None:
    channel_id = str(uuid.uuid4())

    opened = calendar.watch(
        ORGANIZER,
        as_user=ORGANIZER,
        channel_id=channel_id,
        token="secret-token-1",
        address=receiver.url,
        ttl_s=3600,
    )

    assert opened.id == channel_id
    assert opened.expiration == clock.now + dt.timedelta(hours=1)
    (stored,) = fake.channels()
    assert (stored["id"], stored["resourceId"], stored["calendar_id"]) == (
        channel_id,
        opened.resource_id,
        ORGANIZER,
    )
    assert (stored["address"], stored["token"]) == (receiver.url, "secret-token-1")
    assert receiver.states(1) == ["sync"]

    answer = fake.add_events(ORGANIZER, [meeting(1)])
    assert answer["notified"] == [{"channel": channel_id, "status": 200}]
    assert receiver.states(2) == ["sync", "exists"]
    for headers in receiver.headers:
        assert headers["X-Goog-Channel-ID"] == channel_id
        assert headers["X-Goog-Channel-Token"] == "secret-token-1"
        assert headers["X-Goog-Resource-ID"] == opened.resource_id
    assert [h["X-Goog-Message-Number"] for h in receiver.headers] == ["1", "2"]
    (watch,) = fake.requests()
    assert (watch["method"], watch["path"], watch["subject"]) == (
        "POST",
        f"/calendar/v3/calendars/{urllib.parse.quote(ORGANIZER)}/events/watch",
        ORGANIZER,
    )


def test_stop_is_idempotent(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, receiver: Receiver
) -> None:
    opened = calendar.watch(
        "primary",
        as_user=ORGANIZER,
        channel_id="ch-stop",
        token="t",
        address=receiver.url,
        ttl_s=60,
    )
    assert receiver.states(1) == ["sync"]

    calendar.stop(as_user=ORGANIZER, channel_id=opened.id, resource_id=opened.resource_id)
    calendar.stop(as_user=ORGANIZER, channel_id=opened.id, resource_id=opened.resource_id)
    calendar.stop(as_user=ORGANIZER, channel_id="never-opened", resource_id="nothing")

    assert fake.channels() == []
    assert [(r["path"], r["status"]) for r in fake.requests()[1:]] == [
        ("/calendar/v3/channels/stop", 204),
        ("/calendar/v3/channels/stop", 404),
        ("/calendar/v3/channels/stop", 404),
    ]
    assert fake.add_events(ORGANIZER, [meeting(1)])["notified"] == []
    assert receiver.states(1) == ["sync"]


def test_a_channel_id_used_before_is_refused(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, receiver: Receiver
) -> None:
    calendar.watch(
        "primary", as_user=ORGANIZER, channel_id="ch-dup", token="t", address=receiver.url, ttl_s=60
    )
    with pytest.raises(WorkspaceError) as info:
        calendar.watch(
            "primary",
            as_user=ORGANIZER,
            channel_id="ch-dup",
            token="t",
            address=receiver.url,
            ttl_s=60,
        )
    assert info.value.kind == "transient"
    assert "not unique" in info.value.message


def test_an_address_google_will_not_call_is_a_permission_error(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    with pytest.raises(WorkspaceError) as info:
        calendar.watch(
            "primary",
            as_user=ORGANIZER,
            channel_id="ch-far",
            token="t",
            address="https://collector.example/calendar",
            ttl_s=60,
        )
    assert info.value.kind == "permission"
    assert info.value.message.endswith(ADDRESS_HELP)
    assert fake.channels() == []


def test_503_and_429_are_retried(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, receiver: Receiver, sleeps: Sleeps
) -> None:
    fake.add_events(ORGANIZER, [meeting(1)])
    fake.add_faults({"path_prefix": "/calendar/v3/calendars/", "status": 503, "count": 2})

    page = calendar.events_page(ORGANIZER, as_user=ORGANIZER)

    assert [e["id"] for e in page.events] == ["ev00001"]
    assert [r["status"] for r in fake.requests()] == [503, 503, 200]
    assert sleeps.delays == [0.01, 0.02]

    fake.add_faults(
        {"path_prefix": "/calendar/v3/channels/stop", "status": 429, "retry_after_s": 2}
    )
    opened = calendar.watch(
        "primary", as_user=ORGANIZER, channel_id="ch-429", token="t", address=receiver.url, ttl_s=60
    )
    calendar.stop(as_user=ORGANIZER, channel_id=opened.id, resource_id=opened.resource_id)
    assert sleeps.delays[2:] == [2.0]
    assert [r["status"] for r in fake.requests()][-2:] == [429, 204]
    assert fake.channels() == []


DISABLED = (
    "Google Calendar API has not been used in project 123456 before or it is disabled. Enable it "
    "by visiting https://console.developers.google.com/apis/api/calendar-json.googleapis.com/"
    "overview?project=123456 then retry."
)


def test_the_api_not_enabled_names_the_step(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi, receiver: Receiver, sleeps: Sleeps
) -> None:
    fake.add_faults(
        {
            "path_prefix": "/calendar/v3/",
            "status": 403,
            "count": 3,
            "reason": "accessNotConfigured",
            "message": DISABLED,
        }
    )
    calls: list[Callable[[], object]] = [
        lambda: calendar.events_page(ORGANIZER, as_user=ORGANIZER),
        lambda: calendar.watch(
            ORGANIZER, as_user=ORGANIZER, channel_id="c", token="t", address=receiver.url, ttl_s=9
        ),
        lambda: calendar.stop(as_user=ORGANIZER, channel_id="c", resource_id="r"),
    ]
    for call in calls:
        with pytest.raises(WorkspaceError) as info:
            call()
        assert info.value.kind == "permission"
        assert info.value.message.startswith(f"the {CALENDAR_API} is not enabled (")
        assert info.value.message.endswith(f": {ENABLE_HELP}")
    assert sleeps.delays == []
    assert [r["status"] for r in fake.requests()] == [403, 403, 403]


def test_a_calendar_that_does_not_exist(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    with pytest.raises(WorkspaceError) as info:
        calendar.events_page(ORGANIZER, as_user=ORGANIZER)
    assert info.value.kind == "permission"
    assert info.value.message == (
        "the organizer's primary calendar is not readable as the organizer (404): the organizer "
        "must be a Workspace user of this domain whose primary calendar exists"
    )


def test_the_host_root_and_the_full_endpoint_both_work(
    fake: FakeCalendarServer, sleeps: Sleeps
) -> None:
    fake.add_events(ORGANIZER, [meeting(1)])
    for endpoint in (fake.url, fake.url.rstrip("/"), fake.api_endpoint):
        api = GoogleCalendarApi.from_settings(settings_for(endpoint), backoff=backoff(sleeps))
        assert len(api.events_page("primary", as_user=ORGANIZER).events) == 1
    assert {r["path"] for r in fake.requests()} == {"/calendar/v3/calendars/primary/events"}


def failures(fake: FakeCalendarServer, calendar: GoogleCalendarApi) -> list[Exception]:
    """Every failure each call can end in, against the fake."""
    other = "x.y@group.calendar.google.com"
    faults: list[dict[str, Any]] = [
        {"status": 401, "reason": "authError"},
        {"status": 403, "reason": "forbidden", "message": f"{ORGANIZER} may not read {other}"},
        {"status": 403, "reason": "insufficientPermissions"},
        {"status": 403, "reason": "accessNotConfigured", "message": DISABLED},
        {"status": 404, "message": f"Not Found: {ORGANIZER}"},
        {"status": 400, "reason": "invalid", "message": f"Invalid value {ORGANIZER}"},
        {"status": 500, "count": 6, "reason": "backendError"},
        {"status": 403, "count": 6, "reason": "quotaExceeded"},
    ]
    calls: list[Callable[[], object]] = [
        lambda: calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token="s"),
        lambda: calendar.events_page(other, as_user=ORGANIZER),
        lambda: calendar.watch(
            ORGANIZER,
            as_user=ORGANIZER,
            channel_id="c1",
            token="t",
            address="http://127.0.0.1:9/",
            ttl_s=9,
        ),
        lambda: calendar.watch(
            other,
            as_user=ORGANIZER,
            channel_id="c2",
            token="t",
            address="https://x.example/",
            ttl_s=9,
        ),
        lambda: calendar.stop(as_user=ORGANIZER, channel_id="c", resource_id="r"),
    ]
    raised: list[Exception] = []
    for fault in faults:
        for call in calls:
            fake.reset()
            fake.add_faults({"path_prefix": "/calendar/v3/", **fault})
            try:
                call()
            except Exception as error:
                raised.append(error)
    return raised


def test_no_error_message_carries_an_email_address(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    raised = failures(fake, calendar)
    fake.reset()
    for call in (
        lambda: calendar.events_page("nobody@school.example", as_user=ORGANIZER),
        lambda: calendar.watch(
            "primary",
            as_user=ORGANIZER,
            channel_id="c3",
            token="t",
            address=f"https://{ORGANIZER}/",
            ttl_s=9,
        ),
    ):
        with pytest.raises(WorkspaceError) as info:
            call()
        raised.append(info.value)

    assert len(raised) >= 35
    assert {type(error) for error in raised} == {WorkspaceError}
    kinds = {error.kind for error in raised if isinstance(error, WorkspaceError)}
    assert kinds == {"permission", "quota", "transient"}
    for error in raised:
        assert "@" not in str(error), error
        assert "@" not in getattr(error, "message", ""), error


def test_an_expired_sync_token_of_a_primary_calendar_carries_no_email(
    fake: FakeCalendarServer, calendar: GoogleCalendarApi
) -> None:
    fake.add_faults({"path_prefix": "/calendar/v3/", "status": 410})
    with pytest.raises(SyncTokenExpired) as info:
        calendar.events_page(ORGANIZER, as_user=ORGANIZER, sync_token="s")
    assert "@" not in info.value.message
