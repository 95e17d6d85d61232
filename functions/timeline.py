"""A meeting's timeline, laid out: every participant's sessions as bars on one time axis.

Pure: stored records in, positions out. The terminal (``show --timeline``, in columns) and the
HTML report (``functions.report_page``, in fractions) draw the same layout, so they never
disagree about where a session or a boundary is.

Time semantics (docs/rules.md "Which sessions belong to a meeting", ``functions.selection``)::

    axis:      [earliest of window start and joins ··························· latest leave]
    window:       [declared start - before ··················· ended_at + after]
    credited:           |◀──── window ∩ credited span ────▶|
                     cut by the earlier                  cut by the later
                     neighbour (a mark)                  neighbour (a mark)

- The credited span is what the meeting may credit: its window after its neighbours' cuts (the
  selection span). Its edges that a neighbour placed are marks, named by that neighbour.
- A bar is one stored session with its real join and leave (not clipped): what lies outside the
  credited span is drawn, and shown as not credited.
- Positions are fractions of the axis, ``0 ≤ start ≤ end ≤ 1``; in columns a bar covers at least
  one column, so a zero-length session stays visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from functions.intervals import Bounds, Span
from functions.model import MeetingRecord
from functions.schedule import Status
from functions.selection import MeetingSpec, Partition, declared_start, neighbourhood

__all__ = [
    "Bar",
    "Credited",
    "Mark",
    "Row",
    "Timeline",
    "axis_bounds",
    "bars",
    "columns",
    "credited_span",
    "meeting_timeline",
    "neighbours_bounds",
    "position",
    "ticks",
]

#: The axis of a meeting with no length at all (no window, no session): a minute, so that
#: fractions stay defined.
_MINIMUM_AXIS: Final = timedelta(minutes=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One session on the axis: its real times, and where it lies (fractions of the axis)."""

    join: datetime
    leave: datetime
    start: float
    end: float

    def columns(self, width: int) -> tuple[int, int]:
        """``[first, stop)`` columns of a track ``width`` columns wide (at least one)."""
        return columns(self.start, self.end, width)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A boundary on the axis: where a neighbour's cut ends or begins this meeting's credit."""

    at: datetime
    position: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One participant: who, a note (absent, estimated, preliminary) and one bar per session."""

    participant_key: str
    label: str
    note: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credited:
    """The credited span (``window ∩ credited span``) and the neighbours that cut it."""

    span: Span
    cut_before_by: str | None = None
    cut_after_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    start: datetime
    end: datetime
    window: Bar
    credited: Bar | None
    marks: tuple[Mark, ...]
    rows: tuple[Row, ...]

    @property
    def session_count(self) -> int:
        return sum(len(row.bars) for row in self.rows)


def axis_bounds(
    window_start: datetime, window_end: datetime, sessions: Iterable[tuple[datetime, datetime]]
) -> tuple[datetime, datetime]:
    """The axis: the window and every session (a session may start before the window, and a
    participant who stays on leaves after it); never shorter than a minute."""
    start, end = window_start, max(window_start, window_end)
    for join, leave in sessions:
        start = min(start, join, leave)
        end = max(end, join, leave)
    if end - start < _MINIMUM_AXIS:
        end = start + _MINIMUM_AXIS
    return start, end


def position(moment: datetime, start: datetime, end: datetime) -> float:
    """Where ``moment`` lies on the axis ``[start, end]``, as a fraction clamped to ``[0, 1]``."""
    length = (end - start).total_seconds()
    if length <= 0:
        return 0.0
    return min(1.0, max(0.0, (moment - start).total_seconds() / length))


def bars(
    sessions: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime
) -> tuple[Bar, ...]:
    """One bar per session, ordered by join then leave; a leave before its join (which stored
    data should never hold) is drawn as a zero-length session at the join."""
    ordered = sorted((join, max(join, leave)) for join, leave in sessions)
    return tuple(
        Bar(
            join=join,
            leave=leave,
            start=position(join, start, end),
            end=position(leave, start, end),
        )
        for join, leave in ordered
    )


def columns(start: float, end: float, width: int) -> tuple[int, int]:
    """``[first, stop)``: the columns a bar from ``start`` to ``end`` (fractions) covers in a
    track of ``width`` columns; at least one, so a zero-length bar is seen."""
    if width < 1:
        raise ValueError("a track is at least one column wide")
    start, end = min(1.0, max(0.0, start)), min(1.0, max(0.0, end))
    # Rounded first: 0.3 * 10 is 3.0000000000000004, which must not spill into column 4.
    first = min(width - 1, math.floor(round(start * width, 9)))
    stop = min(width, math.ceil(round(max(start, end) * width, 9)))
    return first, max(first + 1, stop)


#: Tick steps, in minutes: the first that gives at most ``target`` ticks is used.
_STEPS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)


def ticks(
    start: datetime, end: datetime, *, zone: tzinfo, target: int = 8
) -> list[tuple[datetime, float]]:
    """Round wall-clock times of ``zone`` on the axis (``10:00``, ``10:15``…) and where they
    lie: at most ``target`` of them, or every day for an axis longer than that."""
    minutes = max((end - start).total_seconds() / 60, 1.0)
    step = next((s for s in _STEPS if minutes / s <= target), _STEPS[-1])
    local = start.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (local - midnight).total_seconds() / 60
    moment = (midnight + timedelta(minutes=math.ceil(elapsed / step) * step)).astimezone(UTC)
    found = []
    while moment <= end:
        found.append((moment, position(moment, start, end)))
        moment += timedelta(minutes=step)
    return found


