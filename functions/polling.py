"""Use case: poll one meeting (CONTRACT §3) — the one collection path.

The chain's links, neighbour re-polls, manual syncs and the backfill all end in
:func:`poll_meeting`. A poll reads the meeting and its neighbours, fetches the Reports sessions of
its code from the start of its selection span, selects and clips them (``functions.selection``),
decides the status (``functions.schedule``), writes the participant documents that changed and a
revision record, then commits the meeting's summary and enqueues the next link.

A two-minute lease in the meeting document keeps two deliveries from polling one meeting at once;
the loser answers 409 (:class:`~functions.errors.Busy`) and the queue retries it later, when it
finds the work done. A delivery whose ``attempt`` is not the stored ``chain_seq`` is stale: it
only makes sure the current link exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from functions import logs
from functions.attendance import Meeting
from functions.chain import ensure_link
from functions.errors import Busy, NotFound, ReportsError
from functions.fingerprints import meeting_fingerprint
from functions.meeting_codes import reports_meeting_code
from functions.model import (
    AttendanceChange,
    LastError,
    MeetingRecord,
    ParticipantRecord,
    RevisionReason,
    RevisionRecord,
    absent_record,
    estimated_record,
    participant_record,
)
from functions.participant_keys import participant_doc_id
from functions.ports import CollectReason, CollectTask, Deps, FetchStats
from functions.reports_events import SessionCollector
from functions.schedule import Decision, PollHistory, PollResult, Status, decide, next_poll_at
from functions.selection import MeetingSpec, reports_query_start, select_meetings, selection_spans
from functions.timestamps import format_optional

__all__ = ["LEASE", "PollOutcome", "Skipped", "handle_collect_task", "poll_meeting"]

#: How long one poll may hold a meeting. Longer than any poll takes; short enough that a crashed
#: worker's retry gets through within minutes.
LEASE: Final = timedelta(seconds=120)


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """A poll that ran: the meeting as committed, and what changed."""

    meeting: MeetingRecord
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    participant_writes: int = 0
    stats: FetchStats | None = None
    selected: Meeting | None = None
    error: str | None = None

    @property
    def polled(self) -> bool:
        return True

    @property
    def skipped_reason(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A delivery that did not poll: ``skipped_reason`` is ``unknown`` (no such meeting, and
    ``meeting`` is None), ``merged``, ``stale`` (not the chain's current link) or ``final``."""

    meeting_id: str
    skipped_reason: str
    meeting: MeetingRecord | None = None

    @property
    def polled(self) -> bool:
        return False


def handle_collect_task(deps: Deps, task: CollectTask) -> PollOutcome | Skipped:
    """A delivery from Cloud Tasks: the chain's link, or a one-off re-poll."""
    return poll_meeting(deps, task.meeting_id, reason=task.reason, seq=task.attempt)


def poll_meeting(
    deps: Deps,
    meeting_id: str,
    *,
    reason: CollectReason,
    seq: int | None = None,
) -> PollOutcome | Skipped:
    with logs.bind(meeting_id=meeting_id, attempt=seq, reason=reason):
        meeting = deps.store.get(meeting_id)
        if meeting is None:
            if reason == "manual":
                raise NotFound.meeting(meeting_id)
            logs.warning("task for an unknown meeting ignored")
            return Skipped(meeting_id=meeting_id, skipped_reason="unknown")
        in_chain = reason == "poll"
        skip = _skip_reason(meeting, in_chain=in_chain, seq=seq)
        if skip is not None:
            if skip == "stale":
                ensure_link(deps, meeting, trust_started=False)
            logs.info("delivery skipped", skipped=skip, status=str(meeting.status))
            return Skipped(meeting_id=meeting_id, skipped_reason=skip, meeting=meeting)
        owner = uuid.uuid4().hex
        leased = _acquire(deps, meeting_id, owner=owner, in_chain=in_chain, seq=seq)
        try:
            return _poll_leased(deps, leased, owner=owner, reason=reason, in_chain=in_chain)
        except BaseException:
            _release(deps, meeting_id, owner=owner)
            raise


def _skip_reason(meeting: MeetingRecord, *, in_chain: bool, seq: int | None) -> str | None:
    if meeting.status is Status.MERGED:
        return "merged"
    if in_chain:
        if seq != meeting.chain_seq:
            return "stale"
        if meeting.is_final:
            return "final"
    return None


