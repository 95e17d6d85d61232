"""Meet's own signals as the pipeline sees them (docs/rules.md "Meet signals", "Preliminary
attendance"). Pure: no I/O, no Google types.

- :func:`meet_sessions` turns a conference's participants into sessions shaped like Reports ones,
  so that they are selected and clipped by exactly the same rules;
- :func:`uncovered_parts` is the part of a conference no meeting of its code covers (where a
  ``meet`` meeting is created);
- :func:`preliminary_commit` is the fenced change that writes a meeting's preliminary attendance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from functions.attendance import Session
from functions.meet_records import Conference, MeetAttendee
from functions.model import (
    AttendanceSource,
    IpMode,
    LocationMode,
    MeetingRecord,
    ParticipantRecord,
    RevisionRecord,
    estimated_record,
    in_stored_form,
    preliminary_record,
)
from functions.participant_keys import EMAIL_TYPE, participant_doc_id, participant_key
from functions.ports import MeetingCommit, Version
from functions.schedule import Status
from functions.selection import MeetingSpec, select_meetings
from functions.stored_state import (
    StoredState,
    attendance_changes,
    carrying_landed_token,
    is_committed,
    preliminary_sessions,
    with_previous,
)

__all__ = [
    "MEET_USER_TYPE",
    "PHONE_TYPE",
    "PreliminaryInputs",
    "meet_sessions",
    "preliminary_commit",
    "uncovered_parts",
]

#: Identifier type of a signed-in user the Directory does not know (a guest from another
#: domain): the key keeps Meet's ``users/ID`` (``meet_user:users/ID``), never a display name.
MEET_USER_TYPE = "meet_user"
#: Identifier type of a phone participant: keys ``phone:`` + the redacted number, as Reports'.
PHONE_TYPE = "phone_number"


def meet_sessions(
    conference: Conference,
    attendees: Iterable[MeetAttendee],
    *,
    meeting_code: str,
    emails: Mapping[str, str],
) -> list[Session]:
    """Sessions from Meet's participant sessions. ``emails`` maps ``users/ID`` to the Directory
    email. A session still open ends with the conference; one that cannot end is left out."""
    sessions: list[Session] = []
    for attendee in attendees:
        identifier, kind, external = _identity(attendee, emails)
        for part in attendee.sessions:
            end = part.end or conference.end
            if end is None or end < part.start:
                continue
            sessions.append(
                Session(
                    event_id=part.name,
                    conference_id=conference.name,
                    endpoint_id=None,
                    join_time=part.start,
                    leave_time=end,
                    duration_seconds=round((end - part.start).total_seconds()),
                    meeting_code=meeting_code,
                    identifier=identifier,
                    identifier_type=kind,
                    display_name=attendee.display_name,
                    is_external=external,
                )
            )
    return sessions


def _identity(
    attendee: MeetAttendee, emails: Mapping[str, str]
) -> tuple[str | None, str | None, bool]:
    """``(identifier, identifier_type, is_external)`` by the key rules (docs/firestore.md): email
    for a signed-in user of the directory, ``phone:`` for a phone, ``anon:`` + display name else."""
    if attendee.kind == "signed_in" and attendee.user is not None:
        email = emails.get(attendee.user)
        if email:
            return email.lower(), EMAIL_TYPE, False
        return attendee.user, MEET_USER_TYPE, True
    if attendee.kind == "phone" and attendee.display_name:
        return attendee.display_name, PHONE_TYPE, True
    return None, None, attendee.kind != "signed_in"


def uncovered_parts(
    start: datetime, end: datetime, covered: Iterable[tuple[datetime | None, datetime | None]]
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` minus every covered span (None: open on that side), in order."""
    parts = [(start, end)] if start < end else []
    for cover_start, cover_end in covered:
        rest: list[tuple[datetime, datetime]] = []
        for part_start, part_end in parts:
            if cover_start is not None and cover_start > part_start:
                rest.append((part_start, min(part_end, cover_start)))
            if cover_end is not None and cover_end < part_end:
                rest.append((max(part_start, cover_end), part_end))
        parts = [(a, b) for a, b in rest if a < b]
    return sorted(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreliminaryInputs:
    """What writing one meeting's preliminary attendance read."""

    meeting: MeetingRecord
    version: Version
    neighbours: Sequence[MeetingRecord]
    stored: Sequence[Mapping[str, Any]]
    conference: Conference
    sessions: Sequence[Session]
    now: datetime
    window_before_s: int
    window_after_s: int
    ip_mode: IpMode
    location_mode: LocationMode
    #: Erased participants (key → keyed hash): never stored again.
    erased: Mapping[str, str]


def preliminary_commit(inputs: PreliminaryInputs) -> MeetingCommit | None:
    """The change that makes Meet's sessions this meeting's preliminary attendance, or None.

    Only before any Reports data (``attendance_source`` not ``reports``) and for a meeting that
    is not merged. The sessions of every conference that reached the meeting count: those stored
    from earlier conferences stay, this conference's replace their earlier copies. They are
    selected and clipped exactly like Reports sessions (window ∩ credited span, among the code's
    meetings); expected participants Meet did not see keep their estimates."""
    meeting = inputs.meeting
    if meeting.attendance_source == "reports" or meeting.status is Status.MERGED:
        return None
    if _holds_unlanded_reports_sessions(inputs.stored, meeting):
        # Documents of a staged Reports change that has not landed: only a poll may rewrite
        # them (stored_state.StoredState.unlanded_sessions). Its poll lands them, then Reports
        # data wins anyway.
        return None
    specs = [_spec(m, inputs) for m in [*inputs.neighbours, meeting]]
    selection = select_meetings(specs, _sessions(inputs)).get(meeting.meeting_id)
    if selection is None:
        return None
    selected = selection.meeting
    # A meeting with Meet's data is collecting (docs/rules.md).
    status = Status.COLLECTING if meeting.status is Status.SCHEDULED else meeting.status
    records = _records(inputs, selected.participants, revision=meeting.revision + 1, status=status)
    state = StoredState.of(inputs.stored, meeting)
    known = meeting.participant_fingerprints
    changed = {
        d: r for d, r in records.items() if d in state.dirty or known.get(d) != r.fingerprint
    }
    removed = tuple(sorted(d for d in {*known, *state.before} if d not in records))
    conference_records = tuple(sorted({*meeting.conference_records, inputs.conference.name}))
    if not changed and not removed and conference_records == meeting.conference_records:
        return None
    revision = meeting.revision + 1 if changed or removed else meeting.revision
    # One whose share of Meet's data the partition took away shows estimates again.
    source: AttendanceSource = "meet" if selected.participants else "estimated"
    after = replace(
        meeting,
        status=status,
        attendance_source=source,
        participant_count=selected.participant_count,
        total_attended_seconds=selected.total_attended_seconds,
        actual_start=selected.actual_start,
        actual_end=selected.actual_end,
        missing_participants=tuple(
            k
            for k in meeting.expected_participants
            if k not in {p.participant_key for p in selected.participants}
        ),
        participant_fingerprints={d: r.fingerprint for d, r in records.items()},
        conference_records=conference_records,
        revision=revision,
        updated_at=inputs.now,
    )
    upserts = [with_previous(r, state.attended(d)) for d, r in sorted(changed.items())]
    moved = status is not meeting.status
    return MeetingCommit(
        meeting=after,
        expected=inputs.version,
        upserts=upserts,
        deletes=removed,
        # The status moved: the documents this change keeps as they are mirror it too.
        status_updates=tuple(sorted(d for d in records if d not in changed)) if moved else (),
        revision=(
            RevisionRecord(
                revision=revision,
                at=inputs.now,
                reason="meet",
                changes=attendance_changes(state, changed, removed, names=inputs.erased),
            )
            if revision != meeting.revision
            else None
        ),
        settle=carrying_landed_token(inputs.stored, meeting),
    )


def _sessions(inputs: PreliminaryInputs) -> list[Session]:
    """The stored preliminary sessions of other conferences, and this conference's as given
    (in their stored form), erased participants left out."""
    modes = (inputs.ip_mode, inputs.location_mode)
    by_name: dict[str, Session] = {
        s.event_id: s
        for s in preliminary_sessions(inputs.stored, inputs.meeting)
        if s.conference_id != inputs.conference.name
    }
    by_name.update({s.event_id: in_stored_form(s, *modes) for s in inputs.sessions})
    return [s for s in by_name.values() if participant_key(s) not in inputs.erased]


def _spec(meeting: MeetingRecord, inputs: PreliminaryInputs) -> MeetingSpec:
    return meeting.spec(
        window_before_s=inputs.window_before_s, window_after_s=inputs.window_after_s
    )


def _records(
    inputs: PreliminaryInputs, participants: Iterable[Any], *, revision: int, status: Status
) -> dict[str, ParticipantRecord]:
    meeting = inputs.meeting
    records: dict[str, ParticipantRecord] = {}
    for participant in participants:
        record = preliminary_record(
            participant,
            meeting=meeting,
            revision=revision,
            status=status,
            ip_mode=inputs.ip_mode,
            location_mode=inputs.location_mode,
        )
        records[record.doc_id] = record
    for key in meeting.expected_participants:
        if participant_doc_id(key) not in records and key not in inputs.erased:
            estimate = estimated_record(key, meeting=meeting, revision=revision, status=status)
            records[estimate.doc_id] = estimate
    return records


def _holds_unlanded_reports_sessions(
    documents: Sequence[Mapping[str, Any]], meeting: MeetingRecord
) -> bool:
    return any(
        d.get("sessions") and not d.get("preliminary") and not is_committed(d, meeting)
        for d in documents
    )
