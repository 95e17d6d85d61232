"""``python -m functions doctor`` as a process against the whole local stack: it passes on the
stack as started, and each stand-in fault gives its own line, step and exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from local.firestore_emulator import no_metadata_env
from local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["settings", "firestore", "queue", "reports", "directory", "meet", "calendar"]

pytestmark = pytest.mark.timeout(240)


def doctor(
    stack: Stack, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions", "doctor", *args],
        env=no_metadata_env({**os.environ, **stack.env, **(env or {})}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition(" ")
        name, _, message = rest.partition(": ")
        found[name] = f"{status} {message}"
    return found


@pytest.fixture
def faults(stack: Stack) -> Iterator[None]:
    """Whatever a test leaves in the fakes' fault queues is cleared afterwards."""
    yield
    requests.delete(stack.env["REPORTS_API_ENDPOINT"] + "/_fake/faults", timeout=10)
    requests.delete(stack.env["MEET_API_ENDPOINT"] + "_fake/meet/faults", timeout=10)


def reports_fault(stack: Stack, kind: str) -> None:
    answer = requests.post(
        stack.env["REPORTS_API_ENDPOINT"] + "/_fake/faults", json={"kind": kind}, timeout=10
    )
    assert answer.status_code == 200, answer.text


def test_doctor_passes_on_the_stack(stack: Stack, faults: None) -> None:
    result = doctor(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert list(found) == ORDER
    assert all(value.startswith("ok ") for value in found.values()), found
    assert "stand-in REPORTS_API_ENDPOINT" in found["reports"]


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("not_admin", "the Reports API refused REPORTS_ADMIN_SUBJECT (401 authError"),
        ("not_authorized", "admin role the Reports privilege"),
        ("api_disabled", "gcloud services enable admin.googleapis.com --project"),
        ("insufficient_scopes", "admin.reports.audit.readonly (Admin console"),
    ],
)
def test_each_reports_fault_fails_with_its_own_step(
    stack: Stack, faults: None, kind: str, needle: str
) -> None:
    reports_fault(stack, kind)
    result = doctor(stack)
    assert result.returncode == 1, result.stdout + result.stderr
    found = lines(result)
    assert found["reports"].startswith("FAIL ")
    assert needle in found["reports"]
    # The organizer checks do not depend on the Reports API itself.
    assert found["meet"].startswith("ok ")
    assert [name for name, value in found.items() if value.startswith("FAIL")] == ["reports"]


def test_json_with_the_meet_api_disabled(stack: Stack, faults: None) -> None:
    answer = requests.post(
        stack.env["MEET_API_ENDPOINT"] + "_fake/meet/faults",
        json={"path_prefix": "/v2/", "status": 403, "reason": "accessNotConfigured"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    result = doctor(stack, "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is False
    checks = {c["name"]: c for c in data["checks"]}
    assert list(checks) == ORDER
    assert checks["meet"]["status"] == "FAIL"
    assert "403 accessNotConfigured" in checks["meet"]["message"]
    assert "gcloud services enable meet.googleapis.com" in checks["meet"]["step"]
    assert all("step" not in c for c in data["checks"] if c["status"] == "ok")


def test_a_missing_queue_and_bad_settings(stack: Stack) -> None:
    missing = lines(doctor(stack, env={"TASKS_QUEUE": "no-such-queue"}))
    assert missing["queue"].startswith("FAIL ")
    assert "gcloud tasks queues create no-such-queue" in missing["queue"]
    assert missing["reports"].startswith("ok ")

    result = doctor(stack, env={"TASKS_QUEUE": "not a queue!", "COLLECT_URL": "nowhere"})
    assert result.returncode == 1
    found = lines(result)
    assert found["settings"].startswith("FAIL ")
    assert "TASKS_QUEUE may hold only" in found["settings"]
    assert "COLLECT_URL must be an http(s) URL" in found["settings"]
    assert all(found[name].startswith("skip ") for name in ORDER[1:])
