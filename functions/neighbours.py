"""Use case: a declared meeting arrives or moves beside others of its code (docs/rules.md).

Meetings of one code partition time (``functions.selection``). When one is declared or moved,
every other meeting whose share changed is told at once, in two ways: its document gets a new
``span_version`` (so a poll of it in flight, which planned with the old partition, stores
nothing and plans again) and it is re-polled, under a task named after the span it is for, so a
repeated declaration asks once.

A found (backfill) meeting whose sessions a declared meeting now covers is absorbed: when every
session it holds falls in the declared meeting's selection it becomes ``merged`` at once (its
participant documents stay, marked ``merged``, and the declared meeting's poll takes their
sessions); otherwise it records the declared meeting in ``partly_merged_into`` and its next poll
hands the covered sessions over and keeps the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from functions import logs
from functions.chain import task_name
from functions.intervals import Span
from functions.model import MeetingRecord
from functions.participant_keys import participant_doc_id
from functions.ports import CollectTask, Deps, MeetingCommit
from functions.schedule import Status
from functions.selection import Partition
from functions.stored_state import carrying_landed_token, preliminary_sessions, stored_sessions

__all__ = ["absorb_and_repoll_neighbours", "nobody_to_tell"]

#: Tries of one fenced merge before leaving it to the absorbed meeting's own poll.
_MERGE_ATTEMPTS: Final = 3


def _share(partition: Partition, meeting_id: str) -> tuple[Span | None, Span | None]:
    return partition.selection.get(meeting_id), partition.credited.get(meeting_id)


def _covers(span: Span, meeting: MeetingRecord) -> bool:
    """Whether ``span`` overlaps the sessions ``meeting`` holds (or, before any, its times)."""
    start = meeting.sessions_start or meeting.started_at or meeting.ended_at
    end = meeting.sessions_end or meeting.ended_at
    return span.overlaps(start, end)


@dataclass(frozen=True, slots=True)
class _Told:
    """One neighbour whose share a meeting changes, or that it absorbs (part of)."""

    other: MeetingRecord
    absorbing: bool
    share: tuple[Span | None, Span | None]


def _to_tell(
    deps: Deps, meeting: MeetingRecord, others: Sequence[MeetingRecord]
) -> tuple[list[_Told], Span | None]:
    """The neighbours ``meeting`` must tell (pure), and its own selection span."""
    told = meeting.as_told()
    # Shares before: without the meeting, and with it at the times the neighbours were told of
    # (a moved meeting changes the shares at both places).
    before = [Partition(deps.spec(m) for m in others)]
    if told is not None and told.times != meeting.times:
        before.append(Partition([*(deps.spec(m) for m in others), deps.spec(told)]))
    after = Partition([*(deps.spec(m) for m in others), deps.spec(meeting)])
    own = after.selection.get(meeting.meeting_id)
    telling: list[_Told] = []
    for other in others:
        absorbing = (
            own is not None and other.is_found and not meeting.is_found and _covers(own, other)
        )
        # Its share: which sessions it takes, and the span it is credited for (a later meeting
        # whose window does not reach it still ends its credit at its own window's edge).
        share = _share(after, other.meeting_id)
        if absorbing or any(share != _share(p, other.meeting_id) for p in before):
            telling.append(_Told(other, absorbing, share))
    return telling, own


def nobody_to_tell(deps: Deps, meeting: MeetingRecord, neighbours: Sequence[MeetingRecord]) -> bool:
    """Whether telling the neighbours of a meeting would change nothing, given the code's
    meetings of its neighbourhood (``Deps.neighbours_of``): a new meeting then records them
    told in the request that creates it."""
    others = _others(meeting, neighbours)
    if meeting.attendance_source == "meet" or any(o.attendance_source == "meet" for o in others):
        return False
    telling, _ = _to_tell(deps, meeting, others)
    return not telling


def _others(meeting: MeetingRecord, neighbours: Sequence[MeetingRecord]) -> list[MeetingRecord]:
    return [
        m
        for m in neighbours
        if m.meeting_id != meeting.meeting_id and m.status is not Status.MERGED
    ]


def absorb_and_repoll_neighbours(deps: Deps, meeting: MeetingRecord) -> list[str]:
    """Tell every meeting of the code whose share ``meeting`` changed; absorb found meetings it
    covers. Returns the ids of the meetings asked to re-poll."""
    now = deps.clock()
    told = meeting.as_told()
    # Only the neighbourhoods of its times, old and new: no other share can change.
    around = deps.neighbours_of(meeting, *([] if told is None else [told]))
    others = _others(meeting, deps.store.with_code(meeting.meeting_code, ended=around))
    telling, own = _to_tell(deps, meeting, others)
    repolled: list[str] = []
    for item in telling:
        other, share = item.other, item.share
        if (
            item.absorbing
            and own is not None
            and _merge_if_covered(deps, other, into=meeting, span=own)
        ):
            continue
        _bump(deps, other, absorbed_by=meeting.meeting_id if item.absorbing else None, now=now)
        deps.queue.enqueue(
            CollectTask(other.meeting_id, other.chain_seq, "neighbour"),
            task_id=task_name(other.meeting_id, "neighbour", meeting.meeting_id, *share, own),
            at=now,
        )
        repolled.append(other.meeting_id)
        logs.info("neighbour re-poll requested", neighbour_id=other.meeting_id)
    if meeting.attendance_source == "meet" or any(o.attendance_source == "meet" for o in others):
        # Meet's preliminary attendance follows the new partition too (polls keep it as it is).
        # Imported here: meet_signals declares meetings through functions.declarations, which
        # tells neighbours through this module.
        from functions.meet_signals import reselect_preliminary

        reselect_preliminary(deps, meeting.meeting_code, around)
    return repolled


def _bump(deps: Deps, other: MeetingRecord, *, absorbed_by: str | None, now: datetime) -> None:
    """A new ``span_version`` fences a poll of ``other`` in flight; a found meeting also records
    the declared meeting that takes part of it."""

    def change(current: MeetingRecord) -> MeetingRecord | None:
        if current.status is Status.MERGED:
            return None
        absorbed = current.partly_merged_into
        if absorbed_by is not None and absorbed_by not in absorbed:
            absorbed = (*absorbed, absorbed_by)
        return replace(
            current,
            span_version=current.span_version + 1,
            partly_merged_into=absorbed,
            updated_at=now,
        )

    deps.store.update(other.meeting_id, change)


def _merge_if_covered(deps: Deps, found: MeetingRecord, *, into: MeetingRecord, span: Span) -> bool:
    """Merge ``found`` into ``into`` in one fenced commit when ``span`` (the declared meeting's
    selection) covers every session it holds. False when it does not (or it keeps changing)."""
    for _ in range(_MERGE_ATTEMPTS):
        current = deps.store.read(found.meeting_id)
        if current is None or current.record.status is Status.MERGED:
            return True
        record = current.record
        documents = deps.store.participants(record.meeting_id)
        # Meet's preliminary sessions too: a meet meeting reaching beyond the declared one keeps
        # the rest, as a backfill meeting does (its poll hands over the rest once Reports has it).
        held = [*stored_sessions(documents, record), *preliminary_sessions(documents, record)]
        if not all(span.overlaps(s.join_time, s.leave_time) for s in held):
            return False
        now = deps.clock()
        merged = replace(
            record,
            status=Status.MERGED,
            merged_into=into.meeting_id,
            next_poll_at=None,
            updated_at=now,
        )
        commit = MeetingCommit(
            meeting=merged,
            expected=current.version,
            status_updates=tuple(
                sorted(participant_doc_id(str(d["participant_key"])) for d in documents)
            ),
            settle=carrying_landed_token(documents, record),
        )
        if deps.store.commit(commit) is not None:
            with logs.bind(meeting_id=record.meeting_id):
                logs.info("backfill meeting merged", merged_into=into.meeting_id)
            return True
    return False
