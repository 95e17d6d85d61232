"""``python -m functions list`` as a real process on the Firestore emulator, with nothing in its
environment but ``GOOGLE_CLOUD_PROJECT``, ``FIRESTORE_EMULATOR_HOST`` and ``PATH``/``HOME``: a
reading command needs no queue, collect URL or delegation. Only Firestore is needed, so the
emulator fixture stands in for the whole stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.meeting_search import LISTED_FIELDS
from functions.model import MeetingRecord
from functions.schedule import Status
from local.firestore_emulator import FirestoreEmulator
from tests.conftest import TEST_PROJECT
from tests.integration.test_firestore_store import meeting, settings_for

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(240)


def minimal_env(emulator: FirestoreEmulator, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
    }
    return {**env, **extra}


def run_list(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions", "list", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int, says: str) -> None:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("list: "), result.stderr
    assert says in result.stderr, result.stderr
    assert result.stdout == ""


@pytest.fixture
def seeded(firestore_db: FirestoreEmulator) -> list[MeetingRecord]:
    """Five meetings of one code (two ending together), one of another code, one merged."""
    store = FirestoreStore(firestore_client(settings_for(firestore_db)))
    records = [
        meeting(
            f"c-list{n}",
            ended_at=T0 - timedelta(hours=n // 2),
            started_at=T0 - timedelta(hours=n // 2, minutes=45),
            status=Status.COMPLETE,
            organizer_email="teacher@school.example",
            participant_count=n,
            total_attended_seconds=600 * n,
        )
        for n in range(5)
    ]
    others = [
        meeting("c-other", ended_at=T0, meeting_code="xyz-abcd-efg"),
        replace(records[0], meeting_id="c-merged", status=Status.MERGED, merged_into="c-list0"),
    ]
    for record in [*records, *others]:
        assert store.create(record)
    return records


def test_json_pages_through_every_meeting_of_a_code(
    firestore_db: FirestoreEmulator, seeded: list[MeetingRecord]
) -> None:
    env = minimal_env(firestore_db)
    expected = sorted(seeded, key=lambda m: (m.ended_at, m.meeting_id), reverse=True)
    args = ["--code", "ABC DEFG HIJ", "--from", "2026-02-01T00:00:00+01:00", "--json"]
    ids: list[str] = []
    token: str | None = None
    for _ in range(5):
        result = run_list(env, *args, "--limit", "2", *(["--page-token", token] if token else []))
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert set(body) == {"meetings", "next_page_token"}
        for listed in body["meetings"]:
            assert tuple(listed) == LISTED_FIELDS
        ids += [m["meeting_id"] for m in body["meetings"]]
        token = body["next_page_token"]
        last = result.stderr.splitlines()[-1]
        if token is None:
            assert last == f"list: {len(body['meetings'])} meeting(s)"
            break
        assert last == f"list: 2 meeting(s); more: add --page-token {token}"
    assert ids == [m.meeting_id for m in expected]
    first = json.loads(run_list(env, *args, "--limit", "1").stdout)["meetings"][0]
    assert first == {
        "meeting_id": expected[0].meeting_id,
        "meeting_code": "abc-defg-hij",
        "status": "complete",
        "started_at": "2026-02-02T07:15:00.000Z",
        "ended_at": "2026-02-02T08:00:00.000Z",
        "organizer_email": "teacher@school.example",
        "participant_count": expected[0].participant_count,
        "total_attended_seconds": expected[0].total_attended_seconds,
        "attendance_source": "estimated",
        "revision": 0,
        "source": "webhook",
        "external_id": None,
    }


def test_the_table_lists_merged_meetings_only_when_asked(
    firestore_db: FirestoreEmulator, seeded: list[MeetingRecord]
) -> None:
    env = minimal_env(firestore_db)
    table = run_list(env, "--organizer", "Teacher@School.example")
    assert table.returncode == 0, table.stderr
    assert all(m.meeting_id in table.stdout for m in seeded)
    assert "c-merged" not in table.stdout
    assert "c-other" not in table.stdout
    assert table.stderr.splitlines()[-1] == "list: 5 meeting(s)"
    merged = run_list(env, "--status", "merged", "--json")
    assert merged.returncode == 0, merged.stderr
    assert [m["meeting_id"] for m in json.loads(merged.stdout)["meetings"]] == ["c-merged"]


def test_bad_input_is_one_line_and_exit_2(firestore_db: FirestoreEmulator) -> None:
    env = minimal_env(firestore_db)
    one_line_error(run_list(env, "--page-token", "bm90LWEtdG9rZW4"), 2, "--page-token")
    one_line_error(run_list(env, "--from", "2026-02-01T00:00:00"), 2, "UTC offset")
    one_line_error(run_list(env, "--status", "finished"), 2, "--status")
    one_line_error(run_list(env, "--participant", "no key"), 2, "--participant")


def test_without_a_project_it_says_so_in_one_line(firestore_db: FirestoreEmulator) -> None:
    env = minimal_env(firestore_db)
    del env["GOOGLE_CLOUD_PROJECT"]
    one_line_error(run_list(env), 1, "GOOGLE_CLOUD_PROJECT")
