"""The store calls a declaration makes, against Google's Firestore emulator: the bounded read of
a code's meetings, everything a declaration reads in one call, and the commit that creates a
meeting with its estimates and its delivery record."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta

os.environ.setdefault("NO_GCE_CHECK", "True")

import pytest
from google.cloud import firestore

from functions.adapters.firestore_store import DELIVERIES, ERASURES, FirestoreStore
from functions.intervals import Bounds
from functions.model import MeetingRecord, estimated_record
from functions.ports import DeclarationReads, Delivery, MeetingCommit
from tests.integration.test_firestore_store import ENDED, client, meeting, store

__all__ = ["client", "store"]  # the fixtures, shared with the store's other tests

CODE = "abc-defg-hij"


def reads(**changes: object) -> DeclarationReads:
    values: dict[str, object] = {
        "meeting_ids": ["c-new"],
        "meeting_code": CODE,
        "neighbours": Bounds(ENDED - timedelta(days=2), ENDED + timedelta(days=2)),
    }
    values.update(changes)
    return DeclarationReads(**values)  # type: ignore[arg-type]


def test_with_code_reads_only_the_range_asked_for_both_ends_included(
    store: FirestoreStore,
) -> None:
    for day in range(-5, 6):
        store.create(meeting(f"c-{day + 5:02d}", ended_at=ENDED + timedelta(days=day)))
    store.create(meeting("c-other", meeting_code="zzz-zzzz-zzz"))
    found = store.with_code(
        CODE, ended=Bounds(ENDED - timedelta(days=1), ENDED + timedelta(days=1))
    )
    assert sorted(m.meeting_id for m in found) == ["c-04", "c-05", "c-06"]


def test_with_codes_answers_what_with_code_answers_for_each_code(store: FirestoreStore) -> None:
    """More codes than one ``in`` filter takes (30), each with bounds of its own, some sharing
    meetings' times with others' bounds: every code gets exactly its ``with_code`` answer."""
    rng = random.Random(7)
    codes = [f"c{index:02d}-aaaa-bbb" for index in range(37)]
    for number in range(150):
        code = rng.choice([*codes, "zzz-zzzz-zzz"])
        at = ENDED + timedelta(hours=rng.randint(-120, 120))
        store.create(meeting(f"m-{number:03d}", meeting_code=code, ended_at=at))
    ended = {
        code: Bounds(
            ENDED + timedelta(hours=rng.randint(-120, 0)),
            ENDED + timedelta(hours=rng.randint(0, 120)),
        )
        for code in codes[:35]
    }
    ended[codes[35]] = Bounds(ENDED, ENDED)  # both ends the same instant

    found = store.with_codes(ended)

    assert set(found) == set(ended)
    for code, bounds in ended.items():
        expected = sorted(m.meeting_id for m in store.with_code(code, ended=bounds))
        assert sorted(m.meeting_id for m in found[code]) == expected, code
    assert sum(len(v) for v in found.values()) > 30  # the codes' bounds did hold meetings
    assert store.with_codes({}) == {}


def _groups_of_two(store: FirestoreStore, count: int) -> list[dict[str, Bounds]]:
    codes = [f"c{index:02d}-aaaa-bbb" for index in range(2 * count)]
    for number, code in enumerate(codes):
        store.create(meeting(f"m-{number:02d}", meeting_code=code))
    around = Bounds(ENDED - timedelta(days=1), ENDED + timedelta(days=1))
    return [dict.fromkeys(codes[i : i + 2], around) for i in range(0, len(codes), 2)]


def test_with_codes_ahead_hands_out_each_group_in_turn_reading_the_next_meanwhile(
    store: FirestoreStore,
) -> None:
    """While the caller holds a group's answer, the next group's read is under way (the caller
    waits for it here: without it, the wait runs out), and only that one."""
    groups = _groups_of_two(store, 4)
    started = [threading.Event() for _ in groups]
    read = store.with_codes

    def reading(ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        started[groups.index(dict(ended))].set()
        return read(ended)

    store.with_codes = reading  # type: ignore[method-assign]
    answers = []
    for index, answer in enumerate(store.with_codes_ahead(groups)):
        if index + 1 < len(groups):
            assert started[index + 1].wait(10), f"group {index + 1} not read meanwhile"
        if index + 2 < len(groups):
            assert not started[index + 2].is_set()
        answers.append(answer)

    assert answers == [read(group) for group in groups]
    assert [sorted(answer) for answer in answers] == [sorted(group) for group in groups]
    assert all(len(records) == 1 for answer in answers for records in answer.values())
    assert list(store.with_codes_ahead([])) == []


def test_with_codes_ahead_raises_a_failed_read_at_its_group_and_stops_cleanly(
    store: FirestoreStore,
) -> None:
    groups = _groups_of_two(store, 3)
    read = store.with_codes
    made: list[int] = []

    def failing(ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        index = groups.index(dict(ended))
        made.append(index)
        if index == 1:
            raise RuntimeError("read failed")
        return read(ended)

    store.with_codes = failing  # type: ignore[method-assign]
    answers = store.with_codes_ahead(groups)
    assert sorted(next(answers)) == sorted(groups[0])
    with pytest.raises(RuntimeError, match="read failed"):
        next(answers)
    with pytest.raises(StopIteration):
        next(answers)  # the failure ended the reads
    # The read of group 2 was either cancelled or waited for: nothing is read after the fact.
    assert sorted(made) in ([0, 1], [0, 1, 2])

    made.clear()
    stopped = store.with_codes_ahead(groups)
    next(stopped)
    stopped.close()  # a caller that stops after the first group
    assert sorted(made) == [0, 1]
    time.sleep(0.2)
    assert sorted(made) == [0, 1]  # and nothing read once it stopped


def test_declaration_reads_answer_every_question_in_one_call(
    store: FirestoreStore, client: firestore.Client
) -> None:
    store.create(meeting("c-old", aliases=("ext-1",), declared_calendar_event_id="ev-1"))
    store.create(meeting("c-far", ended_at=ENDED + timedelta(days=30)))
    store.remember_delivery(webhook_id="wh-1", meeting_id="c-old", expire_at=ENDED)
    store.record_erasure("name-erased", at=ENDED)

    facts = store.declaration_reads(
        reads(
            meeting_ids=["c-old", "c-missing"],
            webhook_id="wh-1",
            erasure_names=["name-erased", "name-kept"],
            alias="ext-1",
            calendar_event_id="ev-1",
            any_erasure=True,
        )
    )

    assert set(facts.meetings) == {"c-old"}
    assert facts.meetings["c-old"].record == store.get("c-old")
    assert facts.delivery == "c-old"
    assert facts.erased == frozenset({"name-erased"})
    assert facts.any_erasure
    assert [m.meeting_id for m in facts.neighbours] == ["c-old"]  # not the far one
    assert [m.meeting_id for m in facts.aliased] == ["c-old"]
    assert [m.meeting_id for m in facts.by_event] == ["c-old"]


def test_declaration_reads_of_nothing_known(store: FirestoreStore) -> None:
    facts = store.declaration_reads(reads(webhook_id="wh-new", erasure_names=["n"]))
    assert facts.meetings == {}
    assert facts.delivery is None
    assert facts.erased == frozenset()
    assert not facts.any_erasure
    assert list(facts.neighbours) == []
    assert store.erased_among([]) == frozenset()
    assert store.erased_among(["n"]) == frozenset()


def new_meeting_commit(*, participants: int = 2) -> MeetingCommit:
    record = meeting(
        "x-new", expected_participants=tuple(f"p{i}@school.example" for i in range(participants))
    )
    upserts = [
        estimated_record(key, meeting=record, revision=0, status=record.status)
        for key in record.expected_participants
    ]
    fingerprints = {r.doc_id: r.fingerprint for r in upserts}
    landed = replace(record, participant_fingerprints=fingerprints)
    return MeetingCommit(
        meeting=landed,
        expected=None,
        upserts=upserts,
        creates=landed,
        delivery=Delivery("wh-new", "x-new", expire_at=ENDED + timedelta(days=2)),
    )


def test_a_new_meeting_its_estimates_and_its_delivery_land_in_one_commit(
    store: FirestoreStore, client: firestore.Client
) -> None:
    change = new_meeting_commit()
    landed = store.commit(change)
    assert landed is not None
    assert store.get("x-new") == change.meeting
    assert len(store.participants("x-new")) == 2
    assert store.delivery("wh-new") == "x-new"
    (document,) = [s.to_dict() or {} for s in client.collection(DELIVERIES).stream()]
    assert document["expire_at"] == ENDED + timedelta(days=2)  # its own, not the meeting's
    # The version answered fences the next change.
    assert store.read("x-new") is not None
    assert store.read("x-new").version == landed.version  # type: ignore[union-attr]


def test_a_second_create_of_the_same_meeting_lands_nothing(store: FirestoreStore) -> None:
    assert store.commit(new_meeting_commit()) is not None
    again = replace(new_meeting_commit(), delivery=Delivery("wh-2", "x-new", expire_at=ENDED))
    assert store.commit(again) is None
    assert store.delivery("wh-2") is None


def test_a_new_meeting_lands_only_while_none_of_its_unerased_is_recorded(
    store: FirestoreStore, client: firestore.Client
) -> None:
    store.record_erasure("erased-name", at=ENDED)
    refused = replace(new_meeting_commit(), unerased=("free-1", "erased-name"))
    assert store.commit(refused) is None
    # Nothing of the request landed: no meeting, no estimates, no delivery record.
    assert store.get("x-new") is None
    assert store.participants("x-new") == []
    assert store.delivery("wh-new") is None
    landed = store.commit(replace(new_meeting_commit(), unerased=("free-1", "free-2")))
    assert landed is not None
    assert len(store.participants("x-new")) == 2
    # The condition wrote nothing: the erasures are what they were.
    assert sorted(s.id for s in client.collection(ERASURES).stream()) == ["erased-name"]


def test_a_staged_new_meeting_does_not_land_over_an_erasure(client: firestore.Client) -> None:
    small = FirestoreStore(client, max_commit_bytes=4_000)
    small.record_erasure("erased-name", at=ENDED)
    change = replace(new_meeting_commit(participants=30), unerased=("erased-name",))
    assert small.commit(change) is None
    # The meeting is created on its own first; the change never lands: the meeting does not
    # name it, so none of its staged documents is counted, and the delivery is not recorded.
    stored = small.get("x-new")
    assert stored is not None
    assert stored.staged_commit != change.token
    assert stored.multi_commit
    assert small.delivery("wh-new") is None


def test_a_new_meeting_too_large_for_one_request_is_created_then_staged(
    client: firestore.Client,
) -> None:
    small = FirestoreStore(client, max_commit_bytes=4_000)
    change = new_meeting_commit(participants=30)
    landed = small.commit(change)
    assert landed is not None
    stored = small.get("x-new")
    assert stored is not None
    assert stored.participant_fingerprints == change.meeting.participant_fingerprints
    assert len(small.participants("x-new")) == 30
    assert small.delivery("wh-new") == "x-new"
    assert client.collection(ERASURES).get() == []
