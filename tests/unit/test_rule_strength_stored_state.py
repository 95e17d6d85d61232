"""What participant documents say to a reader and to the next change (functions/stored_state.py),
over documents as the model writes them: landed, staged by the change the meeting landed, staged by
a change that was fenced out, ahead of the meeting's revision; real, estimated and absent.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.attendance import Participant, Session, build_participants, participant_to_json
from functions.model import (
    MeetingRecord,
    absent_record,
    estimated_record,
    participant_record,
)
from functions.participant_keys import participant_doc_id
from functions.schedule import Status
from functions.stored_state import (
    PREVIOUS_ATTENDED,
    STAGED_COMMIT,
    StoredState,
    carrying_landed_token,
    committed,
    committed_attended,
    is_committed,
    preliminary_kept,
    stored_sessions,
    with_previous,
)
from tests.unit.factories import at

LANDED = "token-landed"
FENCED = "token-fenced-out"
MEETING = MeetingRecord(
    meeting_id="m",
    source="webhook",
    meeting_code="abc-defg-hij",
    ended_at=at(60),
    started_at=at(0),
    external_id=None,
    window_start=at(-15),
    window_end=at(120),
    deadline=at(60) + timedelta(days=1),
    revision=3,
    staged_commit=LANDED,
    multi_commit=True,
)


def real_participant(key: str, *, minutes: float = 30, external: bool = False) -> Participant:
    sessions = [
        Session(
            event_id=f"2026-01-15T10:{n:02d}:00.000Z/{key}",
            conference_id="conf-A",
            endpoint_id=f"{key}-ep-{n}",
            join_time=at(n),
            leave_time=at(n + minutes),
            duration_seconds=int(minutes * 60),
            meeting_code="abc-defg-hij",
            identifier=key,
            identifier_type="email_address",
            display_name=f"Name of {key}",
            is_external=external,
            device_type="web",
            ip_address="192.0.2.7",
            location_country="FR",
        )
        for n in (0, 10)
    ]
    (participant,) = build_participants(sessions)
    return participant


def real(key: str, revision: int = 3, /, **fields: Any) -> dict[str, Any]:
    """A real participant's document at ``revision``, with ``fields`` set over it."""
    record = participant_record(
        real_participant(key),
        meeting=MEETING,
        revision=revision,
        status=Status.COMPLETE,
        ip_mode="full",
    )
    return {**record.document, **fields}


def estimate(key: str, **fields: Any) -> dict[str, Any]:
    record = estimated_record(key, meeting=MEETING, revision=3, status=Status.COLLECTING)
    return {**record.document, **fields}


def absence(key: str, **fields: Any) -> dict[str, Any]:
    record = absent_record(key, meeting=MEETING, revision=3, status=Status.COMPLETE)
    return {**record.document, **fields}


@pytest.mark.parametrize(
    ("document", "counted"),
    [
        (real("a@x.example"), True),
        (real("a@x.example", **{STAGED_COMMIT: LANDED}), True),  # its mirror did not run yet
        (real("a@x.example", **{STAGED_COMMIT: FENCED}), False),  # even at the same revision
        (real("a@x.example", 2, **{STAGED_COMMIT: FENCED}), False),
        (real("a@x.example", 4), False),  # ahead of the meeting
        (real("a@x.example", 2), True),
    ],
)
def test_a_reader_counts_landed_documents_only(document: dict[str, Any], counted: bool) -> None:
    assert is_committed(document, MEETING) is counted
    assert committed([document], MEETING) == ([document] if counted else [])


def test_what_the_meeting_shows_for_a_document() -> None:
    assert committed_attended(real("a@x.example", attended_seconds=0), MEETING) == 0
    assert committed_attended(absence("b@x.example"), MEETING) == 0
    shown = real("a@x.example", attended_seconds=1200)
    assert committed_attended(shown, MEETING) == 1200
    # A document staged by a fenced-out change replaced one the meeting still shows.
    replaced = real("a@x.example", **{STAGED_COMMIT: FENCED, PREVIOUS_ATTENDED: 900})
    assert committed_attended(replaced, MEETING) == 900
    new = real("a@x.example", **{STAGED_COMMIT: FENCED, PREVIOUS_ATTENDED: None})
    assert committed_attended(new, MEETING) is None


