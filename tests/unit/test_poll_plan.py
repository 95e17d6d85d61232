"""Tables for the pure poll plan (docs/rules.md "Polls never forget, and change a meeting all at
once"): what one poll decides from what it read, decision by decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.attendance import Session
from functions.commits import STAGED
from functions.errors import ReportsError
from functions.model import LastError, MeetingRecord
from functions.participant_keys import participant_doc_id
from functions.poll_plan import (
    INCOMPLETE_ANSWER,
    PollInputs,
    PollPlan,
    plan_poll,
    plan_without_documents,
)
from functions.schedule import Status, Timing
from tests.unit.factories import at, session

CODE = "abc-defg-hij"
TIMING = Timing()


def meeting(
    meeting_id: str = "m",
    *,
    start: float = 0,
    end: float = 60,
    source: str = "webhook",
    expected: tuple[str, ...] = (),
    **changes: Any,
) -> MeetingRecord:
    record = MeetingRecord(
        meeting_id=meeting_id,
        source=source,  # type: ignore[arg-type]
        meeting_code=CODE,
        ended_at=at(end),
        started_at=at(start),
        external_id=None,
        window_start=at(start - 15),
        window_end=at(end + 60),
        deadline=at(end) + timedelta(days=1),
        expected_participants=expected,
        missing_participants=expected,
        next_poll_at=at(end + 15),
        lease_owner="me",
        lease_until=at(end + 30),
    )
    return replace(record, **changes)


class Stored:
    """A meeting with its documents, as the store holds them after the plans applied so far."""

    def __init__(self, record: MeetingRecord) -> None:
        self.record = record
        self.documents: dict[str, dict[str, Any]] = {}
        #: Polls whose plan, made without reading the documents, held.
        self.planned_unread = 0

    def apply(self, plan: PollPlan) -> None:
        for record in plan.upserts:
            self.documents[record.doc_id] = dict(record.document)
        for doc_id in plan.deletes:
            self.documents.pop(doc_id, None)
        for doc_id in plan.status_updates:
            self.documents[doc_id]["meeting_status"] = str(plan.meeting.status)
        self.record = replace(plan.meeting, lease_owner="me", lease_until=plan.meeting.updated_at)

    def mirrored(self) -> bool:
        """Whether every document mirrors the meeting's status (as a poll asks the store)."""
        status = str(self.record.status)
        return all(d.get("meeting_status", status) == status for d in self.documents.values())

    def attended(self) -> dict[str, int]:
        return {
            str(d["participant_key"]): int(d["attended_seconds"]) for d in self.documents.values()
        }


def poll(
    stored: Stored,
    fetched: Sequence[Session] | None,
    *,
    now: float,
    neighbours: Sequence[Stored] = (),
    in_chain: bool = True,
    apply: bool = True,
) -> PollPlan:
    donors: Mapping[str, Sequence[Mapping[str, Any]]] = {
        n.record.meeting_id: list(n.documents.values()) for n in neighbours
    }
    error = (
        None
        if fetched is not None
        else LastError(code="transient", message="Reports API 503", at=at(now))
    )
    inputs = PollInputs(
        meeting=stored.record,
        neighbours=[n.record for n in neighbours],
        stored=list(stored.documents.values()),
        donors=donors,
        fetched=fetched,
        error=error,
        polled_at=at(now),
        revision_reason="poll",
        in_chain=in_chain,
        timing=TIMING,
        window_before_s=900,
        window_after_s=3600,
        ip_mode="full",
    )
    plan = plan_poll(inputs)
    if stored.mirrored():
        # Every poll of these tables: a plan made without the documents is the same plan.
        unread = plan_without_documents(replace(inputs, stored=()))
        assert unread is None or unread == plan
        stored.planned_unread += unread is not None
    if apply:
        stored.apply(plan)
    return plan


ALICE = session(at(0), at(50), key="alice@school.example", endpoint_id="a1")
BOB = session(at(10), at(50), key="bob@school.example", endpoint_id="b1")


