"""The poll plan at its corners (functions/poll_plan.py, docs/rules.md "Polls never forget, and change a meeting all at once").

- Of two copies of one session, the stored one outlives a lesser copy (from Reports or from a
  neighbour's store); a fresh copy of the same event replaces the stored one.
- A fetched session is held under the deployment's IP mode, "full" keeping the address.
- Sessions held while their gainer has not stored them are counted like the selected ones: clipped
  to the credited span, and with the meeting's own calendar event, organizer and code.
- ``last_warning`` names every warning of the answer; a revision names what a removed participant
  showed before.
- A plan made without the documents is refused unless the documents are known to be as the
  meeting counted them; when given, it warns as the plan made with them does.
- A merge writes nothing but the status mirrors and ends the meeting's chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from functions.attendance import Session, build_participants
from functions.model import IpMode, LastError, preliminary_record
from functions.participant_keys import participant_doc_id
from functions.poll_plan import (
    INCOMPLETE_ANSWER,
    TEXTS_REPAIRED,
    UNUSABLE_EVENTS,
    PollInputs,
    PollPlan,
    plan_poll,
    plan_without_documents,
)
from functions.schedule import Status
from functions.stored_state import STAGED_COMMIT
from tests.unit.factories import at, session
from tests.unit.test_poll_plan import ALICE, BOB, LATE, TIMING, TUTOR, Stored, meeting, poll

#: Two copies of one session (same conference and endpoint): the later leave wins.
FAY_EARLY = session(at(52), at(58), key="fay@school.example", endpoint_id="f1")
FAY_LATE = session(at(52), at(59), key="fay@school.example", endpoint_id="f1")
BOB_DOC = participant_doc_id("bob@school.example")


def inputs_for(stored: Stored, fetched: Sequence[Session] | None, **changes: Any) -> PollInputs:
    """A one-off poll of ``stored`` alone at minute 80, with ``changes`` over its inputs."""
    inputs = PollInputs(
        meeting=stored.record,
        neighbours=[],
        stored=list(stored.documents.values()),
        donors={},
        fetched=fetched,
        error=None
        if fetched is not None
        else LastError(code="transient", message="503", at=at(80)),
        polled_at=at(80),
        revision_reason="poll",
        in_chain=False,
        timing=TIMING,
        window_before_s=900,
        window_after_s=3600,
        ip_mode="full",
    )
    return replace(inputs, **changes)


# ------------------------------------------------------------------------------------------------
# Which copy of a session the meeting keeps


@pytest.mark.parametrize(
    ("first", "then", "attended", "event_id", "display_name"),
    [
        # Reports returns a lesser copy (an earlier leave, another event): the stored one stays.
        ([FAY_LATE], [FAY_EARLY], 7 * 60, FAY_LATE.event_id, None),
        ([FAY_EARLY], [FAY_LATE], 7 * 60, FAY_LATE.event_id, None),
        # The same event again with other texts: the fresh copy replaces the stored one.
        ([BOB], [replace(BOB, display_name="Bob B.")], 40 * 60, BOB.event_id, "Bob B."),
    ],
    ids=["lesser-fresh-copy", "better-fresh-copy", "same-event-fresh-copy"],
)
def test_a_session_keeps_its_preferred_copy_and_a_fresh_copy_of_its_event(
    first: list[Session],
    then: list[Session],
    attended: int,
    event_id: str,
    display_name: str | None,
) -> None:
    stored = Stored(meeting())
    poll(stored, first, now=75)
    poll(stored, then, now=80, in_chain=False)
    (document,) = stored.documents.values()
    assert document["attended_seconds"] == attended
    assert [s["event_id"] for s in document["sessions"]] == [event_id]
    assert document["display_name"] == display_name


def test_a_stored_copy_outlives_a_lesser_copy_a_neighbour_still_holds() -> None:
    first = Stored(meeting("first", start=0, end=60))
    second = Stored(meeting("second", start=70, end=120))
    poll(second, [FAY_EARLY], now=130, in_chain=False)  # alone, the second meeting takes it
    poll(first, [FAY_LATE], now=135, neighbours=[second], in_chain=False)
    assert first.attended() == {"fay@school.example": 7 * 60}

    # Reports has lost it; the second meeting has not let its copy go yet.
    again = poll(first, [], now=140, neighbours=[second], in_chain=False)

    assert first.attended() == {"fay@school.example": 7 * 60}
    assert (again.upserts, again.deletes, again.revision) == ((), (), None)


@pytest.mark.parametrize(
    ("ip_mode", "stored_address"),
    [("full", "203.0.113.7"), ("truncated", "203.0.113.0"), ("none", None)],
)
def test_a_fetched_session_is_held_under_the_ip_mode(
    ip_mode: IpMode, stored_address: str | None
) -> None:
    fetched = [replace(ALICE, ip_address="203.0.113.7")]
    plan = plan_poll(inputs_for(Stored(meeting()), fetched, ip_mode=ip_mode))
    (record,) = plan.upserts
    assert [s["ip_address"] for s in record.document["sessions"]] == [stored_address]
    (participant,) = plan.selected.participants
    assert [s.ip_address for s in participant.sessions] == [stored_address]


# ------------------------------------------------------------------------------------------------
# Held sessions count like selected ones


def test_held_sessions_are_clipped_and_described_like_the_selected_ones() -> None:
    first = Stored(
        meeting(
            "first",
            start=0,
            end=60,
            calendar_event_id="cal-1",
            organizer_email="organizer@school.example",
        )
    )
    poll(first, [ALICE, LATE, TUTOR], now=75)
    second = Stored(meeting("second", start=70, end=120))

    # Dora's session now belongs to the second meeting, which has not stored it: held here.
    plan = poll(first, [TUTOR], now=80, neighbours=[second], in_chain=False)

    # Credited up to minute 65 (the midpoint of 60 and 70): Dora's held session counts nothing
    # here, and the tutor counts from minute -5 to 65.
    assert first.attended() == {
        "alice@school.example": 50 * 60,
        "dora@school.example": 0,
        "tutor@school.example": 70 * 60,
    }
    assert plan.selected.total_attended_seconds == 120 * 60
    # The sessions hold no calendar event or organizer: the meeting's own are kept.
    assert (plan.selected.calendar_event_id, plan.selected.organizer_email) == (
        "cal-1",
        "organizer@school.example",
    )


def test_held_sessions_without_a_meeting_code_keep_the_meetings_code() -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE], now=75)
    # Reports now gives the same event without its meeting_code: no meeting selects it, so the
    # stored session is held (as an orphan) in the fresh copy.
    plan = poll(stored, [replace(ALICE, meeting_code=None)], now=80, in_chain=False)
    assert [s.meeting_code for s in plan.orphans] == [None]
    assert plan.selected.meeting_code == "abc-defg-hij"
    assert stored.attended() == {"alice@school.example": 50 * 60}


# ------------------------------------------------------------------------------------------------
# What the meeting and its revision say


@pytest.mark.parametrize(
    ("warnings", "skipped", "code", "message"),
    [
        (("2 call_ended events skipped",), 2, UNUSABLE_EVENTS, "2 call_ended events skipped"),
        (
            ("1 call_ended event skipped", "1 text repaired"),
            1,
            UNUSABLE_EVENTS,
            "1 call_ended event skipped; 1 text repaired",
        ),
        (
            ("1 text repaired", "2 texts repaired"),
            0,
            TEXTS_REPAIRED,
            "1 text repaired; 2 texts repaired",
        ),
    ],
)
def test_the_answers_warnings_are_all_named_in_last_warning(
    warnings: tuple[str, ...], skipped: int, code: str, message: str
) -> None:
    inputs = inputs_for(
        Stored(meeting()), [ALICE], answer_warnings=warnings, skipped_events=skipped
    )
    warning = plan_poll(inputs).meeting.last_warning
    assert warning is not None
    assert (warning.code, warning.message, warning.at) == (code, message, at(80))


def test_a_revision_names_what_a_removed_participant_showed_before() -> None:
    first = Stored(meeting("first", start=0, end=60))
    poll(first, [ALICE, LATE], now=75)
    second = Stored(meeting("second", start=70, end=120))
    poll(second, [], now=135, neighbours=[first], in_chain=False)  # takes Dora's session

    released = poll(first, [], now=140, neighbours=[second], in_chain=False)

    assert released.revision is not None
    assert [(c.participant_key, c.before, c.after) for c in released.revision.changes] == [
        ("dora@school.example", 30 * 60, None)
    ]


# ------------------------------------------------------------------------------------------------
# Planning without the documents


def settled_meeting() -> Stored:
    stored = Stored(meeting())
    poll(stored, [ALICE, BOB], now=75)
    poll(stored, [ALICE, BOB], now=60 + 6 * 60)
    assert stored.record.status is Status.COMPLETE
    return stored


def estimates_only() -> Stored:
    stored = Stored(meeting(expected=("carol@school.example",)))
    poll(stored, [], now=75)
    assert stored.attended() == {"carol@school.example": 3600}
    return stored


@pytest.mark.parametrize(
    ("build", "fetched", "staging_progress", "documents_given", "planned"),
    [
        # Unchanged, and the documents are as the meeting counted them: the plan holds.
        (settled_meeting, [ALICE, BOB], None, False, True),
        # A staged change began writing documents: they must be read.
        (settled_meeting, [ALICE, BOB], "commit-7", False, False),
        # A failed answer: only the stored sessions say what the meeting holds.
        (estimates_only, None, None, False, False),
        # The documents were read: plan_poll plans with them.
        (settled_meeting, [ALICE, BOB], None, True, False),
    ],
    ids=["unchanged", "staging", "failed", "documents-given"],
)
def test_a_plan_without_documents_is_made_only_when_they_are_known(
    build: Callable[[], Stored],
    fetched: list[Session] | None,
    staging_progress: str | None,
    documents_given: bool,
    planned: bool,
) -> None:
    stored = build()
    record = replace(stored.record, staging_progress=staging_progress)
    inputs = inputs_for(stored, fetched, meeting=record, polled_at=at(600))
    unread = plan_without_documents(inputs if documents_given else replace(inputs, stored=()))
    assert unread == (plan_poll(inputs) if planned else None)


def test_a_plan_without_documents_warns_of_a_session_only_a_neighbour_still_holds() -> None:
    first = Stored(meeting("first", start=0, end=60))
    second = Stored(meeting("second", start=70, end=120))
    poll(second, [FAY_LATE], now=130, in_chain=False)
    poll(first, [FAY_LATE], now=135, neighbours=[second], in_chain=False)

    inputs = replace(
        inputs_for(first, [], polled_at=at(140)),
        neighbours=[second.record],
        donors={"second": list(second.documents.values())},
    )
    unread = plan_without_documents(replace(inputs, stored=()))

    assert unread is not None
    assert unread == plan_poll(inputs)
    assert unread.meeting.last_warning is not None
    assert unread.meeting.last_warning.code == INCOMPLETE_ANSWER


# ------------------------------------------------------------------------------------------------
# A merge


def test_a_merge_ends_the_chain_and_writes_only_the_status_mirrors() -> None:
    found = Stored(meeting("b-found", start=0, end=50, source="backfill"))
    poll(found, [ALICE, BOB], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [], now=401, neighbours=[found], in_chain=False)
    # A staged change landed on the found meeting; Bob's mirror has not run yet.
    found.record = replace(found.record, staged_commit="commit-3")
    found.documents[BOB_DOC][STAGED_COMMIT] = "commit-3"
    before = found.record
    assert (before.chain_started, before.attempts, before.lease_owner) == (False, 1, "me")
    assert before.next_poll_at is not None

    plan: PollPlan = poll(found, [ALICE, BOB], now=402, neighbours=[declared], in_chain=False)

    merged = plan.meeting
    assert (merged.status, merged.merged_into) == (Status.MERGED, "x-class")
    assert (merged.next_poll_at, merged.chain_started) == (None, True)
    assert (merged.attempts, merged.last_polled_at, merged.updated_at) == (2, at(402), at(402))
    assert (merged.lease_owner, merged.lease_until) == (None, None)
    assert (merged.repolls_due, plan.repolls) == ((), ())
    assert (plan.decision.status, plan.decision.final) == (Status.MERGED, True)
    assert plan.selected.participants == ()
    assert plan.settle == (BOB_DOC,)
    assert plan.status_updates == tuple(sorted(found.documents))
    assert (plan.upserts, plan.deletes, plan.revision) == ((), (), None)
    assert (plan.created, plan.updated, plan.orphans) == ((), (), ())


def test_a_merge_without_a_landed_change_settles_nothing() -> None:
    found = Stored(meeting("b-found", start=0, end=50, source="backfill"))
    poll(found, [ALICE, BOB], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [], now=401, neighbours=[found], in_chain=False)
    plan = poll(found, [ALICE, BOB], now=402, neighbours=[declared], in_chain=False)
    assert plan.meeting.status is Status.MERGED
    assert plan.settle == ()


@pytest.mark.parametrize(
    ("due", "asked"),
    [
        ((), ()),
        (("c-class",), ("c-class",)),
        # Named out of order and twice (a hand-edited meeting document): once each, in order.
        (("z-class", "c-class", "z-class"), ("c-class", "z-class")),
    ],
)
def test_a_merge_still_asks_for_the_repolls_due_once_each_in_order(
    due: tuple[str, ...], asked: tuple[str, ...]
) -> None:
    found = Stored(meeting("b-found", start=0, end=50, source="backfill"))
    poll(found, [ALICE, BOB], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [], now=401, neighbours=[found], in_chain=False)
    found.record = replace(found.record, repolls_due=due)
    plan = poll(found, [ALICE, BOB], now=402, neighbours=[declared], in_chain=False)
    assert plan.meeting.status is Status.MERGED
    assert (plan.meeting.repolls_due, plan.repolls) == (asked, asked)


def _meet_meeting_that_gave_its_part_away(**changes: Any) -> tuple[Stored, Stored]:
    """A declared class (minutes 0-60, Alice polled) and a ``meet`` meeting (40-100) that Meet's
    signal created and whose part of Meet's attendance went to the class: it stores nothing of
    its own and names the class in ``partly_merged_into``."""
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE], now=70, in_chain=False)
    found = Stored(
        meeting(
            "m-meet",
            start=40,
            end=100,
            source="meet",
            attendance_source="estimated",
            partly_merged_into=("x-class",),
            **changes,
        )
    )
    return declared, found


def test_a_meet_meeting_with_nothing_left_merges_into_the_meeting_that_took_its_part() -> None:
    declared, found = _meet_meeting_that_gave_its_part_away()
    plan = poll(found, [ALICE], now=200, neighbours=[declared], in_chain=False)
    assert (plan.meeting.status, plan.meeting.merged_into) == (Status.MERGED, "x-class")
    assert plan.upserts == ()


@pytest.mark.parametrize(
    ("carl_from", "class_has_reports", "merged_into"),
    [
        # Meet's signal created the meet meeting while the class covering it was declared: the
        # class took Reports data for the conference, so the meet meeting holds nothing its own.
        (25, True, "x-class"),
        # Before the class has Reports data, Meet's view is the only one: it stays.
        (25, False, None),
        # Carl's preliminary session falls in no meeting with Reports data: it stays.
        (130, True, None),
    ],
)
def test_a_meet_meeting_whose_preliminary_sessions_a_class_with_reports_takes_is_merged(
    carl_from: float, class_has_reports: bool, merged_into: str | None
) -> None:
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE] if class_has_reports else None, now=70, in_chain=False)
    assert (declared.record.attendance_source == "reports") is class_has_reports
    found = Stored(meeting("m-meet", start=20, end=50, source="meet", attendance_source="meet"))
    carl = session(at(carl_from), at(carl_from + 10), key="carl@school.example", endpoint_id="c1")
    (participant,) = build_participants([carl])
    record = preliminary_record(
        participant, meeting=found.record, revision=1, status=Status.COLLECTING, ip_mode="full"
    )
    found.documents[record.doc_id] = dict(record.document)
    plan = poll(found, [ALICE], now=200, neighbours=[declared], in_chain=False)
    assert plan.meeting.merged_into == merged_into
    assert (plan.meeting.status is Status.MERGED) is (merged_into is not None)


@pytest.mark.parametrize(("erased", "merged_into"), [(True, "x-class"), (False, None)])
def test_an_erased_persons_preliminary_session_keeps_no_meet_meeting_alive(
    erased: bool, merged_into: str | None
) -> None:
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE], now=70, in_chain=False)
    found = Stored(meeting("m-meet", start=20, end=50, source="meet", attendance_source="meet"))
    carl = session(at(25), at(35), key="carl@school.example", endpoint_id="c1")
    eve = session(at(130), at(140), key="eve@school.example", endpoint_id="e1")
    for participant in build_participants([carl, eve]):
        record = preliminary_record(
            participant, meeting=found.record, revision=1, status=Status.COLLECTING, ip_mode="full"
        )
        found.documents[record.doc_id] = dict(record.document)
    inputs = inputs_for(
        found,
        [ALICE],
        neighbours=[declared.record],
        donors={"x-class": list(declared.documents.values())},
        polled_at=at(200),
        erased={"eve@school.example": "hash-of-eve"} if erased else {},
    )
    assert plan_poll(inputs).meeting.merged_into == merged_into


def test_a_meet_meeting_still_holding_preliminary_attendance_is_not_merged() -> None:
    declared, found = _meet_meeting_that_gave_its_part_away()
    found.record = replace(found.record, attendance_source="meet")
    carl = session(at(130), at(140), key="carl@school.example", endpoint_id="c1")
    (participant,) = build_participants([carl])
    record = preliminary_record(
        participant, meeting=found.record, revision=1, status=Status.COLLECTING, ip_mode="full"
    )
    found.documents[record.doc_id] = dict(record.document)
    plan = poll(found, [ALICE], now=200, neighbours=[declared], in_chain=False)
    assert plan.meeting.status is not Status.MERGED
    assert plan.meeting.merged_into is None


@pytest.mark.parametrize("class_holds_it", [False, True])
def test_a_fetched_session_a_neighbour_takes_and_lacks_re_polls_that_neighbour(
    class_holds_it: bool,
) -> None:
    """Reports showed Carl's session only after the class's last poll; the found meeting beside
    it fetches the session, which the class takes: the class is re-polled (its own query finds
    it), unless it holds it already (Meet schedule 6365 lost three such sessions)."""
    carl = session(at(50), at(58), key="carl@school.example", endpoint_id="c1")
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE, carl] if class_holds_it else [ALICE], now=70, in_chain=False)
    late = session(at(150), at(160), key="eve@school.example", endpoint_id="e1")
    found = Stored(meeting("b-found", start=150, end=160, source="backfill"))
    plan = poll(found, [carl, late], now=200, neighbours=[declared], in_chain=False)
    assert set(found.attended()) == {"eve@school.example"}
    assert ("x-class" in plan.repolls) is not class_holds_it


def test_a_neighbour_whose_documents_were_not_read_is_re_polled_for_a_session_it_takes() -> None:
    """The poll did not read the class's documents (their sessions seemed too far away): it
    cannot know the class holds Carl's session, so it asks (Meet schedule 18789)."""
    carl = session(at(50), at(58), key="carl@school.example", endpoint_id="c1")
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE], now=70, in_chain=False)
    late = session(at(150), at(160), key="eve@school.example", endpoint_id="e1")
    found = Stored(meeting("b-found", start=150, end=160, source="backfill"))
    inputs = inputs_for(found, [carl, late], neighbours=[declared.record], polled_at=at(200))
    assert "x-class" in plan_poll(inputs).repolls


