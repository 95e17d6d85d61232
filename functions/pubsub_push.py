"""A Pub/Sub push request carrying a Workspace Events CloudEvent (docs/api.md), parsed strictly.

The push is wrapped: ``{"message": {"data", "attributes", "messageId", "publishTime"},
"subscription"}``. Workspace Events publish in the CloudEvents Pub/Sub binding's binary mode:
the attributes are ``ce-*`` and ``data`` is the event's JSON, base64-encoded. A message whose
``content-type`` attribute is ``application/cloudevents…`` (structured mode), or whose decoded
data is itself a CloudEvent, is read as structured. Anything else that cannot be used raises
:class:`UnusablePush`, which the function answers 204 (Pub/Sub would redeliver a 4xx for days).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from functions.limits import MAX_BODY_BYTES
from functions.meet_records import CloudEvent

__all__ = ["CloudEvent", "UnusablePush", "parse_push"]

#: ce-id and ce-type are short identifiers; longer values are not Google's.
_MAX_ATTRIBUTE: Final = 1024


class UnusablePush(Exception):
    """An authenticated push that cannot be used; the message says why (no input quoted)."""


def parse_push(body: bytes) -> CloudEvent:
    """The CloudEvent of a wrapped push body; UnusablePush naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise UnusablePush("push body is too large")
    try:
        envelope = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UnusablePush("push body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise UnusablePush("push body has no message object")
    message: dict[str, Any] = envelope["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise UnusablePush("message attributes must be a map of strings")
    data = _decoded_data(message.get("data"))
    message_id = message.get("messageId") or message.get("message_id")
    message_id = message_id if isinstance(message_id, str) else None
    structured = str(attributes.get("content-type", "")).startswith("application/cloudevents")
    if structured or ("specversion" in data and "type" in data):
        return _structured(data, message_id)
    return _binary(attributes, data, message_id)


def _decoded_data(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise UnusablePush("message data must be a base64 string")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise UnusablePush("message data is not base64") from None
    try:
        value = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UnusablePush("message data is not JSON") from None
    if not isinstance(value, dict):
        raise UnusablePush("message data must be a JSON object")
    return value


def _binary(
    attributes: Mapping[str, str], data: dict[str, Any], message_id: str | None
) -> CloudEvent:
    return CloudEvent(
        id=_required(attributes.get("ce-id"), "ce-id"),
        type=_required(attributes.get("ce-type"), "ce-type"),
        source=_optional(attributes.get("ce-source")),
        subject=_optional(attributes.get("ce-subject")),
        data=data,
        message_id=message_id,
    )


def _structured(event: dict[str, Any], message_id: str | None) -> CloudEvent:
    data = _decoded_data(event["data_base64"]) if "data_base64" in event else event.get("data", {})
    if not isinstance(data, dict):
        raise UnusablePush("the structured event's data must be a JSON object")
    return CloudEvent(
        id=_required(event.get("id"), "id"),
        type=_required(event.get("type"), "type"),
        source=_optional(event.get("source")),
        subject=_optional(event.get("subject")),
        data=data,
        message_id=message_id,
    )


def _required(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ATTRIBUTE:
        raise UnusablePush(f"the event has no usable {name}")
    if not _is_utf8(value):  # a lone surrogate JSON can carry: no id Google would send
        raise UnusablePush(f"the event's {name} is not valid Unicode")
    return value.strip()


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > _MAX_ATTRIBUTE:
        return None
    if not _is_utf8(value):
        return None
    return value
