"""Errors that know how they should be answered.

Every error the application raises on purpose is an :class:`AppError`: it carries the HTTP
status the edge answers with, a stable machine-readable ``code``, and whether retrying the same
work may succeed. The HTTP edge and the CLI map these in one place; anything else is an
unexpected failure (500 / retry).
"""

from __future__ import annotations


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
