"""``main.py`` through functions-framework itself: ``create_app(target, source).test_client()``.

Each entry point gets Flask's request as Cloud Functions would hand it over, on in-memory ports
(the runtime is replaced, not the framework): what is tested is the Flask adaptation — headers,
raw body bytes, the size limit, status and JSON answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from functions import app
from functions.config import Settings
from functions.limits import MAX_BODY_BYTES
from functions.ports import Deps
from functions.signatures import sign_webhook
from local.simulate import Stay, activities_for
from tests.fakes import FakeIdTokens, ManualClock, MemoryQueue, MemoryStore, ScriptedReports

MAIN = Path(__file__).resolve().parents[2] / "main.py"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
COLLECT_URL = "http://127.0.0.1:9/collect"
BACKFILL_URL = "http://127.0.0.1:9/backfill"
TASKS_SA = "tasks@acme.iam.gserviceaccount.com"
SCHEDULER_SA = "scheduler@acme.iam.gserviceaccount.com"
API_URL = "http://127.0.0.1:9/api"
OPERATOR = "operator@acme.iam.gserviceaccount.com"
SETTINGS = replace(
    Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "acme",
            "TASKS_LOCATION": "here",
            "TASKS_QUEUE": "q",
            "COLLECT_URL": COLLECT_URL,
            "BACKFILL_URL": BACKFILL_URL,
            "TASKS_SERVICE_ACCOUNT": TASKS_SA,
            "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_SA,
            "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
            "WEBHOOK_SECRET": SECRET,
            "ERASURE_KEY": "k" * 32,
        },
        role="ingest",
    ),
    # One runtime behind every entry point here; each handler reads only its own fields.
    backfill_url=BACKFILL_URL,
    scheduler_service_account=SCHEDULER_SA,
    api_url=API_URL,
    api_principals=(OPERATOR,),
)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> app.Runtime:
    deps = Deps(
        store=MemoryStore(),
        queue=MemoryQueue(),
        reports=ScriptedReports(),
        clock=ManualClock(NOW),
    )
    current = app.Runtime(SETTINGS, deps, FakeIdTokens(COLLECT_URL, BACKFILL_URL, API_URL))
    monkeypatch.setattr(app, "runtime", lambda role: current)
    return current


def client_for(target: str) -> FlaskClient:
    flask_app = functions_framework.create_app(target=target, source=str(MAIN))  # type: ignore[no-untyped-call]
    test_client: FlaskClient = flask_app.test_client()
    return test_client


def webhook_body(**extra: Any) -> bytes:
    payload = {
        "type": "meeting.ended",
        "meeting_code": "abc-defg-hij",
        "ended_at": "2026-11-20T10:45:00Z",
        "started_at": "2026-11-20T10:00:00Z",
        **extra,
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    headers = sign_webhook(secret=SECRET, webhook_id="msg_main", timestamp=NOW, body=body)
    return {**headers, "Content-Type": "application/json"}


def test_ingest_takes_the_raw_signed_body_and_refuses_what_is_too_large(
    runtime: app.Runtime,
) -> None:
    ingest = client_for("ingest")
    body = webhook_body()
    answer = ingest.post("/", data=body, headers=signed_headers(body))
    assert (answer.status_code, answer.mimetype) == (202, "application/json")
    meeting_id = answer.get_json()["meeting_id"]
    assert runtime.deps.store.get(meeting_id) is not None

    # Header names arrive in any case; the signature is checked over the bytes as sent.
    shouted = {name.upper(): value for name, value in signed_headers(body).items()}
    again = ingest.post("/", data=body, headers=shouted)
    assert (again.status_code, again.get_json()["meeting_id"]) == (200, meeting_id)

    tampered = ingest.post("/", data=body + b" ", headers=signed_headers(body))
    assert tampered.status_code == 401

    large = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    too_large = ingest.post("/", data=large, headers=signed_headers(large))
    assert (too_large.status_code, too_large.get_json()["error"]["code"]) == (
        413,
        "payload_too_large",
    )

    # The meeting is read through the private api, with an ID token; ingest has no such route.
    assert ingest.get(f"/meetings/{meeting_id}", headers=signed_headers(b"")).status_code == 404
    api = client_for("api")
    assert api.get(f"/meetings/{meeting_id}", headers=signed_headers(b"")).status_code == 401
    view = api.get(f"/meetings/{meeting_id}", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert view.status_code == 200
    assert view.get_json()["meeting"]["meeting_id"] == meeting_id


def test_collect_polls_for_the_tasks_identity_only(runtime: app.Runtime) -> None:
    ingest = client_for("ingest")
    body = webhook_body()
    meeting_id = ingest.post("/", data=body, headers=signed_headers(body)).get_json()["meeting_id"]
    reports = runtime.deps.reports
    assert isinstance(reports, ScriptedReports)
    end = NOW - timedelta(minutes=15)
    reports.activities += activities_for(
        [Stay("kid@school.example", end - timedelta(minutes=40), end)],
        meeting_code="abc-defg-hij",
        conference_id="c",
    )
    collect = client_for("collect")
    task = json.dumps({"meeting_id": meeting_id, "attempt": 1}).encode()
    headers = {"Content-Type": "application/json", "X-CloudTasks-TaskRetryCount": "0"}

    unsigned = collect.post("/", data=task, headers=headers)
    assert unsigned.status_code == 401
    stranger = collect.post(
        "/", data=task, headers={**headers, "Authorization": f"Bearer {SCHEDULER_SA}"}
    )
    assert stranger.status_code == 403

    answer = collect.post(
        "/", data=task, headers={**headers, "Authorization": f"Bearer {TASKS_SA}"}
    )
    assert answer.status_code == 200
    assert answer.get_json() == {
        "meeting_id": meeting_id,
        "polled": True,
        "skipped": None,
        "status": "collecting",
        "revision": 1,
    }


def test_backfill_starts_a_run_for_the_scheduler(runtime: app.Runtime) -> None:
    backfill = client_for("backfill")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {SCHEDULER_SA}"}
    body = json.dumps({"since": "2026-11-20T00:00:00Z", "until": "2026-11-20T10:00:00Z"})

    answer = backfill.post("/", data=body, headers=headers)

    assert answer.status_code == 200
    assert answer.get_json()["slices"] == 2
    queue = runtime.deps.queue
    assert isinstance(queue, MemoryQueue)
    assert len(queue.slices) == 2
    wrong_method = backfill.get("/", headers=headers)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"


def test_a_405_names_the_allowed_methods_in_the_allow_header(runtime: app.Runtime) -> None:
    api = client_for("api")
    bearer = {"Authorization": f"Bearer {OPERATOR}"}
    for path, allowed in (("/meetings/x-1", "GET"), ("/meetings/x-1/sync", "POST")):
        answer = api.delete(path, headers=bearer)
        assert (answer.status_code, answer.headers["Allow"]) == (405, allowed)
        assert answer.get_json()["error"]["allowed"] == [allowed]
    assert client_for("ingest").get("/").headers["Allow"] == "POST"


def test_importing_main_takes_the_start_up_heap_out_of_the_collectors_reach() -> None:
    """A fresh interpreter freezes nothing; once main.py is imported, what start-up built is
    frozen (``functions.app.freeze_startup_heap``)."""
    probe = (
        "import gc, sys; n = gc.get_freeze_count(); import main; print(n, gc.get_freeze_count())"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=MAIN.parent,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    before, after = map(int, answer.stdout.split())
    assert before == 0
    assert after > 20_000  # the modules, the Google client libraries among them
