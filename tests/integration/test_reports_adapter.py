"""GoogleReportsSource, built as production builds it, against the fake Reports API.

The stock googleapiclient client, google_auth_httplib2 and httplib2 do the HTTP; only the sleeps
are recorded instead of slept, so the backoff schedule is checked without waiting for it.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions.adapters.google_credentials import (
    REPORTS_SCOPE,
    SIGN_BLOB_HELP,
    UNAUTHORIZED_CLIENT_HELP,
    keyless_delegated_credentials,
)
from functions.adapters.reports import FIELDS, GoogleReportsSource, reports_service
from functions.config import Settings
from functions.errors import ReportsError
from functions.ports import FetchStats
from local.fake_google_auth import FakeIam, FakeSourceCredentials, FakeTokenServer
from local.fake_reports import FakeReportsServer
from local.simulate import call_ended, rfc3339

CODE = "ABCDEFGHIJ"
OTHER_CODE = "KLMNOPQRST"
ADMIN = "reports-admin@school.example"
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
REPORTS_PATH = "/admin/reports/v1/activity/users/all/applications/meet"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def settings_for(url: str) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "attendance-test",
            "TASKS_LOCATION": "europe-west1",
            "TASKS_QUEUE": "collect",
            "COLLECT_URL": "http://127.0.0.1:9/collect",
            "TASKS_SERVICE_ACCOUNT": "tasks@attendance-test.iam.gserviceaccount.com",
            "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "REPORTS_API_ENDPOINT": url,
        }
    )


class Sleeps:
    """Records the delays the adapter asks for instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution of anything but loopback fails: nothing here may reach Google."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.delenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", raising=False
    )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeReportsServer]:
    with FakeReportsServer() as fake:
        yield fake


@pytest.fixture
def reports(server: FakeReportsServer) -> FakeReportsServer:
    server.reset()
    return server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def source_for(
    reports: FakeReportsServer,
    sleeps: Sleeps,
    *,
    timeout_s: float = 30.0,
    credentials: Any = None,
    **options: Any,
) -> GoogleReportsSource:
    service = reports_service(
        settings_for(reports.url), timeout_s=timeout_s, credentials=credentials
    )
    return GoogleReportsSource(
        service, sleep=sleeps, jitter=lambda: 1.0, base_delay_s=0.01, **options
    )


def hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def activities(count: int, *, code: str = CODE, conference: str = "conf-a") -> list[dict[str, Any]]:
    leave = hour_ago()
    return [
        call_ended(
            meeting_code=code,
            conference_id=conference,
            leave=leave - timedelta(milliseconds=index * 7),
            duration_s=600,
            identifier=f"student{index:05d}@school.example",
            endpoint_id=f"spaces/{conference}/devices/{index}",
        )
        for index in range(count)
    ]


def fetch(source: GoogleReportsSource) -> tuple[list[Any], FetchStats]:
    return source.call_ended(meeting_code=CODE, start=hour_ago() - timedelta(hours=1))


def statuses(reports: FakeReportsServer) -> list[int]:
    return [int(r["status"]) for r in reports.requests()]


# ----------------------------------------------------------------------------- paging and query


def test_every_page_is_fetched_with_the_documented_query(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(2500))
    reports.add_activities(activities(40, code=OTHER_CODE, conference="conf-other"))
    start = hour_ago() - timedelta(hours=1)

    items, stats = source_for(reports, sleeps).call_ended(meeting_code=CODE, start=start)

    assert stats == FetchStats(pages=3, requests=3, activities=2500)
    assert len({item["id"]["uniqueQualifier"] for item in items}) == 2500
    codes = {
        p["value"]
        for item in items
        for p in item["events"][0]["parameters"]
        if p["name"] == "meeting_code"
    }
    assert codes == {CODE}
    logged = reports.requests()
    assert [(r["method"], r["path"], r["status"]) for r in logged] == [
        ("GET", REPORTS_PATH, 200)
    ] * 3
    first = logged[0]["query"]
    assert first["eventName"] == "call_ended"
    assert first["filters"] == f"meeting_code=={CODE}"
    assert first["startTime"] == rfc3339(start)
    assert first["maxResults"] == "1000"
    assert first["fields"] == FIELDS
    assert "endTime" not in first
    assert "pageToken" not in first
    assert all("pageToken" in r["query"] for r in logged[1:])
    assert all(r["query"]["startTime"] == rfc3339(start) for r in logged)
    assert sleeps.delays == []


