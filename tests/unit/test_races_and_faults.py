"""Each way attendance was lost, doubled or half-written before, as a use-case test: a second
writer, a slow or empty Reports answer, a crash between writes, a re-declaration. Every test
drives the real use cases over the in-memory ports; "meanwhile" is what another instance does
while this one waits on Reports."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.declarations import accept_meeting_end
from functions.errors import Busy, Conflict, InvalidInput
from functions.intervals import Bounds
from functions.limits import REPORTS_RETENTION
from functions.model import Declared, MeetingRecord
from functions.polling import LEASE, PollOutcome, Skipped, handle_collect_task, poll_meeting
from functions.ports import CollectTask
from functions.schedule import Status
from functions.stored_state import committed
from functions.views import sorted_participants
from local.simulate import Stay, activities_for
from tests.fakes import MemoryQueue, MemoryStore
from tests.unit.test_use_cases import CODE, END, START, STUDENT, TEACHER, World, minutes

ABSENT = "carol@school.example"


def documents(world: World, meeting_id: str) -> dict[str, dict[str, Any]]:
    meeting = world.store.meetings[meeting_id]
    return {
        str(d["participant_key"]): dict(d)
        for d in committed(world.store.participants(meeting_id), meeting)
    }


def attended(world: World, meeting_id: str) -> dict[str, object]:
    return {
        k: (d["attended_seconds"], d["estimated"], d["absent"])
        for k, d in documents(world, meeting_id).items()
    }


def completed(world: World, **declared: object) -> MeetingRecord:
    """A class that completed from real sessions: teacher and student seen, carol absent."""
    meeting = world.declare(expected_participants=(TEACHER, STUDENT, ABSENT), **declared)
    world.class_activities()
    polled = world.run_next()
    while polled.status is not Status.COMPLETE:
        polled = world.run_next()
    assert polled.meeting_id == meeting.meeting_id
    return polled


# ----------------------------------------------------------------- 1. empty or partial answers


@pytest.mark.parametrize("answer", ["empty", "partial"])
def test_an_empty_or_partial_answer_after_completion_takes_nothing_away(answer: str) -> None:
    world = World()
    meeting = completed(world)
    before = attended(world, meeting.meeting_id)
    assert before[ABSENT] == (0, False, True)
    kept = [a for a in world.reports.activities if TEACHER in str(a)] if answer == "partial" else []
    world.reports.activities = kept  # retention passed, or Reports answered in part

    synced = poll_meeting(world.deps, meeting.meeting_id, reason="manual")

    assert isinstance(synced, PollOutcome)
    after = world.store.meetings[meeting.meeting_id]
    assert after.status is Status.COMPLETE
    assert after.revision == meeting.revision
    assert attended(world, meeting.meeting_id) == before
    assert after.last_warning is not None
    assert after.last_warning.code == "incomplete_answer"


def test_no_poll_moves_a_meeting_that_found_sessions_to_no_data() -> None:
    world = World()
    meeting = world.declare(expected_participants=())
    world.class_activities()
    world.run_next()
    world.reports.activities = []
    last = world.store.meetings[meeting.meeting_id]
    while world.queue.tasks:
        last = world.run_next()
    assert last.status is Status.COMPLETE
    assert last.participant_count == 2


# ----------------------------------------------------------------- 6. poison events


def _poisoned(activity: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    poisoned = copy.deepcopy(activity)
    for parameter in poisoned["events"][0]["parameters"]:
        if parameter["name"] == name:
            parameter["intValue" if name == "duration_seconds" else "value"] = value
    return poisoned


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("duration_seconds", "99999999999", "unusable_events"),
        ("duration_seconds", str(2**63 - 1), "unusable_events"),
        ("duration_seconds", "-5", "unusable_events"),
        ("conference_id", "conf-\ud800", "unusable_events"),
        ("display_name", "Bob \ud800", "texts_repaired"),
    ],
)
def test_a_poisoned_event_next_to_good_ones_never_blocks_the_meeting(
    name: str, value: str, code: str
) -> None:
    world = World()
    meeting = world.declare(expected_participants=(TEACHER,))
    world.class_activities()
    good = list(world.reports.activities)
    (extra,) = activities_for(
        [Stay("eve@school.example", START, END)], meeting_code=CODE, conference_id="conf-1"
    )
    extra = _poisoned(extra, "endpoint_id", "spaces/conf-1/devices/eve")
    extra["events"][0]["parameters"].append({"name": "display_name", "value": "Eve"})
    world.reports.activities = [*good, _poisoned(extra, name, value)]
    last = world.run_next()
    while world.queue.tasks:
        last = world.run_next()

    assert last.status is Status.COMPLETE
    assert last.last_warning is not None
    assert last.last_warning.code == code
    seen = documents(world, meeting.meeting_id)
    assert seen[TEACHER]["attended_seconds"] == 52 * 60
    assert seen[STUDENT]["attended_seconds"] == 43 * 60
    assert ("eve@school.example" in seen) == (code == "texts_repaired")


# ----------------------------------------------------------------- 2. half-written polls


class Reader:
    """Reads the meeting the way the API and billing do, whenever the store lets it in."""

    def __init__(self, world: World, meeting_id: str) -> None:
        self.world = world
        self.meeting_id = meeting_id
        self.reads: list[dict[str, Any]] = []

    def __call__(self) -> None:
        store = self.world.store
        meeting = store.meetings[self.meeting_id]
        shown = sorted_participants(store, meeting)
        real = [p for p in shown if not p["estimated"] and not p["absent"]]
        raw = store.participants(self.meeting_id)
        self.reads.append(
            {
                "multi_commit": meeting.multi_commit,
                "totals": (meeting.participant_count, meeting.total_attended_seconds),
                "shown": (len(real), sum(int(p["attended_seconds"]) for p in real)),
                "above": [d for d in raw if int(d["revision"]) > meeting.revision],
                "billable": [d for d in raw if d["meeting_status"] == "complete"],
                "complete": meeting.status is Status.COMPLETE,
            }
        )


def _a_changing_class(world: World) -> tuple[MeetingRecord, Reader]:
    meeting = world.declare(expected_participants=(TEACHER, STUDENT, ABSENT))
    world.class_activities()
    world.run_next()
    world.reports.activities += activities_for(
        [Stay(ABSENT, START, END), Stay(STUDENT, END, END + minutes(9))],
        meeting_code=CODE,
        conference_id="conf-2",
    )
    reader = Reader(world, meeting.meeting_id)
    world.store.between_stages = reader
    return meeting, reader


def test_a_poll_is_seen_whole_or_not_at_all() -> None:
    world = World()
    meeting, reader = _a_changing_class(world)

    polled = world.run_next()

    assert polled.revision == 2
    reader()  # and once more after the poll
    for read in reader.reads:
        assert read["totals"] == read["shown"]
        assert read["above"] == []
    assert reader.reads[-1]["shown"] == (3, polled.total_attended_seconds)
    assert documents(world, meeting.meeting_id)[ABSENT]["estimated"] is False


def test_a_poll_written_in_stages_shows_nothing_unlanded_and_bills_nothing_staged() -> None:
    world = World()
    world.store = MemoryStore(max_commit_bytes=2500)  # about one document per request
    world.deps = replace(world.deps, store=world.store)
    _meeting, reader = _a_changing_class(world)

    polled = world.run_next()

    assert polled.revision == 2
    assert polled.multi_commit
    assert len(reader.reads) >= 3  # the poll was written in stages
    for read in reader.reads:
        # Documents ahead of the meeting exist only while it says a change is being staged,
        # and billing (meeting_status "complete") never counts one before it lands.
        assert read["above"] == [] or read["multi_commit"]
        if not read["complete"]:
            assert read["billable"] == []
    reader()
    assert reader.reads[-1]["totals"] == reader.reads[-1]["shown"]
    assert reader.reads[-1]["above"] == []


def test_first_estimates_during_a_staged_poll_leave_its_documents_alone() -> None:
    # A meeting declared without expected participants is being polled in stages when a
    # re-declaration names them: its estimates must read what the staged change wrote.
    world = World()
    world.store = MemoryStore(max_commit_bytes=2500)  # about one document per request
    world.deps = replace(world.deps, store=world.store)
    meeting = world.declare(expected_participants=())
    world.class_activities()
    redeclared: list[bool] = []

    def redeclare_once() -> None:
        if not redeclared:
            redeclared.append(True)
            world.declare(expected_participants=(TEACHER, STUDENT, ABSENT))

    world.store.between_stages = redeclare_once
    world.clock.now = END + timedelta(minutes=30)
    poll_meeting(world.deps, meeting.meeting_id, reason="manual")
    world.store.between_stages = lambda: None
    assert redeclared
    while world.queue.tasks:
        world.run_next()

    final = world.store.meetings[meeting.meeting_id]
    shown = documents(world, meeting.meeting_id)
    assert set(shown) == {TEACHER, STUDENT, ABSENT}
    assert shown[TEACHER]["estimated"] is False
    assert shown[STUDENT]["estimated"] is False
    assert final.participant_count == sum(1 for d in shown.values() if not d.get("absent"))
    assert final.total_attended_seconds == sum(d["attended_seconds"] for d in shown.values())


class _Crash(Exception):
    pass


def test_an_unchanged_re_poll_brings_the_mirrors_a_crash_left_behind_up_to_date() -> None:
    world = World()
    world.store = MemoryStore(max_commit_bytes=2500)  # about one document per request
    world.deps = replace(world.deps, store=world.store)
    meeting = world.declare(expected_participants=(TEACHER, STUDENT, ABSENT))
    world.class_activities()

    def crash_once_landed() -> None:
        if world.store.meetings[meeting.meeting_id].revision > 0:
            world.store.between_stages = lambda: None
            raise _Crash  # the worker dies after the change landed, before its mirrors ran

    world.store.between_stages = crash_once_landed
    with pytest.raises(_Crash):
        world.run_next()
    landed = world.store.meetings[meeting.meeting_id]
    assert landed.revision == 1
    lagging = {d["meeting_status"] for d in documents(world, meeting.meeting_id).values()}
    # The rewritten documents carry the new status from the start (it bills nothing); the
    # mirrors of the unchanged ones never ran.
    assert lagging == {str(landed.status), "scheduled"}

    # The same answer again: nothing to change but the mirrors, and every one is brought up.
    synced = poll_meeting(world.deps, meeting.meeting_id, reason="manual")

    assert isinstance(synced, PollOutcome)
    assert synced.meeting.revision == 1
    statuses = {d["meeting_status"] for d in documents(world, meeting.meeting_id).values()}
    assert statuses == {str(synced.meeting.status)}


def test_a_final_poll_that_died_before_its_mirrors_is_billed_whole_after_the_retry() -> None:
    world = World()
    world.store = MemoryStore(max_commit_bytes=2500)  # about one document per request
    world.deps = replace(world.deps, store=world.store)
    meeting = world.declare(expected_participants=(TEACHER, STUDENT, ABSENT))
    world.class_activities()
    meeting_id = meeting.meeting_id

    def crash_once_complete() -> None:
        if world.store.meetings[meeting_id].status is Status.COMPLETE:
            world.store.between_stages = lambda: None
            raise _Crash  # the final change landed; its status mirrors never ran

    world.store.between_stages = crash_once_complete
    while True:
        queued = world.queue.pop_next()
        world.clock.now = max(world.clock.now, queued.at)
        try:
            handle_collect_task(world.deps, queued.task)
        except _Crash:
            break
    shown = documents(world, meeting_id)
    assert world.store.meetings[meeting_id].is_final
    assert {d["meeting_status"] for d in shown.values()} != {"complete"}

    retried = handle_collect_task(world.deps, queued.task)  # the queue's retry of that delivery

    assert isinstance(retried, Skipped)
    after = documents(world, meeting_id)
    assert set(after) == set(shown)  # every document the meeting counted, it still counts
    assert {d["meeting_status"] for d in after.values()} == {"complete"}  # and billing too
    assert attended(world, meeting_id)[ABSENT] == (0, False, True)


# ----------------------------------------------------------------- 3. the lease fences


def test_a_poll_that_outlived_its_lease_stores_nothing_and_the_chain_goes_on() -> None:
    world = World()
    meeting = world.declare()
    world.class_activities()
    link = world.queue.pop_next()
    world.clock.now = link.at
    syncs: list[PollOutcome | Skipped] = []

    def slow_page_then_a_sync() -> None:
        world.clock.now += LEASE + minutes(1)
        syncs.append(poll_meeting(world.deps, meeting.meeting_id, reason="manual"))

    world.reports.meanwhile = [slow_page_then_a_sync]

    with pytest.raises(Busy):
        handle_collect_task(world.deps, link.task)

    (sync,) = syncs
    assert isinstance(sync, PollOutcome)
    stored = world.store.meetings[meeting.meeting_id]
    assert stored.revision == 1
    assert sorted(world.store.revision_docs[meeting.meeting_id]) == [1]
    assert stored.lease_owner is None
    # The queue retries the delivery that lost its lease: its link is still the chain's, so it
    # polls (on the sync's result: nothing new to write) and the chain carries on.
    retried = handle_collect_task(world.deps, link.task)
    assert retried.polled
    assert world.store.meetings[meeting.meeting_id].revision == 1
    assert [t.task.attempt for t in world.queue.tasks] == [2]


# ----------------------------------------------------------------- 4. merge during a poll


def test_a_merge_during_a_poll_of_the_found_meeting_bills_each_second_once() -> None:
    world = World(now=END + timedelta(hours=30))
    found = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, ended_at=END, started_at=START - minutes(5)),
        source="backfill",
    ).meeting
    world.class_activities()
    declared: list[MeetingRecord] = []
    world.reports.meanwhile = [lambda: declared.append(world.declare(external_id="late"))]

    outcome = poll_meeting(world.deps, found.meeting_id, reason="manual")

    assert isinstance(outcome, Skipped)
    assert outcome.skipped_reason == "merged"
    merged = world.store.meetings[found.meeting_id]
    assert merged.status is Status.MERGED
    assert merged.merged_into == declared[0].meeting_id
    while world.queue.tasks:
        world.run_next()
    billed = [m for m in world.store.meetings.values() if m.status is Status.COMPLETE]
    assert [m.meeting_id for m in billed] == [declared[0].meeting_id]
    assert billed[0].total_attended_seconds == sum(
        int(d["attended_seconds"]) for d in documents(world, billed[0].meeting_id).values()
    )


def test_a_partly_absorbed_found_meeting_shrinks_to_the_rest_and_tells_its_neighbours() -> None:
    world = World(now=END + timedelta(hours=30))
    t0 = START
    world.reports.activities += activities_for(
        [
            Stay(TEACHER, t0, t0 + minutes(180)),
            Stay("early@school.example", t0, t0 + minutes(60)),
            Stay("later@school.example", t0 + minutes(120), t0 + minutes(180)),
        ],
        meeting_code=CODE,
        conference_id="conf-long",
    )
    found = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, started_at=t0, ended_at=t0 + minutes(180)),
        source="backfill",
        conference_id="conf-long",
    ).meeting
    # Another found meeting of the code, just after: its credited span starts where the first's
    # ends, so the shrink moves it.
    after = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, started_at=t0 + minutes(250), ended_at=t0 + minutes(280)),
        source="backfill",
        conference_id="conf-next",
    ).meeting
    while world.queue.tasks:
        world.run_next()
    declared = world.declare(
        external_id="late",
        expected_participants=(),
        started_at=t0 + minutes(120),
        ended_at=t0 + minutes(165),
    )
    repolled_after: list[str] = []
    while world.queue.tasks:
        queued = world.queue.pop_next()
        world.clock.now = max(world.clock.now, queued.at)
        if queued.task.meeting_id == after.meeting_id and queued.task.reason == "neighbour":
            repolled_after.append(queued.task.meeting_id)
        handle_collect_task(world.deps, queued.task)

    shrunk = world.store.meetings[found.meeting_id]
    assert shrunk.status is Status.COMPLETE
    assert shrunk.partly_merged_into == (declared.meeting_id,)
    assert (shrunk.started_at, shrunk.ended_at) == (t0, t0 + minutes(60))
    assert shrunk.window_end == t0 + minutes(60) + timedelta(seconds=world.deps.window_after_s)
    assert {k: d["attended_seconds"] for k, d in documents(world, found.meeting_id).items()} == {
        "early@school.example": 3600
    }
    assert set(documents(world, declared.meeting_id)) == {TEACHER, "later@school.example"}
    assert shrunk.neighbours_told_of == shrunk.times
    assert repolled_after


def test_a_neighbour_declared_during_a_poll_fences_it_and_it_plans_with_the_new_boundary() -> None:
    world = World(now=END + minutes(30))  # after the stay: Reports has no event from the future
    first = world.declare(external_id="first", expected_participants=())
    world.reports.activities += activities_for(
        [Stay(ABSENT, END - minutes(10), END + minutes(20))], meeting_code=CODE, conference_id="c"
    )
    later = {"started_at": END + minutes(10), "ended_at": END + minutes(55)}
    world.reports.meanwhile = [
        lambda: world.declare(external_id="second", expected_participants=(), **later)
    ]

    poll_meeting(world.deps, first.meeting_id, reason="manual")

    # Before any re-poll runs: what the poll stored is cut at the new boundary (END + 5 min).
    assert documents(world, first.meeting_id)[ABSENT]["attended_seconds"] == 15 * 60


def test_a_neighbour_moving_away_gives_the_time_it_cut_back_to_the_meeting_it_cut() -> None:
    """The later class moves to the next day: the earlier one, final and holding a session cut
    at their boundary, is re-polled and credits the whole session again."""
    world = World()
    first = world.declare(external_id="first", expected_participants=())
    world.reports.activities += activities_for(
        [Stay(ABSENT, END - minutes(10), END + minutes(20))], meeting_code=CODE, conference_id="c"
    )
    later = {"started_at": END + minutes(10), "ended_at": END + minutes(55)}
    world.declare(external_id="second", expected_participants=(), **later)
    # An evening class of the same code, far from both: the first class's credit ends at its
    # own window's edge whether the second class is there or a day away.
    evening = {"started_at": END + minutes(300), "ended_at": END + minutes(360)}
    world.declare(external_id="evening", expected_participants=(), **evening)
    while world.queue.tasks:
        world.run_next()
    assert documents(world, first.meeting_id)[ABSENT]["attended_seconds"] == 15 * 60

    moved = {k: v + timedelta(days=1) for k, v in later.items()}
    world.declare(external_id="second", expected_participants=(), **moved)
    # Re-polled at once (docs/cli.md "summarize": its credited span changed), not only when the moved class's
    # own poll lets the session go: its share without the moved class and with it at the new
    # times is the same, and differs only from its share with it at the times it was told of.
    asked = {(q.task.meeting_id, q.task.reason) for q in world.queue.tasks}
    assert (first.meeting_id, "neighbour") in asked
    while world.queue.tasks:
        world.run_next()

    assert documents(world, first.meeting_id)[ABSENT]["attended_seconds"] == 30 * 60


# ----------------------------------------------------------------- 5. reschedule during a poll


@pytest.mark.parametrize("poll", ["chain link", "manual sync"])
def test_a_reschedule_during_a_poll_is_planned_again_and_its_new_link_runs(poll: str) -> None:
    world = World()
    meeting = world.declare(expected_participants=())
    later_end = END + minutes(30)
    world.reports.activities += activities_for(
        [Stay(STUDENT, END + minutes(5), later_end)], meeting_code=CODE, conference_id="c"
    )
    link = world.queue.pop_next()
    world.clock.now = link.at
    world.reports.meanwhile = [lambda: world.declare(expected_participants=(), ended_at=later_end)]

    if poll == "chain link":
        handle_collect_task(world.deps, link.task)  # gives way: its link is not the chain's now
    else:
        poll_meeting(world.deps, meeting.meeting_id, reason="manual")  # plans again

    moved = world.store.meetings[meeting.meeting_id]
    assert moved.ended_at == later_end
    assert moved.chain_seq == 2
    assert not moved.is_final
    assert any(t.task.attempt == 2 for t in world.queue.tasks)
    while world.queue.tasks:
        last = world.run_next()
    assert last.status is Status.COMPLETE
    assert documents(world, meeting.meeting_id)[STUDENT]["attended_seconds"] == 25 * 60


@pytest.mark.parametrize("crash", [False, True])
def test_sessions_a_reschedule_leaves_to_nobody_go_to_a_found_meeting(crash: bool) -> None:
    """Never to none: the declared times move a day on after Reports lost the class's events;
    what the meeting held goes, from its stored sessions, to a found meeting of its own."""
    world = World()
    meeting = completed(world)
    seconds = {k: d["attended_seconds"] for k, d in documents(world, meeting.meeting_id).items()}
    held = {k: v for k, v in seconds.items() if k != ABSENT}
    world.reports.activities = []  # retention passed
    world.declare(started_at=START + timedelta(days=1), ended_at=END + timedelta(days=1))
    if crash:
        # The instance dies right after the found meeting was given the sessions.
        world.reports.meanwhile = [lambda: None]
        world.store.__class__ = DiesAfterCreatingAFoundMeeting
        with pytest.raises(RuntimeError):
            poll_meeting(world.deps, meeting.meeting_id, reason="manual")
        world.store.__class__ = MemoryStore
    poll_meeting(world.deps, meeting.meeting_id, reason="manual")
    while world.queue.tasks:
        world.run_next()

    (found,) = [m for m in world.store.meetings.values() if m.is_found]
    assert found.status is Status.COMPLETE
    assert {k: d["attended_seconds"] for k, d in documents(world, found.meeting_id).items()} == held
    moved = world.store.meetings[meeting.meeting_id]
    assert moved.status is Status.NO_DATA  # nobody was seen at the new times
    assert moved.total_attended_seconds == 0
    assert all(d["estimated"] for d in documents(world, meeting.meeting_id).values())


class DiesBeforeAskingForTheRepoll(MemoryQueue):
    """The instance dies once, right after a final commit, before it asks for a neighbour's
    re-poll."""

    died = False
    store: MemoryStore

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        if not self.died and task.reason == "neighbour":
            final = [m for m in self.store.meetings.values() if m.status is Status.COMPLETE]
            if len(final) == 2:
                self.died = True
                raise RuntimeError("instance died")
        return super().enqueue(task, task_id=task_id, at=at)


def test_a_neighbour_is_re_polled_even_when_the_final_poll_died_before_asking() -> None:
    """The later meeting's last poll stores a session both take; it dies before re-polling the
    earlier one, and the queue's retry finds the meeting final: the retry still asks."""
    world = World()
    queue = DiesBeforeAskingForTheRepoll()
    queue.store = world.store
    world.queue = queue
    world.deps = replace(world.deps, queue=queue)
    first = world.declare(external_id="first", expected_participants=())
    world.class_activities()
    second = world.declare(
        external_id="second",
        expected_participants=(),
        started_at=END + minutes(10),
        ended_at=END + minutes(55),
    )
    while world.store.meetings[first.meeting_id].status is not Status.COMPLETE:
        world.run_next()
    # Seen by Reports only at the later meeting's last poll: across the boundary (END + 5 min),
    # and Reports then loses it.
    late = activities_for(
        [Stay(ABSENT, END - minutes(5), END + minutes(15))], meeting_code=CODE, conference_id="c2"
    )
    while world.store.meetings[second.meeting_id].status is not Status.COMPLETE:
        queued = queue.pop_next()
        world.clock.now = max(world.clock.now, queued.at)
        if queued.at >= world.store.meetings[second.meeting_id].deadline:
            world.reports.activities += late
        try:
            handle_collect_task(world.deps, queued.task)
        except RuntimeError:
            world.reports.activities = [a for a in world.reports.activities if a not in late]
            retried = handle_collect_task(world.deps, queued.task)  # the queue's retry
            assert isinstance(retried, Skipped)
    assert queue.died
    while queue.tasks:
        world.run_next()

    assert documents(world, first.meeting_id)[ABSENT]["attended_seconds"] == 10 * 60
    assert documents(world, second.meeting_id)[ABSENT]["attended_seconds"] == 10 * 60