def test_a_first_poll_stores_its_participants_and_schedules_the_next_link() -> None:
    stored = Stored(meeting(expected=("alice@school.example", "carol@school.example")))
    plan = poll(stored, [ALICE, BOB], now=75)
    assert plan.meeting.status is Status.COLLECTING
    assert plan.meeting.revision == 1
    assert plan.revision is not None
    assert stored.attended() == {
        "alice@school.example": 3000,
        "bob@school.example": 2400,
        "carol@school.example": 3600,  # still expected: an estimate while collecting
    }
    assert plan.meeting.missing_participants == ("carol@school.example",)
    assert plan.meeting.next_poll_at == at(75 + 30)
    assert (plan.meeting.lease_owner, plan.meeting.lease_until) == (None, None)
    assert plan.meeting.sessions_start == at(0)
    assert plan.meeting.sessions_end == at(50)
    assert set(plan.created) == {d for d in stored.documents if not d.startswith("carol")}


def test_an_unchanged_poll_writes_nothing_and_settles() -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE, BOB], now=75)
    second = poll(stored, [ALICE, BOB], now=120)
    assert (second.upserts, second.deletes, second.revision) == ((), (), None)
    assert second.meeting.status is Status.COMPLETE  # same sessions 45 min apart, nobody missing
    assert second.meeting.revision == 1


@pytest.mark.parametrize("answer", [[], [ALICE]], ids=["empty", "partial"])
def test_a_poll_that_fetched_fewer_sessions_keeps_the_stored_ones_and_warns(
    answer: list[Session],
) -> None:
    stored = Stored(meeting(expected=("carol@school.example",)))
    poll(stored, [ALICE, BOB], now=75)
    poll(stored, [ALICE, BOB], now=60 + 6 * 60)  # settled, and the absence grace is over
    assert stored.record.status is Status.COMPLETE
    before = stored.attended()
    assert before["carol@school.example"] == 0

    later = poll(stored, answer, now=600, in_chain=False)

    assert stored.attended() == before
    assert later.meeting.status is Status.COMPLETE  # never no_data once it has sessions
    assert (later.upserts, later.deletes, later.revision) == ((), (), None)
    assert later.meeting.last_warning is not None
    assert later.meeting.last_warning.code == INCOMPLETE_ANSWER
    assert later.meeting.participant_count == 2
    complete = poll(stored, [ALICE, BOB], now=700, in_chain=False)
    assert complete.meeting.last_warning is None


def test_a_failed_poll_changes_no_attendance_and_keeps_the_schedule() -> None:
    stored = Stored(meeting(expected=("alice@school.example",)))
    poll(stored, [ALICE], now=75)
    failed = poll(stored, None, now=105)
    assert failed.meeting.last_error is not None
    assert failed.meeting.status is Status.COLLECTING
    assert (failed.upserts, failed.deletes, failed.revision) == ((), (), None)
    assert failed.meeting.next_poll_at is not None
    recovered = poll(stored, [ALICE], now=170)
    assert recovered.meeting.last_error is None


def test_a_failed_last_poll_after_data_completes_with_the_absent_marked() -> None:
    stored = Stored(meeting(expected=("alice@school.example", "carol@school.example")))
    poll(stored, [ALICE], now=75)
    last = poll(stored, None, now=60 + 24 * 60)
    assert last.meeting.status is Status.COMPLETE
    assert last.decision.final
    carol = next(d for d in stored.documents.values() if d["participant_key"].startswith("carol"))
    assert (carol["absent"], carol["attended_seconds"], carol["estimated"]) == (True, 0, False)


def test_only_failures_until_the_deadline_end_failed() -> None:
    stored = Stored(meeting())
    poll(stored, None, now=75)
    last = poll(stored, None, now=60 + 24 * 60)
    assert last.meeting.status is Status.FAILED


LATE = session(at(70), at(100), key="dora@school.example", endpoint_id="d1")
TUTOR = session(at(-5), at(150), key="tutor@school.example", endpoint_id="t1")


