"""The ReportsSource port on the Admin SDK Reports API. The only module that knows its client.

Within one poll the adapter retries what Google says is transient (503/429/5xx and the retryable
``errors[].reason``s, which also arrive on 403s) with bounded exponential backoff and jitter,
honouring ``Retry-After``. Permission problems are not retried: they become a ReportsError whose
message names the admin step that is missing; the poll records it as ``last_error``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.auth.credentials import AnonymousCredentials, Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from functions.adapters.google_credentials import (
    REPORTS_SCOPE,
    describe_token_error,
    key_file_delegated_credentials,
    keyless_delegated_credentials,
)
from functions.config import Settings
from functions.errors import ReportsError
from functions.ports import FetchStats, ReportsPage
from functions.timestamps import format_timestamp

FIELDS = (
    "nextPageToken,"
    "items(id(time,uniqueQualifier),actor(email,callerType,key,profileId),"
    "events(type,name,parameters))"
)
PAGE_SIZE = 1000
#: Reasons Google documents (and GAM retries) as transient, whatever the HTTP status.
RETRYABLE_REASONS = frozenset(
    {
        "quotaExceeded",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "backendError",
        "badGateway",
        "gatewayTimeout",
        "internalError",
        "transientError",
        "serviceNotAvailable",
    }
)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
QUOTA_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded"})

NOT_ADMIN_HELP = (
    "the Reports API refused the subject (401): REPORTS_ADMIN_SUBJECT must be a Workspace admin "
    "allowed to read activity records"
)
NO_PRIVILEGE_HELP = (
    "the Reports API refused access (403): enable the Admin SDK API in the project, authorise the "
    f"service account's client id for {REPORTS_SCOPE} (domain-wide delegation), and give "
    "REPORTS_ADMIN_SUBJECT an admin role with the Reports privilege"
)


def reports_credentials(settings: Settings) -> Credentials:
    if settings.reports_api_endpoint:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    subject = settings.reports_admin_subject or ""
    if settings.uses_key_file:
        return key_file_delegated_credentials(
            key_json=settings.reports_credentials, subject=subject
        )
    return keyless_delegated_credentials(
        subject=subject, service_account_email=settings.delegation_service_account
    )


def reports_service(
    settings: Settings, *, timeout_s: float = 60.0, credentials: Credentials | None = None
) -> Any:
    """The stock Reports client; ``credentials`` defaults to :func:`reports_credentials`."""
    options = (
        {"api_endpoint": settings.reports_api_endpoint} if settings.reports_api_endpoint else None
    )
    if credentials is None:
        credentials = reports_credentials(settings)
    return build(
        "admin",
        "reports_v1",
        http=authorized_http(credentials, timeout_s=timeout_s),
        static_discovery=True,
        cache_discovery=False,
        client_options=options,
    )


def authorized_http(credentials: Credentials, *, timeout_s: float = 60.0) -> Any:
    """One HTTP connection with credentials. httplib2 is not thread-safe: one per thread."""
    # AuthorizedHttp refreshes the token and resends on a 401 (twice by default). The Reports API
    # also answers 401 when the subject is not an admin, which no refresh cures: allow one refresh
    # (a token revoked in flight) and none at all for anonymous credentials, which cannot refresh
    # and would turn the 401 into google.auth's InvalidOperation.
    anonymous = isinstance(credentials, AnonymousCredentials)
    return google_auth_httplib2.AuthorizedHttp(
        credentials,
        http=httplib2.Http(timeout=timeout_s),
        refresh_status_codes=() if anonymous else (401,),
        max_refresh_attempts=1,
    )


class GoogleReportsSource:
    def __init__(
        self,
        service: Any,
        *,
        max_attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 32.0,
        max_total_wait_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        http_factory: Callable[[], Any] | None = None,
    ) -> None:
        """``http_factory`` makes one authorised connection per thread (the functions serve
        requests on several threads, and httplib2 mixes up concurrent responses); without it the
        service's own connection is used, one request at a time."""
        self._service = service
        self._http_factory = http_factory
        self._local = threading.local()
        self._serial = threading.Lock()
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._max_total_wait_s = max_total_wait_s
        self._sleep = sleep
        self._jitter = jitter

    @classmethod
    def from_settings(cls, settings: Settings) -> GoogleReportsSource:
        credentials = reports_credentials(settings)
        return cls(
            reports_service(settings, credentials=credentials),
            http_factory=lambda: authorized_http(credentials),
        )

    def _send(self, request: Any) -> Any:
        if self._http_factory is None:
            with self._serial:
                return request.execute(num_retries=0)
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = self._http_factory()
        return request.execute(http=http, num_retries=0)

    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        items: list[Mapping[str, Any]] = []
        pages = requests = 0
        for page in self.call_ended_pages(meeting_code=meeting_code, start=start, end=end):
            items.extend(page.activities)
            pages += 1
            requests += page.requests
        return items, FetchStats(pages=pages, requests=requests, activities=len(items))

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        """Page by page, so a large scan never holds more than one page of raw activities."""
        activities = self._service.activities()
        arguments: dict[str, Any] = {
            "userKey": "all",
            "applicationName": "meet",
            "eventName": "call_ended",
            "startTime": format_timestamp(start),
            "maxResults": PAGE_SIZE,
            "fields": FIELDS,
        }
        if meeting_code:
            arguments["filters"] = f"meeting_code=={meeting_code}"
        if end is not None:
            arguments["endTime"] = format_timestamp(end)
        request = activities.list(**arguments)
        while request is not None:
            response, attempts = self._execute(request)
            if not isinstance(response, dict):
                raise ReportsError(
                    "the Reports API returned a page that is not an object", kind="transient"
                )
            page_items = response.get("items", [])
            if not isinstance(page_items, list):
                raise ReportsError(
                    "the Reports API returned items that are not a list", kind="transient"
                )
            yield ReportsPage(
                activities=[item for item in page_items if isinstance(item, dict)],
                requests=attempts,
            )
            request = activities.list_next(request, response)

    def _execute(self, request: Any) -> tuple[Any, int]:
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(request), attempt
            except HttpError as error:
                status = int(error.resp.status)
                reasons = _reasons(error)
                retryable = status in RETRYABLE_STATUSES or bool(reasons & RETRYABLE_REASONS)
                if not retryable:
                    raise _permission_or_other(status, reasons, error) from None
                quota = status in (429, 503) or bool(reasons & QUOTA_REASONS)
                kind: Literal["quota", "transient"] = "quota" if quota else "transient"
                failure = ReportsError(
                    f"Reports API {status} {','.join(sorted(reasons)) or ''}".strip()
                    + f" after {attempt} attempt(s)",
                    kind=kind,
                )
                retry_after = _retry_after(error)
            except google.auth.exceptions.GoogleAuthError as error:
                # Raised by the token refresh inside execute(): RefreshError from the token
                # endpoint, TransportError from IAM signBlob or the network. Set-up problems are
                # permanent; google-auth flags the token endpoint's own 5xx as retryable, and a
                # TransportError not about signBlob is the network failing.
                message = describe_token_error(error)
                if not _transient_auth_error(error):
                    raise ReportsError(message, kind="permission") from None
                failure = ReportsError(f"{message} after {attempt} attempt(s)", kind="transient")
                retry_after = None
            except (TimeoutError, OSError, httplib2.HttpLib2Error) as error:
                failure = ReportsError(
                    f"Reports API unreachable ({type(error).__name__}) after {attempt} attempt(s)",
                    kind="transient",
                )
                retry_after = None
            delay = min(self._max_delay_s, self._base_delay_s * 2 ** (attempt - 1))
            delay *= 0.5 + self._jitter() / 2  # full jitter would allow 0; keep half the backoff
            if retry_after is not None:
                delay = max(delay, retry_after)
            if attempt >= self._max_attempts or waited + delay > self._max_total_wait_s:
                raise failure
            self._sleep(delay)
            waited += delay


