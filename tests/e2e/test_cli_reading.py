"""The CLI's reading commands need only the project (and, here, the emulator's host): ``show``,
``export``, ``report`` and ``subscriptions`` run as real processes with nothing else in their
environment, as a billing reader would run them against production; the commands that write name
exactly what they miss. ``list`` has its own tests (test_cli_list.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.schedule import Status
from local.firestore_emulator import FirestoreEmulator
from tests.e2e.test_cli_list import minimal_env
from tests.integration.test_firestore_store import meeting, settings_for

ROOT = Path(__file__).resolve().parents[2]
ENDED = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(240)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def stored(firestore_db: FirestoreEmulator) -> str:
    store = FirestoreStore(firestore_client(settings_for(firestore_db)))
    record = meeting(
        "c-reading1",
        ended_at=ENDED,
        started_at=ENDED - timedelta(minutes=45),
        status=Status.COMPLETE,
    )
    assert store.create(record)
    return record.meeting_id


def test_reading_commands_run_with_only_the_project_and_log_nothing_by_default(
    firestore_db: FirestoreEmulator, stored: str, tmp_path: Path
) -> None:
    env = minimal_env(firestore_db)
    shown = run_cli(env, "show", stored, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["meeting"]["meeting_id"] == stored
    assert shown.stderr == ""  # the functions' JSON log lines stay quiet without -v

    table = run_cli(env, "show", stored)
    assert table.returncode == 0, table.stderr
    assert stored in table.stdout

    exported = run_cli(env, "export", "--month", "2026-02", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.splitlines()[-1].startswith("export: 2026-02 in UTC is ")

    page = tmp_path / "report.html"
    reported = run_cli(env, "report", stored, "--html", str(page))
    assert reported.returncode == 0, reported.stderr
    assert stored in page.read_text(encoding="utf-8")

    listed = run_cli(env, "subscriptions", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_a_writing_command_names_the_settings_it_misses_in_one_line(
    firestore_db: FirestoreEmulator, stored: str
) -> None:
    result = run_cli(minimal_env(firestore_db), "sync", stored)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("sync: ")
    for name in ("TASKS_LOCATION", "TASKS_QUEUE", "COLLECT_URL", "TASKS_SERVICE_ACCOUNT"):
        assert name in line, line


def test_a_reading_command_without_a_project_says_so_in_one_line(
    firestore_db: FirestoreEmulator,
) -> None:
    env = minimal_env(firestore_db)
    del env["GOOGLE_CLOUD_PROJECT"]
    result = run_cli(env, "show", "c-reading1")
    assert result.returncode == 1
    assert result.stderr == "show: invalid configuration: GOOGLE_CLOUD_PROJECT is required\n"
