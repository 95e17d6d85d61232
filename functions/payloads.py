"""Every body the system reads or writes, parsed strictly and serialised compactly: the
``meeting.ended`` webhook, the collect task and the backfill request (a run or one of its slices).

Pure. The request edge parses with these; the Cloud Tasks adapter writes task bodies with them,
so what one version queues the other reads. Every refusal is an
:class:`~functions.errors.InvalidInput` naming the ``field``.

Decisions the contract leaves open (the README repeats them):

- Bodies are strict UTF-8 JSON: ``NaN``/``Infinity`` and duplicate object keys are refused, as is
  nesting too deep to parse. Unknown fields are ignored (a task queued by a newer version still
  runs on an older one). ``null`` means absent.
- Times are RFC 3339 (``functions.timestamps``), converted to UTC and truncated to milliseconds.
- ``started_at`` may equal ``ended_at`` and may be at most 24 hours before it (a Meet call's
  limit): a longer declared class is almost certainly a wrong date, and would make the Reports
  window needlessly wide. ``ended_at`` is at most 5 minutes ahead and within Reports' retention.
- An empty ``calendar_event_id`` or ``organizer_email`` means absent.
- Expected participants are normalised as ``functions.participant_keys.declared_key`` says,
  duplicates dropped (first occurrence kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast, get_args

from functions.errors import InvalidInput, quoted
from functions.limits import (
    MAX_DECLARED_LENGTH,
    MAX_ENDED_IN_FUTURE,
    MAX_EXPECTED_PARTICIPANTS,
    REPORTS_RETENTION,
)
from functions.meeting_codes import declared_meeting_code
from functions.model import Declared, is_meeting_id
from functions.participant_keys import declared_key, has_control_characters, normalise_email
from functions.ports import BackfillSlice, CollectReason, CollectTask
from functions.timestamps import BadTimestamp, format_timestamp, parse_rfc3339

__all__ = [
    "TASK_REASONS",
    "BackfillRequest",
    "backfill_slice_body",
    "collect_task_body",
    "parse_backfill_request",
    "parse_collect_task",
    "parse_erasure_request",
    "parse_meeting_ended",
    "parse_time_field",
]

_PAYLOAD: Final = "invalid_payload"
_TASK: Final = "invalid_task"
MAX_ATTEMPT: Final = 1000
#: What a queued task may say: a manual sync and an erasure poll run in their caller, never queued.
TASK_REASONS: Final[tuple[str, ...]] = tuple(
    r for r in get_args(CollectReason) if r not in ("manual", "erasure")
)

# ------------------------------------------------------------------------------
# Strict JSON and its fields


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers may pick different duplicates; refusing keeps one meaning per body.
            raise ValueError(f"duplicate key {quoted(key)}")
        result[key] = value
    return result


def _load_object(body: bytes, *, code: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid JSON: not UTF-8", code=code) from None
    except RecursionError:
        raise InvalidInput("body is not valid JSON: nested too deeply", code=code) from None
    except ValueError as exc:  # JSONDecodeError, our hooks, integers too long to convert
        raise InvalidInput(f"body is not valid JSON: {exc}", code=code) from None
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object", code=code)
    return data


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else "null"


def _optional_str(data: Mapping[str, Any], name: str, *, code: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"{name} must be a string, not {_type_name(value)}", field=name, code=code
        )
    if has_control_characters(value):
        raise InvalidInput(f"{name} must not contain control characters", field=name, code=code)
    return value


def _required_str(data: Mapping[str, Any], name: str, *, code: str) -> str:
    value = _optional_str(data, name, code=code)
    if value is None:
        raise InvalidInput(f"{name} is required", field=name, code=code)
    return value


_TIME_PROBLEMS: Final = {
    "format": "must be an RFC 3339 date-time such as 2026-01-15T10:45:00Z",
    "offset": "must include a UTC offset (Z or ±hh:mm)",
}


def parse_time_field(raw: str, *, field: str) -> datetime:
    """An RFC 3339 date-time with an offset, or InvalidInput naming ``field`` (webhook, CLI)."""
    try:
        return parse_rfc3339(raw)
    except BadTimestamp as bad:
        problem = _TIME_PROBLEMS.get(bad.problem, f"is not a valid date-time: {quoted(raw)}")
        raise InvalidInput(f"{field} {problem}", field=field, code=_PAYLOAD) from None


# ------------------------------------------------------------------------------
# POST / — meeting ended (docs/api.md "ingest")


def parse_meeting_ended(body: bytes, *, now: datetime, typed: bool = True) -> Declared:
    """Validate a ``meeting.ended`` body; InvalidInput (``invalid_payload``) names the field.

    ``typed=False`` is ``POST /meetings/sync``'s body (docs/api.md "api"): ``type`` may be left out,
    and when present it must still be ``meeting.ended``.
    """
    data = _load_object(body, code=_PAYLOAD)
    kind = (
        _required_str(data, "type", code=_PAYLOAD) if typed or "type" in data else "meeting.ended"
    )
    if kind != "meeting.ended":
        raise InvalidInput(
            f"type must be 'meeting.ended', not {quoted(kind)}", field="type", code=_PAYLOAD
        )
    try:
        meeting_code = declared_meeting_code(_required_str(data, "meeting_code", code=_PAYLOAD))
    except ValueError as exc:
        raise InvalidInput(f"meeting_code {exc}", field="meeting_code", code=_PAYLOAD) from None
    ended_at = _ended_at(data, now=now)
    return Declared(
        meeting_code=meeting_code,
        ended_at=ended_at,
        started_at=_started_at(data, ended_at=ended_at),
        external_id=_external_id(data),
        calendar_event_id=_calendar_event_id(data),
        organizer_email=_organizer_email(data),
        expected_participants=_expected_participants(data.get("expected_participants")),
    )


def _ended_at(data: Mapping[str, Any], *, now: datetime) -> datetime:
    ended_at = parse_time_field(_required_str(data, "ended_at", code=_PAYLOAD), field="ended_at")
    if ended_at > now + MAX_ENDED_IN_FUTURE:
        raise InvalidInput(
            "ended_at is more than 5 minutes in the future", field="ended_at", code=_PAYLOAD
        )
    if ended_at < now - REPORTS_RETENTION:
        raise InvalidInput(
            "ended_at is more than 180 days ago (the Reports API keeps 180 days)",
            field="ended_at",
            code=_PAYLOAD,
        )
    return ended_at


def _started_at(data: Mapping[str, Any], *, ended_at: datetime) -> datetime | None:
    raw = _optional_str(data, "started_at", code=_PAYLOAD)
    if raw is None:
        return None
    started_at = parse_time_field(raw, field="started_at")
    if started_at > ended_at:
        raise InvalidInput(
            "started_at must not be after ended_at", field="started_at", code=_PAYLOAD
        )
    if ended_at - started_at > MAX_DECLARED_LENGTH:
        raise InvalidInput(
            "started_at must be at most 24 hours before ended_at",
            field="started_at",
            code=_PAYLOAD,
        )
    return started_at


#: External ids only Calendar and Meet declarations use (docs/rules.md "Identity").
RESERVED_EXTERNAL_PREFIXES: Final = ("calendar:", "meet:")


def _external_id(data: Mapping[str, Any]) -> str | None:
    external_id = _optional_str(data, "external_id", code=_PAYLOAD)
    if external_id is not None and not (
        external_id.strip() and len(external_id) <= 256 and external_id.isprintable()
    ):
        raise InvalidInput(
            "external_id must be 1 to 256 printable characters",
            field="external_id",
            code=_PAYLOAD,
        )
    if external_id is not None and external_id.startswith(RESERVED_EXTERNAL_PREFIXES):
        raise InvalidInput(
            "external_id may not start with calendar: or meet: (the ids of meetings declared "
            "by Google Calendar and Google Meet)",
            field="external_id",
            code=_PAYLOAD,
        )
    return external_id


def _calendar_event_id(data: Mapping[str, Any]) -> str | None:
    calendar_event_id = _optional_str(data, "calendar_event_id", code=_PAYLOAD) or None
    if calendar_event_id is not None and len(calendar_event_id) > 1024:
        raise InvalidInput(
            "calendar_event_id must be at most 1024 characters",
            field="calendar_event_id",
            code=_PAYLOAD,
        )
    return calendar_event_id


def _organizer_email(data: Mapping[str, Any]) -> str | None:
    raw = _optional_str(data, "organizer_email", code=_PAYLOAD)
    if not raw:
        return None
    email = normalise_email(raw)
    if email is None:
        raise InvalidInput(
            f"organizer_email is not a valid email address: {quoted(raw)}",
            field="organizer_email",
            code=_PAYLOAD,
        )
    return email


def _expected_participants(value: object) -> tuple[str, ...]:
    name = "expected_participants"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(
            f"{name} must be an array of strings, not {_type_name(value)}",
            field=name,
            code=_PAYLOAD,
        )
    if len(value) > MAX_EXPECTED_PARTICIPANTS:
        raise InvalidInput(
            f"{name} may hold at most {MAX_EXPECTED_PARTICIPANTS} entries (got {len(value)})",
            field=name,
            code=_PAYLOAD,
        )
    keys: dict[str, None] = {}  # an ordered set: first occurrence wins
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, str):
            raise InvalidInput(
                f"{where} must be a string, not {_type_name(item)}", field=where, code=_PAYLOAD
            )
        try:
            keys.setdefault(declared_key(item), None)
        except ValueError as exc:
            raise InvalidInput(f"{where} {exc}", field=where, code=_PAYLOAD) from None
    return tuple(keys)


# ------------------------------------------------------------------------------
# Erasures (docs/api.md "api")


def parse_erasure_request(body: bytes) -> str:
    """``{"participant_key": "..."}`` → the key, normalised as a declared one (the form it is
    stored under, so ``Alice@School.example`` erases ``alice@school.example``)."""
    data = _load_object(body, code=_PAYLOAD)
    raw = _required_str(data, "participant_key", code=_PAYLOAD)
    try:
        return declared_key(raw)
    except ValueError as exc:
        # The key itself is not repeated: it names a person.
        raise InvalidInput(
            f"participant_key {exc}", field="participant_key", code=_PAYLOAD
        ) from None


# ------------------------------------------------------------------------------
# Collect tasks


def parse_collect_task(body: bytes) -> CollectTask:
    """Validate a task body; :class:`InvalidInput` with code ``invalid_task`` names the field."""
    data = _load_object(body, code=_TASK)
    meeting_id = _required_str(data, "meeting_id", code=_TASK)
    if not is_meeting_id(meeting_id):
        raise InvalidInput(
            "meeting_id must be 1 to 128 letters, digits, '_' or '-'",
            field="meeting_id",
            code=_TASK,
        )
    attempt = data.get("attempt")
    if attempt is None:
        raise InvalidInput("attempt is required", field="attempt", code=_TASK)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise InvalidInput(
            f"attempt must be an integer, not {_type_name(attempt)}", field="attempt", code=_TASK
        )
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise InvalidInput(
            f"attempt must be between 1 and {MAX_ATTEMPT}", field="attempt", code=_TASK
        )
    reason = _optional_str(data, "reason", code=_TASK) or "poll"
    if reason not in TASK_REASONS:
        raise InvalidInput(
            f"reason must be one of {', '.join(TASK_REASONS)}", field="reason", code=_TASK
        )
    return CollectTask(meeting_id=meeting_id, attempt=attempt, reason=cast(CollectReason, reason))


def collect_task_body(task: CollectTask) -> bytes:
    """Compact JSON for a Cloud Tasks body; ``parse_collect_task`` reads it back."""
    payload = {"meeting_id": task.meeting_id, "attempt": task.attempt, "reason": task.reason}
    return json.dumps(payload, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------
# Backfill requests


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A backfill call: the scheduler's ``{"since"?, "until"?}``, or one slice of a fanned-out run
    (``{"slice": {"since", "until", "range_since", "range_until"}}``)."""

    since: datetime | None = None
    until: datetime | None = None
    part: BackfillSlice | None = None
    #: ``{"calendar_sync": {"calendar_id": C}}``: sync one calendar's changes (a notification).
    calendar_id: str | None = None


