"""Builders of Reports API activities for tests, in the wire format (int64 as strings and all)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.attendance import Session
from functions.errors import AppError
from functions.model import Declared
from functions.timestamps import format_timestamp

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
CONFERENCE = "conf-A"
CODE = "ABCDEFGHIJ"


def at(minutes: float = 0, *, seconds: float = 0) -> datetime:
    """T0 plus an offset; fractions keep millisecond precision."""
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def param(name: str, value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"name": name, "boolValue": value}
    if isinstance(value, int):
        return {"name": name, "intValue": str(value)}
    return {"name": name, "value": value}


def activity(
    *,
    leave: datetime | str = T0,
    qualifier: str = "1",
    name: str = "call_ended",
    duration: int | str | None = 60,
    conference_id: str | None = CONFERENCE,
    endpoint_id: str | None = "ep-1",
    identifier: str | None = "alice@school.example",
    identifier_type: str | None = "email_address",
    display_name: str | None = "Alice",
    meeting_code: str | None = CODE,
    is_external: bool | None = False,
    **extra: object,
) -> dict[str, Any]:
    """One activity with one event; ``None`` leaves a parameter out."""
    values: dict[str, object] = {
        "conference_id": conference_id,
        "endpoint_id": endpoint_id,
        "identifier": identifier,
        "identifier_type": identifier_type,
        "display_name": display_name,
        "meeting_code": meeting_code,
        "is_external": is_external,
        **extra,
    }
    parameters = [param(k, v) for k, v in values.items() if v is not None]
    if isinstance(duration, int):
        parameters.append(param("duration_seconds", duration))
    elif isinstance(duration, str):
        parameters.append({"name": "duration_seconds", "intValue": duration})
    return {
        "kind": "admin#reports#activity",
        "id": {
            "time": leave if isinstance(leave, str) else format_timestamp(leave),
            "uniqueQualifier": qualifier,
            "applicationName": "meet",
        },
        "actor": {"callerType": "KEY", "key": "HANGOUTS_EXTERNAL_OR_ANONYMOUS"},
        "events": [{"type": "call", "name": name, "parameters": parameters}],
    }


def session(
    join: datetime,
    leave: datetime,
    *,
    key: str = "alice@school.example",
    endpoint_id: str = "ep-1",
    conference_id: str = CONFERENCE,
    meeting_code: str = "abc-defg-hij",
    display_name: str | None = None,
    qualifier: str = "1",
) -> Session:
    """A session built directly (for selection and property tests); ``key`` is an email."""
    whole, rest = divmod((leave - join) // timedelta(milliseconds=1), 1000)
    # Sessions from the API always last whole seconds: move the join so that holds.
    join = leave - timedelta(seconds=whole + (1 if rest else 0))
    return Session(
        event_id=f"{format_timestamp(leave)}/{qualifier}",
        conference_id=conference_id,
        endpoint_id=endpoint_id,
        join_time=join,
        leave_time=leave,
        duration_seconds=whole + (1 if rest else 0),
        meeting_code=meeting_code,
        identifier=key,
        identifier_type="email_address",
        display_name=display_name,
    )


def outcome(action: Callable[[], object]) -> object:
    """What ``action`` gives: its result (a dataclass as its type), or an AppError's code.

    Any other exception propagates and fails the test: bad input must never become a 500.
    """
    try:
        result = action()
    except AppError as error:
        return error.code
    return type(result) if isinstance(result, Declared) else result
