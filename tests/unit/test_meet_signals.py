"""Meet's "conference ended" signal and preliminary attendance (docs/rules.md "Meet signals",
"Preliminary attendance"), over the in-memory ports and the real use cases: a signal expedites
the code's meetings or creates a ``meet`` one for what none covers, writes Meet's sessions as
preliminary attendance selected and clipped like Reports sessions, and the first Reports data
replaces it whole. Replays, a second conference, a personal room spanning two classes and an
erasure are the adversarial cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.attendance import Session
from functions.erasure import erase_participant
from functions.meet_attendance import meet_sessions, uncovered_parts
from functions.meet_records import Conference, MeetAttendee, MeetSessionTimes
from functions.meet_signals import conference_ended
from functions.model import MeetingRecord
from functions.polling import poll_meeting
from functions.schedule import Status
from functions.stored_state import committed
from tests.unit.test_use_cases import CODE, END, START, STUDENT, TEACHER, World, minutes

RECORD = "conferenceRecords/rec-1"
SPACE = "spaces/space-1"
USERS = {"users/1": TEACHER, "users/2": STUDENT}


def conference(start: datetime | None = None, end: datetime | None = None) -> Conference:
    """The class's conference: by default from 5 minutes before the start to 2 after the end."""
    return Conference(
        name=RECORD,
        space=SPACE,
        start=START - minutes(5) if start is None else start,
        end=END + minutes(2) if end is None else end,
    )


def attendee(
    name: str, user: str | None, spans: Sequence[tuple[datetime, datetime | None]], **kw: object
) -> MeetAttendee:
    kind = kw.get("kind", "signed_in" if user else "anonymous")
    return MeetAttendee(
        name=f"{RECORD}/participants/{name}",
        kind=kind,  # type: ignore[arg-type]
        user=user,
        display_name=str(kw.get("display_name", name)),
        sessions=tuple(
            MeetSessionTimes(
                name=f"{RECORD}/participants/{name}/participantSessions/{i}", start=a, end=b
            )
            for i, (a, b) in enumerate(spans)
        ),
    )


def class_attendees() -> list[MeetAttendee]:
    return [
        attendee("t", "users/1", [(START - minutes(5), END + minutes(2))]),
        attendee("s", "users/2", [(START, START + minutes(20)), (START + minutes(22), END)]),
        attendee("g", None, [(START + minutes(10), START + minutes(30))], display_name="Guest"),
    ]


def signal(world: World, **kw: object) -> object:
    values: dict[str, object] = {
        "conference": conference(),
        "meeting_code": CODE,
        "attendees": class_attendees(),
        "emails": USERS,
    }
    values.update(kw)
    return conference_ended(world.deps, **values)  # type: ignore[arg-type]


def documents(world: World, meeting_id: str) -> dict[str, dict[str, object]]:
    meeting = world.store.meetings[meeting_id]
    return {
        str(d["participant_key"]): dict(d)
        for d in committed(world.store.participants(meeting_id), meeting)
    }


def only_meeting(world: World) -> MeetingRecord:
    (meeting,) = world.store.meetings.values()
    return meeting


def test_an_unannounced_conference_gets_a_meet_meeting_with_preliminary_attendance() -> None:
    world = World()
    signal(world)
    meeting = only_meeting(world)
    assert meeting.source == "meet"
    assert meeting.external_id == "meet:" + RECORD
    assert (meeting.started_at, meeting.ended_at) == (START - minutes(5), END + minutes(2))
    assert meeting.attendance_source == "meet"
    assert meeting.conference_records == (RECORD,)
    docs = documents(world, meeting.meeting_id)
    assert set(docs) == {TEACHER, STUDENT, "anon:Guest"}
    assert all(d["preliminary"] and not d["estimated"] for d in docs.values())
    assert docs[STUDENT]["attended_seconds"] == 43 * 60
    assert meeting.participant_count == 3
    assert meeting.total_attended_seconds == sum(int(d["attended_seconds"]) for d in docs.values())  # type: ignore[call-overload]
    assert meeting.status is Status.COLLECTING  # Meet's data: collecting (docs/rules.md)
    assert {d["meeting_status"] for d in docs.values()} == {"collecting"}
    revision = world.store.revision_docs[meeting.meeting_id][meeting.revision]
    assert revision["reason"] == "meet"