def _acquire(
    deps: Deps, meeting_id: str, *, owner: str, in_chain: bool, seq: int | None
) -> MeetingRecord:
    now = deps.clock()
    acquired = False

    def take(current: MeetingRecord) -> MeetingRecord | None:
        nonlocal acquired
        acquired = False
        held = current.lease_owner is not None and (
            current.lease_until is not None and current.lease_until > now
        )
        if held or _skip_reason(current, in_chain=in_chain, seq=seq) is not None:
            return None
        acquired = True
        return replace(current, lease_owner=owner, lease_until=now + LEASE)

    stored = deps.store.update(meeting_id, take)
    if stored is None:
        raise NotFound.meeting(meeting_id)
    if not acquired:
        raise Busy(meeting_id)
    return stored


def _release(deps: Deps, meeting_id: str, *, owner: str) -> None:
    def free(current: MeetingRecord) -> MeetingRecord | None:
        if current.lease_owner != owner:
            return None
        return replace(current, lease_owner=None, lease_until=None)

    deps.store.update(meeting_id, free)


# ------------------------------------------------------------------------------------------------
# One poll, holding the lease


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What Reports gave: the meeting's selection (None when the poll failed) and its cost."""

    selected: Meeting | None
    stats: FetchStats | None
    error: LastError | None


def _fetch(deps: Deps, meeting: MeetingRecord, polled_at: datetime) -> _Fetched:
    neighbours = deps.store.with_code(meeting.meeting_code)
    specs: list[MeetingSpec] = [
        deps.spec(m) for m in neighbours if m.meeting_id != meeting.meeting_id
    ]
    specs.append(deps.spec(meeting))
    # The leased meeting is not merged, so it has a selection span.
    start = reports_query_start(selection_spans(specs)[meeting.meeting_id], now=polled_at)
    try:
        activities, stats = deps.reports.call_ended(
            meeting_code=reports_meeting_code(meeting.meeting_code), start=start
        )
    except ReportsError as failure:
        return _Fetched(
            None, None, LastError(code=failure.code, message=failure.message, at=polled_at)
        )
    collector = SessionCollector()
    collector.add_activities(activities)
    selection = select_meetings(specs, collector.sessions()).get(meeting.meeting_id)
    return _Fetched(selection.meeting if selection is not None else None, stats, None)


def _missing_expected(meeting: MeetingRecord, selected: Meeting) -> list[str]:
    seen = {p.participant_key for p in selected.participants}
    return [key for key in meeting.expected_participants if key not in seen]


