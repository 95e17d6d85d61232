"""Use cases: accept a meeting end, poll a meeting, show it. Ports come in as plain arguments.

One collection path: the webhook chain, neighbour re-polls, the manual sync and the backfill all
end in :func:`poll_meeting`.

Idempotency comes from names and sequence numbers, not locks held across calls:

- a meeting's id is a hash of its identity, so a duplicate webhook finds the same document;
- its chain's tasks are named after ``(meeting_id, chain_seq)``; a delivery whose ``attempt`` is
  not the stored ``chain_seq`` is stale and only makes sure the current link exists;
- a short lease in the meeting document keeps two deliveries from polling one meeting at once;
  the loser answers 409 and the queue retries it later, when it finds the work done.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.attendance import (
    Meeting,
    SessionCollector,
    format_timestamp,
    meeting_fingerprint,
    participant_doc_id,
    reports_meeting_code,
)
from functions.errors import AppError
from functions.model import (
    AttendanceChange,
    Declared,
    IpMode,
    LastError,
    MeetingRecord,
    ParticipantRecord,
    RevisionReason,
    RevisionRecord,
    Source,
    absent_record,
    estimated_record,
    meeting_id_for,
    participant_record,
)
from functions.ports import (
    Clock,
    CollectReason,
    CollectTask,
    FetchStats,
    MeetingStore,
    ReportsError,
    ReportsSource,
    TaskQueue,
)
from functions.schedule import (
    FINAL_STATUSES,
    PollHistory,
    PollResult,
    Status,
    Timing,
    deadline,
    decide,
    first_poll_at,
    next_poll_at,
)
from functions.selection import MeetingSpec, credited_spans, select_meetings

#: How long one poll may hold a meeting. Longer than any poll takes; short enough that a crashed
#: worker's retry gets through within minutes.
LEASE = timedelta(seconds=120)
#: Webhook-id replay records live this long (Firestore TTL deletes them after).
DELIVERY_MEMORY = timedelta(days=2)
#: Reports keeps 180 days; a query must not start before that.
REPORTS_RETENTION = timedelta(days=180) - timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Deps:
    store: MeetingStore
    queue: TaskQueue
    reports: ReportsSource
    clock: Clock
    timing: Timing = field(default_factory=Timing)
    window_before_s: int = 900
    window_after_s: int = 3600
    ip_mode: IpMode = "full"


class Busy(AppError):
    def __init__(self, meeting_id: str) -> None:
        super().__init__(
            f"meeting {meeting_id} is being polled by another delivery",
            status=409,
            retryable=True,
            code="busy",
        )


class NotFound(AppError):
    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"no meeting {meeting_id}", status=404, code="not_found")


@dataclass(frozen=True, slots=True)
class Accepted:
    meeting: MeetingRecord
    created: bool


def task_id(meeting_id: str, *parts: object) -> str:
    """Hashed task names: Cloud Tasks dispatches sequential names slowly."""
    text = "\x1f".join([meeting_id, *(str(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chain_task_id(meeting_id: str, seq: int) -> str:
    return task_id(meeting_id, "poll", seq)


# ------------------------------------------------------------------------------------------------
# Accepting a meeting end


def new_meeting_record(
    declared: Declared,
    *,
    meeting_id: str,
    source: Source,
    deps: Deps,
    now: datetime,
) -> MeetingRecord:
    spec = MeetingSpec(
        meeting_id=meeting_id,
        meeting_code=declared.meeting_code,
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        window_before_s=deps.window_before_s,
        window_after_s=deps.window_after_s,
    )
    return MeetingRecord(
        meeting_id=meeting_id,
        source=source,
        meeting_code=spec.code,
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        external_id=declared.external_id,
        window_start=spec.declared_start - timedelta(seconds=deps.window_before_s),
        window_end=declared.ended_at + timedelta(seconds=deps.window_after_s),
        deadline=deadline(declared.ended_at, deps.timing),
        expected_participants=declared.expected_participants,
        missing_participants=declared.expected_participants,
        calendar_event_id=declared.calendar_event_id,
        organizer_email=declared.organizer_email,
        next_poll_at=first_poll_at(ended_at=declared.ended_at, now=now, timing=deps.timing),
        created_at=now,
        updated_at=now,
    )


def accept_meeting_end(
    deps: Deps,
    declared: Declared,
    *,
    source: Source = "webhook",
    webhook_id: str | None = None,
    conference_id: str | None = None,
) -> Accepted:
    """Create (or find) the meeting, its estimated attendance and the first task of its chain.

    A backfill meeting passes the ``conference_id`` it was found for: its identity.
    """
    now = deps.clock()
    if webhook_id is not None:
        seen = deps.store.delivery(webhook_id)
        if seen is not None:
            meeting = deps.store.get(seen)
            if meeting is not None:
                with logs.bind(meeting_id=meeting.meeting_id):
                    logs.info("webhook replayed", webhook_id=webhook_id)
                    return Accepted(ensure_chain(deps, meeting), created=False)

    meeting_id = meeting_id_for(
        external_id=declared.external_id,
        meeting_code=declared.meeting_code,
        ended_at=declared.ended_at,
        conference_id=conference_id,
    )
    with logs.bind(meeting_id=meeting_id):
        record = new_meeting_record(
            declared, meeting_id=meeting_id, source=source, deps=deps, now=now
        )
        created = deps.store.create(record)
        if created:
            meeting = record
            write_estimates(deps, meeting)
            logs.info("meeting created", status=str(meeting.status), source=source)
        else:
            meeting = _update_declared(deps, record, now=now)
        meeting = ensure_chain(deps, meeting)
        if created or meeting.chain_seq != record.chain_seq:
            absorb_and_repoll_neighbours(deps, meeting)
        if webhook_id is not None:
            deps.store.remember_delivery(webhook_id, meeting_id, expire_at=now + DELIVERY_MEMORY)
        return Accepted(meeting, created=created)


def write_estimates(deps: Deps, meeting: MeetingRecord) -> None:
    """Expected participants get the declared length until real data replaces it (idempotent)."""
    if not meeting.expected_participants or meeting.attendance_source != "estimated":
        return
    records = [
        estimated_record(key, meeting=meeting, revision=meeting.revision, status=meeting.status)
        for key in meeting.expected_participants
    ]
    deps.store.write_participants(meeting.meeting_id, upserts=records)

    def remember(current: MeetingRecord) -> MeetingRecord | None:
        fingerprints = dict(current.participant_fingerprints)
        fingerprints.update({r.doc_id: r.fingerprint for r in records})
        if fingerprints == current.participant_fingerprints:
            return None
        return current.with_changes(participant_fingerprints=fingerprints)

    deps.store.update(meeting.meeting_id, remember)


def _update_declared(deps: Deps, declared: MeetingRecord, *, now: datetime) -> MeetingRecord:
    """The same meeting sent again; an ``external_id`` with new times reschedules its chain."""

    def change(current: MeetingRecord) -> MeetingRecord | None:
        same_times = (current.ended_at, current.started_at) == (
            declared.ended_at,
            declared.started_at,
        )
        if same_times or current.external_id is None or current.status is Status.MERGED:
            return None
        return current.with_changes(
            ended_at=declared.ended_at,
            started_at=declared.started_at,
            window_start=declared.window_start,
            window_end=declared.window_end,
            deadline=declared.deadline,
            next_poll_at=declared.next_poll_at,
            # A new link supersedes the old one; the old task finds itself stale.
            chain_seq=current.chain_seq + 1,
            chain_started=False,
            status=Status.SCHEDULED if current.status in FINAL_STATUSES else current.status,
            updated_at=now,
        )

    updated = deps.store.update(declared.meeting_id, change)
    if updated is None:
        raise NotFound(declared.meeting_id)
    if updated.chain_seq != declared.chain_seq and updated.attendance_source == "estimated":
        write_estimates(deps, updated)
    return updated


def ensure_chain(deps: Deps, meeting: MeetingRecord) -> MeetingRecord:
    """Start the chain's current link if it never started (e.g. a crash after the document)."""
    if meeting.chain_started or meeting.status in FINAL_STATUSES or meeting.next_poll_at is None:
        return meeting
    deps.queue.enqueue(
        CollectTask(meeting.meeting_id, meeting.chain_seq, "poll"),
        task_id=chain_task_id(meeting.meeting_id, meeting.chain_seq),
        at=meeting.next_poll_at,
    )
    seq = meeting.chain_seq

    def mark(current: MeetingRecord) -> MeetingRecord | None:
        if current.chain_seq != seq or current.chain_started:
            return None
        return current.with_changes(chain_started=True)

    return deps.store.update(meeting.meeting_id, mark) or meeting


