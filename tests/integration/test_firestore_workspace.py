"""FirestoreWorkspaceState against Google's Firestore emulator (session fixture; every test starts
from an empty database), on a client built from Settings as production builds it."""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.cloud import firestore

from functions.adapters.firestore_store import firestore_client
from functions.adapters.firestore_workspace import (
    EVENT_DELIVERIES,
    SPACES,
    SUBSCRIPTIONS,
    FirestoreWorkspaceState,
    event_doc_id,
    space_doc_id,
    subscription_doc_id,
)
from functions.meet_records import Problem, SubscriptionRecord
from functions.ports import WorkspaceState
from functions.subscriptions import ensure_subscriptions
from local.firestore_emulator import FirestoreEmulator
from tests.fakes import ManualClock
from tests.integration.test_firestore_store import settings_for
from tests.workspace_fakes import FakeDirectory, FakeWorkspaceEvents

pytestmark = pytest.mark.emulator

T0 = datetime(2026, 3, 2, 6, 0, 0, 123456, tzinfo=UTC)
TEACHER = "Teacher@School.example"


@pytest.fixture
def client(firestore_db: FirestoreEmulator) -> firestore.Client:
    return firestore_client(settings_for(firestore_db))


@pytest.fixture
def state(client: firestore.Client) -> FirestoreWorkspaceState:
    return FirestoreWorkspaceState(client)


def full_record(email: str = "teacher@school.example", **changes: Any) -> SubscriptionRecord:
    record = SubscriptionRecord(
        organizer_email=email,
        user_id="111",
        subscription="subscriptions/abc",
        state="SUSPENDED",
        expire_time=T0 + timedelta(days=7),
        last_event_at=T0 - timedelta(hours=1),
        problem=Problem(code="suspended", message="ENDPOINT_NOT_FOUND", at=T0),
        updated_at=T0,
    )
    return replace(record, **changes)


def test_it_implements_the_port(state: FirestoreWorkspaceState) -> None:
    port: WorkspaceState = state
    assert port is state


def test_a_record_round_trips_with_every_field(state: FirestoreWorkspaceState) -> None:
    record = full_record()
    state.save_subscription(record)
    read = state.subscription("teacher@school.example")
    assert read == record
    assert read is not None
    for moment in (read.expire_time, read.last_event_at, read.updated_at):
        assert type(moment) is datetime
        assert moment is not None
        assert moment.tzinfo is UTC
    assert state.subscriptions() == [record]


def test_a_bare_record_round_trips(state: FirestoreWorkspaceState) -> None:
    record = SubscriptionRecord(organizer_email="new@school.example")
    state.save_subscription(record)
    assert state.subscription("new@school.example") == record
    assert state.subscription("other@school.example") is None


def test_documents_are_keyed_by_a_hash_of_the_email(
    state: FirestoreWorkspaceState, client: firestore.Client
) -> None:
    state.save_subscription(full_record())
    doc_id = subscription_doc_id(TEACHER)
    assert doc_id == subscription_doc_id("teacher@school.example")
    assert "@" not in doc_id
    assert len(doc_id) == 64
    stored = client.collection(SUBSCRIPTIONS).document(doc_id).get().to_dict()
    assert stored is not None
    assert stored["organizer_email"] == "teacher@school.example"
    assert stored["problem"] == {
        "code": "suspended",
        "message": "ENDPOINT_NOT_FOUND",
        "at": T0,
    }
    # Looked up in any case: emails are case-insensitive.
    assert state.subscription(TEACHER) == full_record()


def test_other_time_zones_come_back_as_utc(state: FirestoreWorkspaceState) -> None:
    paris = timezone(timedelta(hours=1))
    state.save_subscription(full_record(expire_time=datetime(2026, 3, 9, 7, 0, tzinfo=paris)))
    read = state.subscription("teacher@school.example")
    assert read is not None
    assert read.expire_time == datetime(2026, 3, 9, 6, 0, tzinfo=UTC)
    assert read.expire_time is not None
    assert read.expire_time.tzinfo is UTC


