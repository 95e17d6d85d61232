"""The read side: stored records → what people and billing read.

The API's meeting view and sync answer (docs/api.md), the billing export's rows (§7) and the data
of the CLI's tables all come from here, so a meeting reads the same wherever it is read. Pure but
for the store reads it is handed; rendering (JSON bytes, rich tables, CSV) stays with the caller.

Decisions (the README repeats them):

- Participants are listed by first join, those without one (absent) last, then by key.
- One export row per participant document: estimated and absent expected participants are
  exported with their flags, so billing sees every participant the system knows of. ``status`` is
  the meeting's; ``revision`` the participant document's (the meeting revision at which that row
  last changed), the same field billing reads in Firestore. ``merged`` meetings are never billed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from functions.attendance import Meeting, Participant
from functions.errors import NotFound
from functions.model import IpMode, LocationMode, MeetingRecord, in_stored_form
from functions.polling import PollOutcome, Skipped
from functions.ports import MeetingStore
from functions.schedule import Status
from functions.stored_state import PREVIOUS_ATTENDED, STAGED_COMMIT, committed
from functions.timestamps import format_timestamp

__all__ = [
    "EXPORT_FIELDS",
    "billed_meetings",
    "clock",
    "export_rows",
    "hms",
    "is_billed",
    "meeting_fields",
    "meeting_view",
    "participant_row",
    "sorted_participants",
    "summary_row",
    "summary_title",
    "sync_fields",
    "sync_view",
    "to_json",
]

_NEVER: Final = datetime.max.replace(tzinfo=UTC)
#: The message of a sync whose Reports poll failed (502).
SYNC_FAILED: Final = "the Reports poll failed; see the meeting's last_error"
#: Bookkeeping of a participant document that readers do not see.
_INTERNAL_PARTICIPANT_FIELDS: Final = ("fingerprint", PREVIOUS_ATTENDED, STAGED_COMMIT)


def to_json(value: Any) -> Any:
    """Documents and records → JSON values (RFC 3339 'Z' timestamps)."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def sorted_participants(store: MeetingStore, meeting: MeetingRecord) -> list[dict[str, Any]]:
    """A meeting's participant documents in reading order, bookkeeping left out; a document of
    a change still being written (or one that never landed) is not the meeting's yet."""
    documents = [dict(d) for d in committed(store.participants(meeting.meeting_id), meeting)]
    for document in documents:
        for name in _INTERNAL_PARTICIPANT_FIELDS:
            document.pop(name, None)
    documents.sort(
        key=lambda d: (
            d.get("first_join") is None,
            d.get("first_join") or _NEVER,
            str(d.get("participant_key")),
        )
    )
    return documents


def meeting_view(store: MeetingStore, meeting_id: str) -> dict[str, Any]:
    """``GET /meetings/{id}``: ``{"meeting": {...}, "participants": [...]}`` as JSON values."""
    meeting = store.get(meeting_id)
    if meeting is None:
        raise NotFound.meeting(meeting_id)
    participants = sorted_participants(store, meeting)
    return {"meeting": to_json(meeting.public_document()), "participants": to_json(participants)}


def _session_rows(
    participant: Participant, modes: tuple[IpMode, LocationMode]
) -> Iterable[dict[str, Any]]:
    """The sessions as stored (the sync answer shows nothing the privacy modes remove)."""
    for session in (in_stored_form(s, *modes) for s in participant.sessions):
        yield {
            "email": participant.email,
            "participant_key": participant.participant_key,
            "display_name": participant.display_name,
            "join_time": format_timestamp(session.join_time),
            "leave_time": format_timestamp(session.leave_time),
            "duration_seconds": session.duration_seconds,
            "device_type": session.device_type,
            "ip_address": session.ip_address,
            "location_country": session.location_country,
            "location_region": session.location_region,
        }


