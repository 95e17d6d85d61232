"""Wiring: settings → adapters → use cases, and the three HTTP handlers behind ``main.py``.

Handlers take plain request values and return ``(status, json_body)``, so they run the same under
functions-framework, in tests and in the CLI. Clients are created once per instance (lazily: a cold
``ingest`` never builds a Reports client it does not need).
"""

from __future__ import annotations

import functools
import json
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import google.auth.transport.requests

from functions import logs
from functions.attendance import format_timestamp
from functions.backfill import default_range, fan_out, run_backfill_slice
from functions.config import Settings
from functions.errors import AppError, ConfigError
from functions.http_edge import (
    check_request,
    error_response,
    parse_backfill_request,
    parse_collect_task,
    parse_meeting_ended,
    route_ingest,
    unexpected_error_response,
    verify_oidc_token,
    verify_webhook_signature,
)
from functions.model import apply_ip_mode
from functions.ports import FetchStats, ReportsError, ReportsPage
from functions.schedule import Timing
from functions.service import (
    Deps,
    NotFound,
    PollOutcome,
    accept_meeting_end,
    handle_collect_task,
    poll_meeting,
)

Response = tuple[int, dict[str, Any]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    content_type: str | None = None
    content_length: int | None = None


class LazyReports:
    """Builds the Reports client on first use; a credential failure becomes a poll error."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source_instance: Any = None
        self._lock = threading.Lock()

    def _source(self) -> Any:
        with self._lock:
            if self._source_instance is None:
                from functions.adapters.reports import GoogleReportsSource

                try:
                    self._source_instance = GoogleReportsSource.from_settings(self._settings)
                except (ValueError, OSError) as error:
                    raise ReportsError(
                        f"Reports credentials unavailable: {error}", kind="permission"
                    ) from None
            return self._source_instance

    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        result: tuple[list[Mapping[str, Any]], FetchStats] = self._source().call_ended(
            meeting_code=meeting_code, start=start, end=end
        )
        return result

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        pages: Iterator[ReportsPage] = self._source().call_ended_pages(
            meeting_code=meeting_code, start=start, end=end
        )
        return pages


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    deps: Deps
    oidc_request: google.auth.transport.requests.Request


def build_runtime(settings: Settings) -> Runtime:
    from functions.adapters.cloud_tasks import CloudTasksQueue
    from functions.adapters.firestore_store import FirestoreStore, firestore_client

    deps = Deps(
        store=FirestoreStore(firestore_client(settings)),
        queue=CloudTasksQueue.from_settings(settings),
        reports=LazyReports(settings),
        clock=lambda: datetime.now(UTC),
        timing=Timing(
            first_poll_delay_s=settings.first_poll_delay_s,
            max_poll_interval_s=settings.max_poll_interval_s,
            collect_deadline_s=settings.collect_deadline_s,
            settle_s=settings.settle_s,
            absent_grace_s=settings.absent_grace_s,
        ),
        window_before_s=settings.window_before_s,
        window_after_s=settings.window_after_s,
        ip_mode=settings.ip_address_mode,
    )
    return Runtime(settings, deps, google.auth.transport.requests.Request())


@functools.cache
def runtime() -> Runtime:
    """One per instance: settings are validated (all problems at once) on first use."""
    return build_runtime(Settings.from_env())


def to_json(value: Any) -> Any:
    """Firestore documents and records → JSON values (RFC 3339 'Z' timestamps)."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def _trace(request: HttpRequest, rt: Runtime | None) -> dict[str, str]:
    header = request.headers.get("x-cloud-trace-context")
    if not header:
        return {}
    try:
        project = (rt or runtime()).settings.google_cloud_project
    except AppError:
        return {}
    return logs.trace_field(header, project)


def guarded(handler: Callable[[], Response], request: HttpRequest, rt: Runtime | None) -> Response:
    """Map every failure to an answer: AppErrors by their status, anything else to a 500."""
    with logs.bind(**_trace(request, rt)):
        return _answer(handler)


def _answer(handler: Callable[[], Response]) -> Response:
    try:
        return handler()
    except AppError as error:
        status, body = error_response(error)
        severity = "ERROR" if status >= 500 else "WARNING"
        logs.log(severity, "request refused", status=status, code=error.code, detail=error.message)
        return status, body
    except Exception as error:
        logs.error(
            "unexpected failure",
            error=type(error).__name__,
            detail=str(error)[:500],
            stack=traceback.format_exc()[-4000:],
        )
        return unexpected_error_response()


# ------------------------------------------------------------------------------------------------
# ingest (public, signed)


def ingest(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        route = route_ingest(request.method, request.path)
        check_request(
            method=request.method,
            allowed=(request.method,),
            content_type=request.content_type,
            content_length=request.content_length,
            body=request.body,
        )
        current = rt or runtime()
        now = current.deps.clock()
        webhook_id = verify_webhook_signature(
            headers=request.headers,
            body=request.body,
            secrets=current.settings.webhook_secrets,
            now=now,
        )
        if route[0] == "meeting_ended":
            return _meeting_ended(current, request.body, webhook_id=webhook_id, now=now)
        meeting_id = route[1]
        with logs.bind(meeting_id=meeting_id):
            if route[0] == "sync":
                return sync_response(
                    poll_meeting(current.deps, meeting_id, reason="manual"), current
                )
            return 200, meeting_view(current, meeting_id)

    return guarded(handle, request, rt)


def _meeting_ended(rt: Runtime, body: bytes, *, webhook_id: str, now: datetime) -> Response:
    accepted = accept_meeting_end(
        rt.deps, parse_meeting_ended(body, now=now), webhook_id=webhook_id
    )
    meeting = accepted.meeting
    answer = {
        "meeting_id": meeting.meeting_id,
        "status": str(meeting.status),
        "first_poll_at": to_json(meeting.next_poll_at),
        "deadline": to_json(meeting.deadline),
    }
    with logs.bind(meeting_id=meeting.meeting_id, status=str(meeting.status)):
        logs.info("meeting end accepted", created=accepted.created, webhook_id=webhook_id)
    return (202 if accepted.created else 200), answer


def meeting_view(rt: Runtime, meeting_id: str) -> dict[str, Any]:
    meeting = rt.deps.store.get(meeting_id)
    if meeting is None:
        raise NotFound(meeting_id)
    participants = rt.deps.store.participants(meeting_id)
    for document in participants:
        document.pop("fingerprint", None)
    participants.sort(
        key=lambda d: (
            d.get("first_join") is None,
            d.get("first_join") or datetime.max.replace(tzinfo=UTC),
            str(d.get("participant_key")),
        )
    )
    return {"meeting": to_json(meeting.public_document()), "participants": to_json(participants)}


def sync_response(outcome: PollOutcome, rt: Runtime) -> Response:
    sessions: list[dict[str, Any]] = []
    if outcome.selected is not None:
        for participant in outcome.selected.participants:
            for session in participant.sessions:
                sessions.append(
                    {
                        "email": participant.email,
                        "participant_key": participant.participant_key,
                        "display_name": participant.display_name,
                        "join_time": format_timestamp(session.join_time),
                        "leave_time": format_timestamp(session.leave_time),
                        "duration_seconds": session.duration_seconds,
                        "device_type": session.device_type,
                        "ip_address": apply_ip_mode(session.ip_address, rt.deps.ip_mode),
                        "location_country": session.location_country,
                        "location_region": session.location_region,
                    }
                )
    count = 0 if outcome.selected is None else outcome.selected.participant_count
    body: dict[str, Any] = {
        "status": "success" if outcome.error is None else "error",
        "message": f"Synced {count} participants" if outcome.error is None else outcome.error,
        "updated": len(outcome.updated),
        "created": len(outcome.created),
        "participants": sessions,
        "meeting_status": str(outcome.meeting.status),
    }
    # A recorded Reports failure is the upstream's fault: 502, with the message that names the fix.
    return (200 if outcome.error is None else 502), body


# ------------------------------------------------------------------------------------------------
# collect (private, Cloud Tasks with OIDC)


def _authenticated_post(
    request: HttpRequest, current: Runtime, *, audience: str, callers: set[str]
) -> None:
    """What the private functions require: a small JSON POST with a Google OIDC token for one of
    ``callers`` whose audience is the function's own URL."""
    check_request(
        method=request.method,
        allowed=("POST",),
        content_type=request.content_type,
        content_length=request.content_length,
        body=request.body,
    )
    verify_oidc_token(
        authorization=request.headers.get("authorization"),
        audience=audience,
        allowed_emails=callers,
        certs_url=current.settings.oidc_certs_url,
        request=current.oidc_request,
    )


def collect(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        current = rt or runtime()
        settings = current.settings
        _authenticated_post(
            request,
            current,
            audience=settings.collect_url,
            callers={settings.tasks_service_account},
        )
        task = parse_collect_task(request.body)
        with logs.bind(meeting_id=task.meeting_id, attempt=task.attempt):
            logs.info(
                "collect task received",
                reason=task.reason,
                retry_count=request.headers.get("x-cloudtasks-taskretrycount"),
                execution_count=request.headers.get("x-cloudtasks-taskexecutioncount"),
            )
            outcome = handle_collect_task(current.deps, task)
            return 200, {
                "meeting_id": task.meeting_id,
                "polled": outcome.polled,
                "skipped": outcome.skipped_reason,
                "status": str(outcome.meeting.status),
                "revision": outcome.meeting.revision,
            }

    return guarded(handle, request, rt)


# ------------------------------------------------------------------------------------------------
# backfill (private, Cloud Scheduler with OIDC)


def backfill(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        current = rt or runtime()
        settings = current.settings
        if settings.backfill_url is None:
            raise ConfigError(["BACKFILL_URL is required by the backfill function"])
        # The scheduler starts a run; the tasks identity delivers its slices.
        callers = {settings.tasks_service_account}
        if settings.scheduler_service_account:
            callers.add(settings.scheduler_service_account)
        _authenticated_post(request, current, audience=settings.backfill_url, callers=callers)
        asked = parse_backfill_request(request.body)
        if asked.part is not None:
            return 200, run_backfill_slice(current.deps, asked.part).to_json()
        since, until = default_range(
            asked.since,
            asked.until,
            now=current.deps.clock(),
            lookback_s=settings.backfill_lookback_s,
        )
        return 200, fan_out(current.deps, since=since, until=until).to_json()

    return guarded(handle, request, rt)


def json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
