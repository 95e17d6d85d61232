"""``NEIGHBOUR_FIELDS`` (functions/ports.py): a store may give a declaration's neighbours with
only these fields (the Firestore adapter gets them with that field mask). A new meeting judges
its neighbours the same from such records as from whole ones, whatever they hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.model import MeetingRecord
from functions.neighbours import nobody_to_tell
from functions.ports import NEIGHBOUR_FIELDS
from functions.schedule import Status
from tests.unit.factories import at
from tests.unit.test_use_cases import World

CODE = "abc-defg-hij"
DAY = 24 * 60  # minutes


@st.composite
def records(draw: st.DrawFn, meeting_id: str) -> MeetingRecord:
    ended = draw(st.integers(min_value=0, max_value=6 * DAY))
    length = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=DAY)))
    started = None if length is None else at(ended - length)
    sessions = draw(
        st.one_of(st.none(), st.tuples(st.integers(-2 * DAY, DAY), st.integers(0, DAY)))
    )
    return MeetingRecord(
        meeting_id=meeting_id,
        source=draw(st.sampled_from(["webhook", "calendar", "backfill", "manual", "meet"])),
        meeting_code=CODE,
        ended_at=at(ended),
        started_at=started,
        external_id=draw(st.sampled_from([None, f"ext-{meeting_id}"])),
        window_start=(started or at(ended)) - timedelta(minutes=15),
        window_end=at(ended) + timedelta(minutes=15),
        deadline=at(ended) + timedelta(days=1),
        status=draw(st.sampled_from(list(Status))),
        attendance_source=draw(st.sampled_from(["estimated", "meet", "reports"])),
        calendar_event_id=draw(st.sampled_from([None, "event-1", "event-2"])),
        organizer_email=draw(st.sampled_from([None, "a@school.example", "b@school.example"])),
        sessions_start=None if sessions is None else at(ended + sessions[0]),
        sessions_end=None if sessions is None else at(ended + sessions[0] + sessions[1]),
        expected_participants=("s1@school.example",),
        aliases=draw(st.sampled_from([(), ("other-id",)])),
        revision=draw(st.integers(0, 3)),
    )


def masked(record: MeetingRecord) -> MeetingRecord:
    """The record as a get with the field mask reads it back."""
    document = record.to_document()
    return MeetingRecord.from_document({k: v for k, v in document.items() if k in NEIGHBOUR_FIELDS})


@st.composite
def declarations(draw: st.DrawFn) -> tuple[MeetingRecord, list[MeetingRecord]]:
    new = draw(records("new"))
    new = replace(new, status=Status.SCHEDULED, neighbours_told_of=None, sessions_start=None)
    new = replace(new, sessions_end=None, attendance_source="estimated")
    count = draw(st.integers(min_value=1, max_value=4))
    return new, [draw(records(f"n{index}")) for index in range(count)]


@settings(max_examples=400, deadline=None)
@given(declarations())
def test_a_new_meeting_judges_masked_neighbours_as_whole_ones(
    drawn: tuple[MeetingRecord, list[MeetingRecord]],
) -> None:
    new, neighbours = drawn
    deps = World().deps
    whole = nobody_to_tell(deps, new, neighbours)
    assert nobody_to_tell(deps, new, [masked(n) for n in neighbours]) == whole


@pytest.mark.parametrize("times_at_days", [-3, 3], ids=["times-before", "times-after"])
def test_a_found_neighbour_is_judged_by_the_sessions_it_holds(times_at_days: int) -> None:
    """A found meeting whose times lie days away but whose sessions the new class covers is
    absorbed: someone to tell, from whole records and from masked ones alike (read without
    ``sessions_start``, the one with times after would look uncovered; without
    ``sessions_end``, the one with times before)."""
    world = World()
    new = replace(world.declare(), neighbours_told_of=None)
    elsewhere = new.ended_at + timedelta(days=times_at_days)
    found = MeetingRecord(
        meeting_id="found-1",
        source="backfill",
        meeting_code=new.meeting_code,
        ended_at=elsewhere,
        started_at=elsewhere - timedelta(hours=1) if times_at_days < 0 else None,
        external_id=None,
        window_start=elsewhere - timedelta(hours=1),
        window_end=elsewhere,
        deadline=elsewhere + timedelta(days=1),
        status=Status.COMPLETE,
        attendance_source="reports",
        sessions_start=new.window_start + timedelta(minutes=20),
        sessions_end=new.ended_at - timedelta(minutes=5),
    )
    assert nobody_to_tell(world.deps, new, [found]) is False
    assert nobody_to_tell(world.deps, new, [masked(found)]) is False


def test_the_mask_holds_every_field_a_record_needs() -> None:
    record = World().declare()
    assert masked(record).times == record.times
