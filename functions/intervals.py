"""Intervals of time: half-open spans, clipping, and the length of a union (docs/firestore.md
``attended_seconds``: two devices at once count once, rounded to the nearest second, half up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

__all__ = [
    "Bounds",
    "Interval",
    "Span",
    "attended_seconds",
    "clipped",
    "round_ms_to_seconds",
    "union_duration",
]

Interval = tuple[datetime, datetime]

_MS: Final = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Bounds:
    """A closed range of instants, bounded on both sides: what a bounded read asks for."""

    start: datetime
    end: datetime

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def joined(self, other: Bounds) -> Bounds:
        """The smallest range holding both."""
        return Bounds(min(self.start, other.start), max(self.end, other.end))


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open interval ``[start, end)``; ``None`` is open on that side.

    Half-open spans make partitions exact: a boundary second belongs to the later span only.
    """

    start: datetime | None = None
    end: datetime | None = None

    def intersection(self, other: Span) -> Span:
        return Span(_later(self.start, other.start), _earlier(self.end, other.end))

    def is_empty(self) -> bool:
        return self.start is not None and self.end is not None and self.end <= self.start

    def is_open(self) -> bool:
        """Open on both sides: clipping to it changes nothing."""
        return self.start is None and self.end is None

    def overlaps(self, join: datetime, leave: datetime) -> bool:
        """Whether ``[join, leave)`` shares time with the span.

        A zero-length session at instant t overlaps when ``start <= t < end``, so it lands in
        exactly one of two adjacent spans.
        """
        if self.is_empty():
            return False
        if join == leave:
            return (self.start is None or self.start <= join) and (
                self.end is None or join < self.end
            )
        return (self.start is None or leave > self.start) and (self.end is None or join < self.end)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def clipped(intervals: Iterable[Interval], span: Span | None) -> list[Interval]:
    """Intervals cut to ``span`` (an interval outside it shrinks to zero length at its edge)."""
    if span is None or span.is_open():
        return list(intervals)
    lo, hi = span.start, span.end
    clipped = []
    for join, leave in intervals:
        if lo is not None:
            join, leave = max(join, lo), max(leave, lo)
        if hi is not None:
            join, leave = min(join, hi), min(leave, hi)
        clipped.append((join, leave))
    return clipped


def union_duration(intervals: Iterable[Interval]) -> timedelta:
    """Length of the union of ``[start, end)`` intervals: two devices at once count once."""
    total = timedelta(0)
    ordered = sorted(intervals)
    if not ordered:
        return total
    current_start, current_end = ordered[0]
    for start, end in ordered[1:]:
        if start > current_end:
            total += current_end - current_start
            current_start, current_end = start, end
        elif end > current_end:
            current_end = end
    return total + (current_end - current_start)


def round_ms_to_seconds(ms: int) -> int:
    """Whole seconds, half up: 1500 ms → 2 s, 1499 ms → 1 s."""
    return (ms + 500) // 1000


def attended_seconds(intervals: Iterable[Interval]) -> int:
    """The union's length in whole seconds, rounded half up."""
    return round_ms_to_seconds(union_duration(intervals) // _MS)