class LazyReportsSource:
    """The Reports source built on first use (a cold ``ingest`` never needs one); a credential
    failure while building it becomes a poll error that names it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source: GoogleReportsSource | None = None
        self._lock = threading.Lock()

    def _built(self) -> GoogleReportsSource:
        with self._lock:
            if self._source is None:
                try:
                    self._source = GoogleReportsSource.from_settings(self._settings)
                except (ValueError, OSError) as error:
                    raise ReportsError(
                        f"Reports credentials unavailable: {error}", kind="permission"
                    ) from None
            return self._source

    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        return self._built().call_ended(meeting_code=meeting_code, start=start, end=end)

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        return self._built().call_ended_pages(meeting_code=meeting_code, start=start, end=end)


def _transient_auth_error(error: google.auth.exceptions.GoogleAuthError) -> bool:
    """A token failure worth retrying: the token endpoint's own 5xx (google-auth flags it
    retryable) or a TransportError that is not IAM refusing signBlob (the network failing)."""
    if getattr(error, "retryable", False):
        return True
    if not isinstance(error, google.auth.exceptions.TransportError):
        return False
    return _REFUSED.search(str(error)) is None


_REFUSED = re.compile(r"\b(?:401|403)\b|PERMISSION_DENIED|SERVICE_DISABLED|UNAUTHENTICATED")


def _reasons(error: HttpError) -> frozenset[str]:
    try:
        body = json.loads(error.content.decode("utf-8", errors="replace"))
    except (ValueError, AttributeError):
        return frozenset()
    details = body.get("error", {}) if isinstance(body, dict) else {}
    errors = details.get("errors", []) if isinstance(details, dict) else []
    return frozenset(
        str(entry["reason"]) for entry in errors if isinstance(entry, dict) and "reason" in entry
    )


def _retry_after(error: HttpError) -> float | None:
    raw = error.resp.get("retry-after") if hasattr(error.resp, "get") else None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _permission_or_other(status: int, reasons: frozenset[str], error: HttpError) -> ReportsError:
    if status == 401:
        return ReportsError(NOT_ADMIN_HELP, kind="permission")
    if status == 403:
        return ReportsError(NO_PRIVILEGE_HELP, kind="permission")
    message = " ".join(str(getattr(error, "reason", "") or "").split())[:300]
    return ReportsError(f"Reports API answered {status}: {message}", kind="transient")
