"""``python -m functions sync``: poll the Reports API now for one meeting, or declare a manual
meeting from options checked by the webhook's own rules and poll it."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from functions.cli import (
    _checked_meeting_id,
    _fields_table,
    _stdout_console,
    operator_runtime,
    participants_table,
    reports_failures,
)
from functions.errors import Busy, CommandFailed, InvalidInput, NotFound
from functions.polling import PollOutcome, Skipped
from functions.views import sorted_participants, sync_fields

if TYPE_CHECKING:
    from functions.app import Runtime
    from functions.model import Declared


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
    from functions.payloads import parse_meeting_ended

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


def poll_now(rt: Runtime, meeting_id: str, *, wait_s: float = 60.0) -> PollOutcome | Skipped:
    """``poll_meeting(reason="manual")``, waiting while a chain's poll holds the meeting's lease.

    A meeting created past its deadline is polled by its first task at once, so a manual poll right
    after it often finds the lease taken; that poll ends within seconds.
    """
    from functions.polling import poll_meeting

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


def _declare_for_sync(
    *,
    code: str,
    ended_at: str | None,
    started_at: str | None,
    external_id: str | None,
    expect: Sequence[str],
) -> tuple[Runtime, str, str]:
    """``sync --code``: the manual meeting created or found; (runtime, meeting id, status)."""
    from functions.declarations import accept_meeting_end

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
    rt = operator_runtime(writes=True)
    accepted = accept_meeting_end(rt.deps, declared, source="manual")
    meeting = accepted.meeting
    verb = "created" if accepted.created else "found"
    click.echo(
        f"sync: {verb} meeting {meeting.meeting_id} (source {meeting.source}, "
        f"status {meeting.status})",
        err=True,
    )
    return rt, meeting.meeting_id, str(meeting.status)


@click.command()
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
    declaring = {
        "--ended-at": ended_at,
        "--started-at": started_at,
        "--external-id": external_id,
        "--expect": expect or None,
    }
    if meeting_id is not None and code is not None:
        raise InvalidInput("give MEETING_ID or --code, not both")
    if meeting_id is not None:
        given = [name for name, value in declaring.items() if value is not None]
        if given:
            raise InvalidInput(f"{', '.join(given)}: only with --code, not with MEETING_ID")
        meeting_id = _checked_meeting_id(meeting_id)
        rt = operator_runtime(writes=True)
        stored = rt.deps.store.get(meeting_id)
        if stored is None:
            raise NotFound.meeting(meeting_id)
        before = str(stored.status)
    elif code is not None:
        rt, meeting_id, before = _declare_for_sync(
            code=code,
            ended_at=ended_at,
            started_at=started_at,
            external_id=external_id,
            expect=expect,
        )
    else:
        raise InvalidInput("give MEETING_ID, or --code with --ended-at")
    outcome = poll_now(rt, meeting_id)
    if isinstance(outcome, Skipped):
        merged_into = None if outcome.meeting is None else outcome.meeting.merged_into
        if merged_into:
            raise CommandFailed(f"meeting {meeting_id} is merged into {merged_into}; sync that one")
        raise CommandFailed(f"meeting {meeting_id} was not polled ({outcome.skipped_reason})")
    console = _stdout_console()
    console.print(_fields_table(f"Synced {meeting_id}", sync_fields(outcome, before=before)))
    console.print(participants_table(sorted_participants(rt.deps.store, outcome.meeting)))
    sys.stdout.flush()
    if outcome.error is not None:
        raise CommandFailed(f"the Reports poll of {meeting_id} failed: {outcome.error}")
