"""Use case: a declared meeting arrives beside others of its code (CONTRACT §3).

Meetings of one code partition time (``functions.selection``). A newly declared or moved meeting
absorbs the backfill meetings its declared interval overlaps (they become ``merged``), and every
other meeting whose credited span it changed is re-polled at once, under a task named after the
span it is for, so a repeated declaration asks once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from functions import logs
from functions.chain import task_name
from functions.model import MeetingRecord
from functions.ports import CollectTask, Deps
from functions.schedule import Status
from functions.selection import credited_spans, declared_start

__all__ = ["absorb_and_repoll_neighbours"]


def _absorbs(meeting: MeetingRecord, other: MeetingRecord) -> bool:
    """Whether declared ``meeting`` takes over backfill meeting ``other``: their intervals meet."""
    start = declared_start(ended_at=meeting.ended_at, started_at=meeting.started_at)
    return (
        other.source == "backfill"
        and meeting.source != "backfill"
        and other.status is not Status.MERGED
        and (other.started_at or other.ended_at) < meeting.ended_at
        and other.ended_at > start
    )


def absorb_and_repoll_neighbours(deps: Deps, meeting: MeetingRecord) -> list[str]:
    """Merge overlapping backfill meetings into ``meeting``; re-poll neighbours whose span moved.

    Returns the ids of the meetings asked to re-poll.
    """
    now = deps.clock()
    others = [
        m for m in deps.store.with_code(meeting.meeting_code) if m.meeting_id != meeting.meeting_id
    ]
    before = credited_spans(deps.spec(m) for m in others)
    current = [
        _merge(deps, other, into=meeting.meeting_id, now=now) if _absorbs(meeting, other) else other
        for other in others
    ]
    after = credited_spans([*(deps.spec(m) for m in current), deps.spec(meeting)])
    repolled: list[str] = []
    for other in current:
        if other.status is Status.MERGED:
            continue
        span = after.get(other.meeting_id)
        if span == before.get(other.meeting_id):
            continue
        deps.queue.enqueue(
            CollectTask(other.meeting_id, other.chain_seq, "neighbour"),
            task_id=task_name(other.meeting_id, "neighbour", meeting.meeting_id, span),
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
        return replace(
            current, status=Status.MERGED, merged_into=into, next_poll_at=None, updated_at=now
        )

    merged = deps.store.update(backfilled.meeting_id, change)
    if merged is None:
        return backfilled
    deps.store.write_participants(
        merged.meeting_id,
        status_updates=list(merged.participant_fingerprints),
        status=Status.MERGED,
    )
    with logs.bind(meeting_id=merged.meeting_id):
        logs.info("backfill meeting merged", merged_into=into, status=str(Status.MERGED))
    return merged
