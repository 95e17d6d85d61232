"""Erasure (docs/rules.md "Privacy"): a participant erased is gone from every meeting, named only by
its keyed hash in the audit trail, and never comes back — from a later poll, a re-declaration, a
replayed webhook, a neighbour's sessions, or a poll that was already running. Over the in-memory
ports, through the real use cases."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.backfill import run_backfill
from functions.declarations import accept_meeting_end
from functions.erasure import erase_participant
from functions.errors import ConfigError, ReportsError
from functions.model import Declared, MeetingRecord
from functions.participant_keys import erasure_name
from functions.polling import poll_meeting
from functions.ports import MeetingCommit, Versioned
from functions.schedule import Status
from functions.stored_state import committed
from local.simulate import Stay, activities_for
from tests.unit.test_use_cases import CODE, END, START, STUDENT, TEACHER, World, minutes

SECRET = "erasure-key-of-the-tests-0123456789"
NAME = erasure_name(STUDENT, SECRET)
OTHER = "other@school.example"


def erasing_world() -> World:
    world = World()
    world.deps = replace(world.deps, erasure_key=SECRET)
    return world


def complete(world: World, **declared: object) -> MeetingRecord:
    meeting = world.declare(**declared)
    while world.store.meetings[meeting.meeting_id].status is not Status.COMPLETE:
        world.run_next()
    return world.store.meetings[meeting.meeting_id]


def everything(world: World) -> str:
    """Every value the store holds, as one text: what must never contain an erased key."""
    store = world.store
    held = {
        "meetings": {k: m.to_document() for k, m in store.meetings.items()},
        "participants": store.participant_docs,
        "revisions": store.revision_docs,
        "deliveries": store.deliveries,
    }
    return json.dumps(held, default=str, sort_keys=True)


def keys_of(world: World, meeting_id: str) -> set[str]:
    meeting = world.store.meetings[meeting_id]
    return {
        str(d["participant_key"]) for d in committed(world.store.participants(meeting_id), meeting)
    }


def student_sessions(conference: str = "conf-1") -> list[Any]:
    return activities_for(
        [Stay(STUDENT, START, START + minutes(20)), Stay(STUDENT, START + minutes(22), END)],
        meeting_code=CODE,
        conference_id=conference,
    )


def test_an_erased_participant_is_gone_from_every_meeting_and_named_only_by_its_hash() -> None:
    world = erasing_world()
    world.class_activities()
    first = complete(world)
    before = world.store.meetings[first.meeting_id]
    assert STUDENT in keys_of(world, first.meeting_id)
    assert STUDENT in everything(world)
    student_seconds = next(
        int(d["attended_seconds"])
        for d in world.store.participants(first.meeting_id)
        if d["participant_key"] == STUDENT
    )

    changed = erase_participant(world.deps, STUDENT)

    assert changed == 1
    after = world.store.meetings[first.meeting_id]
    assert keys_of(world, first.meeting_id) == {TEACHER}
    assert STUDENT not in after.expected_participants
    assert after.participant_count == before.participant_count - 1
    assert after.total_attended_seconds == before.total_attended_seconds - student_seconds
    assert after.status is Status.COMPLETE
    assert after.revision == before.revision + 1
    latest = world.store.revision_docs[first.meeting_id][after.revision]
    assert latest["reason"] == "erasure"
    assert latest["changes"] == [
        {"participant_key": NAME, "before": student_seconds, "after": None}
    ]
    # Every earlier revision record names the hash instead of the key.
    named = [
        c["participant_key"]
        for r in world.store.revision_docs[first.meeting_id].values()
        for c in r["changes"]
    ]
    assert NAME in named
    assert STUDENT not in named
    assert STUDENT not in everything(world)
    assert world.store.erased() == {NAME}


def test_erasing_again_changes_nothing() -> None:
    world = erasing_world()
    world.class_activities()
    complete(world)
    assert erase_participant(world.deps, STUDENT) == 1
    snapshot = everything(world)
    writes = world.store.writes
    assert erase_participant(world.deps, STUDENT) == 0
    assert everything(world) == snapshot
    assert world.store.writes == writes + 1  # the erasure record, found already there


def test_no_later_poll_redeclaration_or_replay_brings_the_participant_back() -> None:
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    erase_participant(world.deps, STUDENT)

    # Reports still holds the student's sessions: a manual sync leaves them out.
    poll_meeting(world.deps, meeting.meeting_id, reason="manual")
    # The platform sends the class again, the student expected; and replays its webhook.
    world.declare(expected_participants=(TEACHER, STUDENT))
    # Not even until the next poll: the declaration itself leaves the student out.
    assert STUDENT not in world.store.meetings[meeting.meeting_id].expected_participants
    assert STUDENT not in everything(world)
    declared = Declared(
        meeting_code=CODE,
        ended_at=END,
        started_at=START,
        external_id="class-1",
        expected_participants=(STUDENT,),
    )
    accept_meeting_end(world.deps, declared, webhook_id="msg-1")
    accept_meeting_end(world.deps, declared, webhook_id="msg-1")
    # A second class the same day, with the student in it and expected.
    world.clock.now = END + timedelta(hours=3)
    later_end = END + timedelta(hours=2)
    world.reports.activities += activities_for(
        [Stay(STUDENT, later_end - minutes(30), later_end)],
        meeting_code=CODE,
        conference_id="conf-2",
    )
    second = world.declare(
        external_id="class-2",
        started_at=later_end - minutes(45),
        ended_at=later_end,
        expected_participants=(STUDENT, OTHER),
    )
    while world.queue.tasks:
        world.run_next()

    for meeting_id in (meeting.meeting_id, second.meeting_id):
        assert STUDENT not in keys_of(world, meeting_id)
        stored = world.store.meetings[meeting_id]
        assert STUDENT not in stored.expected_participants
        assert STUDENT not in stored.missing_participants
    assert OTHER in world.store.meetings[second.meeting_id].expected_participants
    assert STUDENT not in everything(world)


def test_a_poll_that_finds_an_erasure_names_the_participant_by_its_hash() -> None:
    """Any poll, not only the erasure's own: the revision record it writes for the removed
    participant names the hash (nothing renames it afterwards)."""
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    world.store.record_erasure(NAME, at=END)  # recorded; this meeting not reached yet

    poll_meeting(world.deps, meeting.meeting_id, reason="manual")

    stored = world.store.meetings[meeting.meeting_id]
    latest = world.store.revision_docs[meeting.meeting_id][stored.revision]
    assert [c["participant_key"] for c in latest["changes"]] == [NAME]
    assert latest["participant_keys"] == [NAME]
    assert STUDENT not in stored.missing_participants
    assert STUDENT not in everything(world)


def test_a_failing_reports_answer_does_not_stop_the_erasure() -> None:
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    world.reports.failures.append(ReportsError("Reports is down", kind="transient"))
    assert erase_participant(world.deps, STUDENT) == 1
    assert keys_of(world, meeting.meeting_id) == {TEACHER}
    stored = world.store.meetings[meeting.meeting_id]
    assert stored.status is Status.COMPLETE
    assert stored.last_error is not None  # recorded as any failed sync is
    assert STUDENT not in everything(world)


def test_the_backfill_neither_misses_nor_brings_back_an_erased_participant() -> None:
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    # The student alone in an unannounced conference, later that day.
    world.reports.activities += activities_for(
        [Stay(STUDENT, END + timedelta(hours=2), END + timedelta(hours=3))],
        meeting_code="zzz-yyyy-xxx",
        conference_id="conf-alone",
    )
    erase_participant(world.deps, STUDENT)
    world.clock.now = END + timedelta(hours=4)
    revision = world.store.meetings[meeting.meeting_id].revision

    report = run_backfill(world.deps, since=START - timedelta(hours=1), until=world.clock.now)

    # Reports still holds the student's sessions: not "late data" for the class, and no
    # meeting of the student's own.
    assert report.repolled == []
    assert report.meetings_created == []
    assert world.store.meetings[meeting.meeting_id].revision == revision
    assert STUDENT not in everything(world)


def test_an_expected_participant_never_seen_is_erased_from_the_lists() -> None:
    world = erasing_world()
    meeting = world.declare(expected_participants=(TEACHER, STUDENT))
    assert STUDENT in world.store.meetings[meeting.meeting_id].expected_participants
    assert erase_participant(world.deps, STUDENT) == 1
    stored = world.store.meetings[meeting.meeting_id]
    assert stored.expected_participants == (TEACHER,)
    assert keys_of(world, meeting.meeting_id) == {TEACHER}
    assert STUDENT not in everything(world)


def test_a_meeting_the_participant_left_is_found_by_its_revision_records() -> None:
    # Expected, then declared again without them: their estimate is gone and no list names them;
    # only the audit trail does, and the erasure must find the meeting through it.
    world = erasing_world()
    meeting = world.declare(expected_participants=(TEACHER, STUDENT))
    world.declare(expected_participants=(TEACHER,))
    assert STUDENT not in keys_of(world, meeting.meeting_id)
    assert STUDENT in json.dumps(world.store.revision_docs[meeting.meeting_id], default=str)
    erase_participant(world.deps, STUDENT)
    assert STUDENT not in everything(world)


def test_a_merged_meeting_is_erased_too() -> None:
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    # Stand in for a found meeting merged into this one: its documents are its audit trail.
    merged_id = "b-merged"
    world.store.meetings[merged_id] = replace(
        world.store.meetings[meeting.meeting_id],
        meeting_id=merged_id,
        status=Status.MERGED,
        merged_into=meeting.meeting_id,
    )
    world.store.versions[merged_id] = 1
    world.store.participant_docs[merged_id] = copy.deepcopy(
        world.store.participant_docs[meeting.meeting_id]
    )
    world.store.revision_docs[merged_id] = copy.deepcopy(
        world.store.revision_docs[meeting.meeting_id]
    )

    assert erase_participant(world.deps, STUDENT) == 2

    assert STUDENT not in keys_of(world, merged_id)
    assert world.store.meetings[merged_id].status is Status.MERGED
    assert STUDENT not in everything(world)


def test_a_meeting_merged_between_the_erasure_s_read_and_its_poll_is_erased_too() -> None:
    """The erasure read the meeting before a declaration absorbed it; its poll then skips it as
    merged, and the merged meeting keeps its documents: they are erased as a merged meeting's."""
    world = erasing_world()
    world.class_activities()
    meeting = complete(world)
    meeting_id = meeting.meeting_id
    store = world.store
    get = store.get
    merged_meanwhile = False

    def merged_after_the_first_read(wanted: str) -> MeetingRecord | None:
        nonlocal merged_meanwhile
        found = get(wanted)
        if wanted == meeting_id and not merged_meanwhile:
            # What a declaration absorbing it commits, right after the erasure's read.
            merged_meanwhile = True
            current = store.meetings[meeting_id]
            store.meetings[meeting_id] = replace(
                current, status=Status.MERGED, merged_into="x-absorbing"
            )
            store.versions[meeting_id] = store.versions[meeting_id] + 1
        return found

    store.get = merged_after_the_first_read  # type: ignore[method-assign,assignment]
    assert erase_participant(world.deps, STUDENT) == 1
    assert merged_meanwhile
    assert STUDENT not in keys_of(world, meeting_id)
    assert store.meetings[meeting_id].status is Status.MERGED
    assert STUDENT not in everything(world)


