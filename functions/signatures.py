"""Standard Webhooks signatures (docs/api.md), pure: headers, body bytes and ``now`` in, the
``webhook-id`` or :class:`~functions.errors.Unauthorized` out.

Decisions the contract leaves open (the README repeats them):

- Signatures are checked over the raw body bytes with ``hmac.compare_digest``, not through
  ``standardwebhooks.Webhook.verify``: that method reads the wall clock itself (no ``now`` to
  inject, so the 5-minute boundaries cannot be tested), decodes the body as UTF-8 (a non-UTF-8
  body would crash instead of answering) and lets malformed signature entries escape as
  ``ValueError``. The algorithm is the same, and the tests use the package as the reference
  implementation in both directions.
- ``webhook-timestamp`` must be whole Unix seconds; it may be exactly 5 minutes off either way.
  ``webhook-id`` must be 1 to 256 visible ASCII characters (it is stored for replay detection).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from functions.errors import ConfigError, Unauthorized
from functions.limits import WEBHOOK_TOLERANCE

__all__ = ["SECRET_PREFIX", "decode_secret", "sign_webhook", "verify_webhook_signature"]


_WEBHOOK_ID: Final = re.compile(r"[\x21-\x7e]{1,256}")
_UNIX_SECONDS: Final = re.compile(r"[0-9]{1,12}")


SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret


def decode_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (the prefix may be left out); ValueError if the rest
    is not base64."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 after whsec_") from None


def _secret_key(secret: str) -> bytes:
    try:
        key = decode_secret(secret)
    except ValueError:
        key = b""
    if not key:
        # Settings validate secrets at start; reaching this is a deployment bug, never the caller's.
        raise ConfigError(["a webhook secret is not whsec_<base64>"])
    return key


def _signature(*, key: bytes, webhook_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_webhook(
    *, secret: str, webhook_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (for the demo, the CLI and tests)."""
    seconds = math.floor(timestamp.timestamp())
    digest = _signature(
        key=_secret_key(secret), webhook_id=webhook_id, timestamp=seconds, body=body
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def verify_webhook_signature(
    *, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: datetime
) -> str:
    """Check a Standard Webhooks signature; return the ``webhook-id``.

    Valid when any ``v1`` signature in the header matches any of ``secrets`` (rotation) and the
    timestamp is within 5 minutes of ``now`` either way. Raises :class:`Unauthorized`.
    """
    if not secrets:
        raise ConfigError(["no webhook secret is configured"])
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lowered.get(name, "").strip()
        if not value:
            raise Unauthorized(f"missing {name} header")
        values[name] = value

    webhook_id = values["webhook-id"]
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise Unauthorized("webhook-id must be 1 to 256 visible ASCII characters")
    raw_timestamp = values["webhook-timestamp"]
    if not _UNIX_SECONDS.fullmatch(raw_timestamp):
        raise Unauthorized("webhook-timestamp must be whole Unix seconds")
    timestamp = int(raw_timestamp)
    # A stale timestamp is refused before any HMAC work: it bounds how long a captured request
    # can be replayed, the id-based replay check covers the rest. Compared as numbers, so an
    # absurd timestamp cannot overflow a datetime.
    skew = timestamp - now.timestamp()
    tolerance = WEBHOOK_TOLERANCE.total_seconds()
    if skew < -tolerance:
        raise Unauthorized("webhook-timestamp is more than 5 minutes in the past")
    if skew > tolerance:
        raise Unauthorized("webhook-timestamp is more than 5 minutes in the future")

    offered: list[bytes] = []
    for entry in values["webhook-signature"].split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are not ours; another entry may match
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    for secret in secrets:
        expected = _signature(
            key=_secret_key(secret), webhook_id=webhook_id, timestamp=timestamp, body=body
        )
        # No early exit on a match inside the comparison: compare_digest is constant-time.
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return webhook_id
    raise Unauthorized("no webhook-signature matches")
