"""What a caller already read of a code's meetings, standing in for a declaration's own read
(``functions.declarations``): the backfill reads the meetings of many codes at once, then
declares a found meeting per conference nobody announced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from functions.intervals import Bounds
from functions.model import MeetingRecord
from functions.ports import DeclarationFacts, DeclarationReads

__all__ = ["KnownMeetings", "known_facts"]


@dataclass(frozen=True, slots=True)
class KnownMeetings:
    """A caller's read of a code's meetings (``MeetingStore.with_code``), kept up to date with
    what it wrote since: what a found meeting's declaration would otherwise read again."""

    meeting_code: str
    ended: Bounds
    meetings: Sequence[MeetingRecord]


def known_facts(reads: DeclarationReads, known: KnownMeetings) -> DeclarationFacts | None:
    """The answers ``known`` already holds, or None when the store must be asked.

    Only for a declaration that asks for nothing but its meetings and its neighbours (a found
    meeting's), when ``known`` is of its code and covers its neighbourhood, and holds none of the
    meetings it may name (those are read for their version). That none is stored is then not
    read but left to the create's precondition: one outside ``known`` fails it, and the
    declaration goes on as for a duplicate. The neighbours are as fresh as ``known``: one
    declared since is missed as one declared between the read and the create would be, and is
    as harmless, both being new: each one's polls plan with the partition they then find."""
    asks_more = (
        reads.webhook_id is not None
        or bool(reads.erasure_names)
        or reads.any_erasure
        or reads.alias is not None
        or reads.calendar_event_id is not None
    )
    covered = known.ended.holds(reads.neighbours.start) and known.ended.holds(reads.neighbours.end)
    names = set(reads.meeting_ids)
    if asks_more or not covered or known.meeting_code != reads.meeting_code:
        return None
    if any(m.meeting_id in names for m in known.meetings):
        return None
    return DeclarationFacts(
        meetings={},
        delivery=None,
        erased=frozenset(),
        any_erasure=False,
        neighbours=[m for m in known.meetings if reads.neighbours.holds(m.ended_at)],
        aliased=[],
        by_event=[],
    )
