"""What a meeting declared again changes of the stored one besides its expected participants:
its names (aliases, a Calendar event that came back, the invitees' answers) and its times
(docs/rules.md "Which times win"). Pure: ``functions.declarations`` applies them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from functions.model import FOUND_SOURCES, TIMES_RANK, MeetingRecord, Source

__all__ = ["new_times", "renamed"]


def renamed(
    current: MeetingRecord, declared: MeetingRecord, *, source: Source
) -> MeetingRecord | None:
    """What a repeated declaration changes besides times: a new alias, a Calendar event that came
    back (``cancelled_at`` cleared), new answers of the invitees. None when nothing."""
    aliases = (*current.aliases, *(a for a in declared.aliases if a not in current.aliases))
    cancelled_at = None if source == "calendar" else current.cancelled_at
    rsvps = declared.rsvps if source == "calendar" else current.rsvps
    if (aliases, cancelled_at, rsvps) == (current.aliases, current.cancelled_at, current.rsvps):
        return None
    return replace(current, aliases=aliases, cancelled_at=cancelled_at, rsvps=rsvps)


def new_times(
    current: MeetingRecord, declared: MeetingRecord, *, source: Source
) -> tuple[datetime | None, datetime] | None:
    """The times a repeated declaration sets, or None when they stay."""
    if current.is_found:
        # A found meeting grows to cover its conference as more of it is found; it never shrinks
        # here (a declared meeting taking part of it is the poll's business).
        start = min(filter(None, (current.started_at, declared.started_at)), default=None)
        end = max(current.ended_at, declared.ended_at)
        grown = (start, end)
        return grown if grown != (current.started_at, current.ended_at) else None
    if source in FOUND_SOURCES:
        return None
    # docs/rules.md "Which times win": a lower-ranking source never moves them.
    if TIMES_RANK[source] < TIMES_RANK[current.times_source or current.source]:
        return None
    same = (current.started_at, current.ended_at) == (declared.started_at, declared.ended_at)
    return None if same else (declared.started_at, declared.ended_at)
