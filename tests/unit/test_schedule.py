"""The poll schedule and the status rules of docs/rules.md, as tables over ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.schedule import (
    Decision,
    PollHistory,
    PollResult,
    Status,
    Timing,
    deadline,
    decide,
    first_poll_at,
    next_poll_at,
)

ENDED = datetime(2026, 1, 15, 10, 45, tzinfo=UTC)
DEFAULT = Timing()


def at(minutes: float) -> datetime:
    return ENDED + timedelta(minutes=minutes)


def test_default_chain_doubles_then_caps_and_ends_on_the_deadline() -> None:
    polls = [first_poll_at(ended_at=ENDED, now=ENDED, timing=DEFAULT)]
    while (
        following := next_poll_at(
            polled_at=polls[-1], polls_done=len(polls), ended_at=ENDED, timing=DEFAULT
        )
    ) is not None:
        polls.append(following)
    offsets = [(p - ENDED).total_seconds() / 60 for p in polls]
    assert offsets == [15, 45, 105, 225, 465, 705, 945, 1185, 1425, 1440]
    assert polls[-1] == deadline(ENDED, DEFAULT)


@pytest.mark.parametrize(
    ("now_minutes", "expected_minutes"),
    [
        (-30, 15),  # webhook before the end: first poll still waits for the delay
        (0, 15),
        (14, 15),
        (20, 20),  # late webhook: poll now, never in the past
        (3000, 3000),  # after the deadline: one poll now
    ],
)
def test_first_poll_is_never_before_the_delay_nor_in_the_past(
    now_minutes: float, expected_minutes: float
) -> None:
    assert first_poll_at(ended_at=ENDED, now=at(now_minutes), timing=DEFAULT) == at(
        expected_minutes
    )


@pytest.mark.parametrize(
    ("polled_minutes", "polls_done", "expected_minutes"),
    [
        (15, 1, 45),
        (50, 2, 110),  # counted from the poll that happened (late by 5 min), no catch-up burst
        (300, 9, 540),  # the gap is capped at MAX_POLL_INTERVAL_S
        (1400, 9, 1440),  # a gap past the deadline is cut to end on it
        (1440, 10, None),  # the poll on the deadline is the last
        (3000, 1, None),  # a meeting polled first after its deadline is final at once
    ],
)
def test_next_poll(polled_minutes: float, polls_done: int, expected_minutes: float | None) -> None:
    expected = None if expected_minutes is None else at(expected_minutes)
    assert (
        next_poll_at(
            polled_at=at(polled_minutes), polls_done=polls_done, ended_at=ENDED, timing=DEFAULT
        )
        == expected
    )


def test_next_poll_counts_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        next_poll_at(polled_at=ENDED, polls_done=0, ended_at=ENDED, timing=DEFAULT)


@given(
    polls_done=st.integers(min_value=1, max_value=200),
    polled_offset_s=st.integers(min_value=0, max_value=200_000),
    first=st.integers(min_value=1, max_value=5000),
    maximum=st.integers(min_value=1, max_value=50_000),
)
def test_next_poll_is_after_the_poll_and_never_past_the_deadline(
    polls_done: int, polled_offset_s: int, first: int, maximum: int
) -> None:
    timing = Timing(first_poll_delay_s=first, max_poll_interval_s=maximum)
    polled = ENDED + timedelta(seconds=polled_offset_s)
    following = next_poll_at(polled_at=polled, polls_done=polls_done, ended_at=ENDED, timing=timing)
    if polled >= deadline(ENDED, timing):
        assert following is None
    else:
        assert following is not None
        assert polled < following <= deadline(ENDED, timing)
        assert following - polled <= timedelta(seconds=maximum)


OK_A = PollResult(succeeded=True, sessions_fingerprint="A", session_count=3)
OK_B = PollResult(succeeded=True, sessions_fingerprint="B", session_count=4)
OK_A_MISSING = PollResult(
    succeeded=True, sessions_fingerprint="A", session_count=3, missing_expected=1
)
EMPTY = PollResult(succeeded=True, sessions_fingerprint="E", session_count=0)
FAILED = PollResult(succeeded=False)
NEW = PollHistory(status=Status.SCHEDULED)
SEEN_A_AT_15 = PollHistory(
    status=Status.COLLECTING,
    sessions_fingerprint="A",
    fingerprint_seen_since=at(15),
    successful_polls=1,
    ever_found_sessions=True,
)
EMPTY_AT_15 = PollHistory(
    status=Status.SCHEDULED,
    sessions_fingerprint="E",
    fingerprint_seen_since=at(15),
    successful_polls=1,
)
ONLY_FAILURES = PollHistory(status=Status.SCHEDULED)


@pytest.mark.parametrize(
    ("name", "history", "result", "polled_minutes", "status", "final"),
    [
        ("first data", NEW, OK_A, 15, Status.COLLECTING, False),
        ("nothing yet", NEW, EMPTY, 15, Status.SCHEDULED, False),
        ("same sessions, settle not reached", SEEN_A_AT_15, OK_A, 44, Status.COLLECTING, False),
        ("same sessions, settled, all seen → (a)", SEEN_A_AT_15, OK_A, 45, Status.COMPLETE, True),
        (
            "changed sessions restart the settle clock",
            SEEN_A_AT_15,
            OK_B,
            105,
            Status.COLLECTING,
            False,
        ),
        (
            "settled but someone missing, grace running",
            SEEN_A_AT_15,
            OK_A_MISSING,
            105,
            Status.COLLECTING,
            False,
        ),
        (
            "settled, missing, grace over → (b)",
            SEEN_A_AT_15,
            OK_A_MISSING,
            360,
            Status.COMPLETE,
            True,
        ),
        ("last poll with data → (c)", SEEN_A_AT_15, OK_B, 1440, Status.COMPLETE, True),
        ("last poll empty → no_data", EMPTY_AT_15, EMPTY, 1440, Status.NO_DATA, True),
        ("failure keeps collecting", SEEN_A_AT_15, FAILED, 45, Status.COLLECTING, False),
        ("failure keeps scheduled", NEW, FAILED, 45, Status.SCHEDULED, False),
        ("every poll failed → failed", ONLY_FAILURES, FAILED, 1440, Status.FAILED, True),
        (
            "last poll failed after data → complete",
            SEEN_A_AT_15,
            FAILED,
            1440,
            Status.COMPLETE,
            True,
        ),
        (
            "last poll failed after empty polls → no_data",
            EMPTY_AT_15,
            FAILED,
            1440,
            Status.NO_DATA,
            True,
        ),
        ("created after deadline, data → complete", NEW, OK_A, 3000, Status.COMPLETE, True),
        ("created after deadline, nothing → no_data", NEW, EMPTY, 3000, Status.NO_DATA, True),
        (
            "no_data then late data → complete",
            PollHistory(status=Status.NO_DATA, successful_polls=5),
            OK_A,
            3000,
            Status.COMPLETE,
            True,
        ),
        (
            "failed then success → complete",
            PollHistory(status=Status.FAILED),
            OK_A,
            3000,
            Status.COMPLETE,
            True,
        ),
        (
            "complete then failure stays complete",
            PollHistory(status=Status.COMPLETE, successful_polls=3, ever_found_sessions=True),
            FAILED,
            3000,
            Status.COMPLETE,
            True,
        ),
        ("merged never moves", PollHistory(status=Status.MERGED), OK_A, 45, Status.MERGED, True),
    ],
)
def test_status_rules(
    name: str,
    history: PollHistory,
    result: PollResult,
    polled_minutes: float,
    status: Status,
    final: bool,
) -> None:
    decision = decide(
        history=history, result=result, polled_at=at(polled_minutes), ended_at=ENDED, timing=DEFAULT
    )
    assert (decision.status, decision.final) == (status, final), name


def test_settle_clock_starts_when_the_sessions_first_appear() -> None:
    first = decide(history=NEW, result=OK_A, polled_at=at(15), ended_at=ENDED, timing=DEFAULT)
    assert first == Decision(Status.COLLECTING, "A", at(15), False)
    history = PollHistory(
        status=first.status,
        sessions_fingerprint=first.sessions_fingerprint,
        fingerprint_seen_since=first.fingerprint_seen_since,
        successful_polls=1,
        ever_found_sessions=True,
    )
    changed = decide(history=history, result=OK_B, polled_at=at(45), ended_at=ENDED, timing=DEFAULT)
    assert changed.fingerprint_seen_since == at(45)
    same = decide(history=history, result=OK_A, polled_at=at(45), ended_at=ENDED, timing=DEFAULT)
    assert same.fingerprint_seen_since == at(15)