def test_save_replaces_and_delete_removes(state: FirestoreWorkspaceState) -> None:
    state.save_subscription(full_record())
    healthy = full_record(state="ACTIVE", problem=None)
    state.save_subscription(healthy)
    assert state.subscription("teacher@school.example") == healthy
    state.delete_subscription("teacher@school.example")
    assert state.subscription("teacher@school.example") is None
    state.delete_subscription("teacher@school.example")  # idempotent
    assert state.subscriptions() == []


def test_subscription_named_finds_the_record_naming_it(state: FirestoreWorkspaceState) -> None:
    state.save_subscription(full_record("b@school.example", subscription="subscriptions/b"))
    state.save_subscription(full_record("a@school.example", subscription="subscriptions/a"))
    state.save_subscription(SubscriptionRecord(organizer_email="c@school.example"))
    named = state.subscription_named("subscriptions/a")
    assert named is not None
    assert named.organizer_email == "a@school.example"
    assert state.subscription_named("subscriptions/zzz") is None
    assert [r.organizer_email for r in state.subscriptions()] == [
        "a@school.example",
        "b@school.example",
        "c@school.example",
    ]


def test_space_readers(state: FirestoreWorkspaceState, client: firestore.Client) -> None:
    assert state.space_reader("spaces/jQCFfuBOdN5z") is None
    state.remember_space_reader("spaces/jQCFfuBOdN5z", "a@school.example")
    state.remember_space_reader("spaces/jQCFfuBOdN5z", "b@school.example")
    assert state.space_reader("spaces/jQCFfuBOdN5z") == "b@school.example"
    stored = client.collection(SPACES).document("jQCFfuBOdN5z").get().to_dict()
    assert stored is not None
    assert stored["organizer_email"] == "b@school.example"
    assert isinstance(stored["updated_at"], datetime)
    # A name that is no plain id is stored under a hash, never as a path.
    state.remember_space_reader("spaces/../x", "c@school.example")
    assert state.space_reader("spaces/../x") == "c@school.example"
    assert space_doc_id("spaces/../x").startswith("~")


def test_handled_events_are_remembered_once_with_their_expiry(
    state: FirestoreWorkspaceState, client: firestore.Client
) -> None:
    expire_at = T0 + timedelta(days=7)
    assert not state.event_handled("ce-1")
    state.remember_event("ce-1", expire_at=expire_at)
    assert state.event_handled("ce-1")
    first = client.collection(EVENT_DELIVERIES).document(event_doc_id("ce-1")).get().to_dict()
    assert first is not None
    state.remember_event("ce-1", expire_at=expire_at + timedelta(days=1))  # a redelivery
    again = client.collection(EVENT_DELIVERIES).document(event_doc_id("ce-1")).get().to_dict()
    assert again == first
    assert first["expire_at"] == expire_at
    assert isinstance(first["handled_at"], datetime)
    assert not state.event_handled("ce-2")
    # Any ce-id is a valid document id once hashed.
    state.remember_event("a/b/../c", expire_at=expire_at)
    assert state.event_handled("a/b/../c")


def test_the_daily_run_on_firestore_is_idempotent(state: FirestoreWorkspaceState) -> None:
    clock = ManualClock(T0)
    directory = FakeDirectory({"a@school.example": "111", "b@school.example": "222"})
    events = FakeWorkspaceEvents(clock, directory=directory)

    def run(*organizers: str) -> dict[str, int]:
        return ensure_subscriptions(
            organizers=organizers,
            events=events,
            directory=directory,
            state=state,
            topic="projects/attendance-test/topics/workspace-events",
            clock=clock,
        ).counts()

    assert run("a@school.example", "b@school.example")["created"] == 2
    before = state.subscriptions()
    clock.now += timedelta(hours=1)
    assert run("a@school.example", "b@school.example")["unchanged"] == 2
    assert state.subscriptions() == before
    assert run("a@school.example")["deleted"] == 1
    assert [r.organizer_email for r in state.subscriptions()] == ["a@school.example"]
