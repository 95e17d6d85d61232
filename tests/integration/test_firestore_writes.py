"""The raw-protobuf commit path (``functions.adapters.firestore_writes``, used by
``FirestoreStore._commit_writes``) against the client's own (``batch.set``/``batch.update`` with
the same dicts), on Google's emulator: the documents stored are the same, field by field, down to
each ``Value``'s type and bytes; preconditions hold and fail the same way, with the same
exceptions."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference

os.environ.setdefault("NO_GCE_CHECK", "True")

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.adapters.firestore_writes import RawBatch, update_document
from functions.commits import Write
from functions.model import AttendanceChange, RevisionRecord
from functions.ports import MeetingCommit, Version
from local.firestore_emulator import FirestoreEmulator
from tests.integration.test_firestore_store import ENDED, full_meeting, settings_for

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RETENTION_DAYS = 400


@pytest.fixture
def client(firestore_db: FirestoreEmulator) -> firestore.Client:
    return firestore_client(settings_for(firestore_db))


@pytest.fixture
def store(client: firestore.Client) -> FirestoreStore:
    # With retention: every write carries expire_at (functions.retention).
    return FirestoreStore(client, retention_days=RETENTION_DAYS)


def client_commit_writes(
    store: FirestoreStore,
    client: firestore.Client,
    meeting_id: str,
    writes: list[Write],
    version: Version,
) -> Version:
    """The commit as the plain client wrote it before: ``batch.set``/``batch.update``/
    ``batch.delete`` with the same dicts and preconditions, ``batch.commit``."""
    batch = client.batch()
    for write in writes:
        reference = store._reference(meeting_id, write)
        data = store._expiring(write.data, ENDED)
        if write.kind == "delete":
            batch.delete(reference)
        elif write.kind == "set":
            batch.set(reference, data)
        elif write.kind == "create":
            batch.create(reference, data)
        elif write.fenced:
            batch.update(reference, data, option=client.write_option(last_update_time=version))
        else:
            batch.update(reference, data)
    results = batch.commit()
    for write, result in zip(writes, results, strict=True):
        if write.fenced:
            version = result.update_time
    return version


def participant(n: int) -> dict[str, Any]:
    """A participant document as a poll writes it, with every kind of value the client takes."""
    join = datetime(2026, 1, 15, 9, 52, 30, 478123, tzinfo=UTC)
    sessions = [
        {
            "conference_id": "conf-1",
            "device_type": "web",
            "duration_seconds": 968 + s,
            "endpoint_id": f"spaces/abc/devices/{n}-{s}",
            "event_id": f"2026-01-15T10:08:38.478Z/{-1699310360954392 * (s + 1)}",
            "ip_address": "203.0.113.7",
            # An aware datetime in another zone: stored as the same instant.
            "join_time": (join + timedelta(minutes=20 * s)).astimezone(
                timezone(timedelta(hours=5, minutes=30))
            ),
            "leave_time": join + timedelta(minutes=20 * s + 16, seconds=8, microseconds=1),
            "location_country": "GB",
            "location_region": None,
        }
        for s in range(n % 3 + 1)
    ]
    return {
        "participant_key": f"student{n:05d}@school.example",
        "email": f"student{n:05d}@school.example",
        "display_name": "Zoë Ölçer 🎓 " + "ß" * n,
        "attended_seconds": 2904 + n,
        "previous_attended_seconds": None,
        "absent": False,
        "estimated": n % 2 == 0,
        "ended_at": ENDED,
        "first_join": join,
        "last_leave": sessions[-1]["leave_time"],
        "meeting_status": "collecting",
        "revision": 1,
        "session_count": len(sessions),
        "sessions": sessions,
        "staged_commit": "c34bbc20d2e944f796ca7f9aaad8634d",
        "ratio": 0.75 + n,
        "edges": {
            "int64": [INT64_MIN, INT64_MAX, 0, -1],
            "floats": [math.inf, -math.inf, -0.0, 1e-300, math.nan],
            "empty_map": {},
            "empty_array": [],
            "bytes": b"\x00\xff",
            # Firestore takes no array directly in an array.
            "nested": {"deeper": {"deepest": [{"k": True}, {"empty": []}, {}]}},
        },
    }


def change_writes(meeting_id: str) -> list[Write]:
    """A realistic request: participant sets, a delete, status mirrors, the revision record
    and the fenced meeting document (docs/firestore.md/§3 fields), as functions.commits plans it."""
    meeting = replace(full_meeting(), meeting_id=meeting_id, revision=4)
    revision = RevisionRecord(
        revision=4,
        at=ENDED + timedelta(minutes=15, microseconds=654321),
        reason="poll",
        changes=[AttendanceChange("student00001@school.example", 2900, 2905)],
    )
    return [
        *(Write("set", "participant", f"p{n}", participant(n)) for n in range(6)),
        Write("delete", "participant", "gone"),
        Write("update", "participant", "kept", {"meeting_status": "complete"}),
        Write(
            "update", "participant", "kept2", {"meeting_status": "complete", "staged_commit": None}
        ),
        Write("set", "revision", "4", revision.to_document()),
        Write("update", "meeting", meeting_id, meeting.to_document(), fenced=True),
    ]


def seeded(store: FirestoreStore, client: firestore.Client, meeting_id: str) -> Version:
    """The meeting and the documents the change updates or deletes; the meeting's version."""
    meeting = replace(full_meeting(), meeting_id=meeting_id)
    assert store.create(meeting)
    participants = client.collection("meetings").document(meeting_id).collection("participants")
    for doc_id in ("gone", "kept", "kept2"):
        participants.document(doc_id).set({"participant_key": doc_id, "meeting_status": "x"})
    stored = store.read(meeting_id)
    assert stored is not None
    return stored.version


