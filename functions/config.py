"""Settings: the only reader of ``os.environ`` (CONTRACT §5).

``Settings.from_env`` validates everything at once and raises :class:`ConfigError` naming every
problem, so a misconfigured deployment fails at start with one readable message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from functions.errors import ConfigError
from functions.limits import DURATION_SETTINGS
from functions.model import IpMode
from functions.schedule import Timing
from functions.signatures import SECRET_PREFIX, decode_secret

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


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
    ip_address_mode: IpMode
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

    @property
    def timing(self) -> Timing:
        return Timing(
            first_poll_delay_s=self.first_poll_delay_s,
            max_poll_interval_s=self.max_poll_interval_s,
            collect_deadline_s=self.collect_deadline_s,
            settle_s=self.settle_s,
            absent_grace_s=self.absent_grace_s,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = _Reader(os.environ if env is None else env)
        location = read.required("TASKS_LOCATION")
        queue = read.required("TASKS_QUEUE")
        for name, value in (("TASKS_LOCATION", location), ("TASKS_QUEUE", queue)):
            if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
                read.problem(f"{name} may hold only letters, digits and hyphens (got {value!r})")
        reports_endpoint = read.url("REPORTS_API_ENDPOINT")
        credentials = read.text("REPORTS_CREDENTIALS") or "keyless"
        if credentials != "keyless" and not credentials.startswith("{"):
            read.problem("REPORTS_CREDENTIALS must be 'keyless' or a service-account key as JSON")
        secrets = _webhook_secrets(read.source.get("WEBHOOK_SECRET", ""), read.problems)
        durations = _durations(read.source, read.problems)
        ip_mode = read.text("IP_ADDRESS_MODE") or "full"
        if ip_mode not in ("full", "truncated", "none"):
            read.problem(f"IP_ADDRESS_MODE must be full, truncated or none (got {ip_mode!r})")
        settings = cls(
            google_cloud_project=read.required("GOOGLE_CLOUD_PROJECT"),
            tasks_location=location,
            tasks_queue=queue,
            collect_url=read.url("COLLECT_URL", required=True) or "",
            tasks_service_account=read.email("TASKS_SERVICE_ACCOUNT", required=True) or "",
            reports_admin_subject=read.email(
                "REPORTS_ADMIN_SUBJECT", required=reports_endpoint is None, what="an admin's email"
            ),
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
            firestore_emulator_host=read.host_port("FIRESTORE_EMULATOR_HOST"),
            cloud_tasks_emulator_host=read.host_port("CLOUD_TASKS_EMULATOR_HOST"),
            reports_api_endpoint=reports_endpoint,
            oidc_certs_url=read.url("OIDC_CERTS_URL"),
            backfill_url=read.url("BACKFILL_URL"),
            scheduler_service_account=read.email("SCHEDULER_SERVICE_ACCOUNT"),
        )
        if read.problems:
            raise ConfigError(read.problems)
        return settings

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


class _Reader:
    """Reads and checks settings, collecting every problem instead of stopping at the first."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.source.get(name, "").strip()
        if value:
            return value
        if required:
            self.problem(f"{name} is required")
        return None

    def required(self, name: str) -> str:
        # An empty string stands in only until the problems list stops construction.
        return self.text(name, required=True) or ""

    def url(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                self.problem(f"{name} must be an http(s) URL (got {value!r})")
        return value

    def email(self, name: str, *, required: bool = False, what: str = "an email") -> str | None:
        value = self.text(name, required=required)
        if value is not None and not _EMAIL.match(value):
            self.problem(f"{name} must be {what} (got {value!r})")
        return value

    def host_port(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not _HOST_PORT.match(value):
            self.problem(f"{name} must be host:port (got {value!r})")
        return value


def _durations(source: Mapping[str, str], problems: list[str]) -> dict[str, int]:
    durations: dict[str, int] = {}
    for name, limit in DURATION_SETTINGS.items():
        raw = source.get(name, "").strip()
        if not raw:
            durations[name] = limit.default
            continue
        try:
            seconds = int(raw)
        except ValueError:
            problems.append(f"{name} must be a whole number of seconds (got {raw!r})")
            durations[name] = limit.default  # stands in until the problems stop construction
            continue
        if seconds < limit.minimum:
            problems.append(f"{name} must be at least {limit.minimum} (got {seconds})")
        if limit.maximum is not None and seconds > limit.maximum:
            problems.append(f"{name} must be at most {limit.maximum} ({limit.why_maximum})")
        durations[name] = seconds
    return durations


def _webhook_secrets(raw: str, problems: list[str]) -> tuple[str, ...]:
    secrets = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not secrets:
        problems.append("WEBHOOK_SECRET is required (whsec_<base64>, comma-separated for rotation)")
        return ()
    for index, secret in enumerate(secrets, start=1):
        if not secret.startswith(SECRET_PREFIX):
            problems.append(f"WEBHOOK_SECRET entry {index} must start with whsec_")
            continue
        try:
            key = decode_secret(secret)
        except ValueError:
            problems.append(f"WEBHOOK_SECRET entry {index} is not valid base64 after whsec_")
            continue
        if len(key) < 16:
            problems.append(f"WEBHOOK_SECRET entry {index} is shorter than 16 bytes")
    return secrets
