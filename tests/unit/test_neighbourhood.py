"""docs/rules.md "Bounded": a meeting's share depends only on the meetings of its code whose
``ended_at`` lies in its ``neighbourhood`` — the store reads only those, so a code's far history
never changes (or costs) a poll or a webhook."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.attendance import Session
from functions.model import MeetingRecord
from functions.polling import poll_meeting
from functions.selection import MeetingSpec, Partition, neighbourhood, select_meetings
from tests.unit.factories import at, session
from tests.unit.test_use_cases import CODE as ROOM
from tests.unit.test_use_cases import END, START, World

CODE = "abc-defg-hij"
DAY = 24 * 60  # minutes


@st.composite
def meetings(draw: st.DrawFn) -> list[MeetingSpec]:
    before = draw(st.sampled_from([0, 900, 3600, 6 * 3600]))
    after = draw(st.sampled_from([0, 900, 3600, 6 * 3600]))
    count = draw(st.integers(min_value=1, max_value=9))
    specs = []
    for index in range(count):
        # Over ten days: dense enough that neighbours interact, and far ones exist.
        ended = draw(st.integers(min_value=0, max_value=10 * DAY))
        length = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=DAY)))
        specs.append(
            MeetingSpec(
                meeting_id=f"m{index}",
                meeting_code=CODE,
                ended_at=at(ended),
                started_at=None if length is None else at(ended - length),
                merged=draw(st.integers(0, 9)) == 0,
                found=draw(st.booleans()),
                window_before_s=before,
                window_after_s=after,
            )
        )
    return specs


@st.composite
def sessions(draw: st.DrawFn) -> list[Session]:
    drawn = []
    for index in range(draw(st.integers(min_value=0, max_value=12))):
        join = draw(st.integers(min_value=-DAY, max_value=11 * DAY))
        length = draw(st.integers(min_value=0, max_value=DAY))  # a call lasts at most 24 h
        drawn.append(
            session(
                at(join),
                at(join + length),
                key=f"p{index % 4}@school.example",
                endpoint_id=f"e{index}",
                qualifier=str(index),
            )
        )
    return drawn


def near(meeting: MeetingSpec, specs: list[MeetingSpec]) -> list[MeetingSpec]:
    return [m for m in specs if neighbourhood(meeting).holds(m.ended_at)]


@settings(max_examples=600, deadline=None)
@given(specs=meetings(), drawn=sessions())
def test_a_share_computed_from_the_neighbourhood_is_the_share_computed_from_everything(
    specs: list[MeetingSpec], drawn: list[Session]
) -> None:
    everything = select_meetings(specs, drawn)
    for meeting in specs:
        if meeting.merged:
            continue
        bounded = select_meetings(near(meeting, specs), drawn)
        assert bounded[meeting.meeting_id] == everything[meeting.meeting_id], meeting.meeting_id


@settings(max_examples=300, deadline=None)
@given(specs=meetings())
def test_a_new_meeting_changes_no_share_outside_its_neighbourhood(
    specs: list[MeetingSpec],
) -> None:
    # What a webhook relies on when it tells only the neighbours it read.
    *others, new = specs
    before, after = Partition(others), Partition(specs)
    for other in others:
        if neighbourhood(new).holds(other.ended_at) or other.merged:
            continue
        assert before.selection.get(other.meeting_id) == after.selection.get(other.meeting_id)
        assert before.credited.get(other.meeting_id) == after.credited.get(other.meeting_id)


def a_room_with_history(days: int) -> tuple[World, MeetingRecord]:
    """A personal room: one class a day for ``days`` days, then today's class."""
    world = World(now=END + timedelta(hours=2))
    for day in range(days, 0, -1):
        world.declare(
            external_id=f"past-{day}",
            started_at=START - timedelta(days=day),
            ended_at=END - timedelta(days=day),
        )
    world.store.code_reads.clear()
    today = world.declare(external_id="today")
    return world, today


def test_a_webhook_reads_only_the_meetings_of_its_neighbourhood() -> None:
    world, today = a_room_with_history(60)
    reads = world.store.code_reads
    assert reads, "the neighbours were read"
    for code, ended in reads:
        assert code == ROOM
        assert ended.end - ended.start < timedelta(days=14)
        assert ended.holds(today.ended_at)
    within = [m for m in world.store.meetings.values() if reads[0][1].holds(m.ended_at)]
    assert len(within) < 15  # of 61


def test_a_poll_reads_the_neighbourhood_and_asks_reports_up_to_now_at_most() -> None:
    world, today = a_room_with_history(60)
    world.store.code_reads.clear()
    poll_meeting(world.deps, today.meeting_id, reason="manual")
    assert world.store.code_reads
    assert all(ended.end - ended.start < timedelta(days=14) for _, ended in world.store.code_reads)
    (call,) = world.reports.calls
    assert call["end"] == world.clock.now  # within a day of the window's end: now

    world.clock.now = END + timedelta(days=5)
    poll_meeting(world.deps, today.meeting_id, reason="manual")
    window_end = END + timedelta(seconds=world.deps.window_after_s)
    assert world.reports.calls[-1]["end"] == window_end + timedelta(hours=24)


def test_a_class_a_week_later_does_not_clip_overtime() -> None:
    # Windows 7 days apart: neither is the other's neighbour, so overtime is not clipped.
    stayer = session(at(0), at(4 * 60))
    first = MeetingSpec(meeting_id="a", meeting_code=CODE, started_at=at(0), ended_at=at(60))
    later = MeetingSpec(
        meeting_id="b", meeting_code=CODE, started_at=at(7 * DAY), ended_at=at(7 * DAY + 60)
    )
    alone = select_meetings([first], [stayer])["a"]
    with_later = select_meetings([first, later], [stayer])["a"]
    assert with_later == alone
    assert alone.meeting.total_attended_seconds == 4 * 3600


def test_a_class_the_same_evening_still_clips_at_its_window_edge() -> None:
    stayer = session(at(0), at(4 * 60))
    first = MeetingSpec(meeting_id="a", meeting_code=CODE, started_at=at(0), ended_at=at(60))
    evening = MeetingSpec(
        meeting_id="b", meeting_code=CODE, started_at=at(8 * 60), ended_at=at(9 * 60)
    )
    selection = select_meetings([first, evening], [stayer])["a"]
    # Credit stops at the end of the window (ended_at + 1 h): 2 h of the 4 h stay.
    assert selection.meeting.total_attended_seconds == 2 * 3600
    assert neighbourhood(first).end - at(60) > timedelta(days=2)