def stored_fields(client: firestore.Client, references: Iterable[DocumentReference]) -> Any:
    """Each document's fields as stored: name → the deterministic bytes of its Value (its type
    and value), read with the GAPIC API, not decoded to Python (where 1 == 1.0)."""
    found: dict[str, dict[str, bytes] | None] = {}
    for reference in references:
        path = reference.path.removeprefix("meetings/")
        try:
            document = client._firestore_api.get_document(
                request={"name": reference._document_path}
            )
        except NotFound:
            found[path] = None
            continue
        found[path] = {
            name: value.SerializeToString(deterministic=True)
            for name, value in document._pb.fields.items()
        }
    return found


def tree(client: firestore.Client, meeting_id: str) -> list[DocumentReference]:
    meeting = client.collection("meetings").document(meeting_id)
    children = [
        reference
        for collection in ("participants", "revisions")
        for reference in meeting.collection(collection).list_documents()
    ]
    return [meeting, *sorted(children, key=lambda r: r.path)]


def test_the_raw_path_stores_what_the_client_path_stores(
    store: FirestoreStore, client: firestore.Client
) -> None:
    raw_version = seeded(store, client, "x-raw")
    plain_version = seeded(store, client, "x-plain")

    raw_next = store._commit_writes("x-raw", change_writes("x-raw"), raw_version, ended_at=ENDED)
    plain_next = client_commit_writes(
        store, client, "x-plain", change_writes("x-plain"), plain_version
    )

    raw = stored_fields(client, tree(client, "x-raw"))
    plain = stored_fields(client, tree(client, "x-plain"))
    assert list(raw) == [path.replace("x-plain", "x-raw") for path in plain]
    assert len(raw) == 1 + 8 + 1  # the meeting, p0…p5, kept, kept2, revisions/4 ("gone" went)
    for (raw_path, raw_doc), plain_doc in zip(raw.items(), plain.values(), strict=True):
        # The meeting's own fields name its id; everything else is the same, byte for byte.
        if raw_path == "x-raw":
            raw_doc = {k: v for k, v in raw_doc.items() if k != "meeting_id"}
            plain_doc = {k: v for k, v in plain_doc.items() if k != "meeting_id"}
        assert raw_doc == plain_doc, raw_path
    assert "expire_at" in raw["x-raw/participants/p0"]
    # The version is the meeting's update time, of the type the client's results give.
    assert type(raw_next) is type(plain_next)
    assert raw_next == client.collection("meetings").document("x-raw").get().update_time