def meeting_spec(meeting: MeetingRecord, deps: Deps) -> MeetingSpec:
    return MeetingSpec(
        meeting_id=meeting.meeting_id,
        meeting_code=meeting.meeting_code,
        ended_at=meeting.ended_at,
        started_at=meeting.started_at,
        merged=meeting.status is Status.MERGED,
        window_before_s=deps.window_before_s,
        window_after_s=deps.window_after_s,
        calendar_event_id=meeting.calendar_event_id,
        organizer_email=meeting.organizer_email,
    )


def absorb_and_repoll_neighbours(deps: Deps, meeting: MeetingRecord) -> list[str]:
    """Merge overlapping backfill meetings into ``meeting``; re-poll neighbours whose span moved.

    Returns the ids of the meetings asked to re-poll.
    """
    now = deps.clock()
    others = [
        m for m in deps.store.with_code(meeting.meeting_code) if m.meeting_id != meeting.meeting_id
    ]
    before = credited_spans(meeting_spec(m, deps) for m in others)
    declared_start = meeting.started_at or meeting.ended_at - timedelta(hours=4)
    current: list[MeetingRecord] = []
    for other in others:
        overlaps = (
            other.source == "backfill"
            and meeting.source != "backfill"
            and other.status is not Status.MERGED
            and (other.started_at or other.ended_at) < meeting.ended_at
            and other.ended_at > declared_start
        )
        current.append(_merge(deps, other, into=meeting.meeting_id, now=now) if overlaps else other)
    after = credited_spans([*(meeting_spec(m, deps) for m in current), meeting_spec(meeting, deps)])
    repolled: list[str] = []
    for other in current:
        if other.status is Status.MERGED:
            continue
        span = after.get(other.meeting_id)
        if span == before.get(other.meeting_id):
            continue
        deps.queue.enqueue(
            CollectTask(other.meeting_id, other.chain_seq, "neighbour"),
            task_id=task_id(other.meeting_id, "neighbour", meeting.meeting_id, span),
            at=now,
        )
        repolled.append(other.meeting_id)
        logs.info("neighbour re-poll requested", neighbour_id=other.meeting_id)
    return repolled


