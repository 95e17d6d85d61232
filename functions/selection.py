"""Pure selection of a meeting's sessions (docs/rules.md "Which sessions belong to a meeting").

Timeline of one code, meetings ordered by ``ended_at`` (ties: ``meeting_id``)::

    E: [declared start - before ··· ended_at + after]        window of E
    L:                   [declared start - before ··· ended_at + after]
                  credited E ──────────▶|◀────────── credited L
                                  boundary = midpoint(E.ended_at, L.started_at)

- Windows overlap → one boundary: the midpoint of ``E.ended_at`` and ``L.started_at``
  (``E.ended_at`` when L has no ``started_at``).
- Windows do not overlap → no boundary; each side stays open towards the other, but what is
  credited there stops at the meeting's own window edge. Otherwise a session that starts in E's
  window and ends in L's would be credited to both; the gap between the windows, far from both
  classes, is credited to neither. Windows a Meet call's length (24 h) apart or more are not
  neighbours at all: no session reaches both, and each is open towards the other.
- No meeting on a side → open on that side: overtime and early arrivals are not clipped.
- ``merged`` meetings take no part and get no sessions.
- Meetings *found* from their sessions (backfill) are not declarations of class boundaries: they
  partition time among themselves the same way, but never take from a declared meeting. A session
  that overlaps a declared meeting's ``window ∩ credited span`` belongs to the declared meeting
  only; a found meeting takes the rest. So a declared meeting that arrives later absorbs what it
  covers of a found one, and the found one keeps what it does not.

Credited spans are half-open ``[lo, hi)`` with ``lo₀ ≤ hi₀ ≤ lo₁ ≤ hi₁ ≤ …`` enforced while they
are built, so no instant (hence no second of a session) is ever credited twice, whatever the
declared times are — even inconsistent ones (a later class declared to start before an earlier one).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.attendance import Meeting, Session, build_meeting
from functions.duplicates import dedupe_key
from functions.intervals import Bounds, Span
from functions.limits import (
    DEFAULT_DECLARED_LENGTH,
    MAX_DECLARED_LENGTH,
    MEET_CALL_LIMIT,
    REPORTS_RETENTION,
    WINDOW_AFTER_S,
    WINDOW_BEFORE_S,
)
from functions.meeting_codes import canonical_meeting_code
from functions.timestamps import from_ms, to_ms

__all__ = [
    "MeetingSelection",
    "MeetingSpec",
    "Partition",
    "credited_spans",
    "declared_start",
    "declared_window",
    "neighbourhood",
    "neighbourhood_of_time",
    "reports_query_end",
    "reports_query_start",
    "select_meetings",
    "selection_span",
    "selection_spans",
]

#: Reports refuses a startTime older than its retention; a query keeps an hour clear of that edge
#: so that the clocks of this function and of Google never disagree about it.
_RETENTION_MARGIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingSpec:
    """What selection needs to know about one meeting."""

    meeting_id: str
    meeting_code: str
    ended_at: datetime
    started_at: datetime | None = None
    merged: bool = False
    found: bool = False
    window_before_s: int = WINDOW_BEFORE_S
    window_after_s: int = WINDOW_AFTER_S
    calendar_event_id: str | None = None
    organizer_email: str | None = None

    @property
    def code(self) -> str:
        return canonical_meeting_code(self.meeting_code)

    @property
    def declared_start(self) -> datetime:
        return declared_start(ended_at=self.ended_at, started_at=self.started_at)

    @property
    def window(self) -> Span:
        return Span(*_window_bounds(self))


@dataclass(frozen=True, slots=True)
class MeetingSelection:
    """One meeting's share: its credited span, what it selects, and the clipped aggregates.

    ``clip`` is the credited span, or ``None`` when it is open on both sides (nothing clipped).
    ``sessions`` keep their real join and leave times; ``meeting`` is computed on clipped intervals.
    """

    meeting_id: str
    window: Span
    credited: Span
    clip: Span | None
    sessions: tuple[Session, ...]
    meeting: Meeting

    @property
    def selection_span(self) -> Span:
        return selection_span(self.window, self.credited)


def selection_span(window: Span, credited: Span) -> Span:
    """``window ∩ credited span``: a session belongs to the meeting when it overlaps this."""
    return window.intersection(credited)


def _ordered(meetings: Iterable[MeetingSpec]) -> list[MeetingSpec]:
    # By ended_at (docs/cli.md); meetings ending together by their start, the earlier first, so
    # the one that starts later cuts into the tail of the other's window, not into its whole
    # (with zero windows, a zero-length declaration ordered first took all of the other's time).
    return sorted(meetings, key=lambda m: (m.ended_at, m.declared_start, m.meeting_id))


def declared_start(*, ended_at: datetime, started_at: datetime | None) -> datetime:
    """``started_at``, or ``ended_at - 4 h`` for a declaration without one."""
    return started_at if started_at is not None else ended_at - DEFAULT_DECLARED_LENGTH


def declared_window(
    *, ended_at: datetime, started_at: datetime | None, before_s: int, after_s: int
) -> tuple[datetime, datetime]:
    """``[declared start - WINDOW_BEFORE_S, ended_at + WINDOW_AFTER_S]``."""
    return (
        declared_start(ended_at=ended_at, started_at=started_at) - timedelta(seconds=before_s),
        ended_at + timedelta(seconds=after_s),
    )


def _window_bounds(meeting: MeetingSpec) -> tuple[datetime, datetime]:
    return declared_window(
        ended_at=meeting.ended_at,
        started_at=meeting.started_at,
        before_s=meeting.window_before_s,
        after_s=meeting.window_after_s,
    )


def _cut(earlier: MeetingSpec, later: MeetingSpec) -> tuple[datetime, datetime] | None:
    """(where ``earlier``'s credit ends, where ``later``'s begins) for consecutive meetings; None
    when they are not neighbours: their windows are a Meet call's length apart or more."""
    earlier_start, earlier_end = _window_bounds(earlier)
    later_start, later_end = _window_bounds(later)
    if earlier_end > later_start and later_end > earlier_start:
        if later.started_at is None:
            boundary = earlier.ended_at
        else:
            # Integer milliseconds: the midpoint is exact to the precision kept everywhere.
            boundary = from_ms((to_ms(earlier.ended_at) + to_ms(later.started_at)) // 2)
        return boundary, boundary
    if later_start - earlier_end >= MEET_CALL_LIMIT:
        # No session reaches from one window into the other (a call lasts at most 24 h), so
        # neither needs clipping towards the other: each is open there, as with no meeting at
        # all. This is what keeps a meeting's share independent of its code's far history
        # (docs/rules.md "Bounded"): ``neighbourhood`` is all it depends on.
        return None
    return earlier_end, later_start


def _spans_for_code(meetings: Sequence[MeetingSpec]) -> dict[str, Span]:
    ordered = _ordered(m for m in meetings if not m.merged)
    result: dict[str, Span] = {}
    lower: datetime | None = None
    for index, meeting in enumerate(ordered):
        upper: datetime | None = None
        next_lower: datetime | None = None
        cut = _cut(meeting, ordered[index + 1]) if index + 1 < len(ordered) else None
        if cut is not None:
            upper, next_lower = cut
            if lower is not None and upper < lower:
                upper = lower
            next_lower = max(next_lower, upper)
        result[meeting.meeting_id] = Span(lower, upper)
        lower = next_lower
    return result


def neighbourhood(meeting: MeetingSpec) -> Bounds:
    """The ``ended_at`` range of the meetings of the code that can change ``meeting``'s share,
    or whose share it can change (docs/rules.md "Bounded"): the store reads only these.

    Its neighbours are the meetings whose windows come within a Meet call of its window; a
    boundary that inconsistent declarations push forward carries over to the following meetings,
    but never further than ``ended_at + WINDOW_AFTER_S + half a declared length`` from where it
    began (every cut lies within that of its earlier meeting's ``ended_at``). The range holds
    those with a margin of the same size on each side; a property test checks it.
    """
    start, end = _window_bounds(meeting)
    reach = _reach(meeting.window_before_s, meeting.window_after_s)
    return Bounds(start - 2 * reach, end + 2 * reach)


def neighbourhood_of_time(
    start: datetime, end: datetime, *, window_before_s: int, window_after_s: int
) -> Bounds:
    """The ``ended_at`` range of every meeting whose share can matter to what happened between
    ``start`` and ``end`` (a conference, a backfill's sessions): the neighbourhoods of all the
    meetings whose windows can overlap that time."""
    reach = _reach(window_before_s, window_after_s)
    return Bounds(start - 3 * reach, end + 3 * reach)


def _reach(window_before_s: int, window_after_s: int) -> timedelta:
    # A window is at most a declared length plus its margins; a session at most a call long.
    margins = timedelta(seconds=window_before_s + window_after_s)
    return MEET_CALL_LIMIT + MAX_DECLARED_LENGTH + margins


def credited_spans(meetings: Iterable[MeetingSpec]) -> dict[str, Span]:
    """The credited span of every non-merged meeting, partitioning time per meeting code (declared
    meetings among themselves, found meetings among themselves)."""
    by_code: dict[tuple[str, bool], list[MeetingSpec]] = {}
    for meeting in meetings:
        by_code.setdefault((meeting.code, meeting.found), []).append(meeting)
    spans: dict[str, Span] = {}
    for group in by_code.values():
        spans.update(_spans_for_code(group))
    return spans


class Partition:
    """Who takes a session, for the meetings of one or more codes: the rule of the module
    docstring, decided once per set of meetings (polls, the backfill's scan and declarations ask
    it many times)."""

    def __init__(self, meetings: Iterable[MeetingSpec]) -> None:
        self.specs = list(meetings)
        self.credited = credited_spans(self.specs)
        self.selection = {
            spec.meeting_id: selection_span(spec.window, self.credited[spec.meeting_id])
            for spec in self.specs
            if spec.meeting_id in self.credited
        }
        self._declared: dict[str, list[Span]] = {}
        self._by_code: dict[str, list[MeetingSpec]] = {}
        for spec in self.specs:
            if spec.meeting_id in self.selection:
                self._by_code.setdefault(spec.code, []).append(spec)
                if not spec.found:
                    self._declared.setdefault(spec.code, []).append(self.selection[spec.meeting_id])

    def takes(self, spec: MeetingSpec, join: datetime, leave: datetime) -> bool:
        """Whether ``spec``'s meeting takes the session ``[join, leave)`` of its code."""
        span = self.selection.get(spec.meeting_id)
        if span is None or not span.overlaps(join, leave):
            return False
        return not spec.found or not any(
            declared.overlaps(join, leave) for declared in self._declared.get(spec.code, ())
        )

    def takers(self, code: str, join: datetime, leave: datetime) -> list[str]:
        """The meetings of ``code`` that take the session (none: it belongs to no meeting)."""
        return [
            spec.meeting_id
            for spec in self._by_code.get(canonical_meeting_code(code), ())
            if self.takes(spec, join, leave)
        ]

    def lacking_takers(
        self,
        code: str,
        sessions: Iterable[Session],
        *,
        taken_here: Collection[tuple[str, str]],
        held: Mapping[str, Collection[tuple[str, str]]],
    ) -> set[str]:
        """The other meetings that take one of ``sessions`` the reader does not take
        (``taken_here``) and do not hold it (``held``: the dedupe keys of those whose documents
        were read; one whose were not may lack it): Reports showed it after their last poll
        (their chain may be over), and their own query finds it."""
        return {
            taker
            for key, session in ((dedupe_key(s), s) for s in sessions)
            if key not in taken_here
            for taker in self.takers(code, session.join_time, session.leave_time)
            if key not in held.get(taker, ())
        }


def selection_spans(meetings: Iterable[MeetingSpec]) -> dict[str, Span]:
    """The selection span (``window ∩ credited span``) of every non-merged meeting."""
    return Partition(meetings).selection


def select_meetings(
    meetings: Iterable[MeetingSpec], sessions: Iterable[Session]
) -> dict[str, MeetingSelection]:
    """Each non-merged meeting's sessions and clipped aggregates.

    ``meetings`` should hold every meeting of the codes involved (neighbours decide the spans);
    ``sessions`` are de-duplicated sessions (any codes; each meeting takes those of its own code).
    """
    partition = Partition(meetings)
    by_code: dict[str, list[Session]] = {}
    for session in sessions:
        if session.meeting_code is not None:
            by_code.setdefault(canonical_meeting_code(session.meeting_code), []).append(session)
    selections: dict[str, MeetingSelection] = {}
    for spec in partition.specs:
        if spec.meeting_id not in partition.selection:
            continue
        credited = partition.credited[spec.meeting_id]
        chosen = tuple(
            s
            for s in by_code.get(spec.code, ())
            if partition.takes(spec, s.join_time, s.leave_time)
        )
        clip = None if credited.is_open() else credited
        meeting = build_meeting(
            chosen,
            clip=clip,
            meeting_code=spec.code,
            calendar_event_id=spec.calendar_event_id,
            organizer_email=spec.organizer_email,
        )
        selections[spec.meeting_id] = MeetingSelection(
            meeting_id=spec.meeting_id,
            window=spec.window,
            credited=credited,
            clip=clip,
            sessions=chosen,
            meeting=meeting,
        )
    return selections


def reports_query_start(selected: Span, *, now: datetime) -> datetime:
    """The ``startTime`` of a meeting's Reports query: the earliest leave time (``id.time``) a
    session overlapping its selection span can have, but never in the future and never beyond
    Reports' retention, which the API refuses.

    Its end is not ``ended_at``: a participant who stays past it leaves later
    (:func:`reports_query_end`).
    """
    start = selected.start if selected.start is not None else now
    return max(min(start, now), now - REPORTS_RETENTION + _RETENTION_MARGIN)


def reports_query_end(meeting: MeetingSpec) -> datetime:
    """The latest ``endTime`` of a meeting's Reports query (docs/rules.md "Bounded"): a session
    overlapping its window leaves within a Meet call's length of the window's end. The query
    asks for no later than now."""
    return _window_bounds(meeting)[1] + MEET_CALL_LIMIT
