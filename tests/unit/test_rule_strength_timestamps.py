"""Timestamps at their corners (functions/timestamps.py): what the canonical fast path refuses, the
text whatever the machine's zone, milliseconds floored, and a refusal that names its problem."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.timestamps import (
    EPOCH,
    BadTimestamp,
    format_timestamp,
    parse_rfc3339,
    parse_timestamp,
    parse_timestamp_and_text,
    to_ms,
)

CANONICAL = "2026-01-15T10:05:00.000Z"


@pytest.mark.parametrize(
    "raw",
    [
        CANONICAL + "\x00",  # CPython's fromisoformat accepts a trailing NUL
        CANONICAL + "0",
        CANONICAL + "Z",
        "\x00" + CANONICAL,
    ],
)
def test_a_canonical_timestamp_with_anything_after_it_is_refused(raw: str) -> None:
    with pytest.raises(BadTimestamp) as refused:
        parse_rfc3339(raw)
    assert refused.value.problem == "format"
    assert parse_timestamp(raw) is None
    assert parse_timestamp_and_text(raw) is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("yesterday", "format"), ("2026-01-15T10:05:00", "offset"), ("2026-02-30T10:05:00Z", "value")],
)
def test_a_refusal_names_its_problem_as_its_message(raw: str, problem: str) -> None:
    with pytest.raises(BadTimestamp) as refused:
        parse_rfc3339(raw)
    assert refused.value.problem == problem
    assert str(refused.value) == problem


@pytest.fixture
def local_zone_far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone set to UTC+5:30 (a developer's CLI, not Cloud Functions)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_far_from_utc")
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 15, 12, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 15, 5, 5, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 1, 15, 10, 5, tzinfo=timezone.utc),  # noqa: UP017 - not the UTC object
    ],
)
def test_the_text_is_utc_whatever_the_local_zone(moment: datetime) -> None:
    assert time.timezone != 0  # the fixture took effect
    assert format_timestamp(moment) == CANONICAL


@pytest.mark.parametrize(
    ("moment", "ms"),
    [
        (EPOCH + timedelta(microseconds=1500), 1),
        (EPOCH + timedelta(microseconds=999), 0),
        (EPOCH - timedelta(microseconds=500), -1),
        (datetime(2026, 1, 15, 10, 5, 0, 123999, tzinfo=UTC), 1768471500123),
    ],
)
def test_milliseconds_are_whole_and_floored(moment: datetime, ms: int) -> None:
    assert to_ms(moment) == ms
    assert type(to_ms(moment)) is int