def _merge(deps: Deps, backfilled: MeetingRecord, *, into: str, now: datetime) -> MeetingRecord:
    """The backfill meeting, merged into ``into`` (as stored afterwards)."""

    def change(current: MeetingRecord) -> MeetingRecord | None:
        if current.status is Status.MERGED:
            return None
        return current.with_changes(
            status=Status.MERGED, merged_into=into, next_poll_at=None, updated_at=now
        )

    merged = deps.store.update(backfilled.meeting_id, change)
    if merged is None:
        return backfilled
    deps.store.write_participants(
        merged.meeting_id,
        status_updates=list(merged.participant_fingerprints),
        status=str(Status.MERGED),
    )
    with logs.bind(meeting_id=merged.meeting_id):
        logs.info("backfill meeting merged", merged_into=into, status=str(Status.MERGED))
    return merged


# ------------------------------------------------------------------------------------------------
# Polling


@dataclass(frozen=True, slots=True)
class PollOutcome:
    meeting: MeetingRecord
    polled: bool
    skipped_reason: str | None = None
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    participant_writes: int = 0
    stats: FetchStats | None = None
    selected: Meeting | None = None
    error: str | None = None


def handle_collect_task(deps: Deps, task: CollectTask) -> PollOutcome:
    """A delivery from Cloud Tasks: the chain's link, or a one-off re-poll."""
    return poll_meeting(deps, task.meeting_id, reason=task.reason, seq=task.attempt)