def test_a_new_neighbour_takes_its_share_from_the_stored_sessions() -> None:
    first = Stored(meeting("first", start=0, end=60))
    poll(first, [ALICE, LATE, TUTOR], now=75)
    assert set(first.attended()) == {
        "alice@school.example",
        "dora@school.example",
        "tutor@school.example",
    }
    second = Stored(meeting("second", start=70, end=120))

    # Reports has lost Dora's session: the second meeting takes it from the first one's store.
    taken = poll(second, [TUTOR], now=135, neighbours=[first], in_chain=False)

    assert "dora@school.example" in second.attended()
    assert taken.repolls == ("first",)  # the first meeting holds it and must let it go
    # The tutor is split at the midpoint of the first's end and the second's start: 65 min.
    assert second.attended()["tutor@school.example"] == (150 - 65) * 60
    released = poll(first, [TUTOR], now=140, neighbours=[second], in_chain=False)
    assert "dora@school.example" not in first.attended()
    assert released.revision is not None
    assert any(
        c.participant_key == "dora@school.example" and c.after is None
        for c in released.revision.changes
    )
    assert first.attended()["tutor@school.example"] == (65 + 5) * 60


def test_a_leaving_session_is_held_until_the_meeting_that_gains_it_stores_it() -> None:
    first = Stored(meeting("first", start=0, end=60))
    poll(first, [ALICE, LATE], now=75)
    second = Stored(meeting("second", start=70, end=120))

    held = poll(first, [], now=80, neighbours=[second], in_chain=False)

    assert "dora@school.example" in first.attended()  # the second meeting does not have it yet
    assert held.deletes == ()


def test_a_found_meeting_wholly_covered_by_a_declared_one_merges_into_it() -> None:
    found = Stored(meeting("b-found", start=0, end=50, source="backfill"))
    poll(found, [ALICE, BOB], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [], now=401, neighbours=[found], in_chain=False)
    assert set(declared.attended()) == {"alice@school.example", "bob@school.example"}

    merged = poll(found, [ALICE, BOB], now=402, neighbours=[declared], in_chain=False)

    assert merged.meeting.status is Status.MERGED
    assert merged.meeting.merged_into == "x-class"
    assert merged.deletes == ()
    assert {d["meeting_status"] for d in found.documents.values()} == {"merged"}


def test_a_found_meeting_partly_covered_keeps_the_rest() -> None:
    far = session(at(200), at(230), key="eve@school.example", endpoint_id="e1")
    found = Stored(meeting("b-found", start=0, end=230, source="backfill"))
    poll(found, [ALICE, far], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE, far], now=401, neighbours=[found], in_chain=False)
    assert set(declared.attended()) == {"alice@school.example"}

    rest = poll(found, [ALICE, far], now=402, neighbours=[declared], in_chain=False)

    assert rest.meeting.status is not Status.MERGED
    assert set(found.attended()) == {"eve@school.example"}
    assert rest.meeting.partly_merged_into == ("x-class",)


def test_documents_above_the_meetings_revision_are_rewritten() -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE], now=75)
    (doc_id,) = stored.documents
    stored.documents[doc_id] = {
        **stored.documents[doc_id],
        "revision": 5,
        "attended_seconds": 1,
        "meeting_status": STAGED,
    }
    ghost = participant_doc_id("anon:Ghost")
    stored.documents[ghost] = {"participant_key": "anon:Ghost", "revision": 5, "sessions": []}

    plan = poll(stored, [ALICE], now=105)

    assert [r.doc_id for r in plan.upserts] == [doc_id]
    assert plan.deletes == (ghost,)
    assert stored.attended() == {"alice@school.example": 3000}


def test_under_ip_mode_none_a_stored_session_equals_a_fetched_one() -> None:
    with_ip = replace(ALICE, ip_address="203.0.113.7")
    stored = Stored(meeting())
    inputs: dict[str, Any] = {}
    for now in (75, 105):
        plan = plan_poll(
            PollInputs(
                meeting=stored.record,
                neighbours=[],
                stored=list(stored.documents.values()),
                donors={},
                fetched=[with_ip],
                error=None,
                polled_at=at(now),
                revision_reason="poll",
                in_chain=True,
                timing=TIMING,
                window_before_s=900,
                window_after_s=3600,
                ip_mode="none",
                **inputs,
            )
        )
        stored.apply(plan)
        if now == 105:
            assert plan.upserts == ()
    (document,) = stored.documents.values()
    assert document["sessions"][0]["ip_address"] is None