def test_a_replayed_signal_changes_nothing() -> None:
    world = World()
    signal(world)
    before = (
        dict(world.store.meetings),
        {k: dict(v) for k, v in world.store.participant_docs.items()},
    )
    tasks = len(world.queue.tasks)
    signal(world)
    assert dict(world.store.meetings) == before[0]
    assert {k: dict(v) for k, v in world.store.participant_docs.items()} == before[1]
    assert len(world.queue.tasks) == tasks


def test_a_declared_class_is_expedited_and_gets_the_preliminary_view_not_a_second_meeting() -> None:
    world = World()
    declared = world.declare()
    signal(world, conference=conference(START, END))
    assert list(world.store.meetings) == [declared.meeting_id]
    meeting = world.store.meetings[declared.meeting_id]
    assert meeting.source == "webhook"
    assert meeting.attendance_source == "meet"
    docs = documents(world, declared.meeting_id)
    assert docs[TEACHER]["preliminary"]
    assert docs[STUDENT]["preliminary"]
    expedited = [q for q in world.queue.tasks if q.task.reason == "meet"]
    assert [(q.task.meeting_id, q.at) for q in expedited] == [
        (declared.meeting_id, END + minutes(15))
    ]


def test_expected_participants_missing_from_meet_keep_their_estimates() -> None:
    world = World()
    absent = "absent@school.example"
    declared = world.declare(expected_participants=(TEACHER, STUDENT, absent))
    signal(world, conference=conference(START, END))
    docs = documents(world, declared.meeting_id)
    assert docs[absent]["estimated"]
    assert not docs[absent]["preliminary"]
    assert world.store.meetings[declared.meeting_id].missing_participants == (absent,)


def test_the_first_reports_data_replaces_the_preliminary_view_whole() -> None:
    world = World()
    declared = world.declare()
    signal(world, conference=conference(START, END))
    prelim_revision = world.store.meetings[declared.meeting_id].revision
    world.class_activities()
    world.clock.now = END + minutes(20)
    poll_meeting(world.deps, declared.meeting_id, reason="poll", seq=1)
    meeting = world.store.meetings[declared.meeting_id]
    assert meeting.attendance_source == "reports"
    assert meeting.revision == prelim_revision + 1
    docs = documents(world, declared.meeting_id)
    assert set(docs) == {TEACHER, STUDENT}  # the guest was Meet's only
    assert not any(d["preliminary"] for d in docs.values())
    revision = world.store.revision_docs[declared.meeting_id][meeting.revision]
    assert revision["reason"] == "poll"


def test_polls_without_reports_data_keep_the_preliminary_view_and_end_no_data() -> None:
    world = World()
    signal(world)
    meeting = only_meeting(world)
    kept = documents(world, meeting.meeting_id)
    while not world.store.meetings[meeting.meeting_id].is_final:
        world.run_next()
    final = world.store.meetings[meeting.meeting_id]
    assert final.status is Status.NO_DATA
    assert final.attendance_source == "meet"
    after = documents(world, meeting.meeting_id)
    assert set(after) == set(kept)
    assert all(d["meeting_status"] == "no_data" for d in after.values())
    assert {k: d["attended_seconds"] for k, d in after.items()} == {
        k: d["attended_seconds"] for k, d in kept.items()
    }
    assert final.participant_count == 3


