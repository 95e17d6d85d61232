"""The backfill over in-memory ports: discovery, late data, broken chains, idempotency, ranges."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.backfill import (
    CODES_PER_READ,
    BackfillReport,
    check_range,
    fan_out,
    run_backfill,
    run_backfill_slice,
    session_fact,
    slices,
    stored_fact,
)
from functions.chain import chain_task_id
from functions.declarations import accept_meeting_end
from functions.errors import InvalidInput
from functions.intervals import Bounds
from functions.model import Declared, MeetingRecord, meeting_id_for
from functions.polling import handle_collect_task
from functions.ports import BackfillSlice, CollectTask, Deps, read_one_ahead
from functions.reports_events import parse_activity
from functions.schedule import Status, Timing
from local.simulate import Stay, activities_for, call_ended
from tests.fakes import ManualClock, MemoryQueue, MemoryStore, ScriptedReports

NOW = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SLICE = BackfillSlice(
    since=NOW - timedelta(hours=48),
    until=NOW,
    range_since=NOW - timedelta(hours=48),
    range_until=NOW,
)


def code_for(index: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"bf{letters[index % 26]}-{letters[index // 26]}xyz-abc"


class World:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.reports = ScriptedReports()
        self.clock = ManualClock(NOW)
        self.deps = Deps(
            store=self.store,
            queue=self.queue,
            reports=self.reports,
            clock=self.clock,
            timing=Timing(),
        )

    def day_of_classes(self, count: int) -> list[tuple[str, datetime, datetime]]:
        classes = []
        for index in range(count):
            start = NOW - timedelta(hours=20) + index * 10 * M
            end = start + 45 * M
            code = code_for(index)
            self.reports.activities += activities_for(
                [
                    Stay(f"t{index}@school.example", start, end),
                    Stay("kid@school.example", start, end),
                ],
                meeting_code=code,
                conference_id=f"conference-{index}",
            )
            classes.append((code, start, end))
        return classes

    def announce(self, code: str, start: datetime, end: datetime) -> MeetingRecord:
        return accept_meeting_end(
            self.deps, Declared(meeting_code=code, started_at=start, ended_at=end)
        ).meeting

    def backfill(self) -> BackfillReport:
        return run_backfill(
            self.deps, since=NOW - timedelta(hours=48), until=NOW, slice_length=timedelta(hours=6)
        )

    def drain(self) -> None:
        """Run every queued task that is due (the chains of final meetings end by themselves)."""
        while self.queue.tasks:
            task = self.queue.pop_next()
            self.clock.now = max(self.clock.now, task.at)
            handle_collect_task(self.deps, task.task)


def test_unannounced_conferences_get_backfill_meetings_and_announced_ones_are_untouched() -> None:
    world = World()
    classes = world.day_of_classes(10)
    announced = [world.announce(*c) for c in classes[:7]]
    tasks_before = list(world.queue.tasks)

    report = world.backfill()

    assert report.conferences_seen == 10
    assert len(report.meetings_created) == 3
    created = [world.store.meetings[i] for i in report.meetings_created]
    assert {m.source for m in created} == {"backfill"}
    assert {m.meeting_code for m in created} == {c[0] for c in classes[7:]}
    assert created[0].started_at == classes[7][1]
    assert created[0].ended_at == classes[7][2]
    for meeting in announced:
        assert world.store.meetings[meeting.meeting_id] == meeting
    new_tasks = [t for t in world.queue.tasks if t not in tasks_before]
    assert {t.task.meeting_id for t in new_tasks} == set(report.meetings_created)
    assert report.repolled == []
    assert report.reenqueued == []


class CrashOnFirstEnqueue(MemoryQueue):
    """The process dies once, between a meeting's creation and its first task."""

    crashed: bool = False

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("instance died")
        return super().enqueue(task, task_id=task_id, at=at)


