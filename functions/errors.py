"""Every error the application raises on purpose, and how each is answered.

An :class:`AppError` carries the HTTP status the edge answers with, a stable machine-readable
``code`` and whether retrying the same work may succeed. The request edge
(``functions.http_edge.error_response``) and the CLI map them in one place each; anything that is
not an ``AppError`` is a bug: 500 without details, and the queue retries it.

::

    AppError                     status  code                    retryable
    ├── InvalidInput               400   invalid_* (field named)  no    a request, file or argument
    ├── Unauthorized               401   unauthorized             no    no or a bad signature/token
    ├── Forbidden                  403   forbidden                no    a genuine caller not allowed
    ├── NotFound                   404   not_found                no    unknown meeting or route
    ├── MethodNotAllowed           405   method_not_allowed       no    (carries ``allowed``)
    ├── Busy                       409   busy                     yes   another delivery polls it
    ├── Conflict                   409   conflict                 no    contradicts what is stored
    ├── PayloadTooLarge            413   payload_too_large        no
    ├── UnsupportedMediaType       415   unsupported_media_type   no
    ├── ConfigError                500   invalid_configuration    no    names every problem at once
    ├── CommandFailed              500   failed                   no    an operator command (CLI)
    ├── ReportsError               502   permission|quota|transient      the Reports API, after
    │                                                                    the adapter's own retries
    ├── WorkspaceError             502   permission|quota|transient      Meet REST, Workspace
    │                                                                    Events, Directory
    ├── SubscriptionExists         409   already_exists           no    ALREADY_EXISTS on create
    ├── SyncTokenExpired           410   sync_token_expired       no    Calendar: full sync needed
    └── Unavailable                503   unavailable              yes   a dependency is down
        └── StoreContention        503   contention               yes   concurrent writers won
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

ReportsErrorKind = Literal["permission", "quota", "transient"]


def quoted(value: str, limit: int = 60) -> str:
    """Caller-supplied text as an error message quotes it: repr'd, cut at ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


class AppError(Exception):
    """An expected failure with its HTTP status, code and retryability."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 500,
        retryable: bool = False,
        code: str = "internal",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.code = code


class InvalidInput(AppError):
    """Input from outside (a request, a file, an argument) that we refuse; never retryable."""

    def __init__(
        self, message: str, *, field: str | None = None, code: str = "invalid_input"
    ) -> None:
        super().__init__(message, status=400, retryable=False, code=code)
        self.field = field


class Unauthorized(AppError):
    """The caller did not prove who it is (signature, timestamp or token)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401, retryable=False, code="unauthorized")


class Forbidden(AppError):
    """A genuine caller that is not allowed here."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=403, retryable=False, code="forbidden")


class NotFound(AppError):
    """An unknown meeting or route; the message names it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, retryable=False, code="not_found")

    @classmethod
    def meeting(cls, meeting_id: str) -> NotFound:
        return cls(f"no meeting {meeting_id}")


class MethodNotAllowed(AppError):
    """``allowed`` is what the entry point puts in the ``Allow`` header."""

    def __init__(self, method: str, allowed: Sequence[str]) -> None:
        self.allowed = tuple(allowed)
        super().__init__(
            f"method {method} is not allowed here (allowed: {', '.join(self.allowed)})",
            status=405,
            retryable=False,
            code="method_not_allowed",
        )


class Busy(AppError):
    """Another delivery holds the meeting's lease; the queue retries later and finds it done."""

    def __init__(self, meeting_id: str) -> None:
        super().__init__(
            f"meeting {meeting_id} is being polled by another delivery",
            status=409,
            retryable=True,
            code="busy",
        )


class Conflict(AppError):
    """The request contradicts what is stored (another code for a declared meeting, a sync of a
    merged meeting); nothing was changed. The message names what it conflicts with."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, retryable=False, code="conflict")


class PayloadTooLarge(AppError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"request body is larger than {limit_bytes} bytes",
            status=413,
            retryable=False,
            code="payload_too_large",
        )


class UnsupportedMediaType(AppError):
    def __init__(self) -> None:
        super().__init__(
            "request body must be application/json (UTF-8)",
            status=415,
            retryable=False,
            code="unsupported_media_type",
        )


class ConfigError(AppError):
    """Settings that are missing or invalid; the message names every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "invalid configuration: " + "; ".join(problems),
            status=500,
            retryable=False,
            code="invalid_configuration",
        )
        self.problems = problems


class CommandFailed(AppError):
    """An operator command that could not do what was asked; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=500, retryable=False, code="failed")


class ReportsError(AppError):
    """A Reports poll that failed after the adapter's own retries.

    ``kind`` is ``permission`` (delegation or admin set-up; the message names the missing step),
    ``quota`` (still over quota after backing off) or ``transient`` (5xx, network).
    """

    def __init__(self, message: str, *, kind: ReportsErrorKind) -> None:
        super().__init__(message, status=502, retryable=kind != "permission", code=kind)
        self.kind = kind


class WorkspaceError(AppError):
    """A Meet REST, Workspace Events or Directory call that failed after the adapter's retries;
    ``kind`` as for :class:`ReportsError` (a ``permission`` message names the missing admin
    step: a scope not authorised for the client id, an API not enabled, a user not in Workspace).
    """

    def __init__(self, message: str, *, kind: ReportsErrorKind) -> None:
        super().__init__(message, status=502, retryable=kind != "permission", code=kind)
        self.kind = kind


class SubscriptionExists(AppError):
    """Workspace Events answered ``ALREADY_EXISTS``: this user already authorised a subscription
    on this target (find it and reuse it)."""

    def __init__(self, target: str) -> None:
        super().__init__(
            f"a subscription on {target} exists already",
            status=409,
            retryable=False,
            code="already_exists",
        )
        self.target = target


class SyncTokenExpired(AppError):
    """Calendar answered 410 to a ``syncToken``: clear it and sync the calendar in full."""

    def __init__(self, calendar_id: str) -> None:
        # The id of a primary calendar is its owner's email: never in the message (logs).
        super().__init__(
            "a calendar's sync token expired",
            status=410,
            retryable=False,
            code="sync_token_expired",
        )
        self.calendar_id = calendar_id


class Unavailable(AppError):
    """A dependency cannot answer right now: retry later."""

    def __init__(self, message: str, *, code: str = "unavailable") -> None:
        super().__init__(message, status=503, retryable=True, code=code)


class StoreContention(Unavailable):
    """Concurrent writers kept a meeting's update from committing."""

    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"meeting {meeting_id} is being changed concurrently", code="contention")
