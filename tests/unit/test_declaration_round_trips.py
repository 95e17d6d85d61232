"""A declaration's store calls: a new meeting is one read of everything and one commit (the
meeting, its estimates, its delivery record, on condition that none of its expected was erased
meanwhile); a replay is one read. And what the shortcuts must not lose: a crash after the
commit, a duplicate between the read and the commit, an erasure recorded between them (or
again and again), a neighbour whose share changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from functions.chain import chain_task_id
from functions.declarations import accept_meeting_end
from functions.errors import StoreContention
from functions.intervals import Bounds
from functions.known_meetings import KnownMeetings, known_facts
from functions.model import Declared, MeetingRecord
from functions.participant_keys import erasure_name
from functions.ports import DeclarationFacts, DeclarationReads, Deps, MeetingCommit, Versioned
from tests.fakes import MemoryStore
from tests.unit.test_use_cases import CODE, END, START, STUDENT, TEACHER, World, minutes

ERASURE_KEY = "k" * 32
#: The store calls of a new meeting whose first commit an erasure refused: the erasures among
#: the expected are read, then the declaration is read and committed again without them.
REFUSED_THEN_CREATED = [
    "declaration_reads",
    "commit",
    "erased_among",
    "declaration_reads",
    "commit",
]


class CountingStore(MemoryStore):
    """The memory store, counting the calls a round trip each in Firestore."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        #: How many erasure names each declaration read asked for.
        self.erasure_reads: list[int] = []
        self.before_commit: Callable[[], Any] = lambda: None

    def read(self, meeting_id: str) -> Versioned | None:
        self.calls.append("read")
        return super().read(meeting_id)

    def get(self, meeting_id: str) -> MeetingRecord | None:
        self.calls.append("get")
        return super().get(meeting_id)

    def commit(self, change: MeetingCommit) -> Versioned | None:
        self.calls.append("commit")
        hook, self.before_commit = self.before_commit, lambda: None
        hook()
        return super().commit(change)

    def declaration_reads(self, reads: DeclarationReads) -> DeclarationFacts:
        self.calls.append("declaration_reads")
        self.erasure_reads.append(len(reads.erasure_names))
        return super().declaration_reads(reads)

    def erased_among(self, names: Any) -> frozenset[str]:
        self.calls.append("erased_among")
        return super().erased_among(names)

    def erased(self) -> frozenset[str]:
        self.calls.append("erased")
        return super().erased()

    def participants(self, meeting_id: str) -> list[dict[str, Any]]:
        self.calls.append("participants")
        return super().participants(meeting_id)

    def remember_delivery(self, **kwargs: Any) -> None:
        self.calls.append("remember_delivery")
        super().remember_delivery(**kwargs)


def world() -> tuple[World, CountingStore]:
    made = World()
    store = CountingStore()
    made.store = store
    made.deps = Deps(
        store=store,
        queue=made.queue,
        reports=made.reports,
        clock=made.clock,
        timing=made.deps.timing,
        erasure_key=ERASURE_KEY,
    )
    return made, store


def declared(**overrides: Any) -> Declared:
    values: dict[str, Any] = {
        "meeting_code": CODE,
        "ended_at": END,
        "started_at": START,
        "external_id": "class-1",
        "expected_participants": (TEACHER, STUDENT),
    }
    values.update(overrides)
    return Declared(**values)


def test_a_new_meeting_is_one_read_and_one_commit() -> None:
    made, store = world()
    accepted = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert accepted.created
    assert store.calls == ["declaration_reads", "commit"], store.calls
    meeting = store.meetings[accepted.meeting.meeting_id]
    assert meeting.neighbours_told_of == meeting.times  # nobody to tell: recorded as told
    assert store.deliveries == {"wh-1": meeting.meeting_id}
    assert {d["participant_key"] for d in store.participants(meeting.meeting_id)} == {
        TEACHER,
        STUDENT,
    }
    assert [t.task_id for t in made.queue.tasks] == [chain_task_id(meeting.meeting_id, 1)]


def test_a_replay_is_one_read_and_asks_for_the_named_task_again() -> None:
    made, store = world()
    first = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    store.calls.clear()
    again = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert not again.created
    assert again.meeting.meeting_id == first.meeting.meeting_id
    assert store.calls == ["declaration_reads"]
    assert len(made.queue.tasks) == 1  # the same named task