# ------------------------------------------------------------------------------------------------
# The credited span, from the meeting and its neighbours


def _spec(meeting: MeetingRecord) -> MeetingSpec:
    """The meeting as selection sees it, with the margins its stored window was built with
    (so a report needs no deployment settings and agrees with what the poll selected)."""
    start = declared_start(ended_at=meeting.ended_at, started_at=meeting.started_at)
    before = max(0, round((start - meeting.window_start).total_seconds()))
    after = max(0, round((meeting.window_end - meeting.ended_at).total_seconds()))
    return meeting.spec(window_before_s=before, window_after_s=after)


def neighbours_bounds(meeting: MeetingRecord) -> Bounds:
    """The ``ended_at`` range of the meetings that can cut ``meeting``'s credited span: what a
    report asks ``MeetingStore.with_code`` for (docs/rules.md "Bounded")."""
    return neighbourhood(_spec(meeting))


def credited_span(meeting: MeetingRecord, neighbours: Iterable[MeetingRecord]) -> Credited:
    """``meeting``'s credited span among ``neighbours`` (the meetings of its code around it,
    as ``MeetingStore.with_code`` returns them; ``meeting`` itself may be among them).

    A merged meeting credits nothing: its span is empty, at its window's start."""
    if meeting.status is Status.MERGED:
        return Credited(span=Span(meeting.window_start, meeting.window_start))
    others = {m.meeting_id: m for m in neighbours if m.meeting_id != meeting.meeting_id}
    specs = [_spec(meeting), *(_spec(m) for m in others.values())]
    partition = Partition(specs)
    own = partition.credited[meeting.meeting_id]
    selected = partition.selection[meeting.meeting_id]
    before = after = None
    group = [
        s
        for s in partition.specs
        if s.meeting_id in others and s.code == specs[0].code and s.found == specs[0].found
    ]
    if own.start is not None:
        earlier = [
            (span.end, s.meeting_id)
            for s in group
            if (span := partition.credited.get(s.meeting_id)) is not None
            and span.end is not None
            and span.end <= own.start
        ]
        before = max(earlier)[1] if earlier else None
    if own.end is not None:
        later = [
            (span.start, s.meeting_id)
            for s in group
            if (span := partition.credited.get(s.meeting_id)) is not None
            and span.start is not None
            and span.start >= own.end
        ]
        after = min(later)[1] if later else None
    return Credited(span=selected, cut_before_by=before, cut_after_by=after)


# ------------------------------------------------------------------------------------------------
# The whole timeline


def _sessions_of(document: Mapping[str, Any]) -> list[tuple[datetime, datetime]]:
    found = []
    for session in document.get("sessions") or ():
        join, leave = session.get("join_time"), session.get("leave_time")
        if isinstance(join, datetime) and isinstance(leave, datetime):
            found.append((join, leave))
    return found


def _note(document: Mapping[str, Any]) -> str:
    if document.get("absent"):
        return "absent"
    if document.get("estimated"):
        return "estimated"
    if document.get("preliminary"):
        return "preliminary"
    return ""


def _label(document: Mapping[str, Any]) -> str:
    key = str(document.get("participant_key") or "")
    name = str(document.get("display_name") or "")
    return f"{name} ({key})" if name and name != key else key


def meeting_timeline(
    meeting: MeetingRecord,
    participants: Sequence[Mapping[str, Any]],
    credited: Credited,
) -> Timeline:
    """The layout of a meeting: one row per participant document (in the order given), one bar
    per stored session, the window, the credited span and the neighbours' cuts."""
    sessions = {id(d): _sessions_of(d) for d in participants}
    start, end = axis_bounds(
        meeting.window_start,
        meeting.window_end,
        (s for found in sessions.values() for s in found),
    )
    window = Bar(
        join=meeting.window_start,
        leave=meeting.window_end,
        start=position(meeting.window_start, start, end),
        end=position(meeting.window_end, start, end),
    )
    span = credited.span
    credited_bar = None
    if not span.is_empty():
        lo = span.start if span.start is not None else start
        hi = span.end if span.end is not None else end
        credited_bar = Bar(
            join=lo, leave=hi, start=position(lo, start, end), end=position(hi, start, end)
        )
    marks = []
    for moment, by, side in (
        (span.start, credited.cut_before_by, "from"),
        (span.end, credited.cut_after_by, "until"),
    ):
        if moment is not None and by is not None:
            label = f"credited {side} here (neighbour {by})"
            marks.append(Mark(at=moment, position=position(moment, start, end), label=label))
    rows = tuple(
        Row(
            participant_key=str(d.get("participant_key") or ""),
            label=_label(d),
            note=_note(d),
            bars=bars(sessions[id(d)], start, end),
        )
        for d in participants
    )
    return Timeline(
        start=start,
        end=end,
        window=window,
        credited=credited_bar,
        marks=tuple(marks),
        rows=rows,
    )
