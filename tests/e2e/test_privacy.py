"""Privacy on the whole local stack (docs/rules.md "Privacy"): an erased participant never comes
back, whatever arrives later, and the stack's logs hold no email, participant key, IP address,
token or request body of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from functions.adapters.firestore_store import firestore_client
from functions.config import Settings
from local.client import StackClient
from local.simulate import Stay, activities_for, call_ended, rfc3339
from local.stack import Stack
from tests.e2e.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
M = timedelta(minutes=1)

pytestmark = pytest.mark.timeout(240)


def meeting_code(unique: str) -> str:
    """A meeting code of this test's own (letters only, as Meet's are)."""
    letters = "".join(chr(ord("a") + int(c, 16)) for c in unique)
    return f"{letters[:3]}-{letters[3:7]}-{letters[5:8]}"


def everything_stored(stack: Stack) -> str:
    """Every document in Firestore, as one text."""
    client: firestore.Client = firestore_client(Settings.from_env(stack.env))

    def walk(collection: Any) -> list[Any]:
        found = []
        for document in collection.stream():
            found.append({"id": document.id, "data": document.to_dict()})
            for child in document.reference.collections():
                found.extend(walk(child))
        return found

    held = [walk(collection) for collection in client.collections()]
    return json.dumps(held, default=str, sort_keys=True)


def a_class(client: StackClient, code: str, people: dict[str, str], end: datetime) -> None:
    """Each person (email → IP address) in the class from 40 minutes before ``end``."""
    client.add_activities(
        [
            call_ended(
                meeting_code=code,
                conference_id=f"conference-{code}",
                leave=end - M * index,
                duration_s=40 * 60,
                identifier=email,
                endpoint_id=f"spaces/x/devices/{index}",
                ip_address=address,
            )
            for index, (email, address) in enumerate(people.items())
        ]
    )


def until_complete(client: StackClient, meeting_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view = client.meeting(meeting_id)
        assert view.status == 200, view
        return view.body if view.body["meeting"]["status"] == "complete" else None

    result: dict[str, Any] = wait_for(check, timeout_s=90, what="complete")
    return result


def test_an_erased_participant_never_comes_back(stack: Stack, client: StackClient) -> None:
    unique = uuid.uuid4().hex[:8]
    teacher, student = f"teacher-{unique}@school.example", f"kid-{unique}@school.example"
    code = meeting_code(unique)
    end = datetime.now(UTC).replace(microsecond=0)
    a_class(client, code, {teacher: "198.51.100.10", student: "198.51.100.11"}, end)
    declaration = {
        "type": "meeting.ended",
        "meeting_code": code,
        "started_at": rfc3339(end - 45 * M),
        "ended_at": rfc3339(end),
        "expected_participants": [teacher, student],
    }
    answer = client.meeting_ended(declaration, webhook_id=f"msg_{unique}")
    meeting_id = answer.body["meeting_id"]
    view = until_complete(client, meeting_id)
    assert {p["participant_key"] for p in view["participants"]} == {teacher, student}

    erased = client.erase(student.upper())  # keys are normalised as declared ones are
    assert (erased.status, erased.body) == (200, {"meetings_changed": 1}), erased
    assert student not in everything_stored(stack)

    # Everything that could bring the student back: the same webhook replayed, the class sent
    # again, a manual sync (Reports still has the sessions), a manual declaration, a backfill.
    client.meeting_ended(declaration, webhook_id=f"msg_{unique}")
    client.meeting_ended(declaration)
    synced = client.sync(meeting_id)
    assert synced.status == 200, synced
    assert student not in json.dumps(synced.body)
    manual = client.declare_and_sync({k: v for k, v in declaration.items() if k != "type"})
    assert manual.status == 200, manual
    task = client.trigger_backfill(
        {"since": rfc3339(end - timedelta(hours=2)), "until": rfc3339(end + M)}
    )
    wait_for(
        lambda: any(d["task"] == task and d["status"] == 200 for d in client.dispatches()),
        what="the backfill run",
    )
    view = client.meeting(meeting_id).body
    assert {p["participant_key"] for p in view["participants"]} == {teacher}
    assert view["meeting"]["expected_participants"] == [teacher]
    assert student not in everything_stored(stack)

    # Again: nothing changes the second time.
    assert client.erase(student).body == {"meetings_changed": 0}


def test_the_cli_erases_too(stack: Stack, client: StackClient) -> None:
    unique = uuid.uuid4().hex[:8]
    student = f"cli-kid-{unique}@school.example"
    end = datetime.now(UTC).replace(microsecond=0)
    answer = client.meeting_ended(
        {
            "type": "meeting.ended",
            "meeting_code": meeting_code(unique),
            "ended_at": rfc3339(end),
            "expected_participants": [student],
        }
    )
    assert answer.status == 202, answer
    result = subprocess.run(
        [sys.executable, "-m", "functions", "erase", student],
        env={**os.environ, **stack.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 meeting(s) changed" in result.stdout
    assert student not in everything_stored(stack)
    without_key = {k: v for k, v in stack.env.items() if k != "ERASURE_KEY"}
    refused = subprocess.run(
        [sys.executable, "-m", "functions", "erase", student],
        env={**os.environ, **without_key},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "ERASURE_KEY is required" in refused.stderr


def test_the_stack_log_of_a_run_holds_no_personal_data(stack: Stack, client: StackClient) -> None:
    unique = uuid.uuid4().hex[:8]
    people = {
        f"log-teacher-{unique}@school.example": f"203.0.113.{int(unique[:2], 16) % 200 + 20}",
        f"log-kid-{unique}@school.example": f"2001:db8::{unique[:4]}",
    }
    phone = f"phone:+4420{int(unique, 16) % 10**8:08d}"
    code = meeting_code(unique)
    end = datetime.now(UTC).replace(microsecond=0)
    a_class(client, code, people, end)
    client.add_activities(
        activities_for(
            [Stay(f"anon-{unique}", end - 30 * M, end, identifier_type=None, display_name=None)],
            meeting_code=code,
            conference_id=f"conference-{code}",
        )
    )
    invalid = f"not-an-email-{unique}@"
    body = {
        "type": "meeting.ended",
        "meeting_code": code,
        "started_at": rfc3339(end - 45 * M),
        "ended_at": rfc3339(end),
        "expected_participants": [*people, phone],
    }
    refused = client.meeting_ended({**body, "expected_participants": [invalid]})
    assert refused.status == 400
    meeting_id = client.meeting_ended(body).body["meeting_id"]
    until_complete(client, meeting_id)
    token = client.mint(audience=stack.env["API_URL"])
    assert client.call_api("GET", f"/meetings/{meeting_id}", token=token).status == 200
    assert client.call_api("GET", f"/meetings/{meeting_id}", email="intruder@school.example")
    assert client.sync(meeting_id).status == 200
    assert client.erase(next(iter(people))).status == 200

    output = stack.output()
    forbidden = [
        *people,
        *people.values(),
        phone,
        invalid,
        f"anon-{unique}",
        token,
        stack.env["WEBHOOK_SECRET"],
        stack.env["ERASURE_KEY"],
        json.dumps(body)[:60],
    ]
    leaks = {
        (child, value) for child, text in output.items() for value in forbidden if value in text
    }
    assert leaks == set()
    # The run did log: each function wrote lines naming the meeting.
    assert meeting_id in output["ingest"]
    assert meeting_id in output["collect"]
    assert meeting_id in output["api"]
