"""The operator CLI: ``python -m functions <command>``.

Each command is a thin click wrapper: it parses arguments, calls a plain function that knows nothing
of click, and renders the result. Expected failures (:class:`AppError`) become one line on standard
error and exit status 2 (bad input, like click's own usage errors) or 1 (anything else); never a
traceback. Add a command with ``@cli.command()`` next to ``summarize``.

Tables and exports go to standard output; logs, progress and errors to standard error. The commands
that touch the system (``sync``, ``show``, ``export``) read the same settings as the functions
(``Settings.from_env``), so with the variables of ``.local/stack.env`` they act on the local stack.

Exit statuses (the README repeats them):

- 0: done.
- 2: the command line is wrong and no system state could make it right: a usage error, a malformed
  meeting id, month, time zone, meeting code, time or participant key.
- 1: anything else: an unknown meeting (``no meeting …``), invalid settings (one line naming
  every problem), a Reports poll that failed (its outcome is still printed), a meeting merged into
  another, the store unreachable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import wraps
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from functions import __version__, logs
from functions.attendance import Meeting
from functions.dumps import Summary, paused_gc, summarize_dumps, write_summary_json
from functions.errors import AppError, ConfigError, InvalidInput, NotFound
from functions.export import ExportFormat, month_bounds, write_rows
from functions.timestamps import format_timestamp
from functions.views import (
    billed_meetings,
    export_rows,
    meeting_fields,
    meeting_view,
    participant_row,
    sorted_participants,
    summary_row,
    summary_title,
)

if TYPE_CHECKING:
    from functions.app import Runtime
    from functions.config import Settings
    from functions.ports import (
        CalendarApi,
        CalendarState,
        Directory,
        MeetingStore,
        WorkspaceEvents,
        WorkspaceState,
    )

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


def reports_failures(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Like :func:`reports_app_errors`, and an unexpected failure (the store unreachable, a bug)
    becomes one line and exit 1 too: an operator's command never ends in a traceback."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        inner = reports_app_errors(command)(function)

        @wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return inner(*args, **kwargs)
            except BrokenPipeError:
                raise  # ``export | head``: click ends quietly
            except Exception as error:
                detail = " ".join(str(error).split())[:500]
                click.echo(f"{command}: failed: {type(error).__name__}: {detail}", err=True)
                raise SystemExit(EXIT_FAILURE) from None

        return wrapper

    return decorate


class OneLineUsageError(click.UsageError):
    """A click usage error shown as one line (``export: Missing option '--month'. …``)."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), ctx=error.ctx)

    def show(self, file: IO[Any] | None = None) -> None:
        ctx = self.ctx
        name = ctx.info_name if ctx is not None and ctx.parent is not None else None
        command = name or "python -m functions"
        hint = f"; see {ctx.command_path} --help" if ctx is not None else ""
        message = " ".join(self.format_message().split()).rstrip(".")
        click.echo(f"{command}: {message}{hint}", file=file, err=True)


class OperatorGroup(click.Group):
    """Usage errors (unknown options, bad choices, missing arguments) as one line, exit 2."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _one_line(error) from None


def _one_line(error: click.UsageError) -> click.UsageError:
    return error if isinstance(error, OneLineUsageError) else OneLineUsageError(error)


@click.group(cls=OperatorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show the JSON log lines on standard error.")
@click.version_option(__version__, "--version", message="%(prog)s %(version)s")
def cli(verbose: bool) -> None:
    """Google Meet attendance from Admin SDK Reports events."""
    # The functions' JSON lines are for Cloud Logging; at a terminal they would interleave with
    # the tables, and every failure the operator must see is already its own one-line error.
    before = logs.minimum_severity()
    logs.set_minimum_severity("INFO" if verbose else "CRITICAL")
    # Restored when the command ends: in-process callers (tests, a REPL) keep their own level.
    click.get_current_context().call_on_close(lambda: logs.set_minimum_severity(before))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/cli.md).")
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


_PARTICIPANT_COLUMNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Participant", {"overflow": "fold"}),
    ("First join (UTC)", {}),
    ("Last leave (UTC)", {}),
    ("Attended", {"justify": "right"}),
    ("Sessions", {"justify": "right"}),
    ("Devices", {}),
)


def _table(
    rows: Sequence[Sequence[str]], *, title: str | None = None, note: bool = False, **options: Any
) -> Table:
    """A participant table: the summary's columns, and a note column for stored participants."""
    # Cells are data (names, keys), never markup: a display name "[/]" is shown as it is.
    table = Table(title=None if title is None else Text(title), title_justify="left", **options)
    for name, settings in (*_PARTICIPANT_COLUMNS, *((("Note", {}),) if note else ())):
        table.add_column(name, **settings)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _meeting_table(meeting: Meeting) -> Table:
    return _table(
        [summary_row(p) for p in meeting.participants],
        title=summary_title(meeting),
        caption=", ".join(meeting.conference_ids),
    )


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


