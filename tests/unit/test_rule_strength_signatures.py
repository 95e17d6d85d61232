"""Standard Webhooks signatures (docs/api.md "ingest"): what a refused sender reads in its 401, word for
word, what an operator reads when a secret is wrong, and a signature that is not exactly base64.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from functions.errors import ConfigError, Unauthorized
from functions.http_edge import error_response
from functions.signatures import decode_secret, sign_webhook, verify_webhook_signature

NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"first-secret-0123456789").decode()
BODY = b'{"type": "meeting.ended"}'


def signed(**overrides: str) -> dict[str, str]:
    headers = sign_webhook(secret=SECRET, webhook_id="msg_1", timestamp=NOW, body=BODY)
    headers.update(overrides)
    return headers


def refusal(headers: dict[str, str]) -> str:
    with pytest.raises(Unauthorized) as refused:
        verify_webhook_signature(headers=headers, body=BODY, secrets=(SECRET,), now=NOW)
    status, answer = error_response(refused.value)
    assert status == 401
    message: str = answer["error"]["message"]
    return message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"webhook-id": "msg 1"}, "webhook-id must be 1 to 256 visible ASCII characters"),
        ({"webhook-id": "m" * 257}, "webhook-id must be 1 to 256 visible ASCII characters"),
        ({"webhook-timestamp": "1768474800.5"}, "webhook-timestamp must be whole Unix seconds"),
        (
            {"webhook-timestamp": str(int((NOW - timedelta(seconds=301)).timestamp()))},
            "webhook-timestamp is more than 5 minutes in the past",
        ),
        (
            {"webhook-timestamp": str(int((NOW + timedelta(seconds=301)).timestamp()))},
            "webhook-timestamp is more than 5 minutes in the future",
        ),
        ({"webhook-signature": "v1,AAAA"}, "no webhook-signature matches"),
        ({"webhook-id": ""}, "missing webhook-id header"),
    ],
)
def test_the_401_says_what_is_wrong(overrides: dict[str, str], message: str) -> None:
    assert refusal(signed(**overrides)) == message


def test_a_signature_with_a_character_outside_base64_is_not_a_signature() -> None:
    good = signed()["webhook-signature"]
    assert (
        verify_webhook_signature(headers=signed(), body=BODY, secrets=(SECRET,), now=NOW) == "msg_1"
    )
    version, _, encoded = good.partition(",")
    for tainted in (f"{encoded[:8]}!{encoded[8:]}", f"-{encoded}", f"{encoded}?"):
        assert refusal(signed(**{"webhook-signature": f"{version},{tainted}"})) == (
            "no webhook-signature matches"
        )


def test_a_secret_that_is_not_base64_says_so() -> None:
    with pytest.raises(ValueError, match=r"^not valid base64 after whsec_$"):
        decode_secret("whsec_not base64!")


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_"])
def test_signing_with_a_bad_secret_names_the_deployment_problem(secret: str) -> None:
    with pytest.raises(ConfigError) as refused:
        sign_webhook(secret=secret, webhook_id="msg_1", timestamp=NOW, body=BODY)
    assert refused.value.problems == ["a webhook secret is not whsec_<base64>"]


def test_verifying_without_secrets_names_the_deployment_problem() -> None:
    with pytest.raises(ConfigError) as refused:
        verify_webhook_signature(headers=signed(), body=BODY, secrets=(), now=NOW)
    assert refused.value.problems == ["no webhook secret is configured"]
    assert re.search("no webhook secret is configured", str(refused.value))
