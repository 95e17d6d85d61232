"""The CalendarApi port on Google Calendar API v3: ``events.list`` (full and incremental sync),
``events.watch`` and ``channels.stop``. The only module that knows the Calendar client.

Every call impersonates the organizer through domain-wide delegation with
``calendar.events.readonly`` (:class:`~functions.adapters.google_credentials.SubjectConnections`;
against a stand-in endpoint, static ``local-subject:<email>`` tokens and no Google credentials at
all). The stock client is built from its static discovery document, whose ``rootUrl`` +
``servicePath`` is ``https://www.googleapis.com/calendar/v3/``: an ``api_endpoint`` override
replaces both, so a stand-in's endpoint is made to end in ``calendar/v3/``.

Every call goes through the shared backoff (:mod:`functions.adapters.backoff`). A 410 on
``events.list`` is :class:`~functions.errors.SyncTokenExpired`; a channel already gone is not an
error of ``channels.stop``; an API not enabled, a scope not authorised, a calendar the organizer
cannot read are WorkspaceErrors of kind ``permission`` whose message names the admin step.
Messages never carry an email address (logs must not): the subject is "the organizer", and any
address in Google's own text is replaced. Google's JSON is read defensively: an item of a page
that is not an object is skipped, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypeGuard

from functions.adapters.backoff import Backoff, HttpFailure
from functions.adapters.google_credentials import (
    CredentialsUnavailable,
    SubjectConnections,
    describe_token_error,
    unauthorized_client_help,
)
from functions.adapters.workspace import delegated_connections, workspace_service
from functions.calendar_records import CALENDAR_EVENTS_SCOPE, CalendarPage, OpenedChannel
from functions.config import Settings
from functions.errors import SyncTokenExpired, WorkspaceError, quoted
from functions.timestamps import format_timestamp, from_ms

CALENDAR_API: Final = "Google Calendar API"
CALENDAR_SCOPES: Final = (CALENDAR_EVENTS_SCOPE,)
#: The path every Calendar v3 method lives under (the discovery document's ``servicePath``).
SERVICE_PATH: Final = "calendar/v3/"
#: ``maxResults`` of ``events.list``: the documented maximum (the default is 250).
EVENTS_PAGE_SIZE: Final = 2500
#: ``events.watch``: a channel id is at most 64 characters (Google's push guide).
MAX_CHANNEL_ID_LENGTH: Final = 64
DEFAULT_BACKOFF: Final = Backoff()

ENABLE_HELP: Final = "enable the Google Calendar API in the project"
ORGANIZER_HELP: Final = "the organizer must be a Workspace user of this domain"
NOT_READABLE_HELP: Final = (
    "the organizer must be a Workspace user of this domain whose primary calendar exists"
)
FORBIDDEN_HELP: Final = "the organizer may not read that calendar"
ADDRESS_HELP: Final = "the notification address must be an HTTPS URL that Google can reach"

_DISABLED_REASONS = frozenset({"SERVICE_DISABLED", "accessNotConfigured"})
_SCOPE_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"})
_DUPLICATE_CHANNEL: Final = "channelIdNotUnique"
#: Anything that looks like an email address, in text from Google or from google-auth.
_EMAIL = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*")
_REDACTED: Final = "<address>"


class _Missing(Exception):
    """A 404: no such calendar for this subject, or (``channels.stop``) no such channel."""


class _Gone(Exception):
    """A 410: the sync token (or a page token of a sync) is no longer valid."""


class _Refused(Exception):
    """A plain 400: a request Google will never accept as it is (the channel's address)."""

    def __init__(self, message: str, reasons: frozenset[str]) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons


def calendar_endpoint(setting: str | None) -> str | None:
    """The ``api_endpoint`` for a stand-in: the setting with ``calendar/v3/`` appended unless it
    ends with it already (``http://127.0.0.1:PORT`` → ``http://127.0.0.1:PORT/calendar/v3/``);
    None (Google itself) for no setting."""
    if setting is None or not setting.strip():
        return None
    endpoint = setting.strip()
    if not endpoint.endswith("/"):
        endpoint += "/"
    return endpoint if endpoint.endswith("/" + SERVICE_PATH) else endpoint + SERVICE_PATH


def redact(text: str, *, subject: str = "") -> str:
    """``text`` without the subject (named "the organizer") and without any email address."""
    if subject:
        text = text.replace(repr(subject), "the organizer").replace(subject, "the organizer")
    return _EMAIL.sub(_REDACTED, text)


def _permanent(failure: HttpFailure) -> Exception:
    """What a Calendar answer that is not retried means."""
    status, reasons = failure.status, failure.all_reasons
    message = redact(failure.message)
    if status == 404:
        return _Missing()
    if status == 410:
        return _Gone()
    if status == 403 and (
        reasons & _DISABLED_REASONS or "has not been used in project" in failure.message
    ):
        return WorkspaceError(
            f"the {CALENDAR_API} is not enabled ({message}): {ENABLE_HELP}", kind="permission"
        )
    if status == 401 or (status == 403 and reasons & _SCOPE_REASONS):
        return WorkspaceError(
            f"the {CALENDAR_API} refused the delegated credentials ({status}): "
            f"{unauthorized_client_help(CALENDAR_SCOPES)}",
            kind="permission",
        )
    if status == 403:
        return WorkspaceError(
            f"the {CALENDAR_API} refused access (403: {message}): {FORBIDDEN_HELP}",
            kind="permission",
        )
    if status == 400:
        return _Refused(message, reasons)
    return WorkspaceError(f"the {CALENDAR_API} answered {status}: {message}", kind="transient")


class GoogleCalendarApi:
    """:class:`functions.ports.CalendarApi` on Google Calendar API v3, as the organizer."""

    def __init__(
        self, service: Any, connections: SubjectConnections, *, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        self._service = service
        self._connections = connections
        self._retrying = backoff.retrying(
            api=CALENDAR_API,
            error=WorkspaceError,
            permanent=_permanent,
            describe_auth=lambda error: describe_token_error(
                error, scopes=CALENDAR_SCOPES, subject_help=ORGANIZER_HELP
            ),
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, backoff: Backoff = DEFAULT_BACKOFF, timeout_s: float = 60.0
    ) -> GoogleCalendarApi:
        """``CALENDAR_API_ENDPOINT`` names a stand-in: its host root, or a URL ending in
        ``calendar/v3/``."""
        endpoint = calendar_endpoint(settings.calendar_api_endpoint)
        return cls(
            workspace_service("calendar", "v3", endpoint, timeout_s=timeout_s),
            delegated_connections(settings, endpoint, CALENDAR_SCOPES, timeout_s),
            backoff=backoff,
        )

    def events_page(
        self,
        calendar_id: str,
        *,
        as_user: str,
        sync_token: str | None = None,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        page_token: str | None = None,
    ) -> CalendarPage:
        """One page of ``events.list`` (single instances, deleted ones included): incremental
        with ``sync_token``, else over ``[time_min, time_max)`` when given. Google refuses a
        sync token with a time range, so asking for both is a ValueError."""
        if sync_token is not None and (time_min is not None or time_max is not None):
            raise ValueError("events.list cannot combine a sync token with timeMin/timeMax")
        query: dict[str, Any] = {
            "calendarId": _calendar(calendar_id),
            "singleEvents": True,
            "showDeleted": True,
            "maxResults": EVENTS_PAGE_SIZE,
        }
        if page_token is not None:
            query["pageToken"] = page_token
        if sync_token is not None:
            query["syncToken"] = sync_token
        if time_min is not None:
            query["timeMin"] = rfc3339(time_min)
        if time_max is not None:
            query["timeMax"] = rfc3339(time_max)
        try:
            page = self._send(self._service.events().list(**query), as_user)
        except _Gone:
            raise SyncTokenExpired(calendar_id) from None
        except _Missing:
            raise _not_readable(calendar_id, as_user) from None
        except _Refused as refused:
            raise _answered_400(refused, "events.list") from None
        return page_of(_object(page), page_token=page_token)

    def watch(
        self,
        calendar_id: str,
        *,
        as_user: str,
        channel_id: str,
        token: str,
        address: str,
        ttl_s: int,
    ) -> OpenedChannel:
        """``events.watch``: a ``web_hook`` channel to ``address`` for ``ttl_s`` seconds, whose
        notifications carry ``token`` in ``X-Goog-Channel-Token``."""
        if not channel_id or len(channel_id) > MAX_CHANNEL_ID_LENGTH:
            raise ValueError(f"a channel id has 1 to {MAX_CHANNEL_ID_LENGTH} characters")
        if ttl_s <= 0:
            raise ValueError("a channel's ttl must be positive")
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(ttl_s)},
        }
        request = self._service.events().watch(calendarId=_calendar(calendar_id), body=body)
        try:
            answer = self._send(request, as_user)
        except _Gone:
            raise WorkspaceError(f"the {CALENDAR_API} answered 410", kind="transient") from None
        except _Missing:
            raise _not_readable(calendar_id, as_user) from None
        except _Refused as refused:
            message = f"the {CALENDAR_API} refused the channel (400: {refused.message})"
            if _DUPLICATE_CHANNEL in refused.reasons:  # a new channel id may succeed
                raise WorkspaceError(message, kind="transient") from None
            raise WorkspaceError(f"{message}: {ADDRESS_HELP}", kind="permission") from None
        channel = channel_of(_object(answer), channel_id)
        if channel is None:
            raise WorkspaceError(f"the {CALENDAR_API} answered no channel", kind="transient")
        return channel

    def stop(self, *, as_user: str, channel_id: str, resource_id: str) -> None:
        """``channels.stop``; a channel already stopped or expired (404) is not an error."""
        request = self._service.channels().stop(body={"id": channel_id, "resourceId": resource_id})
        try:
            self._send(request, as_user)
        except (_Missing, _Gone):
            return
        except _Refused as refused:
            raise _answered_400(refused, "channels.stop") from None

    def _send(self, request: Any, subject: str) -> Any:
        """``request`` executed as ``subject`` through the backoff; what it answered."""
        try:
            response, _ = self._retrying.call(
                lambda: request.execute(http=self._connections.http(subject), num_retries=0)
            )
        except CredentialsUnavailable as error:
            raise WorkspaceError(redact(str(error), subject=subject), kind="permission") from None
        except WorkspaceError as error:
            raise WorkspaceError(redact(error.message, subject=subject), kind=error.kind) from None
        return response