def test_partial_response_keeps_what_attendance_needs(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(1))
    (item,), _ = fetch(source_for(reports, sleeps))
    assert set(item) == {"id", "actor", "events"}
    assert set(item["id"]) == {"time", "uniqueQualifier"}
    assert item["actor"]["email"] == "student00000@school.example"
    names = {p["name"] for p in item["events"][0]["parameters"]}
    assert {"meeting_code", "conference_id", "endpoint_id", "duration_seconds"} <= names


def test_end_is_sent_when_given(reports: FakeReportsServer, sleeps: Sleeps) -> None:
    end = hour_ago() + timedelta(minutes=30)
    source_for(reports, sleeps).call_ended(
        meeting_code=CODE, start=hour_ago() - timedelta(hours=1), end=end
    )
    (logged,) = reports.requests()
    assert logged["query"]["endTime"] == rfc3339(end)


# ----------------------------------------------------------------------------- retries


def test_quota_503_waits_at_least_retry_after_then_succeeds(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(3))
    reports.add_fault("quota", count=1, retry_after_s=7)

    items, stats = fetch(source_for(reports, sleeps))

    assert len(items) == 3
    assert stats == FetchStats(pages=1, requests=2, activities=3)
    assert statuses(reports) == [503, 200]
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 7


def test_403_user_rate_limit_is_retried_not_reported_as_permission(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(2))
    reports.add_fault("rate_limit_403", count=2)

    items, stats = fetch(source_for(reports, sleeps))

    assert len(items) == 2
    assert stats.requests == 3
    assert statuses(reports) == [403, 403, 200]
    assert sleeps.delays == pytest.approx([0.01, 0.02])


def test_429_is_retried(reports: FakeReportsServer, sleeps: Sleeps) -> None:
    reports.add_activities(activities(2))
    reports.add_fault("rate_limit_429", count=1, retry_after_s=2)

    items, _ = fetch(source_for(reports, sleeps))

    assert len(items) == 2
    assert statuses(reports) == [429, 200]
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 2


def test_500_backend_error_is_retried_with_growing_delays(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(2))
    reports.add_fault("server_error", count=3)

    items, stats = fetch(source_for(reports, sleeps))

    assert len(items) == 2
    assert stats == FetchStats(pages=1, requests=4, activities=2)
    assert statuses(reports) == [500, 500, 500, 200]
    assert sleeps.delays == pytest.approx([0.01, 0.02, 0.04])


