"""Use case: a meeting is declared (webhook, CLI sync, backfill discovery) — CONTRACT §3.

The meeting document is created insert-if-absent under an id that is a hash of its identity, so a
duplicate finds the same document; then its expected participants get estimates, the first link
of its chain is enqueued, and its neighbours are told (``functions.neighbours``). A replayed
``webhook-id`` answers with the meeting it was first accepted for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from functions import logs
from functions.chain import ensure_link
from functions.errors import NotFound
from functions.meeting_codes import canonical_meeting_code
from functions.model import Declared, MeetingRecord, Source, estimated_record, meeting_id_for
from functions.neighbours import absorb_and_repoll_neighbours
from functions.ports import Deps
from functions.schedule import Status, deadline, first_poll_at
from functions.selection import declared_window

__all__ = ["DELIVERY_MEMORY", "Accepted", "accept_meeting_end", "new_meeting_record"]

#: Webhook-id replay records live this long (Firestore TTL deletes them after).
DELIVERY_MEMORY: Final = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Accepted:
    meeting: MeetingRecord
    created: bool


def new_meeting_record(
    declared: Declared, *, meeting_id: str, source: Source, deps: Deps, now: datetime
) -> MeetingRecord:
    window_start, window_end = declared_window(
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        before_s=deps.window_before_s,
        after_s=deps.window_after_s,
    )
    return MeetingRecord(
        meeting_id=meeting_id,
        source=source,
        meeting_code=canonical_meeting_code(declared.meeting_code),
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        external_id=declared.external_id,
        window_start=window_start,
        window_end=window_end,
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
        replayed = _replayed(deps, webhook_id)
        if replayed is not None:
            return replayed

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
        meeting = ensure_link(deps, meeting)
        if created or meeting.chain_seq != record.chain_seq:
            absorb_and_repoll_neighbours(deps, meeting)
        if webhook_id is not None:
            deps.store.remember_delivery(
                webhook_id=webhook_id, meeting_id=meeting_id, expire_at=now + DELIVERY_MEMORY
            )
        return Accepted(meeting, created=created)


def _replayed(deps: Deps, webhook_id: str) -> Accepted | None:
    """The answer to a ``webhook-id`` seen before: its meeting, whose chain is made sure of."""
    seen = deps.store.delivery(webhook_id)
    meeting = None if seen is None else deps.store.get(seen)
    if meeting is None:
        return None
    with logs.bind(meeting_id=meeting.meeting_id):
        logs.info("webhook replayed", webhook_id=webhook_id)
        return Accepted(ensure_link(deps, meeting), created=False)


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
        return replace(current, participant_fingerprints=fingerprints)

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
        return replace(
            current,
            ended_at=declared.ended_at,
            started_at=declared.started_at,
            window_start=declared.window_start,
            window_end=declared.window_end,
            deadline=declared.deadline,
            next_poll_at=declared.next_poll_at,
            # A new link supersedes the old one; the old task finds itself stale.
            chain_seq=current.chain_seq + 1,
            chain_started=False,
            status=Status.SCHEDULED if current.is_final else current.status,
            updated_at=now,
        )

    updated = deps.store.update(declared.meeting_id, change)
    if updated is None:
        raise NotFound.meeting(declared.meeting_id)
    if updated.chain_seq != declared.chain_seq and updated.attendance_source == "estimated":
        write_estimates(deps, updated)
    return updated
