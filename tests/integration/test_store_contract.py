"""One contract for both MeetingStore implementations: the Firestore adapter on Google's emulator
and the in-memory store the unit tests and the simulation run on. What the use cases rely on —
versions, fenced commits that land whole or not at all, staged commits of large changes, status
mirrors — is checked here on both, so the two cannot drift."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

os.environ.setdefault("NO_GCE_CHECK", "True")

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.commits import STAGED
from functions.meeting_search import Cursor, MeetingQuery
from functions.model import AttendanceChange, MeetingRecord, ParticipantRecord, RevisionRecord
from functions.ports import MeetingCommit, MeetingStore, Versioned
from functions.schedule import Status
from functions.stored_state import is_committed
from local.firestore_emulator import FirestoreEmulator
from tests.fakes import MemoryStore
from tests.firestore_reads import stored_revisions
from tests.integration.test_firestore_store import meeting, settings_for

ENDED = datetime(2026, 1, 15, 10, 45, 0, 123000, tzinfo=UTC)
#: Small enough that a few hundred participant documents need stages.
SMALL_REQUEST = 64 * 1024


@dataclass
class Subject:
    """A store under test, with the reads only tests make."""

    store: MeetingStore
    revisions: Callable[[str], list[dict[str, Any]]]


def memory_subject(max_commit_bytes: int) -> Subject:
    """The in-memory store under test (also for tests that run a contract test on it alone)."""
    store = MemoryStore(max_commit_bytes=max_commit_bytes)

    def revisions(meeting_id: str) -> list[dict[str, Any]]:
        documents = store.revision_docs.get(meeting_id, {})
        return [documents[number] for number in sorted(documents)]

    return Subject(store, revisions)


def _firestore(emulator: FirestoreEmulator, max_commit_bytes: int) -> Subject:
    client: firestore.Client = firestore_client(settings_for(emulator))
    store = FirestoreStore(client, max_commit_bytes=max_commit_bytes)
    return Subject(store, lambda meeting_id: stored_revisions(client, meeting_id))


@pytest.fixture(params=["memory", "firestore"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[int], Subject]]:
    if request.param == "memory":
        yield memory_subject
        return
    emulator: FirestoreEmulator = request.getfixturevalue("firestore_db")
    yield lambda max_commit_bytes: _firestore(emulator, max_commit_bytes)


@pytest.fixture
def subject(make: Callable[[int], Subject]) -> Subject:
    return make(1 << 30)


def participant(
    doc_id: str, attended: int = 60, *, revision: int = 1, **extra: Any
) -> ParticipantRecord:
    document = {
        "participant_key": doc_id,
        "attended_seconds": attended,
        "meeting_status": "collecting",
        "revision": revision,
        **extra,
    }
    return ParticipantRecord(doc_id=doc_id, document=document, fingerprint=f"fp-{attended}")


def created(store: MeetingStore, record: MeetingRecord | None = None) -> Versioned:
    record = record or meeting()
    assert store.create(record)
    stored = store.read(record.meeting_id)
    assert stored is not None
    return stored


def commit(store: MeetingStore, base: Versioned, **parts: Any) -> Versioned | None:
    record = parts.pop("meeting", None) or replace(base.record, revision=base.record.revision + 1)
    return store.commit(MeetingCommit(meeting=record, expected=base.version, **parts))


def by_key(store: MeetingStore, meeting_id: str = "c-meeting1") -> dict[str, dict[str, Any]]:
    return {d["participant_key"]: d for d in store.participants(meeting_id)}


# ----------------------------------------------------------------------------- versions


def test_every_write_gives_the_meeting_a_new_version(subject: Subject) -> None:
    store = subject.store
    first = created(store)
    updated = store.update_versioned("c-meeting1", lambda m: replace(m, attempts=1))
    assert updated is not None
    assert updated.version != first.version
    assert store.read("c-meeting1") == updated
    unchanged = store.update_versioned("c-meeting1", lambda m: None)
    assert unchanged == updated
    assert store.read("missing") is None
    assert store.update_versioned("missing", lambda m: m) is None


# ----------------------------------------------------------------------------- commits


def test_upsert_replaces_and_delete_removes(subject: Subject) -> None:
    store = subject.store
    base = created(store)
    first = commit(
        store, base, upserts=[participant("p-a", 10, stale=True), participant("p-b", 20)]
    )
    assert first is not None

    second = commit(store, first, upserts=[participant("p-a", 30, revision=2)], deletes=["p-b"])

    assert second is not None
    (only,) = store.participants("c-meeting1")
    assert only == {
        "participant_key": "p-a",
        "attended_seconds": 30,
        "meeting_status": "collecting",
        "revision": 2,
    }
    assert store.get("c-meeting1") == second.record


def test_status_updates_mirror_meeting_status_and_keep_other_fields(subject: Subject) -> None:
    store = subject.store
    base = commit(
        subject.store,
        created(store),
        upserts=[participant("p-a", 10), participant("p-b", 20)],
    )
    assert base is not None
    done = replace(base.record, status=Status.COMPLETE)

    assert commit(store, base, meeting=done, status_updates=["p-a", "p-b"]) is not None

    stored = by_key(store)
    assert {k: d["meeting_status"] for k, d in stored.items()} == {
        "p-a": "complete",
        "p-b": "complete",
    }
    assert stored["p-a"]["attended_seconds"] == 10


def test_a_participant_not_mirroring_the_status_is_found(subject: Subject) -> None:
    store = subject.store
    base = created(store)
    assert not store.any_participant_not_mirroring("c-meeting1", "collecting")  # none at all
    mirrored = commit(store, base, upserts=[participant("p-a", 10), participant("p-b", 20)])
    assert mirrored is not None
    assert not store.any_participant_not_mirroring("c-meeting1", "collecting")
    assert store.any_participant_not_mirroring("c-meeting1", "complete")
    staged = participant("p-b", 20, revision=2, meeting_status=STAGED)
    assert commit(store, mirrored, upserts=[staged]) is not None
    assert store.any_participant_not_mirroring("c-meeting1", "collecting")
    assert not store.any_participant_not_mirroring("other-meeting", "collecting")


def test_a_status_mirror_of_a_missing_participant_fails_the_commit_whole(
    subject: Subject,
) -> None:
    store = subject.store
    base = commit(store, created(store), upserts=[participant("p-a", 10)])
    assert base is not None
    done = replace(base.record, status=Status.COMPLETE, revision=2)

    result = commit(
        store,
        base,
        meeting=done,
        upserts=[participant("p-new", 5, revision=2)],
        status_updates=["p-a", "p-gone"],
    )

    assert result is None
    assert set(by_key(store)) == {"p-a"}  # nothing of it landed
    assert store.get("c-meeting1") == base.record


def test_a_commit_on_a_changed_meeting_stores_nothing(subject: Subject) -> None:
    store = subject.store
    base = created(store)
    assert store.update("c-meeting1", lambda m: replace(m, span_version=1)) is not None
    revision = RevisionRecord(revision=1, at=ENDED, reason="poll", changes=[])

    result = commit(store, base, upserts=[participant("p-a")], revision=revision)

    assert result is None
    assert store.participants("c-meeting1") == []
    assert subject.revisions("c-meeting1") == []
    stored = store.get("c-meeting1")
    assert stored is not None
    assert (stored.revision, stored.span_version) == (0, 1)


def test_a_commit_of_a_meeting_that_is_gone_stores_nothing(subject: Subject) -> None:
    store = subject.store
    base = created(store)
    ghost = replace(base, record=replace(base.record, meeting_id="c-ghost"))
    assert commit(store, ghost, upserts=[participant("p-a")]) is None
    assert store.get("c-ghost") is None
    assert store.participants("c-ghost") == []


def test_revisions_are_written_and_read_in_order(subject: Subject) -> None:
    store = subject.store
    current = created(store)
    for number in (10, 2, 1):
        landed = commit(
            store,
            current,
            revision=RevisionRecord(
                revision=number,
                at=ENDED + timedelta(minutes=number, milliseconds=250),
                reason="poll",
                changes=[AttendanceChange("a@school.example", None if number == 1 else 5, 60)],
            ),
        )
        assert landed is not None
        current = landed

    revisions = subject.revisions("c-meeting1")

    assert [r["revision"] for r in revisions] == [1, 2, 10]
    assert revisions[0] == {
        "revision": 1,
        "at": ENDED + timedelta(minutes=1, milliseconds=250),
        "reason": "poll",
        "changes": [{"participant_key": "a@school.example", "before": None, "after": 60}],
        "participant_keys": ["a@school.example"],
    }


def test_the_revisions_read_gives_every_record_oldest_first(subject: Subject) -> None:
    store = subject.store
    current = created(store)
    other = created(store, meeting("c-meeting2"))
    # 10 after 2: ids are the numbers as text, and "10" < "2".
    for number, base in ((2, current), (10, None), (1, None)):
        landed = commit(
            store,
            base or current,
            revision=RevisionRecord(
                revision=number,
                at=ENDED + timedelta(minutes=number, milliseconds=5),
                reason="neighbour" if number == 10 else "poll",
                changes=[
                    AttendanceChange("a@school.example", 5, 60),
                    AttendanceChange("b@school.example", None, 30),
                ],
            ),
        )
        assert landed is not None
        current = landed
    assert commit(store, other, revision=RevisionRecord(7, ENDED, "poll", [])) is not None

    revisions = store.revisions("c-meeting1")

    assert [r["revision"] for r in revisions] == [1, 2, 10]
    assert revisions == subject.revisions("c-meeting1")
    assert revisions[2] == {
        "revision": 10,
        "at": ENDED + timedelta(minutes=10, milliseconds=5),
        "reason": "neighbour",
        "changes": [
            {"participant_key": "a@school.example", "before": 5, "after": 60},
            {"participant_key": "b@school.example", "before": None, "after": 30},
        ],
        "participant_keys": ["a@school.example", "b@school.example"],
    }
    assert revisions[2]["at"].tzinfo is UTC
    assert [r["revision"] for r in store.revisions("c-meeting2")] == [7]
    assert store.revisions("c-nothing") == []
    # A copy: what the caller changes is not the store's.
    revisions[0]["reason"] = "changed"
    assert store.revisions("c-meeting1")[0]["reason"] == "poll"


# ----------------------------------------------------------------------------- stages


def _large(count: int, *, revision: int = 1) -> list[ParticipantRecord]:
    return [
        participant(f"p-{i:04d}", attended=i, revision=revision, padding="x" * 400)
        for i in range(count)
    ]


def test_a_change_too_large_for_one_request_is_written_in_stages(
    make: Callable[[int], Subject],
) -> None:
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = created(store)
    done = replace(base.record, status=Status.COMPLETE, revision=1, participant_count=600)
    revision = RevisionRecord(revision=1, at=ENDED, reason="poll", changes=[])

    result = commit(store, base, meeting=done, upserts=_large(600), revision=revision)

    assert result is not None
    stored = store.get("c-meeting1")
    assert stored is not None
    assert (stored.revision, stored.status, stored.multi_commit) == (1, Status.COMPLETE, True)
    documents = by_key(store)
    assert len(documents) == 600
    assert {d["meeting_status"] for d in documents.values()} == {"complete"}
    assert [r["revision"] for r in subject.revisions("c-meeting1")] == [1]


@pytest.mark.parametrize(
    ("status", "ahead"), [(Status.COMPLETE, STAGED), (Status.COLLECTING, "collecting")]
)
def test_a_staged_change_fenced_out_midway_stays_invisible(
    make: Callable[[int], Subject], status: Status, ahead: str
) -> None:
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = commit(store, created(store), upserts=[participant("p-0000", 7, revision=1)])
    assert base is not None
    stages_done = 0

    def another_writer() -> None:
        nonlocal stages_done
        stages_done += 1
        if stages_done == 2:  # after the first staged request
            assert store.update("c-meeting1", lambda m: replace(m, span_version=5)) is not None

    _after_each_stage(store, another_writer)
    change = replace(base.record, revision=2, status=status)

    result = commit(store, base, meeting=change, upserts=_large(300, revision=2))

    assert result is None
    stored = store.get("c-meeting1")
    assert stored is not None
    assert (stored.revision, stored.span_version) == (1, 5)
    documents = store.participants("c-meeting1")
    # What was staged is above the meeting's revision (readers ignore it), never complete (a
    # completing change writes "staged"), and the meeting says a change began (staging_progress).
    assert documents
    assert all(d["revision"] > stored.revision for d in documents)
    assert {d["meeting_status"] for d in documents} == {ahead}
    assert stored.staging_progress is not None


def test_a_change_read_before_a_stage_cannot_land_over_it(
    make: Callable[[int], Subject],
) -> None:
    # The staged documents are written while the meeting still reads as before; a change that
    # read the meeting before they were there must not land on top of them as if they were not.
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = commit(store, created(store), upserts=[participant("p-0000", 7, revision=1)])
    assert base is not None
    reads: list[Versioned] = []
    results: list[Versioned | None] = []
    tried = False

    def a_declaration_in_between() -> None:
        nonlocal tried
        if not reads:
            seen = store.read("c-meeting1")
            assert seen is not None
            assert seen.record.multi_commit
            reads.append(seen)
        elif not tried:
            tried = True
            seen = reads[0]
            estimate = participant("p-0001", 3000, revision=seen.record.revision, estimated=True)
            results.append(commit(store, seen, meeting=seen.record, upserts=[estimate]))

    _after_each_stage(store, a_declaration_in_between)

    landed = commit(
        store, base, meeting=replace(base.record, revision=2), upserts=_large(300, revision=2)
    )

    assert results == [None]
    assert landed is not None
    assert by_key(store)["p-0001"].get("estimated") is not True


def test_documents_of_an_earlier_staged_change_stay_counted_after_a_later_one(
    make: Callable[[int], Subject],
) -> None:
    # A staged change whose status mirrors never ran leaves documents naming it; the next staged
    # change names its own, so it settles them first (else the meeting would lose them).
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = created(store)
    earlier = replace(base.record, revision=1, staged_commit="earlier")
    kept = participant("p-kept", 42, revision=1, staged_commit="earlier")
    first = commit(store, base, meeting=earlier, upserts=[kept])
    assert first is not None
    later = replace(first.record, revision=2)

    landed = commit(store, first, meeting=later, upserts=_large(300, revision=2), settle=["p-kept"])

    assert landed is not None
    stored = store.get("c-meeting1")
    assert stored is not None
    assert stored.staged_commit not in (None, "earlier")
    assert is_committed(by_key(store)["p-kept"], stored)
    assert sum(is_committed(d, stored) for d in store.participants("c-meeting1")) == 301


def _after_each_stage(store: MeetingStore, action: Callable[[], None]) -> None:
    """Run ``action`` between the stages of the next commit."""
    if isinstance(store, MemoryStore):
        store.between_stages = action
        return
    assert isinstance(store, FirestoreStore)
    # Every request of a commit goes through one of these two (a staged change's through _send,
    # whose next request is sent only after it returned).
    real_commit_writes, real_send = store._commit_writes, store._send

    def commit_writes(*args: Any, **kwargs: Any) -> Any:
        result = real_commit_writes(*args, **kwargs)
        action()
        return result

    def send(*args: Any, **kwargs: Any) -> Any:
        result = real_send(*args, **kwargs)
        action()
        return result

    store._commit_writes = commit_writes  # type: ignore[method-assign]
    store._send = send  # type: ignore[method-assign]


def test_after_a_staged_change_lands_its_mirrors_skip_deleted_participants(
    make: Callable[[int], Subject],
) -> None:
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = commit(store, created(store), upserts=_large(200))
    assert base is not None
    done = replace(base.record, status=Status.COMPLETE, revision=2)
    gone = False

    def a_later_change_deletes_one() -> None:
        nonlocal gone
        landed = store.get("c-meeting1")
        if not gone and landed is not None and landed.revision == 2:
            gone = True
            _delete_participant(store, "p-0007")

    _after_each_stage(store, a_later_change_deletes_one)
    ids = [f"p-{i:04d}" for i in range(200)]

    result = commit(
        store, base, meeting=done, upserts=_large(200, revision=2)[:50], status_updates=ids[50:]
    )

    assert result is not None
    assert gone
    documents = by_key(store)
    assert "p-0007" not in documents
    assert len(documents) == 199
    assert {d["meeting_status"] for d in documents.values()} == {"complete"}


def test_the_mirrors_of_a_landed_change_stop_once_its_status_is_no_longer_the_meetings(
    make: Callable[[int], Subject],
) -> None:
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = commit(store, created(store), upserts=_large(200))
    assert base is not None
    done = replace(base.record, status=Status.COMPLETE, revision=2)
    mirrored_when_moved: int | None = None

    def another_writer_moves_the_status() -> None:
        nonlocal mirrored_when_moved
        landed = store.get("c-meeting1")
        if mirrored_when_moved is None and landed is not None and landed.revision == 2:
            statuses = [d["meeting_status"] for d in store.participants("c-meeting1")]
            mirrored_when_moved = statuses.count("complete")
            moved = store.update("c-meeting1", lambda m: replace(m, status=Status.SCHEDULED))
            assert moved is not None

    _after_each_stage(store, another_writer_moves_the_status)
    ids = [f"p-{i:04d}" for i in range(200)]

    result = commit(
        store, base, meeting=done, upserts=_large(200, revision=2)[:50], status_updates=ids[50:]
    )

    assert result is not None
    assert mirrored_when_moved is not None
    statuses = [d["meeting_status"] for d in store.participants("c-meeting1")]
    # A late mirror would say "complete" of a meeting that is not: billing would count it.
    assert statuses.count("complete") == mirrored_when_moved < 200


def test_a_late_mirror_fences_out_a_writer_that_read_the_documents_before_it(
    make: Callable[[int], Subject],
) -> None:
    subject = make(SMALL_REQUEST)
    store = subject.store
    base = commit(store, created(store), upserts=_large(200))
    assert base is not None
    done = replace(base.record, status=Status.COMPLETE, revision=2)
    read_before_mirrors: list[Versioned] = []

    def another_writer_reads() -> None:
        landed = store.read("c-meeting1")
        if not read_before_mirrors and landed is not None and landed.record.revision == 2:
            read_before_mirrors.append(landed)  # documents still "staged": its plan mirrors them

    _after_each_stage(store, another_writer_reads)
    assert commit(store, base, meeting=done, upserts=_large(200, revision=2)) is not None
    (stale,) = read_before_mirrors
    _after_each_stage(store, lambda: None)

    late = commit(store, stale, meeting=replace(stale.record, status=Status.COLLECTING))

    # Landing would leave every document "complete" under a meeting that is not.
    assert late is None


def _delete_participant(store: MeetingStore, doc_id: str) -> None:
    if isinstance(store, MemoryStore):
        store.participant_docs["c-meeting1"].pop(doc_id)
        return
    assert isinstance(store, FirestoreStore)
    store._meetings.document("c-meeting1").collection("participants").document(doc_id).delete()


# ----------------------------------------------------------------------------- privacy


@pytest.mark.parametrize("participants", [2, 400], ids=["one request", "staged"])
def test_a_change_lands_only_while_none_of_its_unerased_is_recorded(
    make: Callable[[int], Subject], participants: int
) -> None:
    store = make(SMALL_REQUEST).store
    base = created(store)
    store.record_erasure("e" * 64, at=ENDED)
    upserts = [participant(f"p-{n:03d}") for n in range(participants)]

    refused = MeetingCommit(
        meeting=replace(base.record, revision=1),
        expected=base.version,
        upserts=upserts,
        unerased=("f" * 64, "e" * 64),
    )
    assert store.commit(refused) is None
    stored = store.get("c-meeting1")
    assert stored is not None
    assert stored.revision == 0  # the change never landed
    assert stored.staged_commit != refused.token

    fresh = store.read("c-meeting1")
    assert fresh is not None
    allowed = replace(refused, expected=fresh.version, unerased=("f" * 64, "g" * 64))
    landed = store.commit(allowed)
    assert landed is not None
    assert len(by_key(store)) == participants
    assert store.erased() == {"e" * 64}  # the condition wrote no erasure record


def test_erasures_are_remembered_once_and_listed(subject: Subject) -> None:
    store = subject.store
    assert store.erased() == frozenset()
    store.record_erasure("a" * 64, at=ENDED)
    store.record_erasure("a" * 64, at=ENDED + timedelta(days=1))  # a retried erasure
    store.record_erasure("b" * 64, at=ENDED)
    assert store.erased() == {"a" * 64, "b" * 64}


def test_meetings_naming_a_participant_are_found_by_document_or_list(subject: Subject) -> None:
    store = subject.store
    key = "kid@school.example"
    assert commit(store, created(store), upserts=[participant(key)]) is not None
    created(store, meeting("c-listed", expected_participants=("t@school.example", key)))
    created(store, meeting("c-missing", missing_participants=(key,)))
    other = created(store, meeting("c-other", expected_participants=("t@school.example",)))
    assert commit(store, other, upserts=[participant("other@school.example")]) is not None
    # A meeting the participant left (no document, no list) whose revision records name them.
    left = created(store, meeting("c-left"))
    revision = RevisionRecord(
        revision=1, at=ENDED, reason="declaration", changes=[AttendanceChange(key, 60, None)]
    )
    assert commit(store, left, revision=revision) is not None
    assert store.meetings_naming(key) == ["c-left", "c-listed", "c-meeting1", "c-missing"]
    assert store.meetings_naming("nobody@school.example") == []
    store.rename_in_revisions("c-left", key, "h" * 64)
    assert store.meetings_naming(key) == ["c-listed", "c-meeting1", "c-missing"]


def test_renaming_in_revisions_replaces_only_that_key(subject: Subject) -> None:
    store = subject.store
    current = created(store)
    for number in (1, 2):
        changes = [AttendanceChange("kid@school.example", None, 60)] if number == 1 else []
        changes.append(AttendanceChange("t@school.example", None, 60 * number))
        landed = commit(
            store,
            current,
            revision=RevisionRecord(revision=number, at=ENDED, reason="poll", changes=changes),
        )
        assert landed is not None
        current = landed

    assert store.rename_in_revisions("c-meeting1", "kid@school.example", "h" * 64) == 1
    assert store.rename_in_revisions("c-meeting1", "kid@school.example", "h" * 64) == 0
    revisions = subject.revisions("c-meeting1")
    assert [[c["participant_key"] for c in r["changes"]] for r in revisions] == [
        ["h" * 64, "t@school.example"],
        ["t@school.example"],
    ]
    assert revisions[0]["changes"][0] == {"participant_key": "h" * 64, "before": None, "after": 60}
    assert [r["participant_keys"] for r in revisions] == [
        ["h" * 64, "t@school.example"],
        ["t@school.example"],
    ]


def test_deleting_a_meeting_deletes_everything_under_it(subject: Subject) -> None:
    store = subject.store
    base = created(store)
    revision = RevisionRecord(revision=1, at=ENDED, reason="poll", changes=[])
    assert commit(store, base, upserts=[participant("a"), participant("b")], revision=revision)
    kept = created(store, meeting("c-kept"))
    store.delete_meeting("c-meeting1")
    store.delete_meeting("c-meeting1")  # idempotent
    assert store.read("c-meeting1") is None
    assert store.participants("c-meeting1") == []
    assert subject.revisions("c-meeting1") == []
    assert store.read("c-kept") == kept


def test_every_document_of_a_meeting_carries_its_expiry(firestore_db: FirestoreEmulator) -> None:
    """With RETENTION_DAYS, what Firestore's TTL reads: ``expire_at`` = ``ended_at`` + days on
    the meeting, its participants and its revisions, following ``ended_at`` when it moves."""
    client: firestore.Client = firestore_client(settings_for(firestore_db))
    store = FirestoreStore(client, retention_days=90)
    base = created(store)
    revision = RevisionRecord(revision=1, at=ENDED, reason="poll", changes=[])
    landed = commit(store, base, upserts=[participant("a")], revision=revision)
    assert landed is not None
    reference = client.collection("meetings").document("c-meeting1")
    expiry = ENDED + timedelta(days=90)
    documents = [
        reference.get(),
        reference.collection("participants").document("a").get(),
        reference.collection("revisions").document("1").get(),
    ]
    assert [(d.to_dict() or {})["expire_at"] for d in documents] == [expiry] * 3
    moved = ENDED + timedelta(hours=2)
    assert store.update("c-meeting1", lambda m: replace(m, ended_at=moved)) is not None
    assert (reference.get().to_dict() or {})["expire_at"] == moved + timedelta(days=90)
    # Without the setting nothing expires.
    plain = FirestoreStore(client)
    assert plain.create(meeting("c-plain"))
    plain_document = client.collection("meetings").document("c-plain").get().to_dict() or {}
    assert "expire_at" not in plain_document


# ----------------------------------------------------------------------------- search (list)


def _searched_pages(store: MeetingStore, query: MeetingQuery, *, limit: int) -> list[list[str]]:
    """Every page of the query, as the command pages: ask for one more, continue after the last."""
    pages: list[list[str]] = []
    after: Cursor | None = None
    while True:
        found = store.search(query, limit=limit + 1, after=after)
        shown = found[:limit]
        pages.append([m.meeting_id for m in shown])
        if len(found) <= limit:
            return pages
        after = Cursor(shown[-1].ended_at, shown[-1].meeting_id)


def test_search_filters_and_pages_newest_first_ties_by_id(subject: Subject) -> None:
    store = subject.store
    h = timedelta(hours=1)
    for meeting_id, ended_at, changes in (
        ("c-a", ENDED, {}),
        ("c-b", ENDED, {"organizer_email": "o@school.example"}),  # a tie: c-b before c-a
        ("c-c", ENDED + h, {"status": Status.COMPLETE, "organizer_email": "o@school.example"}),
        ("c-d", ENDED - h, {"meeting_code": "xyz-abcd-efg", "organizer_email": "o@school.example"}),
        ("c-e", ENDED + 2 * h, {"status": Status.MERGED, "merged_into": "c-c"}),
        ("c-f", ENDED - 2 * h, {"status": Status.NO_DATA}),
    ):
        created(store, meeting(meeting_id, ended_at=ended_at, **changes))
    everything = [["c-c", "c-b"], ["c-a", "c-d"], ["c-f"]]
    assert _searched_pages(store, MeetingQuery(), limit=2) == everything
    assert _searched_pages(store, MeetingQuery(), limit=5) == [["c-c", "c-b", "c-a", "c-d", "c-f"]]
    assert _searched_pages(store, MeetingQuery(status=Status.MERGED), limit=2) == [["c-e"]]
    assert _searched_pages(store, MeetingQuery(meeting_code="abc-defg-hij"), limit=1) == [
        ["c-c"],
        ["c-b"],
        ["c-a"],
        ["c-f"],
    ]
    organizer = MeetingQuery(organizer_email="o@school.example")
    assert _searched_pages(store, organizer, limit=2) == [["c-c", "c-b"], ["c-d"]]
    both = MeetingQuery(meeting_code="abc-defg-hij", organizer_email="o@school.example")
    assert _searched_pages(store, both, limit=1) == [["c-c"], ["c-b"]]
    ranged = MeetingQuery(ended_from=ENDED, ended_to=ENDED + h)  # [from, to)
    assert _searched_pages(store, ranged, limit=1) == [["c-b"], ["c-a"]]
    scheduled = MeetingQuery(status=Status.SCHEDULED, ended_from=ENDED - h)
    assert _searched_pages(store, scheduled, limit=10) == [["c-b", "c-a", "c-d"]]
    assert store.search(MeetingQuery(), limit=10, after=Cursor(ENDED, "c-b"))[0].meeting_id == "c-a"
    assert store.search(MeetingQuery(meeting_code="none-such"), limit=3, after=None) == []


def test_search_by_participant_lists_meetings_it_counts_in(subject: Subject) -> None:
    store = subject.store
    h = timedelta(hours=1)
    key = "student@school.example"
    merged = {"status": Status.MERGED}
    kinds: list[dict[str, Any]] = [{}, {"meeting_code": "xyz-abcd-efg"}, {}, merged, {}]
    for n, changes in enumerate(kinds):
        base = created(store, meeting(f"c-{n}", ended_at=ENDED - n * h, **changes))
        revision = 1 if n != 2 else 5  # c-2's document is of a change that has not landed
        upserts = [participant(key, revision=revision), participant("other@school.example")]
        assert commit(store, base, upserts=upserts if n != 4 else upserts[1:]) is not None
    by_key = MeetingQuery(participant_key=key)
    assert _searched_pages(store, by_key, limit=1) == [["c-0"], ["c-1"]]
    assert _searched_pages(store, replace(by_key, meeting_code="abc-defg-hij"), limit=1) == [
        ["c-0"]
    ]
    assert _searched_pages(store, replace(by_key, status=Status.MERGED), limit=1) == [["c-3"]]
    assert _searched_pages(store, replace(by_key, ended_to=ENDED), limit=5) == [["c-1"]]
    nobody = MeetingQuery(participant_key="nobody@school.example")
    assert store.search(nobody, limit=5, after=None) == []