def _requests_within(reports: FakeReportsServer, count: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while len(reports.requests()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(reports.requests())


def test_the_next_page_is_asked_for_while_the_caller_holds_this_one(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(2500))
    pages = source_for(reports, sleeps).call_ended_pages(
        meeting_code=CODE, start=hour_ago() - timedelta(hours=1)
    )

    first = next(pages)

    assert len(first.activities) == 1000
    # The second page's request goes out without the caller asking; never a third ahead.
    assert _requests_within(reports, 2, seconds=5.0) == 2
    time.sleep(0.2)
    assert len(reports.requests()) == 2
    rest = list(pages)
    assert [len(p.activities) for p in rest] == [1000, 500]
    assert len(reports.requests()) == 3


def test_a_caller_that_stops_early_neither_waits_for_the_page_in_flight_nor_asks_for_more(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(3500))
    reports.add_fault("slow", delay_s=1.5, after_pages=1)  # the second page answers late
    pages = source_for(reports, sleeps).call_ended_pages(
        meeting_code=CODE, start=hour_ago() - timedelta(hours=1)
    )
    next(pages)
    time.sleep(0.3)  # the second page's request is out, its answer 1.2 s away

    started = time.monotonic()
    pages.close()  # type: ignore[attr-defined]  # a generator, as the adapter returns it

    assert time.monotonic() - started < 1.0
    time.sleep(2.0)  # the late second page arrived meanwhile: nothing asked for after it
    assert len(reports.requests()) == 2


def test_a_fault_on_a_later_page_is_retried_and_every_page_still_arrives(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(1500))
    source = source_for(reports, sleeps)
    calls = 0
    original = source._execute

    def fault_before_second_page(request: Any) -> tuple[Any, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            reports.add_fault("server_error", count=1)
        return original(request)

    source._execute = fault_before_second_page  # type: ignore[method-assign]
    items, stats = fetch(source)

    assert len({item["id"]["uniqueQualifier"] for item in items}) == 1500
    assert stats == FetchStats(pages=2, requests=3, activities=1500)
    assert statuses(reports) == [200, 500, 200]


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [("quota", "quota", 503), ("rate_limit_429", "quota", 429), ("server_error", "transient", 500)],
)
def test_retries_exhausted_raise_reports_error(
    reports: FakeReportsServer, sleeps: Sleeps, fault: str, kind: str, status: int
) -> None:
    reports.add_fault(fault, count=10, retry_after_s=0)

    with pytest.raises(ReportsError) as info:
        fetch(source_for(reports, sleeps, max_attempts=3))

    assert info.value.kind == kind
    assert info.value.retryable
    assert str(status) in info.value.message
    assert statuses(reports) == [status] * 3
    assert len(sleeps.delays) == 2


def test_total_wait_is_bounded_even_when_retry_after_is_long(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_fault("quota", count=1, retry_after_s=600)

    with pytest.raises(ReportsError) as info:
        fetch(source_for(reports, sleeps, max_total_wait_s=30))

    assert info.value.kind == "quota"
    assert statuses(reports) == [503]
    assert sleeps.delays == []


# ----------------------------------------------------------------------------- permission


def test_401_not_admin_is_a_permission_error_naming_the_subject(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_fault("not_admin", count=5)

    with pytest.raises(ReportsError) as info:
        fetch(source_for(reports, sleeps))

    assert info.value.kind == "permission"
    assert not info.value.retryable
    assert "REPORTS_ADMIN_SUBJECT" in info.value.message
    assert "admin" in info.value.message
    assert statuses(reports) == [401]
    assert sleeps.delays == []


def test_403_not_authorized_is_a_permission_error_naming_the_admin_steps(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_fault("not_authorized", count=5)

    with pytest.raises(ReportsError) as info:
        fetch(source_for(reports, sleeps))

    message = info.value.message
    assert info.value.kind == "permission"
    assert "Admin SDK API" in message
    assert "client id" in message
    assert REPORTS_SCOPE in message
    assert "Reports privilege" in message
    assert statuses(reports) == [403]
    assert sleeps.delays == []


# ----------------------------------------------------------------------------- timeouts


def test_slow_answer_within_the_timeout_works(reports: FakeReportsServer, sleeps: Sleeps) -> None:
    reports.add_activities(activities(2))
    reports.add_fault("slow", count=1, delay_s=0.5)

    items, stats = fetch(source_for(reports, sleeps, timeout_s=30))

    assert len(items) == 2
    assert stats.requests == 1
    assert sleeps.delays == []


def test_answer_slower_than_the_timeout_is_retried(
    reports: FakeReportsServer, sleeps: Sleeps
) -> None:
    reports.add_activities(activities(2))
    reports.add_fault("slow", count=1, delay_s=3)

    items, stats = fetch(source_for(reports, sleeps, timeout_s=0.5))

    assert len(items) == 2
    assert stats.requests == 2
    assert sleeps.delays == pytest.approx([0.01])


def test_unreachable_endpoint_is_transient(sleeps: Sleeps) -> None:
    with FakeReportsServer() as gone:
        url = gone.url  # nothing listens there once it has stopped
    source = GoogleReportsSource(
        reports_service(settings_for(url), timeout_s=5),
        sleep=sleeps,
        jitter=lambda: 1.0,
        base_delay_s=0.01,
        max_attempts=2,
    )
    with pytest.raises(ReportsError) as info:
        fetch(source)
    assert info.value.kind == "transient"
    assert "unreachable" in info.value.message
    assert len(sleeps.delays) == 1


# ----------------------------------------------------------------------------- keyless delegation


TOKEN = "fake-token-for-reports"


@pytest.fixture
def iam() -> FakeIam:
    return FakeIam()


@pytest.fixture
def secured() -> Iterator[FakeReportsServer]:
    with FakeReportsServer(require_token=TOKEN) as fake:
        yield fake


def delegated(iam: FakeIam, token_server: FakeTokenServer) -> Any:
    return keyless_delegated_credentials(
        subject=ADMIN,
        source=FakeSourceCredentials(),
        request=iam,
        token_uri=token_server.token_uri,
    )


def test_keyless_delegation_end_to_end(
    iam: FakeIam, secured: FakeReportsServer, sleeps: Sleeps
) -> None:
    secured.add_activities(activities(1200))
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=iam, access_token=TOKEN
    ) as token_server:
        source = source_for(secured, sleeps, credentials=delegated(iam, token_server))
        items, stats = fetch(source)
        grants = token_server.requests()

    assert stats == FetchStats(pages=2, requests=2, activities=1200)
    assert len(items) == 1200
    assert statuses(secured) == [200, 200]
    # One delegated token, signed once through IAM, serves every page.
    assert [(g["status"], g["claims"]["sub"], g["claims"]["scope"]) for g in grants] == [
        (200, ADMIN, REPORTS_SCOPE)
    ]
    assert [r["status"] for r in iam.sign_requests()] == [200]


def test_keyless_unauthorized_client_is_a_permission_error_naming_the_console_step(
    iam: FakeIam, secured: FakeReportsServer, sleeps: Sleeps
) -> None:
    # The client id is authorised for another scope only: the token endpoint answers
    # unauthorized_client, inside request.execute().
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=DIRECTORY_SCOPE, iam=iam, access_token=TOKEN
    ) as token_server:
        source = source_for(secured, sleeps, credentials=delegated(iam, token_server))
        with pytest.raises(ReportsError) as info:
            fetch(source)
        grants = token_server.requests()

    assert info.value.kind == "permission"
    assert "unauthorized_client" in info.value.message
    assert UNAUTHORIZED_CLIENT_HELP in info.value.message
    assert [(g["status"], g["error"]) for g in grants] == [(401, "unauthorized_client")]
    assert secured.requests() == []
    assert sleeps.delays == []


def test_keyless_sign_blob_denied_is_a_permission_error_naming_token_creator(
    secured: FakeReportsServer, sleeps: Sleeps
) -> None:
    denying = FakeIam(deny=True)
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=denying, access_token=TOKEN
    ) as token_server:
        source = source_for(secured, sleeps, credentials=delegated(denying, token_server))
        with pytest.raises(ReportsError) as info:
            fetch(source)
        assert token_server.requests() == []

    assert info.value.kind == "permission"
    assert SIGN_BLOB_HELP in info.value.message
    assert secured.requests() == []
    assert sleeps.delays == []


def test_keyless_unreachable_token_endpoint_is_transient(
    iam: FakeIam, secured: FakeReportsServer, sleeps: Sleeps
) -> None:
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=iam, access_token=TOKEN
    ) as token_server:
        credentials = delegated(iam, token_server)
    source = source_for(secured, sleeps, timeout_s=5, credentials=credentials, max_attempts=2)

    with pytest.raises(ReportsError) as info:
        fetch(source)

    assert info.value.kind == "transient"
    assert len(sleeps.delays) == 1
    assert secured.requests() == []


def test_keyless_rejected_token_is_not_refreshed_forever(
    iam: FakeIam, secured: FakeReportsServer, sleeps: Sleeps
) -> None:
    # The token endpoint issues a token the API does not accept: the API's 401 gets at most one
    # refresh-and-resend, then a permission error.
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=iam, access_token="other"
    ) as token_server:
        source = source_for(secured, sleeps, credentials=delegated(iam, token_server))
        with pytest.raises(ReportsError) as info:
            fetch(source)
        grants = token_server.requests()

    assert info.value.kind == "permission"
    assert "REPORTS_ADMIN_SUBJECT" in info.value.message
    assert statuses(secured) == [401, 401]
    assert len(grants) == 2
    assert sleeps.delays == []


