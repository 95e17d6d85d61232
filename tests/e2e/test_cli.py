"""The operator CLI on the local stack: ``python -m functions sync|show|export`` as real processes.

The CLI reads the stack's settings from the environment (what ``.local/stack.env`` exports), so
each run here gets ``{**os.environ, **stack.env}``; a few checks use click's CliRunner in-process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from functions.adapters.firestore_store import FirestoreStore
from functions.cli import cli
from functions.model import MeetingRecord, estimated_record
from functions.ports import MeetingCommit
from functions.schedule import Status
from functions.views import EXPORT_FIELDS as FIELDS
from local.client import StackClient
from local.simulate import Stay, activities_for, rfc3339
from local.stack import Stack
from tests.e2e.conftest import wait_for
from tests.firestore_reads import ALL_TIME

ROOT = Path(__file__).resolve().parents[2]
TEACHER = "teacher@school.example"
STUDENT = "student@school.example"
NEVER = "never@school.example"
M = timedelta(minutes=1)

pytestmark = pytest.mark.timeout(240)


def run_cli(
    stack: Stack, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions", *args],
        env=dict(env) if env is not None else {**os.environ, **stack.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int, prefix: str) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(prefix), result.stderr
    assert result.stdout == ""
    return result.stderr


def ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def add_class(
    client: StackClient, code: str, start: datetime, end: datetime, conference_id: str
) -> None:
    client.add_activities(
        activities_for(
            [
                Stay(TEACHER, start - 2 * M, end, display_name="Teacher"),
                Stay(STUDENT, start, end - 5 * M, device_type="android"),
            ],
            meeting_code=code,
            conference_id=conference_id,
        )
    )


def webhook(client: StackClient, code: str, start: datetime, end: datetime, **extra: Any) -> str:
    body = {
        "type": "meeting.ended",
        "meeting_code": code,
        "started_at": rfc3339(start),
        "ended_at": rfc3339(end),
        **extra,
    }
    answer = client.meeting_ended(body)
    assert answer.status in (200, 202), answer
    meeting_id: str = answer.body["meeting_id"]
    return meeting_id


def until_final(store: FirestoreStore, meeting_id: str) -> MeetingRecord:
    def final() -> MeetingRecord | None:
        meeting = store.get(meeting_id)
        done = (Status.COMPLETE, Status.NO_DATA, Status.FAILED)
        return meeting if meeting is not None and meeting.status in done else None

    result: MeetingRecord = wait_for(final, timeout_s=90, what=f"{meeting_id} final")
    return result


@pytest.fixture
def stack_environ(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's settings in this process's environment, for CliRunner."""
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)


# ------------------------------------------------------------------------------------------------
# sync


