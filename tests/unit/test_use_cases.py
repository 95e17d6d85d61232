"""The use cases over in-memory ports: chains, settling, estimates, failures, neighbours, merges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.chain import chain_task_id
from functions.declarations import accept_meeting_end
from functions.errors import Busy, ReportsError
from functions.model import Declared, MeetingRecord
from functions.participant_keys import participant_doc_id
from functions.polling import PollOutcome, Skipped, handle_collect_task, poll_meeting
from functions.ports import CollectTask, Deps
from functions.schedule import Status, Timing
from local.simulate import Stay, activities_for, call_ended
from tests.fakes import ManualClock, MemoryQueue, MemoryStore, ScriptedReports

CODE = "abc-defg-hij"
START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 20, 10, 45, tzinfo=UTC)
TEACHER = "teacher@school.example"
STUDENT = "student@school.example"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def polled(outcome: PollOutcome | Skipped) -> PollOutcome:
    assert isinstance(outcome, PollOutcome)
    return outcome


class World:
    def __init__(self, now: datetime = END) -> None:
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.reports = ScriptedReports()
        self.clock = ManualClock(now)
        self.deps = Deps(
            store=self.store,
            queue=self.queue,
            reports=self.reports,
            clock=self.clock,
            timing=Timing(),
        )

    def declare(self, **overrides: object) -> MeetingRecord:
        values: dict[str, object] = {
            "meeting_code": CODE,
            "ended_at": END,
            "started_at": START,
            "external_id": "class-1",
            "expected_participants": (TEACHER, STUDENT),
        }
        values.update(overrides)
        return accept_meeting_end(self.deps, Declared(**values)).meeting  # type: ignore[arg-type]

    def run_next(self) -> MeetingRecord:
        queued = self.queue.pop_next()
        self.clock.now = max(self.clock.now, queued.at)
        meeting = handle_collect_task(self.deps, queued.task).meeting
        assert meeting is not None
        return meeting

    def class_activities(self, conference: str = "conf-1") -> None:
        self.reports.activities += activities_for(
            [
                Stay(TEACHER, START - minutes(5), END + minutes(2)),
                Stay(STUDENT, START, START + minutes(20)),
                Stay(STUDENT, START + minutes(22), END),
            ],
            meeting_code=CODE,
            conference_id=conference,
        )


def test_a_new_meeting_gets_estimates_and_the_first_named_task() -> None:
    world = World()
    meeting = world.declare()
    assert meeting.status is Status.SCHEDULED
    # Asked for, not marked: a duplicate asks Cloud Tasks again for the named task instead of
    # every webhook paying a write for the mark; the first poll marks the next link.
    assert not meeting.chain_started
    assert [(t.task, t.at) for t in world.queue.tasks] == [
        (CollectTask(meeting.meeting_id, 1, "poll"), END + minutes(15))
    ]
    assert world.queue.tasks[0].task_id == chain_task_id(meeting.meeting_id, 1)
    docs = {d["participant_key"]: d for d in world.store.participants(meeting.meeting_id)}
    assert set(docs) == {TEACHER, STUDENT}
    assert all(d["estimated"] and d["attended_seconds"] == 45 * 60 for d in docs.values())
    assert meeting.deadline == END + timedelta(days=1)
    assert meeting.window_start == START - minutes(15)


def test_the_same_meeting_twice_is_one_meeting_and_one_chain() -> None:
    world = World()
    first = world.declare()
    second = world.declare()
    assert first.meeting_id == second.meeting_id
    assert len(world.store.meetings) == 1
    assert len(world.queue.tasks) == 1


def test_a_chain_that_never_started_is_started_by_the_duplicate() -> None:
    world = World()
    meeting = world.declare()
    # Simulate a crash between the document and the task.
    world.queue.tasks.clear()
    world.queue.names.clear()
    world.store.meetings[meeting.meeting_id] = replace(meeting, chain_started=False)
    world.declare()
    assert [t.task_id for t in world.queue.tasks] == [chain_task_id(meeting.meeting_id, 1)]


def test_replayed_webhook_id_answers_with_its_meeting() -> None:
    world = World()
    meeting = accept_meeting_end(
        world.deps, Declared(meeting_code=CODE, ended_at=END), webhook_id="msg_1"
    ).meeting
    replay = accept_meeting_end(
        world.deps, Declared(meeting_code="zzz-zzzz-zzz", ended_at=END), webhook_id="msg_1"
    )
    assert replay.meeting.meeting_id == meeting.meeting_id
    assert not replay.created
    assert len(world.store.meetings) == 1


def test_chain_collects_then_settles_and_marks_absences() -> None:
    world = World()
    meeting = world.declare(expected_participants=(TEACHER, STUDENT, "absent@school.example"))
    world.class_activities()
    polled = world.run_next()
    assert polled.status is Status.COLLECTING
    assert polled.revision == 1
    assert polled.attendance_source == "reports"
    assert polled.missing_participants == ("absent@school.example",)
    docs = {d["participant_key"]: d for d in world.store.participants(meeting.meeting_id)}
    assert docs["absent@school.example"]["estimated"] is True
    assert docs[STUDENT]["estimated"] is False
    assert docs[STUDENT]["attended_seconds"] == 43 * 60
    # Teacher from START-5 to END+2: nothing clipped without a neighbour.
    assert docs[TEACHER]["attended_seconds"] == 52 * 60
    assert polled.participant_count == 2
    assert polled.total_attended_seconds == 95 * 60

    # Unchanged re-polls write no participant document until the absent grace completes it.
    writes_before = world.store.participant_writes
    for _ in range(3):
        polled = world.run_next()
        assert polled.status is Status.COLLECTING
    assert world.store.participant_writes == writes_before
    assert polled.revision == 1
    while polled.status is not Status.COMPLETE:
        polled = world.run_next()
    assert world.clock.now - END >= timedelta(seconds=Timing().absent_grace_s)
    docs = {d["participant_key"]: d for d in world.store.participants(meeting.meeting_id)}
    assert docs["absent@school.example"]["absent"] is True
    assert docs["absent@school.example"]["estimated"] is False
    assert {d["meeting_status"] for d in docs.values()} == {"complete"}
    assert polled.revision == 2
    assert world.queue.tasks == []  # the chain ended
    revisions = world.store.revision_docs[meeting.meeting_id]
    assert sorted(revisions) == [1, 2]
    assert revisions[2]["changes"] == [
        {"participant_key": "absent@school.example", "before": 45 * 60, "after": 0}
    ]


def test_all_expected_seen_completes_after_settle() -> None:
    world = World()
    world.declare()
    world.class_activities()
    first = world.run_next()
    second = world.run_next()
    assert first.status is Status.COLLECTING
    assert second.status is Status.COMPLETE
    assert second.completed_at == END + minutes(45)


def test_late_events_raise_the_revision_and_leave_an_audit_record() -> None:
    world = World()
    meeting = world.declare(expected_participants=())
    world.reports.activities += activities_for(
        [Stay(TEACHER, START, END)], meeting_code=CODE, conference_id="c1"
    )
    assert world.run_next().revision == 1
    world.reports.activities += activities_for(
        [Stay(STUDENT, START, END)], meeting_code=CODE, conference_id="c2"
    )
    polled = world.run_next()
    assert polled.revision == 2
    assert polled.conference_ids == ("c1", "c2")
    change = world.store.revision_docs[meeting.meeting_id][2]
    assert change["reason"] == "poll"
    assert change["changes"] == [{"participant_key": STUDENT, "before": None, "after": 45 * 60}]


def test_duplicate_delivery_of_a_link_is_stale_and_does_not_fork() -> None:
    world = World()
    meeting = world.declare()
    world.class_activities()
    first = world.queue.tasks[0]
    world.clock.now = first.at
    handle_collect_task(world.deps, first.task)
    tasks_after_first = list(world.queue.tasks)
    outcome = handle_collect_task(world.deps, first.task)
    assert outcome.skipped_reason == "stale"
    assert world.queue.tasks == tasks_after_first
    assert world.store.meetings[meeting.meeting_id].attempts == 1


def test_a_crash_after_commit_is_healed_by_the_retry() -> None:
    world = World()
    meeting = world.declare()
    world.class_activities()
    link = world.queue.pop_next()
    world.clock.now = link.at
    handle_collect_task(world.deps, link.task)
    # The next link was lost (as if the process died before creating it).
    world.queue.tasks.clear()
    world.queue.names.clear()
    outcome = handle_collect_task(world.deps, link.task)
    assert outcome.skipped_reason == "stale"
    assert [t.task for t in world.queue.tasks] == [CollectTask(meeting.meeting_id, 2, "poll")]


def test_a_held_lease_makes_a_concurrent_delivery_busy() -> None:
    world = World()
    meeting = world.declare()
    world.store.meetings[meeting.meeting_id] = replace(
        meeting, lease_owner="someone", lease_until=world.clock.now + minutes(1)
    )
    with pytest.raises(Busy):
        handle_collect_task(world.deps, CollectTask(meeting.meeting_id, 1, "poll"))
    world.clock.now += minutes(2)  # the holder crashed: its lease expires
    assert handle_collect_task(world.deps, CollectTask(meeting.meeting_id, 1, "poll")).polled


def test_permission_errors_are_recorded_and_the_schedule_kept_until_fixed() -> None:
    world = World()
    world.declare()
    denied = ReportsError("the Reports API refused access (403): ...", kind="permission")
    world.reports.failures = [denied, denied]
    first = world.run_next()
    assert first.status is Status.SCHEDULED
    assert first.last_error is not None
    assert first.last_error.code == "permission"
    assert first.next_poll_at == world.clock.now + minutes(30)
    world.run_next()
    world.class_activities()
    fixed = world.run_next()
    assert fixed.status is Status.COLLECTING
    assert fixed.last_error is None


def test_every_poll_failing_ends_failed_and_nothing_ends_no_data() -> None:
    world = World()
    world.declare(expected_participants=())
    world.reports.failures = [ReportsError("quota", kind="quota")] * 50
    meeting = world.run_next()
    while world.queue.tasks:
        meeting = world.run_next()
    assert meeting.status is Status.FAILED
    assert meeting.attempts == 10

    quiet = World()
    quiet.declare(external_id="class-2", expected_participants=())
    while quiet.queue.tasks:
        meeting = quiet.run_next()
    assert meeting.status is Status.NO_DATA


def test_meeting_created_after_its_deadline_is_polled_once_then_final() -> None:
    world = World(now=END + timedelta(days=2))
    meeting = world.declare()
    assert meeting.next_poll_at == world.clock.now
    world.class_activities()
    polled = world.run_next()
    assert polled.status is Status.COMPLETE
    assert world.queue.tasks == []


def test_new_times_for_an_external_id_reschedule_the_chain() -> None:
    world = World()
    meeting = world.declare()
    later = END + minutes(30)
    moved = world.declare(ended_at=later)
    assert moved.meeting_id == meeting.meeting_id
    assert moved.ended_at == later
    assert moved.chain_seq == 2
    assert {(t.task.attempt, t.at) for t in world.queue.tasks} == {
        (1, END + minutes(15)),
        (2, later + minutes(15)),
    }
    stale = world.run_next()
    assert stale.attempts == 0  # link 1 is stale now


def test_back_to_back_classes_split_the_tutor_at_the_boundary() -> None:
    world = World()
    second_start = END + minutes(15)
    second_end = second_start + minutes(45)
    first = world.declare(external_id="first", expected_participants=())
    second = world.declare(
        external_id="second",
        started_at=second_start,
        ended_at=second_end,
        expected_participants=(),
    )
    world.reports.activities += activities_for(
        [
            Stay("tutor@school.example", START, second_end),
            Stay("a@school.example", START, END),
            Stay("b@school.example", second_start, second_end),
        ],
        meeting_code=CODE,
        conference_id="room",
    )
    world.clock.now = second_end + minutes(20)
    one = polled(poll_meeting(world.deps, first.meeting_id, reason="manual")).selected
    two = polled(poll_meeting(world.deps, second.meeting_id, reason="manual")).selected
    assert one is not None
    assert two is not None
    boundary = END + (second_start - END) / 2
    in_one = {p.participant_key: p.attended_seconds for p in one.participants}
    in_two = {p.participant_key: p.attended_seconds for p in two.participants}
    assert in_one == {
        "tutor@school.example": (boundary - START).total_seconds(),
        "a@school.example": 45 * 60,
    }
    assert in_two == {
        "tutor@school.example": (second_end - boundary).total_seconds(),
        "b@school.example": 45 * 60,
    }


def test_a_new_neighbour_requests_a_repoll_of_the_meeting_whose_span_changed() -> None:
    world = World()
    first = world.declare(external_id="first")
    world.queue.tasks.clear()
    world.declare(external_id="second", started_at=END + minutes(15), ended_at=END + minutes(60))
    repolls = [t for t in world.queue.tasks if t.task.reason == "neighbour"]
    assert [t.task.meeting_id for t in repolls] == [first.meeting_id]
    assert repolls[0].at == world.clock.now


@pytest.mark.parametrize("unbounded_and_gone_from_reports", [False, True])
def test_a_webhook_absorbs_an_overlapping_backfill_meeting(
    unbounded_and_gone_from_reports: bool,
) -> None:
    """Also when the absorbed meeting's sessions are in documents its meeting document does not
    bound (a staged change of its that never landed leaves them so) and Reports no longer has
    them: the declared meeting takes them from those documents (Meet schedule 6900)."""
    world = World(now=END + timedelta(hours=30))
    backfilled = accept_meeting_end(
        world.deps,
        Declared(meeting_code=CODE, ended_at=END, started_at=START - minutes(5)),
        source="backfill",
    ).meeting
    world.class_activities()
    world.run_next()
    found = world.store.meetings[backfilled.meeting_id]
    assert found.status is Status.COMPLETE
    if unbounded_and_gone_from_reports:
        unbounded = replace(found, sessions_start=None, sessions_end=None)
        world.store.meetings[found.meeting_id] = unbounded
        world.reports.activities.clear()
    webhook = world.declare(external_id="late-webhook")
    merged = world.store.meetings[backfilled.meeting_id]
    assert merged.status is Status.MERGED
    assert merged.merged_into == webhook.meeting_id
    docs = world.store.participants(backfilled.meeting_id)
    assert {d["meeting_status"] for d in docs} == {"merged"}
    polled = world.run_next()
    assert polled.meeting_id == webhook.meeting_id
    assert polled.status is Status.COMPLETE
    assert polled.participant_count == 2


def test_ip_addresses_are_truncated_before_storing() -> None:
    world = World()
    world.deps = Deps(
        store=world.store,
        queue=world.queue,
        reports=world.reports,
        clock=world.clock,
        ip_mode="truncated",
    )
    meeting = world.declare(expected_participants=())
    world.reports.activities.append(
        call_ended(
            meeting_code=CODE,
            conference_id="c",
            leave=END,
            duration_s=60,
            identifier=TEACHER,
            ip_address="198.51.100.77",
        )
    )
    world.run_next()
    doc = world.store.participant_docs[meeting.meeting_id][participant_doc_id(TEACHER)]
    assert doc["sessions"][0]["ip_address"] == "198.51.100.0"