# ------------------------------------------------------------------------------------------------
# Commands on the running system: sync, show, export


def operator_runtime(*, writes: bool = False) -> Runtime:
    """Settings → adapters, as the functions build them (``ConfigError`` names every problem).

    ``writes``: the command may write participants (``sync``, ``backfill``, ``erase``), so it
    needs ``ERASURE_KEY`` to honour erasures; reading commands do not."""
    from functions.app import build_runtime
    from functions.config import Settings

    settings = Settings.from_env()
    if writes and settings.erasure_key is None:
        raise ConfigError(
            ["ERASURE_KEY is required by commands that write participants (Secret Manager)"]
        )
    return build_runtime(settings)


def reader_settings() -> Settings:
    """The settings of a reading command: ``GOOGLE_CLOUD_PROJECT`` (and the emulator host on the
    local stack); no queue, delegation or secret is read, so none is needed."""
    from functions.config import Settings

    return Settings.from_env(role="reader")


def operator_store() -> MeetingStore:
    """The meeting store for reading commands (``show``, ``list``, ``export``, ``report``)."""
    from functions.adapters.firestore_store import FirestoreStore

    return FirestoreStore.from_settings(reader_settings())


def _checked_meeting_id(meeting_id: str) -> str:
    from functions.model import is_meeting_id

    if not is_meeting_id(meeting_id):
        raise InvalidInput(
            f"MEETING_ID must be 1 to 128 letters, digits, '_' or '-' (got {meeting_id!r})",
            field="meeting_id",
        )
    return meeting_id


def participants_table(documents: Sequence[Mapping[str, Any]]) -> Table:
    """Stored participant documents: real, estimated (declared length) and absent ones marked."""
    return _table([participant_row(d) for d in documents], note=True)


def _stdout_console() -> Console:
    return Console(file=sys.stdout, width=140, soft_wrap=False, highlight=False)


def _fields_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=Text(title), title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for name, value in rows:
        table.add_row(name, Text(value))
    return table


