"""Participant keys (docs/firestore.md): the one module that spells their prefixes.

Three directions, one set of rules:

- :func:`session_key`: from a Reports session's identifier, type, display name and endpoint;
- :func:`declared_key`: from a key someone declared (``expected_participants``), normalised the
  way a session would build it, or refused with the reason;
- :func:`identity_fields`: back from a key to the participant fields it implies (for expected
  participants that have no session yet);

and :func:`participant_doc_id`, the key's Firestore document id.

Rules, in order: (1) an ``email_address`` identifier, or any identifier holding ``@``: the
trimmed, lower-cased identifier; (2) ``phone_number`` → ``phone:``, ``device_id`` → ``device:``;
(3) another type → ``<type>:``; (4) no identifier: ``anon:`` + display name, else ``endpoint:`` +
endpoint id. Decisions where the contract is silent: a non-email identifier without a type is
``identifier:<id>``; a session with none of these is ``event:<event_id>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Collection, Iterable
from typing import Any, Final, Protocol

from functions.errors import quoted
from functions.limits import MAX_PARTICIPANT_KEY_LENGTH

__all__ = [
    "HasIdentity",
    "declared_key",
    "erased_among",
    "erasure_name",
    "has_control_characters",
    "identity_fields",
    "normalise_email",
    "participant_doc_id",
    "participant_key",
    "session_key",
]

EMAIL_TYPE: Final = "email_address"
#: Identifier types whose keys use a shorter prefix (rule 2); the reverse map reads keys back.
_PREFIX_OF_TYPE: Final = {"phone_number": "phone", "device_id": "device"}
_TYPE_OF_PREFIX: Final = {prefix: kind for kind, prefix in _PREFIX_OF_TYPE.items()}
ANONYMOUS: Final = "anon"
ENDPOINT: Final = "endpoint"
#: Keys built from a display name or an endpoint id, which the email rule never looks at.
_NAMELESS: Final = frozenset({ANONYMOUS, ENDPOINT})
UNTYPED: Final = "identifier"
EVENT: Final = "event"


class HasIdentity(Protocol):
    """What the key rules read of a session."""

    @property
    def identifier(self) -> str | None: ...
    @property
    def identifier_type(self) -> str | None: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def endpoint_id(self) -> str | None: ...
    @property
    def event_id(self) -> str: ...


def session_key(session: HasIdentity) -> tuple[str, bool]:
    """The participant key of a session, and whether the email rule (1) made it."""
    identifier = (session.identifier or "").strip()
    kind = (session.identifier_type or "").strip()
    if identifier:
        if kind == EMAIL_TYPE or "@" in identifier:
            return identifier.lower(), True
        return f"{_PREFIX_OF_TYPE.get(kind) or kind or UNTYPED}:{identifier}", False
    display_name = (session.display_name or "").strip()
    if display_name:
        return f"{ANONYMOUS}:{display_name}", False
    if session.endpoint_id:
        return f"{ENDPOINT}:{session.endpoint_id}", False
    return f"{EVENT}:{session.event_id}", False


def participant_key(session: HasIdentity) -> str:
    return session_key(session)[0]


# ------------------------------------------------------------------------------
# Declared keys

_EMAIL: Final = re.compile(
    r"(?=.{3,254}\Z)"
    r"(?=[^@]{1,64}@)"
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_KEY_PREFIX: Final = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9_]*):(?P<rest>.*)", re.DOTALL)


def has_control_characters(text: str) -> bool:
    # Cs: a JSON "\ud800" escape yields a lone surrogate that no store can encode later.
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def normalise_email(raw: str) -> str | None:
    """Trimmed, lower-cased ``raw`` when it is a plausible address; else None."""
    email = raw.strip().lower()
    return email if _EMAIL.fullmatch(email) else None


def _email_or_refusal(raw: str) -> str:
    email = normalise_email(raw)
    if email is None:
        raise ValueError(f"is not a valid email address: {quoted(raw)}")
    return email


def declared_key(raw: str) -> str:
    """A declared key as :func:`session_key` would build it; ValueError saying why it is none.

    Outer whitespace is trimmed; a ``type:`` prefix is lower-cased and abbreviated as rule 2 says;
    a key whose identifier holds ``@`` is the lower-cased email whatever its type; at most 1,024
    characters; control characters and lone surrogates are refused.
    """
    # Checked before trimming: a newline or NUL anywhere means the sender built the key wrongly.
    if has_control_characters(raw):
        raise ValueError("must not contain control characters")
    key = raw.strip()
    if not key:
        raise ValueError("must not be empty")
    if len(key) > MAX_PARTICIPANT_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_PARTICIPANT_KEY_LENGTH} characters")
    match = _KEY_PREFIX.fullmatch(key)
    if match is None:
        if "@" in key:
            return _email_or_refusal(key)
        raise ValueError(
            "must be an email or a '<type>:<identifier>' key "
            f"(phone:, device:, {ANONYMOUS}:, {ENDPOINT}:, …)"
        )
    prefix = match["prefix"].lower()
    rest = match["rest"].strip()
    if not rest:
        raise ValueError(f"has nothing after {prefix}:")
    if prefix in _NAMELESS:
        return f"{prefix}:{rest}"
    if prefix == EMAIL_TYPE or "@" in rest:
        return _email_or_refusal(rest)
    return f"{_PREFIX_OF_TYPE.get(prefix, prefix)}:{rest}"


# ------------------------------------------------------------------------------
# Back from a key


def identity_fields(key: str) -> dict[str, Any]:
    """The §1 identity fields a key implies, for a participant known only by its key."""
    is_email = "@" in key and ":" not in key.split("@", 1)[0]
    if is_email:
        return {
            "participant_key": key,
            "email": key,
            "identifier": key,
            "identifier_type": EMAIL_TYPE,
            "display_name": None,
        }
    prefix, _, rest = key.partition(":")
    nameless = prefix in _NAMELESS
    return {
        "participant_key": key,
        "email": None,
        "identifier": None if nameless else rest,
        "identifier_type": None if nameless else _TYPE_OF_PREFIX.get(prefix, prefix),
        "display_name": rest if prefix == ANONYMOUS else None,
    }


_SLUG_UNSAFE: Final = re.compile(r"[^a-z0-9@._+\-]+")


def erasure_name(key: str, erasure_key: str) -> str:
    """What names an erased participant (docs/rules.md "Erasure"): HMAC-SHA256 of the key with
    ``ERASURE_KEY``, in hex. Keyed, so no one without the secret can test a guess against it."""
    return hmac.new(erasure_key.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def erased_among(
    keys: Iterable[str], *, erasures: Collection[str], erasure_key: str
) -> dict[str, str]:
    """Which of ``keys`` are erased (their name is in ``erasures``): key → name."""
    named = ((key, erasure_name(key, erasure_key)) for key in set(keys))
    return {key: name for key, name in named if name in erasures}


def participant_doc_id(key: str) -> str:
    """A Firestore-safe id: readable slug + 16 hex digits of sha256(key).

    The hash keeps distinct keys apart (keys are case-sensitive, the slug is not); the id never
    holds ``/``, is never ``.``/``..``, never ends in ``__`` and stays far below 1,500 bytes.
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    slug = _SLUG_UNSAFE.sub("_", key.lower()).strip("._")[:80]
    return f"{slug}-{digest}" if slug else f"p-{digest}"