def sync_view(
    outcome: PollOutcome | Skipped, *, ip_mode: IpMode, location_mode: LocationMode
) -> tuple[int, dict[str, Any]]:
    """``POST /meetings/{id}/sync`` in the seed's shape; 502 when the Reports poll failed (the
    upstream's fault), with the message that names the missing step. A skipped poll (a merged
    meeting) synced nobody. Sessions are shown in their stored form (docs/rules.md Privacy)."""
    if isinstance(outcome, Skipped):
        selected, error, created, updated = None, None, 0, 0
    else:
        selected, error = outcome.selected, outcome.error
        created, updated = len(outcome.created), len(outcome.updated)
    sessions = (
        [row for p in selected.participants for row in _session_rows(p, (ip_mode, location_mode))]
        if selected is not None
        else []
    )
    count = 0 if selected is None else selected.participant_count
    meeting = outcome.meeting
    body: dict[str, Any] = {
        "status": "success" if error is None else "error",
        # Upstream text stays out of a 5xx answer (docs/api.md): the meeting's last_error,
        # which operators read, says what failed and which setup step it points to.
        "message": f"Synced {count} participants" if error is None else SYNC_FAILED,
        "updated": updated,
        "created": created,
        "participants": sessions,
        "meeting_status": None if meeting is None else str(meeting.status),
    }
    if error is not None:
        # Beside the seed's fields, the error object every refusal carries (docs/api.md).
        body["error"] = {"code": "reports_failed", "message": SYNC_FAILED}
    return (200 if error is None else 502), body


# ------------------------------------------------------------------------------
# Billing


def is_billed(meeting: MeetingRecord) -> bool:
    """A meeting merged into another is billed there, never here."""
    return meeting.status is not Status.MERGED


def billed_meetings(store: MeetingStore, start: datetime, end: datetime) -> list[MeetingRecord]:
    """The meetings whose ``ended_at`` is in ``[start, end)`` that billing reads."""
    return [m for m in store.ended_between(start, end) if is_billed(m)]


#: The export row's fields, in docs/cli.md's order (also the CSV header).
EXPORT_FIELDS: Final = (
    "meeting_id",
    "meeting_code",
    "external_id",
    "ended_at",
    "status",
    "participant_key",
    "email",
    "display_name",
    "attended_seconds",
    "session_count",
    "estimated",
    "absent",
    "revision",
    "attendance_source",
    "preliminary",
)


def _export_row(meeting: MeetingRecord, document: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "meeting_id": meeting.meeting_id,
        "meeting_code": meeting.meeting_code,
        "external_id": meeting.external_id,
        "ended_at": format_timestamp(meeting.ended_at),
        "status": str(meeting.status),
        "participant_key": str(document.get("participant_key") or ""),
        "email": document.get("email"),
        "display_name": document.get("display_name"),
        "attended_seconds": int(document.get("attended_seconds") or 0),
        "session_count": int(document.get("session_count") or 0),
        "estimated": bool(document.get("estimated", False)),
        "absent": bool(document.get("absent", False)),
        "revision": int(document.get("revision") or 0),
        "attendance_source": meeting.attendance_source,
        "preliminary": bool(document.get("preliminary", False)),
    }


