"""Send a signed "meeting ended" webhook to ingest, as a meeting platform does (docs/api.md).

    source .local/stack.env   # or: export INGEST_URL=... WEBHOOK_SECRET=whsec_...
    python docs/examples/send_webhook.py abc-defg-hij teacher@school.com student@school.com

tests/unit/test_docs.py posts it to a local server and checks the signature and the body with
the functions' own verifier and parser, so this file cannot drift from what ingest accepts.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook


def meeting_ended(code: str, ended_at: datetime, expected: list[str]) -> dict[str, Any]:
    """The body: a 45-minute class that ended at ``ended_at``."""
    return {
        "type": "meeting.ended",
        "meeting_code": code,
        "started_at": (ended_at - timedelta(minutes=45)).isoformat(),
        "ended_at": ended_at.isoformat(),
        "external_id": f"class-{uuid.uuid4().hex[:12]}",
        "expected_participants": expected,
    }


def signed(secret: str, event: dict[str, Any], now: datetime) -> tuple[bytes, dict[str, str]]:
    """The exact body bytes and the Standard Webhooks headers that sign them."""
    body = json.dumps(event).encode()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    return body, {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
    }


def send(url: str, secret: str, event: dict[str, Any]) -> tuple[int, Any]:
    """POST the signed event; the answer's status and JSON body (202 new, 200 known, 4xx why)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"INGEST_URL must be an http(s) URL, not {url!r}")
    body, headers = signed(secret, event, datetime.now(UTC))
    request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - checked
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


if __name__ == "__main__":
    code, *expected = sys.argv[1:] or ["abc-defg-hij"]
    event = meeting_ended(code, datetime.now(UTC).replace(microsecond=0), expected)
    secret = os.environ["WEBHOOK_SECRET"].split(",")[0]  # the first of a rotation list
    status, answer = send(os.environ["INGEST_URL"], secret, event)
    print(status, json.dumps(answer))