class DiesAfterCreatingAFoundMeeting(MemoryStore):
    """The instance dies once, on its first commit after a found meeting exists."""

    def commit(self, change: Any) -> Any:
        if any(m.is_found for m in self.meetings.values()):
            raise RuntimeError("instance died")
        return super().commit(change)


# ----------------------------------------------------------------- neighbours told, once


class DiesBeforeTellingNeighbours(MemoryStore):
    """The instance dies once, right after the new meeting's chain started."""

    died = False

    def with_code(self, meeting_code: str, *, ended: Bounds) -> list[MeetingRecord]:
        if not self.died:
            self.died = True
            raise RuntimeError("instance died")
        return super().with_code(meeting_code, ended=ended)


def test_a_declaration_retried_after_a_crash_still_tells_its_neighbours() -> None:
    world = World()
    first = world.declare(external_id="first", expected_participants=())
    world.store.__class__ = DiesBeforeTellingNeighbours
    later = {"started_at": END + minutes(120), "ended_at": END + minutes(165)}
    with pytest.raises(RuntimeError):
        world.declare(external_id="second", expected_participants=(), **later)
    assert not [t for t in world.queue.tasks if t.task.reason == "neighbour"]

    second = world.declare(external_id="second", expected_participants=(), **later)

    # The first meeting's credit now ends at its window's edge: it is re-polled once.
    repolls = [t.task.meeting_id for t in world.queue.tasks if t.task.reason == "neighbour"]
    assert repolls == [first.meeting_id]
    assert world.store.meetings[second.meeting_id].neighbours_told_of == second.times
    world.declare(external_id="second", expected_participants=(), **later)
    assert len([t for t in world.queue.tasks if t.task.reason == "neighbour"]) == 1