def test_a_run_retried_after_a_crash_before_the_first_enqueue_starts_the_chain() -> None:
    world = World()
    world.queue = CrashOnFirstEnqueue()
    world.deps = replace(world.deps, queue=world.queue)
    world.day_of_classes(1)
    with pytest.raises(RuntimeError):
        world.backfill()
    (found,) = world.store.meetings.values()
    assert not found.chain_started
    assert world.queue.tasks == []

    retried = world.backfill()

    assert retried.meetings_created == []
    assert [t.task.meeting_id for t in world.queue.tasks] == [found.meeting_id]
    assert world.queue.tasks[0].task_id == chain_task_id(found.meeting_id, found.chain_seq)
    world.drain()
    assert world.store.meetings[found.meeting_id].participant_count == 2


def test_a_retry_that_no_longer_sees_the_conference_still_starts_the_chain() -> None:
    world = World()
    world.queue = CrashOnFirstEnqueue()
    world.deps = replace(world.deps, queue=world.queue)
    world.day_of_classes(1)
    with pytest.raises(RuntimeError):
        run_backfill_slice(world.deps, SLICE)
    (found,) = world.store.meetings.values()
    activities, world.reports.activities = world.reports.activities, []  # Reports answers empty
    assert found.next_poll_at is not None
    world.clock.now = found.next_poll_at + M

    retried = run_backfill_slice(world.deps, SLICE)

    assert retried.meetings_created == []
    assert [t.task.meeting_id for t in world.queue.tasks] == [found.meeting_id]
    assert world.queue.tasks[0].task_id == chain_task_id(found.meeting_id, found.chain_seq)
    world.reports.activities = activities
    world.drain()
    assert world.store.meetings[found.meeting_id].participant_count == 2


def test_backfill_meetings_past_their_deadline_are_polled_once_and_final() -> None:
    world = World()
    world.clock.now = NOW + timedelta(days=1)
    world.day_of_classes(2)
    run_backfill(world.deps, since=NOW - timedelta(hours=48), until=world.clock.now)
    world.drain()
    statuses = {m.status for m in world.store.meetings.values()}
    assert statuses == {Status.COMPLETE}
    assert {m.attempts for m in world.store.meetings.values()} == {1}
    assert {m.participant_count for m in world.store.meetings.values()} == {2}


def test_running_twice_changes_nothing_more() -> None:
    world = World()
    world.day_of_classes(5)
    first = world.backfill()
    snapshot = dict(world.store.meetings)
    queued = list(world.queue.tasks)
    second = world.backfill()
    assert second.meetings_created == []
    assert second.repolled == []
    assert len(first.meetings_created) == 5
    assert world.store.meetings == snapshot
    assert world.queue.tasks == queued


def test_late_data_after_completion_is_repolled_with_a_backfill_revision() -> None:
    world = World()
    code, start, end = world.day_of_classes(1)[0]
    meeting = world.announce(code, start, end)
    world.drain()
    done = world.store.meetings[meeting.meeting_id]
    assert done.status is Status.COMPLETE
    assert done.revision == 1
    world.reports.activities.append(
        call_ended(
            meeting_code=code,
            conference_id="conference-0",
            leave=end,
            duration_s=600,
            identifier="latecomer@school.example",
        )
    )
    report = world.backfill()
    assert report.repolled == [meeting.meeting_id]
    assert world.backfill().repolled == []  # same data, same task name
    world.drain()
    after = world.store.meetings[meeting.meeting_id]
    assert after.status is Status.COMPLETE
    assert after.revision == 2
    assert after.participant_count == 3
    assert world.store.revision_docs[meeting.meeting_id][2]["reason"] == "backfill"
    assert world.backfill().repolled == []  # now equal to the scan


