"""Time as the system reads and writes it: one RFC 3339 parser, one formatter, milliseconds.

Everything is an aware UTC ``datetime`` with millisecond precision, the precision of the Reports
API's ``id.time``; interval arithmetic uses integer milliseconds since the epoch, so no float
decides a second.

The parser takes RFC 3339 date-times only: ``T`` (or ``t``) between date and time, an explicit
offset (``Z`` or ``±hh:mm``), any number of fraction digits, truncated to milliseconds. The same
rules serve the Reports decoder (``id.time``), the request edge and the CLI.
"""

from __future__ import annotations

import operator
import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

__all__ = [
    "EPOCH",
    "BadTimestamp",
    "format_optional",
    "format_timestamp",
    "from_ms",
    "parse_rfc3339",
    "parse_timestamp",
    "parse_timestamp_and_text",
    "to_ms",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

_RFC3339: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)

Problem = Literal["format", "offset", "value"]


class BadTimestamp(ValueError):
    """Not an RFC 3339 date-time; ``problem`` says how: ``format``, no ``offset``, or a ``value``
    out of range (a 31st of February)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.problem: Problem = problem


#: The separators of ``YYYY-MM-DDTHH:MM:SS.mmmZ``, read in one C call (a chain of eight
#: comparisons cost more than the C parser itself, and this runs for every Reports event).
_CANONICAL_MARKS: Final = operator.itemgetter(4, 7, 10, 13, 16, 19, 23)
_CANONICAL_SHAPE: Final = ("-", "-", "T", ":", ":", ".", "Z")


def _parse_canonical(raw: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` — what the Reports API sends and we write — by the C parser
    alone; None for any other shape (or digits out of range), which the full grammar decides."""
    if len(raw) != 24 or _CANONICAL_MARKS(raw) != _CANONICAL_SHAPE:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _parse_grammar(raw: str) -> datetime:
    match = _RFC3339.fullmatch(raw.strip())
    if match is None:
        raise BadTimestamp("format")
    offset = match["offset"]
    if offset is None:
        raise BadTimestamp("offset")
    # Milliseconds are the pipeline's precision; finer digits would only split identities.
    millis = (match["fraction"] or "").ljust(3, "0")[:3]
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}.{millis}{zone}").astimezone(
            UTC
        )
    except (ValueError, OverflowError):  # a 31st of February; a year 1 or 9999 moved by its offset
        raise BadTimestamp("value") from None


def parse_rfc3339(raw: str) -> datetime:
    """An RFC 3339 date-time → aware UTC datetime truncated to milliseconds; else BadTimestamp."""
    return _parse_canonical(raw) or _parse_grammar(raw)


def parse_timestamp(raw: object) -> datetime | None:
    """:func:`parse_rfc3339` for values from outside that may be anything: None when unusable."""
    if type(raw) is not str:
        return None
    try:
        return parse_rfc3339(raw)
    except BadTimestamp:
        return None


def parse_timestamp_and_text(raw: object) -> tuple[datetime, str] | None:
    """:func:`parse_timestamp` and the canonical text of the result (what
    :func:`format_timestamp` writes): canonical input is its own text, nothing is formatted."""
    if type(raw) is not str:
        return None
    if len(raw) == 24 and _CANONICAL_MARKS(raw) == _CANONICAL_SHAPE:  # _parse_canonical, inline
        try:
            return datetime.fromisoformat(raw), raw
        except ValueError:
            pass
    try:
        moment = _parse_grammar(raw)
    except BadTimestamp:
        return None
    return moment, format_timestamp(moment)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with exactly three fraction digits and ``Z``: ``2026-01-15T10:05:00.000Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is C code and always writes "+00:00" for UTC: swap it for "Z".
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def format_optional(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (floored)."""
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)