def test_a_second_conference_adds_to_the_preliminary_view() -> None:
    world = World()
    declared = world.declare()
    first = Conference(name=RECORD, space=SPACE, start=START, end=START + minutes(20))
    second = Conference(
        name="conferenceRecords/rec-2", space=SPACE, start=START + minutes(21), end=END
    )
    signal(
        world,
        conference=first,
        attendees=[attendee("s", "users/2", [(START, START + minutes(20))])],
    )
    conference_ended(
        world.deps,
        conference=second,
        meeting_code=CODE,
        attendees=[
            MeetAttendee(
                name="conferenceRecords/rec-2/participants/s",
                kind="signed_in",
                user="users/2",
                display_name="s",
                sessions=(
                    MeetSessionTimes(
                        name="conferenceRecords/rec-2/participants/s/participantSessions/0",
                        start=START + minutes(22),
                        end=END,
                    ),
                ),
            )
        ],
        emails=USERS,
    )
    docs = documents(world, declared.meeting_id)
    assert docs[STUDENT]["attended_seconds"] == 43 * 60
    assert world.store.meetings[declared.meeting_id].conference_records == (
        RECORD,
        "conferenceRecords/rec-2",
    )


def test_a_personal_room_conference_spanning_two_classes_splits_between_them() -> None:
    world = World()
    first = world.declare(external_id="class-1", started_at=START, ended_at=START + minutes(60))
    second = world.declare(
        external_id="class-2", started_at=START + minutes(60), ended_at=START + minutes(120)
    )
    spanning = Conference(name=RECORD, space=SPACE, start=START, end=START + minutes(120))
    signal(
        world,
        conference=spanning,
        attendees=[
            attendee("t", "users/1", [(START, START + minutes(120))]),
            attendee("s", "users/2", [(START + minutes(70), START + minutes(110))]),
        ],
    )
    assert set(world.store.meetings) == {first.meeting_id, second.meeting_id}
    one = documents(world, first.meeting_id)
    two = documents(world, second.meeting_id)
    assert one[TEACHER]["attended_seconds"] == 60 * 60
    assert two[TEACHER]["attended_seconds"] == 60 * 60
    assert one[STUDENT]["estimated"]
    assert not one[STUDENT]["preliminary"]
    assert two[STUDENT]["preliminary"]
    assert two[STUDENT]["attended_seconds"] == 40 * 60


def test_a_conference_running_past_the_class_gets_a_meet_meeting_for_the_rest() -> None:
    world = World()
    declared = world.declare()
    window_end = END + timedelta(seconds=world.deps.window_after_s)
    late = Conference(name=RECORD, space=SPACE, start=START, end=window_end + minutes(30))
    signal(world, conference=late)
    others = [m for m in world.store.meetings.values() if m.meeting_id != declared.meeting_id]
    (meet,) = others
    assert meet.source == "meet"
    assert (meet.started_at, meet.ended_at) == (window_end, window_end + minutes(30))


def test_reports_data_already_stored_is_never_replaced_by_meet() -> None:
    world = World()
    declared = world.declare()
    world.class_activities()
    world.clock.now = END + minutes(20)
    poll_meeting(world.deps, declared.meeting_id, reason="poll", seq=1)
    before = documents(world, declared.meeting_id)
    revision = world.store.meetings[declared.meeting_id].revision
    signal(world, conference=conference(START, END))
    assert documents(world, declared.meeting_id) == before
    assert world.store.meetings[declared.meeting_id].revision == revision


def test_an_erased_participant_never_comes_back_from_meet() -> None:
    world = World()
    world.deps = replace(world.deps, erasure_key="erasure-key-of-the-tests-0123456789")
    signal(world)
    meeting = only_meeting(world)
    assert STUDENT in documents(world, meeting.meeting_id)
    erase_participant(world.deps, STUDENT)
    assert STUDENT not in documents(world, meeting.meeting_id)
    signal(world, conference=replace(conference(), name="conferenceRecords/rec-9"))
    for meeting_id in world.store.meetings:
        assert STUDENT not in documents(world, meeting_id)