def found_meeting_half_taken(world: World) -> tuple[str, str]:
    """A found meeting holding the student and another person, and a declared meeting that has
    since stored the other's session (the found meeting's re-poll not run yet): their ids."""
    world.clock.now = START + timedelta(hours=6)
    world.reports.activities += activities_for(
        [
            Stay(OTHER, START, START + minutes(30)),
            Stay(STUDENT, START + minutes(120), START + minutes(150)),
        ],
        meeting_code=CODE,
        conference_id="conf-found",
    )
    (found_id,) = run_backfill(
        world.deps, since=START - timedelta(hours=1), until=world.clock.now
    ).meetings_created
    while world.store.meetings[found_id].status is not Status.COMPLETE:
        world.run_next()
    declared = world.declare(
        started_at=START, ended_at=START + minutes(30), expected_participants=(OTHER,)
    )
    poll_meeting(world.deps, declared.meeting_id, reason="manual")
    assert keys_of(world, declared.meeting_id) == {OTHER}
    assert keys_of(world, found_id) == {OTHER, STUDENT}
    return found_id, declared.meeting_id


def test_a_found_meeting_its_erasure_poll_merges_keeps_nothing_of_the_participant() -> None:
    """The erasure's poll hands the other's session over and leaves the student out: nothing is
    left, so the poll merges the meeting, and a merged meeting keeps its documents. The
    student's is erased all the same, with its totals and its audit entry."""
    world = erasing_world()
    found_id, declared_id = found_meeting_half_taken(world)

    assert erase_participant(world.deps, STUDENT) == 1

    found = world.store.meetings[found_id]
    assert found.status is Status.MERGED
    assert found.merged_into == declared_id
    assert STUDENT not in keys_of(world, found_id)
    assert found.participant_count == 1  # the other's document is its audit trail
    revisions = world.store.revision_docs[found_id]
    assert revisions[found.revision]["changes"][0]["participant_key"] == NAME
    assert STUDENT not in everything(world)
    assert erase_participant(world.deps, STUDENT) == 0


