"""The real calls of ``doctor`` (:class:`functions.doctor.Probes`), made with the same clients
and credentials the functions use, and what Google answered classified into a
:class:`~functions.doctor.Failure`. The only module of doctor that knows Google's types.

Each probe makes one call, without retries (a diagnosis should answer in seconds), and never
raises: a set-up failure, the network and anything unexpected all become a Failure.

- Reports: ``activities.list(applicationName=meet, userKey=all, maxResults=1)`` on the client
  ``functions.adapters.reports`` builds for ``collect``: keyless delegation (IAM ``signBlob``,
  then the token exchange), a key file, or nothing against a stand-in endpoint.
- Directory (as REPORTS_ADMIN_SUBJECT, as the Directory adapter calls it): ``users.get`` of the
  first of ORGANIZERS, or ``members.list`` of ORGANIZER_GROUP, whose first user member is then
  the first organizer.
- Meet REST ``conferenceRecords.list(pageSize=1)`` and Calendar ``events.list(maxResults=1)`` of
  the organizer's calendar, as the first organizer.

A 404 for the organizer's user or calendar still proves what doctor checks (the API enabled, the
token accepted for its scopes, the subject a user: a stranger fails at the token endpoint), so it
passes with a note.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import google.api_core.exceptions
import google.auth.credentials
import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from functions.adapters.backoff import HttpFailure
from functions.adapters.calendar import CALENDAR_SCOPES, calendar_endpoint
from functions.adapters.cloud_tasks import tasks_client
from functions.adapters.firestore_store import firestore_client
from functions.adapters.google_credentials import (
    REPORTS_SCOPE,
    CredentialsUnavailable,
    SubjectConnections,
)
from functions.adapters.reports import reports_credentials, reports_service
from functions.adapters.workspace import (
    DIRECTORY_SCOPES,
    MEET_SCOPES,
    delegated_connections,
    workspace_service,
)
from functions.config import Settings
from functions.doctor import Failure, FailureKind, Outcome, Passed, clean_detail

__all__ = ["Delegate", "GoogleProbes", "classify_auth_error", "classify_http_error"]

#: Makes delegated credentials for (subject, scopes); tests pass one built on the stand-ins.
Delegate = Callable[[str, Sequence[str]], google.auth.credentials.Credentials]

DEFAULT_TIMEOUT_S: Final = 15.0
#: The collection of meetings (functions.adapters.firestore_store): its first document name.
MEETINGS: Final = "meetings"
_DISABLED = frozenset({"accessNotConfigured", "SERVICE_DISABLED"})
_SCOPE = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
_NOT_ENABLED_TEXT = "has not been used in project"
_SUBJECT_WORDS = ("email", "user id", "subject", "user not found")
_JSON_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.)*)"')
_JSON_CODE = re.compile(r'"code":\s*(\d{3})')
_JSON_STATUS = re.compile(r'"status":\s*"([A-Z_]+)"')


class GoogleProbes:
    """:class:`functions.doctor.Probes` on Google's clients (or the stand-ins the settings
    name). ``delegate`` replaces the delegated credentials of every Workspace call."""

    def __init__(
        self,
        settings: Settings,
        *,
        delegate: Delegate | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._delegate = delegate
        self._timeout_s = timeout_s

    def firestore(self) -> Outcome:
        try:
            client = firestore_client(self._settings)
            query = client.collection(MEETINGS).select([]).limit(1)
            list(query.stream(retry=None, timeout=self._timeout_s))
        except google.auth.exceptions.GoogleAuthError as error:
            return classify_auth_error(error)
        except google.api_core.exceptions.GoogleAPIError as error:
            return classify_grpc_error(error)
        return Passed()

    def queue(self) -> Outcome:
        try:
            client = tasks_client(self._settings)
            client.get_queue(name=self._settings.queue_path, retry=None, timeout=self._timeout_s)
        except google.auth.exceptions.GoogleAuthError as error:
            return classify_auth_error(error)
        except google.api_core.exceptions.GoogleAPIError as error:
            return classify_grpc_error(error)
        return Passed()

    def reports(self) -> Outcome:
        settings, scopes = self._settings, (REPORTS_SCOPE,)

        def call() -> Outcome:
            if self._delegate is not None:
                credentials = self._delegate(settings.reports_admin_subject or "", scopes)
            else:
                credentials = reports_credentials(settings)
            service = reports_service(settings, timeout_s=self._timeout_s, credentials=credentials)
            request = service.activities().list(userKey="all", applicationName="meet", maxResults=1)
            request.execute(num_retries=0)
            return Passed()

        return _guarded(call, check="reports", scopes=scopes)

    def directory(self) -> Outcome:
        settings = self._settings
        subject = settings.reports_admin_subject or ""
        connections = self._connections(settings.directory_api_endpoint, DIRECTORY_SCOPES)

        def call() -> Outcome:
            service = workspace_service(
                "admin", "directory_v1", settings.directory_api_endpoint, timeout_s=self._timeout_s
            )
            http = connections.http(subject)
            if settings.organizers:
                organizer = settings.organizers[0]
                try:
                    service.users().get(userKey=organizer).execute(http=http, num_retries=0)
                except HttpError as error:
                    if error.resp.status != 404:
                        raise
                    return Passed(note="the first organizer is not in the directory: 404")
                return Passed(organizer=organizer)
            group = settings.organizer_group or ""
            page = service.members().list(groupKey=group, maxResults=200)
            return _first_member(page.execute(http=http, num_retries=0))

        return _guarded(call, check="directory", scopes=DIRECTORY_SCOPES)

    def meet(self, organizer: str) -> Outcome:
        endpoint = self._settings.meet_api_endpoint
        connections = self._connections(endpoint, MEET_SCOPES)

        def call() -> Outcome:
            service = workspace_service("meet", "v2", endpoint, timeout_s=self._timeout_s)
            request = service.conferenceRecords().list(pageSize=1)
            request.execute(http=connections.http(organizer), num_retries=0)
            return Passed()

        return _guarded(call, check="meet", scopes=MEET_SCOPES)

    def calendar(self, organizer: str) -> Outcome:
        endpoint = calendar_endpoint(self._settings.calendar_api_endpoint)
        connections = self._connections(endpoint, CALENDAR_SCOPES)

        def call() -> Outcome:
            service = workspace_service("calendar", "v3", endpoint, timeout_s=self._timeout_s)
            request = service.events().list(calendarId=organizer, maxResults=1)
            try:
                request.execute(http=connections.http(organizer), num_retries=0)
            except HttpError as error:
                if error.resp.status != 404:
                    raise
                return Passed(note="the first organizer's calendar was not found: 404")
            return Passed()

        return _guarded(call, check="calendar", scopes=CALENDAR_SCOPES)

    def _connections(self, endpoint: str | None, scopes: Sequence[str]) -> SubjectConnections:
        if self._delegate is None:
            return delegated_connections(self._settings, endpoint, scopes, self._timeout_s)
        delegate = self._delegate
        return SubjectConnections(lambda subject: delegate(subject, scopes))


def _first_member(page: Any) -> Outcome:
    members = page.get("members") if isinstance(page, dict) else None
    for member in members if isinstance(members, list) else []:
        email = member.get("email") if isinstance(member, dict) else None
        if member.get("type") == "USER" and isinstance(email, str) and email.strip():
            return Passed(organizer=email.strip().lower())
    return Failure(kind="empty_group")


def _guarded(call: Callable[[], Outcome], *, check: str, scopes: Sequence[str]) -> Outcome:
    """``call()``, and whatever it raised as a Failure of ``check``."""
    try:
        return call()
    except HttpError as error:
        return classify_http_error(error, check=check, scopes=scopes)
    except CredentialsUnavailable as error:
        return Failure(kind="no_identity", detail=clean_detail(str(error)), scopes=tuple(scopes))
    except google.auth.exceptions.GoogleAuthError as error:
        return classify_auth_error(error, scopes=scopes)
    except ValueError as error:  # keyless credentials: no subject, no service-account email
        return Failure(kind="no_identity", detail=clean_detail(str(error)), scopes=tuple(scopes))
    except (TimeoutError, OSError, httplib2.HttpLib2Error) as error:
        return Failure(kind="unreachable", reason=type(error).__name__, detail=_text(error))


def classify_http_error(error: HttpError, *, check: str, scopes: Sequence[str] = ()) -> Failure:
    """What a REST answer of Google means for ``check`` (reports, directory, meet, calendar)."""
    failure = HttpFailure.of(error)
    status, reasons = failure.status, failure.all_reasons
    reason = _reason(failure)
    kind: FailureKind = "unexpected"
    if status == 403 and (reasons & _DISABLED or _NOT_ENABLED_TEXT in failure.message):
        kind = "api_disabled"
    elif status == 403 and reasons & _SCOPE:
        kind = "scope_insufficient"
    elif check == "reports" and status == 401:
        kind = "not_admin"
    elif check == "reports" and status == 403:
        kind = "no_privilege"
    elif status == 401:
        kind = "scope_insufficient"  # a delegated token the API does not take for its scopes
    elif status == 403:
        kind = "forbidden"
    elif status == 404 and check == "directory":
        kind = "not_found"
    return Failure(
        kind=kind,
        status=status,
        reason=reason,
        detail=clean_detail(failure.message),
        scopes=tuple(scopes),
    )


def classify_auth_error(
    error: google.auth.exceptions.GoogleAuthError, *, scopes: Sequence[str] = ()
) -> Failure:
    """A failure of the credentials: IAM ``signBlob``, the token exchange, or no credentials."""
    scoped = tuple(scopes)
    if isinstance(error, google.auth.exceptions.DefaultCredentialsError):
        return Failure(kind="no_credentials", detail=_text(error), scopes=scoped)
    code, description = _oauth_error(error)
    if code == "unauthorized_client":
        return Failure(kind="unauthorized_client", reason=code, detail=description, scopes=scoped)
    if code == "invalid_grant" and any(w in description.lower() for w in _SUBJECT_WORDS):
        return Failure(kind="subject_unknown", reason=code, detail=description, scopes=scoped)
    if code:
        return Failure(kind="unexpected", reason=code, detail=description, scopes=scoped)
    text = str(error)
    if "signblob" in text.lower():
        return _sign_blob_failure(text, scoped)
    if isinstance(error, google.auth.exceptions.TransportError):
        return Failure(kind="unreachable", reason=type(error).__name__, detail=_text(error))
    return Failure(kind="unexpected", reason=type(error).__name__, detail=_text(error))


def _sign_blob_failure(text: str, scopes: tuple[str, ...]) -> Failure:
    """google-auth's ``Error calling the IAM signBlob API: b'<Google's JSON>'``, read."""
    code = _JSON_CODE.search(text)
    status_name = _JSON_STATUS.search(text)
    message = _JSON_MESSAGE.search(text)
    status = int(code.group(1)) if code else None
    reason = status_name.group(1) if status_name else ""
    detail = clean_detail(message.group(1)) if message else ""
    kind: FailureKind = "unexpected"
    if "SERVICE_DISABLED" in text or _NOT_ENABLED_TEXT in text:
        kind = "iam_disabled"
    elif status == 403 or reason == "PERMISSION_DENIED":
        kind = "sign_denied"
    elif status is None:
        kind = "unreachable"
    return Failure(
        kind=kind,
        status=status,
        reason=reason or "signBlob",
        detail=detail or clean_detail(text),
        scopes=scopes,
    )


def classify_grpc_error(error: google.api_core.exceptions.GoogleAPIError) -> Failure:
    """A Firestore or Cloud Tasks failure (google-api-core's exceptions)."""
    exceptions = google.api_core.exceptions
    reason = str(getattr(error, "reason", "") or "") or type(error).__name__
    status = getattr(error, "code", None)
    detail = clean_detail(str(getattr(error, "message", "") or error))
    kind: FailureKind = "unexpected"
    if isinstance(error, exceptions.NotFound):
        kind = "not_found"
    elif isinstance(error, exceptions.PermissionDenied):
        disabled = reason in _DISABLED or _NOT_ENABLED_TEXT in str(error)
        kind = "api_disabled" if disabled else "permission_denied"
    elif isinstance(
        error,
        exceptions.ServiceUnavailable | exceptions.DeadlineExceeded | exceptions.RetryError,
    ):
        kind = "unreachable"
    return Failure(
        kind=kind,
        status=status if isinstance(status, int) else None,
        reason=reason,
        detail=detail,
    )


def _reason(failure: HttpFailure) -> str:
    """The legacy ``errors[].reason`` Google gave, else the ErrorInfo reason, else the status."""
    for reasons in (failure.reasons, failure.detail_reasons):
        if reasons:
            return ",".join(sorted(reasons))
    return failure.rpc_status


def _oauth_error(error: BaseException) -> tuple[str, str]:
    """The OAuth ``error`` and ``error_description`` of a token endpoint's refusal."""
    args: tuple[Any, ...] = error.args
    for arg in args[1:]:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str):
            return arg["error"], clean_detail(str(arg.get("error_description") or ""))
        if isinstance(arg, str | bytes):
            try:
                data = json.loads(arg)
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                return data["error"], clean_detail(str(data.get("error_description") or ""))
    first = args[0] if args else ""
    if isinstance(first, str) and ":" in first:
        code, _, description = first.partition(":")
        if code and " " not in code and code.islower():
            return code, clean_detail(description)
    return "", ""


def _text(error: BaseException) -> str:
    return clean_detail(str(error))
