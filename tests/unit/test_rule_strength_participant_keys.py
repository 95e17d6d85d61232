"""Participant keys (docs/firestore.md) in every direction, asserted whole.

- ``email`` is the key only when rule 1 made it, ``null`` for every other kind of key;
- a declared key that is refused says why, word for word, in the 400 (docs/api.md "Rules every function follows");
- a key read back gives the identity fields of the rule that built it (the documents of expected
  participants hold exactly these fields);
- a key's document id is stored: its form must not change across versions.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.attendance import Session, build_participants
from functions.errors import InvalidInput
from functions.limits import MAX_PARTICIPANT_KEY_LENGTH
from functions.participant_keys import declared_key, identity_fields, participant_doc_id
from functions.payloads import parse_meeting_ended
from tests.unit.factories import at

NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)


def session_of(
    identifier: str | None,
    identifier_type: str | None,
    display_name: str | None,
    endpoint_id: str | None,
) -> Session:
    return Session(
        event_id="2026-01-15T10:00:00.000Z/1",
        conference_id="c",
        endpoint_id=endpoint_id,
        join_time=at(-1),
        leave_time=at(0),
        duration_seconds=60,
        identifier=identifier,
        identifier_type=identifier_type,
        display_name=display_name,
    )


@pytest.mark.parametrize(
    ("identity", "key", "email"),
    [
        (("Ann@School.example", "email_address", "Ann", "ep"), "ann@school.example", True),
        (("bob@home.example", "phone_number", None, "ep"), "bob@home.example", True),
        (("+1415", "phone_number", "Ann", "ep"), "phone:+1415", False),
        (("dev-7", "device_id", None, "ep"), "device:dev-7", False),
        (("42", "zoom_id", None, "ep"), "zoom_id:42", False),
        (("xyz", None, None, "ep"), "identifier:xyz", False),
        ((None, None, "Guest", "ep"), "anon:Guest", False),
        ((None, None, None, "ep-9"), "endpoint:ep-9", False),
        ((None, None, None, None), "event:2026-01-15T10:00:00.000Z/1", False),
    ],
)
def test_email_is_the_key_under_rule_1_and_null_for_every_other_key(
    identity: tuple[str | None, str | None, str | None, str | None], key: str, email: bool
) -> None:
    one = session_of(*identity)
    (participant,) = build_participants([one])
    assert participant.participant_key == key
    assert participant.email == (key if email else None)
    # The same participant with two sessions (the general rules, not the one-session path).
    other = session_of(*identity[:3], "ep-other" if identity[3] else None)
    if key.startswith(("endpoint:", "event:")):
        return  # another endpoint or event is another participant
    (twice,) = build_participants([one, other])
    assert twice.email == (key if email else None)


MESSAGES = [
    ("ann\n@school.example", "must not contain control characters"),
    ("   ", "must not be empty"),
    (
        "bob",
        "must be an email or a '<type>:<identifier>' key (phone:, device:, anon:, endpoint:, …)",
    ),
    (
        "x" * (MAX_PARTICIPANT_KEY_LENGTH + 1),
        f"must be at most {MAX_PARTICIPANT_KEY_LENGTH} characters",
    ),
    ("phone:  ", "has nothing after phone:"),
]


@pytest.mark.parametrize(("raw", "message"), MESSAGES)
def test_a_refused_declared_key_says_why_in_the_400(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        declared_key(raw)
    body: dict[str, Any] = {
        "type": "meeting.ended",
        "meeting_code": "abc-defg-hij",
        "ended_at": "2026-01-15T10:45:00Z",
        "expected_participants": ["ann@school.example", raw],
    }
    with pytest.raises(InvalidInput) as invalid:
        parse_meeting_ended(json.dumps(body).encode(), now=NOW)
    assert invalid.value.field == "expected_participants[1]"
    assert str(invalid.value) == f"expected_participants[1] {message}"


def test_a_key_of_exactly_the_longest_length_is_accepted() -> None:
    longest = "phone:" + "1" * (MAX_PARTICIPANT_KEY_LENGTH - len("phone:"))
    assert declared_key(longest) == longest
    assert declared_key(f"  {longest}  ") == longest  # the bound applies once trimmed


def fields(
    key: str, email: str | None, identifier: str | None, kind: str | None, name: str | None
) -> dict[str, Any]:
    return {
        "participant_key": key,
        "email": email,
        "identifier": identifier,
        "identifier_type": kind,
        "display_name": name,
    }


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "ann@school.example",
            fields(
                "ann@school.example",
                "ann@school.example",
                "ann@school.example",
                "email_address",
                None,
            ),
        ),
        ("phone:+1415", fields("phone:+1415", None, "+1415", "phone_number", None)),
        ("phone:+1:ext", fields("phone:+1:ext", None, "+1:ext", "phone_number", None)),
        ("device:dev-7", fields("device:dev-7", None, "dev-7", "device_id", None)),
        ("zoom_id:42", fields("zoom_id:42", None, "42", "zoom_id", None)),
        ("anon:Bob @ home", fields("anon:Bob @ home", None, None, None, "Bob @ home")),
        ("anon:Bob@home", fields("anon:Bob@home", None, None, None, "Bob@home")),
        ("anon:Dr: Who", fields("anon:Dr: Who", None, None, None, "Dr: Who")),
        ("endpoint:ep@1", fields("endpoint:ep@1", None, None, None, None)),
        # Rule 1 on identifiers Reports may send (no one can declare these): still emails.
        ("a@b:c", fields("a@b:c", "a@b:c", "a@b:c", "email_address", None)),
        ("x@y:z@w", fields("x@y:z@w", "x@y:z@w", "x@y:z@w", "email_address", None)),
    ],
)
def test_a_key_reads_back_as_the_identity_of_the_rule_that_built_it(
    key: str, expected: dict[str, Any]
) -> None:
    assert identity_fields(key) == expected


@pytest.mark.parametrize(
    ("key", "doc_id"),
    [
        ("ann@school.example", "ann@school.example-46cd8f9fb7ede7ee"),
        ("Zoë@École.example", "zo_@_cole.example-6148dd2a2a2e581c"),
        ("phone:+1 415 555", "phone_+1_415_555-1359d60cd79d7db7"),
        ("anon:...__x__", "anon_...__x-d9a88e263da4e43b"),
        ("..hidden..", "hidden-c2e57d989e46f857"),
        ("!!!", "p-e84c538e7fe25073"),
        ("a" * 100, "a" * 80 + "-2816597888e4a0d3"),
    ],
)
def test_document_ids_are_those_earlier_versions_stored(key: str, doc_id: str) -> None:
    """A changed id would leave every participant document of every meeting behind (orphans that
    readers still count) and write new ones beside them."""
    assert participant_doc_id(key) == doc_id