def test_a_found_meeting_that_gave_part_away_and_whose_rest_is_erased_is_merged() -> None:
    """Its re-poll handed the other's session to the declared meeting and kept the student's;
    once the student is erased nothing of it is left: merged into the meeting that took its
    part, as if that meeting had taken it all (erasure schedule seed 6929)."""
    world = erasing_world()
    found_id, declared_id = found_meeting_half_taken(world)
    poll_meeting(world.deps, found_id, reason="neighbour")
    partly = world.store.meetings[found_id]
    assert partly.status is Status.COMPLETE
    assert partly.partly_merged_into == (declared_id,)
    assert keys_of(world, found_id) == {STUDENT}

    assert erase_participant(world.deps, STUDENT) == 1

    found = world.store.meetings[found_id]
    assert found.status is Status.MERGED
    assert found.merged_into == declared_id
    assert STUDENT not in everything(world)
    assert keys_of(world, declared_id) == {OTHER}


def test_an_erasure_that_died_between_the_merge_and_its_own_commit_finishes_when_run_again() -> (
    None
):
    world = erasing_world()
    found_id, _ = found_meeting_half_taken(world)
    commit = world.store.commit

    def dies_at_the_erasing_commit(change: MeetingCommit) -> Versioned | None:
        if change.meeting.meeting_id == found_id and change.deletes:
            raise RuntimeError("the process died")
        return commit(change)

    world.store.commit = dies_at_the_erasing_commit  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="died"):
        erase_participant(world.deps, STUDENT)
    assert world.store.meetings[found_id].status is Status.MERGED  # the poll's commit landed
    assert STUDENT in keys_of(world, found_id)

    world.store.commit = commit  # type: ignore[method-assign]
    assert erase_participant(world.deps, STUDENT) == 1
    assert STUDENT not in keys_of(world, found_id)
    assert STUDENT not in everything(world)


