"""FirestoreStore, on a client built from Settings as production builds it, against Google's
Firestore emulator (session fixture; every test starts from an empty database)."""

from __future__ import annotations

import os
from dataclasses import replace

os.environ.setdefault("NO_GCE_CHECK", "True")

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from functions.adapters.firestore_store import DELIVERIES, FirestoreStore, firestore_client
from functions.config import Settings
from functions.model import (
    LastError,
    MeetingRecord,
    ParticipantRecord,
)
from functions.schedule import Status
from local.firestore_emulator import FirestoreEmulator
from tests.conftest import TEST_PROJECT
from tests.firestore_reads import ALL_TIME

ENDED = datetime(2026, 1, 15, 10, 45, 0, 123000, tzinfo=UTC)


def settings_for(emulator: FirestoreEmulator) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
            "TASKS_LOCATION": "europe-west1",
            "TASKS_QUEUE": "collect",
            "COLLECT_URL": "http://127.0.0.1:9/collect",
            "TASKS_SERVICE_ACCOUNT": "tasks@attendance-test.iam.gserviceaccount.com",
            "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
            "FIRESTORE_EMULATOR_HOST": emulator.host,
        }
    )


@pytest.fixture
def client(firestore_db: FirestoreEmulator) -> firestore.Client:
    return firestore_client(settings_for(firestore_db))


@pytest.fixture
def store(client: firestore.Client) -> FirestoreStore:
    return FirestoreStore(client)


def meeting(meeting_id: str = "c-meeting1", **changes: Any) -> MeetingRecord:
    record = MeetingRecord(
        meeting_id=meeting_id,
        source="webhook",
        meeting_code="abc-defg-hij",
        ended_at=ENDED,
        started_at=ENDED - timedelta(minutes=45),
        external_id=None,
        window_start=ENDED - timedelta(hours=1),
        window_end=ENDED + timedelta(hours=1),
        deadline=ENDED + timedelta(days=1),
    )
    return replace(record, **changes)


def full_meeting() -> MeetingRecord:
    """Every field set to a non-default value of its type."""
    return meeting(
        "x-full",
        external_id="session-123",
        expected_participants=("teacher@school.example", "phone:+441234567890"),
        missing_participants=("phone:+441234567890",),
        status=Status.COLLECTING,
        merged_into="b-other",
        attempts=4,
        next_poll_at=ENDED + timedelta(minutes=30, milliseconds=456),
        last_polled_at=ENDED + timedelta(minutes=15, milliseconds=789),
        completed_at=ENDED + timedelta(hours=2, milliseconds=1),
        last_error=LastError(
            code="quota", message="Reports API 503", at=ENDED + timedelta(milliseconds=999)
        ),
        last_warning=LastError(
            code="incomplete_answer", message="fewer", at=ENDED + timedelta(milliseconds=998)
        ),
        attendance_source="reports",
        revision=3,
        partly_merged_into=("x-declared",),
        multi_commit=True,
        created_at=ENDED - timedelta(seconds=1, milliseconds=5),
        updated_at=ENDED + timedelta(seconds=2, milliseconds=7),
        conference_ids=("conf-a", "conf-b"),
        calendar_event_id="cal-1",
        organizer_email="teacher@school.example",
        actual_start=ENDED - timedelta(minutes=44, milliseconds=321),
        actual_end=ENDED + timedelta(minutes=1, milliseconds=654),
        participant_count=2,
        total_attended_seconds=5400,
        chain_seq=5,
        chain_started=True,
        sessions_fingerprint="abcdef0123456789",
        fingerprint_seen_since=ENDED + timedelta(minutes=5, milliseconds=250),
        successful_polls=2,
        participant_fingerprints={"teacher_school.example-0011": "f1", "p-2233": "f2"},
        sessions_start=ENDED - timedelta(minutes=50, milliseconds=1),
        sessions_end=ENDED + timedelta(minutes=3, milliseconds=2),
        span_version=7,
        lease_owner="worker-1",
        lease_until=ENDED + timedelta(minutes=20, milliseconds=500),
    )


def participant(doc_id: str, attended: int = 60, **extra: Any) -> ParticipantRecord:
    document = {
        "participant_key": doc_id,
        "attended_seconds": attended,
        "meeting_status": "collecting",
        **extra,
    }
    return ParticipantRecord(doc_id=doc_id, document=document, fingerprint=f"fp-{attended}")


# ----------------------------------------------------------------------------- meetings


def test_create_inserts_only_if_absent(store: FirestoreStore) -> None:
    assert store.create(meeting(attempts=1)) is True
    assert store.create(meeting(attempts=99)) is False
    stored = store.get("c-meeting1")
    assert stored is not None
    assert stored.attempts == 1


