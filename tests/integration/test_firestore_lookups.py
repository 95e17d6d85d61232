"""The lookup documents a declaration reads instead of querying, against Google's Firestore
emulator: after any mix of the store's writes (creates, commits in one request or in stages,
optimistic updates, moves of ``ended_at``, new aliases, deletes), a declaration reading them gets
what the queries answer; the marker decides which it does; entries expire no earlier than their
meetings."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from datetime import timedelta

os.environ.setdefault("NO_GCE_CHECK", "True")

import pytest
from google.cloud import firestore

from functions.adapters.firestore_lookups import (
    LOOKUPS,
    alias_document_id,
    bucket_of,
    code_document_id,
)
from functions.adapters.firestore_store import FirestoreStore
from functions.intervals import Bounds
from functions.model import MeetingRecord, estimated_record
from functions.ports import NEIGHBOUR_FIELDS, DeclarationFacts, DeclarationReads, MeetingCommit
from functions.retention import expire_at
from tests.integration.test_firestore_store import ENDED, client, meeting

__all__ = ["client"]

CODES = ("abc-defg-hij", "kkk-llll-mmm", "odd/code~?")
ALIASES = ("ext-1", "ext-2", "ext/3")


def _reads(rng: random.Random, known: list[str]) -> DeclarationReads:
    centre = ENDED + timedelta(hours=rng.randint(-400, 400))
    half = timedelta(hours=rng.choice([0, 1, 30, 100, 220]))
    return DeclarationReads(
        meeting_ids=[*rng.sample(known, min(len(known), rng.randint(0, 2))), "x-none"],
        meeting_code=rng.choice(CODES),
        neighbours=Bounds(centre - half, centre + half),
        alias=rng.choice([None, *ALIASES]),
    )


def _answer(facts: DeclarationFacts) -> tuple[object, ...]:
    # Neighbours as far as they are promised (NEIGHBOUR_FIELDS); the aliased whole.
    return (
        [m.meeting_id for m in facts.neighbours],
        [tuple(getattr(m, name) for name in NEIGHBOUR_FIELDS) for m in facts.neighbours],
        [m.meeting_id for m in facts.aliased],
        sorted(facts.meetings),
        list(facts.aliased),
    )


def _ready(store: FirestoreStore) -> bool | None:
    return store._lookups.ready


def _change(rng: random.Random, current: MeetingRecord) -> MeetingRecord:
    moved = timedelta(hours=rng.choice([-200, -30, -1, 0, 2, 50, 180]))
    aliases = current.aliases
    if rng.random() < 0.3:
        aliases = (*aliases, rng.choice(ALIASES))
    return replace(current, ended_at=current.ended_at + moved, aliases=aliases)


def _write(rng: random.Random, stores: dict[str, FirestoreStore], number: int) -> str | None:
    """One random write through the store's writers; answers the meeting id it wrote."""
    store = stores["small"] if rng.random() < 0.3 else stores["plain"]
    meeting_id = f"m-{rng.randint(0, 12):02d}"
    current = store.read(meeting_id)
    if current is None:
        record = meeting(
            meeting_id,
            meeting_code=rng.choice(CODES),
            ended_at=ENDED + timedelta(hours=rng.randint(-300, 300)),
            aliases=tuple(rng.sample(ALIASES, rng.randint(0, 1))),
            expected_participants=tuple(f"p{i}@school.example" for i in range(rng.randint(0, 8))),
        )
        if rng.random() < 0.5:
            return meeting_id if store.create(record) else None
        upserts = [
            estimated_record(key, meeting=record, revision=0, status=record.status)
            for key in record.expected_participants
        ]
        change = MeetingCommit(meeting=record, expected=None, upserts=upserts, creates=record)
        return meeting_id if store.commit(change) is not None else None
    kind = rng.choice(["update", "commit", "delete"])
    if kind == "delete":
        store.delete_meeting(meeting_id)
    elif kind == "update":
        store.update(meeting_id, lambda m: _change(rng, m))
    else:
        updated = _change(rng, current.record)
        upserts = [
            estimated_record(
                f"q{number}-{i}@school.example", meeting=updated, revision=1, status=updated.status
            )
            for i in range(rng.randint(0, 10))
        ]
        store.commit(MeetingCommit(meeting=updated, expected=current.version, upserts=upserts))
    return meeting_id