_SLICE_BOUNDS: Final = ("since", "until", "range_since", "range_until")


def parse_backfill_request(body: bytes) -> BackfillRequest:
    if not body.strip():
        return BackfillRequest()
    data = _load_object(body, code=_PAYLOAD)
    raw_sync = data.get("calendar_sync")
    if raw_sync is not None:
        if not isinstance(raw_sync, dict):
            raise InvalidInput(
                "calendar_sync must be an object", field="calendar_sync", code=_PAYLOAD
            )
        calendar_id = _required_str(raw_sync, "calendar_id", code=_PAYLOAD)
        if normalise_email(calendar_id) != calendar_id:
            raise InvalidInput(
                "calendar_sync.calendar_id must be a calendar's email address",
                field="calendar_sync.calendar_id",
                code=_PAYLOAD,
            )
        return BackfillRequest(calendar_id=calendar_id)
    raw_slice = data.get("slice")
    if raw_slice is not None:
        if not isinstance(raw_slice, dict):
            raise InvalidInput("slice must be an object", field="slice", code=_PAYLOAD)
        bounds = {
            name: parse_time_field(
                _required_str(raw_slice, name, code=_PAYLOAD), field=f"slice.{name}"
            )
            for name in _SLICE_BOUNDS
        }
        if not bounds["range_since"] <= bounds["since"] <= bounds["until"] <= bounds["range_until"]:
            raise InvalidInput("slice must lie within its range", field="slice", code=_PAYLOAD)
        return BackfillRequest(part=BackfillSlice(**bounds))
    times: list[datetime | None] = []
    for name in ("since", "until"):
        raw = _optional_str(data, name, code=_PAYLOAD)
        times.append(parse_time_field(raw, field=name) if raw else None)
    return BackfillRequest(since=times[0], until=times[1])


def backfill_slice_body(part: BackfillSlice) -> bytes:
    """The task body of one slice; ``parse_backfill_request`` reads it back."""
    bounds = {name: format_timestamp(getattr(part, name)) for name in _SLICE_BOUNDS}
    return json.dumps({"slice": bounds}, separators=(",", ":")).encode()


def calendar_sync_body(calendar_id: str) -> bytes:
    """The task body of one calendar's sync; ``parse_backfill_request`` reads it back."""
    return json.dumps(
        {"calendar_sync": {"calendar_id": calendar_id}}, separators=(",", ":")
    ).encode()