def test_get_round_trips_every_field_type(store: FirestoreStore, client: firestore.Client) -> None:
    original = full_meeting()
    assert store.create(original)

    loaded = store.get(original.meeting_id)

    assert loaded == original
    assert loaded is not None
    assert type(loaded.status) is Status
    assert isinstance(loaded.last_error, LastError)
    assert loaded.expected_participants == ("teacher@school.example", "phone:+441234567890")
    # Stored as Firestore types: timestamps, arrays, maps, the status as its string.
    raw = client.collection("meetings").document(original.meeting_id).get().to_dict() or {}
    assert raw["status"] == "collecting"
    assert raw["ended_at"] == ENDED
    assert raw["last_error"]["code"] == "quota"
    assert raw["participant_fingerprints"] == dict(original.participant_fingerprints)


def test_get_of_a_missing_meeting_is_none(store: FirestoreStore) -> None:
    assert store.get("c-nothing") is None


def test_update_applies_the_change(store: FirestoreStore) -> None:
    store.create(meeting())

    result = store.update("c-meeting1", lambda m: replace(m, attempts=m.attempts + 1))

    assert result is not None
    assert result.attempts == 1
    assert store.get("c-meeting1") == result


def test_update_with_no_change_leaves_the_document_untouched(
    store: FirestoreStore, client: firestore.Client
) -> None:
    store.create(meeting(attempts=2))
    reference = client.collection("meetings").document("c-meeting1")
    before = reference.get().update_time

    result = store.update("c-meeting1", lambda m: None)

    assert result == meeting(attempts=2)
    assert reference.get().update_time == before


def test_update_of_a_missing_meeting_returns_none_and_creates_nothing(
    store: FirestoreStore,
) -> None:
    calls: list[MeetingRecord] = []

    def change(current: MeetingRecord) -> MeetingRecord:
        calls.append(current)
        return current

    assert store.update("c-missing", change) is None
    assert calls == []
    assert store.get("c-missing") is None


def test_concurrent_updates_both_land(
    store: FirestoreStore, firestore_db: FirestoreEmulator
) -> None:
    store.create(meeting())
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        # One store (and client) per worker, as two function instances would have.
        own = FirestoreStore(firestore_client(settings_for(firestore_db)))
        try:
            start.wait(timeout=30)
            for _ in range(2):
                own.update("c-meeting1", lambda m: replace(m, attempts=m.attempts + 1))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    stored = store.get("c-meeting1")
    assert stored is not None
    assert stored.attempts == 4


def test_a_write_in_between_makes_the_update_decide_again_on_fresh_data(
    store: FirestoreStore, client: firestore.Client
) -> None:
    store.create(meeting())
    calls = 0

    def change(current: MeetingRecord) -> MeetingRecord:
        nonlocal calls
        calls += 1
        if calls == 1:
            # Another writer lands between this update's read and its write.
            client.collection("meetings").document("c-meeting1").update({"revision": 7})
        return replace(current, attempts=current.attempts + 1)

    updated = store.update("c-meeting1", change)
    assert calls == 2
    assert updated is not None
    stored = store.get("c-meeting1")
    assert stored is not None
    assert (stored.revision, stored.attempts) == (7, 1)  # neither write lost


def test_with_code_finds_only_that_code(store: FirestoreStore) -> None:
    store.create(meeting("c-a"))
    store.create(meeting("c-b", ended_at=ENDED + timedelta(days=7)))
    store.create(meeting("c-other", meeting_code="zzz-zzzz-zzz"))

    found = store.with_code("abc-defg-hij", ended=ALL_TIME)

    assert sorted(m.meeting_id for m in found) == ["c-a", "c-b"]
    assert store.with_code("nope-nope-nop", ended=ALL_TIME) == []


# ----------------------------------------------------------------------------- replays


@pytest.mark.parametrize(
    "webhook_id",
    ["msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "a/b/../c", "clé-ünïcødé-会議", "__x__", "." * 3000],
)
def test_deliveries_are_remembered_with_a_timestamp_expiry(
    store: FirestoreStore, client: firestore.Client, webhook_id: str
) -> None:
    expire_at = datetime(2026, 1, 22, 10, 45, 0, 500000, tzinfo=UTC)
    assert store.delivery(webhook_id) is None

    store.remember_delivery(webhook_id=webhook_id, meeting_id="c-meeting1", expire_at=expire_at)

    assert store.delivery(webhook_id) == "c-meeting1"
    assert store.delivery(webhook_id + "x") is None
    (document,) = [s.to_dict() or {} for s in client.collection(DELIVERIES).stream()]
    assert isinstance(document["expire_at"], datetime)
    assert document["expire_at"] == expire_at
    assert document["meeting_id"] == "c-meeting1"