# ----------------------------------------------------------------- 8. re-declarations


def test_a_re_declaration_with_another_code_is_a_conflict_and_changes_nothing() -> None:
    world = World()
    meeting = world.declare()
    with pytest.raises(Conflict) as refused:
        world.declare(meeting_code="zzz-zzzz-zzz")
    assert refused.value.status == 409
    assert world.store.meetings[meeting.meeting_id] == meeting


def test_a_re_declaration_replaces_the_expected_participants() -> None:
    world = World()
    meeting = world.declare(expected_participants=(TEACHER, STUDENT))
    world.declare(expected_participants=(TEACHER, ABSENT))
    stored = world.store.meetings[meeting.meeting_id]
    assert stored.expected_participants == (TEACHER, ABSENT)
    assert set(documents(world, meeting.meeting_id)) == {TEACHER, ABSENT}
    assert world.store.revision_docs[meeting.meeting_id][1]["reason"] == "declaration"


def test_a_re_declaration_after_completion_marks_the_new_expected_absent() -> None:
    world = World()
    meeting = completed(world)
    world.declare(expected_participants=(TEACHER, "dan@school.example"))
    docs = documents(world, meeting.meeting_id)
    assert docs["dan@school.example"]["absent"] is True
    assert ABSENT not in docs
    assert docs[TEACHER]["estimated"] is False  # real attendance is never replaced


