"""The meeting document a poll leaves behind (functions/poll_plan.py, docs/rules.md).

- A poll records when it ran, what the selected sessions showed (times, calendar event,
  organizer), the fingerprint it saw, and clears a staged change's progress; it completes a
  meeting only on the poll that moves it to ``complete``.
- A one-off poll leaves the chain's link as it was, unless the meeting is final; a final poll
  schedules nothing either way.
- A failure with no error of its own keeps the meeting's last error.
- Only a found meeting is partly merged, and only then do its times shrink to what it keeps.
- ``last_warning`` counts the sessions Reports lacked; a revision is dated and names what a
  changed participant showed before; expected participants are written at the revision and
  status of the poll, absent once the meeting is complete even without sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from functions.model import LastError, MeetingRecord
from functions.participant_keys import participant_doc_id
from functions.poll_plan import PollPlan, plan_poll
from functions.schedule import Status
from functions.stored_state import PREVIOUS_ATTENDED
from tests.unit.factories import at, session
from tests.unit.test_poll_plan import ALICE, BOB, LATE, TUTOR, Stored, meeting, poll
from tests.unit.test_rule_strength_poll_plan import inputs_for

ALICE_DOC = participant_doc_id("alice@school.example")
CAROL_DOC = participant_doc_id("carol@school.example")
FAR = session(at(200), at(230), key="eve@school.example", endpoint_id="e1")
EARLIER_ERROR = LastError(code="transient", message="Reports API 503", at=at(70))


def first_poll() -> PollPlan:
    """A first chained poll at minute 75 of a meeting declared without a calendar event."""
    stored = Stored(meeting(staging_progress="staged-1"))
    described = replace(ALICE, calendar_event_id="cal-s", organizer_email="org@school.example")
    return poll(stored, [described, BOB], now=75)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("last_polled_at", at(75)),
        ("actual_start", at(0)),
        ("actual_end", at(50)),
        ("calendar_event_id", "cal-s"),
        ("organizer_email", "org@school.example"),
        ("completed_at", None),
        ("chain_started", False),
        ("staging_progress", None),
    ],
    ids=[
        "polled-at",
        "first-join",
        "last-leave",
        "sessions-calendar-event",
        "sessions-organizer",
        "not-completed-yet",
        "next-link-not-started",
        "staging-cleared",
    ],
)
def test_a_poll_records_what_it_saw_on_the_meeting(field: str, expected: Any) -> None:
    value = getattr(first_poll().meeting, field)
    assert (value, type(value)) == (expected, type(expected))


def test_a_successful_poll_records_the_fingerprint_it_saw_and_dates_its_revision() -> None:
    plan = first_poll()
    assert plan.meeting.sessions_fingerprint is not None
    assert plan.decision.sessions_fingerprint == plan.meeting.sessions_fingerprint
    assert plan.revision is not None
    assert plan.revision.at == at(75)


def test_a_failure_without_an_error_of_its_own_keeps_the_last_error() -> None:
    stored = Stored(meeting(last_error=EARLIER_ERROR))
    plan = plan_poll(inputs_for(stored, None, error=None))
    assert plan.meeting.last_error == EARLIER_ERROR


def test_a_one_off_poll_leaves_the_chains_link_as_it_was() -> None:
    stored = Stored(meeting(chain_started=True))
    plan = poll(stored, [ALICE], now=80, in_chain=False)
    assert not plan.decision.final
    assert (plan.meeting.chain_started, plan.meeting.next_poll_at) == (True, at(75))


@pytest.mark.parametrize(
    ("answer", "now", "in_chain"),
    [
        ([ALICE, BOB], 120, True),
        ([ALICE, BOB], 120, False),
        (None, 60 + 24 * 60, True),
        (None, 60 + 24 * 60, False),
    ],
    ids=["settled-chained", "settled-one-off", "last-poll-chained", "last-poll-one-off"],
)
def test_a_final_poll_schedules_nothing(
    answer: list[Any] | None, now: float, in_chain: bool
) -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE, BOB], now=75)
    last = poll(stored, answer, now=now, in_chain=in_chain)
    assert last.decision.final
    assert last.meeting.next_poll_at is None


@pytest.mark.parametrize(
    ("answer", "lacking"), [([], 2), ([ALICE], 1)], ids=["both-lacking", "one-lacking"]
)
def test_the_incomplete_answer_warning_counts_the_lacking_sessions(
    answer: list[Any], lacking: int
) -> None:
    stored = Stored(meeting())
    poll(stored, [ALICE, BOB], now=75)
    later = poll(stored, answer, now=80, in_chain=False)
    assert later.meeting.last_warning is not None
    assert later.meeting.last_warning.message == (
        f"the Reports API returned {lacking} fewer session(s) than the meeting holds; "
        "the stored sessions are kept"
    )


def test_a_changed_participant_is_updated_and_names_what_it_showed_before() -> None:
    stored = Stored(meeting(expected=("carol@school.example",)))
    poll(stored, [ALICE], now=75)
    longer = session(at(0), at(55), key="alice@school.example", endpoint_id="a1")
    plan = poll(stored, [longer], now=80, in_chain=False)
    assert plan.updated == (ALICE_DOC,)
    assert plan.created == ()
    (upsert,) = plan.upserts
    assert upsert.document[PREVIOUS_ATTENDED] == 50 * 60


def found_times(plan: PollPlan) -> tuple[Any, ...]:
    m = plan.meeting
    return (m.started_at, m.ended_at, m.window_start, m.window_end)


def test_a_found_meeting_not_merged_keeps_its_times() -> None:
    found = Stored(meeting("b-found", start=-10, end=300, source="backfill"))
    plan = poll(found, [ALICE, FAR], now=400, in_chain=False)
    assert found_times(plan) == (at(-10), at(300), at(-25), at(360))


def test_a_found_meeting_partly_merged_shrinks_to_what_it_keeps() -> None:
    found = Stored(meeting("b-found", start=0, end=300, source="backfill"))
    poll(found, [ALICE, FAR], now=400, in_chain=False)
    declared = Stored(meeting("x-class", start=0, end=60))
    poll(declared, [ALICE, FAR], now=401, neighbours=[found], in_chain=False)
    rest = poll(found, [ALICE, FAR], now=402, neighbours=[declared], in_chain=False)
    assert rest.meeting.partly_merged_into == ("x-class",)
    assert found_times(rest) == (at(200), at(230), at(185), at(290))


def test_a_declared_meeting_handing_sessions_over_is_never_partly_merged() -> None:
    first = Stored(meeting("first", start=0, end=60))
    poll(first, [ALICE, LATE, TUTOR], now=75)
    second = Stored(meeting("second", start=70, end=120))
    poll(second, [TUTOR], now=135, neighbours=[first], in_chain=False)
    released = poll(first, [TUTOR], now=140, neighbours=[second], in_chain=False)
    assert "dora@school.example" not in first.attended()
    assert released.meeting.partly_merged_into == ()


def carol_written(plan: PollPlan) -> dict[str, Any]:
    (carol,) = (r for r in plan.upserts if r.doc_id == CAROL_DOC)
    return dict(carol.document)


Setup = Callable[[], tuple[Stored, list[Any] | None]]


def missing_after_data() -> tuple[Stored, list[Any] | None]:
    return Stored(meeting(expected=("carol@school.example",))), [ALICE]


def estimated_after_failure() -> tuple[Stored, list[Any] | None]:
    return Stored(meeting(expected=("carol@school.example",))), None


def complete_without_sessions() -> tuple[Stored, list[Any] | None]:
    record: MeetingRecord = meeting(
        expected=("carol@school.example",),
        status=Status.COMPLETE,
        attendance_source="reports",
        successful_polls=1,
    )
    return Stored(record), None


@pytest.mark.parametrize(
    ("setup", "absent", "estimated"),
    [
        (missing_after_data, False, True),
        (estimated_after_failure, False, True),
        (complete_without_sessions, True, False),
    ],
    ids=["missing-after-data", "estimated-after-failure", "complete-without-sessions"],
)
def test_an_expected_participant_is_written_at_the_polls_revision_and_status(
    setup: Setup, absent: bool, estimated: bool
) -> None:
    stored, fetched = setup()
    plan = poll(stored, fetched, now=75)
    carol = carol_written(plan)
    assert carol["revision"] == plan.meeting.revision
    assert carol["meeting_status"] == str(plan.meeting.status)
    assert (carol["absent"], carol["estimated"]) == (absent, estimated)


# ------------------------------------------------------------------------------------------------
# Which neighbours a poll tells


def test_a_leaving_session_whose_gainer_was_not_read_is_held() -> None:
    # The gainer's documents were not read (not among the donors): it is taken to hold nothing,
    # so the session stays here until it does.
    first = Stored(meeting("first", start=0, end=60))
    poll(first, [ALICE, LATE], now=75)
    second = Stored(meeting("second", start=70, end=120))
    plan = plan_poll(inputs_for(first, [], neighbours=[second.record], donors={}))
    assert "dora@school.example" in {p.participant_key for p in plan.selected.participants}
    assert plan.deletes == ()


def test_a_neighbour_that_holds_and_takes_nothing_of_this_meetings_is_not_re_polled() -> None:
    first = Stored(meeting("first", start=0, end=60))
    second = Stored(meeting("second", start=70, end=120))
    plan = poll(first, [ALICE], now=75, neighbours=[second], in_chain=False)
    assert plan.repolls == ()


def test_a_neighbour_holding_its_share_of_a_shared_session_is_not_re_polled() -> None:
    # The tutor stays across both classes: each takes its part, and the second already holds it.
    first = Stored(meeting("first", start=0, end=60))
    second = Stored(meeting("second", start=70, end=120))
    poll(second, [TUTOR], now=130, neighbours=[first], in_chain=False)
    assert "tutor@school.example" in second.attended()
    plan = poll(first, [TUTOR], now=131, neighbours=[second], in_chain=False)
    assert "tutor@school.example" in first.attended()
    assert plan.repolls == ()
