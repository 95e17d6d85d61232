"""The HTTP handlers over in-memory ports: statuses, bodies and the structured log lines."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import app
from functions.config import Settings
from functions.errors import ReportsError
from functions.polling import poll_meeting
from functions.ports import Deps
from functions.schedule import Timing
from functions.signatures import sign_webhook
from functions.views import SYNC_FAILED
from local.simulate import Stay, activities_for
from tests.fakes import FakeIdTokens, ManualClock, MemoryQueue, MemoryStore, ScriptedReports

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
END = NOW - timedelta(minutes=15)
API_URL = "http://127.0.0.1:10/"
OPERATOR = "operator@acme.iam.gserviceaccount.com"
ENV = {
    "GOOGLE_CLOUD_PROJECT": "acme",
    "TASKS_LOCATION": "here",
    "TASKS_QUEUE": "q",
    "COLLECT_URL": "http://127.0.0.1:9/",
    "TASKS_SERVICE_ACCOUNT": "tasks@acme.iam.gserviceaccount.com",
    "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
    "WEBHOOK_SECRET": SECRET,
    "ERASURE_KEY": "k" * 32,
    "API_URL": API_URL,
    "API_PRINCIPALS": OPERATOR,
}
# One runtime serves both public and private handlers here; each reads only its own fields.
SETTINGS = replace(
    Settings.from_env(ENV, role="ingest"),
    api_url=API_URL,
    api_principals=(OPERATOR,),
)


@pytest.fixture
def rt() -> app.Runtime:
    deps = Deps(
        store=MemoryStore(),
        queue=MemoryQueue(),
        reports=ScriptedReports(),
        clock=ManualClock(NOW),
        timing=Timing(),
        erasure_key=SETTINGS.erasure_key,
    )
    return app.Runtime(SETTINGS, deps, FakeIdTokens(SETTINGS.collect_url, API_URL))


def operator(
    method: str, path: str, body: bytes = b"", *, email: str | None = OPERATOR
) -> app.HttpRequest:
    """A request to the api carrying an ID token for ``email`` (None: no token)."""
    return app.HttpRequest(
        method=method,
        path=path,
        headers={} if email is None else {"authorization": f"Bearer {email}"},
        body=body,
        content_type="application/json" if body else None,
        content_length=len(body),
    )


def signed(
    method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None
) -> app.HttpRequest:
    signature = sign_webhook(secret=SECRET, webhook_id="msg_1", timestamp=NOW, body=body)
    all_headers = {k.lower(): v for k, v in signature.items()}
    all_headers.update(headers or {})
    return app.HttpRequest(
        method=method,
        path=path,
        headers=all_headers,
        body=body,
        content_type="application/json" if body else None,
        content_length=len(body),
    )


def meeting_ended_body(**extra: Any) -> bytes:
    payload = {
        "type": "meeting.ended",
        "meeting_code": "ABC-defg-HIJ",
        "ended_at": "2026-11-20T10:45:00Z",
        "started_at": "2026-11-20T10:00:00+00:00",
        "expected_participants": ["Teacher@School.example"],
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_meeting_ended_answers_202_then_200_with_the_same_meeting(rt: app.Runtime) -> None:
    status, body = app.ingest(signed("POST", "/", meeting_ended_body()), rt)
    assert status == 202
    assert body == {
        "meeting_id": body["meeting_id"],
        "status": "scheduled",
        "first_poll_at": "2026-11-20T11:00:00.000Z",
        "deadline": "2026-11-21T10:45:00.000Z",
    }
    again_status, again = app.ingest(signed("POST", "/", meeting_ended_body()), rt)
    assert (again_status, again["meeting_id"]) == (200, body["meeting_id"])


def test_get_meeting_shows_the_document_and_estimates(rt: app.Runtime) -> None:
    _, created = app.ingest(signed("POST", "/", meeting_ended_body()), rt)
    status, view = app.api(operator("GET", f"/meetings/{created['meeting_id']}"), rt)
    assert status == 200
    meeting = view["meeting"]
    assert meeting["meeting_code"] == "abc-defg-hij"
    assert meeting["status"] == "scheduled"
    assert meeting["revision"] == 0
    assert meeting["expected_participants"] == ["teacher@school.example"]
    assert "lease_owner" not in meeting  # the chain's internals stay inside
    assert view["participants"][0]["estimated"] is True
    assert view["participants"][0]["attended_seconds"] == 45 * 60
    assert "fingerprint" not in view["participants"][0]


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (signed("GET", "/meetings/nope"), 404, "not_found"),
        (signed("PUT", "/"), 405, "method_not_allowed"),
        (signed("GET", "/../etc"), 404, "not_found"),
        (signed("POST", "/", b"{"), 400, "invalid_payload"),
        (
            app.HttpRequest(
                method="POST",
                path="/",
                headers={},
                body=meeting_ended_body(),
                content_type="application/json",
            ),
            401,
            "unauthorized",
        ),
        (
            signed("POST", "/", meeting_ended_body(), headers={"webhook-signature": "v1,AAAA"}),
            401,
            "unauthorized",
        ),
        (
            app.HttpRequest(
                method="POST",
                path="/",
                headers={},
                body=b"x" * 70_000,
                content_type="application/json",
                content_length=70_000,
            ),
            413,
            "payload_too_large",
        ),
        (
            app.HttpRequest(
                method="POST",
                path="/",
                headers={},
                body=b"hello",
                content_type="text/plain",
                content_length=5,
            ),
            415,
            "unsupported_media_type",
        ),
    ],
)
def test_refusals_answer_4xx_with_an_error_body(
    rt: app.Runtime, request_: app.HttpRequest, status: int, code: str
) -> None:
    got_status, body = app.ingest(request_, rt)
    assert (got_status, body["error"]["code"]) == (status, code)
    assert rt.deps.store.meetings == {}  # type: ignore[attr-defined]


def test_invalid_payload_names_the_field(rt: app.Runtime) -> None:
    status, body = app.ingest(
        signed("POST", "/", meeting_ended_body(ended_at="2026-11-20T10:45:00")), rt
    )
    assert status == 400
    assert body["error"]["field"] == "ended_at"


def test_an_unexpected_failure_is_a_500_without_details(
    rt: app.Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(meeting_id: str) -> None:
        raise RuntimeError("secret internals")

    rt.deps.store.get = broken  # type: ignore[method-assign]
    status, body = app.api(operator("GET", "/meetings/x-1"), rt)
    assert status == 500
    assert "secret internals" not in json.dumps(body)
    lines = log_lines(capsys)
    assert lines[-1]["severity"] == "ERROR"
    assert lines[-1]["error"] == "RuntimeError"
    assert lines[-1]["stack"].startswith("broken (test_app.py:")
    # The exception's message may hold the data it choked on: it is not logged.
    assert "secret internals" not in json.dumps(lines)


def test_refusals_log_codes_never_what_was_sent(
    rt: app.Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    body = meeting_ended_body(expected_participants=["not-an-email@", "kid@school.example"])
    status, answer = app.ingest(signed("POST", "/", body), rt)
    assert status == 400
    assert "not-an-email@" in answer["error"]["message"]  # the caller is told what was wrong
    (line,) = log_lines(capsys)
    assert (line["code"], line["field"]) == ("invalid_payload", "expected_participants[0]")
    assert "not-an-email" not in json.dumps(line)


def test_ingest_serves_only_declarations(rt: app.Runtime) -> None:
    _, created = app.ingest(signed("POST", "/", meeting_ended_body()), rt)
    meeting_id = created["meeting_id"]
    for method, path in (
        ("GET", f"/meetings/{meeting_id}"),
        ("POST", f"/meetings/{meeting_id}/sync"),
    ):
        status, answer = app.ingest(signed(method, path), rt)
        assert (status, answer["error"]["code"]) == (404, "not_found")
    assert rt.deps.reports.calls == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (operator("GET", "/meetings/x-1", email=None), 401, "unauthorized"),
        (operator("GET", "/meetings/x-1", email="student@school.example"), 403, "forbidden"),
        # A webhook signature is no credential here: a captured one opens nothing.
        (signed("GET", "/meetings/x-1"), 401, "unauthorized"),
        (signed("POST", "/meetings/x-1/sync"), 401, "unauthorized"),
        (operator("GET", "/meetings/__x__"), 404, "not_found"),
        (operator("GET", "/meetings/a.b"), 404, "not_found"),
        (operator("GET", "/"), 404, "not_found"),
        (operator("PUT", "/meetings/x-1"), 405, "method_not_allowed"),
        (operator("GET", "/erasures"), 405, "method_not_allowed"),
        (operator("POST", "/erasures", b'{"participant_key": ""}'), 400, "invalid_payload"),
        (operator("POST", "/meetings/sync", b'{"meeting_code": "abc"}'), 400, "invalid_payload"),
        (operator("POST", "/meetings/x-1/sync"), 404, "not_found"),
    ],
)
def test_api_refusals(rt: app.Runtime, request_: app.HttpRequest, status: int, code: str) -> None:
    got_status, body = app.api(request_, rt)
    assert (got_status, body["error"]["code"]) == (status, code)
    assert rt.deps.store.meetings == {}  # type: ignore[attr-defined]
    assert rt.deps.reports.calls == []  # type: ignore[attr-defined]


def test_api_declares_and_syncs_a_manual_meeting(rt: app.Runtime) -> None:
    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    reports.activities += activities_for(
        [Stay("teacher@school.example", END - timedelta(minutes=45), END)],
        meeting_code="abc-defg-hij",
        conference_id="c",
    )
    body = json.loads(meeting_ended_body())
    del body["type"]
    body["expected_participants"] = []
    status, answer = app.api(operator("POST", "/meetings/sync", json.dumps(body).encode()), rt)
    assert status == 200
    assert (answer["status"], answer["created"]) == ("success", 1)
    stored = rt.deps.store.get(answer["meeting_id"])
    assert stored is not None
    assert stored.source == "manual"
    again_status, again = app.api(operator("POST", "/meetings/sync", json.dumps(body).encode()), rt)
    assert (again_status, again["meeting_id"], again["created"]) == (200, answer["meeting_id"], 0)


def test_log_lines_carry_meeting_id_attempt_status_and_trace(
    rt: app.Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    request = signed(
        "POST",
        "/",
        meeting_ended_body(),
        headers={"x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1"},
    )
    _, created = app.ingest(request, rt)
    meeting_id = created["meeting_id"]
    accepted = [line for line in log_lines(capsys) if line["message"] == "meeting end accepted"]
    assert accepted[0]["meeting_id"] == meeting_id
    assert accepted[0]["status"] == "scheduled"
    assert accepted[0]["logging.googleapis.com/trace"] == (
        "projects/acme/traces/105445aa7843bc8bf206b12000100000"
    )

    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    reports.activities += activities_for(
        [Stay("teacher@school.example", END - timedelta(minutes=45), END)],
        meeting_code="abc-defg-hij",
        conference_id="c",
    )
    poll_meeting(rt.deps, meeting_id, reason="poll", seq=1)
    (poll_line,) = [line for line in log_lines(capsys) if line["message"] == "poll finished"]
    assert poll_line["meeting_id"] == meeting_id
    assert poll_line["attempt"] == 1
    assert poll_line["status"] == "collecting"
    assert poll_line["decision"] == "continue"
    assert (poll_line["events"], poll_line["pages"], poll_line["participant_writes"]) == (1, 1, 1)
    assert poll_line["severity"] == "INFO"
    assert poll_line["time"].endswith("Z")


def test_sync_answers_in_the_seed_shape(rt: app.Runtime) -> None:
    _, created = app.ingest(signed("POST", "/", meeting_ended_body(expected_participants=[])), rt)
    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    reports.activities += activities_for(
        [
            Stay("teacher@school.example", END - timedelta(minutes=45), END),
            Stay("kid@school.example", END - timedelta(minutes=40), END - timedelta(minutes=20)),
            Stay("kid@school.example", END - timedelta(minutes=10), END),
        ],
        meeting_code="abc-defg-hij",
        conference_id="c",
    )
    status, body = app.api(operator("POST", f"/meetings/{created['meeting_id']}/sync"), rt)
    assert status == 200
    assert (body["status"], body["message"]) == ("success", "Synced 2 participants")
    assert (body["created"], body["updated"]) == (2, 0)
    assert len(body["participants"]) == 3
    assert body["participants"][0]["email"] == "teacher@school.example"
    assert body["participants"][0]["join_time"] == "2026-11-20T10:00:00.000Z"


def test_a_failed_sync_answers_502_without_upstream_text(rt: app.Runtime) -> None:
    _, created = app.ingest(signed("POST", "/", meeting_ended_body()), rt)
    meeting_id = created["meeting_id"]
    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    upstream = (
        "Error 403 from admin.googleapis.com: caller lacks privilege for admin@school.example"
    )
    reports.failures.append(ReportsError(upstream, kind="permission"))

    status, body = app.api(operator("POST", f"/meetings/{meeting_id}/sync"), rt)

    assert (status, body["status"], body["message"]) == (502, "error", SYNC_FAILED)
    assert body["error"] == {"code": "reports_failed", "message": SYNC_FAILED}
    assert "googleapis" not in json.dumps(body)
    assert "admin@school.example" not in json.dumps(body)
    # Operators read the cause where it is kept.
    _, view = app.api(operator("GET", f"/meetings/{meeting_id}"), rt)
    assert view["meeting"]["last_error"]["message"] == upstream