@cli.command()
@click.argument("meeting_id")
@click.option("--json", "as_json", is_flag=True, help="Print GET /meetings/{id}'s JSON view.")
@click.option("--timeline", is_flag=True, help="Also draw the sessions across the meeting (UTC).")
@reports_failures("show")
def show(meeting_id: str, as_json: bool, timeline: bool) -> None:
    """A meeting's status, timings, last error and participants."""
    meeting_id = _checked_meeting_id(meeting_id)
    if as_json and timeline:
        raise InvalidInput("give --json or --timeline, not both")
    store = operator_store()
    if as_json:
        sys.stdout.write(json.dumps(meeting_view(store, meeting_id), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    meeting = store.get(meeting_id)
    if meeting is None:
        raise NotFound.meeting(meeting_id)
    console = _stdout_console()
    documents = sorted_participants(store, meeting)
    console.print(_fields_table(f"Meeting {meeting_id}", meeting_fields(meeting)))
    console.print(participants_table(documents))
    if timeline:  # the module, not the name: it imports this one
        from functions import cli_report

        console.print(cli_report.show_timeline(store, meeting, documents, width=console.width))
    sys.stdout.flush()


@cli.command()
@click.option("--month", required=True, metavar="YYYY-MM", help="Meetings that ended this month.")
@click.option(
    "--tz", default="UTC", show_default=True, metavar="AREA/CITY", help="Zone of the month."
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@reports_failures("export")
def export(month: str, tz: str, fmt: ExportFormat) -> None:
    """Billing rows (docs/cli.md): one per participant per meeting ended in --month."""
    start, end = month_bounds(month, tz)  # bad month or zone: exit 2 before any setting is read
    store = operator_store()
    meetings = billed_meetings(store, start, end)
    err = Console(stderr=True, highlight=False)
    participants: dict[str, list[dict[str, Any]]] = {}
    with (
        Progress(console=err, transient=True) as progress,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        task = progress.add_task("reading participants", total=len(meetings))
        ids = [m.meeting_id for m in meetings]
        for meeting_id, documents in zip(ids, pool.map(store.participants, ids), strict=True):
            participants[meeting_id] = documents
            progress.advance(task)
    rows = export_rows(meetings, participants)
    write_rows(rows, sys.stdout, fmt=fmt)
    sys.stdout.flush()
    click.echo(
        f"export: {month} in {tz} is [{format_timestamp(start)}, {format_timestamp(end)}): "
        f"{len(meetings)} meeting(s), {len(rows)} row(s)",
        err=True,
    )


@cli.command()
@click.option("--since", required=True, metavar="T", help="RFC 3339 start, with a UTC offset.")
@click.option("--until", metavar="T", help="RFC 3339 end, with a UTC offset (default: now).")
@reports_failures("backfill")
def backfill(since: str, until: str | None) -> None:
    """Scan Reports for the range: create meetings nobody announced, re-poll meetings whose data
    changed after they were final, restart broken chains. Safe to run again."""
    from functions.backfill import check_range, run_backfill
    from functions.payloads import parse_time_field

    now = datetime.now(UTC)
    start = parse_time_field(since, field="--since")
    end = parse_time_field(until, field="--until") if until else now
    check_range(start, end, now)  # a bad range exits 2 before any setting is read
    rt = operator_runtime(writes=True)
    err = Console(stderr=True, highlight=False)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("scanning Reports slices", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = run_backfill(rt.deps, since=start, until=end, on_slice_done=advance)
    summary = Table(title="Backfill", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    for label, value in (
        ("range", f"{format_timestamp(report.since)} … {format_timestamp(report.until)}"),
        ("slices", str(report.slices)),
        ("Reports requests", str(report.requests)),
        ("events read", str(report.events_read)),
        ("conferences seen", str(report.conferences_seen)),
        ("meetings created", str(len(report.meetings_created))),
        ("meetings re-polled", str(len(report.repolled))),
        ("chains re-enqueued", str(len(report.reenqueued))),
    ):
        summary.add_row(label, value)
    _stdout_console().print(summary)
    sys.stdout.flush()


@cli.command()
@click.argument("participant_key")
@reports_failures("erase")
def erase(participant_key: str) -> None:
    """Erase PARTICIPANT_KEY from every meeting, for good (docs/rules.md Privacy)."""
    from functions.erasure import erase_participant
    from functions.payloads import parse_erasure_request

    key = parse_erasure_request(json.dumps({"participant_key": participant_key}).encode())
    changed = erase_participant(operator_runtime(writes=True).deps, key)
    click.echo(f"erase: {changed} meeting(s) changed; the participant is recorded as erased")


def operator_workspace(settings: Settings) -> WorkspaceState:
    from functions.cli_subscriptions import operator_workspace as build

    return build(settings)


def operator_workspace_apis(settings: Settings) -> tuple[WorkspaceEvents, Directory]:
    from functions.cli_subscriptions import operator_workspace_apis as build

    return build(settings)


def operator_calendar(settings: Settings, *, api: bool) -> tuple[CalendarApi | None, CalendarState]:
    from functions.cli_subscriptions import operator_calendar as build

    return build(settings, api=api)


@cli.command()
@click.option("--ensure", is_flag=True, help="Create, renew or reactivate them now, first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the rows.")
@reports_failures("subscriptions")
def subscriptions(ensure: bool, as_json: bool) -> None:
    """Meet event subscriptions and Calendar channels: state, expiry, last event, problems."""
    from functions.cli_subscriptions import run

    # Looked up when called, so that tests can replace the adapters.
    run(
        ensure=ensure,
        as_json=as_json,
        workspace=lambda settings: operator_workspace(settings),
        workspace_apis=lambda settings: operator_workspace_apis(settings),
        calendar=lambda settings, api: operator_calendar(settings, api=api),
    )


@cli.command("index-lookups")
@reports_failures("index-lookups")
def index_lookups() -> None:
    """Index every stored meeting for declarations' first read, then mark the index complete.

    Run once after deploying a version with lookup documents (and after every instance runs
    it): until then declarations query, as before. Idempotent."""
    from functions.adapters.firestore_store import FirestoreStore
    from functions.config import Settings

    settings = Settings.from_env()  # with RETENTION_DAYS, for the expiry of the entries
    indexed = FirestoreStore.from_settings(settings).index_lookups()
    click.echo(f"index-lookups: {indexed} meeting(s) indexed; declarations now read the index")


def main() -> None:
    # The console script completes and names itself; ``python -m functions`` keeps its name.
    script = "meet-attendance"
    prog = script if sys.argv and sys.argv[0].rsplit("/", 1)[-1] == script else None
    cli(prog_name=prog or "python -m functions", complete_var="_MEET_ATTENDANCE_COMPLETE")


# Commands with their own modules (they import the helpers above, so they come last).
from functions.cli_doctor import doctor  # noqa: E402
from functions.cli_list import list_meetings  # noqa: E402
from functions.cli_report import report  # noqa: E402
from functions.cli_sync import sync  # noqa: E402

for _command in (list_meetings, doctor, report, sync):
    cli.add_command(_command)