def rfc3339(when: datetime) -> str:
    """``timeMin``/``timeMax``: RFC 3339 in UTC with milliseconds; a naive time is refused."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("events.list needs an aware datetime for timeMin/timeMax")
    return format_timestamp(when)


def page_of(page: Mapping[str, Any], *, page_token: str | None = None) -> CalendarPage:
    """An ``Events`` page: its object items, the next page's token, and the sync token only on
    the last page (Google omits it while more pages follow). A next page token equal to
    ``page_token`` (the page asked for) would loop: a transient error."""
    items = page.get("items")
    events = (
        tuple(item for item in items if isinstance(item, dict)) if isinstance(items, list) else ()
    )
    next_page = page.get("nextPageToken")
    next_page_token = next_page if _text(next_page) else None
    if next_page_token is not None and next_page_token == page_token:
        raise WorkspaceError(f"the {CALENDAR_API} repeated a page token", kind="transient")
    sync = page.get("nextSyncToken")
    return CalendarPage(
        events=events,
        next_page_token=next_page_token,
        next_sync_token=sync if _text(sync) and next_page_token is None else None,
    )


def channel_of(answer: Mapping[str, Any], channel_id: str) -> OpenedChannel | None:
    """A ``Channel`` answered by ``events.watch`` for the channel ``channel_id``; None without
    a resource id, or for another channel."""
    resource_id, answered_id = answer.get("resourceId"), answer.get("id")
    if not _text(resource_id) or (answered_id is not None and answered_id != channel_id):
        return None
    return OpenedChannel(
        id=channel_id, resource_id=resource_id, expiration=expiration_of(answer.get("expiration"))
    )


def expiration_of(raw: object) -> datetime | None:
    """A Channel's ``expiration``: Unix milliseconds (an int64, so a JSON string) → aware UTC."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw).strip()
    if not text.isdigit() or len(text) > 15:  # 15 digits: beyond the year 30000
        return None
    try:
        return from_ms(int(text))
    except OverflowError:
        return None


def _not_readable(calendar_id: str, subject: str) -> WorkspaceError:
    """404 on ``events.list``/``events.watch``; the calendar is named only when its id is not an
    address (the organizer's primary calendar's id is the organizer's email)."""
    if calendar_id.strip().lower() in {"primary", subject.strip().lower()}:
        name = "the organizer's primary calendar"
    elif "@" in calendar_id:
        name = "the calendar"
    else:
        name = f"calendar {quoted(calendar_id)}"
    return WorkspaceError(
        f"{name} is not readable as the organizer (404): {NOT_READABLE_HELP}", kind="permission"
    )


def _answered_400(refused: _Refused, method: str) -> WorkspaceError:
    message = f"the {CALENDAR_API} answered 400 to {method}: {refused.message}"
    return WorkspaceError(message, kind="transient")


def _calendar(calendar_id: str) -> str:
    if not calendar_id.strip():
        raise ValueError("a calendar id is needed")
    return calendar_id


def _object(answer: Any) -> Mapping[str, Any]:
    if not isinstance(answer, dict):
        raise WorkspaceError(f"the {CALENDAR_API} answered a non-object", kind="transient")
    return answer


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)
