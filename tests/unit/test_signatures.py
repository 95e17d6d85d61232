"""Standard Webhooks signatures: both directions against the reference package, every edge."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.errors import (
    ConfigError,
    Unauthorized,
)
from functions.signatures import sign_webhook, verify_webhook_signature

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
