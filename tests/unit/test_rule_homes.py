"""Rules that each have one home, checked from every side that uses them.

Participant keys are built from sessions, accepted from declarations and read back into identity
fields; duplicates are resolved on full sessions by polls and on compact facts by the backfill;
time is parsed by the decoder, the request edge and the CLI. Each side must agree with the others.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.attendance import Session
from functions.backfill import SessionFact, session_fact
from functions.duplicates import dedupe_key, preferred
from functions.intervals import Span
from functions.limits import REPORTS_RETENTION
from functions.participant_keys import declared_key, identity_fields, session_key
from functions.selection import reports_query_start
from functions.timestamps import (
    BadTimestamp,
    format_timestamp,
    parse_rfc3339,
    parse_timestamp_and_text,
)
from tests.unit.factories import T0

IDENTIFIERS = st.sampled_from(
    [
        (None, None),
        ("Ann@School.example", "email_address"),
        ("bo@school.example", None),
        ("+14155550100", "phone_number"),
        ("dev-7", "device_id"),
        ("x-1", "room_id"),
        ("x-2", None),
    ]
)


def session_with(
    identifier: str | None, identifier_type: str | None, display_name: str | None, endpoint: str
) -> Session:
    return Session(
        event_id="2026-01-15T10:00:00.000Z/1",
        conference_id="c",
        endpoint_id=endpoint or None,
        join_time=T0,
        leave_time=T0 + timedelta(minutes=1),
        duration_seconds=60,
        identifier=identifier,
        identifier_type=identifier_type,
        display_name=display_name,
    )


@given(IDENTIFIERS, st.sampled_from([None, "", "Ann B"]), st.sampled_from(["", "ep-1"]))
def test_a_sessions_key_is_accepted_as_declared_and_reads_back_its_identity(
    identity: tuple[str | None, str | None], display_name: str | None, endpoint: str
) -> None:
    identifier, identifier_type = identity
    key, email_rule = session_key(session_with(identifier, identifier_type, display_name, endpoint))
    if key.startswith("event:"):
        return  # nothing identifies the participant; no one can declare such a key
    assert declared_key(key) == key
    fields = identity_fields(key)
    assert fields["participant_key"] == key
    assert fields["email"] == (key if email_rule else None)
    if identifier and not email_rule:
        assert fields["identifier"] == identifier
        assert fields["identifier_type"] == (identifier_type or "identifier")
    if not identifier and display_name:
        assert fields["display_name"] == display_name
        assert fields["identifier"] is None


@pytest.mark.parametrize(
    ("declared", "key"),
    [
        ("phone_number:+1415", "phone:+1415"),
        ("DEVICE_ID:dev-7", "device:dev-7"),
        ("email_address:Ann@School.example", "ann@school.example"),
        ("anon:Ann B", "anon:Ann B"),
    ],
)
def test_declared_keys_are_built_as_sessions_build_them(declared: str, key: str) -> None:
    assert declared_key(declared) == key


_SESSIONS = st.builds(
    lambda endpoint, leave_s, duration, qualifier: Session(
        event_id=f"{format_timestamp(T0 + timedelta(seconds=leave_s))}/{qualifier}",
        conference_id="c",
        endpoint_id=endpoint,
        join_time=T0 + timedelta(seconds=leave_s - duration),
        leave_time=T0 + timedelta(seconds=leave_s),
        duration_seconds=duration,
    ),
    st.sampled_from([None, "ep-1"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["1", "2"]),
)


@given(st.lists(_SESSIONS, min_size=1, max_size=6))
def test_the_backfill_keeps_the_duplicate_a_poll_keeps(sessions: list[Session]) -> None:
    winners: dict[tuple[str, str], Session] = {}
    facts: dict[tuple[str, str], SessionFact] = {}
    for session in sessions:
        key = dedupe_key(session)
        fact = session_fact(session)
        assert dedupe_key(fact) == key
        winners[key] = session if key not in winners else preferred(winners[key], session)
        facts[key] = fact if key not in facts else preferred(facts[key], fact)
    assert facts == {key: session_fact(winner) for key, winner in winners.items()}


@given(
    st.datetimes(
        timezones=st.just(UTC),
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    )
)
def test_canonical_text_is_its_own_and_parses_to_the_instant(moment: datetime) -> None:
    text = format_timestamp(moment)
    parsed = parse_timestamp_and_text(text)
    assert parsed is not None
    assert parsed[1] is text
    assert parsed[0] == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parse_rfc3339(text) == parsed[0]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("2026-01-15T11:45:00.5+01:00", "2026-01-15T10:45:00.500Z"),
        ("2026-01-15t10:45:00z", "2026-01-15T10:45:00.000Z"),
        ("2026-01-15T10:45:00.123999Z", "2026-01-15T10:45:00.123Z"),
    ],
)
def test_other_forms_get_the_canonical_text(raw: str, text: str) -> None:
    parsed = parse_timestamp_and_text(raw)
    assert parsed is not None
    assert parsed[1] == text
    assert parsed[0].astimezone(UTC) == parse_rfc3339(text)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("2026-01-15 10:45:00Z", "format"),
        ("2026-W03-4T10:45:00.000Z", "format"),
        ("2026-01-15T10:45:00", "offset"),
        ("2026-02-31T10:45:00.000Z", "value"),
        ("9999-12-31T23:59:59-01:00", "value"),
    ],
)
def test_the_parser_says_what_is_wrong(raw: str, problem: str) -> None:
    with pytest.raises(BadTimestamp) as caught:
        parse_rfc3339(raw)
    assert caught.value.problem == problem
    assert parse_timestamp_and_text(raw) is None


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (NOW - timedelta(hours=3), NOW - timedelta(hours=3)),
        (NOW + timedelta(hours=1), NOW),  # Reports refuses a future startTime
        (NOW - REPORTS_RETENTION, NOW - REPORTS_RETENTION + timedelta(hours=1)),
        (NOW - REPORTS_RETENTION - timedelta(days=5), NOW - REPORTS_RETENTION + timedelta(hours=1)),
    ],
)
def test_the_reports_query_starts_inside_what_reports_accepts(
    start: datetime, expected: datetime
) -> None:
    assert reports_query_start(Span(start, None), now=NOW) == expected
