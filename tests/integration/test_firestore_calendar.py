"""FirestoreCalendarState against Google's Firestore emulator: channels round-trip, the sync
lease keeps two syncs of a calendar apart (also when they race), and a token is stored only over
the generation it was read from."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from google.cloud import firestore

from functions.adapters.firestore_calendar import FirestoreCalendarState
from functions.calendar_records import ChannelRecord
from local.firestore_emulator import FirestoreEmulator
from tests.conftest import TEST_PROJECT

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CAL = "teacher@school.example"


def state() -> FirestoreCalendarState:
    return FirestoreCalendarState(firestore.Client(project=TEST_PROJECT))


def test_channels_round_trip_and_notifications_are_noted(firestore_db: FirestoreEmulator) -> None:
    calendars = state()
    record = ChannelRecord(
        channel_id="c1",
        calendar_id=CAL,
        organizer_email=CAL,
        resource_id="r1",
        token_hash="h",
        expiration=NOW + timedelta(days=7),
        created_at=NOW,
        address="http://127.0.0.1:1/calendar/notifications",
    )
    calendars.save_channel(record)
    assert calendars.channel("c1") == record
    assert calendars.channels() == [record]
    calendars.note_notification("c1", NOW + timedelta(minutes=1))
    noted = calendars.channel("c1")
    assert noted is not None
    assert noted.last_notification_at == NOW + timedelta(minutes=1)
    calendars.delete_channel("c1")
    assert calendars.channel("c1") is None
    calendars.note_notification("c1", NOW)  # a closed channel: nothing, and no error
    assert calendars.channel("__x__") is None
    assert calendars.channel("a/b") is None


def test_the_lease_keeps_two_syncs_apart_and_the_generation_fences_the_token(
    firestore_db: FirestoreEmulator,
) -> None:
    calendars = state()
    until = NOW + timedelta(minutes=5)
    first = calendars.take_sync(CAL, organizer_email=CAL, owner="a", until=until, now=NOW)
    assert first is not None
    assert first.generation == 0
    assert calendars.take_sync(CAL, organizer_email=CAL, owner="b", until=until, now=NOW) is None
    assert calendars.finish_sync(CAL, owner="a", sync_token="t1", generation=0, now=NOW)
    stored = calendars.sync_state(CAL)
    assert stored is not None
    assert (stored.sync_token, stored.generation, stored.lease_owner) == ("t1", 1, None)
    # A sync whose lease ran out finds another's token: it stores nothing.
    later = NOW + timedelta(minutes=10)
    slow = calendars.take_sync(CAL, organizer_email=CAL, owner="slow", until=later, now=NOW)
    assert slow is not None
    fast = calendars.take_sync(
        CAL, organizer_email=CAL, owner="fast", until=later + timedelta(minutes=5), now=later
    )
    assert fast is not None
    assert calendars.finish_sync(CAL, owner="fast", sync_token="t2", generation=1, now=later)
    assert not calendars.finish_sync(CAL, owner="slow", sync_token="old", generation=1, now=later)
    final = calendars.sync_state(CAL)
    assert final is not None
    assert (final.sync_token, final.generation) == ("t2", 2)
    # A failed sync keeps the token and records the problem.
    again = calendars.take_sync(CAL, organizer_email=CAL, owner="c", until=later, now=NOW)
    assert again is not None
    assert not calendars.finish_sync(
        CAL, owner="c", sync_token=None, generation=2, now=NOW, problem="transient: 503"
    )
    failed = calendars.sync_state(CAL)
    assert failed is not None
    assert (failed.sync_token, failed.problem) == ("t2", "transient: 503")
    calendars.drop_sync(CAL)
    assert calendars.sync_state(CAL) is None


def test_racing_syncs_take_the_lease_once(firestore_db: FirestoreEmulator) -> None:
    owners = [f"o{i}" for i in range(6)]
    taken: list[str] = []
    barrier = threading.Barrier(len(owners))

    def take(owner: str) -> None:
        calendars = state()
        barrier.wait()
        held = calendars.take_sync(
            CAL, organizer_email=CAL, owner=owner, until=NOW + timedelta(minutes=5), now=NOW
        )
        if held is not None:
            taken.append(owner)

    threads = [threading.Thread(target=take, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1