def test_a_staged_request_built_ahead_stores_what_the_client_path_stores(
    store: FirestoreStore, client: firestore.Client
) -> None:
    """A staged change's requests are built write by write (``_raw_write``, all but the fenced
    one while the request before is in flight) and sent by ``_send``: the same bytes land."""
    raw_version = seeded(store, client, "x-raw")
    plain_version = seeded(store, client, "x-plain")
    writes = change_writes("x-raw")
    ahead = [None if w.fenced else store._raw_write("x-raw", w, None, ENDED) for w in writes]
    built = [
        store._raw_write("x-raw", w, raw_version, ENDED) if pb is None else pb
        for w, pb in zip(writes, ahead, strict=True)
    ]

    raw_next = store._send(writes, built, raw_version)
    plain_next = client_commit_writes(
        store, client, "x-plain", change_writes("x-plain"), plain_version
    )

    raw = stored_fields(client, tree(client, "x-raw"))
    plain = stored_fields(client, tree(client, "x-plain"))
    assert list(raw) == [path.replace("x-plain", "x-raw") for path in plain]
    for (raw_path, raw_doc), plain_doc in zip(raw.items(), plain.values(), strict=True):
        if raw_path == "x-raw":
            raw_doc = {k: v for k, v in raw_doc.items() if k != "meeting_id"}
            plain_doc = {k: v for k, v in plain_doc.items() if k != "meeting_id"}
        assert raw_doc == plain_doc, raw_path
    assert type(raw_next) is type(plain_next)
    assert raw_next == client.collection("meetings").document("x-raw").get().update_time


def test_a_staged_request_built_ahead_is_fenced_on_the_version_it_was_given(
    store: FirestoreStore, client: firestore.Client
) -> None:
    version = seeded(store, client, "x-raw")
    writes = change_writes("x-raw")
    assert any(w.fenced for w in writes)
    store.update("x-raw", lambda m: replace(m, span_version=m.span_version + 1))
    stale = [store._raw_write("x-raw", w, version, ENDED) for w in writes]

    with pytest.raises(FailedPrecondition):
        store._send(writes, stale, version)


def test_a_meeting_update_stores_what_the_clients_update_stores_and_is_fenced_as_it(
    store: FirestoreStore, client: firestore.Client
) -> None:
    """``update_document`` (the store's optimistic update of a meeting) against
    ``DocumentReference.update`` with the same precondition: the same bytes, the same result
    type, and a stale version refused the same way."""
    versions = {m: seeded(store, client, m) for m in ("x-raw", "x-plain")}
    meeting = replace(full_meeting(), span_version=9)
    document = store._expiring(meeting.to_document(), meeting.ended_at)
    references = {m: client.collection("meetings").document(m) for m in versions}

    def option(meeting_id: str) -> Any:
        return client.write_option(last_update_time=versions[meeting_id])

    raw = update_document(client, references["x-raw"], document, option("x-raw"))
    plain = references["x-plain"].update(document, option=option("x-plain"))

    assert type(raw) is type(plain)
    stored = stored_fields(client, references.values())
    assert stored["x-raw"] == stored["x-plain"]
    with pytest.raises(FailedPrecondition):
        update_document(client, references["x-raw"], document, option("x-raw"))
    with pytest.raises(FailedPrecondition):
        references["x-plain"].update(document, option=option("x-plain"))


