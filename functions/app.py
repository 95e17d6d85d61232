"""Wiring: settings → adapters → use cases, and the three HTTP handlers behind ``main.py``.

Handlers take plain request values and return ``(status, json_body)``, so they run the same under
functions-framework and in tests. A :class:`Runtime` holds our ports only; the adapters behind
them are built once per instance (lazily where they are costly: a cold ``ingest`` never builds a
Reports client it does not need).
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions import logs
from functions.backfill import default_range, fan_out, run_backfill_slice
from functions.config import Settings
from functions.declarations import accept_meeting_end
from functions.errors import AppError, ConfigError
from functions.http_edge import (
    check_request,
    error_response,
    route_ingest,
    unexpected_error_response,
)
from functions.payloads import parse_backfill_request, parse_collect_task, parse_meeting_ended
from functions.polling import handle_collect_task, poll_meeting
from functions.ports import Deps, IdTokenVerifier
from functions.signatures import verify_webhook_signature
from functions.views import meeting_view, sync_view, to_json

Response = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    content_type: str | None = None
    content_length: int | None = None


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    deps: Deps
    id_tokens: IdTokenVerifier


def build_runtime(settings: Settings) -> Runtime:
    """The adapters for ``settings``; the adapter modules are imported here, not at start-up."""
    from functions.adapters.cloud_tasks import CloudTasksQueue
    from functions.adapters.firestore_store import FirestoreStore
    from functions.adapters.id_tokens import GoogleIdTokenVerifier
    from functions.adapters.reports import LazyReportsSource

    deps = Deps(
        store=FirestoreStore.from_settings(settings),
        queue=CloudTasksQueue.from_settings(settings),
        reports=LazyReportsSource(settings),
        clock=lambda: datetime.now(UTC),
        timing=settings.timing,
        window_before_s=settings.window_before_s,
        window_after_s=settings.window_after_s,
        ip_mode=settings.ip_address_mode,
    )
    return Runtime(settings, deps, GoogleIdTokenVerifier(certs_url=settings.oidc_certs_url))


@functools.cache
def runtime() -> Runtime:
    """One per instance: settings are validated (all problems at once) on first use."""
    return build_runtime(Settings.from_env())


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
        try:
            return handler()
        except AppError as error:
            status, body = error_response(error)
            severity = "ERROR" if status >= 500 else "WARNING"
            logs.log(
                severity, "request refused", status=status, code=error.code, detail=error.message
            )
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
                return _sync(current, meeting_id)
            return 200, meeting_view(current.deps.store, meeting_id)

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


def _sync(rt: Runtime, meeting_id: str) -> Response:
    return sync_view(poll_meeting(rt.deps, meeting_id, reason="manual"), ip_mode=rt.deps.ip_mode)


# ------------------------------------------------------------------------------------------------
# collect and backfill (private: Cloud Tasks and Cloud Scheduler with OIDC)


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
    current.id_tokens.verify(
        authorization=request.headers.get("authorization"),
        audience=audience,
        allowed_emails=callers,
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
            meeting = outcome.meeting
            return 200, {
                "meeting_id": task.meeting_id,
                "polled": outcome.polled,
                "skipped": outcome.skipped_reason,
                "status": None if meeting is None else str(meeting.status),
                "revision": None if meeting is None else meeting.revision,
            }

    return guarded(handle, request, rt)


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
