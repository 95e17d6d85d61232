"""A small client of a running local stack (what ``.local/stack.env`` describes).

Used by the demo and the end-to-end tests: signs webhooks the Standard Webhooks way, feeds the fake
Reports API, reads meetings back through ``GET /meetings/{id}`` and flips the emulators' switches.
Every URL it touches is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from functions.signatures import sign_webhook

OPERATOR = (
    "operator@local.test"  # a principal of the stack's API_PRINCIPALS (README "The local stack")
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass
class StackClient:
    env: Mapping[str, str]
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("INGEST_URL", "REPORTS_API_ENDPOINT", "TASKS_EMULATOR_CONTROL_URL"):
            if not self.env.get(name, "").startswith("http://127.0.0.1:"):
                raise ValueError(f"{name} must be a loopback URL of the local stack")
        self._session = requests.Session()

    @property
    def secret(self) -> str:
        return self.env["WEBHOOK_SECRET"].split(",")[0]

    def signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        webhook_id: str | None = None,
        timestamp: datetime | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Answer:
        headers = sign_webhook(
            secret=self.secret,
            webhook_id=webhook_id or f"msg_{uuid.uuid4().hex}",
            timestamp=timestamp or datetime.now(UTC),
            body=body,
        )
        if body:
            headers["Content-Type"] = "application/json"
        headers.update(extra_headers or {})
        url = self.env["INGEST_URL"].rstrip("/") + path
        response = self._session.request(
            method, url, data=body, headers=headers, timeout=self.timeout_s
        )
        return Answer(response.status_code, _json_or_text(response))

    def meeting_ended(self, payload: Mapping[str, Any], *, webhook_id: str | None = None) -> Answer:
        body = json.dumps(payload).encode()
        return self.signed("POST", "/", body, webhook_id=webhook_id)

    # The private api, with ID tokens from the stack's token mint (docs/api.md "api", §6).

    def mint(self, *, audience: str, email: str = OPERATOR) -> str:
        """An ID token for ``email`` and ``audience``, as Google would issue it."""
        answer = self._post(self.env["TOKEN_MINT_URL"], {"audience": audience, "email": email})
        token: str = answer["id_token"]
        return token

    def call_api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | bytes | None = None,
        *,
        email: str | None = OPERATOR,
        token: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """``method path`` on the api, authenticated as ``email`` (None: no token at all)."""
        url = self.env["API_URL"].rstrip("/") + path
        headers: dict[str, str] = {}
        if token is None and email is not None:
            token = self.mint(audience=self.env["API_URL"], email=email)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if isinstance(body, Mapping) else (body or b"")
        if data:
            headers["Content-Type"] = "application/json"
        headers.update(extra_headers or {})
        response = self._session.request(
            method, url, data=data, headers=headers, timeout=self.timeout_s
        )
        return Answer(response.status_code, _json_or_text(response))

    def meeting(self, meeting_id: str) -> Answer:
        return self.call_api("GET", f"/meetings/{meeting_id}")

    def sync(self, meeting_id: str) -> Answer:
        return self.call_api("POST", f"/meetings/{meeting_id}/sync")

    def declare_and_sync(self, payload: Mapping[str, Any]) -> Answer:
        return self.call_api("POST", "/meetings/sync", payload)

    def erase(self, participant_key: str) -> Answer:
        return self.call_api("POST", "/erasures", {"participant_key": participant_key})

    def trigger_backfill(self, body: Mapping[str, Any] | None = None) -> str:
        """Call the backfill function the way Cloud Scheduler does: an HTTP request carrying an
        OIDC token for the scheduler's identity. The Tasks emulator is the local token signer, so
        the request goes out as a one-off task; returns the task's name (see ``dispatches``)."""
        from google.cloud import tasks_v2

        from functions.adapters.cloud_tasks import tasks_client
        from functions.config import Settings

        settings = Settings.from_env(self.env, role="backfill")
        assert settings.backfill_url is not None
        identity = settings.scheduler_service_account or settings.tasks_service_account
        task = tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=settings.backfill_url,
                http_method=tasks_v2.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=json.dumps(body or {}).encode(),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=identity, audience=settings.backfill_url
                ),
            ),
            dispatch_deadline={"seconds": 600},
        )
        created = tasks_client(settings).create_task(parent=settings.queue_path, task=task)
        name: str = created.name
        return name

    # The fake Reports API and the Cloud Tasks emulator's controls.

    def add_activities(self, activities: list[dict[str, Any]], visible_after_s: float = 0) -> None:
        self._post(
            self.env["REPORTS_API_ENDPOINT"] + "/_fake/activities",
            {"activities": activities, "visible_after_s": visible_after_s},
        )

    def add_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        retry_after_s: float | None = None,
        delay_s: float | None = None,
        after_pages: int | None = None,
    ) -> None:
        """Queue a fault in the fake Reports API (see ``local.fake_reports``: ``delay_s`` is for
        ``slow``; ``after_pages`` lets that many pages of a listing through first)."""
        fault: dict[str, Any] = {"kind": kind, "count": count}
        if retry_after_s is not None:
            fault["retry_after_s"] = retry_after_s
        if delay_s is not None:
            fault["delay_s"] = delay_s
        if after_pages is not None:
            fault["after_pages"] = after_pages
        self._post(self.env["REPORTS_API_ENDPOINT"] + "/_fake/faults", fault)

    def clear_faults(self) -> None:
        response = self._session.delete(
            self.env["REPORTS_API_ENDPOINT"] + "/_fake/faults", timeout=self.timeout_s
        )
        response.raise_for_status()

    def reports_config(self, *, max_page_size: int | None = None) -> None:
        """Cap the fake Reports API's pages at ``max_page_size`` items (None: Google's 1,000)."""
        self._post(
            self.env["REPORTS_API_ENDPOINT"] + "/_fake/config", {"max_page_size": max_page_size}
        )

    def reports_requests(self) -> list[dict[str, Any]]:
        response = self._session.get(
            self.env["REPORTS_API_ENDPOINT"] + "/_fake/requests", timeout=self.timeout_s
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def dispatches(self) -> list[dict[str, Any]]:
        response = self._session.get(
            self.env["TASKS_EMULATOR_CONTROL_URL"] + "/_emulator/dispatches", timeout=self.timeout_s
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def tasks_config(self, **switches: bool) -> None:
        self._post(self.env["TASKS_EMULATOR_CONTROL_URL"] + "/_emulator/config", switches)

    # The fake Meet REST + Workspace Events + Directory API (README "The local stack").

    def add_meet(self, **resources: Any) -> None:
        """Add or replace ``spaces``, ``conference_records``, ``participants``,
        ``participant_sessions``, ``users``, ``groups`` (Google's JSON shapes)."""
        self._post(self.env["MEET_API_ENDPOINT"] + "_fake/meet", resources)

    def publish_meet_event(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        subscription: str = "subscriptions/none",
        event_id: str | None = None,
        **extra: Any,
    ) -> int:
        """Publish a CloudEvent as Pub/Sub push delivers it to ``meet_events``; its status."""
        body: dict[str, Any] = {
            "type": event_type,
            "data": dict(data),
            "subscription": subscription,
        }
        if event_id is not None:
            body["id"] = event_id
        body.update(extra)
        answer = self._post(self.env["MEET_API_ENDPOINT"] + "_fake/meet/events", body)
        return int(answer["status"])

    def meet_subscriptions(self) -> list[dict[str, Any]]:
        response = self._session.get(
            self.env["MEET_API_ENDPOINT"] + "_fake/meet/subscriptions", timeout=self.timeout_s
        )
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["subscriptions"]
        return found

    def meet_control(self, path: str, payload: Mapping[str, Any]) -> Any:
        """Another control of the fake (``config``, ``faults``, ``subscriptions/suspend`` …)."""
        return self._post(self.env["MEET_API_ENDPOINT"] + "_fake/meet/" + path, payload)

    @property
    def calendar_url(self) -> str:
        """The fake Calendar's root (its API is under ``calendar/v3/``)."""
        return self.env["CALENDAR_API_ENDPOINT"].removesuffix("calendar/v3/")

    def put_calendar_events(self, calendar_id: str, events: list[dict[str, Any]]) -> Any:
        """Add, replace or cancel events; the fake pushes ``exists`` to the open channels."""
        return self._post(
            self.calendar_url + "_fake/calendar/events",
            {"calendar_id": calendar_id, "events": events},
        )

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m functions ARGS`` against this stack (its settings as the environment)."""
        return subprocess.run(
            [sys.executable, "-m", "functions", *args],
            env={**os.environ, **self.env},
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def drain_tasks(self, *, timeout_s: float = 60.0) -> int:
        """Wait for the task dispatches already sent to answer; returns those still in flight.

        Pause the queue first, or new dispatches keep it from ever being idle.
        """
        response = self._session.post(
            self.env["TASKS_EMULATOR_CONTROL_URL"] + "/_emulator/drain",
            json={"timeout_s": timeout_s},
            timeout=timeout_s + self.timeout_s,
        )
        response.raise_for_status()
        in_flight: int = response.json()["in_flight"]
        return in_flight

    def reset(self, *, drain_s: float = 60.0) -> None:
        """Empty the task queue, then the fake Google APIs (Firestore is cleared separately).

        The queue goes first and waits up to ``drain_s`` for the dispatches already sent to
        answer: a chain of the previous test still mid-request would otherwise write, or hold a
        Firestore transaction, into the next one.
        """
        response = self._session.post(
            self.env["TASKS_EMULATOR_CONTROL_URL"] + "/_emulator/reset",
            json={"drain_s": drain_s},
            timeout=drain_s + self.timeout_s,
        )
        response.raise_for_status()
        self._post(self.env["REPORTS_API_ENDPOINT"] + "/_fake/reset", {})
        self._post(self.env["MEET_API_ENDPOINT"] + "_fake/meet/reset", {})
        self._post(self.calendar_url + "_fake/calendar/reset", {})
        self.tasks_config(deliver_twice=False, run_immediately=False)

    def _post(self, url: str, payload: Mapping[str, Any]) -> Any:
        response = self._session.post(url, json=payload, timeout=self.timeout_s)
        response.raise_for_status()
        return _json_or_text(response)


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