def test_the_plan_raises_nothing_for_a_reports_error_kind() -> None:
    # The failure's kind only shows in last_error; the plan treats every failure alike.
    error = ReportsError("denied", kind="permission")
    assert error.status == 502
    stored = Stored(meeting())
    plan = poll(stored, None, now=75)
    assert plan.meeting.last_error is not None
    assert isinstance(plan.meeting.updated_at, datetime)


# ------------------------------------------------------------------------------------------------
# Planning without reading the documents: the same plan, or none


def unread_plan(stored: Stored, fetched: Sequence[Session] | None, *, now: float) -> object:
    return plan_without_documents(
        PollInputs(
            meeting=stored.record,
            neighbours=[],
            stored=(),
            donors={},
            fetched=fetched,
            error=None
            if fetched is not None
            else LastError(code="transient", message="503", at=at(now)),
            polled_at=at(now),
            revision_reason="poll",
            in_chain=False,
            timing=TIMING,
            window_before_s=900,
            window_after_s=3600,
            ip_mode="full",
        )
    )


def test_an_unchanged_re_poll_is_planned_without_reading_the_documents() -> None:
    stored = Stored(meeting(expected=("carol@school.example",)))
    poll(stored, [ALICE, BOB], now=75)
    poll(stored, [ALICE, BOB], now=60 + 6 * 60)
    assert stored.record.status is Status.COMPLETE
    before = stored.planned_unread
    again = poll(stored, [BOB, ALICE], now=600, in_chain=False)
    assert stored.planned_unread == before + 1  # and poll() checked it is the same plan
    assert (again.upserts, again.deletes, again.status_updates, again.revision) == (
        (),
        (),
        (),
        None,
    )


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ([ALICE], "Reports lacks a stored session: the union needs the documents"),
        ([ALICE, BOB, LATE], "a new session: a document changes"),
        ([replace(BOB, display_name="Bob B.")], "a participant field changes"),
        (None, "a failed answer: only the stored sessions say what the meeting holds"),
    ],
)
def test_a_poll_that_would_change_a_document_reads_them(
    answer: list[Session] | None, why: str
) -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE, BOB], now=75)
    poll(stored, [ALICE, BOB], now=60 + 6 * 60)
    assert unread_plan(stored, [ALICE, BOB], now=600) is not None
    assert unread_plan(stored, answer, now=600) is None, why


def test_a_status_move_or_a_first_poll_reads_the_documents() -> None:
    stored = Stored(meeting())
    assert unread_plan(stored, [ALICE], now=75) is None  # nothing stored yet: a first poll
    poll(stored, [ALICE], now=75)
    assert stored.record.status is Status.COLLECTING
    # The same sessions long enough later settle the meeting: every mirror must follow.
    assert unread_plan(stored, [ALICE], now=60 + 6 * 60) is None
    assert unread_plan(stored, [ALICE], now=80) is not None


POOL = [
    ALICE,
    BOB,
    LATE,
    TUTOR,
    session(at(65), at(90), key="erin@school.example", endpoint_id="e1"),
    replace(ALICE, event_id="dup/alice"),  # the same session reported twice
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=st.lists(
        st.one_of(st.none(), st.lists(st.sampled_from(POOL), max_size=len(POOL))),
        min_size=1,
        max_size=6,
    ),
    times=st.lists(st.integers(min_value=1, max_value=400), min_size=6, max_size=6),
    neighbour_from=st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
)
def test_any_poll_planned_without_the_documents_is_the_plan_made_with_them(
    answers: list[list[Session] | None], times: list[int], neighbour_from: int | None
) -> None:
    # poll() compares the two plans at every step; here the answers, their times and a
    # neighbour arriving part-way are random.
    first = Stored(meeting("first", start=0, end=60, expected=("carol@school.example",)))
    second = Stored(meeting("second", start=70, end=120))
    now = 75.0
    for step, (answer, gap) in enumerate(zip(answers, times, strict=False)):
        now += gap
        if neighbour_from is not None and step >= neighbour_from:
            poll(second, answer, now=now, neighbours=[first], in_chain=False)
            poll(first, answer, now=now + 0.5, neighbours=[second], in_chain=False)
        else:
            poll(first, answer, now=now, in_chain=False)