def test_a_crash_after_the_commit_is_healed_by_the_retry() -> None:
    made, store = world()
    broken = made.queue.enqueue

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("instance died")

    made.queue.enqueue = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert store.meetings  # committed,
    assert not made.queue.tasks  # never enqueued
    made.queue.enqueue = broken  # type: ignore[method-assign]
    retried = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert [t.task_id for t in made.queue.tasks] == [chain_task_id(retried.meeting.meeting_id, 1)]


def test_a_duplicate_created_between_the_read_and_the_commit_is_one_meeting() -> None:
    made, store = world()
    store.before_commit = lambda: accept_meeting_end(made.deps, declared(), webhook_id="wh-2")
    accepted = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert not accepted.created
    assert len(store.meetings) == 1
    assert store.deliveries == {
        "wh-1": accepted.meeting.meeting_id,
        "wh-2": accepted.meeting.meeting_id,
    }
    assert len(made.queue.tasks) == 1
    assert len(store.participants(accepted.meeting.meeting_id)) == 2


def test_an_erasure_recorded_between_the_read_and_the_commit_is_honoured() -> None:
    made, store = world()
    store.before_commit = lambda: store.record_erasure(
        erasure_name(STUDENT, ERASURE_KEY), at=made.clock.now
    )
    accepted = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    # The commit refused, the declaration read again and created it without the student.
    assert store.calls == REFUSED_THEN_CREATED, store.calls
    keys = {d["participant_key"] for d in store.participants(accepted.meeting.meeting_id)}
    assert keys == {TEACHER}
    assert STUDENT not in store.meetings[accepted.meeting.meeting_id].expected_participants
    assert accepted.created
    assert store.deliveries == {"wh-1": accepted.meeting.meeting_id}
    assert [t.task_id for t in made.queue.tasks] == [chain_task_id(accepted.meeting.meeting_id, 1)]


def test_a_new_meeting_naming_someone_erased_before_reads_the_erasures_once_refused() -> None:
    made, store = world()
    store.record_erasure(erasure_name(STUDENT, ERASURE_KEY), at=made.clock.now)
    accepted = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    # The first read asks for no erasure, its commit is refused, the second read asks for both.
    assert store.calls == REFUSED_THEN_CREATED, store.calls
    assert store.erasure_reads == [0, 2]
    keys = {d["participant_key"] for d in store.participants(accepted.meeting.meeting_id)}
    assert keys == {TEACHER}
    assert store.meetings[accepted.meeting.meeting_id].expected_participants == (TEACHER,)
    # Declared again: the meeting exists, its estimates are rewritten without the student.
    again = accept_meeting_end(made.deps, declared(), webhook_id="wh-2")
    assert not again.created
    assert store.meetings[again.meeting.meeting_id].expected_participants == (TEACHER,)
    assert {d["participant_key"] for d in store.participants(again.meeting.meeting_id)} == {TEACHER}


def test_erasures_recorded_before_every_commit_end_in_a_retry_that_stores_nothing() -> None:
    made, store = world()
    roster = tuple(f"student{n}@school.example" for n in range(5))

    def erase_one_more() -> None:
        erased = len(store.erasures)
        store.record_erasure(erasure_name(roster[erased], ERASURE_KEY), at=made.clock.now)
        store.before_commit = erase_one_more

    store.before_commit = erase_one_more
    with pytest.raises(StoreContention):
        accept_meeting_end(made.deps, declared(expected_participants=roster), webhook_id="wh-1")
    assert store.calls.count("commit") == 3
    assert not store.meetings
    assert not store.deliveries
    assert not made.queue.tasks
    store.before_commit = lambda: None
    retried = accept_meeting_end(
        made.deps, declared(expected_participants=roster), webhook_id="wh-1"
    )
    kept = {d["participant_key"] for d in store.participants(retried.meeting.meeting_id)}
    assert kept == set(roster[3:])
    assert store.meetings[retried.meeting.meeting_id].expected_participants == roster[3:]


def test_an_erasure_before_the_landing_of_a_staged_new_meeting_is_honoured() -> None:
    made, store = world()
    store.max_commit_bytes = 2_000  # the estimates of this roster go in stages after the meeting
    roster = tuple(f"student{n}@school.example" for n in range(12))
    store.before_commit = lambda: store.record_erasure(
        erasure_name(roster[4], ERASURE_KEY), at=made.clock.now
    )
    accepted = accept_meeting_end(
        made.deps, declared(expected_participants=roster), webhook_id="wh-1"
    )
    meeting = store.meetings[accepted.meeting.meeting_id]
    kept = {d["participant_key"] for d in store.participants(meeting.meeting_id)}
    assert kept == set(roster) - {roster[4]}
    assert roster[4] not in meeting.expected_participants
    assert len(store.meetings) == 1
    assert store.deliveries == {"wh-1": meeting.meeting_id}
    assert [t.task_id for t in made.queue.tasks] == [chain_task_id(meeting.meeting_id, 1)]


