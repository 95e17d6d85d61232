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
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import wraps
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from functions.attendance import Meeting, Participant, format_timestamp
from functions.dumps import Summary, paused_gc, summarize_dumps, write_summary_json
from functions.errors import AppError, InvalidInput
from functions.export import ExportFormat, export_rows, month_bounds, write_rows

if TYPE_CHECKING:
    from functions.app import Runtime
    from functions.model import Declared, MeetingRecord
    from functions.service import PollOutcome

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


# ------------------------------------------------------------------------------------------------
# Commands on the running system: sync, show, export


def operator_runtime() -> Runtime:
    """Settings → adapters, as the functions build them (``ConfigError`` names every problem)."""
    from functions.app import build_runtime
    from functions.config import Settings

    return build_runtime(Settings.from_env())


def _checked_meeting_id(meeting_id: str) -> str:
    from functions.http_edge import is_meeting_id

    if not is_meeting_id(meeting_id):
        raise InvalidInput(
            f"MEETING_ID must be 1 to 128 letters, digits, '_' or '-' (got {meeting_id!r})",
            field="meeting_id",
        )
    return meeting_id


#: Webhook field → the option that carries it, to name options in validation messages.
_OPTION_OF_FIELD = {
    "meeting_code": "--code",
    "ended_at": "--ended-at",
    "started_at": "--started-at",
    "external_id": "--external-id",
}


def _as_options(message: str) -> str:
    message = re.sub(
        r"\bexpected_participants\[(\d+)\]", lambda m: f"--expect #{int(m[1]) + 1}", message
    )
    message = re.sub(r"\bexpected_participants\b", "--expect", message)
    for name, option in _OPTION_OF_FIELD.items():
        message = re.sub(rf"\b{name}\b", option, message)
    return message


def declared_from_options(
    *,
    code: str,
    ended_at: str,
    started_at: str | None,
    external_id: str | None,
    expect: Sequence[str],
    now: datetime,
) -> Declared:
    """The options of ``sync --code`` checked by the webhook's own rules (one place for them)."""
    from functions.http_edge import parse_meeting_ended

    body = {
        "type": "meeting.ended",
        "meeting_code": code,
        "ended_at": ended_at,
        "started_at": started_at,
        "external_id": external_id,
        "expected_participants": list(expect),
    }
    try:
        return parse_meeting_ended(json.dumps(body).encode(), now=now)
    except InvalidInput as error:
        raise InvalidInput(_as_options(error.message), field=error.field) from None