def _decide(
    deps: Deps, meeting: MeetingRecord, selected: Meeting | None, polled_at: datetime
) -> Decision:
    result = (
        PollResult(succeeded=False)
        if selected is None
        else PollResult(
            succeeded=True,
            sessions_fingerprint=meeting_fingerprint(selected),
            session_count=sum(p.session_count for p in selected.participants),
            missing_expected=len(_missing_expected(meeting, selected)),
        )
    )
    history = PollHistory(
        status=meeting.status,
        sessions_fingerprint=meeting.sessions_fingerprint,
        fingerprint_seen_since=meeting.fingerprint_seen_since,
        successful_polls=meeting.successful_polls,
        ever_found_sessions=meeting.found_sessions,
    )
    return decide(
        history=history,
        result=result,
        polled_at=polled_at,
        ended_at=meeting.ended_at,
        timing=deps.timing,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attendance:
    """The participant documents after the poll, and which of them change."""

    records: Mapping[str, ParticipantRecord]
    changed: Mapping[str, ParticipantRecord]
    removed: Sequence[str]
    revision: int


def _participant_records(
    deps: Deps, meeting: MeetingRecord, selected: Meeting | None, *, status: Status, revision: int
) -> dict[str, ParticipantRecord]:
    """What the participant documents should hold after this poll."""
    completing = status is Status.COMPLETE
    if selected is None:
        # A failed poll changes no attendance, except that completing marks the missing absent.
        records = {
            doc_id: ParticipantRecord(doc_id=doc_id, document={}, fingerprint=fingerprint)
            for doc_id, fingerprint in meeting.participant_fingerprints.items()
        }
        missing: Sequence[str] = ()
        if completing and meeting.status is not Status.COMPLETE:
            missing = meeting.missing_participants
    else:
        records = {}
        for participant in selected.participants:
            record = participant_record(
                participant, meeting=meeting, revision=revision, status=status, ip_mode=deps.ip_mode
            )
            records[record.doc_id] = record
        missing = _missing_expected(meeting, selected)
    unseen = absent_record if completing else estimated_record
    for key in missing:
        record = unseen(key, meeting=meeting, revision=revision, status=status)
        records[record.doc_id] = record
    return records


def _attendance(
    deps: Deps, meeting: MeetingRecord, selected: Meeting | None, status: Status
) -> _Attendance:
    records = _participant_records(deps, meeting, selected, status=status, revision=0)
    stored = meeting.participant_fingerprints
    changed = {d: r for d, r in records.items() if stored.get(d) != r.fingerprint}
    removed = [doc_id for doc_id in stored if doc_id not in records]
    if not (changed or removed):
        return _Attendance(records=records, changed={}, removed=(), revision=meeting.revision)
    # Rebuilt with the revision they change at.
    revision = meeting.revision + 1
    records = _participant_records(deps, meeting, selected, status=status, revision=revision)
    changed = {d: records[d] for d in changed}
    return _Attendance(records=records, changed=changed, removed=removed, revision=revision)


def _write_attendance(
    deps: Deps,
    meeting: MeetingRecord,
    attendance: _Attendance,
    *,
    status: Status,
    polled_at: datetime,
    reason: CollectReason,
) -> int:
    """The participant documents and the revision record; returns the number of writes."""
    changed, removed = attendance.changed, attendance.removed
    attendance_changed = bool(changed or removed)
    status_moved = status != meeting.status
    before = (
        deps.store.participant_documents(meeting.meeting_id, doc_ids=[*changed, *removed])
        if attendance_changed
        else {}
    )
    writes = deps.store.write_participants(
        meeting.meeting_id,
        upserts=list(changed.values()),
        deletes=removed,
        status_updates=[d for d in attendance.records if d not in changed] if status_moved else (),
        status=status if status_moved else None,
    )
    if attendance_changed:
        deps.store.write_revision(
            meeting.meeting_id,
            RevisionRecord(
                revision=attendance.revision,
                at=polled_at,
                reason=_revision_reason(reason),
                changes=_changes(before, changed, removed),
            ),
        )
    return writes


@dataclass(frozen=True, slots=True, kw_only=True)
class _Summary:
    """The meeting document's fields after the poll, as one typed change (``apply``)."""

    owner: str
    status: Status
    attempts: int
    polled_at: datetime
    next_poll_at: datetime | None
    chain_seq: int
    chain_started: bool
    revision: int
    participant_fingerprints: Mapping[str, str]
    decision: Decision
    last_error: LastError | None
    completed: bool
    successful_polls: int
    selected: Meeting | None
    missing_participants: tuple[str, ...] | None

    def apply(self, current: MeetingRecord) -> MeetingRecord | None:
        """``current`` with the poll's results, or None when the lease was lost meanwhile."""
        if current.lease_owner != self.owner:
            return None
        updated = replace(
            current,
            status=self.status,
            attempts=self.attempts,
            last_polled_at=self.polled_at,
            next_poll_at=self.next_poll_at,
            chain_seq=self.chain_seq,
            chain_started=self.chain_started,
            revision=self.revision,
            participant_fingerprints=self.participant_fingerprints,
            sessions_fingerprint=self.decision.sessions_fingerprint,
            fingerprint_seen_since=self.decision.fingerprint_seen_since,
            lease_owner=None,
            lease_until=None,
            updated_at=self.polled_at,
            last_error=self.last_error,
        )
        if self.completed:
            updated = replace(updated, completed_at=self.polled_at)
        if self.missing_participants is not None:
            updated = replace(updated, missing_participants=self.missing_participants)
        return updated if self.selected is None else self._with_aggregates(updated, self.selected)

    def _with_aggregates(self, updated: MeetingRecord, selected: Meeting) -> MeetingRecord:
        return replace(
            updated,
            successful_polls=self.successful_polls,
            conference_ids=selected.conference_ids,
            calendar_event_id=selected.calendar_event_id or updated.calendar_event_id,
            organizer_email=selected.organizer_email or updated.organizer_email,
            actual_start=selected.actual_start,
            actual_end=selected.actual_end,
            participant_count=selected.participant_count,
            total_attended_seconds=selected.total_attended_seconds,
            attendance_source="reports" if selected.participants else updated.attendance_source,
        )


def _missing_after(
    meeting: MeetingRecord, selected: Meeting | None, decision: Decision
) -> tuple[str, ...] | None:
    """The expected participants still missing, when this poll says (None: unchanged)."""
    if selected is not None:
        return tuple(_missing_expected(meeting, selected))
    if decision.final and decision.status is Status.COMPLETE:
        return meeting.missing_participants
    return None


def _following(
    deps: Deps, meeting: MeetingRecord, decision: Decision, *, in_chain: bool, polled_at: datetime
) -> tuple[datetime | None, int]:
    """The next link's time (None: no more polls) and the chain's sequence number after this."""
    if not in_chain:
        return (None if decision.final else meeting.next_poll_at), meeting.chain_seq
    following = (
        None
        if decision.final
        else next_poll_at(
            polled_at=polled_at,
            polls_done=meeting.attempts + 1,
            ended_at=meeting.ended_at,
            timing=deps.timing,
        )
    )
    return following, meeting.chain_seq + 1


def _poll_leased(
    deps: Deps, meeting: MeetingRecord, *, owner: str, reason: CollectReason, in_chain: bool
) -> PollOutcome:
    polled_at = deps.clock()
    fetched = _fetch(deps, meeting, polled_at)
    selected = fetched.selected
    decision = _decide(deps, meeting, selected, polled_at)
    status = decision.status
    attendance = _attendance(deps, meeting, selected, status)
    writes = _write_attendance(
        deps, meeting, attendance, status=status, polled_at=polled_at, reason=reason
    )
    following, chain_seq = _following(
        deps, meeting, decision, in_chain=in_chain, polled_at=polled_at
    )
    summary = _Summary(
        owner=owner,
        status=status,
        attempts=meeting.attempts + 1,
        polled_at=polled_at,
        next_poll_at=following,
        chain_seq=chain_seq,
        chain_started=not in_chain or following is None,
        revision=attendance.revision,
        participant_fingerprints={d: r.fingerprint for d, r in attendance.records.items()},
        decision=decision,
        last_error=fetched.error or (None if selected else meeting.last_error),
        completed=status is Status.COMPLETE and meeting.status is not Status.COMPLETE,
        successful_polls=meeting.successful_polls + 1,
        selected=selected,
        missing_participants=_missing_after(meeting, selected, decision),
    )
    stored = deps.store.update(meeting.meeting_id, summary.apply)
    if stored is None or (stored.lease_owner is not None and stored.lease_owner != owner):
        raise Busy(meeting.meeting_id)
    if in_chain:
        stored = ensure_link(deps, stored)
    return _outcome(meeting, stored, attendance, writes, fetched, decision)


def _outcome(
    meeting: MeetingRecord,
    stored: MeetingRecord,
    attendance: _Attendance,
    writes: int,
    fetched: _Fetched,
    decision: Decision,
) -> PollOutcome:
    real = fetched.selected.participants if fetched.selected is not None else ()
    previous_ids = set(meeting.participant_fingerprints)
    real_ids = {participant_doc_id(p.participant_key) for p in real}
    changed = attendance.changed
    outcome = PollOutcome(
        meeting=stored,
        created=tuple(sorted(i for i in changed if i in real_ids and i not in previous_ids)),
        updated=tuple(sorted(i for i in changed if i in real_ids and i in previous_ids)),
        participant_writes=writes,
        stats=fetched.stats,
        selected=fetched.selected,
        error=None if fetched.error is None else fetched.error.message,
    )
    stats = fetched.stats
    logs.info(
        "poll finished",
        status=str(stored.status),
        decision="final" if decision.final else "continue",
        events=stats.activities if stats else None,
        pages=stats.pages if stats else None,
        requests=stats.requests if stats else None,
        participants=len(real),
        participant_writes=writes,
        revision=stored.revision,
        next_poll_at=format_optional(stored.next_poll_at),
        error=outcome.error,
    )
    return outcome


def _revision_reason(reason: CollectReason) -> RevisionReason:
    if reason in ("backfill", "neighbour", "manual"):
        return reason
    return "poll"


def _changes(
    before: Mapping[str, Mapping[str, Any]],
    changed: Mapping[str, ParticipantRecord],
    removed: Sequence[str],
) -> list[AttendanceChange]:
    changes = []
    for doc_id, record in changed.items():
        old = before.get(doc_id)
        changes.append(
            AttendanceChange(
                participant_key=record.participant_key,
                before=None if old is None else int(old.get("attended_seconds") or 0),
                after=record.attended_seconds,
            )
        )
    for doc_id in removed:
        old = before.get(doc_id)
        if old is not None:
            changes.append(
                AttendanceChange(
                    participant_key=str(old.get("participant_key")),
                    before=int(old.get("attended_seconds") or 0),
                    after=None,
                )
            )
    return sorted(changes, key=lambda c: c.participant_key)
