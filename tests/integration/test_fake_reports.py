"""The fake Reports API, exercised through the stock google-api-python-client and plain HTTP."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.auth.credentials
import httplib2
import pytest
import requests
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from local.fake_reports import FakeReportsServer, parse_fields

os.environ["NO_GCE_CHECK"] = "True"

ROOT = Path(__file__).resolve().parents[2]
CODE = "ABCDEFGHIJ"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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


@pytest.fixture(scope="module")
def server() -> Iterator[FakeReportsServer]:
    srv = FakeReportsServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def service(server: FakeReportsServer) -> Any:
    return build(
        "admin",
        "reports_v1",
        static_discovery=True,
        credentials=google.auth.credentials.AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture(scope="module")
def bare_service(server: FakeReportsServer) -> Any:
    """A client without credentials: with any, a 401 makes google-auth try to refresh them."""
    return build(
        "admin",
        "reports_v1",
        static_discovery=True,
        http=httplib2.Http(),
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture(autouse=True)
def _clean(server: FakeReportsServer) -> None:
    server.reset()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def activity(
    when: dt.datetime,
    uq: int,
    *,
    code: str = CODE,
    duration: int = 60,
    name: str = "Pat",
    email: str | None = "pat@school.example",
    event: str = "call_ended",
    **extra: Any,
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "meeting_code", "value": code},
        {"name": "duration_seconds", "intValue": str(duration)},
        {"name": "display_name", "value": name},
        {"name": "endpoint_id", "value": f"ep-{uq}"},
        {"name": "is_external", "boolValue": False},
    ]
    actor: dict[str, Any] = (
        {"email": email, "profileId": "1"}
        if email
        else {"callerType": "KEY", "key": "HANGOUTS_EXTERNAL_OR_ANONYMOUS"}
    )
    item: dict[str, Any] = {
        "kind": "admin#reports#activity",
        "id": {
            "time": rfc3339(when),
            "uniqueQualifier": str(uq),
            "applicationName": "meet",
            "customerId": "C03kq9xzt",
        },
        "actor": actor,
        "events": [{"type": "call", "name": event, "parameters": params}],
    }
    item.update(extra)
    return item


def list_all(service: Any, **kwargs: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"userKey": "all", "applicationName": "meet", "eventName": "call_ended"}
    args.update(kwargs)
    items: list[dict[str, Any]] = []
    request = service.activities().list(**args)
    while request is not None:
        page = request.execute()
        items.extend(page.get("items", []))
        request = service.activities().list_next(request, page)
    return items


def uqs(items: list[dict[str, Any]]) -> list[int]:
    return [int(i["id"]["uniqueQualifier"]) for i in items]


def http_error(call: Callable[[], Any]) -> HttpError:
    with pytest.raises(HttpError) as info:
        call()
    return info.value


def reason(err: HttpError) -> str:
    details: Any = err.error_details
    return str(details[0]["reason"])


# --- paging and order ----------------------------------------------------------------------------


def test_2500_events_page_1000_1000_500_newest_first(
    server: FakeReportsServer, service: Any
) -> None:
    base = now() - dt.timedelta(hours=3)
    # Posted oldest-first in shuffled batches: order must come from id.time, not posting order.
    items = [activity(base + dt.timedelta(seconds=i), i) for i in range(2500)]
    server.add_activities(items[1200:])
    server.add_activities(items[:1200])
    request = service.activities().list(
        userKey="all",
        applicationName="meet",
        eventName="call_ended",
        filters=f"meeting_code=={CODE}",
        startTime=rfc3339(base - dt.timedelta(minutes=1)),
        maxResults=1000,
    )
    sizes, seen = [], []
    while request is not None:
        page = request.execute()
        assert page["kind"] == "admin#reports#activities"
        sizes.append(len(page["items"]))
        seen.extend(uqs(page["items"]))
        request = service.activities().list_next(request, page)
    assert sizes == [1000, 1000, 500]
    assert seen == list(range(2499, -1, -1))
    tokens = [r["query"].get("pageToken") for r in server.requests()]
    assert tokens[0] is None
    assert all(tokens[1:])


def test_default_max_results_is_1000(server: FakeReportsServer, service: Any) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities([activity(base + dt.timedelta(milliseconds=i), i) for i in range(1001)])
    page = service.activities().list(userKey="all", applicationName="meet").execute()
    assert len(page["items"]) == 1000
    assert "nextPageToken" in page


def test_equal_times_keep_posted_order_across_pages(
    server: FakeReportsServer, service: Any
) -> None:
    # Every endpoint still connected at the end of a call leaves within the same millisecond.
    when = now() - dt.timedelta(minutes=5)
    server.add_activities([activity(when, i) for i in range(7)])
    assert uqs(list_all(service, maxResults=3)) == list(range(7))


def test_no_items_key_when_empty(service: Any) -> None:
    page = service.activities().list(userKey="all", applicationName="meet").execute()
    assert "items" not in page
    assert "nextPageToken" not in page
    assert page["kind"] == "admin#reports#activities"


# --- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ("duration_seconds==20", [2]),
        ("duration_seconds<>20", [3, 1]),
        ("duration_seconds<20", [1]),
        ("duration_seconds<=20", [2, 1]),
        ("duration_seconds>20", [3]),
        ("duration_seconds>=20", [3, 2]),
        # intValue compares as a number, not as text ("100" < "20" as strings)
        ("duration_seconds>=9", [3, 2, 1]),
        ("display_name==Bo", [2]),
        ("display_name<>Bo", [3, 1]),
        ("display_name<Bo", [1]),
        ("display_name>=Bo", [3, 2]),
        ("is_external==false", [3, 2, 1]),
        (f"meeting_code=={CODE},duration_seconds>10", [3, 2]),
        ("meeting_code==ZZZZZZZZZZ", []),
    ],
)
def test_filter_operators(
    server: FakeReportsServer, service: Any, filters: str, expected: list[int]
) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities(
        [
            activity(base + dt.timedelta(seconds=1), 1, duration=10, name="Al"),
            activity(base + dt.timedelta(seconds=2), 2, duration=20, name="Bo"),
            activity(base + dt.timedelta(seconds=3), 3, duration=100, name="Cy"),
        ]
    )
    assert uqs(list_all(service, filters=filters)) == expected


def test_parameter_of_another_event_gives_empty_result(
    server: FakeReportsServer, service: Any
) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    assert list_all(service, filters="livestream_view_page_id==x") == []
    assert list_all(service, filters=f"meeting_code=={CODE},livestream_view_page_id<>x") == []


def test_unknown_parameter_is_ignored(server: FakeReportsServer, service: Any) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    assert uqs(list_all(service, filters="no_such_parameter==1")) == [1]
    assert uqs(list_all(service, filters=f"no_such_parameter==1,meeting_code=={CODE}")) == [1]


def test_event_name_selects_whole_activities(server: FakeReportsServer, service: Any) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities(
        [
            activity(base, 1),
            activity(base + dt.timedelta(seconds=1), 2, event="presentation_started"),
        ]
    )
    assert uqs(list_all(service)) == [1]
    assert uqs(list_all(service, eventName="presentation_started")) == [2]
    everything = service.activities().list(userKey="all", applicationName="meet").execute()
    assert uqs(everything["items"]) == [2, 1]


def test_user_key_email_filters_on_actor(server: FakeReportsServer, service: Any) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities(
        [
            activity(base, 1, email="a@school.example"),
            activity(base, 2, email="b@school.example"),
            activity(base, 3, email=None),
        ]
    )
    assert uqs(list_all(service, userKey="B@school.example")) == [2]
    assert uqs(list_all(service)) == [1, 2, 3]


def test_other_application_is_empty_and_unknown_path_is_404(
    server: FakeReportsServer, service: Any
) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    page = service.activities().list(userKey="all", applicationName="drive").execute()
    assert "items" not in page
    response = requests.get(f"{server.url}/admin/reports/v1/nothing/here", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


def test_meeting_code_filter_is_fast_over_100k_events(
    server: FakeReportsServer, service: Any
) -> None:
    base = now() - dt.timedelta(days=2)
    server.add_activities(
        [
            activity(base + dt.timedelta(seconds=i), i, code=f"CODE{i % 2000:06d}")
            for i in range(100_000)
        ]
    )
    started = time.monotonic()
    for _ in range(5):
        found = list_all(service, filters="meeting_code==CODE000007")
    elapsed = (time.monotonic() - started) / 5
    assert len(found) == 50
    # Generous for a loaded 2-core box; an unindexed scan of 100k dicts per call is well above it.
    assert elapsed < 0.5


# --- time window ---------------------------------------------------------------------------------


def test_start_and_end_time_are_inclusive(server: FakeReportsServer, service: Any) -> None:
    t1 = (now() - dt.timedelta(hours=2)).replace(microsecond=123000)
    server.add_activities([activity(t1 + dt.timedelta(seconds=s), s) for s in range(5)])
    found = list_all(
        service,
        startTime=rfc3339(t1 + dt.timedelta(seconds=1)),
        endTime=rfc3339(t1 + dt.timedelta(seconds=3)),
    )
    assert uqs(found) == [3, 2, 1]
    offset = (t1 + dt.timedelta(seconds=1)).astimezone(
        dt.timezone(dt.timedelta(hours=5, minutes=30))
    )
    assert uqs(list_all(service, startTime=offset.isoformat(timespec="milliseconds"))) == [
        4,
        3,
        2,
        1,
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.timedelta(minutes=5), None),  # start in the future
        (-dt.timedelta(days=181), None),  # beyond the 180 days kept
        (-dt.timedelta(hours=1), -dt.timedelta(hours=2)),  # end before start
    ],
)
def test_invalid_time_windows_are_400(
    service: Any, start: dt.timedelta, end: dt.timedelta | None
) -> None:
    args: dict[str, Any] = {"startTime": rfc3339(now() + start)}
    if end is not None:
        args["endTime"] = rfc3339(now() + end)
    err = http_error(
        lambda: service.activities().list(userKey="all", applicationName="meet", **args).execute()
    )
    assert err.resp.status == 400
    assert reason(err) == "invalid"


def test_malformed_time_is_400(server: FakeReportsServer) -> None:
    # The client validates the pattern itself, so a raw request proves the server does too.
    response = requests.get(
        f"{server.url}/admin/reports/v1/activity/users/all/applications/meet",
        params={"startTime": "yesterday"},
        timeout=10,
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["status"] == "INVALID_ARGUMENT"
    assert body["errors"][0] == {
        "message": body["message"],
        "domain": "global",
        "reason": "invalid",
    }


@pytest.mark.parametrize("max_results", [0, 1001, -1])
def test_max_results_out_of_range_is_400(service: Any, max_results: int) -> None:
    err = http_error(
        lambda: (
            service.activities()
            .list(userKey="all", applicationName="meet", maxResults=max_results)
            .execute()
        )
    )
    assert err.resp.status == 400


def test_bad_page_token_is_400(server: FakeReportsServer, service: Any) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities([activity(base + dt.timedelta(seconds=i), i) for i in range(3)])
    first = (
        service.activities()
        .list(userKey="all", applicationName="meet", maxResults=1, eventName="call_ended")
        .execute()
    )
    token = first["nextPageToken"]

    def page(page_token: str) -> Any:
        return (
            service.activities()
            .list(userKey="all", applicationName="meet", pageToken=page_token)
            .execute()
        )

    for bad in ["garbage", token[:-2] + ("AA" if token[-2:] != "AA" else "BB")]:
        with pytest.raises(HttpError) as info:
            page(bad)
        assert info.value.resp.status == 400
    # A token only continues the query it came from.
    err = http_error(
        lambda: (
            service.activities()
            .list(userKey="all", applicationName="meet", pageToken=token, eventName="call_started")
            .execute()
        )
    )
    assert err.resp.status == 400


# --- partial responses ---------------------------------------------------------------------------


def test_fields_nested_selection(server: FakeReportsServer, service: Any) -> None:
    base = now() - dt.timedelta(hours=1)
    server.add_activities([activity(base + dt.timedelta(seconds=i), i) for i in range(3)])
    page = (
        service.activities()
        .list(
            userKey="all",
            applicationName="meet",
            maxResults=2,
            fields="nextPageToken,items(id(time,uniqueQualifier),actor,events(name,parameters))",
        )
        .execute()
    )
    assert set(page) == {"nextPageToken", "items"}
    first = page["items"][0]
    assert set(first) == {"id", "actor", "events"}
    assert set(first["id"]) == {"time", "uniqueQualifier"}
    assert set(first["events"][0]) == {"name", "parameters"}
    assert first["actor"] == {"email": "pat@school.example", "profileId": "1"}


def test_fields_slash_form(server: FakeReportsServer, service: Any) -> None:
    when = now() - dt.timedelta(hours=1)
    server.add_activities([activity(when, 1)])
    page = (
        service.activities()
        .list(userKey="all", applicationName="meet", fields="items/id/time,kind")
        .execute()
    )
    assert page == {"kind": "admin#reports#activities", "items": [{"id": {"time": rfc3339(when)}}]}


def test_fields_parser_merges_and_rejects() -> None:
    assert parse_fields("a/b,a/c(d),e") == {"a": {"b": None, "c": {"d": None}}, "e": None}
    for bad in ["a(b", "a)", "a,,b", ""]:
        with pytest.raises(ValueError, match="field selection"):
            parse_fields(bad)


def test_malformed_fields_is_400(service: Any) -> None:
    err = http_error(
        lambda: (
            service.activities()
            .list(userKey="all", applicationName="meet", fields="items(id")
            .execute()
        )
    )
    assert err.resp.status == 400


# --- visibility ----------------------------------------------------------------------------------


def test_visibility_lag(server: FakeReportsServer, service: Any) -> None:
    when = now() - dt.timedelta(minutes=10)
    late = activity(when, 2)
    late["visible_after_s"] = 0.6
    server.add_activities([activity(when, 1), late])
    assert uqs(list_all(service)) == [1]
    deadline = time.monotonic() + 10
    found = uqs(list_all(service))
    while found != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.1)
        found = uqs(list_all(service))
    assert found == [1, 2]
    assert all("visible_after_s" not in i for i in list_all(service))


def test_batch_visibility_over_http(server: FakeReportsServer, service: Any) -> None:
    when = now() - dt.timedelta(minutes=10)
    response = requests.post(
        f"{server.url}/_fake/activities",
        json={"activities": [activity(when, 1)], "visible_after_s": 30},
        timeout=10,
    )
    assert response.status_code == 200
    assert list_all(service) == []
    bad = requests.post(f"{server.url}/_fake/activities", json={"activities": [{}]}, timeout=10)
    assert bad.status_code == 400


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "expected_reason", "retry_after"),
    [
        ("quota", 503, "quotaExceeded", "7"),
        ("rate_limit_403", 403, "userRateLimitExceeded", "7"),
        ("rate_limit_429", 429, "rateLimitExceeded", "7"),
        ("server_error", 500, "backendError", "7"),
        ("not_admin", 401, "authError", None),
        ("not_authorized", 403, "forbidden", None),
    ],
)
def test_faults(
    server: FakeReportsServer,
    bare_service: Any,
    kind: str,
    status: int,
    expected_reason: str,
    retry_after: str | None,
) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    server.add_fault(kind, count=2, retry_after_s=6.2)
    for _ in range(2):
        err = http_error(lambda: list_all(bare_service))
        assert err.resp.status == status
        assert reason(err) == expected_reason
        assert err.resp.get("retry-after") == retry_after
    assert uqs(list_all(bare_service)) == [1]


def test_fault_messages_and_default_retry_after(
    server: FakeReportsServer, bare_service: Any
) -> None:
    service = bare_service
    server.add_fault("quota")
    server.add_fault("rate_limit_429")
    server.add_fault("not_admin")
    server.add_fault("not_authorized")
    quota = http_error(lambda: list_all(service))
    assert quota.resp.get("retry-after") == "1"
    limited = http_error(lambda: list_all(service))
    assert (limited.resp.status, limited.resp.get("retry-after")) == (429, "1")
    not_admin = http_error(lambda: list_all(service))
    assert "not authorized to read activity records" in not_admin.reason
    forbidden = http_error(lambda: list_all(service))
    assert forbidden.reason == "Not Authorized to access this resource/api"
    assert list_all(service) == []


def test_slow_fault_delays_then_answers(server: FakeReportsServer, service: Any) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    server.add_fault("slow", delay_s=0.5)
    started = time.monotonic()
    assert uqs(list_all(service)) == [1]
    assert time.monotonic() - started >= 0.5


def test_faults_over_http_fifo_and_clear(server: FakeReportsServer, service: Any) -> None:
    url = f"{server.url}/_fake/faults"
    assert requests.post(url, json={"kind": "server_error"}, timeout=10).status_code == 200
    assert requests.post(url, json={"kind": "quota", "count": 2}, timeout=10).status_code == 200
    assert requests.post(url, json={"kind": "nope"}, timeout=10).status_code == 400
    statuses = [http_error(lambda: list_all(service)).resp.status for _ in range(2)]
    assert statuses == [500, 503]
    assert requests.delete(url, timeout=10).status_code == 200
    assert list_all(service) == []


def test_after_pages_fault_fires_mid_pagination_only(
    server: FakeReportsServer, service: Any
) -> None:
    server.add_activities([activity(now() - dt.timedelta(minutes=i + 1), i) for i in range(5)])
    server.configure(max_page_size=2)
    server.add_fault("server_error", after_pages=1)
    first = service.activities().list(userKey="all", applicationName="meet").execute()
    assert uqs(first["items"]) == [0, 1]  # the first page passes the fault by
    second = service.activities().list_next(
        service.activities().list(userKey="all", applicationName="meet"), first
    )
    err = http_error(second.execute)
    assert (err.resp.status, reason(err)) == (500, "backendError")
    # Taken once: the same page now answers, and the listing goes on to its end.
    assert uqs(second.execute()["items"]) == [2, 3]
    assert uqs(list_all(service)) == [0, 1, 2, 3, 4]
    statuses = [(r["status"], "pageToken" in r["query"]) for r in server.requests()]
    assert statuses[:3] == [(200, False), (500, True), (200, True)]


def test_after_pages_counts_pages_and_lets_other_faults_go_first(
    server: FakeReportsServer, service: Any
) -> None:
    server.add_activities([activity(now() - dt.timedelta(minutes=i + 1), i) for i in range(5)])
    server.configure(max_page_size=2)
    server.add_fault("not_authorized", after_pages=2)
    server.add_fault("quota")  # applies to any page: taken by the first request
    assert http_error(lambda: list_all(service)).resp.status == 503
    err = http_error(lambda: list_all(service))  # pages 1 and 2 pass, page 3 fails
    assert err.resp.status == 403
    log = [(r["status"], "pageToken" in r["query"]) for r in server.requests()]
    assert log == [(503, False), (200, False), (200, True), (403, True)]
    assert uqs(list_all(service)) == [0, 1, 2, 3, 4]


def test_config_caps_pages_and_is_validated_and_reset(
    server: FakeReportsServer, service: Any
) -> None:
    server.add_activities([activity(now() - dt.timedelta(minutes=i + 1), i) for i in range(3)])
    url = f"{server.url}/_fake/config"
    answer = requests.post(url, json={"max_page_size": 1}, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"max_page_size": 1})
    assert requests.get(url, timeout=10).json() == {"max_page_size": 1}
    page = service.activities().list(userKey="all", applicationName="meet", maxResults=10)
    assert uqs(page.execute()["items"]) == [0]
    assert uqs(list_all(service)) == [0, 1, 2]
    for bad in ({"max_page_size": 0}, {"max_page_size": 1001}, {"max_page_size": "2"}, {"x": 1}):
        assert requests.post(url, json=bad, timeout=10).status_code == 400, bad
    assert requests.post(f"{server.url}/_fake/reset", timeout=10).status_code == 200
    assert requests.get(url, timeout=10).json() == {"max_page_size": 1000}


def test_list_time_serves_items_without_a_usable_id_time(
    server: FakeReportsServer, service: Any
) -> None:
    lacking = activity(now() - dt.timedelta(minutes=5), 1)
    del lacking["id"]["time"]
    garbled = activity(now() - dt.timedelta(minutes=5), 2)
    garbled["id"]["time"] = "yesterday"
    listed = rfc3339(now() - dt.timedelta(minutes=3))
    server.add_activities(
        [
            {**lacking, "list_time": listed},
            {**garbled, "list_time": listed},
            activity(now() - dt.timedelta(minutes=1), 3),
        ]
    )
    items = list_all(service, startTime=rfc3339(now() - dt.timedelta(minutes=4)))
    assert uqs(items) == [3, 1, 2]
    assert "time" not in items[1]["id"]
    assert items[2]["id"]["time"] == "yesterday"
    assert all("list_time" not in item for item in items)
    assert list_all(service, startTime=rfc3339(now() - dt.timedelta(minutes=2))) == [items[0]]
    without = requests.post(
        f"{server.url}/_fake/activities", json={"activities": [lacking]}, timeout=10
    )
    assert without.status_code == 400


def test_require_token() -> None:
    with FakeReportsServer(require_token="secret-token") as guarded:
        anonymous = build(
            "admin",
            "reports_v1",
            static_discovery=True,
            http=httplib2.Http(),
            client_options={"api_endpoint": guarded.url},
        )
        err = http_error(lambda: list_all(anonymous))
        assert err.resp.status == 401
        assert "invalid authentication credentials" in err.reason
        ok = requests.get(
            f"{guarded.url}/admin/reports/v1/activity/users/all/applications/meet",
            headers={"Authorization": "Bearer secret-token"},
            timeout=10,
        )
        assert ok.status_code == 200
        assert [r["status"] for r in guarded.requests()] == [401, 200]


# --- control endpoints ---------------------------------------------------------------------------


def test_request_log_and_reset_over_http(server: FakeReportsServer, service: Any) -> None:
    server.add_activities([activity(now() - dt.timedelta(hours=1), 1)])
    list_all(service, filters=f"meeting_code=={CODE}", maxResults=10)
    server.add_fault("server_error")
    http_error(lambda: list_all(service))
    log = requests.get(f"{server.url}/_fake/requests", timeout=10).json()
    assert log == [
        {
            "method": "GET",
            "path": "/admin/reports/v1/activity/users/all/applications/meet",
            "query": {
                "eventName": "call_ended",
                "filters": f"meeting_code=={CODE}",
                "maxResults": "10",
                "alt": "json",
            },
            "status": 200,
        },
        {
            "method": "GET",
            "path": "/admin/reports/v1/activity/users/all/applications/meet",
            "query": {"eventName": "call_ended", "alt": "json"},
            "status": 500,
        },
    ]
    server.add_fault("server_error")
    assert requests.post(f"{server.url}/_fake/reset", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/_fake/requests", timeout=10).json() == []
    assert list_all(service) == []  # neither the activity nor the fault survived


def test_stop_is_idempotent() -> None:
    srv = FakeReportsServer()
    srv.start()
    srv.stop()
    srv.stop()


def test_cli_ready_line_and_clean_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.fake_reports", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake-reports ready url=http://127.0.0.1:")
        url = line.split("url=", 1)[1]
        assert requests.get(f"{url}/_fake/health", timeout=10).json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