def test_the_decoded_documents_are_equal_too(
    store: FirestoreStore, client: firestore.Client
) -> None:
    seeded_raw, seeded_plain = seeded(store, client, "x-raw"), seeded(store, client, "x-plain")
    store._commit_writes("x-raw", change_writes("x-raw"), seeded_raw, ended_at=ENDED)
    client_commit_writes(store, client, "x-plain", change_writes("x-plain"), seeded_plain)

    def decoded(meeting_id: str, doc_id: str) -> dict[str, Any]:
        reference = client.collection("meetings").document(meeting_id)
        snapshot = reference.collection("participants").document(doc_id).get()
        document = snapshot.to_dict() or {}
        if "edges" in document:  # NaN is not equal to itself: compared by its repr
            document["edges"]["floats"] = [repr(f) for f in document["edges"]["floats"]]
        return document

    for doc_id in ("p0", "p1", "p2", "kept", "kept2"):
        assert decoded("x-raw", doc_id) == decoded("x-plain", doc_id)
    stored = decoded("x-raw", "p1")
    assert stored["sessions"][0]["join_time"] == datetime(
        2026, 1, 15, 9, 52, 30, 478123, tzinfo=UTC
    )
    assert stored["edges"]["int64"] == [INT64_MIN, INT64_MAX, 0, -1]
    assert stored["edges"]["empty_map"] == {}
    assert stored["edges"]["empty_array"] == []


def test_a_stale_version_fails_the_whole_request_as_before(
    store: FirestoreStore, client: firestore.Client
) -> None:
    version = seeded(store, client, "x-raw")
    client.collection("meetings").document("x-raw").update({"attempts": 99})  # moves it on

    with pytest.raises(FailedPrecondition):
        store._commit_writes("x-raw", change_writes("x-raw"), version, ended_at=ENDED)
    with pytest.raises(FailedPrecondition):
        client_commit_writes(store, client, "x-raw", change_writes("x-raw"), version)

    participants = client.collection("meetings").document("x-raw").collection("participants")
    assert not participants.document("p0").get().exists  # nothing of it landed
    assert participants.document("gone").get().exists


def test_an_update_of_a_missing_document_is_not_found_as_before(
    store: FirestoreStore, client: firestore.Client
) -> None:
    version = seeded(store, client, "x-raw")
    mirror = [Write("update", "participant", "never-written", {"meeting_status": "complete"})]

    with pytest.raises(NotFound):
        store._commit_writes("x-raw", mirror, version, ended_at=ENDED)
    with pytest.raises(NotFound):
        client_commit_writes(store, client, "x-raw", mirror, version)


def test_a_create_of_an_existing_document_fails_as_the_clients_does(
    store: FirestoreStore, client: firestore.Client
) -> None:
    version = seeded(store, client, "x-raw")
    create = [Write("create", "meeting", "x-raw", {"status": "scheduled"})]

    with pytest.raises(AlreadyExists):
        store._commit_writes("x-raw", create, version, ended_at=ENDED)
    with pytest.raises(AlreadyExists):
        client_commit_writes(store, client, "x-raw", create, version)


def test_a_fenced_commit_through_the_store_answers_none_when_the_meeting_moved(
    store: FirestoreStore, client: firestore.Client
) -> None:
    version = seeded(store, client, "x-raw")
    meeting = replace(full_meeting(), meeting_id="x-raw", revision=4)
    client.collection("meetings").document("x-raw").update({"attempts": 99})

    assert store.commit(MeetingCommit(meeting=meeting, expected=version)) is None


def test_sentinels_take_the_clients_path_and_are_stored_as_it_stores_them(
    client: firestore.Client,
) -> None:
    reference = client.collection("meetings").document("x-sentinels")
    reference.set({"gone": 1, "kept": "yes", "tags": ["a"]})
    batch = RawBatch(client)
    batch.update(
        reference,
        {
            "gone": firestore.DELETE_FIELD,
            "at": firestore.SERVER_TIMESTAMP,
            "tags": firestore.ArrayUnion(["b"]),
        },
    )
    assert len(batch.commit()) == 1

    stored = reference.get().to_dict() or {}
    assert isinstance(stored.pop("at"), datetime)  # the server's time
    assert stored == {"kept": "yes", "tags": ["a", "b"]}