def poll_meeting(
    deps: Deps,
    meeting_id: str,
    *,
    reason: CollectReason,
    seq: int | None = None,
) -> PollOutcome:
    with logs.bind(meeting_id=meeting_id, attempt=seq, reason=reason):
        meeting = deps.store.get(meeting_id)
        if meeting is None:
            if reason in ("manual",):
                raise NotFound(meeting_id)
            logs.warning("task for an unknown meeting ignored")
            return PollOutcome(_missing(meeting_id), polled=False, skipped_reason="unknown")
        in_chain = reason == "poll"
        skip = _skip_reason(meeting, in_chain=in_chain, seq=seq)
        if skip is not None:
            if skip == "stale":
                ensure_next_link(deps, meeting)
            logs.info("delivery skipped", skipped=skip, status=str(meeting.status))
            return PollOutcome(meeting, polled=False, skipped_reason=skip)
        owner = uuid.uuid4().hex
        leased = _acquire(deps, meeting_id, owner, in_chain=in_chain, seq=seq)
        try:
            outcome = _poll_leased(deps, leased, owner, reason=reason, in_chain=in_chain)
        except BaseException:
            _release(deps, meeting_id, owner)
            raise
        if in_chain:
            ensure_next_link(deps, outcome.meeting)
        return outcome


def _missing(meeting_id: str) -> MeetingRecord:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return MeetingRecord(
        meeting_id=meeting_id,
        source="manual",
        meeting_code="",
        ended_at=epoch,
        started_at=None,
        external_id=None,
        window_start=epoch,
        window_end=epoch,
        deadline=epoch,
    )


def _skip_reason(meeting: MeetingRecord, *, in_chain: bool, seq: int | None) -> str | None:
    if meeting.status is Status.MERGED:
        return "merged"
    if in_chain:
        if seq != meeting.chain_seq:
            return "stale"
        if meeting.status in FINAL_STATUSES:
            return "final"
    return None


def ensure_next_link(deps: Deps, meeting: MeetingRecord) -> None:
    """Make sure the chain's current link exists: heals a crash between commit and enqueue."""
    if meeting.status in FINAL_STATUSES or meeting.next_poll_at is None:
        return
    deps.queue.enqueue(
        CollectTask(meeting.meeting_id, meeting.chain_seq, "poll"),
        task_id=chain_task_id(meeting.meeting_id, meeting.chain_seq),
        at=meeting.next_poll_at,
    )