def test_a_new_meeting_without_erasure_key_checks_for_any_erasure_after_its_commit() -> None:
    made, store = world()
    made.deps = replace(made.deps, erasure_key=None)
    accepted = accept_meeting_end(made.deps, declared(), webhook_id="wh-1")
    assert accepted.created
    assert store.calls == ["declaration_reads", "commit", "erased"], store.calls


def test_a_new_meeting_beside_one_whose_share_changes_tells_it() -> None:
    made, store = world()
    earlier = accept_meeting_end(made.deps, declared()).meeting
    made.queue.tasks.clear()
    later = accept_meeting_end(
        made.deps,
        declared(external_id="class-2", started_at=END + minutes(5), ended_at=END + minutes(50)),
    ).meeting
    assert later.neighbours_told_of == later.times
    assert [t.task.meeting_id for t in made.queue.tasks if t.task.reason == "neighbour"] == [
        earlier.meeting_id
    ]
    assert store.meetings[earlier.meeting_id].span_version == earlier.span_version + 1


def _found_reads(**changes: Any) -> DeclarationReads:
    values: dict[str, Any] = {
        "meeting_ids": ["b-own"],
        "meeting_code": CODE,
        "neighbours": Bounds(END - minutes(600), END + minutes(600)),
    }
    values.update(changes)
    return DeclarationReads(**values)


def _stored(meeting_id: str, ended_at_offset: int) -> MeetingRecord:
    made, _ = world()
    record = accept_meeting_end(
        made.deps,
        declared(
            external_id=None,
            expected_participants=(),
            started_at=END + minutes(ended_at_offset - 30),
            ended_at=END + minutes(ended_at_offset),
        ),
    ).meeting
    return replace(record, meeting_id=meeting_id)


WIDE = Bounds(END - minutes(900), END + minutes(900))


@pytest.mark.parametrize(
    ("reads", "known", "answered"),
    [
        (_found_reads(), KnownMeetings(CODE, WIDE, []), True),
        # Anything more to read: the store is asked.
        (_found_reads(webhook_id="wh-1"), KnownMeetings(CODE, WIDE, []), False),
        (_found_reads(erasure_names=["n"]), KnownMeetings(CODE, WIDE, []), False),
        (_found_reads(any_erasure=True), KnownMeetings(CODE, WIDE, []), False),
        (_found_reads(alias="ext"), KnownMeetings(CODE, WIDE, []), False),
        (_found_reads(calendar_event_id="ev"), KnownMeetings(CODE, WIDE, []), False),
        # Another code's read, or one not covering the neighbourhood at either end.
        (_found_reads(), KnownMeetings("zzz-zzzz-zzz", WIDE, []), False),
        (_found_reads(), KnownMeetings(CODE, Bounds(END - minutes(599), WIDE.end), []), False),
        (_found_reads(), KnownMeetings(CODE, Bounds(WIDE.start, END + minutes(599)), []), False),
        # Exactly the neighbourhood is enough (both ends included, as with_code's).
        (_found_reads(), KnownMeetings(CODE, _found_reads().neighbours, []), True),
        # It holds a meeting the declaration may name: read for its version.
        (_found_reads(), KnownMeetings(CODE, WIDE, [_stored("b-own", 0)]), False),
    ],
)
def test_what_a_backfill_knows_replaces_the_read_only_when_it_covers_it(
    reads: DeclarationReads, known: KnownMeetings, answered: bool
) -> None:
    facts = known_facts(reads, known)
    assert (facts is not None) == answered
    if facts is not None:
        assert facts.meetings == {}
        assert facts.delivery is None
        assert not facts.erased


def test_what_a_backfill_knows_gives_only_the_neighbourhood_as_neighbours() -> None:
    inside, edge, outside = _stored("b-in", 0), _stored("b-edge", 600), _stored("b-out", 700)
    facts = known_facts(_found_reads(), KnownMeetings(CODE, WIDE, [inside, edge, outside]))
    assert facts is not None
    assert [m.meeting_id for m in facts.neighbours] == ["b-in", "b-edge"]
