"""``python -m functions list``: find meetings by code, date, organizer, participant or status.

Every option is checked before any setting is read (a bad one is one line, exit 2); then one
store search of a page and one more meeting (``functions.meeting_search`` has the rules). The
table or JSON goes to standard output; the last line on standard error counts the meetings and,
when another page exists, says which ``--page-token`` shows it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from functions.cli import operator_store, reports_failures
from functions.meeting_search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Cursor,
    MeetingQuery,
    Page,
    checked_code,
    checked_organizer,
    checked_participant,
    checked_range,
    decode_token,
    encode_token,
    listed_fields,
    page,
)
from functions.model import MeetingRecord
from functions.payloads import parse_time_field
from functions.schedule import Status
from functions.views import clock, hms

__all__ = ["list_meetings", "query_from_options"]

_COLUMNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Ended (UTC)", {}),
    ("Meeting", {}),
    ("Code", {}),
    ("Status", {}),
    ("Organizer", {}),
    ("People", {"justify": "right"}),
    ("Attended", {"justify": "right"}),
    ("Source", {}),
)


def query_from_options(
    *,
    code: str | None,
    ended_from: str | None,
    ended_to: str | None,
    organizer: str | None,
    participant: str | None,
    status: str | None,
    page_token: str | None,
) -> tuple[MeetingQuery, Cursor | None]:
    """The options as a query in stored forms, and where the page starts; InvalidInput."""
    start = None if ended_from is None else parse_time_field(ended_from, field="--from")
    end = None if ended_to is None else parse_time_field(ended_to, field="--to")
    checked_range(start, end)
    query = MeetingQuery(
        meeting_code=None if code is None else checked_code(code),
        organizer_email=None if organizer is None else checked_organizer(organizer),
        participant_key=None if participant is None else checked_participant(participant),
        status=None if status is None else Status(status),
        ended_from=start,
        ended_to=end,
    )
    return query, None if page_token is None else decode_token(page_token)


def _row(meeting: MeetingRecord) -> tuple[str, ...]:
    return (
        clock(meeting.ended_at),
        meeting.meeting_id,
        meeting.meeting_code,
        str(meeting.status),
        meeting.organizer_email or "—",
        str(meeting.participant_count),
        hms(meeting.total_attended_seconds),
        meeting.source,
    )


def _table(meetings: list[MeetingRecord]) -> Table:
    table = Table(title=Text("Meetings, newest first"), title_justify="left")
    for name, settings in _COLUMNS:
        table.add_column(name, **settings)
    for meeting in meetings:
        # Cells are data, never markup.
        table.add_row(*(Text(cell) for cell in _row(meeting)))
    return table


def _print(result: Page, *, as_json: bool) -> None:
    token = None if result.next_cursor is None else encode_token(result.next_cursor)
    if as_json:
        body = {"meetings": [listed_fields(m) for m in result.meetings], "next_page_token": token}
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    else:
        table = _table(list(result.meetings))
        # 140 columns, or wider when a row needs it: a cell is never cut.
        wide = Console(width=10_000)
        width = max(140, Measurement.get(wide, wide.options, table).maximum)
        console = Console(file=sys.stdout, width=width, soft_wrap=False, highlight=False)
        console.print(table)
    sys.stdout.flush()
    shown = f"list: {len(result.meetings)} meeting(s)"
    if token is None:
        click.echo(shown, err=True)
    else:
        click.echo(f"{shown}; more: add --page-token {token}", err=True)


@click.command("list")
@click.option("--code", metavar="CODE", help="Meeting code (abcdefghij, ABC-DEFG-HIJ, …).")
@click.option("--from", "ended_from", metavar="T", help="Ended at or after T (RFC 3339, offset).")
@click.option("--to", "ended_to", metavar="T", help="Ended before T (RFC 3339, with an offset).")
@click.option("--organizer", metavar="EMAIL", help="The organizer's email.")
@click.option(
    "--participant", metavar="KEY", help="A participant key (an email, or a key as stored)."
)
@click.option(
    "--status",
    type=click.Choice([str(s) for s in Status]),
    help="Only this status (merged meetings are listed only with --status merged).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Meetings per page.",
)
@click.option("--page-token", metavar="TOKEN", help="Show the page a previous run named.")
@reports_failures("list")
def list_meetings(
    code: str | None,
    ended_from: str | None,
    ended_to: str | None,
    organizer: str | None,
    participant: str | None,
    status: str | None,
    as_json: bool,
    limit: int,
    page_token: str | None,
) -> None:
    """Find meetings by code, date, organizer, participant or status, newest first."""
    query, after = query_from_options(
        code=code,
        ended_from=ended_from,
        ended_to=ended_to,
        organizer=organizer,
        participant=participant,
        status=status,
        page_token=page_token,
    )
    store = operator_store()
    _print(page(store.search(query, limit=limit + 1, after=after), limit=limit), as_json=as_json)