def poll_now(rt: Runtime, meeting_id: str, *, wait_s: float = 60.0) -> PollOutcome:
    """``poll_meeting(reason="manual")``, waiting while a chain's poll holds the meeting's lease.

    A meeting created past its deadline is polled by its first task at once, so a manual poll right
    after it often finds the lease taken; that poll ends within seconds.
    """
    from functions.service import Busy, poll_meeting

    give_up = time.monotonic() + wait_s
    pause = 0.5
    while True:
        try:
            return poll_meeting(rt.deps, meeting_id, reason="manual")
        except Busy:
            if time.monotonic() + pause > give_up:
                raise
            click.echo(f"sync: {meeting_id} is being polled right now; waiting", err=True)
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def _stamp(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return str(value)


def _doc_clock(value: Any) -> str:
    return _clock(value) if isinstance(value, datetime) else "—"


def participants_table(
    documents: Sequence[Mapping[str, Any]], *, title: str | None = None
) -> Table:
    """Stored participant documents: real, estimated (declared length) and absent ones marked."""
    table = Table(title=title, title_justify="left")
    table.add_column("Participant", overflow="fold")
    table.add_column("First join (UTC)")
    table.add_column("Last leave (UTC)")
    table.add_column("Attended", justify="right")
    table.add_column("Sessions", justify="right")
    table.add_column("Devices")
    table.add_column("Note")
    for document in documents:
        key = str(document.get("participant_key") or "")
        name = document.get("display_name") or ""
        who = f"{name} ({key})" if name and name != key else key
        sessions = document.get("sessions") or []
        devices = sorted({str(s.get("device_type") or "?") for s in sessions})
        note = "absent" if document.get("absent") else ""
        if document.get("estimated"):
            note = "estimated"
        table.add_row(
            who,
            _doc_clock(document.get("first_join")),
            _doc_clock(document.get("last_leave")),
            _hms(int(document.get("attended_seconds") or 0)),
            str(int(document.get("session_count") or 0)),
            ", ".join(devices),
            note,
        )
    return table


def _sorted_participants(rt: Runtime, meeting_id: str) -> list[dict[str, Any]]:
    documents = rt.deps.store.participants(meeting_id)
    never = datetime.max.replace(tzinfo=UTC)
    documents.sort(
        key=lambda d: (
            d.get("first_join") is None,
            d.get("first_join") or never,
            str(d.get("participant_key")),
        )
    )
    return documents


def _stdout_console() -> Console:
    return Console(file=sys.stdout, width=140, soft_wrap=False, highlight=False)


def _fields_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def render_sync(
    outcome: PollOutcome, *, before: str | None, documents: Sequence[Mapping[str, Any]]
) -> None:
    meeting = outcome.meeting
    moved = str(meeting.status) if before in (None, str(meeting.status)) else None
    status = moved or f"{before} → {meeting.status}"
    rows = [
        ("Meeting", meeting.meeting_id),
        ("Code", meeting.meeting_code),
        ("Source", meeting.source),
        ("Status", status),
        ("Revision", str(meeting.revision)),
        ("Created", str(len(outcome.created))),
        ("Updated", str(len(outcome.updated))),
        ("Participants", f"{meeting.participant_count} with sessions"),
        ("Attended", _hms(meeting.total_attended_seconds)),
        ("Next poll", _stamp(meeting.next_poll_at)),
    ]
    if outcome.stats is not None:
        rows.append(
            (
                "Reports",
                f"{outcome.stats.requests} request(s), {outcome.stats.activities} activities",
            )
        )
    if outcome.error is not None:
        rows.append(("Error", outcome.error))
    console = _stdout_console()
    console.print(_fields_table(f"Synced {meeting.meeting_id}", rows))
    console.print(participants_table(documents))


@cli.command()
@click.argument("meeting_id", required=False)
@click.option(
    "--code", metavar="CODE", help="Meeting code: create or find a manual meeting, then poll it."
)
@click.option("--ended-at", metavar="T", help="With --code: RFC 3339 end, with a UTC offset.")
@click.option(
    "--started-at", metavar="T", help="With --code: RFC 3339 start (default: 4 h before the end)."
)
@click.option("--external-id", metavar="ID", help="With --code: the caller's id of the meeting.")
@click.option(
    "--expect",
    "expect",
    multiple=True,
    metavar="KEY",
    help="With --code: an expected participant key (repeatable).",
)
@reports_failures("sync")
def sync(
    meeting_id: str | None,
    code: str | None,
    ended_at: str | None,
    started_at: str | None,
    external_id: str | None,
    expect: tuple[str, ...],
) -> None:
    """Poll the Reports API now for MEETING_ID, or for the meeting of --code and --ended-at."""
    from functions.service import NotFound, accept_meeting_end

    declaring = {
        "--ended-at": ended_at,
        "--started-at": started_at,
        "--external-id": external_id,
        "--expect": expect or None,
    }
    if meeting_id is not None and code is not None:
        raise InvalidInput("give MEETING_ID or --code, not both")
    if meeting_id is None and code is None:
        raise InvalidInput("give MEETING_ID, or --code with --ended-at")
    if meeting_id is not None:
        given = [name for name, value in declaring.items() if value is not None]
        if given:
            raise InvalidInput(f"{', '.join(given)}: only with --code, not with MEETING_ID")
        meeting_id = _checked_meeting_id(meeting_id)
        rt = operator_runtime()
        stored = rt.deps.store.get(meeting_id)
        if stored is None:
            raise NotFound(meeting_id)
        before: str | None = str(stored.status)
    else:
        assert code is not None
        if ended_at is None:
            raise InvalidInput("--code needs --ended-at (RFC 3339 with a UTC offset)")
        declared = declared_from_options(
            code=code,
            ended_at=ended_at,
            started_at=started_at,
            external_id=external_id,
            expect=expect,
            now=datetime.now(UTC),
        )
        rt = operator_runtime()
        accepted = accept_meeting_end(rt.deps, declared, source="manual")
        meeting_id = accepted.meeting.meeting_id
        verb = "created" if accepted.created else "found"
        click.echo(
            f"sync: {verb} meeting {meeting_id} (source {accepted.meeting.source}, "
            f"status {accepted.meeting.status})",
            err=True,
        )
        before = str(accepted.meeting.status)
    outcome = poll_now(rt, meeting_id)
    if not outcome.polled:
        merged_into = outcome.meeting.merged_into
        if merged_into:
            raise AppError(f"meeting {meeting_id} is merged into {merged_into}; sync that one")
        raise AppError(f"meeting {meeting_id} was not polled ({outcome.skipped_reason})")
    render_sync(outcome, before=before, documents=_sorted_participants(rt, meeting_id))
    sys.stdout.flush()
    if outcome.error is not None:
        raise AppError(f"the Reports poll of {meeting_id} failed: {outcome.error}")


def meeting_fields(meeting: MeetingRecord) -> list[tuple[str, str]]:
    error = meeting.last_error
    last_error = (
        "—" if error is None else f"{error.code}: {error.message} (at {format_timestamp(error.at)})"
    )
    window = f"{_stamp(meeting.window_start)} → {_stamp(meeting.window_end)}"
    declared_start = _stamp(meeting.started_at)
    rows = [
        ("Status", str(meeting.status)),
        ("Source", meeting.source),
        ("Code", meeting.meeting_code),
        ("External id", _stamp(meeting.external_id)),
        ("Declared", f"{declared_start} → {_stamp(meeting.ended_at)}"),
        ("Window", window),
        ("Deadline", _stamp(meeting.deadline)),
        ("Attempts", str(meeting.attempts)),
        ("Next poll", _stamp(meeting.next_poll_at)),
        ("Last polled", _stamp(meeting.last_polled_at)),
        ("Completed", _stamp(meeting.completed_at)),
        ("Last error", last_error),
        ("Revision", str(meeting.revision)),
        ("Attendance", meeting.attendance_source),
        (
            "Totals",
            f"{meeting.participant_count} participant(s) with sessions, "
            f"{_hms(meeting.total_attended_seconds)} attended",
        ),
        ("Actual", f"{_stamp(meeting.actual_start)} → {_stamp(meeting.actual_end)}"),
        ("Conferences", ", ".join(meeting.conference_ids) or "—"),
        ("Expected", ", ".join(meeting.expected_participants) or "—"),
        ("Missing", ", ".join(meeting.missing_participants) or "—"),
    ]
    if meeting.merged_into is not None:
        rows.insert(1, ("Merged into", meeting.merged_into))
    return rows


@cli.command()
@click.argument("meeting_id")
@click.option("--json", "as_json", is_flag=True, help="Print GET /meetings/{id}'s JSON view.")
@reports_failures("show")
def show(meeting_id: str, as_json: bool) -> None:
    """A meeting's status, timings, last error and participants."""
    from functions.app import meeting_view
    from functions.service import NotFound

    meeting_id = _checked_meeting_id(meeting_id)
    rt = operator_runtime()
    if as_json:
        sys.stdout.write(json.dumps(meeting_view(rt, meeting_id), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    meeting = rt.deps.store.get(meeting_id)
    if meeting is None:
        raise NotFound(meeting_id)
    console = _stdout_console()
    console.print(_fields_table(f"Meeting {meeting_id}", meeting_fields(meeting)))
    console.print(participants_table(_sorted_participants(rt, meeting_id)))
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
    """Billing rows (CONTRACT §7): one per participant per meeting ended in --month."""
    start, end = month_bounds(month, tz)  # bad month or zone: exit 2 before any setting is read
    rt = operator_runtime()
    meetings = [m for m in rt.deps.store.ended_between(start, end) if str(m.status) != "merged"]
    err = Console(stderr=True, highlight=False)
    participants: dict[str, list[dict[str, Any]]] = {}
    with (
        Progress(console=err, transient=True) as progress,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        task = progress.add_task("reading participants", total=len(meetings))
        ids = [m.meeting_id for m in meetings]
        for meeting_id, documents in zip(
            ids, pool.map(rt.deps.store.participants, ids), strict=True
        ):
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
    from functions.http_edge import parse_time_argument

    now = datetime.now(UTC)
    start = parse_time_argument(since, "--since")
    end = parse_time_argument(until, "--until") if until else now
    check_range(start, end, now)  # a bad range exits 2 before any setting is read
    rt = operator_runtime()
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


def main() -> None:
    cli(prog_name="python -m functions")