def test_a_declaration_older_than_reports_retention_is_refused() -> None:
    world = World(now=END + REPORTS_RETENTION + timedelta(days=1))
    with pytest.raises(InvalidInput) as refused:
        world.declare()
    assert refused.value.status == 400
    assert "180 days" in str(refused.value)
    assert world.store.meetings == {}


def test_a_sync_of_a_merged_meeting_is_a_conflict_naming_the_meeting_it_merged_into() -> None:
    world = World(now=END + timedelta(hours=30))
    found = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, ended_at=END, started_at=START - minutes(5)),
        source="backfill",
    ).meeting
    declared = world.declare(external_id="late")
    assert world.store.meetings[found.meeting_id].status is Status.MERGED
    with pytest.raises(Conflict) as refused:
        poll_meeting(world.deps, found.meeting_id, reason="manual")
    assert refused.value.status == 409
    assert declared.meeting_id in str(refused.value)


def test_a_queued_poll_of_a_merged_meeting_is_skipped_quietly() -> None:
    world = World(now=END + timedelta(hours=30))
    found = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, ended_at=END, started_at=START - minutes(5)),
        source="backfill",
    ).meeting
    world.declare(external_id="late")
    outcome = handle_collect_task(world.deps, CollectTask(found.meeting_id, 1, "poll"))
    assert outcome.skipped_reason == "merged"