def test_documents_still_naming_the_landed_change_are_the_ones_to_settle() -> None:
    documents = [
        real("a@x.example", **{STAGED_COMMIT: LANDED}),
        real("b@x.example", **{STAGED_COMMIT: FENCED}),
        real("c@x.example"),
        real("d@x.example", **{STAGED_COMMIT: LANDED}),
    ]
    assert carrying_landed_token(documents, MEETING) == (
        participant_doc_id("a@x.example"),
        participant_doc_id("d@x.example"),
    )
    plain = replace(MEETING, staged_commit=None)
    assert carrying_landed_token([real("c@x.example"), *documents], plain) == ()


def test_the_stored_state_a_change_starts_from() -> None:
    documents = [
        real("a@x.example", attended_seconds=1500),
        estimate("b@x.example"),
        absence("c@x.example"),
        real("d@x.example", **{STAGED_COMMIT: FENCED, PREVIOUS_ATTENDED: 600}),
        absence("e@x.example", **{STAGED_COMMIT: FENCED, PREVIOUS_ATTENDED: None}),
    ]
    state = StoredState.of(documents, MEETING)
    ids = {k: participant_doc_id(f"{k}@x.example") for k in "abcde"}
    assert state.before == {
        ids["a"]: ("a@x.example", 1500),
        ids["b"]: ("b@x.example", 3600),  # the estimate: the declared hour
        ids["c"]: ("c@x.example", 0),
        ids["d"]: ("d@x.example", 600),
        ids["e"]: ("e@x.example", None),
    }
    assert state.seen == {"a@x.example", "d@x.example"}
    assert state.dirty == {ids["d"], ids["e"]}
    assert state.unlanded_sessions == {ids["d"]}
    assert state.attended(ids["d"]) == 600
    assert state.attended("no-such-document") is None


def test_a_written_record_carries_what_it_replaces() -> None:
    record = participant_record(
        real_participant("a@x.example"),
        meeting=MEETING,
        revision=4,
        status=Status.COMPLETE,
        ip_mode="full",
    )
    for previous in (900, None):
        carried = with_previous(record, previous)
        assert carried.document == {**record.document, PREVIOUS_ATTENDED: previous}
        assert (carried.doc_id, carried.fingerprint) == (record.doc_id, record.fingerprint)


def test_stored_sessions_build_the_same_participants_again() -> None:
    originals = [
        real_participant("a@x.example", external=True),
        real_participant("b@x.example", minutes=45),
    ]
    documents = [
        estimate("z@x.example"),  # estimates and absences come first: they hold no session
        absence("y@x.example"),
        *(
            participant_record(
                p, meeting=MEETING, revision=3, status=Status.COMPLETE, ip_mode="full"
            ).document
            for p in originals
        ),
    ]
    sessions = stored_sessions(documents, MEETING)
    assert len(sessions) == 4
    assert {s.meeting_code for s in sessions} == {"abc-defg-hij"}
    rebuilt = build_participants(sessions)
    assert [participant_to_json(p) for p in rebuilt] == [participant_to_json(p) for p in originals]
    assert [p.is_external for p in rebuilt] == [True, False]
    assert [p.display_name for p in rebuilt] == ["Name of a@x.example", "Name of b@x.example"]


@pytest.mark.parametrize("token", [None, LANDED, FENCED])
def test_a_kept_preliminary_document_is_written_again_as_the_meetings(token: str | None) -> None:
    """One of a staged preliminary change that never landed (FENCED) is kept, and counted once
    written again: without the name of that change (Meet schedule 10110: the poll's revision
    counted it while readers did not)."""
    fields: dict[str, Any] = {"preliminary": True, "fingerprint": "meet-1"}
    if token is not None:
        fields[STAGED_COMMIT] = token
    document = real("a@x.example", 2, **fields)
    meeting = replace(MEETING, attendance_source="meet")
    kept = preliminary_kept([document], meeting, status=Status.COLLECTING, revision=4, erased={})
    (record,) = kept.values()
    assert STAGED_COMMIT not in record.document
    written = replace(meeting, revision=4, staged_commit=None, multi_commit=False)
    assert is_committed(record.document, written)
    assert record.document["attended_seconds"] == document["attended_seconds"]
    assert (record.document["revision"], record.fingerprint) == (4, "meet-1")
