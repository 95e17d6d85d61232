"""Wiring: settings → adapters → use cases, and the five HTTP handlers behind ``main.py``.

Handlers take plain request values and return ``(status, json_body)``, so they run the same under
functions-framework and in tests. A :class:`Runtime` holds our ports only; the adapters behind
them are built once per instance (lazily where they are costly: a cold ``ingest`` never builds a
Reports client it does not need).
"""

from __future__ import annotations

import functools
import gc
import json
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.backfill import default_range, fan_out, run_backfill_slice
from functions.calendar_sync import (
    SyncReport,
    accept_notification,
    ensure_channels,
    sync_calendar,
)
from functions.config import Role, Settings
from functions.declarations import Accepted, accept_meeting_end
from functions.errors import AppError, ConfigError, PayloadTooLarge, WorkspaceError
from functions.http_edge import (
    check_request,
    error_response,
    route_api,
    route_ingest,
    route_root,
    unexpected_error_response,
)
from functions.meet_signals import handle_event
from functions.payloads import (
    parse_backfill_request,
    parse_collect_task,
    parse_erasure_request,
    parse_meeting_ended,
)
from functions.polling import handle_collect_task, poll_meeting
from functions.ports import Deps, IdTokenVerifier
from functions.pubsub_push import UnusablePush, parse_push
from functions.signatures import verify_webhook_signature
from functions.subscriptions import ensure_subscriptions, expand_organizers
from functions.views import meeting_view, sync_view, to_json

Response = tuple[int, dict[str, Any]]
#: Calendar notifications carry no body; anything larger than this is not one.
MAX_NOTIFICATION_BODY = 4096


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


#: The roles that talk to Meet, Workspace Events and the Directory (docs/rules.md "The daily run",
#: §4.3); the others never build those clients.
MEET_ROLES: frozenset[Role] = frozenset({"meet_events", "backfill"})
#: Who reads the Calendar channels: ingest checks notifications, backfill opens and syncs.
CALENDAR_STATE_ROLES: frozenset[Role] = frozenset({"ingest", "backfill"})