def test_a_found_meeting_whose_times_the_poll_moves_is_planned_again_at_them() -> None:
    """Its share is selected and clipped under its times: beside another found meeting the
    credited spans move with them, so the poll plans again at the new times and takes its part
    of the session the new boundary gives it (Meet schedules 7934, 8859, 13897, 23073 kept a
    share of the old boundary)."""
    eve = session(at(200), at(250), key="eve@school.example", endpoint_id="e1")
    gus = session(at(248), at(258), key="gus@school.example", endpoint_id="g1")
    found = Stored(meeting("b-found", start=0, end=230, source="backfill"))
    beside = Stored(meeting("b-beside", start=260, end=300, source="backfill"))
    poll(found, [ALICE, eve], now=400, neighbours=[beside], in_chain=False)
    poll(beside, [gus], now=400, neighbours=[found], in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE], now=401, neighbours=[found], in_chain=False)
    assert "gus@school.example" not in found.attended()

    rest = poll(found, [ALICE, eve], now=402, neighbours=[declared, beside], in_chain=False)

    # Its times now reach Gus's leave: the boundary with the meeting beside it follows.
    assert (rest.meeting.started_at, rest.meeting.ended_at) == (at(200), at(258))
    assert found.attended()["gus@school.example"] == 10 * 60
    assert "b-found" not in rest.repolls


