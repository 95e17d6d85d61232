"""The billing export's format (docs/cli.md): month bounds in a time zone, CSV and JSON.

The rows themselves come from the read side (``functions.views.export_rows``); nothing here does
I/O except writing to the stream it is given.

Decisions (the README repeats them):

- A month is ``[first day 00:00, first day of the next month 00:00)`` in ``--tz``, converted to
  UTC. Both ends are computed the same way, so consecutive months partition time even where a
  zone skips or repeats midnight (a DST change at 00:00 resolves to one instant, used by both).
- Timestamps are RFC 3339 UTC with milliseconds and ``Z``; CSV writes booleans as ``true``/``false``
  and null as an empty field (RFC 4180 quoting and CRLF line ends, the csv module's defaults).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from functions.errors import InvalidInput
from functions.views import EXPORT_FIELDS

__all__ = [
    "ExportFormat",
    "month_bounds",
    "parse_month",
    "parse_zone",
    "write_rows",
]

ExportFormat = Literal["csv", "json"]

_MONTH: Final = re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})")


def parse_month(raw: str) -> tuple[int, int]:
    """``YYYY-MM`` → ``(year, month)``; :class:`InvalidInput` (field ``month``) otherwise."""
    match = _MONTH.fullmatch(raw.strip())
    if match is None:
        raise InvalidInput(f"--month must be YYYY-MM, such as 2026-01 (got {raw!r})", field="month")
    year, month = int(match["year"]), int(match["month"])
    if not 1 <= month <= 12:
        raise InvalidInput(f"--month has no month {month:02d} (got {raw!r})", field="month")
    if not 1 <= year <= 9998:
        raise InvalidInput(f"--month year must be 0001 to 9998 (got {raw!r})", field="month")
    return year, month


def parse_zone(raw: str) -> ZoneInfo:
    """An IANA time zone such as ``Europe/Berlin`` or ``UTC``; :class:`InvalidInput` otherwise."""
    name = raw.strip()
    try:
        if not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a key naming a directory of the tz database (``Europe``) on some platforms.
        raise InvalidInput(
            f"--tz must be an IANA time zone such as Europe/Berlin or UTC (got {raw!r})",
            field="tz",
        ) from None


def month_bounds(month: str, tz: str = "UTC") -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of calendar month ``YYYY-MM`` as lived in zone ``tz``."""
    year, number = parse_month(month)
    zone = parse_zone(tz)
    next_year, next_month = (year + 1, 1) if number == 12 else (year, number + 1)
    start = datetime(year, number, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(next_year, next_month, 1, tzinfo=zone).astimezone(UTC)
    return start, end


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_rows(rows: Sequence[Mapping[str, Any]], out: IO[str], *, fmt: ExportFormat) -> None:
    """CSV with a header row, or one JSON array (and a newline)."""
    if fmt == "json":
        out.write(json.dumps([{name: row[name] for name in EXPORT_FIELDS} for row in rows]))
        out.write("\n")
        return
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow([_csv_value(row[name]) for name in EXPORT_FIELDS])