def build_runtime(settings: Settings, *, role: Role = "cli") -> Runtime:
    """The adapters for ``settings``; the adapter modules are imported here, not at start-up."""
    from functions.adapters.cloud_tasks import CloudTasksQueue
    from functions.adapters.firestore_store import FirestoreStore
    from functions.adapters.id_tokens import GoogleIdTokenVerifier
    from functions.adapters.reports import LazyReportsSource

    meet_side: dict[str, Any] = {}
    if role in CALENDAR_STATE_ROLES:
        from functions.adapters.firestore_calendar import FirestoreCalendarState

        meet_side["calendars"] = FirestoreCalendarState.from_settings(settings)
    if role == "backfill":
        from functions.adapters.calendar import GoogleCalendarApi

        meet_side["calendar"] = GoogleCalendarApi.from_settings(settings)
    if role in MEET_ROLES:
        from functions.adapters.firestore_workspace import FirestoreWorkspaceState
        from functions.adapters.workspace import (
            GoogleDirectory,
            GoogleMeetApi,
            GoogleWorkspaceEvents,
        )

        meet_side |= {
            "meet": GoogleMeetApi.from_settings(settings),
            "directory": GoogleDirectory.from_settings(settings),
            "events": GoogleWorkspaceEvents.from_settings(settings),
            "workspace": FirestoreWorkspaceState.from_settings(settings),
        }
    deps = Deps(
        store=FirestoreStore.from_settings(settings),
        queue=CloudTasksQueue.from_settings(settings),
        reports=LazyReportsSource(settings),
        clock=lambda: datetime.now(UTC),
        timing=settings.timing,
        window_before_s=settings.window_before_s,
        window_after_s=settings.window_after_s,
        ip_mode=settings.ip_address_mode,
        location_mode=settings.location_mode,
        erasure_key=settings.erasure_key,
        retention_days=settings.retention_days,
        **meet_side,
    )
    return Runtime(settings, deps, GoogleIdTokenVerifier(certs_url=settings.oidc_certs_url))


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, the Google clients' descriptors and tables) out of
    the garbage collector's reach: a full collection then walks only what requests made. Large
    polls allocate enough to run many: in a run of the poll benchmark at 5,000 participants (its
    polls both ways), full collections paused it 1.43 s in all, 0.63 s with this. Called once,
    after the imports (``main.py``)."""
    gc.freeze()


@functools.cache
def runtime(role: Role) -> Runtime:
    """One per instance and function: its settings are validated (all problems at once) on first
    use."""
    return build_runtime(Settings.from_env(role=role), role=role)


def _trace(request: HttpRequest, rt: Runtime | None, role: Role) -> dict[str, Any]:
    """The trace and span of the request (W3C ``traceparent`` first, then Google's header);
    malformed ids are dropped by :func:`logs.trace_fields`, never echoed."""
    cloud_trace = request.headers.get("x-cloud-trace-context")
    traceparent = request.headers.get("traceparent")
    if not cloud_trace and not traceparent:
        return {}
    try:
        project = (rt or runtime(role)).settings.google_cloud_project
    except AppError:
        return {}
    return logs.trace_fields(cloud_trace=cloud_trace, traceparent=traceparent, project=project)


def guarded(
    handler: Callable[[], Response], request: HttpRequest, rt: Runtime | None, role: Role
) -> Response:
    """Map every failure to an answer: AppErrors by their status, anything else to a 500.

    Logs carry codes, never what the caller sent: a refusal's message may quote the input (an
    email, a participant key), so only 5xx causes, which name settings and upstreams, are logged.
    Bugs and 5xx that retrying will not cure go to Error Reporting (``logs.report_error``: frames
    and the exception type, never its message), as the function named by ``role``; retryable
    ones (contention, a dependency down) are plain ERROR lines the queue's retries answer.
    """
    with logs.bind(**_trace(request, rt, role)):
        try:
            return handler()
        except AppError as error:
            status, body = error_response(error)
            if status >= 500 and not error.retryable:
                logs.report_error(
                    "request failed",
                    error,
                    service=role,
                    status=status,
                    code=error.code,
                    detail=error.message,
                )
            elif status >= 500:
                logs.error("request failed", status=status, code=error.code, detail=error.message)
            else:
                field = body["error"].get("field")
                logs.warning("request refused", status=status, code=error.code, field=field)
            return status, body
        except Exception as error:
            # Frames only: an exception's message may hold the data it choked on.
            logs.report_error(
                "unexpected failure",
                error,
                service=role,
                stack=" < ".join(
                    f"{frame.name} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
                    for frame in reversed(traceback.extract_tb(error.__traceback__))
                )[:4000],
            )
            return unexpected_error_response()


# ------------------------------------------------------------------------------------------------
# ingest (public, signed): meeting-ended declarations and nothing else


def ingest(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        route = route_ingest(request.method, request.path)
        if route[0] == "calendar_notification":
            return _calendar_notification(request, rt or runtime("ingest"))
        check_request(
            method=request.method,
            allowed=("POST",),
            content_type=request.content_type,
            content_length=request.content_length,
            body=request.body,
        )
        current = rt or runtime("ingest")
        now = current.deps.clock()
        webhook_id = verify_webhook_signature(
            headers=request.headers,
            body=request.body,
            secrets=current.settings.webhook_secrets,
            now=now,
        )
        declared = parse_meeting_ended(request.body, now=now)
        accepted = accept_meeting_end(current.deps, declared, webhook_id=webhook_id)
        return _accepted(accepted, webhook_id=webhook_id)

    return guarded(handle, request, rt, "ingest")


def _calendar_notification(request: HttpRequest, rt: Runtime) -> Response:
    """docs/api.md "ingest": a Calendar push (no body) of a channel this system opened, else 401 and
    nothing read; a change is synced by the backfill function (ingest holds no delegation)."""
    if len(request.body) > MAX_NOTIFICATION_BODY:
        raise PayloadTooLarge(MAX_NOTIFICATION_BODY)
    done = accept_notification(rt.deps, request.headers)
    logs.info(
        "calendar notification accepted",
        state=request.headers.get("x-goog-resource-state"),
        done=done,
    )
    return 200, {"accepted": done}


def _accepted(accepted: Accepted, *, webhook_id: str | None) -> Response:
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


# ------------------------------------------------------------------------------------------------
# api (private: operators and back ends with Google-signed ID tokens)


def api(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        route = route_api(request.method, request.path)
        check_request(
            method=request.method,
            allowed=("GET", "POST"),
            content_type=request.content_type,
            content_length=request.content_length,
            body=request.body,
        )
        current = rt or runtime("api")
        settings = current.settings
        # Checked before anything is read or parsed: an unauthenticated caller learns nothing,
        # not even whether a meeting exists.
        current.id_tokens.verify(
            authorization=request.headers.get("authorization"),
            audience=settings.api_url or "",
            allowed_emails=set(settings.api_principals),
        )
        if route[0] == "declare_and_sync":
            return _declare_and_sync(current, request.body)
        if route[0] == "erase":
            return _erase(current, request.body)
        meeting_id = route[1]
        with logs.bind(meeting_id=meeting_id):
            if route[0] == "sync":
                return _sync(current, meeting_id)
            if route[0] == "report":
                # The report page in UTC; an unknown meeting is NotFound, a 404 JSON error.
                from functions.report_page import HtmlAnswer, read_report, render_report

                page = render_report(read_report(current.deps.store, meeting_id))
                return 200, HtmlAnswer(page)
            return 200, meeting_view(current.deps.store, meeting_id)

    return guarded(handle, request, rt, "api")


def _sync(rt: Runtime, meeting_id: str) -> Response:
    outcome = poll_meeting(rt.deps, meeting_id, reason="manual")
    return sync_view(outcome, ip_mode=rt.deps.ip_mode, location_mode=rt.deps.location_mode)


def _declare_and_sync(rt: Runtime, body: bytes) -> Response:
    declared = parse_meeting_ended(body, now=rt.deps.clock(), typed=False)
    accepted = accept_meeting_end(rt.deps, declared, source="manual")
    meeting_id = accepted.meeting.meeting_id
    with logs.bind(meeting_id=meeting_id):
        logs.info("manual meeting accepted", created=accepted.created)
        status, answer = _sync(rt, meeting_id)
    return status, {"meeting_id": meeting_id, **answer}


def _erase(rt: Runtime, body: bytes) -> Response:
    from functions.erasure import erase_participant

    participant_key = parse_erasure_request(body)
    changed = erase_participant(rt.deps, participant_key)
    logs.info("participant erased", meetings_changed=changed)
    return 200, {"meetings_changed": changed}


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
        current = rt or runtime("collect")
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

    return guarded(handle, request, rt, "collect")


def backfill(request: HttpRequest, rt: Runtime | None = None) -> Response:
    def handle() -> Response:
        current = rt or runtime("backfill")
        settings = current.settings
        if settings.backfill_url is None:
            raise ConfigError(["BACKFILL_URL is required by the backfill function"])
        # The scheduler starts a run; the tasks identity delivers its slices.
        callers = {settings.tasks_service_account}
        if settings.scheduler_service_account:
            callers.add(settings.scheduler_service_account)
        _authenticated_post(request, current, audience=settings.backfill_url, callers=callers)
        asked = parse_backfill_request(request.body)
        if asked.calendar_id is not None:
            return _calendar_sync(current, asked.calendar_id)
        if asked.part is not None:
            return 200, run_backfill_slice(current.deps, asked.part).to_json()
        since, until = default_range(
            asked.since,
            asked.until,
            now=current.deps.clock(),
            lookback_s=settings.backfill_lookback_s,
        )
        report = fan_out(current.deps, since=since, until=until).to_json()
        subscriptions = _daily_subscriptions(current)
        if subscriptions is not None:
            report["subscriptions"] = subscriptions
        channels = _daily_channels(current)
        if channels is not None:
            report["channels"] = channels
        return 200, report

    return guarded(handle, request, rt, "backfill")


def _daily_subscriptions(rt: Runtime) -> dict[str, Any] | None:
    """The daily run's Workspace Events part (docs/rules.md): every organizer's subscription made
    sure of, those of people no longer organizers closed. Its failure never fails the run (the
    backfill still finds unannounced meetings from Reports): it is logged and reported."""
    settings, deps = rt.settings, rt.deps
    topic = settings.workspace_events_topic
    if topic is None or deps.events is None or deps.directory is None or deps.workspace is None:
        return None
    try:
        organizers = expand_organizers(
            settings.organizers, settings.organizer_group, deps.directory
        )
        report = ensure_subscriptions(
            organizers=organizers,
            events=deps.events,
            directory=deps.directory,
            state=deps.workspace,
            topic=topic,
            clock=deps.clock,
        )
    except AppError as error:
        logs.error("subscriptions not ensured", code=error.code, detail=error.message)
        return {"error": error.code}
    logs.info("subscriptions ensured", **report.counts())
    return report.counts()


# ------------------------------------------------------------------------------------------------
# meet_events (private: Workspace Events through Pub/Sub push with OIDC)


def meet_events(request: HttpRequest, rt: Runtime | None = None) -> Response:
    """docs/api.md (meet_events). Authenticated pushes are acknowledged (2xx) unless a retry may
    help: an unusable one answers 204 and is logged, as Pub/Sub would redeliver a 4xx for days."""

    def handle() -> Response:
        route_root(request.method, request.path)
        current = rt or runtime("meet_events")
        settings = current.settings
        _authenticated_post(
            request,
            current,
            audience=settings.meet_events_url or "",
            callers={settings.pubsub_push_service_account or ""},
        )
        try:
            event = parse_push(request.body)
        except UnusablePush as problem:
            logs.error("unusable push acknowledged", problem=str(problem))
            return 204, {}
        with logs.bind(event_type=event.type, message_id=event.message_id):
            done = handle_event(
                current.deps,
                event,
                organizers=_organizers(current),
                topic=settings.workspace_events_topic,
            )
            logs.info("meet event handled", done=done)
            return 200, {"handled": done}

    return guarded(handle, request, rt, "meet_events")


def _organizers(rt: Runtime) -> list[str]:
    """Who may read a conference record: ``ORGANIZERS``, then everyone with a subscription (the
    daily run expands ``ORGANIZER_GROUP`` into those)."""
    known = list(rt.settings.organizers)
    if rt.deps.workspace is not None:
        known.extend(r.organizer_email for r in rt.deps.workspace.subscriptions())
    return list(dict.fromkeys(known))


def _calendar_sync(rt: Runtime, calendar_id: str) -> Response:
    """A notification's sync task. Only calendars this system watches are read; a refusal by
    Google (the organizer lost access) is recorded on the calendar and acknowledged: retrying
    the task cannot cure it, and the daily run reports it."""
    deps = rt.deps
    state = deps.calendars
    watched = state is not None and (
        state.sync_state(calendar_id) is not None
        or any(c.calendar_id == calendar_id for c in state.channels())
    )
    if not watched:
        logs.warning("sync of a calendar no channel watches; acknowledged")
        return 200, {"calendar_sync": SyncReport().counts()}
    try:
        synced = sync_calendar(
            deps,
            calendar_id=calendar_id,
            organizer_email=calendar_id,
            lookback=timedelta(seconds=rt.settings.backfill_lookback_s),
        )
    except WorkspaceError as error:
        if error.retryable:
            raise
        logs.error("calendar sync refused by Google; recorded", code=error.code)
        return 200, {"calendar_sync": SyncReport().counts()}
    return 200, {"calendar_sync": synced.counts()}


def _daily_channels(rt: Runtime) -> dict[str, Any] | None:
    """The daily run's Calendar part (docs/rules.md): a channel per organizer's primary calendar,
    each calendar synced and its next 29 days listed; never fails the run."""
    settings, deps = rt.settings, rt.deps
    address = settings.calendar_notifications_url
    if address is None or deps.calendar is None or deps.calendars is None:
        return None
    try:
        organizers = expand_organizers(
            settings.organizers, settings.organizer_group, deps.directory
        )
        report = ensure_channels(
            deps,
            organizers=organizers,
            address=address,
            lookback=timedelta(seconds=settings.backfill_lookback_s),
        )
    except AppError as error:
        logs.error("calendar channels not ensured", code=error.code)
        return {"error": error.code}
    logs.info("calendar channels ensured", **report.counts())
    return dict(report.counts())


def json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