def test_meet_sessions_key_people_as_reports_does() -> None:
    sessions = meet_sessions(
        conference(),
        [
            attendee("t", "users/1", [(START, END)]),
            attendee("x", "users/99", [(START, END)]),
            attendee("p", None, [(START, END)], kind="phone", display_name="+1 555-***-**12"),
            attendee("a", None, [(START, None)], display_name="Visitor"),
        ],
        meeting_code=CODE,
        emails=USERS,
    )
    from functions.participant_keys import participant_key

    keys = [participant_key(s) for s in sessions]
    assert keys == [TEACHER, "meet_user:users/99", "phone:+1 555-***-**12", "anon:Visitor"]
    assert sessions[-1].leave_time == conference().end  # an open session ends with the call


def test_a_session_that_cannot_end_is_left_out() -> None:
    running = Conference(name=RECORD, space=SPACE, start=START, end=None)
    assert (
        meet_sessions(running, [attendee("a", None, [(START, None)])], meeting_code=CODE, emails={})
        == []
    )


@pytest.mark.parametrize(
    ("covered", "expected"),
    [
        ([], [(0, 10)]),
        ([(None, None)], []),
        ([(2, 4)], [(0, 2), (4, 10)]),
        ([(None, 3), (8, None)], [(3, 8)]),
        ([(0, 10)], []),
        ([(5, 5)], [(0, 5), (5, 10)]),
        ([(-5, 1), (1, 2), (9, 20)], [(2, 9)]),
    ],
)
def test_uncovered_parts_table(
    covered: list[tuple[int | None, int | None]], expected: list[tuple[int, int]]
) -> None:
    def t(n: int | None) -> datetime | None:
        return None if n is None else START + minutes(n)

    got = uncovered_parts(START, START + minutes(10), [(t(a), t(b)) for a, b in covered])
    assert got == [(t(a), t(b)) for a, b in expected]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-20, 40), st.integers(0, 30)).map(lambda p: (p[0], p[0] + p[1])),
        max_size=5,
    )
)
def test_uncovered_parts_are_exactly_the_conference_minus_the_covers(
    covers: list[tuple[int, int]],
) -> None:
    parts = uncovered_parts(
        START, START + minutes(20), [(START + minutes(a), START + minutes(b)) for a, b in covers]
    )
    for minute in range(20):
        instant = START + minutes(minute) + timedelta(seconds=30)
        in_part = any(a <= instant < b for a, b in parts)
        in_cover = any(START + minutes(a) <= instant < START + minutes(b) for a, b in covers)
        assert in_part is not in_cover
    assert all(a < b for a, b in parts)
    assert all(parts[i][1] <= parts[i + 1][0] for i in range(len(parts) - 1))


def test_sessions_are_of_the_meeting_code() -> None:
    sessions: list[Session] = meet_sessions(
        conference(), class_attendees(), meeting_code=CODE, emails=USERS
    )
    assert {s.meeting_code for s in sessions} == {CODE}
    assert {s.conference_id for s in sessions} == {RECORD}


def test_a_class_declared_after_the_signal_absorbs_the_meet_meeting_and_its_view() -> None:
    world = World()
    signal(world, conference=conference(START, END))
    meet = only_meeting(world)
    declared = world.declare()
    absorbed = world.store.meetings[meet.meeting_id]
    assert absorbed.status is Status.MERGED
    assert absorbed.merged_into == declared.meeting_id
    docs = documents(world, declared.meeting_id)
    assert docs[STUDENT]["preliminary"]
    assert docs[STUDENT]["attended_seconds"] == 43 * 60
    assert "anon:Guest" in docs
    assert world.store.meetings[declared.meeting_id].attendance_source == "meet"
    world.class_activities()
    while world.queue.tasks:
        world.run_next()
    final = world.store.meetings[declared.meeting_id]
    assert final.status is Status.COMPLETE
    assert not any(d["preliminary"] for d in documents(world, declared.meeting_id).values())
    assert world.store.meetings[meet.meeting_id].status is Status.MERGED