def _acquire(
    deps: Deps, meeting_id: str, owner: str, *, in_chain: bool, seq: int | None
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
        return current.with_changes(lease_owner=owner, lease_until=now + LEASE)

    stored = deps.store.update(meeting_id, take)
    if stored is None:
        raise NotFound(meeting_id)
    if not acquired:
        raise Busy(meeting_id)
    return stored


def _release(deps: Deps, meeting_id: str, owner: str) -> None:
    def free(current: MeetingRecord) -> MeetingRecord | None:
        if current.lease_owner != owner:
            return None
        return current.with_changes(lease_owner=None, lease_until=None)

    deps.store.update(meeting_id, free)


def _query_start(meeting: MeetingRecord, specs: Sequence[MeetingSpec], now: datetime) -> datetime:
    span = credited_spans(specs).get(meeting.meeting_id)
    start = meeting.window_start
    if span is not None and span.start is not None and span.start > start:
        start = span.start
    # Reports refuses a future startTime and one older than its retention.
    return max(min(start, now), now - REPORTS_RETENTION)


def _poll_leased(
    deps: Deps,
    meeting: MeetingRecord,
    owner: str,
    *,
    reason: CollectReason,
    in_chain: bool,
) -> PollOutcome:
    polled_at = deps.clock()
    neighbours = deps.store.with_code(meeting.meeting_code)
    specs = [meeting_spec(m, deps) for m in neighbours if m.meeting_id != meeting.meeting_id]
    specs.append(meeting_spec(meeting, deps))
    stats: FetchStats | None = None
    error: LastError | None = None
    selected: Meeting | None = None
    try:
        activities, stats = deps.reports.call_ended(
            meeting_code=reports_meeting_code(meeting.meeting_code),
            start=_query_start(meeting, specs, polled_at),
        )
        collector = SessionCollector()
        collector.add_activities(activities)
        selection = select_meetings(specs, collector.sessions()).get(meeting.meeting_id)
        selected = selection.meeting if selection is not None else None
    except ReportsError as failure:
        error = LastError(code=failure.code, message=failure.message, at=polled_at)

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
        ever_found_sessions=meeting.ever_found_sessions,
    )
    decision = decide(
        history=history,
        result=result,
        polled_at=polled_at,
        ended_at=meeting.ended_at,
        timing=deps.timing,
    )
    status = decision.status
    attempts = meeting.attempts + 1

    records = _participant_records(deps, meeting, selected, status=status, revision=0)
    changed = {
        doc_id: record
        for doc_id, record in records.items()
        if meeting.participant_fingerprints.get(doc_id) != record.fingerprint
    }
    removed = [doc_id for doc_id in meeting.participant_fingerprints if doc_id not in records]
    attendance_changed = bool(changed or removed)
    revision = meeting.revision + 1 if attendance_changed else meeting.revision
    if attendance_changed:
        # Rebuilt with the revision they change at.
        records = _participant_records(deps, meeting, selected, status=status, revision=revision)
        changed = {doc_id: records[doc_id] for doc_id in changed}
    status_moved = status != meeting.status
    unchanged_ids = [doc_id for doc_id in records if doc_id not in changed]

    before = (
        deps.store.participant_documents(meeting.meeting_id, [*changed, *removed])
        if attendance_changed
        else {}
    )
    writes = deps.store.write_participants(
        meeting.meeting_id,
        upserts=list(changed.values()),
        deletes=removed,
        status_updates=unchanged_ids if status_moved else (),
        status=str(status) if status_moved else None,
    )
    if attendance_changed:
        deps.store.write_revision(
            meeting.meeting_id,
            RevisionRecord(
                revision=revision,
                at=polled_at,
                reason=_revision_reason(reason),
                changes=_changes(before, changed, removed),
            ),
        )

    following: datetime | None = meeting.next_poll_at
    chain_seq = meeting.chain_seq
    if in_chain:
        following = (
            None
            if decision.final
            else next_poll_at(
                polled_at=polled_at,
                polls_done=attempts,
                ended_at=meeting.ended_at,
                timing=deps.timing,
            )
        )
        chain_seq += 1
    elif decision.final:
        following = None

    real = selected.participants if selected is not None else ()
    summary: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "last_polled_at": polled_at,
        "next_poll_at": following,
        "chain_seq": chain_seq,
        "chain_started": not in_chain or following is None,
        "revision": revision,
        "participant_fingerprints": {d: r.fingerprint for d, r in records.items()},
        "sessions_fingerprint": decision.sessions_fingerprint,
        "fingerprint_seen_since": decision.fingerprint_seen_since,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": polled_at,
        "last_error": error if error is not None else (None if selected else meeting.last_error),
    }
    if status is Status.COMPLETE and meeting.status is not Status.COMPLETE:
        summary["completed_at"] = polled_at
    if selected is not None:
        summary.update(
            successful_polls=meeting.successful_polls + 1,
            ever_found_sessions=meeting.ever_found_sessions or bool(real),
            conference_ids=selected.conference_ids,
            calendar_event_id=selected.calendar_event_id or meeting.calendar_event_id,
            organizer_email=selected.organizer_email or meeting.organizer_email,
            actual_start=selected.actual_start,
            actual_end=selected.actual_end,
            participant_count=selected.participant_count,
            total_attended_seconds=selected.total_attended_seconds,
            missing_participants=tuple(_missing_expected(meeting, selected)),
            attendance_source="reports" if real else meeting.attendance_source,
        )
    elif decision.final and status is Status.COMPLETE:
        summary["missing_participants"] = meeting.missing_participants

    def commit(current: MeetingRecord) -> MeetingRecord | None:
        if current.lease_owner != owner:
            return None
        return current.with_changes(**summary)

    stored = deps.store.update(meeting.meeting_id, commit)
    if stored is None or (stored.lease_owner is not None and stored.lease_owner != owner):
        raise Busy(meeting.meeting_id)
    if in_chain and following is not None:
        deps.queue.enqueue(
            CollectTask(stored.meeting_id, stored.chain_seq, "poll"),
            task_id=chain_task_id(stored.meeting_id, stored.chain_seq),
            at=following,
        )
        stored = _mark_started(deps, stored)

    previous_ids = set(meeting.participant_fingerprints)
    real_ids = {participant_doc_id(p.participant_key) for p in real}
    outcome = PollOutcome(
        meeting=stored,
        polled=True,
        created=tuple(sorted(i for i in changed if i in real_ids and i not in previous_ids)),
        updated=tuple(sorted(i for i in changed if i in real_ids and i in previous_ids)),
        participant_writes=writes,
        stats=stats,
        selected=selected,
        error=None if error is None else error.message,
    )
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
        next_poll_at=format_timestamp(following) if following else None,
        error=outcome.error,
    )
    return outcome


