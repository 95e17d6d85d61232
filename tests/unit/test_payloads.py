"""Every body the system reads or writes: the meeting-ended webhook and collect task bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.errors import (
    InvalidInput,
)
from functions.model import Declared
from functions.payloads import collect_task_body, parse_collect_task, parse_meeting_ended
from functions.ports import CollectTask
from functions.timestamps import format_timestamp
from tests.unit.factories import outcome

NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)


def meeting_ended_to_json(meeting: Declared) -> dict[str, Any]:
    """The body a sender would post for ``meeting`` (for round trips through the parser)."""
    return {
        "type": "meeting.ended",
        "meeting_code": meeting.meeting_code,
        "ended_at": format_timestamp(meeting.ended_at),
        "started_at": None if meeting.started_at is None else format_timestamp(meeting.started_at),
        "external_id": meeting.external_id,
        "calendar_event_id": meeting.calendar_event_id,
        "organizer_email": meeting.organizer_email,
        "expected_participants": list(meeting.expected_participants),
    }


# ==============================================================================
# POST / payloads

ENDED = "2026-01-15T10:45:00Z"
ENDED_AT = datetime(2026, 1, 15, 10, 45, tzinfo=UTC)
MISSING = object()


def payload(**overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "type": "meeting.ended",
        "meeting_code": "abc-defg-hij",
        "ended_at": ENDED,
        "started_at": "2026-01-15T10:00:00Z",
        "external_id": "session-123",
        "calendar_event_id": "evt_42",
        "organizer_email": "Teacher@School.com",
        "expected_participants": ["teacher@school.com", "student@school.com"],
    }
    for name, value in overrides.items():
        if value is MISSING:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data).encode()


def parse(body: bytes, now: datetime = NOW) -> Declared:
    return parse_meeting_ended(body, now=now)


def refused(body: bytes, now: datetime = NOW) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(body, now)
    assert caught.value.code == "invalid_payload"
    assert caught.value.status == 400
    return caught.value


def test_the_contract_example_parses() -> None:
    assert parse(payload()) == Declared(
        meeting_code="abc-defg-hij",
        ended_at=ENDED_AT,
        started_at=datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        external_id="session-123",
        calendar_event_id="evt_42",
        organizer_email="teacher@school.com",
        expected_participants=("teacher@school.com", "student@school.com"),
    )


def test_only_type_code_and_ended_at_are_required() -> None:
    body = json.dumps({"type": "meeting.ended", "meeting_code": "ABCDEFGHIJ", "ended_at": ENDED})
    assert parse(body.encode()) == Declared(meeting_code="abc-defg-hij", ended_at=ENDED_AT)


def test_null_optional_fields_mean_absent_and_unknown_fields_are_ignored() -> None:
    body = payload(
        started_at=None,
        external_id=None,
        calendar_event_id="",
        organizer_email=None,
        expected_participants=None,
        colour="blue",
        nested={"deep": [1, 2]},
    )
    assert parse(body) == Declared(meeting_code="abc-defg-hij", ended_at=ENDED_AT)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"type": MISSING}, "type", "type is required"),
        ({"type": None}, "type", "type is required"),
        ({"type": "meeting.started"}, "type", "must be 'meeting.ended'"),
        ({"type": 1}, "type", "type must be a string, not a number"),
        ({"meeting_code": MISSING}, "meeting_code", "meeting_code is required"),
        ({"meeting_code": 123}, "meeting_code", "meeting_code must be a string"),
        ({"meeting_code": ["abc"]}, "meeting_code", "must be a string, not an array"),
        ({"meeting_code": "abc_defg"}, "meeting_code", "letters, digits, dashes"),
        ({"meeting_code": "abc.defg"}, "meeting_code", "letters, digits, dashes"),
        ({"meeting_code": "abc\u00e9defg"}, "meeting_code", "letters, digits, dashes"),
        ({"meeting_code": "abc\u0663defg"}, "meeting_code", "letters, digits, dashes"),
        ({"meeting_code": "ab"}, "meeting_code", "3 to 64"),
        ({"meeting_code": "a-b- "}, "meeting_code", "3 to 64"),
        ({"meeting_code": "a" * 65}, "meeting_code", "3 to 64"),
        ({"meeting_code": ""}, "meeting_code", "letters, digits, dashes"),
        ({"ended_at": MISSING}, "ended_at", "ended_at is required"),
        ({"ended_at": 1768473900}, "ended_at", "ended_at must be a string, not a number"),
        ({"ended_at": "2026-01-15T10:45:00"}, "ended_at", "must include a UTC offset"),
        ({"ended_at": "2026-01-15T10:45:00.123"}, "ended_at", "must include a UTC offset"),
        ({"ended_at": "2026-01-15"}, "ended_at", "RFC 3339"),
        ({"ended_at": "2026-01-15 10:45:00Z"}, "ended_at", "RFC 3339"),
        ({"ended_at": "20260115T104500Z"}, "ended_at", "RFC 3339"),
        ({"ended_at": "2026-01-15T10:45Z"}, "ended_at", "RFC 3339"),
        ({"ended_at": "2026-01-15T10:45:00+0200"}, "ended_at", "RFC 3339"),
        ({"ended_at": "yesterday"}, "ended_at", "RFC 3339"),
        ({"ended_at": "2026-02-30T10:45:00Z"}, "ended_at", "not a valid date-time"),
        ({"ended_at": "2026-01-15T24:00:00Z"}, "ended_at", "not a valid date-time"),
        ({"ended_at": "2026-01-15T10:45:60Z"}, "ended_at", "not a valid date-time"),
        ({"ended_at": "2026-01-15T10:45:00+24:00"}, "ended_at", "not a valid date-time"),
        ({"ended_at": "0001-01-01T00:00:00+01:00"}, "ended_at", "not a valid date-time"),
        ({"ended_at": "9999-12-31T23:59:59-01:00"}, "ended_at", "not a valid date-time"),
        ({"started_at": "2026-01-15T10:00:00"}, "started_at", "must include a UTC offset"),
        ({"started_at": 5}, "started_at", "started_at must be a string"),
        ({"started_at": "2026-01-15T10:45:01Z"}, "started_at", "not be after ended_at"),
        ({"started_at": "2026-01-14T10:44:59Z"}, "started_at", "at most 24 hours"),
        ({"external_id": ""}, "external_id", "1 to 256 printable"),
        ({"external_id": "   "}, "external_id", "1 to 256 printable"),
        ({"external_id": "x" * 257}, "external_id", "1 to 256 printable"),
        ({"external_id": "a\u200bb"}, "external_id", "1 to 256 printable"),
        ({"external_id": "a\nb"}, "external_id", "control characters"),
        ({"external_id": 123}, "external_id", "external_id must be a string"),
        ({"calendar_event_id": "c" * 1025}, "calendar_event_id", "at most 1024"),
        ({"calendar_event_id": {"id": 1}}, "calendar_event_id", "must be a string, not an obj"),
        ({"organizer_email": "teacher"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "a@b@c.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "a b@c.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "a@localhost"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "a@-b.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": ".a@b.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "a..b@c.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": "x" * 65 + "@b.com"}, "organizer_email", "not a valid email"),
        ({"organizer_email": True}, "organizer_email", "must be a string, not a boolean"),
        ({"expected_participants": "a@b.com"}, "expected_participants", "must be an array"),
        ({"expected_participants": {"a": 1}}, "expected_participants", "must be an array"),
        ({"expected_participants": ["a@b.com", 7]}, "expected_participants[1]", "must be a str"),
        ({"expected_participants": [None]}, "expected_participants[0]", "must be a string, not n"),
        ({"expected_participants": ["a@b.com", "bad@"]}, "expected_participants[1]", "email"),
    ],
)
def test_each_rule_names_its_field(overrides: dict[str, Any], field: str, message: str) -> None:
    error = refused(payload(**overrides))
    assert error.field == field
    assert message in error.message


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("ABCDEFGHIJ", "abc-defg-hij"),
        (" Abc defg-HIJ ", "abc-defg-hij"),
        ("abc", "abc"),
        ("a-b-c", "abc"),
        ("a" * 64, "a" * 64),
        ("a-" * 64, "a" * 64),
        ("Room-42", "room42"),
    ],
)
def test_meeting_codes_are_canonical_and_3_to_64_long(raw: str, canonical: str) -> None:
    assert parse(payload(meeting_code=raw)).meeting_code == canonical


@pytest.mark.parametrize(
    ("ended_at", "accepted"),
    [
        (NOW + timedelta(minutes=5), True),
        (NOW + timedelta(minutes=5, seconds=1), False),
        (NOW - timedelta(days=180), True),
        (NOW - timedelta(days=180, seconds=1), False),
    ],
)
def test_ended_at_is_at_most_5_minutes_ahead_and_180_days_old(
    ended_at: datetime, accepted: bool
) -> None:
    body = payload(ended_at=ended_at.isoformat(), started_at=MISSING)
    if accepted:
        assert parse(body).ended_at == ended_at
    else:
        error = refused(body)
        assert error.field == "ended_at"
        assert ("future" if ended_at > NOW else "180 days") in error.message


@pytest.mark.parametrize(
    ("started_at", "accepted"),
    [
        ("2026-01-14T10:45:00Z", True),
        ("2026-01-14T10:44:59.999Z", False),
        (ENDED, True),
        ("2026-01-15T10:45:00.001Z", False),
    ],
)
def test_started_at_is_not_after_ended_at_nor_24_hours_before(
    started_at: str, accepted: bool
) -> None:
    body = payload(started_at=started_at)
    if accepted:
        assert parse(body).started_at is not None
    else:
        assert refused(body).field == "started_at"


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2026-01-15T12:45:00+02:00", datetime(2026, 1, 15, 10, 45, tzinfo=UTC)),
        ("2026-01-15T05:15:00-05:30", datetime(2026, 1, 15, 10, 45, tzinfo=UTC)),
        ("2026-01-15T10:45:00-00:00", datetime(2026, 1, 15, 10, 45, tzinfo=UTC)),
        ("2026-01-15t10:45:00z", datetime(2026, 1, 15, 10, 45, tzinfo=UTC)),
        ("2026-01-15T10:45:00.5Z", datetime(2026, 1, 15, 10, 45, 0, 500000, tzinfo=UTC)),
        ("2026-01-15T10:45:00.123456789Z", datetime(2026, 1, 15, 10, 45, 0, 123000, tzinfo=UTC)),
    ],
)
def test_times_with_offsets_become_utc_at_millisecond_precision(raw: str, utc: datetime) -> None:
    parsed = parse(payload(ended_at=raw, started_at=MISSING)).ended_at
    assert parsed == utc
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (" Student@School.COM ", "student@school.com"),
        ("phone:+1 555 0100", "phone:+1 555 0100"),
        ("phone_number:+15550100", "phone:+15550100"),
        ("device_id:Room-7", "device:Room-7"),
        ("device: Room-7 ", "device:Room-7"),
        ("Phone:+15550100", "phone:+15550100"),
        ("sip_address:Room7@Sip.Example.com", "room7@sip.example.com"),
        ("email_address:Teacher@School.com", "teacher@school.com"),
        ("mailto:Teacher@School.com", "teacher@school.com"),
        ("anon:Zoë Ünal", "anon:Zoë Ünal"),
        ("anon:Bob @ home", "anon:Bob @ home"),
        ("anon:  Bob  ", "anon:Bob"),
        ("endpoint:abc123", "endpoint:abc123"),
        ("custom_type:ID-9", "custom_type:ID-9"),
    ],
)
def test_expected_participants_are_normalised_participant_keys(raw: str, key: str) -> None:
    assert parse(payload(expected_participants=[raw])).expected_participants == (key,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("student", "must be an email or a '<type>:<identifier>' key"),
        ("phone:", "nothing after phone:"),
        ("anon:   ", "nothing after anon:"),
        ("student@", "not a valid email"),
        ("@school.com", "not a valid email"),
        ("a@b", "not a valid email"),
        ("email_address:teacher", "not a valid email"),
        ("phone:+1\x00555", "control characters"),
        ("anon:Bob\u0007", "control characters"),
        ("anon:\ud800", "control characters"),
        ("x@y.com\n", "control characters"),
        ("\tx@y.com", "control characters"),
        ("anon:" + "x" * 1020, "at most 1024"),
    ],
)
def test_an_invalid_expected_participant_names_its_index(raw: str, message: str) -> None:
    error = refused(payload(expected_participants=["ok@school.com", "phone:1", raw]))
    assert error.field == "expected_participants[2]"
    assert message in error.message


def test_expected_participants_are_deduplicated_in_first_seen_order() -> None:
    raw = ["b@x.com", "A@x.com", " B@X.com", "phone:1", "a@x.com", "phone_number:1", "c@x.com"]
    parsed = parse(payload(expected_participants=raw)).expected_participants
    assert parsed == ("b@x.com", "a@x.com", "phone:1", "c@x.com")


@pytest.mark.parametrize(("count", "accepted"), [(0, True), (1000, True), (1001, False)])
def test_at_most_1000_expected_participants(count: int, accepted: bool) -> None:
    body = payload(expected_participants=[f"s{i}@school.com" for i in range(count)])
    if accepted:
        assert len(parse(body).expected_participants) == count
    else:
        error = refused(body)
        assert error.field == "expected_participants"
        assert "at most 1000" in error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"type": "meeting.ended"}'.encode("utf-16"), "not UTF-8"),
        (b"\xef\xbb\xbf" + payload(), "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "not valid JSON"),
        (b'{"type": NaN}', "not valid JSON"),
        (b'{"type": Infinity}', "not valid JSON"),
        (b'{"type": -Infinity}', "not valid JSON"),
        (b'{"type": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"type": "meeting.ended", "type": "meeting.ended"}', "duplicate key"),
        (b"[]", "must be a JSON object"),
        (json.dumps([json.loads(payload())]).encode(), "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'"meeting.ended"', "must be a JSON object"),
        (b"42", "must be a JSON object"),
    ],
)
def test_hostile_bodies_are_invalid_input(body: bytes, message: str) -> None:
    error = refused(body)
    assert error.field is None
    assert message in error.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"meeting_code": 1e308},
        {"meeting_code": 10**300},
        {"ended_at": 1e308},
        {"ended_at": None},
        {"ended_at": []},
        {"expected_participants": [[["deep"]]]},
        {"expected_participants": [{"email": "a@b.com"}]},
        {"started_at": False},
    ],
)
def test_wrong_json_types_are_invalid_input(overrides: dict[str, Any]) -> None:
    assert refused(payload(**overrides)).field in {*overrides, "expected_participants[0]"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_bytes_parse_or_are_invalid_input(body: bytes) -> None:
    assert outcome(lambda: parse(body)) in (Declared, "invalid_payload")


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "meeting_code",
                "ended_at",
                "started_at",
                "external_id",
                "calendar_event_id",
                "organizer_email",
                "expected_participants",
            ]
        ),
        json_values,
    )
)
def test_any_json_in_any_field_parses_or_is_invalid_input(data: dict[str, Any]) -> None:
    body = json.loads(payload())
    body.update(data)
    assert outcome(lambda: parse(json.dumps(body).encode())) in (Declared, "invalid_payload")


def test_to_json_writes_rfc3339_z_and_reads_back_equal() -> None:
    meeting = parse(payload(ended_at="2026-01-15T12:45:00.250+02:00"))
    as_json = meeting_ended_to_json(meeting)
    assert as_json["ended_at"] == "2026-01-15T10:45:00.250Z"
    assert as_json["started_at"] == "2026-01-15T10:00:00.000Z"
    assert as_json["organizer_email"] == "teacher@school.com"
    assert parse(json.dumps(as_json).encode()) == meeting


@settings(max_examples=100, deadline=None)
@given(
    ended_ms=st.integers(-180 * 86_400_000, 300_000),
    length_ms=st.none() | st.integers(0, 86_400_000),
    external_id=st.none() | st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    keys=st.lists(st.sampled_from(["a@b.com", "phone:1", "anon:Bo", "device:x"]), max_size=5),
)
def test_every_parsed_meeting_round_trips(
    ended_ms: int, length_ms: int | None, external_id: str | None, keys: list[str]
) -> None:
    ended = NOW + timedelta(milliseconds=ended_ms)
    meeting = Declared(
        meeting_code="abc-defg-hij",
        ended_at=ended,
        started_at=None if length_ms is None else ended - timedelta(milliseconds=length_ms),
        external_id=external_id
        if external_id and external_id.strip() and external_id.isprintable()
        else None,
        expected_participants=tuple(dict.fromkeys(keys)),
    )
    assert parse(json.dumps(meeting_ended_to_json(meeting)).encode()) == meeting


# ==============================================================================
# Collect tasks


def test_a_task_body_round_trips_compactly() -> None:
    task = CollectTask(meeting_id="m_abc-1", attempt=3, reason="neighbour")
    body = collect_task_body(task)
    assert body == b'{"meeting_id":"m_abc-1","attempt":3,"reason":"neighbour"}'
    assert parse_collect_task(body) == task


@pytest.mark.parametrize("reason", ["poll", "neighbour", "backfill", "restart"])
def test_every_reason_is_accepted(reason: str) -> None:
    body = json.dumps({"meeting_id": "m1", "attempt": 1, "reason": reason}).encode()
    assert parse_collect_task(body).reason == reason


@pytest.mark.parametrize("reason", ["manual", "erasure"])
def test_reasons_that_are_never_queued_are_refused(reason: str) -> None:
    # A manual sync or an erasure polls in its caller; as a task it would answer 404 or 409,
    # which the queue retries for days.
    body = json.dumps({"meeting_id": "m1", "attempt": 1, "reason": reason}).encode()
    with pytest.raises(InvalidInput) as caught:
        parse_collect_task(body)
    assert caught.value.field == "reason"


@pytest.mark.parametrize(
    "body", [{"meeting_id": "m1", "attempt": 1}, {"meeting_id": "m1", "attempt": 1, "reason": None}]
)
def test_the_reason_defaults_to_poll(body: dict[str, Any]) -> None:
    assert parse_collect_task(json.dumps(body).encode()) == CollectTask("m1", 1, "poll")


def test_unknown_task_fields_are_ignored() -> None:
    body = json.dumps({"meeting_id": "m1", "attempt": 1000, "future": {"x": 1}}).encode()
    assert parse_collect_task(body) == CollectTask("m1", 1000)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"attempt": 1}, "meeting_id", "meeting_id is required"),
        ({"meeting_id": 5, "attempt": 1}, "meeting_id", "must be a string"),
        ({"meeting_id": "a/b", "attempt": 1}, "meeting_id", "1 to 128"),
        ({"meeting_id": "", "attempt": 1}, "meeting_id", "1 to 128"),
        ({"meeting_id": "x" * 129, "attempt": 1}, "meeting_id", "1 to 128"),
        ({"meeting_id": "m1"}, "attempt", "attempt is required"),
        ({"meeting_id": "m1", "attempt": 0}, "attempt", "between 1 and 1000"),
        ({"meeting_id": "m1", "attempt": 1001}, "attempt", "between 1 and 1000"),
        ({"meeting_id": "m1", "attempt": -1}, "attempt", "between 1 and 1000"),
        ({"meeting_id": "m1", "attempt": 1.0}, "attempt", "must be an integer"),
        ({"meeting_id": "m1", "attempt": True}, "attempt", "must be an integer"),
        ({"meeting_id": "m1", "attempt": "1"}, "attempt", "must be an integer"),
        ({"meeting_id": "m1", "attempt": 1, "reason": "retry"}, "reason", "must be one of"),
        ({"meeting_id": "m1", "attempt": 1, "reason": 1}, "reason", "must be a string"),
    ],
)
def test_task_rules_name_their_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_collect_task(json.dumps(fields).encode())
    assert (caught.value.status, caught.value.code) == (400, "invalid_task")
    assert caught.value.field == field
    assert message in caught.value.message


@pytest.mark.parametrize(
    "body", [b"", b"[]", b"\xff", b"[" * 100_000, b'{"attempt": NaN}', b'{"a":1,"a":2}']
)
def test_hostile_task_bodies_are_invalid_task(body: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_collect_task(body)
    assert caught.value.code == "invalid_task"
