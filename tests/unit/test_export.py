"""The billing export's pure side (docs/cli.md): month bounds in a zone, rows, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from functions.cli import cli
from functions.errors import InvalidInput
from functions.export import month_bounds, write_rows
from functions.model import MeetingRecord
from functions.schedule import Status
from functions.views import EXPORT_FIELDS as FIELDS
from functions.views import export_rows


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize(
    ("month", "tz", "start", "end"),
    [
        ("2026-01", "UTC", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        ("2026-01", "Europe/Berlin", "2025-12-31T23:00:00Z", "2026-01-31T23:00:00Z"),
        # DST starts on 29 March in Berlin: the month begins at +01:00 and ends at +02:00.
        ("2026-03", "Europe/Berlin", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z"),
        # DST ends on 25 October: the month begins at +02:00 and ends at +01:00.
        ("2026-10", "Europe/Berlin", "2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z"),
        ("2026-03", "America/New_York", "2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z"),
        ("2026-12", "UTC", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2026-02", "Asia/Kolkata", "2026-01-31T18:30:00Z", "2026-02-28T18:30:00Z"),
        ("2028-02", "UTC", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
        ("2026-04", "Australia/Sydney", "2026-03-31T13:00:00Z", "2026-04-30T14:00:00Z"),
    ],
)
def test_month_bounds_are_local_midnights_in_utc(month: str, tz: str, start: str, end: str) -> None:
    assert month_bounds(month, tz) == (utc(start), utc(end))


@pytest.mark.parametrize(
    ("moment", "tz", "month"),
    [
        ("2026-01-31T23:30:00Z", "UTC", "2026-01"),
        ("2026-01-31T23:30:00Z", "Europe/Berlin", "2026-02"),
        ("2026-01-31T22:59:59.999Z", "Europe/Berlin", "2026-01"),
        ("2026-01-31T23:00:00Z", "Europe/Berlin", "2026-02"),
        ("2026-03-01T04:59:59Z", "America/New_York", "2026-02"),
        ("2026-03-01T05:00:00Z", "America/New_York", "2026-03"),
    ],
)
def test_a_moment_falls_in_exactly_one_month_of_its_zone(moment: str, tz: str, month: str) -> None:
    at = utc(moment)
    year = int(month[:4])
    months = [f"{y}-{m:02d}" for y in (year - 1, year, year + 1) for m in range(1, 13)]
    holding = [
        name for name in months if month_bounds(name, tz)[0] <= at < month_bounds(name, tz)[1]
    ]
    assert holding == [month]


@pytest.mark.parametrize(
    "tz", ["UTC", "Europe/Berlin", "America/Santiago", "America/Havana", "Pacific/Apia"]
)
def test_consecutive_months_partition_time(tz: str) -> None:
    # Santiago and Havana move their clocks at midnight; Apia skipped a whole day (2011-12-30).
    for year in (2011, 2026):
        previous_end: datetime | None = None
        for number in range(1, 13):
            start, end = month_bounds(f"{year}-{number:02d}", tz)
            assert start < end
            assert end - start < timedelta(days=32)
            if previous_end is not None:
                assert start == previous_end
            previous_end = end


@pytest.mark.parametrize(
    "month", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "", "2026-01-01", "0000-01"]
)
def test_invalid_months_are_refused(month: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        month_bounds(month, "UTC")
    assert caught.value.field == "month"
    assert "--month" in caught.value.message


@pytest.mark.parametrize("tz", ["Nope/Where", "Europe", "", "../etc/passwd", "/etc/localtime"])
def test_invalid_zones_are_refused(tz: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        month_bounds("2026-01", tz)
    assert caught.value.field == "tz"
    assert "--tz" in caught.value.message


def meeting(
    meeting_id: str,
    ended_at: str,
    *,
    status: Status = Status.COMPLETE,
    external_id: str | None = None,
    revision: int = 1,
) -> MeetingRecord:
    end = utc(ended_at)
    return MeetingRecord(
        meeting_id=meeting_id,
        source="webhook",
        meeting_code="abc-defg-hij",
        ended_at=end,
        started_at=end - timedelta(minutes=45),
        external_id=external_id,
        window_start=end - timedelta(hours=1),
        window_end=end + timedelta(hours=1),
        deadline=end + timedelta(days=1),
        status=status,
        revision=revision,
    )


def document(key: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "participant_key": key,
        "email": key if "@" in key else None,
        "display_name": key.split("@")[0].title(),
        "attended_seconds": 2700,
        "session_count": 1,
        "estimated": False,
        "absent": False,
        "revision": 1,
        "first_join": utc("2026-01-15T10:00:00Z"),
        "sessions": [{"device_type": "web"}],
    }
    base.update(fields)
    return base


def test_rows_one_per_participant_sorted_merged_left_out() -> None:
    meetings = [
        meeting("m-b", "2026-01-20T10:00:00Z", external_id="session-2", revision=3),
        meeting("m-a", "2026-01-20T10:00:00Z"),
        meeting("m-0", "2026-01-05T09:00:00.250Z", status=Status.COLLECTING, revision=0),
        meeting("m-merged", "2026-01-02T09:00:00Z", status=Status.MERGED),
    ]
    participants = {
        "m-b": [
            document("zed@school.example", revision=3),
            document("amy@school.example", revision=2),
            document(
                "phone:+15550100",
                display_name=None,
                attended_seconds=0,
                session_count=0,
                absent=True,
                revision=3,
            ),
        ],
        "m-a": [document("bob@school.example")],
        "m-0": [document("eve@school.example", estimated=True, session_count=0, revision=0)],
        "m-merged": [document("amy@school.example")],
    }
    rows = export_rows(meetings, participants)
    assert [(r["meeting_id"], r["participant_key"]) for r in rows] == [
        ("m-0", "eve@school.example"),
        ("m-a", "bob@school.example"),
        ("m-b", "amy@school.example"),
        ("m-b", "phone:+15550100"),
        ("m-b", "zed@school.example"),
    ]
    assert all(tuple(row) == FIELDS for row in rows)
    assert rows[0] == {
        "meeting_id": "m-0",
        "meeting_code": "abc-defg-hij",
        "external_id": None,
        "ended_at": "2026-01-05T09:00:00.250Z",
        "status": "collecting",
        "participant_key": "eve@school.example",
        "email": "eve@school.example",
        "display_name": "Eve",
        "attended_seconds": 2700,
        "session_count": 0,
        "estimated": True,
        "absent": False,
        "revision": 0,
        "attendance_source": "estimated",
        "preliminary": False,
    }
    absent = rows[3]
    assert (absent["email"], absent["display_name"], absent["absent"]) == (None, None, True)
    assert (absent["external_id"], absent["revision"]) == ("session-2", 3)
    assert rows[2]["revision"] == 2  # the participant's own revision, as billing reads it


def test_a_meeting_without_participants_has_no_rows() -> None:
    assert export_rows([meeting("m-a", "2026-01-20T10:00:00Z")], {}) == []


SAMPLE = [
    {
        "meeting_id": "m-a",
        "meeting_code": "abc-defg-hij",
        "external_id": None,
        "ended_at": "2026-01-20T10:00:00.000Z",
        "status": "complete",
        "participant_key": "phone:+15550100",
        "email": None,
        "display_name": 'Dr. "Quote", Esq.',
        "attended_seconds": 61,
        "session_count": 2,
        "estimated": False,
        "absent": True,
        "revision": 4,
        "attendance_source": "reports",
        "preliminary": False,
    }
]


def test_csv_has_a_header_booleans_as_words_and_null_as_empty() -> None:
    out = io.StringIO()
    write_rows(SAMPLE, out, fmt="csv")
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(FIELDS)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == [
        "m-a",
        "abc-defg-hij",
        "",
        "2026-01-20T10:00:00.000Z",
        "complete",
        "phone:+15550100",
        "",
        'Dr. "Quote", Esq.',
        "61",
        "2",
        "false",
        "true",
        "4",
        "reports",
        "false",
    ]
    assert len(parsed) == 2


def test_csv_of_no_rows_is_the_header_alone() -> None:
    out = io.StringIO()
    write_rows([], out, fmt="csv")
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [list(FIELDS)]


def test_json_is_one_array_with_json_types() -> None:
    out = io.StringIO()
    write_rows(SAMPLE, out, fmt="json")
    assert json.loads(out.getvalue()) == SAMPLE
    assert list(json.loads(out.getvalue())[0]) == list(FIELDS)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--month", "2026-13"], "export: --month has no month 13"),
        (["--month", "january"], "export: --month must be YYYY-MM"),
        (["--month", "2026-01", "--tz", "Mars/Olympus"], "export: --tz must be an IANA time zone"),
        (["--month", "2026-01", "--format", "xml"], "export: Invalid value for '--format'"),
        ([], "export: Missing option '--month'"),
    ],
)
def test_cli_bad_arguments_are_one_line_and_exit_2_before_any_setting_is_read(
    args: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No settings at all: a bad argument is reported as such, not as missing configuration.
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(fragment)
    assert "Traceback" not in result.stderr


def test_cli_unexpected_failure_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> None:
        raise RuntimeError("store unreachable:\n  connection refused")

    monkeypatch.setattr("functions.cli.operator_store", unreachable)
    result = CliRunner().invoke(cli, ["export", "--month", "2026-01"])
    assert result.exit_code == 1
    assert result.stderr == (
        "export: failed: RuntimeError: store unreachable: connection refused\n"
    )
    assert result.stdout == ""
