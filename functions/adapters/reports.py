"""The ReportsSource port on the Admin SDK Reports API. The only module that knows its client.

Within one poll the adapter retries what Google says is transient (503/429/5xx and the retryable
``errors[].reason``s, which also arrive on 403s) with bounded exponential backoff and jitter,
honouring ``Retry-After`` (the shared loop of :mod:`functions.adapters.backoff`). Permission
problems are not retried: they become a ReportsError whose message names the admin step that is
missing; the poll records it as ``last_error``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth.credentials import AnonymousCredentials, Credentials
from googleapiclient.discovery import build

from functions.adapters.backoff import HttpFailure, Retrying
from functions.adapters.google_credentials import (
    REPORTS_SCOPE,
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
        self._retrying = Retrying(
            api="Reports API",
            error=ReportsError,
            permanent=_permission_or_other,
            max_attempts=max_attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            max_total_wait_s=max_total_wait_s,
            sleep=sleep,
            jitter=jitter,
        )

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
        """Page by page, so a large scan never holds more than two pages of raw activities: the
        next page is asked for (on a thread of its own, one request in flight at a time) while
        the caller decodes this one, so Google's time per page overlaps ours."""
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
        prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports-page")
        try:
            first = prefetch.submit(self._page, activities, activities.list(**arguments))
            pending: Future[tuple[ReportsPage, Any]] | None = first
            while pending is not None:
                page, following = pending.result()
                pending = (
                    None
                    if following is None
                    else prefetch.submit(self._page, activities, following)
                )
                yield page
        finally:
            # A caller that stops early (a failure while decoding) does not wait for the page
            # in flight: it is dropped when it arrives.
            prefetch.shutdown(wait=False, cancel_futures=True)

    def _page(self, activities: Any, request: Any) -> tuple[ReportsPage, Any]:
        """One page, and the request of the page after it (None after the last)."""
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
        page = ReportsPage(
            activities=[item for item in page_items if isinstance(item, dict)], requests=attempts
        )
        return page, activities.list_next(request, response)

    def _execute(self, request: Any) -> tuple[Any, int]:
        return self._retrying.call(lambda: self._send(request))


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


def _permission_or_other(failure: HttpFailure) -> ReportsError:
    """What a Reports answer that is not retried means."""
    if failure.status == 401:
        return ReportsError(NOT_ADMIN_HELP, kind="permission")
    if failure.status == 403:
        return ReportsError(NO_PRIVILEGE_HELP, kind="permission")
    message = " ".join(str(getattr(failure.error, "reason", "") or "").split())[:300]
    return ReportsError(f"Reports API answered {failure.status}: {message}", kind="transient")