@pytest.mark.parametrize("seed", range(4))
def test_a_declaration_reading_the_lookups_gets_what_the_queries_answer(
    client: firestore.Client, seed: int
) -> None:
    """A seeded sequence of writes; after each, random reads through both paths agree (the
    neighbours with their order, the aliased, the meetings read)."""
    rng = random.Random(seed)
    stores = {
        "plain": FirestoreStore(client, lookups_ready=True, retention_days=90),
        "small": FirestoreStore(client, max_commit_bytes=3_000, lookups_ready=True),
    }
    looking_up = FirestoreStore(client, lookups_ready=True)
    querying = FirestoreStore(client, lookups_ready=False)
    known: list[str] = []
    answered = 0
    for number in range(40):
        written = _write(rng, stores, number)
        if written is not None and written not in known:
            known.append(written)
        for _ in range(3):
            asked = _reads(rng, known)
            expected = _answer(querying.declaration_reads(asked))
            assert _answer(looking_up.declaration_reads(asked)) == expected, (number, asked)
            answered += bool(expected[0] or expected[2])
    assert answered > 10  # the reads did find meetings, not only empty answers


def test_the_marker_decides_and_the_migration_indexes_what_was_written_before(
    client: firestore.Client,
) -> None:
    """A meeting written without entries (as a version before lookups wrote it): a store that
    reads the lookups misses it, one that has not seen the marker queries and finds it; the
    migration indexes it, writes the marker, and the second store reads the lookups from the
    declaration after the one that saw the marker."""
    old = meeting("c-old", aliases=("ext-1",))
    client.collection("meetings").document(old.meeting_id).set(old.to_document())
    asked = DeclarationReads(
        meeting_ids=["x-new"],
        meeting_code=old.meeting_code,
        neighbours=Bounds(ENDED - timedelta(days=3), ENDED + timedelta(days=3)),
        alias="ext-1",
    )
    trusting = FirestoreStore(client, lookups_ready=True)
    deciding = FirestoreStore(client)
    assert _answer(trusting.declaration_reads(asked))[0:3:2] == ([], [])
    assert _answer(deciding.declaration_reads(asked))[0:3:2] == (["c-old"], ["c-old"])
    assert _ready(deciding) is None  # no marker: it will ask again

    assert FirestoreStore(client).index_lookups() == 1
    assert _answer(trusting.declaration_reads(asked))[0:3:2] == (["c-old"], ["c-old"])
    deciding.declaration_reads(asked)  # sees the marker
    assert _ready(deciding) is True
    # Now it reads the lookups: a meeting written without entries is no longer seen.
    client.collection("meetings").document("c-old2").set(
        replace(old, meeting_id="c-old2").to_document()
    )
    assert _answer(deciding.declaration_reads(asked))[0] == ["c-old"]
    assert FirestoreStore(client).index_lookups() == 2  # idempotent, and it indexes the new one
    assert _answer(deciding.declaration_reads(asked))[0] == ["c-old", "c-old2"]


def test_entries_expire_no_earlier_than_their_meetings(client: firestore.Client) -> None:
    store = FirestoreStore(client, retention_days=90, lookups_ready=True)
    record = meeting("c-1", aliases=("ext-1",))
    assert store.create(record)
    moved = replace(record, ended_at=ENDED + timedelta(days=9))
    store.update("c-1", lambda _: moved)
    lookups = client.collection(LOOKUPS)
    meeting_expiry = expire_at(moved.ended_at, 90)
    assert meeting_expiry is not None
    for at in (ENDED, moved.ended_at):
        document = lookups.document(code_document_id(record.meeting_code, bucket_of(at))).get()
        data = document.to_dict() or {}
        assert data["expire_at"] >= expire_at(at, 90)
        assert data["expire_at"] - expire_at(at, 90) < timedelta(days=7)
    alias = lookups.document(alias_document_id("ext-1")).get().to_dict() or {}
    assert alias["expire_at"] == meeting_expiry
    assert set(alias["meetings"]) == {"c-1"}
