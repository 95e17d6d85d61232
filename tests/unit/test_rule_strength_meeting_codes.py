"""What a declaration's sender reads when its meeting code is refused (docs/api.md "Rules every function follows": the 400
names the field and the problem), word for word."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from functions.errors import InvalidInput
from functions.meeting_codes import declared_meeting_code
from functions.payloads import parse_meeting_ended

NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
CHARACTERS = "may hold only letters, digits, dashes and spaces"
LENGTH = "must have 3 to 64 characters without spaces"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc_defg", CHARACTERS),
        ("", CHARACTERS),
        ("abc\u00e9defg", CHARACTERS),
        ("ab", LENGTH),
        ("a-b- ", LENGTH),
        ("a" * 65, LENGTH),
    ],
)
def test_a_refused_code_says_why_in_the_400(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        declared_meeting_code(raw)
    body = json.dumps(
        {"type": "meeting.ended", "meeting_code": raw, "ended_at": "2026-01-15T10:45:00Z"}
    )
    with pytest.raises(InvalidInput) as invalid:
        parse_meeting_ended(body.encode(), now=NOW)
    assert invalid.value.field == "meeting_code"
    assert str(invalid.value) == f"meeting_code {message}"


@pytest.mark.parametrize(("raw", "code"), [("abc", "abc"), ("A" * 64, "a" * 64)])
def test_the_length_bounds_are_inclusive(raw: str, code: str) -> None:
    assert declared_meeting_code(raw) == code
