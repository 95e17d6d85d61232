"""The timeline layout (``functions.timeline``) and its terminal drawing (``show --timeline``).

The snapshot of the terminal drawing lives in ``tests/unit/snapshots/timeline_show.txt`` and is
compared exactly. After a deliberate change to the drawing, regenerate it with::

    UPDATE_SNAPSHOTS=1 python -m pytest tests/unit/test_timeline.py -k snapshot

and review the diff of the file before committing it.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from functions import cli
from functions.cli_report import CREDITED_BAR, MARK, OUTSIDE_BAR, render_timeline, show_timeline
from functions.declarations import accept_meeting_end
from functions.intervals import Span
from functions.model import Declared, MeetingRecord
from functions.polling import poll_meeting
from functions.ports import Deps
from functions.schedule import Status
from functions.timeline import (
    axis_bounds,
    bars,
    columns,
    credited_span,
    meeting_timeline,
    position,
    ticks,
)
from functions.views import sorted_participants
from local.simulate import Stay, activities_for
from tests.fakes import ManualClock, MemoryQueue, MemoryStore, ScriptedReports

SNAPSHOTS = Path(__file__).parent / "snapshots"
CODE = "abc-defg-hij"
DAY = datetime(2026, 11, 20, tzinfo=UTC)
NOW = DAY + timedelta(hours=14)


def t(hours: int, minutes: float = 0, seconds: float = 0) -> datetime:
    return DAY + timedelta(hours=hours, minutes=minutes, seconds=seconds)


# ------------------------------------------------------------------------------------------------
# A known meeting: two classes of one code, back to back, polled from scripted Reports sessions


@dataclass(frozen=True)
class Known:
    store: MemoryStore
    deps: Deps
    earlier: str
    meeting: str


def known_meeting(*, hostile: bool = False) -> Known:
    """Class B (10:00 to 10:45) after class A (09:00 to 09:45) of one code: their windows
    overlap, so the boundary is the midpoint 09:52:30. In B: a teacher who came early (a session
    across the boundary), Alice twice, Bob for a zero-length session, Dan long after the end;
    Carol was expected and never came."""
    store = MemoryStore()
    reports = ScriptedReports()
    deps = Deps(store=store, queue=MemoryQueue(), reports=reports, clock=ManualClock(NOW))
    names = (
        {"alice": '"><img src=x onerror=alert(1)>', "bob": "<script>alert('bob')</script>"}
        if hostile
        else {"alice": "Alice Liddell", "bob": "Bob"}
    )
    stays = [
        Stay("teacher@school.example", t(9, 40), t(10, 50), display_name="Ms Teacher"),
        Stay("alice@school.example", t(10, 2), t(10, 20), display_name=names["alice"]),
        Stay("alice@school.example", t(10, 25), t(10, 44), display_name=names["alice"]),
        Stay("bob@school.example", t(10, 30), t(10, 30), display_name=names["bob"]),
        Stay("dan@school.example", t(11, 30), t(11, 35), display_name="Dan"),
        Stay("early@school.example", t(9, 5), t(9, 40), display_name="Early"),
    ]
    reports.activities[:] = activities_for(stays, meeting_code=CODE, conference_id="conf-one")
    ids = []
    for start, end, expected in (
        (t(9), t(9, 45), ("early@school.example",)),
        (
            t(10),
            t(10, 45),
            (
                "teacher@school.example",
                "alice@school.example",
                "bob@school.example",
                "carol@school.example",
            ),
        ),
    ):
        declared = Declared(
            meeting_code=CODE, started_at=start, ended_at=end, expected_participants=expected
        )
        ids.append(accept_meeting_end(deps, declared, source="manual").meeting.meeting_id)
    for meeting_id in ids:
        poll_meeting(deps, meeting_id, reason="manual")
    # Reports then shows Bob back for five minutes; the chains poll on until both settle.
    stays.append(Stay("bob@school.example", t(10, 35), t(10, 40), display_name=names["bob"]))
    reports.activities[:] = activities_for(stays, meeting_code=CODE, conference_id="conf-one")
    clock = deps.clock
    assert isinstance(clock, ManualClock)
    for _ in range(10):
        pending = [m for m in map(store.get, ids) if m is not None and not m.is_final]
        if not pending:
            break
        clock.now = max(clock.now, min(m.next_poll_at or clock.now for m in pending))
        for record in pending:
            poll_meeting(deps, record.meeting_id, reason="poll", seq=record.chain_seq)
    assert all(m is not None and m.status is Status.COMPLETE for m in map(store.get, ids))
    return Known(store=store, deps=deps, earlier=ids[0], meeting=ids[1])


def _record(store: MemoryStore, meeting_id: str) -> MeetingRecord:
    record = store.get(meeting_id)
    assert record is not None
    return record


def drawn(known: Known, *, width: int = 120) -> str:
    meeting = _record(known.store, known.meeting)
    documents = sorted_participants(known.store, meeting)
    text = show_timeline(known.store, meeting, documents, width=width)
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, soft_wrap=False).print(text)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------
# Tables


@pytest.mark.parametrize(
    ("start", "end", "width", "expected"),
    [
        (0.0, 1.0, 10, (0, 10)),
        (0.0, 0.0, 10, (0, 1)),  # zero length at the start: one column
        (1.0, 1.0, 10, (9, 10)),  # zero length at the end: the last column, not past it
        (0.3, 0.3, 10, (3, 4)),
        (0.3, 0.5, 10, (3, 5)),  # 0.3 * 10 is 3.0000000000000004: not column 4
        (0.25, 0.26, 10, (2, 3)),
        (0.5, 0.4, 10, (5, 6)),  # an end before the start is the start
        (-0.5, 2.0, 4, (0, 4)),  # clamped to the track
        (0.99, 1.0, 3, (2, 3)),
    ],
)
def test_columns(start: float, end: float, width: int, expected: tuple[int, int]) -> None:
    assert columns(start, end, width) == expected


def test_a_track_has_a_column_at_least() -> None:
    with pytest.raises(ValueError, match="one column"):
        columns(0.0, 1.0, 0)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [(t(10), 0.0), (t(10, 30), 0.5), (t(11), 1.0), (t(9), 0.0), (t(12), 1.0), (t(10, 15), 0.25)],
)
def test_position_is_a_clamped_fraction(moment: datetime, expected: float) -> None:
    assert position(moment, t(10), t(11)) == expected


@pytest.mark.parametrize(
    ("window", "sessions", "expected"),
    [
        ((t(10), t(11)), [], (t(10), t(11))),
        ((t(10), t(11)), [(t(9, 50), t(10, 5))], (t(9, 50), t(11))),  # early arrival
        ((t(10), t(11)), [(t(10, 5), t(11, 30))], (t(10), t(11, 30))),  # overtime
        ((t(10), t(10)), [], (t(10), t(10, 1))),  # no length: a minute
        ((t(10), t(10)), [(t(10), t(10))], (t(10), t(10, 1))),
    ],
)
def test_the_axis_holds_the_window_and_every_session(
    window: tuple[datetime, datetime],
    sessions: list[tuple[datetime, datetime]],
    expected: tuple[datetime, datetime],
) -> None:
    assert axis_bounds(*window, sessions) == expected


def test_bars_are_ordered_by_join_and_a_backwards_session_is_a_point() -> None:
    laid = bars([(t(10, 30), t(10, 45)), (t(10), t(10, 15)), (t(10, 50), t(10, 40))], t(10), t(11))
    assert [(b.start, b.end) for b in laid] == [(0.0, 0.25), (0.5, 0.75), (50 / 60, 50 / 60)]
    assert laid[2].join == laid[2].leave == t(10, 50)


def test_ticks_are_round_wall_clock_times_of_the_zone() -> None:
    from zoneinfo import ZoneInfo

    # An hour in at most 4 ticks: every 15 minutes (every 10 would be 6).
    found = ticks(t(10, 7), t(11, 7), zone=UTC, target=4)
    assert [m for m, _ in found] == [t(10, 15), t(10, 30), t(10, 45), t(11)]
    assert len(ticks(t(10, 7), t(11, 7), zone=UTC, target=6)) == 6
    assert found[0][1] == pytest.approx(8 / 60)
    # Kolkata is UTC+05:30: its round hours are half past in UTC.
    kolkata = ticks(t(10), t(13), zone=ZoneInfo("Asia/Kolkata"), target=4)
    assert [m for m, _ in kolkata] == [t(10, 30), t(11, 30), t(12, 30)]


# ------------------------------------------------------------------------------------------------
# The credited span


def test_a_meeting_alone_credits_its_whole_window() -> None:
    known = known_meeting()
    meeting = _record(known.store, known.meeting)
    credited = credited_span(meeting, [meeting])
    assert credited.span == Span(meeting.window_start, meeting.window_end)
    assert (credited.cut_before_by, credited.cut_after_by) == (None, None)


def test_an_earlier_neighbour_cuts_the_credited_span_at_the_midpoint() -> None:
    known = known_meeting()
    meeting, earlier = _record(known.store, known.meeting), _record(known.store, known.earlier)
    credited = credited_span(meeting, [earlier, meeting])
    # Midpoint of A's end (09:45) and B's start (10:00); B's window runs to 10:45 + 1 h.
    assert credited.span == Span(t(9, 52, 30), t(11, 45))
    assert (credited.cut_before_by, credited.cut_after_by) == (known.earlier, None)
    before = credited_span(earlier, [earlier, meeting])
    assert before.span == Span(earlier.window_start, t(9, 52, 30))
    assert (before.cut_before_by, before.cut_after_by) == (None, known.meeting)


def test_a_merged_meeting_credits_nothing() -> None:
    known = known_meeting()
    merged = replace(_record(known.store, known.meeting), status=Status.MERGED)
    assert credited_span(merged, [merged]).span.is_empty()


def test_the_layout_of_the_known_meeting() -> None:
    known = known_meeting()
    meeting = _record(known.store, known.meeting)
    documents = sorted_participants(known.store, meeting)
    layout = meeting_timeline(meeting, documents, credited_span(meeting, [meeting]))
    by_key = {row.participant_key: row for row in layout.rows}
    stored = {
        str(d["participant_key"]): [(s["join_time"], s["leave_time"]) for s in d["sessions"]]
        for d in documents
    }
    # One bar per stored session, with the stored times, in join order.
    assert {k: [(b.join, b.leave) for b in r.bars] for k, r in by_key.items()} == {
        k: sorted(v) for k, v in stored.items()
    }
    assert len(by_key["alice@school.example"].bars) == 2
    assert by_key["carol@school.example"].note == "absent"
    assert by_key["carol@school.example"].bars == ()
    # The axis runs from the earliest join to the latest leave or window end.
    joins = [j for v in stored.values() for j, _ in v]
    assert layout.start == min([meeting.window_start, *joins])
    assert layout.end == max(meeting.window_end, t(11, 35))


# ------------------------------------------------------------------------------------------------
# Property: bars stay inside the axis, ordered, one per session, a zero-length one visible

_moments = st.integers(min_value=0, max_value=6 * 3600 * 1000).map(
    lambda ms: DAY + timedelta(milliseconds=ms)
)
_sessions = st.lists(
    st.tuples(_moments, st.integers(min_value=0, max_value=3 * 3600 * 1000)).map(
        lambda pair: (pair[0], pair[0] + timedelta(milliseconds=pair[1]))
    ),
    max_size=12,
)


@given(
    window=st.tuples(_moments, _moments).map(sorted),
    sessions=_sessions,
    width=st.integers(min_value=1, max_value=300),
)
def test_bars_stay_inside_the_axis_ordered_and_visible(
    window: list[datetime], sessions: list[tuple[datetime, datetime]], width: int
) -> None:
    start, end = axis_bounds(window[0], window[1], sessions)
    laid = bars(sessions, start, end)
    assert len(laid) == len(sessions)
    assert sorted((b.join, b.leave) for b in laid) == sorted(sessions)
    assert [b.join for b in laid] == sorted(b.join for b in laid)
    for bar in laid:
        assert 0.0 <= bar.start <= bar.end <= 1.0
        first, stop = bar.columns(width)
        assert 0 <= first < stop <= width  # at least one column, even at zero length
        # The bar's columns hold its start and its end.
        assert first <= bar.start * width + 1e-9
        assert bar.end * width - 1e-9 <= stop
    starts = [b.columns(width)[0] for b in laid]
    assert starts == sorted(starts)


# ------------------------------------------------------------------------------------------------
# The terminal


def test_the_terminal_drawing_of_the_known_meeting_matches_its_snapshot() -> None:
    text = drawn(known_meeting())
    path = SNAPSHOTS / "timeline_show.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        "the drawing changed; if on purpose, regenerate (see this module's docstring)"
    )


def test_the_drawing_shows_each_participant_the_boundary_and_what_is_outside() -> None:
    lines = drawn(known_meeting(), width=120).splitlines()
    rows = {line[:30].strip(): line[31:] for line in lines if "@school." in line[:30]}
    assert len(rows) == 5  # every participant document, absent Carol included
    track = len(lines[0]) - 31
    assert all(len(r) <= track for r in rows.values())
    alice = next(r for k, r in rows.items() if k.startswith("Alice"))
    # Two sessions: two runs of bars with a gap between them.
    assert len([run for run in alice.replace(MARK, " ").split() if CREDITED_BAR in run]) == 2
    # The early class's own participant is not this meeting's.
    assert not any(k.startswith("Early") for k in rows)
    # The teacher came before the boundary: the part before it is not credited here.
    teacher = next(r for k, r in rows.items() if k.startswith("Ms Teacher"))
    assert teacher.index(OUTSIDE_BAR) < teacher.index(CREDITED_BAR)
    assert OUTSIDE_BAR not in teacher[teacher.index(CREDITED_BAR) :]
    bob = next(r for k, r in rows.items() if k.startswith("Bob"))
    # A zero-length session is one column; the five minutes after it a run of their own.
    runs = [run for run in bob.split() if CREDITED_BAR in run]
    assert next(len(run) for run in runs) == 1
    assert len(runs) == 2
    carol = next(r for k, r in rows.items() if k.startswith("carol"))
    assert CREDITED_BAR not in carol
    assert OUTSIDE_BAR not in carol
    assert "absent" in next(k for k in rows if k.startswith("carol"))
    # The boundary: in the rule (line 2) at the column of 09:52:30, and named under the tracks.
    assert lines[1][31:].count(MARK) == 1
    assert any(line.startswith(f"{MARK} 09:52:30 credited from here") for line in lines)


def test_control_characters_of_a_name_never_reach_the_terminal() -> None:
    known = known_meeting()
    meeting = _record(known.store, known.meeting)
    documents = sorted_participants(known.store, meeting)
    documents[0] = {**documents[0], "display_name": "evil\x1b[2J\x07name"}
    text = show_timeline(known.store, meeting, documents, width=100).plain
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "evil\N{REPLACEMENT CHARACTER}[2J\N{REPLACEMENT CHARACTER}name" in text


def test_show_timeline_prints_the_drawing_after_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_meeting()
    monkeypatch.setattr(cli, "operator_store", lambda: known.store)
    result = CliRunner().invoke(cli.cli, ["show", known.meeting, "--timeline"])
    assert result.exit_code == 0, result.output
    # The drawing, at the CLI's width of 140 columns, follows the meeting and participant tables.
    assert result.output.endswith(drawn(known, width=140))
    assert f"Meeting {known.meeting}" in result.output.split(MARK)[0]


def test_show_without_timeline_draws_none(monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_meeting()
    monkeypatch.setattr(cli, "operator_store", lambda: known.store)
    result = CliRunner().invoke(cli.cli, ["show", known.meeting])
    assert result.exit_code == 0, result.output
    assert CREDITED_BAR not in result.output


def test_show_refuses_json_with_timeline() -> None:
    result = CliRunner().invoke(cli.cli, ["show", "m-1", "--json", "--timeline"])
    assert result.exit_code == 2
    assert result.output.strip() == "show: give --json or --timeline, not both"


def test_render_timeline_is_a_plain_function_of_the_layout() -> None:
    known = known_meeting()
    meeting = _record(known.store, known.meeting)
    documents = sorted_participants(known.store, meeting)
    layout = meeting_timeline(meeting, documents, credited_span(meeting, [meeting]))
    lines = render_timeline(layout, width=90).plain.splitlines()
    assert lines == render_timeline(layout, width=90).plain.splitlines()
    assert all(len(line) <= 90 for line in lines)
    # No neighbour: no boundary in the rule, none named (the legend still explains the glyph).
    assert MARK not in lines[1]
    assert not any(re.match(rf"{MARK} \d\d:\d\d:\d\d ", line) for line in lines)
