"""The operator CLI: ``python -m functions <command>``.

Each command is a thin click wrapper: it parses arguments, calls a plain function that knows nothing
of click, and renders the result. Expected failures (:class:`AppError`) become one line on standard
error and exit status 2 (bad input, like click's own usage errors) or 1 (anything else); never a
traceback. Add a command with ``@cli.command()`` next to ``summarize``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import IO, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from functions.attendance import Meeting, Participant
from functions.dumps import Summary, paused_gc, summarize_dumps, write_summary_json
from functions.errors import AppError, InvalidInput

__all__ = ["cli", "main", "render_summary_table"]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_INVALID_INPUT = 2
EXIT_FAILURE = 1


def reports_app_errors(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn an AppError raised by a command into one line on stderr and its exit status."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except AppError as error:
                message = " ".join(error.message.split())
                click.echo(f"{command}: {message}", err=True)
                status = EXIT_INVALID_INPUT if isinstance(error, InvalidInput) else EXIT_FAILURE
                raise SystemExit(status) from None

        return wrapper

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Google Meet attendance from Admin SDK Reports events."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (CONTRACT §2).")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@reports_app_errors("summarize")
def summarize(as_json: bool, files: tuple[str, ...]) -> None:
    """Offline attendance from Reports dumps; FILE may be - for standard input."""
    with paused_gc():
        summary = summarize_dumps(files, stdin=sys.stdin.buffer)
        stdout = sys.stdout
        if as_json:
            write_summary_json(summary, stdout)
        else:
            render_summary_table(summary, stdout)
        stdout.flush()


def _clock(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _who(participant: Participant) -> str:
    name = participant.display_name or ""
    if name and name != participant.participant_key:
        return f"{name} ({participant.participant_key})"
    return participant.participant_key


def _meeting_table(meeting: Meeting) -> Table:
    title = (
        f"{meeting.meeting_code or 'no meeting code'} · {_clock(meeting.actual_start)} → "
        f"{_clock(meeting.actual_end)} UTC · {meeting.participant_count} participants · "
        f"{_hms(meeting.total_attended_seconds)} attended"
    )
    table = Table(title=title, caption=", ".join(meeting.conference_ids), title_justify="left")
    table.add_column("Participant", overflow="fold")
    table.add_column("First join (UTC)")
    table.add_column("Last leave (UTC)")
    table.add_column("Attended", justify="right")
    table.add_column("Sessions", justify="right")
    table.add_column("Devices")
    for participant in meeting.participants:
        devices = sorted({s.device_type or "?" for s in participant.sessions})
        table.add_row(
            _who(participant),
            _clock(participant.first_join),
            _clock(participant.last_leave),
            _hms(participant.attended_seconds),
            str(participant.session_count),
            ", ".join(devices),
        )
    return table


def render_summary_table(summary: Summary, out: IO[str]) -> None:
    """The human-readable summarize output: one table per meeting, then the counts."""
    console = Console(file=out, width=140, soft_wrap=False, highlight=False)
    for meeting in summary.meetings:
        console.print(_meeting_table(meeting))
        console.print()
    console.print(
        f"events read {summary.events_read}, used {summary.events_used}, "
        f"skipped {summary.events_skipped}; {len(summary.meetings)} meeting(s)"
    )
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)


def main() -> None:
    cli(prog_name="python -m functions")
