"""What a poll decision carries forward (docs/rules.md "Status"), asserted whole.

``decide`` returns the status and what the meeting document remembers for the next poll: the
fingerprint of the sessions last seen and since when they have been seen (the settle clock). A
failed poll keeps what earlier polls established; a meeting that is final and later rescheduled
(declarations put it back to ``scheduled``) goes on from what its last decision remembered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.schedule import (
    FINAL_STATUSES,
    Decision,
    PollHistory,
    PollResult,
    Status,
    Timing,
    decide,
    next_poll_at,
)

ENDED = datetime(2026, 1, 15, 10, 45, tzinfo=UTC)
DEFAULT = Timing()  # SETTLE_S 30 min, ABSENT_GRACE_S 6 h, deadline ended_at + 24 h


def at(minutes: float) -> datetime:
    return ENDED + timedelta(minutes=minutes)


def ok(fingerprint: str, sessions: int = 3, missing: int = 0) -> PollResult:
    return PollResult(
        succeeded=True,
        sessions_fingerprint=fingerprint,
        session_count=sessions,
        missing_expected=missing,
    )


FAILED = PollResult(succeeded=False)
EMPTY = ok("E", sessions=0)


def remembered(history: PollHistory, result: PollResult, decision: Decision) -> PollHistory:
    """What the meeting document holds after a poll (the fields poll_plan stores)."""
    return PollHistory(
        status=decision.status,
        sessions_fingerprint=decision.sessions_fingerprint,
        fingerprint_seen_since=decision.fingerprint_seen_since,
        successful_polls=history.successful_polls + result.succeeded,
        ever_found_sessions=history.ever_found_sessions or result.session_count > 0,
    )


def run(
    polls: Sequence[tuple[float, PollResult]], history: PollHistory | None = None
) -> tuple[PollHistory, list[Decision]]:
    history = history or PollHistory(status=Status.SCHEDULED)
    decisions = []
    for minutes, result in polls:
        decision = decide(
            history=history, result=result, polled_at=at(minutes), ended_at=ENDED, timing=DEFAULT
        )
        decisions.append(decision)
        history = remembered(history, result, decision)
    return history, decisions


def test_the_settle_clock_runs_across_a_failed_poll() -> None:
    # Sessions A at 15 min, a failed poll at 30, A again at 45: A has been seen for SETTLE_S.
    _, decisions = run([(15, ok("A")), (30, FAILED), (45, ok("A"))])
    assert decisions[1] == Decision(Status.COLLECTING, "A", at(15), False)
    assert decisions[2] == Decision(Status.COMPLETE, "A", at(15), True)


def test_a_failed_poll_before_any_data_keeps_the_empty_settle_clock() -> None:
    _, decisions = run([(15, EMPTY), (30, FAILED), (45, EMPTY)])
    assert decisions[1] == Decision(Status.SCHEDULED, "E", at(15), False)
    assert decisions[2] == Decision(Status.SCHEDULED, "E", at(15), False)


def test_a_rescheduled_complete_meeting_goes_on_from_what_it_remembered() -> None:
    history, decisions = run([(15, ok("A")), (45, ok("A"))])
    assert decisions[-1] == Decision(Status.COMPLETE, "A", at(15), True)
    # A failed poll of the complete meeting (a manual sync) keeps the clock too.
    history, decisions = run([(60, FAILED)], history)
    assert decisions[-1] == Decision(Status.COMPLETE, "A", at(15), True)
    rescheduled = PollHistory(
        status=Status.SCHEDULED,
        sessions_fingerprint=history.sessions_fingerprint,
        fingerprint_seen_since=history.fingerprint_seen_since,
        successful_polls=history.successful_polls,
        ever_found_sessions=history.ever_found_sessions,
    )
    _, decisions = run([(90, ok("A"))], rescheduled)
    assert decisions[-1] == Decision(Status.COMPLETE, "A", at(15), True)


@pytest.mark.parametrize(
    ("name", "history", "result", "minutes", "expected"),
    [
        (
            "merged keeps what it had",
            PollHistory(Status.MERGED, "A", at(15), 2, True),
            ok("B"),
            45,
            Decision(Status.MERGED, "A", at(15), True),
        ),
        (
            "merged, failed poll",
            PollHistory(Status.MERGED, "A", at(15), 2, True),
            FAILED,
            45,
            Decision(Status.MERGED, "A", at(15), True),
        ),
        (
            "final meeting, failed poll",
            PollHistory(Status.NO_DATA, "E", at(15), 4, False),
            FAILED,
            3000,
            Decision(Status.NO_DATA, "E", at(15), True),
        ),
        (
            "last poll failed after data",
            PollHistory(Status.COLLECTING, "A", at(15), 3, True),
            FAILED,
            1440,
            Decision(Status.COMPLETE, "A", at(15), True),
        ),
        (
            "last poll failed after empty polls",
            PollHistory(Status.SCHEDULED, "E", at(15), 3, False),
            FAILED,
            1440,
            Decision(Status.NO_DATA, "E", at(15), True),
        ),
        (
            "every poll failed",
            PollHistory(Status.SCHEDULED),
            FAILED,
            1440,
            Decision(Status.FAILED, None, None, True),
        ),
        (
            "last poll, still empty",
            PollHistory(Status.SCHEDULED, "E", at(15), 3, False),
            EMPTY,
            1440,
            Decision(Status.NO_DATA, "E", at(15), True),
        ),
        (
            "empty again, not settled into anything",
            PollHistory(Status.SCHEDULED, "E", at(15), 1, False),
            EMPTY,
            45,
            Decision(Status.SCHEDULED, "E", at(15), False),
        ),
        (
            "first empty poll starts the clock",
            PollHistory(Status.SCHEDULED),
            EMPTY,
            15,
            Decision(Status.SCHEDULED, "E", at(15), False),
        ),
        (
            "late data for a no_data meeting",
            PollHistory(Status.NO_DATA, "E", at(15), 5, False),
            ok("A"),
            3000,
            Decision(Status.COMPLETE, "A", at(3000), True),
        ),
        (
            "complete meeting polled again with the same sessions",
            PollHistory(Status.COMPLETE, "A", at(15), 2, True),
            ok("A"),
            3000,
            Decision(Status.COMPLETE, "A", at(15), True),
        ),
        (
            "last poll with data that changed",
            PollHistory(Status.COLLECTING, "A", at(15), 3, True),
            ok("B"),
            1440,
            Decision(Status.COMPLETE, "B", at(1440), True),
        ),
        (
            "settled, everyone seen",
            PollHistory(Status.COLLECTING, "A", at(15), 1, True),
            ok("A"),
            45,
            Decision(Status.COMPLETE, "A", at(15), True),
        ),
        (
            "settled, someone missing, grace over",
            PollHistory(Status.COLLECTING, "A", at(15), 3, True),
            ok("A", missing=1),
            360,
            Decision(Status.COMPLETE, "A", at(15), True),
        ),
    ],
)
def test_each_decision_says_what_the_meeting_remembers(
    name: str, history: PollHistory, result: PollResult, minutes: float, expected: Decision
) -> None:
    decision = decide(
        history=history, result=result, polled_at=at(minutes), ended_at=ENDED, timing=DEFAULT
    )
    assert decision == expected, name


def test_sessions_remembered_without_a_successful_poll_do_not_settle() -> None:
    # "Two consecutive polls saw the same sessions": with no earlier successful poll, nothing was
    # seen before, whatever fingerprint the document holds.
    history = PollHistory(Status.SCHEDULED, "A", at(15), 0, False)
    decision = decide(
        history=history, result=ok("A"), polled_at=at(45), ended_at=ENDED, timing=DEFAULT
    )
    assert decision == Decision(Status.COLLECTING, "A", at(45), False)


def test_the_same_sessions_without_a_remembered_start_start_the_clock_now() -> None:
    history = PollHistory(Status.COLLECTING, "A", None, 1, True)
    decision = decide(
        history=history, result=ok("A"), polled_at=at(45), ended_at=ENDED, timing=DEFAULT
    )
    assert decision == Decision(Status.COLLECTING, "A", at(45), False)


def test_next_poll_names_what_it_refuses() -> None:
    with pytest.raises(ValueError, match=r"^polls_done counts from 1$"):
        next_poll_at(polled_at=ENDED, polls_done=0, ended_at=ENDED, timing=DEFAULT)


RESULTS = st.sampled_from([ok("A"), ok("B"), ok("A", missing=1), EMPTY, FAILED])


@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=1, max_value=120), RESULTS), min_size=1, max_size=12
    )
)
def test_the_settle_clock_is_the_first_poll_of_the_latest_run_of_equal_sessions(
    steps: list[tuple[int, PollResult]],
) -> None:
    """Reference model: successful polls in order, failures skipped; the remembered fingerprint
    is the latest one seen, and its clock starts at the first poll of the run of polls that saw
    it since the last poll that saw something else."""
    minutes = 15.0
    polls = []
    for gap, result in steps:
        polls.append((minutes, result))
        minutes += gap
    history, decisions = run(polls)
    seen = [(m, r.sessions_fingerprint) for m, r in polls if r.succeeded]
    if not seen:
        assert (history.sessions_fingerprint, history.fingerprint_seen_since) == (None, None)
        return
    latest = seen[-1][1]
    start = seen[-1][0]
    for m, fingerprint in reversed(seen):
        if fingerprint != latest:
            break
        start = m
    assert history.sessions_fingerprint == latest
    assert history.fingerprint_seen_since == at(start)
    for decision in decisions:
        if decision.status in FINAL_STATUSES:
            assert decision.final
