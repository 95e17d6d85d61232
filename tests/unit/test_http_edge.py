"""The request edge: signatures, payloads, request checks, routes, OIDC and task bodies."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth.crypt
import google.auth.jwt
import google.auth.transport.requests
import pytest
import requests
import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.errors import AppError, ConfigError, InvalidInput
from functions.http_edge import (
    MAX_BODY_BYTES,
    CollectTask,
    Declared,
    Forbidden,
    MethodNotAllowed,
    Unauthorized,
    check_request,
    collect_task_body,
    error_response,
    meeting_ended_to_json,
    parse_collect_task,
    parse_meeting_ended,
    route_ingest,
    sign_webhook,
    unexpected_error_response,
    verify_oidc_token,
    verify_webhook_signature,
)

NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"first-secret-0123456789").decode()
SECRET_2 = "whsec_" + base64.b64encode(b"second-secret-987654321").decode()
BODY = b'{"type": "meeting.ended"}'

# ==============================================================================
# Webhook signatures


def signed(
    body: bytes = BODY, *, secret: str = SECRET, at: datetime = NOW, webhook_id: str = "msg_1"
) -> dict[str, str]:
    return sign_webhook(secret=secret, webhook_id=webhook_id, timestamp=at, body=body)


def verify(
    headers: dict[str, str],
    body: bytes = BODY,
    *,
    secrets: tuple[str, ...] = (SECRET,),
    now: datetime = NOW,
) -> str:
    return verify_webhook_signature(headers=headers, body=body, secrets=secrets, now=now)


def test_a_valid_signature_returns_the_webhook_id() -> None:
    assert verify(signed(webhook_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")) == (
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    )


def test_headers_are_exactly_the_three_standard_ones() -> None:
    headers = signed()
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


def test_signatures_made_by_the_standardwebhooks_package_verify() -> None:
    # The reference implementation signs; we verify (same algorithm, same secret decoding).
    signature = standardwebhooks.Webhook(SECRET).sign("msg_1", NOW, BODY.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(NOW.timestamp())),
        "webhook-signature": signature,
    }
    assert verify(headers) == "msg_1"


def test_our_signatures_verify_with_the_standardwebhooks_package() -> None:
    # The package reads the wall clock itself, so this one test signs at the real time.
    now = datetime.now(UTC)
    body = '{"type":"meeting.ended","name":"Zoë"}'.encode()
    headers = signed(body, at=now)
    assert standardwebhooks.Webhook(SECRET).verify(body, headers, json_parse=False) is None


def test_header_names_are_case_insensitive() -> None:
    headers = {name.upper() if "id" in name else name.title(): v for name, v in signed().items()}
    assert verify(headers) == "msg_1"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_unauthorized_and_named(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(Unauthorized, match=f"missing {missing}") as caught:
        verify(headers)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


@pytest.mark.parametrize("empty", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_an_empty_header_counts_as_missing(empty: str) -> None:
    with pytest.raises(Unauthorized, match=f"missing {empty}"):
        verify({**signed(), empty: "  "})


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False), (-86400, False)],
)
def test_the_timestamp_may_be_five_minutes_off_either_way(offset_s: int, accepted: bool) -> None:
    headers = signed(at=NOW + timedelta(seconds=offset_s))
    if accepted:
        assert verify(headers) == "msg_1"
    else:
        word = "past" if offset_s < 0 else "future"
        with pytest.raises(Unauthorized, match=f"5 minutes in the {word}"):
            verify(headers)


@pytest.mark.parametrize(
    "timestamp", ["1768474800.0", "1.7e9", "abc", "-1768474800", "\uff11\uff17\uff16\uff18", "0x10"]
)
def test_a_timestamp_that_is_not_whole_unix_seconds_is_unauthorized(timestamp: str) -> None:
    with pytest.raises(Unauthorized, match="whole Unix seconds"):
        verify({**signed(), "webhook-timestamp": timestamp})


def test_an_absurd_timestamp_is_unauthorized_not_an_overflow() -> None:
    with pytest.raises(Unauthorized, match="future"):
        verify({**signed(), "webhook-timestamp": "999999999999"})


@pytest.mark.parametrize("webhook_id", ["msg 1", "x" * 257, "msg\u00e9"])
def test_an_unusable_webhook_id_is_unauthorized(webhook_id: str) -> None:
    with pytest.raises(Unauthorized, match="webhook-id"):
        verify(signed(webhook_id=webhook_id))


def test_the_wrong_secret_is_unauthorized_without_naming_the_secret() -> None:
    with pytest.raises(Unauthorized) as caught:
        verify(signed(secret=SECRET_2))
    assert caught.value.message == "no webhook-signature matches"
    assert SECRET not in str(caught.value)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)


@pytest.mark.parametrize(
    ("secrets", "accepted"),
    [((SECRET, SECRET_2), True), ((SECRET_2, SECRET), True), ((SECRET,), False)],
)
def test_any_configured_secret_may_have_signed(secrets: tuple[str, ...], accepted: bool) -> None:
    headers = signed(secret=SECRET_2)
    if accepted:
        assert verify(headers, secrets=secrets) == "msg_1"
    else:
        with pytest.raises(Unauthorized):
            verify(headers, secrets=secrets)


def test_a_secret_without_the_prefix_is_accepted() -> None:
    assert verify(signed(), secrets=(SECRET.removeprefix("whsec_"),)) == "msg_1"


@pytest.mark.parametrize("secrets", [(), ("whsec_not base64!",)])
def test_missing_or_broken_secrets_are_a_configuration_error(secrets: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        verify(signed(), secrets=secrets)


def good_signature(secret: str = SECRET) -> str:
    return signed(secret=secret)["webhook-signature"]


@pytest.mark.parametrize(
    "signature_header",
    [
        pytest.param(lambda: f"v1,{base64.b64encode(b'x' * 32).decode()} {good_signature()}"),
        pytest.param(lambda: f"{good_signature()} v1,{base64.b64encode(b'y' * 32).decode()}"),
        pytest.param(lambda: f"v1a,c2lnbmF0dXJl  {good_signature()}"),
        pytest.param(lambda: f"garbage v1, v1,!!! {good_signature()}"),
        pytest.param(lambda: f"{good_signature(SECRET_2)} {good_signature()}"),
    ],
)
def test_any_one_of_several_signatures_may_match(signature_header: Any) -> None:
    assert verify({**signed(), "webhook-signature": signature_header()}) == "msg_1"


@pytest.mark.parametrize(
    "signature_header",
    [
        lambda: good_signature().replace("v1,", "v2,"),
        lambda: good_signature().replace("v1,", ""),
        lambda: "v1," + good_signature()[3:-4],
        lambda: "v1,!!!!",
    ],
)
def test_only_an_intact_v1_signature_counts(signature_header: Any) -> None:
    with pytest.raises(Unauthorized, match="no webhook-signature matches"):
        verify({**signed(), "webhook-signature": signature_header()})


@pytest.mark.parametrize("field", ["webhook-id", "webhook-timestamp"])
def test_the_id_and_timestamp_are_covered_by_the_signature(field: str) -> None:
    headers = signed()
    headers[field] = "msg_2" if field == "webhook-id" else str(int(NOW.timestamp()) + 1)
    with pytest.raises(Unauthorized, match="no webhook-signature matches"):
        verify(headers)


def test_a_get_is_signed_over_the_empty_body() -> None:
    assert verify(signed(b""), b"") == "msg_1"
    with pytest.raises(Unauthorized):
        verify(signed(b""), b"{}")


def test_a_non_ascii_and_a_non_utf8_body_verify_byte_for_byte() -> None:
    for body in ['{"name": "Zoë Ünal 山田"}'.encode(), b"\xff\xfe\x00garbage"]:
        assert verify(signed(body), body) == "msg_1"


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=512), key=st.binary(min_size=16, max_size=64))
def test_any_body_signed_with_any_secret_verifies(body: bytes, key: bytes) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    assert verify(signed(body, secret=secret), body, secrets=(secret,)) == "msg_1"


@settings(max_examples=60, deadline=None)
@given(data=st.data(), body=st.binary(min_size=1, max_size=512))
def test_any_single_byte_change_fails(data: st.DataObject, body: bytes) -> None:
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(Unauthorized):
        verify(signed(body), changed)


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


def outcome(action: Callable[[], object]) -> object:
    """What ``action`` gives: its result (a dataclass as its type), or an AppError's code.

    Any other exception propagates and fails the test: bad input must never become a 500.
    """
    try:
        result = action()
    except AppError as error:
        return error.code
    return type(result) if isinstance(result, Declared) else result


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
# check_request


@dataclass(frozen=True)
class Req:
    method: str = "POST"
    content_type: str | None = "application/json"
    content_length: int | None = None
    body: bytes | None = b"{}"


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (Req(), None),
        (Req(method="post"), None),
        (Req(content_type="application/json; charset=utf-8"), None),
        (Req(content_type='Application/JSON; Charset="UTF-8"'), None),
        (Req(body=b"x" * MAX_BODY_BYTES, content_length=MAX_BODY_BYTES), None),
        (Req(content_type=None, body=b"", content_length=0), None),
        (Req(content_type=None, body=None, content_length=None), None),
        (Req(method="GET", content_type=None, body=b""), None),
        (Req(method="PUT"), 405),
        (Req(method="DELETE", content_type=None, body=None), 405),
        (Req(body=b"x" * (MAX_BODY_BYTES + 1)), 413),
        (Req(body=None, content_length=MAX_BODY_BYTES + 1), 413),
        (Req(body=b"{}", content_length=10**9), 413),
        (Req(method="PUT", body=b"x" * (MAX_BODY_BYTES + 1), content_type="text/plain"), 405),
        (Req(body=b"x" * (MAX_BODY_BYTES + 1), content_type="text/plain"), 413),
        (Req(content_type=None), 415),
        (Req(content_type="text/plain"), 415),
        (Req(content_type="application/x-www-form-urlencoded"), 415),
        (Req(content_type="application/jsonp"), 415),
        (Req(content_type="application/json; charset=latin-1"), 415),
        (Req(content_type=None, body=None, content_length=2), 415),
    ],
)
def test_check_request_refuses_405_then_413_then_415(request_: Req, status: int | None) -> None:
    def check() -> None:
        check_request(
            method=request_.method,
            allowed=("POST", "GET"),
            content_type=request_.content_type,
            content_length=request_.content_length,
            body=request_.body,
        )

    if status is None:
        check()
        return
    with pytest.raises(AppError) as caught:
        check()
    expected_code = {
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }[status]
    assert (caught.value.status, caught.value.code) == (status, expected_code)


def test_a_405_says_which_methods_are_allowed() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        check_request(
            method="PUT", allowed=("POST",), content_type=None, content_length=None, body=b""
        )
    assert caught.value.allowed == ("POST",)


# ==============================================================================
# Error responses


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            InvalidInput(
                "ended_at must include a UTC offset", field="ended_at", code="invalid_payload"
            ),
            400,
            {
                "error": {
                    "code": "invalid_payload",
                    "message": "ended_at must include a UTC offset",
                    "field": "ended_at",
                }
            },
        ),
        (
            InvalidInput("body must be a JSON object", code="invalid_payload"),
            400,
            {"error": {"code": "invalid_payload", "message": "body must be a JSON object"}},
        ),
        (
            Unauthorized("missing webhook-id header"),
            401,
            {"error": {"code": "unauthorized", "message": "missing webhook-id header"}},
        ),
        (
            Forbidden("nope"),
            403,
            {"error": {"code": "forbidden", "message": "nope"}},
        ),
        (
            AppError("no such meeting", status=404, code="not_found"),
            404,
            {"error": {"code": "not_found", "message": "no such meeting"}},
        ),
        (
            ConfigError(["WEBHOOK_SECRET is required"]),
            500,
            {
                "error": {
                    "code": "invalid_configuration",
                    "message": "the service cannot handle this request",
                }
            },
        ),
        (
            AppError("Reports said 503 at https://internal", status=503, retryable=True),
            503,
            {"error": {"code": "internal", "message": "temporarily unavailable; retry later"}},
        ),
    ],
)
def test_error_response_has_the_contract_shape(
    error: AppError, status: int, body: dict[str, Any]
) -> None:
    assert error_response(error) == (status, body)


def test_unexpected_errors_answer_500_without_internals() -> None:
    assert unexpected_error_response() == (
        500,
        {"error": {"code": "internal", "message": "internal error"}},
    )


# ==============================================================================
# Routes


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/", ("meeting_ended",)),
        ("POST", "", ("meeting_ended",)),
        ("post", "/", ("meeting_ended",)),
        ("POST", "/meetings/m_1-A/sync", ("sync", "m_1-A")),
        ("POST", "/meetings/m_1-A/sync/", ("sync", "m_1-A")),
        ("GET", "/meetings/m_1-A", ("get", "m_1-A")),
        ("GET", "/meetings/m_1-A/", ("get", "m_1-A")),
        ("GET", "/meetings/" + "x" * 128, ("get", "x" * 128)),
    ],
)
def test_routes_of_ingest(method: str, path: str, route: tuple[str, ...]) -> None:
    assert route_ingest(method, path) == route


@pytest.mark.parametrize(
    "path",
    [
        "/meetings",
        "/meetings/",
        "/meetings//sync",
        "/meetings/" + "x" * 129,
        "/meetings/a.b",
        "/meetings/..",
        "/meetings/a%2Fb",
        "/meetings/a b",
        "/meetings/\u00e9t\u00e9",
        "/meetings/abc/sync/extra",
        "/meetings/abc/other",
        "/meetings/abc//",
        "/sync",
        "/other",
        "//",
    ],
)
def test_unknown_paths_are_404(path: str) -> None:
    for method in ("GET", "POST"):
        with pytest.raises(AppError) as caught:
            route_ingest(method, path)
        assert (caught.value.status, caught.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/", ("POST",)),
        ("PUT", "/", ("POST",)),
        ("GET", "/meetings/abc/sync", ("POST",)),
        ("POST", "/meetings/abc", ("GET",)),
        ("DELETE", "/meetings/abc", ("GET",)),
    ],
)
def test_known_paths_with_the_wrong_method_are_405(
    method: str, path: str, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        route_ingest(method, path)
    assert (caught.value.status, caught.value.code) == (405, "method_not_allowed")
    assert caught.value.allowed == allowed


@settings(max_examples=300)
@given(method=st.sampled_from(["GET", "POST", "PUT"]), path=st.text(max_size=160))
def test_any_path_routes_or_is_404_or_405(method: str, path: str) -> None:
    result = outcome(lambda: route_ingest(method, path)[0])
    assert result in ("meeting_ended", "sync", "get", "not_found", "method_not_allowed")


# ==============================================================================
# OIDC

AUDIENCE = "https://collect.example.run.app"
TASKS_SA = "tasks@proj.iam.gserviceaccount.com"
KID = "test-key-1"


@dataclass(frozen=True)
class Keys:
    signer: google.auth.crypt.RSASigner
    other_signer: google.auth.crypt.RSASigner
    certs_url: str


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _signer(key: rsa.RSAPrivateKey) -> google.auth.crypt.RSASigner:
    signer: google.auth.crypt.RSASigner = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        _pem_key(key), key_id=KID
    )
    return signer


def _self_signed_cert(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    issued = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(issued)
        .not_valid_after(issued + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _serve(status: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/certs"


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _serve(200, json.dumps({KID: _self_signed_cert(key).decode()}).encode())
    try:
        yield Keys(
            signer=_signer(key),
            other_signer=_signer(other),
            certs_url=_url(server),
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def transport() -> google.auth.transport.requests.Request:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must never see loopback calls
    return google.auth.transport.requests.Request(session=session)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": TASKS_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    for name, value in overrides.items():
        if value is MISSING:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def bearer(signer: google.auth.crypt.RSASigner, **overrides: Any) -> str:
    token: bytes = google.auth.jwt.encode(signer, claims(**overrides))  # type: ignore[no-untyped-call]
    return "Bearer " + token.decode()


def check_token(
    authorization: str | None,
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    *,
    audience: str = AUDIENCE,
    certs_url: str | None = None,
) -> dict[str, Any]:
    return verify_oidc_token(
        authorization=authorization,
        audience=audience,
        allowed_emails=(TASKS_SA,),
        certs_url=certs_url or keys.certs_url,
        request=transport,
    )


def test_a_valid_token_returns_its_claims(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    verified = check_token(bearer(keys.signer), keys, transport)
    assert verified["email"] == TASKS_SA
    assert verified["aud"] == AUDIENCE


@pytest.mark.parametrize(
    ("configured", "token_audience", "accepted"),
    [
        (AUDIENCE, AUDIENCE + "/", True),
        (AUDIENCE + "/", AUDIENCE, True),
        (AUDIENCE, AUDIENCE + "//", False),
        (AUDIENCE, AUDIENCE + "/other", False),
        (AUDIENCE, "https://other.example.run.app", False),
        (AUDIENCE, "32555940559.apps.googleusercontent.com", False),
    ],
)
def test_the_audience_must_be_collect_url_give_or_take_a_trailing_slash(
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    configured: str,
    token_audience: str,
    accepted: bool,
) -> None:
    token = bearer(keys.signer, aud=token_audience)
    if accepted:
        assert check_token(token, keys, transport, audience=configured)["aud"] == token_audience
    else:
        with pytest.raises(Unauthorized, match="audience"):
            check_token(token, keys, transport, audience=configured)


@pytest.mark.parametrize(
    ("make_header", "message"),
    [
        (lambda k: None, "missing Authorization"),
        (lambda k: "", "missing Authorization"),
        (lambda k: "Basic dXNlcjpwYXNz", "Bearer"),
        (lambda k: "Bearer", "Bearer"),
        (lambda k: "Bearer    ", "Bearer"),
        (lambda k: bearer(k.signer).removeprefix("Bearer "), "Bearer"),
        (lambda k: "Bearer not-a-jwt", "signature or format"),
        (lambda k: "Bearer a.b.c", "signature or format"),
        (lambda k: "Bearer W10.W10.AAAA", "signature or format"),
        (lambda k: bearer(k.other_signer), "signature or format"),
        (lambda k: bearer(k.signer)[:-6], "signature or format"),
        (lambda k: bearer(k.signer, exp=int(time.time()) - 60), "expired"),
        (lambda k: bearer(k.signer, iat=int(time.time()) + 600), "not valid yet"),
        (lambda k: bearer(k.signer, exp=MISSING), "signature or format"),
        (lambda k: bearer(k.signer, iss="https://evil.example"), "not issued by Google"),
        (lambda k: bearer(k.signer, iss=MISSING), "not issued by Google"),
        (lambda k: bearer(k.signer, iat="soon"), "signature or format"),
    ],
)
def test_a_token_that_does_not_prove_the_caller_is_401(
    keys: Keys, transport: google.auth.transport.requests.Request, make_header: Any, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message) as caught:
        check_token(make_header(keys), keys, transport)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_the_bearer_scheme_is_case_insensitive(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer).replace("Bearer ", "bearer ")
    assert check_token(token, keys, transport)["email"] == TASKS_SA


def test_both_google_issuer_spellings_are_accepted(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer, iss="accounts.google.com")
    assert check_token(token, keys, transport)["iss"] == "accounts.google.com"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "someone@proj.iam.gserviceaccount.com"}, "may not call"),
        ({"email": MISSING}, "may not call"),
        ({"email": 42}, "may not call"),
        ({"email_verified": False}, "not verified"),
        ({"email_verified": "true"}, "not verified"),
        ({"email_verified": MISSING}, "not verified"),
    ],
)
def test_a_genuine_token_for_another_identity_is_403(
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(Forbidden, match=message) as caught:
        check_token(bearer(keys.signer, **overrides), keys, transport)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_allowed_emails_compare_case_insensitively(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer, email=TASKS_SA.upper())
    assert check_token(token, keys, transport)["email"] == TASKS_SA.upper()


@pytest.mark.parametrize("status", [500, 404])
def test_certificates_answering_an_error_is_503_retryable(
    keys: Keys, transport: google.auth.transport.requests.Request, status: int
) -> None:
    server = _serve(status, b"{}")
    try:
        with pytest.raises(AppError) as caught:
            check_token(bearer(keys.signer), keys, transport, certs_url=_url(server))
    finally:
        server.shutdown()
        server.server_close()
    assert (caught.value.status, caught.value.retryable) == (503, True)


def test_a_certificates_server_that_is_down_is_503_retryable(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    server = _serve(200, b"{}")
    down_url = _url(server)
    server.shutdown()
    server.server_close()
    with pytest.raises(AppError) as caught:
        check_token(bearer(keys.signer), keys, transport, certs_url=down_url)
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert not isinstance(caught.value, Unauthorized)


# ==============================================================================
# Collect tasks


def test_a_task_body_round_trips_compactly() -> None:
    task = CollectTask(meeting_id="m_abc-1", attempt=3, reason="neighbour")
    body = collect_task_body(task)
    assert body == b'{"meeting_id":"m_abc-1","attempt":3,"reason":"neighbour"}'
    assert parse_collect_task(body) == task


@pytest.mark.parametrize("reason", ["poll", "neighbour", "backfill", "manual", "restart"])
def test_every_reason_is_accepted(reason: str) -> None:
    body = json.dumps({"meeting_id": "m1", "attempt": 1, "reason": reason}).encode()
    assert parse_collect_task(body).reason == reason


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
