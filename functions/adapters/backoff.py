"""One retry loop for Google's REST APIs: what is transient, how long to wait, when to give up.

A call is retried when Google says it is transient: HTTP 429/500/502/503/504, or one of the
``errors[].reason``s Google documents as retryable (they also arrive on 403s), a token refresh
that failed on the token endpoint's own 5xx or on the network, and the network itself. Between
attempts the wait doubles from ``base_delay_s`` up to ``max_delay_s``, half of it jittered (full
jitter would allow no wait at all), and never shorter than the ``Retry-After`` Google asked for.
The loop gives up after ``max_attempts`` attempts or before a wait that would take the total past
``max_total_wait_s``: a poll must finish inside its task's deadline, and the task chain (not this
loop) is what retries later.

What is not transient is the caller's to name: ``permanent`` maps the HttpError to the exception
to raise (an admin step that is missing, a record that is not there), and ``describe_auth`` turns
a delegation failure into the one line naming the set-up step.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from functions.adapters.google_credentials import describe_token_error
from functions.errors import AppError, ReportsErrorKind

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

T = TypeVar("T")
E_co = TypeVar("E_co", bound=AppError, covariant=True)
E = TypeVar("E", bound=AppError)


class ErrorType(Protocol[E_co]):
    """What :class:`~functions.errors.ReportsError` and ``WorkspaceError`` are called with."""

    def __call__(self, message: str, *, kind: ReportsErrorKind) -> E_co: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpFailure:
    """A Google error answer, read once: the HTTP ``status``, the legacy ``errors[].reason``s
    (what decides a retry), the ``ErrorInfo`` reasons of ``details[]`` (``SERVICE_DISABLED``),
    the canonical ``error.status`` (``PERMISSION_DENIED``) and ``error.message``."""

    status: int
    reasons: frozenset[str]
    detail_reasons: frozenset[str]
    rpc_status: str
    message: str
    retry_after: float | None
    error: HttpError

    @classmethod
    def of(cls, error: HttpError) -> HttpFailure:
        details = _error_object(error)
        entries = details.get("errors", [])
        infos = details.get("details", [])
        message = details.get("message")
        if not isinstance(message, str) or not message:
            message = str(getattr(error, "reason", "") or "")
        return cls(
            status=int(error.resp.status),
            reasons=_strings(entries, "reason"),
            detail_reasons=_strings(infos, "reason"),
            rpc_status=str(details.get("status") or ""),
            message=" ".join(message.split())[:300],
            retry_after=_retry_after(error),
            error=error,
        )

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES or bool(self.reasons & RETRYABLE_REASONS)

    @property
    def quota(self) -> bool:
        return self.status in (429, 503) or bool(self.reasons & QUOTA_REASONS)

    @property
    def all_reasons(self) -> frozenset[str]:
        return self.reasons | self.detail_reasons


class Retrying(Generic[E]):
    """Runs one Google call with bounded, jittered exponential backoff.

    ``api`` names the API in messages ("Reports API"); ``error`` is the AppError raised for what
    stays transient after the retries and for set-up failures of the token; ``permanent`` gives
    the exception for an HttpError that is not retried.
    """

    def __init__(
        self,
        *,
        api: str,
        error: ErrorType[E],
        permanent: Callable[[HttpFailure], Exception],
        describe_auth: Callable[[google.auth.exceptions.GoogleAuthError], str] = (
            describe_token_error
        ),
        max_attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 32.0,
        max_total_wait_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.error = error
        self.permanent = permanent
        self.describe_auth = describe_auth
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_total_wait_s = max_total_wait_s
        self.sleep = sleep
        self.jitter = jitter

    def delay(self, attempt: int) -> float:
        """The jittered wait after failed attempt ``attempt`` (1-based), before Retry-After."""
        delay = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return delay * (0.5 + self.jitter() / 2)  # full jitter would allow 0; keep half of it

    def execute(self, request: Any, *, http: Any = None) -> tuple[Any, int]:
        """``request.execute()`` (a googleapiclient HttpRequest) on ``http`` if given, without
        the client's own retries; the answer and how many attempts it took."""
        if http is None:
            return self.call(lambda: request.execute(num_retries=0))
        return self.call(lambda: request.execute(http=http, num_retries=0))

    def call(self, send: Callable[[], T]) -> tuple[T, int]:
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return send(), attempt
            except HttpError as error:
                failure, retry_after = self._http_failure(HttpFailure.of(error), attempt)
            except google.auth.exceptions.GoogleAuthError as error:
                # Raised by the token refresh inside execute(): RefreshError from the token
                # endpoint, TransportError from IAM signBlob or the network. Set-up problems are
                # permanent; google-auth flags the token endpoint's own 5xx as retryable, and a
                # TransportError not about signBlob is the network failing.
                message = self.describe_auth(error)
                if not transient_auth_error(error):
                    raise self.error(message, kind="permission") from None
                failure = self.error(f"{message} after {attempt} attempt(s)", kind="transient")
                retry_after = None
            except (TimeoutError, OSError, httplib2.HttpLib2Error) as error:
                failure = self.error(
                    f"{self.api} unreachable ({type(error).__name__}) after {attempt} attempt(s)",
                    kind="transient",
                )
                retry_after = None
            delay = self.delay(attempt)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if attempt >= self.max_attempts or waited + delay > self.max_total_wait_s:
                raise failure
            self.sleep(delay)
            waited += delay

    def _http_failure(self, failure: HttpFailure, attempt: int) -> tuple[E, float | None]:
        if not failure.retryable:
            raise self.permanent(failure) from None
        kind: Literal["quota", "transient"] = "quota" if failure.quota else "transient"
        reasons = ",".join(sorted(failure.reasons))
        message = f"{self.api} {failure.status} {reasons}".strip()
        return self.error(f"{message} after {attempt} attempt(s)", kind=kind), failure.retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The knobs of :class:`Retrying`, given once to an adapter that makes several of them."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 32.0
    max_total_wait_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def retrying(
        self,
        *,
        api: str,
        error: ErrorType[E],
        permanent: Callable[[HttpFailure], Exception],
        describe_auth: Callable[[google.auth.exceptions.GoogleAuthError], str] = (
            describe_token_error
        ),
    ) -> Retrying[E]:
        return Retrying(
            api=api,
            error=error,
            permanent=permanent,
            describe_auth=describe_auth,
            max_attempts=self.max_attempts,
            base_delay_s=self.base_delay_s,
            max_delay_s=self.max_delay_s,
            max_total_wait_s=self.max_total_wait_s,
            sleep=self.sleep,
            jitter=self.jitter,
        )


def transient_auth_error(error: google.auth.exceptions.GoogleAuthError) -> bool:
    """A token failure worth retrying: the token endpoint's own 5xx (google-auth flags it
    retryable) or a TransportError that is not IAM refusing signBlob (the network failing)."""
    if getattr(error, "retryable", False):
        return True
    if not isinstance(error, google.auth.exceptions.TransportError):
        return False
    return _REFUSED.search(str(error)) is None


_REFUSED = re.compile(r"\b(?:401|403)\b|PERMISSION_DENIED|SERVICE_DISABLED|UNAUTHENTICATED")


def _error_object(error: HttpError) -> dict[str, Any]:
    """The ``error`` object of Google's JSON error body; empty when the body is not one."""
    try:
        body = json.loads(error.content.decode("utf-8", errors="replace"))
    except (ValueError, AttributeError):
        return {}
    details = body.get("error", {}) if isinstance(body, dict) else {}
    return details if isinstance(details, dict) else {}


def _strings(entries: Any, key: str) -> frozenset[str]:
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(
        str(entry[key]) for entry in entries if isinstance(entry, dict) and key in entry
    )


def _retry_after(error: HttpError) -> float | None:
    raw = error.resp.get("retry-after") if hasattr(error.resp, "get") else None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