def export_rows(
    meetings: Iterable[MeetingRecord],
    participants: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """One row per participant document per billed meeting.

    ``participants`` maps a meeting id to its participant documents (as the store returns them).
    Values keep their JSON types (ints, booleans, None); timestamps are RFC 3339 'Z' strings. Rows
    are sorted by ``ended_at``, ``meeting_id``, ``participant_key``.
    """
    keyed: list[tuple[datetime, str, str, dict[str, Any]]] = []
    for meeting in meetings:
        if not is_billed(meeting):
            continue
        for document in committed(participants.get(meeting.meeting_id, ()), meeting):
            row = _export_row(meeting, document)
            keyed.append((meeting.ended_at, meeting.meeting_id, row["participant_key"], row))
    keyed.sort(key=lambda item: item[:3])
    return [row for *_, row in keyed]


# ------------------------------------------------------------------------------
# The CLI's tables, as rows of text


def clock(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _stamp(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return str(value)


def _who(name: str, key: str) -> str:
    return f"{name} ({key})" if name and name != key else key


def summary_row(participant: Participant) -> tuple[str, ...]:
    """A participant of a summarized dump: who, first join, last leave, attended, sessions,
    devices."""
    devices = sorted({s.device_type or "?" for s in participant.sessions})
    return (
        _who(participant.display_name or "", participant.participant_key),
        clock(participant.first_join),
        clock(participant.last_leave),
        hms(participant.attended_seconds),
        str(participant.session_count),
        ", ".join(devices),
    )


def summary_title(meeting: Meeting) -> str:
    return (
        f"{meeting.meeting_code or 'no meeting code'} · {clock(meeting.actual_start)} → "
        f"{clock(meeting.actual_end)} UTC · {meeting.participant_count} participants · "
        f"{hms(meeting.total_attended_seconds)} attended"
    )


def participant_row(document: Mapping[str, Any]) -> tuple[str, ...]:
    """A stored participant: the summary row's columns and a note (estimated, absent)."""
    sessions = document.get("sessions") or []
    devices = sorted({str(s.get("device_type") or "?") for s in sessions})
    note = "absent" if document.get("absent") else ""
    if document.get("estimated"):
        note = "estimated"
    first_join, last_leave = document.get("first_join"), document.get("last_leave")
    return (
        _who(str(document.get("display_name") or ""), str(document.get("participant_key") or "")),
        clock(first_join) if isinstance(first_join, datetime) else "—",
        clock(last_leave) if isinstance(last_leave, datetime) else "—",
        hms(int(document.get("attended_seconds") or 0)),
        str(int(document.get("session_count") or 0)),
        ", ".join(devices),
        note,
    )


def meeting_fields(meeting: MeetingRecord) -> list[tuple[str, str]]:
    """``show``: a meeting's status, timings, last error and totals."""
    error = meeting.last_error
    last_error = (
        "—" if error is None else f"{error.code}: {error.message} (at {format_timestamp(error.at)})"
    )
    rows = [
        ("Status", str(meeting.status)),
        ("Source", meeting.source),
        ("Code", meeting.meeting_code),
        ("External id", _stamp(meeting.external_id)),
        ("Declared", f"{_stamp(meeting.started_at)} → {_stamp(meeting.ended_at)}"),
        ("Window", f"{_stamp(meeting.window_start)} → {_stamp(meeting.window_end)}"),
        ("Deadline", _stamp(meeting.deadline)),
        ("Attempts", str(meeting.attempts)),
        ("Next poll", _stamp(meeting.next_poll_at)),
        ("Last polled", _stamp(meeting.last_polled_at)),
        ("Completed", _stamp(meeting.completed_at)),
        ("Last error", last_error),
        ("Revision", str(meeting.revision)),
        ("Attendance", meeting.attendance_source),
        (
            "Totals",
            f"{meeting.participant_count} participant(s) with sessions, "
            f"{hms(meeting.total_attended_seconds)} attended",
        ),
        ("Actual", f"{_stamp(meeting.actual_start)} → {_stamp(meeting.actual_end)}"),
        ("Conferences", ", ".join(meeting.conference_ids) or "—"),
        ("Expected", ", ".join(meeting.expected_participants) or "—"),
        ("Missing", ", ".join(meeting.missing_participants) or "—"),
    ]
    if meeting.merged_into is not None:
        rows.insert(1, ("Merged into", meeting.merged_into))
    return rows


def sync_fields(outcome: PollOutcome, *, before: str | None) -> list[tuple[str, str]]:
    """``sync``: what the poll did to the meeting."""
    meeting = outcome.meeting
    status = (
        str(meeting.status)
        if before in (None, str(meeting.status))
        else f"{before} → {meeting.status}"
    )
    rows = [
        ("Meeting", meeting.meeting_id),
        ("Code", meeting.meeting_code),
        ("Source", meeting.source),
        ("Status", status),
        ("Revision", str(meeting.revision)),
        ("Created", str(len(outcome.created))),
        ("Updated", str(len(outcome.updated))),
        ("Participants", f"{meeting.participant_count} with sessions"),
        ("Attended", hms(meeting.total_attended_seconds)),
        ("Next poll", _stamp(meeting.next_poll_at)),
    ]
    if outcome.stats is not None:
        rows.append(
            (
                "Reports",
                f"{outcome.stats.requests} request(s), {outcome.stats.activities} activities",
            )
        )
    if outcome.error is not None:
        rows.append(("Error", outcome.error))
    return rows