def test_a_poll_running_while_the_erasure_is_recorded_erases_after_its_commit() -> None:
    """The poll read the erasures before the record; the erasure searched before the poll's
    commit stored the student (new to this meeting): the check after the commit removes it."""
    world = erasing_world()
    meeting = world.declare(expected_participants=(TEACHER,))
    world.reports.activities += student_sessions()
    store = world.store
    commit = store.commit
    erased_first = False

    def erase_then_commit(change: MeetingCommit) -> Versioned | None:
        nonlocal erased_first
        if not erased_first and any(r.participant_key == STUDENT for r in change.upserts):
            erased_first = True
            assert erase_participant(world.deps, STUDENT) == 0  # nothing stored yet
        return commit(change)

    store.commit = erase_then_commit  # type: ignore[method-assign]
    poll_meeting(world.deps, meeting.meeting_id, reason="manual")

    assert erased_first
    assert STUDENT not in keys_of(world, meeting.meeting_id)
    assert STUDENT not in everything(world)


def test_an_erasure_that_died_halfway_finishes_when_run_again() -> None:
    world = erasing_world()
    world.class_activities()
    first = complete(world)
    world.clock.now = END + timedelta(hours=3)
    later_end = END + timedelta(hours=2)
    world.reports.activities += activities_for(
        [Stay(STUDENT, later_end - minutes(30), later_end)],
        meeting_code=CODE,
        conference_id="conf-2",
    )
    second = complete(
        world,
        external_id="class-2",
        started_at=later_end - minutes(45),
        ended_at=later_end,
        expected_participants=(STUDENT,),
    )
    clean = erasing_world()
    clean.store = copy.deepcopy(world.store)
    clean.deps = replace(world.deps, store=clean.store)

    rename = world.store.rename_in_revisions
    calls = 0

    def dies_on_the_second_meeting(meeting_id: str, key: str, name: str) -> int:
        nonlocal calls
        calls += 1
        if meeting_id == second.meeting_id:
            raise RuntimeError("instance died")
        return rename(meeting_id, key, name)

    world.store.rename_in_revisions = dies_on_the_second_meeting  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        erase_participant(world.deps, STUDENT)
    world.store.rename_in_revisions = rename  # type: ignore[method-assign]
    assert STUDENT in keys_of(world, second.meeting_id)
    # A poll in between already leaves the student out: the erasure is recorded.
    poll_meeting(world.deps, second.meeting_id, reason="manual")
    assert STUDENT not in keys_of(world, second.meeting_id)

    erase_participant(world.deps, STUDENT)
    erase_participant(clean.deps, STUDENT)
    for meeting_id in (first.meeting_id, second.meeting_id):
        assert keys_of(world, meeting_id) == keys_of(clean, meeting_id)
        got, want = world.store.meetings[meeting_id], clean.store.meetings[meeting_id]
        assert (got.participant_count, got.total_attended_seconds) == (
            want.participant_count,
            want.total_attended_seconds,
        )
    assert STUDENT not in everything(world)


def test_erasing_needs_the_key_and_polls_refuse_to_ignore_recorded_erasures() -> None:
    world = World()
    world.class_activities()
    meeting = complete(world)
    with pytest.raises(ConfigError, match="ERASURE_KEY"):
        erase_participant(world.deps, STUDENT)
    world.store.record_erasure(NAME, at=END)
    with pytest.raises(ConfigError, match="ERASURE_KEY"):
        poll_meeting(world.deps, meeting.meeting_id, reason="manual")


def test_the_erasure_name_is_keyed() -> None:
    assert erasure_name(STUDENT, SECRET) != erasure_name(STUDENT, SECRET + "x")
    assert erasure_name(STUDENT, SECRET) != erasure_name(OTHER, SECRET)
    assert len(NAME) == 64
    assert int(NAME, 16) >= 0