def _mark_started(deps: Deps, meeting: MeetingRecord) -> MeetingRecord:
    seq = meeting.chain_seq

    def mark(current: MeetingRecord) -> MeetingRecord | None:
        if current.chain_seq != seq or current.chain_started:
            return None
        return current.with_changes(chain_started=True)

    return deps.store.update(meeting.meeting_id, mark) or meeting


def _revision_reason(reason: CollectReason) -> RevisionReason:
    if reason in ("backfill", "neighbour", "manual"):
        return reason
    return "poll"


def _missing_expected(meeting: MeetingRecord, selected: Meeting) -> list[str]:
    seen = {p.participant_key for p in selected.participants}
    return [key for key in meeting.expected_participants if key not in seen]


def _participant_records(
    deps: Deps,
    meeting: MeetingRecord,
    selected: Meeting | None,
    *,
    status: Status,
    revision: int,
) -> dict[str, ParticipantRecord]:
    """What the participant documents should hold after this poll."""
    if selected is None:
        # A failed poll changes no attendance, except that completing marks the missing absent.
        records = {
            doc_id: ParticipantRecord(doc_id, {}, fingerprint)
            for doc_id, fingerprint in meeting.participant_fingerprints.items()
        }
        if status is Status.COMPLETE and meeting.status is not Status.COMPLETE:
            for key in meeting.missing_participants:
                record = absent_record(key, meeting=meeting, revision=revision, status=status)
                records[record.doc_id] = record
        return records
    records = {}
    for participant in selected.participants:
        record = participant_record(
            participant, meeting=meeting, revision=revision, status=status, ip_mode=deps.ip_mode
        )
        records[record.doc_id] = record
    for key in _missing_expected(meeting, selected):
        if status is Status.COMPLETE:
            record = absent_record(key, meeting=meeting, revision=revision, status=status)
        else:
            record = estimated_record(key, meeting=meeting, revision=revision, status=status)
        records[record.doc_id] = record
    return records


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
