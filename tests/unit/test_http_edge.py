"""The request edge: request checks, error answers and routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.errors import (
    AppError,
    ConfigError,
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    Unauthorized,
)
from functions.http_edge import (
    check_request,
    error_response,
    route_api,
    route_ingest,
    unexpected_error_response,
)
from functions.limits import MAX_BODY_BYTES
from tests.unit.factories import outcome

# ==============================================================================
# check_request


@dataclass(frozen=True)
class Req:
    method: str = "POST"
    content_type: str | None = "application/json"
    content_length: int | None = None
    body: bytes | None = b"{}"


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (Req(), None),
        (Req(method="post"), None),
        (Req(content_type="application/json; charset=utf-8"), None),
        (Req(content_type='Application/JSON; Charset="UTF-8"'), None),
        (Req(body=b"x" * MAX_BODY_BYTES, content_length=MAX_BODY_BYTES), None),
        (Req(content_type=None, body=b"", content_length=0), None),
        (Req(content_type=None, body=None, content_length=None), None),
        (Req(method="GET", content_type=None, body=b""), None),
        (Req(method="PUT"), 405),
        (Req(method="DELETE", content_type=None, body=None), 405),
        (Req(body=b"x" * (MAX_BODY_BYTES + 1)), 413),
        (Req(body=None, content_length=MAX_BODY_BYTES + 1), 413),
        (Req(body=b"{}", content_length=10**9), 413),
        (Req(method="PUT", body=b"x" * (MAX_BODY_BYTES + 1), content_type="text/plain"), 405),
        (Req(body=b"x" * (MAX_BODY_BYTES + 1), content_type="text/plain"), 413),
        (Req(content_type=None), 415),
        (Req(content_type="text/plain"), 415),
        (Req(content_type="application/x-www-form-urlencoded"), 415),
        (Req(content_type="application/jsonp"), 415),
        (Req(content_type="application/json; charset=latin-1"), 415),
        (Req(content_type=None, body=None, content_length=2), 415),
    ],
)
def test_check_request_refuses_405_then_413_then_415(request_: Req, status: int | None) -> None:
    def check() -> None:
        check_request(
            method=request_.method,
            allowed=("POST", "GET"),
            content_type=request_.content_type,
            content_length=request_.content_length,
            body=request_.body,
        )

    if status is None:
        check()
        return
    with pytest.raises(AppError) as caught:
        check()
    expected_code = {
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }[status]
    assert (caught.value.status, caught.value.code) == (status, expected_code)


def test_a_405_says_which_methods_are_allowed() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        check_request(
            method="PUT", allowed=("POST",), content_type=None, content_length=None, body=b""
        )
    assert caught.value.allowed == ("POST",)


# ==============================================================================
# Error responses


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            InvalidInput(
                "ended_at must include a UTC offset", field="ended_at", code="invalid_payload"
            ),
            400,
            {
                "error": {
                    "code": "invalid_payload",
                    "message": "ended_at must include a UTC offset",
                    "field": "ended_at",
                }
            },
        ),
        (
            InvalidInput("body must be a JSON object", code="invalid_payload"),
            400,
            {"error": {"code": "invalid_payload", "message": "body must be a JSON object"}},
        ),
        (
            Unauthorized("missing webhook-id header"),
            401,
            {"error": {"code": "unauthorized", "message": "missing webhook-id header"}},
        ),
        (
            Forbidden("nope"),
            403,
            {"error": {"code": "forbidden", "message": "nope"}},
        ),
        (
            AppError("no such meeting", status=404, code="not_found"),
            404,
            {"error": {"code": "not_found", "message": "no such meeting"}},
        ),
        (
            ConfigError(["WEBHOOK_SECRET is required"]),
            500,
            {
                "error": {
                    "code": "invalid_configuration",
                    "message": "the service cannot handle this request",
                }
            },
        ),
        (
            AppError("Reports said 503 at https://internal", status=503, retryable=True),
            503,
            {"error": {"code": "internal", "message": "temporarily unavailable; retry later"}},
        ),
    ],
)
def test_error_response_has_the_contract_shape(
    error: AppError, status: int, body: dict[str, Any]
) -> None:
    assert error_response(error) == (status, body)


def test_unexpected_errors_answer_500_without_internals() -> None:
    assert unexpected_error_response() == (
        500,
        {"error": {"code": "internal", "message": "internal error"}},
    )


# ==============================================================================
# Routes


@pytest.mark.parametrize(("method", "path"), [("POST", "/"), ("POST", ""), ("post", "/")])
def test_ingest_routes_declarations(method: str, path: str) -> None:
    assert route_ingest(method, path) == ("meeting_ended",)


@pytest.mark.parametrize(
    "path",
    ["/meetings/m_1-A", "/meetings/m_1-A/sync", "/meetings/sync", "/erasures", "/other", "//"],
)
def test_ingest_serves_nothing_else(path: str) -> None:
    # The operator routes moved to the private api (docs/api.md "ingest"): 404 whatever the method.
    for method in ("GET", "POST"):
        with pytest.raises(AppError) as caught:
            route_ingest(method, path)
        assert (caught.value.status, caught.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/meetings/m_1-A/sync", ("sync", "m_1-A")),
        ("POST", "/meetings/m_1-A/sync/", ("sync", "m_1-A")),
        ("GET", "/meetings/m_1-A", ("get", "m_1-A")),
        ("GET", "/meetings/m_1-A/", ("get", "m_1-A")),
        ("GET", "/meetings/" + "x" * 128, ("get", "x" * 128)),
        ("POST", "/meetings/sync", ("declare_and_sync",)),
        ("POST", "/meetings/sync/", ("declare_and_sync",)),
        ("GET", "/meetings/sync", ("get", "sync")),
        ("POST", "/erasures", ("erase",)),
    ],
)
def test_routes_of_the_api(method: str, path: str, route: tuple[str, ...]) -> None:
    assert route_api(method, path) == route


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/meetings",
        "/meetings/",
        "/meetings//sync",
        "/meetings/" + "x" * 129,
        "/meetings/a.b",
        "/meetings/..",
        "/meetings/a%2Fb",
        "/meetings/a b",
        "/meetings/\u00e9t\u00e9",
        "/meetings/abc/sync/extra",
        "/meetings/abc/other",
        "/meetings/abc//",
        # Ids Firestore reserves: reading one fails, so they cannot name a meeting.
        "/meetings/__x__",
        "/meetings/__name__",
        "/meetings/____",
        "/sync",
        "/other",
        "//",
    ],
)
def test_unknown_paths_are_404(path: str) -> None:
    for method in ("GET", "POST"):
        with pytest.raises(AppError) as caught:
            route_api(method, path)
        assert (caught.value.status, caught.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    ("route", "method", "path", "allowed"),
    [
        (route_ingest, "GET", "/", ("POST",)),
        (route_ingest, "PUT", "/", ("POST",)),
        (route_api, "GET", "/meetings/abc/sync", ("POST",)),
        (route_api, "POST", "/meetings/abc", ("GET",)),
        (route_api, "DELETE", "/meetings/abc", ("GET",)),
        (route_api, "GET", "/erasures", ("POST",)),
    ],
)
def test_known_paths_with_the_wrong_method_are_405(
    route: Callable[[str, str], object], method: str, path: str, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        route(method, path)
    assert (caught.value.status, caught.value.code) == (405, "method_not_allowed")
    assert caught.value.allowed == allowed


@settings(max_examples=300)
@given(method=st.sampled_from(["GET", "POST", "PUT"]), path=st.text(max_size=160))
def test_any_path_routes_or_is_404_or_405(method: str, path: str) -> None:
    assert outcome(lambda: route_ingest(method, path)[0]) in (
        "meeting_ended",
        "not_found",
        "method_not_allowed",
    )
    assert outcome(lambda: route_api(method, path)[0]) in (
        "declare_and_sync",
        "erase",
        "sync",
        "get",
        "not_found",
        "method_not_allowed",
    )