def test_a_meet_meeting_reaching_beyond_a_later_class_keeps_the_rest() -> None:
    world = World()
    long_call = conference(START, END + minutes(200))
    signal(
        world,
        conference=long_call,
        attendees=[
            attendee("t", "users/1", [(START, END), (END + minutes(150), END + minutes(200))])
        ],
    )
    meet = only_meeting(world)
    declared = world.declare()
    kept = world.store.meetings[meet.meeting_id]
    assert kept.status is not Status.MERGED
    assert declared.meeting_id in kept.partly_merged_into
    assert documents(world, declared.meeting_id)[TEACHER]["preliminary"]


def test_a_class_declared_after_the_signal_takes_its_part_of_the_preliminary_view() -> None:
    world = World()
    spanning = Conference(name=RECORD, space=SPACE, start=START, end=START + minutes(120))
    first = world.declare(external_id="class-1", started_at=START, ended_at=START + minutes(60))
    signal(
        world,
        conference=spanning,
        attendees=[attendee("t", "users/1", [(START, START + minutes(120))])],
    )
    assert documents(world, first.meeting_id)[TEACHER]["attended_seconds"] == 120 * 60
    second = world.declare(
        external_id="class-2", started_at=START + minutes(60), ended_at=START + minutes(120)
    )
    assert documents(world, first.meeting_id)[TEACHER]["attended_seconds"] == 60 * 60
    assert documents(world, second.meeting_id)[TEACHER]["attended_seconds"] == 60 * 60
    assert world.store.meetings[first.meeting_id].total_attended_seconds == 60 * 60


def test_a_meeting_merged_away_gives_its_part_of_the_preliminary_view_back() -> None:
    """The merged meeting leaves the partition: its neighbour's share of Meet's sessions grows
    to what its selection now covers (Meet schedule 626), here when the poll that finds it
    merged runs (the delivery that merged it may have died before it got to it)."""
    world = World()
    spanning = Conference(name=RECORD, space=SPACE, start=START, end=START + minutes(120))
    first = world.declare(external_id="class-1", started_at=START, ended_at=START + minutes(60))
    second = world.declare(
        external_id="class-2", started_at=START + minutes(60), ended_at=START + minutes(120)
    )
    signal(
        world,
        conference=spanning,
        attendees=[attendee("t", "users/1", [(START, START + minutes(120))])],
    )
    assert documents(world, first.meeting_id)[TEACHER]["attended_seconds"] == 60 * 60
    gone = world.store.meetings[second.meeting_id]
    world.store.meetings[second.meeting_id] = replace(
        gone, status=Status.MERGED, merged_into=first.meeting_id
    )
    poll_meeting(world.deps, second.meeting_id, reason="neighbour")
    # class-1's window reaches an hour past its end: the whole call is its share now.
    assert documents(world, first.meeting_id)[TEACHER]["attended_seconds"] == 120 * 60
    assert world.store.meetings[first.meeting_id].total_attended_seconds == 120 * 60


def test_a_redelivered_signal_never_grows_a_meet_meeting_a_class_took_part_of() -> None:
    world = World()
    call = Conference(name=RECORD, space=SPACE, start=START, end=END + minutes(200))
    signal(world, conference=call, attendees=[])
    meet = only_meeting(world)
    world.declare()
    shrunk = world.store.meetings[meet.meeting_id]
    signal(world, conference=call, attendees=[])
    again = world.store.meetings[meet.meeting_id]
    assert (again.started_at, again.ended_at, again.status) == (
        shrunk.started_at,
        shrunk.ended_at,
        shrunk.status,
    )


def test_a_redelivery_asks_for_the_first_link_a_crashed_delivery_never_asked_for() -> None:
    world = World()
    signal(world)
    meet = only_meeting(world)
    world.queue.tasks.clear()
    world.queue.names.clear()
    world.store.meetings[meet.meeting_id] = replace(meet, chain_started=False)
    signal(world)
    assert [q.task.meeting_id for q in world.queue.tasks] == [meet.meeting_id]