def test_a_found_meeting_whose_times_keep_moving_re_polls_itself() -> None:
    """Eve's sessions follow each other an hour apart or less: each new end brings the next
    one into the window. Past its rounds the poll stores what it has and asks for a re-poll of
    the meeting itself, which goes on from there until the times hold."""
    chain = [
        session(at(t), at(t + 50), key="eve@school.example", endpoint_id=f"e{t}")
        for t in (200, 280, 380, 480, 580, 680)
    ]
    found = Stored(meeting("b-found", start=0, end=230, source="backfill"))
    poll(found, [ALICE, chain[0]], now=800, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE], now=801, neighbours=[found], in_chain=False)

    first = poll(found, [ALICE, *chain], now=802, neighbours=[declared], in_chain=False)
    assert first.meeting.ended_at == at(630)  # three rounds past the first plan
    assert "b-found" in first.repolls
    found.record = replace(found.record, repolls_due=())  # asked for, as the delivery does
    again = poll(found, [ALICE, *chain], now=803, neighbours=[declared], in_chain=False)
    assert (again.meeting.started_at, again.meeting.ended_at) == (at(200), at(730))
    assert "b-found" not in again.repolls


def test_a_poll_without_reports_data_counts_the_preliminary_documents_it_keeps() -> None:
    """A preliminary write in stages died before landing: its document is kept by the next poll
    without Reports data, and written again as the meeting's, so readers count what the
    revision record says (Meet schedule 10110)."""
    found = Stored(meeting("m-meet", start=20, end=50, source="meet", attendance_source="meet"))
    carl = session(at(25), at(35), key="carl@school.example", endpoint_id="c1")
    (participant,) = build_participants([carl])
    record = preliminary_record(
        participant, meeting=found.record, revision=1, status=Status.COLLECTING, ip_mode="full"
    )
    found.documents[record.doc_id] = {**record.document, STAGED_COMMIT: "died-before-landing"}
    plan = poll(found, [], now=200, in_chain=False)
    (upsert,) = plan.upserts
    assert STAGED_COMMIT not in upsert.document
    assert plan.revision is not None
    assert [(c.participant_key, c.before, c.after) for c in plan.revision.changes] == [
        ("carl@school.example", None, 600)
    ]
