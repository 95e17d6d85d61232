"""Settings: the only reader of ``os.environ`` (CONTRACT §5).

``Settings.from_env`` validates everything at once and raises :class:`ConfigError` naming every
problem, so a misconfigured deployment fails at start with one readable message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal
from urllib.parse import urlsplit

from functions.errors import ConfigError

IpAddressMode = Literal["full", "truncated", "none"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")

#: Integer settings with their defaults and the smallest value that makes sense.
_DURATIONS: dict[str, tuple[int, int]] = {
    "FIRST_POLL_DELAY_S": (900, 1),
    "MAX_POLL_INTERVAL_S": (14400, 1),
    "COLLECT_DEADLINE_S": (86400, 1),
    "SETTLE_S": (1800, 0),
    "ABSENT_GRACE_S": (21600, 0),
    "WINDOW_BEFORE_S": (900, 0),
    "WINDOW_AFTER_S": (3600, 0),
    "BACKFILL_LOOKBACK_S": (172800, 1),
}

#: Cloud Tasks refuses a schedule_time more than 30 days ahead, and Reports keeps 180 days.
_MAX_DEADLINE_S = 30 * 86400
_MAX_LOOKBACK_S = 180 * 86400


@dataclass(frozen=True, slots=True)
class Settings:
    google_cloud_project: str
    tasks_location: str
    tasks_queue: str
    collect_url: str
    tasks_service_account: str
    reports_admin_subject: str | None
    reports_credentials: str
    webhook_secrets: tuple[str, ...]
    first_poll_delay_s: int
    max_poll_interval_s: int
    collect_deadline_s: int
    settle_s: int
    absent_grace_s: int
    window_before_s: int
    window_after_s: int
    backfill_lookback_s: int
    ip_address_mode: IpAddressMode
    firestore_emulator_host: str | None
    cloud_tasks_emulator_host: str | None
    reports_api_endpoint: str | None
    oidc_certs_url: str | None
    backfill_url: str | None = None
    scheduler_service_account: str | None = None

    @property
    def queue_path(self) -> str:
        return (
            f"projects/{self.google_cloud_project}/locations/{self.tasks_location}"
            f"/queues/{self.tasks_queue}"
        )

    @property
    def uses_key_file(self) -> bool:
        return self.reports_credentials != "keyless"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        problems: list[str] = []

        def text(name: str, *, required: bool = False) -> str | None:
            value = source.get(name, "").strip()
            if value:
                return value
            if required:
                problems.append(f"{name} is required")
            return None

        def required(name: str) -> str:
            # An empty string stands in only until the problems list stops construction.
            return text(name, required=True) or ""

        project = required("GOOGLE_CLOUD_PROJECT")
        location = required("TASKS_LOCATION")
        queue = required("TASKS_QUEUE")
        for name, value in (("TASKS_LOCATION", location), ("TASKS_QUEUE", queue)):
            if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
                problems.append(f"{name} may hold only letters, digits and hyphens (got {value!r})")

        collect_url = required("COLLECT_URL")
        if collect_url:
            _check_url("COLLECT_URL", collect_url, problems)

        service_account = required("TASKS_SERVICE_ACCOUNT")
        if service_account and not _EMAIL.match(service_account):
            problems.append(f"TASKS_SERVICE_ACCOUNT must be an email (got {service_account!r})")

        reports_endpoint = text("REPORTS_API_ENDPOINT")
        if reports_endpoint is not None:
            _check_url("REPORTS_API_ENDPOINT", reports_endpoint, problems)
        subject = text("REPORTS_ADMIN_SUBJECT", required=reports_endpoint is None)
        if subject is not None and not _EMAIL.match(subject):
            problems.append(f"REPORTS_ADMIN_SUBJECT must be an admin's email (got {subject!r})")

        credentials = source.get("REPORTS_CREDENTIALS", "").strip() or "keyless"
        if credentials != "keyless" and not credentials.startswith("{"):
            problems.append(
                "REPORTS_CREDENTIALS must be 'keyless' or a service-account key as JSON"
            )

        secrets = _webhook_secrets(source.get("WEBHOOK_SECRET", ""), problems)

        durations: dict[str, int] = {}
        for name, (default, minimum) in _DURATIONS.items():
            raw = source.get(name, "").strip()
            if not raw:
                durations[name] = default
                continue
            try:
                seconds = int(raw)
            except ValueError:
                problems.append(f"{name} must be a whole number of seconds (got {raw!r})")
                continue
            if seconds < minimum:
                problems.append(f"{name} must be at least {minimum} (got {seconds})")
            durations[name] = seconds
        if durations.get("COLLECT_DEADLINE_S", 0) > _MAX_DEADLINE_S:
            problems.append(f"COLLECT_DEADLINE_S must be at most {_MAX_DEADLINE_S} (30 days)")
        if durations.get("BACKFILL_LOOKBACK_S", 0) > _MAX_LOOKBACK_S:
            problems.append(
                f"BACKFILL_LOOKBACK_S must be at most {_MAX_LOOKBACK_S} (Reports keeps 180 days)"
            )

        ip_mode = source.get("IP_ADDRESS_MODE", "").strip() or "full"
        if ip_mode not in ("full", "truncated", "none"):
            problems.append(f"IP_ADDRESS_MODE must be full, truncated or none (got {ip_mode!r})")

        emulator_hosts: dict[str, str | None] = {}
        for name in ("FIRESTORE_EMULATOR_HOST", "CLOUD_TASKS_EMULATOR_HOST"):
            host = text(name)
            if host is not None and not _HOST_PORT.match(host):
                problems.append(f"{name} must be host:port (got {host!r})")
            emulator_hosts[name] = host
        certs_url = text("OIDC_CERTS_URL")
        if certs_url is not None:
            _check_url("OIDC_CERTS_URL", certs_url, problems)
        backfill_url = text("BACKFILL_URL")
        if backfill_url is not None:
            _check_url("BACKFILL_URL", backfill_url, problems)
        scheduler_account = text("SCHEDULER_SERVICE_ACCOUNT")
        if scheduler_account is not None and not _EMAIL.match(scheduler_account):
            problems.append(
                f"SCHEDULER_SERVICE_ACCOUNT must be an email (got {scheduler_account!r})"
            )

        if problems:
            raise ConfigError(problems)
        return cls(
            google_cloud_project=project,
            tasks_location=location,
            tasks_queue=queue,
            collect_url=collect_url,
            tasks_service_account=service_account,
            reports_admin_subject=subject,
            reports_credentials=credentials,
            webhook_secrets=secrets,
            first_poll_delay_s=durations["FIRST_POLL_DELAY_S"],
            max_poll_interval_s=durations["MAX_POLL_INTERVAL_S"],
            collect_deadline_s=durations["COLLECT_DEADLINE_S"],
            settle_s=durations["SETTLE_S"],
            absent_grace_s=durations["ABSENT_GRACE_S"],
            window_before_s=durations["WINDOW_BEFORE_S"],
            window_after_s=durations["WINDOW_AFTER_S"],
            backfill_lookback_s=durations["BACKFILL_LOOKBACK_S"],
            ip_address_mode=ip_mode,  # type: ignore[arg-type]  # checked above
            firestore_emulator_host=emulator_hosts["FIRESTORE_EMULATOR_HOST"],
            cloud_tasks_emulator_host=emulator_hosts["CLOUD_TASKS_EMULATOR_HOST"],
            reports_api_endpoint=reports_endpoint,
            oidc_certs_url=certs_url,
            backfill_url=backfill_url,
            scheduler_service_account=scheduler_account,
        )

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables; ``from_env`` reads them back to an equal value."""
        env: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            name = "WEBHOOK_SECRET" if field.name == "webhook_secrets" else field.name.upper()
            env[name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env


def _check_url(name: str, value: str, problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(f"{name} must be an http(s) URL (got {value!r})")


def _webhook_secrets(raw: str, problems: list[str]) -> tuple[str, ...]:
    secrets = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not secrets:
        problems.append("WEBHOOK_SECRET is required (whsec_<base64>, comma-separated for rotation)")
        return ()
    for index, secret in enumerate(secrets, start=1):
        if not secret.startswith("whsec_"):
            problems.append(f"WEBHOOK_SECRET entry {index} must start with whsec_")
            continue
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"WEBHOOK_SECRET entry {index} is not valid base64 after whsec_")
            continue
        if len(key) < 16:
            problems.append(f"WEBHOOK_SECRET entry {index} is shorter than 16 bytes")
    return secrets