def test_a_no_data_meeting_whose_data_appears_later_becomes_complete() -> None:
    world = World()
    start = NOW - timedelta(hours=40)
    end = start + 45 * M
    meeting = world.announce("nod-ataa-bcd", start, end)
    world.drain()
    assert world.store.meetings[meeting.meeting_id].status is Status.NO_DATA
    world.reports.activities += activities_for(
        [Stay("kid@school.example", start, end)], meeting_code="nod-ataa-bcd", conference_id="c"
    )
    report = world.backfill()
    assert report.repolled == [meeting.meeting_id]
    assert report.meetings_created == []
    world.drain()
    assert world.store.meetings[meeting.meeting_id].status is Status.COMPLETE


def test_a_broken_chain_is_reenqueued_once() -> None:
    world = World()
    meeting = world.announce("brk-chai-nnn", NOW - 3 * 60 * M, NOW - 2 * 60 * M)
    world.queue.tasks.clear()  # the chain's task is lost
    world.clock.now = NOW + 2 * 60 * M
    overdue = world.store.meetings[meeting.meeting_id]
    assert overdue.next_poll_at is not None
    assert overdue.next_poll_at < world.clock.now - 60 * M
    report = world.backfill()
    assert report.reenqueued == [meeting.meeting_id]
    assert [t.task.attempt for t in world.queue.tasks] == [overdue.chain_seq + 1]
    assert world.backfill().reenqueued == []
    world.drain()
    assert world.store.meetings[meeting.meeting_id].status is Status.NO_DATA


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (NOW - timedelta(days=181), NOW, "more than 180 days ago"),
        (NOW, NOW - M, "since must be before until"),
        (NOW - M, NOW + timedelta(hours=1), "until must not be in the future"),
        (datetime(2026, 11, 26), NOW, "UTC offset"),  # noqa: DTZ001 - a naive time is the input
    ],
)
def test_bad_ranges_are_refused(since: datetime, until: datetime, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_range(since, until, NOW)


def test_slices_cover_the_range_without_overlap() -> None:
    ranges = slices(NOW - timedelta(hours=13), NOW, timedelta(hours=6))
    assert len(ranges) == 3
    assert ranges[0][0] == NOW - timedelta(hours=13)
    assert ranges[-1][1] == NOW
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start - end == timedelta(milliseconds=1)


def test_stored_sessions_compare_equal_to_scanned_ones() -> None:
    activity = call_ended(
        meeting_code="abc-defg-hij",
        conference_id="c",
        leave=NOW,
        duration_s=61,
        identifier="a@b.example",
    )
    (session,), _, _ = parse_activity(activity)
    stored = {
        "conference_id": "c",
        "endpoint_id": session.endpoint_id,
        "event_id": session.event_id,
        "join_time": session.join_time,
        "leave_time": session.leave_time,
        "duration_seconds": 61,
    }
    assert stored_fact(stored) == session_fact(session)
    without_endpoint = session.__class__(
        **{**{f: getattr(session, f) for f in session.__slots__}, "endpoint_id": None}
    )
    assert stored_fact({**stored, "endpoint_id": None}) == session_fact(without_endpoint)


def test_fan_out_enqueues_one_named_task_per_slice_once() -> None:
    world = World()
    report = fan_out(world.deps, since=NOW - timedelta(hours=13), until=NOW)
    assert report.slices == 3
    assert [(p.since, p.until) for p in world.queue.slices] == slices(
        NOW - timedelta(hours=13), NOW, timedelta(hours=6)
    )
    assert {(p.range_since, p.range_until) for p in world.queue.slices} == {
        (NOW - timedelta(hours=13), NOW)
    }
    fan_out(world.deps, since=NOW - timedelta(hours=13), until=NOW)
    assert len(world.queue.slices) == 3  # the same run again creates no slice twice


@pytest.mark.parametrize(
    ("since", "until", "scanned"),
    [
        # Wholly past what Reports keeps (or a future one): nothing to scan, done, not retried.
        (NOW - timedelta(days=400), NOW - timedelta(days=399), None),
        (NOW + timedelta(days=1), NOW + timedelta(days=2), None),
        # Reaching past it: cut to what may be scanned.
        (
            NOW - timedelta(days=200),
            NOW - timedelta(days=100),
            (NOW - timedelta(days=180) + M, NOW - timedelta(days=100)),
        ),
        (NOW - timedelta(hours=1), NOW + timedelta(days=3), (NOW - timedelta(hours=1), NOW)),
    ],
)
def test_a_slice_scans_only_what_reports_keeps_and_has_happened(
    since: datetime, until: datetime, scanned: tuple[datetime, datetime] | None
) -> None:
    world = World()
    part = BackfillSlice(since=since, until=until, range_since=since, range_until=until)
    report = run_backfill_slice(world.deps, part)
    assert report.meetings_created == []
    asked = [(c["start"], c["end"]) for c in world.reports.calls]
    assert asked == ([] if scanned is None else [scanned])


def test_a_slice_scans_nothing_before_the_retention() -> None:
    world = World()
    world.deps = replace(world.deps, retention_days=62)
    part = BackfillSlice(
        since=NOW - timedelta(days=70),
        until=NOW - timedelta(days=63),
        range_since=NOW - timedelta(days=70),
        range_until=NOW - timedelta(days=63),
    )
    run_backfill_slice(world.deps, part)
    assert world.reports.calls == []


def test_slices_run_as_tasks_find_what_the_threaded_run_finds() -> None:
    threaded, fanned = World(), World()
    for world in (threaded, fanned):
        world.day_of_classes(6)
        # A conference that crosses a slice boundary: its sessions are split between two slices.
        boundary = NOW - timedelta(hours=6)
        world.reports.activities += activities_for(
            [
                Stay("early@school.example", boundary - 50 * M, boundary - 10 * M),
                Stay("late@school.example", boundary - 5 * M, boundary + 30 * M),
            ],
            meeting_code="cro-sssl-ice",
            conference_id="crossing",
        )
    run_backfill(
        threaded.deps, since=NOW - timedelta(hours=24), until=NOW, slice_length=timedelta(hours=6)
    )
    fan_out(fanned.deps, since=NOW - timedelta(hours=24), until=NOW)
    for part in fanned.queue.slices:
        run_backfill_slice(fanned.deps, part)

    def meetings(world: World) -> dict[str, tuple[object, ...]]:
        return {
            m.meeting_id: (m.meeting_code, m.started_at, m.ended_at, m.source)
            for m in world.store.meetings.values()
        }

    assert meetings(fanned) == meetings(threaded)
    (crossing,) = [m for m in fanned.store.meetings.values() if m.meeting_code == "cro-sssl-ice"]
    assert crossing.started_at == NOW - timedelta(hours=6) - 50 * M
    assert crossing.ended_at == NOW - timedelta(hours=6) + 30 * M


def test_discovery_reads_the_codes_a_group_at_a_time_and_found_meetings_read_nothing_more() -> None:
    world = World()
    world.day_of_classes(CODES_PER_READ + 10)

    report = world.backfill()

    assert len(report.meetings_created) == CODES_PER_READ + 10
    assert world.store.batched_code_reads == 2
    # Every found meeting's neighbours came from its group's read: no declaration read.
    assert world.store.declaration_reads_made == 0
    assert len(world.store.code_reads) == CODES_PER_READ + 10


def test_reading_one_ahead_reads_each_group_before_the_one_before_is_handed_out() -> None:
    events: list[str] = []

    def read(group: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        (code,) = group
        events.append(f"read {code}")
        return {code: []}

    groups = [{code: Bounds(NOW, NOW)} for code in ("a", "b", "c")]
    for answer in read_one_ahead(read, groups):
        events.append(f"handed {next(iter(answer))}")

    assert events == ["read a", "read b", "handed a", "read c", "handed b", "handed c"]
    assert list(read_one_ahead(read, [])) == []


def test_a_later_group_read_before_another_writer_found_its_meeting_still_gets_one_meeting() -> (
    None
):
    """Discovery reads a group's codes while it reconciles the group before. Here a second run
    finds a meeting of the later group in between: the stale read does not make a second one."""
    world = World()
    world.day_of_classes(2 * CODES_PER_READ + 5)
    clean = World()
    clean.day_of_classes(2 * CODES_PER_READ + 5)
    clean.backfill()
    codes = sorted({m.meeting_code for m in clean.store.meetings.values()})
    late = codes[CODES_PER_READ]  # the first code of the second group
    index = next(i for i in range(2 * CODES_PER_READ + 5) if code_for(i) == late)
    (stay,) = [m for m in clean.store.meetings.values() if m.meeting_code == late]
    read = world.store.with_codes
    reads = 0

    def read_then_race(ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        nonlocal reads
        answer, reads = read(ended), reads + 1
        if reads == 3:  # the third group's read: the second group was read, not reconciled
            assert late not in ended
            accept_meeting_end(
                world.deps,
                Declared(meeting_code=late, started_at=stay.started_at, ended_at=stay.ended_at),
                source="backfill",
                conference_id=f"conference-{index}",
            )
        return answer

    world.store.with_codes = read_then_race  # type: ignore[method-assign]
    report = world.backfill()

    assert reads == 3
    assert stay.meeting_id not in report.meetings_created  # the other run created it
    assert len(report.meetings_created) == 2 * CODES_PER_READ + 4

    def meetings(of: World) -> dict[str, tuple[object, ...]]:
        return {
            m.meeting_id: (m.meeting_code, m.started_at, m.ended_at)
            for m in of.store.meetings.values()
        }

    assert meetings(world) == meetings(clean)


def test_a_found_meeting_stored_outside_what_discovery_read_is_grown_not_duplicated() -> None:
    """Its creation fails on the store's precondition, and the declaration goes on as for a
    duplicate: the one meeting of the conference now covers its sessions."""
    world = World()
    ((code, start, end),) = world.day_of_classes(1)
    meeting_id = meeting_id_for(meeting_code=code, conference_id="conference-0")
    far = start - timedelta(days=20)
    earlier = accept_meeting_end(
        world.deps,
        Declared(meeting_code=code, started_at=far, ended_at=far + 10 * M),
        source="backfill",
        conference_id="conference-0",
    ).meeting
    assert earlier.meeting_id == meeting_id

    report = world.backfill()

    assert report.meetings_created == []
    (stored,) = world.store.meetings.values()
    assert stored.meeting_id == meeting_id
    assert stored.started_at is not None
    assert stored.started_at <= start
    assert stored.ended_at >= end


def test_a_found_meeting_that_told_its_neighbours_has_the_code_read_again() -> None:
    """The second conference's found meeting changes the first's share: the meetings the next
    declarations plan with are read again, not kept from before it wrote the first."""
    world = World()
    code = "bfx-yyyy-zzz"
    for index, offset in enumerate((0, 70, 140)):
        begin = NOW - timedelta(hours=20) + offset * M
        world.reports.activities += activities_for(
            [Stay("kid@school.example", begin, begin + 60 * M)],
            meeting_code=code,
            conference_id=f"conference-{index}",
        )

    report = world.backfill()

    # The first found meeting's window takes the second conference; the third's tells it.
    first_found, _third_found = report.meetings_created
    repolls = [t.task for t in world.queue.tasks if t.task.meeting_id == first_found]
    assert [task.reason for task in repolls].count("neighbour") == 1, "the first was told"
    whole_reads = [ended for read_code, ended in world.store.code_reads if read_code == code]
    first = whole_reads[0]  # the group's read
    assert whole_reads.count(first) > 1, "read again after a declaration that told"
    assert world.store.declaration_reads_made == 0
