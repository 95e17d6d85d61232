"""A meeting's chain of polls: named tasks, the one way a link is enqueued, and broken chains.

Idempotency comes from names, not locks: the task of link ``n`` is named after
``(meeting_id, n)``, so a duplicate delivery re-creating it gets ``ALREADY_EXISTS`` and the chain
never forks. ``chain_seq`` in the meeting document is the link that may poll next; any other
delivery is stale. ``chain_started`` records that the current link's task exists, so a duplicate
webhook does not ask Cloud Tasks again.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from functions import logs
from functions.model import MeetingRecord
from functions.ports import CollectTask, Deps
from functions.schedule import LIVE_STATUSES
from functions.timestamps import format_optional

__all__ = ["OVERDUE_AFTER", "chain_task_id", "ensure_link", "restart_overdue_chains", "task_name"]

#: A chain whose next poll is this late broke (a task that exhausted its retries, a lost link).
OVERDUE_AFTER: Final = timedelta(hours=1)


def task_name(*parts: object) -> str:
    """A hashed task name: Cloud Tasks dispatches sequential names slowly."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chain_task_id(meeting_id: str, seq: int) -> str:
    return task_name(meeting_id, "poll", seq)


def ensure_link(
    deps: Deps, meeting: MeetingRecord, *, trust_started: bool = True, mark: bool = True
) -> MeetingRecord:
    """Make sure the task of the meeting's current link exists; returns the meeting as stored.

    Heals a crash between a meeting's commit and its enqueue. With ``trust_started`` a link
    already marked started is not asked for again; a stale delivery passes False, because its
    retry may be the only sign that the link's task went missing. Without ``mark`` the link is
    asked for and left unmarked (a webhook's first link: a duplicate asks Cloud Tasks again,
    which answers that the named task exists, instead of the webhook paying a write for it).
    """
    if meeting.is_final or meeting.next_poll_at is None:
        return meeting
    if meeting.chain_started and trust_started:
        return meeting
    deps.queue.enqueue(
        CollectTask(meeting.meeting_id, meeting.chain_seq, "poll"),
        task_id=chain_task_id(meeting.meeting_id, meeting.chain_seq),
        at=meeting.next_poll_at,
    )
    if meeting.chain_started or not mark:
        return meeting
    seq = meeting.chain_seq

    def started(current: MeetingRecord) -> MeetingRecord | None:
        if current.chain_seq != seq or current.chain_started:
            return None
        return replace(current, chain_started=True)

    return deps.store.update(meeting.meeting_id, started) or meeting


def restart_overdue_chains(deps: Deps, *, now: datetime) -> list[str]:
    """A chain whose next poll is more than an hour late broke: start a new link now. A chain
    whose first task was never asked for (its creator died between the meeting and the task,
    and its retry did not come back to it) gets that task as soon as it is due.

    Two runs at once restart it once: the new link is taken by a conditional update.
    """
    restarted: list[str] = []
    for meeting in deps.store.overdue(now):
        late = meeting.next_poll_at is not None and meeting.next_poll_at < now - OVERDUE_AFTER
        if not meeting.chain_started and not late:
            ensure_link(deps, meeting, mark=False)  # the named task: asking twice creates one
            continue
        if not late:
            continue  # due, and its task on the way
        seq = meeting.chain_seq

        def restart(current: MeetingRecord, seq: int = seq) -> MeetingRecord | None:
            late = current.next_poll_at is not None and current.next_poll_at < now - OVERDUE_AFTER
            if current.chain_seq != seq or not late or current.status not in LIVE_STATUSES:
                return None
            return replace(
                current, chain_seq=seq + 1, chain_started=False, next_poll_at=now, updated_at=now
            )

        updated = deps.store.update(meeting.meeting_id, restart)
        if updated is None or updated.chain_seq == seq:
            continue  # another run restarted it, or it moved on by itself
        ensure_link(deps, updated)
        restarted.append(meeting.meeting_id)
        with logs.bind(meeting_id=meeting.meeting_id, status=str(updated.status)):
            logs.warning(
                "overdue chain re-enqueued",
                was_due=format_optional(meeting.next_poll_at),
                attempt=updated.chain_seq,
            )
    return restarted