class BrokenTokenEndpoint:
    """A token endpoint that answers 503 ``server_error`` or drops the connection unanswered."""

    def __init__(self, mode: str) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                owner.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = b'{"error": "server_error", "error_description": "try later"}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> BrokenTokenEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"


@pytest.mark.parametrize("mode", ["server_error", "drop"])
def test_keyless_token_endpoint_failure_is_transient_not_permission(
    iam: FakeIam, secured: FakeReportsServer, sleeps: Sleeps, mode: str
) -> None:
    with BrokenTokenEndpoint(mode) as endpoint:
        credentials = keyless_delegated_credentials(
            subject=ADMIN, source=FakeSourceCredentials(), request=iam, token_uri=endpoint.token_uri
        )
        source = source_for(secured, sleeps, credentials=credentials, max_attempts=1)
        with pytest.raises(ReportsError) as info:
            fetch(source)
        assert endpoint.hits >= 1

    assert info.value.kind == "transient"
    assert info.value.retryable
    assert secured.requests() == []


def test_concurrent_polls_from_many_threads_each_get_their_own_meetings_data(
    reports: FakeReportsServer,
) -> None:
    # The functions serve requests on several threads; httplib2 is not thread-safe, so a shared
    # connection would hand one meeting's page to another's request.
    codes = [f"THR{index:03d}ABCD" for index in range(8)]
    for index, code in enumerate(codes):
        reports.add_activities(activities(30 + index, code=code, conference=f"conf-{index}"))
    source = GoogleReportsSource.from_settings(settings_for(reports.url))
    results: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def poll(code: str) -> None:
        try:
            for _ in range(5):
                items, _ = source.call_ended(
                    meeting_code=code, start=hour_ago() - timedelta(hours=1)
                )
                found = {
                    p["value"]
                    for item in items
                    for p in item["events"][0]["parameters"]
                    if p["name"] == "meeting_code"
                }
                results.setdefault(code, set()).update(found)
                assert len(items) == 30 + codes.index(code)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=poll, args=(code,)) for code in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {code: {code} for code in codes}