def test_sync_by_id_after_a_webhook_polls_now_and_prints_the_outcome(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    code = "cli-sync-one"
    end = ms(datetime.now(UTC))
    start = end - 45 * M
    add_class(client, code, start, end, "conference-sync")
    meeting_id = webhook(client, code, start, end, expected_participants=[TEACHER, STUDENT])

    result = run_cli(stack, "sync", meeting_id)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert f"Synced {meeting_id}" in out
    assert "cli-sync-one" in out
    assert "Teacher (teacher@school.example)" in out
    assert STUDENT in out
    assert "0:47:00" in out
    assert "0:40:00" in out
    assert "android" in out
    stored = store.get(meeting_id)
    assert stored is not None
    assert stored.status in (Status.COLLECTING, Status.COMPLETE)
    assert stored.revision >= 1
    assert "Revision 1" in " ".join(out.replace("│", " ").split())
    assert stored.attempts >= 1
    by_key = {d["participant_key"]: d for d in store.participants(meeting_id)}
    assert by_key[TEACHER]["attended_seconds"] == 47 * 60
    assert by_key[STUDENT]["attended_seconds"] == 40 * 60


def test_sync_by_code_creates_a_manual_meeting_polls_it_and_finds_it_again(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    code = "mnpqrstvwx"
    # Ended an hour ago: past its (20 s) deadline, so it is polled once and final.
    end = ms(datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    start = end - 45 * M
    add_class(client, "mnp-qrst-vwx", start, end, "conference-manual")
    ended_at_plus_one = end.astimezone(timezone(timedelta(hours=1))).isoformat()
    args = [
        "sync",
        "--code",
        code.upper(),
        "--ended-at",
        ended_at_plus_one,
        "--started-at",
        rfc3339(start),
        "--external-id",
        "cli-manual-1",
        "--expect",
        TEACHER.upper(),
        "--expect",
        f"email_address:{STUDENT}",
        "--expect",
        NEVER,
    ]
    result = run_cli(stack, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "sync: created meeting" in result.stderr
    assert "source manual" in result.stderr

    meeting_id = result.stderr.split("sync: created meeting ", 1)[1].split()[0]
    meeting = until_final(store, meeting_id)
    assert meeting.source == "manual"
    assert meeting.meeting_code == "mnp-qrst-vwx"
    assert meeting.external_id == "cli-manual-1"
    assert meeting.ended_at == end
    assert meeting.expected_participants == (TEACHER, STUDENT, NEVER)
    assert meeting.status is Status.COMPLETE
    assert "complete" in result.stdout
    assert "mnp-qrst-vwx" in result.stdout
    documents = {d["participant_key"]: d for d in store.participants(meeting_id)}
    assert documents[TEACHER]["attended_seconds"] == 47 * 60
    assert documents[NEVER]["absent"] is True

    again = run_cli(stack, *args)
    assert again.returncode == 0, again.stderr
    assert f"sync: found meeting {meeting_id} (source manual" in again.stderr
    assert store.get(meeting_id) is not None
    assert len(store.with_code("mnp-qrst-vwx", ended=ALL_TIME)) == 1


def test_sync_reports_a_failed_poll_with_its_outcome_and_exit_1(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    end = ms(datetime.now(UTC) + 4 * M)  # first chain poll minutes away: only the CLI polls
    meeting_id = webhook(client, "cli-fails", end - 45 * M, end)
    client.add_fault("not_authorized", count=5)
    result = run_cli(stack, "sync", meeting_id)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"sync: the Reports poll of {meeting_id} failed"
    )
    assert f"Synced {meeting_id}" in result.stdout
    stored = store.get(meeting_id)
    assert stored is not None
    assert stored.last_error is not None
    assert stored.last_error.code == "permission"


# ------------------------------------------------------------------------------------------------
# show


def test_show_prints_timings_and_marks_estimated_participants(
    stack: Stack, client: StackClient
) -> None:
    end = ms(datetime.now(UTC) + 4 * M)
    meeting_id = webhook(
        client,
        "cli-show-one",
        end - 45 * M,
        end,
        external_id="show-1",
        expected_participants=[TEACHER, "phone:+15550100"],
    )
    result = run_cli(stack, "show", meeting_id)
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.replace("│", " ").split())
    for expected in (
        f"Meeting {meeting_id}",
        "Status scheduled",
        "Source webhook",
        "Code cli-show-one",
        "External id show-1",
        f"Declared {rfc3339(end - 45 * M)} → {rfc3339(end)}",
        f"Deadline {rfc3339(end + timedelta(seconds=20))}",
        "Attempts 0",
        f"Next poll {rfc3339(end + timedelta(seconds=1))}",
        "Last polled —",
        "Last error —",
        "Revision 0",
        "Attendance estimated",
        "phone:+15550100",
        TEACHER,
        "0:45:00",
    ):
        assert expected in words, (expected, result.stdout)
    assert words.count("estimated") >= 3  # the attendance source and both participants


def test_show_json_is_the_http_view_and_text_marks_absent(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    end = ms(datetime.now(UTC) - timedelta(hours=2))
    add_class(client, "cli-show-two", end - 45 * M, end, "conference-show")
    meeting_id = webhook(
        client, "cli-show-two", end - 45 * M, end, expected_participants=[TEACHER, NEVER]
    )
    until_final(store, meeting_id)
    shown = run_cli(stack, "show", "--json", meeting_id)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    answer = client.meeting(meeting_id)
    assert answer.status == 200
    assert view == answer.body
    assert view["meeting"]["status"] == "complete"

    text = run_cli(stack, "show", meeting_id)
    assert text.returncode == 0, text.stderr
    never_line = [line for line in text.stdout.splitlines() if NEVER in line][-1]  # the table row
    assert "absent" in never_line
    assert "0:00:00" in never_line
    assert "Status complete" in " ".join(text.stdout.replace("│", " ").split())


def test_show_and_sync_of_an_unknown_meeting_say_so_in_one_line(
    stack: Stack, client: StackClient
) -> None:
    one_line_error(run_cli(stack, "show", "x-unknown"), 1, "show: no meeting x-unknown")
    one_line_error(run_cli(stack, "show", "--json", "x-unknown"), 1, "show: no meeting x-unknown")
    one_line_error(run_cli(stack, "sync", "x-unknown"), 1, "sync: no meeting x-unknown")


def test_cli_runner_in_process_uses_the_same_settings(
    stack: Stack, client: StackClient, stack_environ: None
) -> None:
    end = ms(datetime.now(UTC) + 4 * M)
    meeting_id = webhook(client, "cli-runner", end - 30 * M, end, expected_participants=[TEACHER])
    runner = CliRunner()
    shown = runner.invoke(cli, ["show", "--json", meeting_id])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["meeting"]["meeting_id"] == meeting_id
    unknown = runner.invoke(cli, ["sync", "x-nothing"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "sync: no meeting x-nothing\n"


# ------------------------------------------------------------------------------------------------
# export


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_name(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def test_export_rows_equal_the_stored_attendance_and_months_follow_tz(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    now = datetime.now(UTC)
    boundary = month_start(now)
    if now - boundary < timedelta(hours=2):  # meetings must have ended already
        boundary = month_start(boundary - timedelta(days=1))
    before = boundary - 30 * M  # previous month in UTC, this month in Berlin (+01/+02)
    after = boundary + 30 * M  # this month in UTC, previous month in New York (-04/-05)
    early = webhook_with_class(client, "cli-exp-early", before, "conference-early")
    late = webhook_with_class(client, "cli-exp-late", after, "conference-late", external_id="x1")
    for meeting_id in (early, late):
        until_final(store, meeting_id)
    merged = merged_meeting(store, boundary + 45 * M)

    previous = month_name(boundary - timedelta(days=1))
    current = month_name(boundary)

    utc_current = run_cli(stack, "export", "--month", current)
    assert utc_current.returncode == 0, utc_current.stderr
    rows = list(csv.DictReader(io.StringIO(utc_current.stdout)))
    assert utc_current.stdout.splitlines()[0] == ",".join(FIELDS)
    assert rows == expected_rows(store, [late], as_csv=True)
    assert merged not in utc_current.stdout
    assert "1 meeting(s), 2 row(s)" in utc_current.stderr

    berlin = run_cli(
        stack, "export", "--month", current, "--tz", "Europe/Berlin", "--format", "json"
    )
    assert berlin.returncode == 0, berlin.stderr
    assert json.loads(berlin.stdout) == expected_rows(store, [early, late], as_csv=False)

    utc_previous = run_cli(stack, "export", "--month", previous, "--format", "json")
    assert json.loads(utc_previous.stdout) == expected_rows(store, [early], as_csv=False)

    new_york = run_cli(
        stack, "export", "--month", previous, "--tz", "America/New_York", "--format", "json"
    )
    assert json.loads(new_york.stdout) == expected_rows(store, [early, late], as_csv=False)

    empty = run_cli(stack, "export", "--month", "2020-01", "--format", "json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []


def webhook_with_class(
    client: StackClient, code: str, end: datetime, conference_id: str, **extra: Any
) -> str:
    start = end - 45 * M
    add_class(client, code, start, end, conference_id)
    return webhook(client, code, start, end, expected_participants=[TEACHER], **extra)


def merged_meeting(store: FirestoreStore, end: datetime) -> str:
    record = MeetingRecord(
        meeting_id="b-merged-for-export",
        source="backfill",
        meeting_code="cli-exp-merged",
        ended_at=end,
        started_at=end - 45 * M,
        external_id=None,
        window_start=end - M * 60,
        window_end=end + M * 60,
        deadline=end + timedelta(days=1),
        status=Status.MERGED,
        merged_into="somewhere",
    )
    assert store.create(record)
    stored = store.read(record.meeting_id)
    assert stored is not None
    participant = estimated_record(TEACHER, meeting=record, revision=0, status=Status.MERGED)
    landed = store.commit(
        MeetingCommit(meeting=record, expected=stored.version, upserts=[participant])
    )
    assert landed is not None
    return record.meeting_id


def expected_rows(
    store: FirestoreStore, meeting_ids: list[str], *, as_csv: bool
) -> list[dict[str, Any]]:
    """The rows, built straight from what Firestore holds (meeting order is by ended_at)."""
    rows: list[dict[str, Any]] = []
    for meeting_id in meeting_ids:
        meeting = store.get(meeting_id)
        assert meeting is not None
        documents = sorted(store.participants(meeting_id), key=lambda d: d["participant_key"])
        assert documents
        for document in documents:
            row: dict[str, Any] = {
                "meeting_id": meeting_id,
                "meeting_code": meeting.meeting_code,
                "external_id": meeting.external_id,
                "ended_at": rfc3339(meeting.ended_at),
                "status": str(meeting.status),
                "participant_key": document["participant_key"],
                "email": document["email"],
                "display_name": document["display_name"],
                "attended_seconds": document["attended_seconds"],
                "session_count": document["session_count"],
                "estimated": document["estimated"],
                "absent": document["absent"],
                "revision": document["revision"],
                "attendance_source": meeting.attendance_source,
                "preliminary": document["preliminary"],
            }
            if as_csv:
                row = {k: csv_text(v) for k, v in row.items()}
            rows.append(row)
    return rows


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------------------------------------
# bad arguments and settings


@pytest.mark.parametrize(
    ("args", "status", "prefix"),
    [
        (["export", "--month", "2026-13"], 2, "export: --month has no month 13"),
        (["export", "--month", "2026-01", "--tz", "Nowhere/Land"], 2, "export: --tz must be"),
        (["export", "--month", "2026-01", "--format", "xml"], 2, "export: Invalid value"),
        (
            ["sync", "--code", "abc!defg", "--ended-at", "2026-11-01T10:00:00Z"],
            2,
            "sync: --code may",
        ),
        (
            ["sync", "--code", "abc-defg-hij", "--ended-at", "2026-11-01T10:00:00"],
            2,
            "sync: --ended-at must include a UTC offset",
        ),
        (
            ["sync", "x-1", "--code", "abc-defg-hij", "--ended-at", "2026-11-01T10:00:00Z"],
            2,
            "sync: give MEETING_ID or --code, not both",
        ),
        (["sync", "x-1", "--ended-at", "2026-11-01T10:00:00Z"], 2, "sync: --ended-at: only with"),
        (["sync", "--code", "abc-defg-hij"], 2, "sync: --code needs --ended-at"),
        (["sync"], 2, "sync: give MEETING_ID"),
        (["show", "no/such"], 2, "show: MEETING_ID must be"),
        (["backfill", "--since", "2026-11-01T10:00:00"], 2, "backfill: --since must include"),
        (["backfill", "--since", "2025-01-01T00:00:00Z"], 2, "backfill: since is more than 180"),
        (["backfill"], 2, "backfill: Missing option '--since'"),
        (["show"], 2, "show: Missing argument 'MEETING_ID'"),
        (["nope"], 2, "python -m functions: No such command 'nope'"),
    ],
)
def test_bad_arguments_are_one_line_with_the_right_status(
    stack: Stack, args: list[str], status: int, prefix: str
) -> None:
    one_line_error(run_cli(stack, *args), status, prefix)


def test_a_bad_expected_key_and_a_start_after_the_end_are_refused(stack: Stack) -> None:
    end = rfc3339(ms(datetime.now(UTC) - timedelta(hours=1)))
    base = ["sync", "--code", "abc-defg-hij", "--ended-at", end]
    error = one_line_error(
        run_cli(stack, *base, "--expect", TEACHER, "--expect", "not a key"), 2, "sync: --expect #2"
    )
    assert "email" in error
    start = rfc3339(ms(datetime.now(UTC)))
    one_line_error(
        run_cli(stack, *base, "--started-at", start),
        2,
        "sync: --started-at must not be after --ended-at",
    )


EVERY_PROBLEM = ("GOOGLE_CLOUD_PROJECT", "COLLECT_URL", "SETTLE_S")


@pytest.mark.parametrize(
    ("command", "named"),
    [
        # Reading commands read the project alone: what they never use is never their problem.
        (["show", "x-1"], ("GOOGLE_CLOUD_PROJECT",)),
        (["export", "--month", "2026-01"], ("GOOGLE_CLOUD_PROJECT",)),
        (["sync", "x-1"], EVERY_PROBLEM),
        (["backfill", "--since", rfc3339(datetime.now(UTC) - timedelta(days=1))], EVERY_PROBLEM),
    ],
)
def test_missing_settings_are_one_line_naming_every_problem(
    stack: Stack, command: list[str], named: tuple[str, ...]
) -> None:
    removed = {"GOOGLE_CLOUD_PROJECT", "COLLECT_URL"}
    env = {k: v for k, v in {**os.environ, **stack.env}.items() if k not in removed}
    env["SETTLE_S"] = "soon"
    error = one_line_error(
        run_cli(stack, *command, env=env), 1, f"{command[0]}: invalid configuration: "
    )
    for name in EVERY_PROBLEM:
        assert (name in error) is (name in named), (name, error)


# ------------------------------------------------------------------------------------------------
# backfill


def test_backfill_creates_the_unannounced_meeting_and_prints_a_summary(
    stack: Stack, client: StackClient, store: FirestoreStore
) -> None:
    end = ms(datetime.now(UTC) - timedelta(hours=5))
    start = end - 45 * M
    add_class(client, "bkf-illc-lii", start, end, "conference-cli")
    since = rfc3339(end - timedelta(hours=2))
    result = run_cli(stack, "backfill", "--since", since)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for label in (
        "conferences seen",
        "meetings created",
        "meetings re-polled",
        "chains re-enqueued",
    ):
        assert label in result.stdout
    assert re.search(r"meetings created\s+│\s+1", result.stdout), result.stdout
    (created,) = store.with_code("bkf-illc-lii", ended=ALL_TIME)
    assert created.source == "backfill"
    assert until_final(store, created.meeting_id).participant_count == 2
    again = run_cli(stack, "backfill", "--since", since)
    assert re.search(r"meetings created\s+│\s+0", again.stdout), again.stdout
