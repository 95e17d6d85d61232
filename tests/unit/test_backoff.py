"""The shared retry loop, driven by a fake request and a recorded sleep: nothing is sent or slept."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import google.auth.exceptions
import httplib2
import pytest
from googleapiclient.errors import HttpError

from functions.adapters.backoff import HttpFailure, Retrying, transient_auth_error
from functions.adapters.google_credentials import REPORTS_SCOPE
from functions.errors import ReportsError, WorkspaceError


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def http_error(
    status: int,
    *,
    reasons: Iterable[str] = (),
    retry_after: str | None = None,
    rpc_status: str = "",
    details: Iterable[str] = (),
    message: str = "something went wrong",
    body: bytes | None = None,
) -> HttpError:
    headers = {"status": str(status)}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if body is None:
        error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
        error["errors"] = [{"reason": reason, "message": message} for reason in reasons]
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}
            for reason in details
        ]
        body = json.dumps({"error": error}).encode()
    return HttpError(httplib2.Response(headers), body, uri="http://127.0.0.1:9/v2/thing")


class FakeRequest:
    """A googleapiclient HttpRequest stand-in: raises the given outcomes in turn, then answers."""

    def __init__(self, *outcomes: BaseException, answer: Any = None) -> None:
        self.outcomes = list(outcomes)
        self.answer = {"ok": True} if answer is None else answer
        self.calls: list[dict[str, Any]] = []

    def execute(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.outcomes:
            raise self.outcomes.pop(0)
        return self.answer


class Permanent(Exception):
    def __init__(self, failure: HttpFailure) -> None:
        super().__init__(failure.status)
        self.failure = failure


def retrying(sleeps: Sleeps, *, jitter: float = 1.0, **options: Any) -> Retrying[WorkspaceError]:
    return Retrying(
        api="Meet REST API",
        error=WorkspaceError,
        permanent=Permanent,
        sleep=sleeps,
        jitter=lambda: jitter,
        **options,
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


# ----------------------------------------------------------------------------- delays


def test_success_first_time_does_not_sleep(sleeps: Sleeps) -> None:
    request = FakeRequest()
    assert retrying(sleeps).execute(request) == ({"ok": True}, 1)
    assert request.calls == [{"num_retries": 0}]
    assert sleeps.delays == []


def test_the_given_connection_is_used_and_the_clients_own_retries_are_off(sleeps: Sleeps) -> None:
    request = FakeRequest(http_error(503))
    connection = object()
    retrying(sleeps).execute(request, http=connection)
    assert request.calls == [{"http": connection, "num_retries": 0}] * 2


def test_delays_double_from_the_base(sleeps: Sleeps) -> None:
    request = FakeRequest(*(http_error(500) for _ in range(4)))
    answer, attempts = retrying(sleeps, base_delay_s=1.0).execute(request)
    assert (answer, attempts) == ({"ok": True}, 5)
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0]


def test_jitter_keeps_at_least_half_of_each_delay(sleeps: Sleeps) -> None:
    request = FakeRequest(*(http_error(502) for _ in range(3)))
    retrying(sleeps, jitter=0.0, base_delay_s=2.0).execute(request)
    assert sleeps.delays == [1.0, 2.0, 4.0]
    half_way = Sleeps()
    retrying(half_way, jitter=0.5, base_delay_s=2.0).execute(FakeRequest(http_error(504)))
    assert half_way.delays == [1.5]


def test_each_delay_is_capped(sleeps: Sleeps) -> None:
    request = FakeRequest(*(http_error(503) for _ in range(5)))
    retrying(sleeps, base_delay_s=1.0, max_delay_s=3.0, max_attempts=10).execute(request)
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_retry_after_lengthens_the_wait_but_never_shortens_it(sleeps: Sleeps) -> None:
    request = FakeRequest(
        http_error(429, retry_after="7"),
        http_error(429, retry_after="0"),
        http_error(503, retry_after="not-a-number"),
    )
    retrying(sleeps, base_delay_s=1.0).execute(request)
    assert sleeps.delays == [7.0, 2.0, 4.0]


def test_negative_retry_after_counts_as_none(sleeps: Sleeps) -> None:
    retrying(sleeps, base_delay_s=1.0).execute(FakeRequest(http_error(429, retry_after="-5")))
    assert sleeps.delays == [1.0]


def test_retryable_reasons_are_retried_whatever_the_status(sleeps: Sleeps) -> None:
    request = FakeRequest(
        http_error(403, reasons=["userRateLimitExceeded"]),
        http_error(400, reasons=["backendError"]),
    )
    assert retrying(sleeps).execute(request)[1] == 3
    assert len(sleeps.delays) == 2


# ----------------------------------------------------------------------------- giving up


def test_gives_up_after_max_attempts_with_the_last_failure(sleeps: Sleeps) -> None:
    request = FakeRequest(*(http_error(500, reasons=["backendError"]) for _ in range(5)))
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, max_attempts=3).execute(request)
    assert info.value.kind == "transient"
    assert info.value.retryable
    assert info.value.message == "Meet REST API 500 backendError after 3 attempt(s)"
    assert len(request.calls) == 3
    assert len(sleeps.delays) == 2


def test_gives_up_before_a_wait_past_the_total(sleeps: Sleeps) -> None:
    request = FakeRequest(*(http_error(503) for _ in range(10)))
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, base_delay_s=1.0, max_total_wait_s=10.0, max_attempts=10).execute(request)
    # 1 + 2 + 4 = 7 s waited; the next 8 s would pass 10 s.
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert info.value.message == "Meet REST API 503 after 4 attempt(s)"
    assert info.value.kind == "quota"


def test_a_retry_after_beyond_the_total_is_not_waited_for(sleeps: Sleeps) -> None:
    request = FakeRequest(http_error(429, retry_after="600"))
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, max_total_wait_s=120.0).execute(request)
    assert sleeps.delays == []
    assert info.value.kind == "quota"
    assert len(request.calls) == 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (http_error(429), "quota"),
        (http_error(503), "quota"),
        (http_error(500, reasons=["rateLimitExceeded"]), "quota"),
        (http_error(403, reasons=["quotaExceeded"]), "quota"),
        (http_error(500), "transient"),
        (http_error(502), "transient"),
        (http_error(504), "transient"),
        (http_error(403, reasons=["backendError"]), "transient"),
    ],
)
def test_what_is_still_failing_is_quota_or_transient(
    sleeps: Sleeps, error: HttpError, kind: str
) -> None:
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, max_attempts=1).execute(FakeRequest(error))
    assert info.value.kind == kind


def test_the_error_type_is_the_callers(sleeps: Sleeps) -> None:
    reports: Retrying[ReportsError] = Retrying(
        api="Reports API", error=ReportsError, permanent=Permanent, sleep=sleeps, max_attempts=1
    )
    with pytest.raises(ReportsError, match=r"^Reports API 502 after 1 attempt\(s\)$"):
        reports.execute(FakeRequest(http_error(502)))


# ----------------------------------------------------------------------------- classification


def test_a_permanent_answer_is_mapped_by_the_caller_and_not_retried(sleeps: Sleeps) -> None:
    request = FakeRequest(
        http_error(
            403,
            reasons=["accessNotConfigured"],
            rpc_status="PERMISSION_DENIED",
            details=["SERVICE_DISABLED"],
            message="Meet API has not been\nused in project 1",
        )
    )
    with pytest.raises(Permanent) as info:
        retrying(sleeps).execute(request)
    failure = info.value.failure
    assert failure.status == 403
    assert failure.reasons == {"accessNotConfigured"}
    assert failure.detail_reasons == {"SERVICE_DISABLED"}
    assert failure.all_reasons == {"accessNotConfigured", "SERVICE_DISABLED"}
    assert failure.rpc_status == "PERMISSION_DENIED"
    assert failure.message == "Meet API has not been used in project 1"
    assert not failure.retryable
    assert info.value.__suppress_context__
    assert len(request.calls) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412])
def test_other_statuses_are_permanent(sleeps: Sleeps, status: int) -> None:
    with pytest.raises(Permanent):
        retrying(sleeps).execute(FakeRequest(http_error(status)))
    assert sleeps.delays == []


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"[]", b'{"error": "x"}', b""])
def test_a_body_that_is_not_googles_error_json_is_read_as_no_reasons(
    sleeps: Sleeps, body: bytes
) -> None:
    with pytest.raises(Permanent) as info:
        retrying(sleeps).execute(FakeRequest(http_error(404, body=body)))
    assert info.value.failure.reasons == frozenset()
    assert info.value.failure.rpc_status == ""
    with pytest.raises(WorkspaceError, match="Meet REST API 502 after 1"):
        retrying(sleeps, max_attempts=1).execute(FakeRequest(http_error(502, body=body)))


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("timed out"),
        ConnectionRefusedError(111, "refused"),
        httplib2.ServerNotFoundError("x"),
    ],
)
def test_network_failures_are_retried_then_transient(sleeps: Sleeps, error: Exception) -> None:
    assert retrying(sleeps).execute(FakeRequest(error))[1] == 2
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, max_attempts=2).execute(FakeRequest(error, error))
    assert info.value.kind == "transient"
    assert f"Meet REST API unreachable ({type(error).__name__}) after 2 attempt(s)" == (
        info.value.message
    )


def refresh_error(
    code: str, description: str, *, retryable: bool = False
) -> google.auth.exceptions.RefreshError:
    return google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
        f"{code}: {description}",
        {"error": code, "error_description": description},
        retryable=retryable,
    )


def test_a_delegation_refusal_is_a_permission_error_described_by_the_caller(
    sleeps: Sleeps,
) -> None:
    described: list[BaseException] = []

    def describe(error: google.auth.exceptions.GoogleAuthError) -> str:
        described.append(error)
        return "authorise the client id"

    retry: Retrying[WorkspaceError] = Retrying(
        api="Meet REST API",
        error=WorkspaceError,
        permanent=Permanent,
        describe_auth=describe,
        sleep=sleeps,
    )
    request = FakeRequest(refresh_error("unauthorized_client", "Client is unauthorized"))
    with pytest.raises(WorkspaceError) as info:
        retry.execute(request)
    assert (info.value.kind, info.value.message) == ("permission", "authorise the client id")
    assert not info.value.retryable
    assert len(described) == 1
    assert sleeps.delays == []


def test_the_default_description_names_the_reports_scope(sleeps: Sleeps) -> None:
    request = FakeRequest(refresh_error("unauthorized_client", "Client is unauthorized"))
    with pytest.raises(WorkspaceError, match=re.escape(REPORTS_SCOPE)):
        retrying(sleeps).execute(request)


def test_the_token_endpoints_own_5xx_is_retried(sleeps: Sleeps) -> None:
    request = FakeRequest(refresh_error("server_error", "try later", retryable=True))
    assert retrying(sleeps).execute(request)[1] == 2
    with pytest.raises(WorkspaceError) as info:
        retrying(sleeps, max_attempts=1).execute(
            FakeRequest(refresh_error("server_error", "try later", retryable=True))
        )
    assert info.value.kind == "transient"
    assert info.value.message.endswith("after 1 attempt(s)")


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("Connection reset by peer", True),
        ('Error calling the IAM signBytes API: b\'{"error": {"code": 403}}\'', False),
        ("signBlob PERMISSION_DENIED", False),
        ("IAM Credentials API SERVICE_DISABLED", False),
        ("401 UNAUTHENTICATED", False),
    ],
)
def test_transport_errors_are_transient_unless_iam_refused(message: str, transient: bool) -> None:
    error = google.auth.exceptions.TransportError(message)  # type: ignore[no-untyped-call]
    assert transient_auth_error(error) is transient


def test_a_refresh_error_is_transient_only_when_google_auth_says_so() -> None:
    assert not transient_auth_error(refresh_error("invalid_grant", "Invalid email"))
    assert transient_auth_error(refresh_error("server_error", "x", retryable=True))


def test_send_is_any_callable(sleeps: Sleeps) -> None:
    outcomes: list[BaseException] = [http_error(500)]

    def send() -> str:
        if outcomes:
            raise outcomes.pop()
        return "done"

    assert retrying(sleeps).call(send) == ("done", 2)


def test_delay_is_exposed_for_other_waits(sleeps: Sleeps) -> None:
    retry = retrying(sleeps, base_delay_s=0.5, max_delay_s=4.0, jitter=1.0)
    assert [retry.delay(attempt) for attempt in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
