"""Settings: the only reader of ``os.environ`` (docs/settings.md).

``Settings.from_env`` validates everything at once and raises :class:`ConfigError` naming every
problem, so a misconfigured deployment fails at start with one readable message.

Each function reads only its own settings (:data:`READS`): ``WEBHOOK_SECRET`` exists in ``ingest``
alone, the Reports delegation only where Reports is read, ``API_PRINCIPALS`` only in ``api``. A
setting a role does not read keeps its default, whatever the environment holds. The operator CLI
(role ``cli``) reads what its commands use and requires only what every command needs; a command
that writes participants checks ``ERASURE_KEY`` itself. Its reading commands use role ``reader``:
the project and the store alone, so a billing reader runs them with no queue, delegation or
secret configured (the queue and collect settings read as unset there and are never used).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from functions.errors import ConfigError
from functions.limits import DURATION_SETTINGS, MIN_ERASURE_KEY_LENGTH, MIN_RETENTION_DAYS
from functions.model import IpMode, LocationMode
from functions.schedule import Timing
from functions.signatures import SECRET_PREFIX, decode_secret

__all__ = ["READS", "ROLES", "STAND_IN_SETTINGS", "Role", "Settings"]

Role = Literal["ingest", "collect", "backfill", "api", "meet_events", "cli", "reader"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")

#: Stand-ins for Google's services: refused on Google Cloud unless ALLOW_STAND_INS=true, so a
#: leftover test variable can never point production at a fake (or skip token checks).
STAND_IN_SETTINGS: Final = (
    "FIRESTORE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
    "REPORTS_API_ENDPOINT",
    "OIDC_CERTS_URL",
    "MEET_API_ENDPOINT",
    "WORKSPACE_EVENTS_API_ENDPOINT",
    "DIRECTORY_API_ENDPOINT",
    "CALENDAR_API_ENDPOINT",
)

_STORE_AND_QUEUE: Final = frozenset(
    {
        "GOOGLE_CLOUD_PROJECT",
        "TASKS_LOCATION",
        "TASKS_QUEUE",
        "COLLECT_URL",
        "TASKS_SERVICE_ACCOUNT",
        "ERASURE_KEY",
        "RETENTION_DAYS",
        "FIRST_POLL_DELAY_S",
        "MAX_POLL_INTERVAL_S",
        "COLLECT_DEADLINE_S",
        "SETTLE_S",
        "ABSENT_GRACE_S",
        "WINDOW_BEFORE_S",
        "WINDOW_AFTER_S",
        "FIRESTORE_EMULATOR_HOST",
        "CLOUD_TASKS_EMULATOR_HOST",
        "ALLOW_STAND_INS",
        "K_SERVICE",
    }
)
_REPORTS: Final = frozenset(
    {
        "REPORTS_ADMIN_SUBJECT",
        "REPORTS_CREDENTIALS",
        "DELEGATION_SERVICE_ACCOUNT",
        "REPORTS_API_ENDPOINT",
        "IP_ADDRESS_MODE",
        "LOCATION_MODE",
    }
)

#: The Meet side: organizers, the Meet REST, Workspace Events and Directory APIs.
_MEET: Final = frozenset(
    {
        "ORGANIZERS",
        "ORGANIZER_GROUP",
        "WORKSPACE_EVENTS_TOPIC",
        "MEET_API_ENDPOINT",
        "WORKSPACE_EVENTS_API_ENDPOINT",
        "DIRECTORY_API_ENDPOINT",
    }
)
#: Calendar channels and syncs (the daily run and the CLI open channels and read changes).
_CALENDAR: Final = frozenset({"CALENDAR_NOTIFICATIONS_URL", "CALENDAR_API_ENDPOINT"})

#: Which settings each function reads (and the CLI, which works on the same system).
READS: Final[Mapping[Role, frozenset[str]]] = {
    "ingest": _STORE_AND_QUEUE | {"WEBHOOK_SECRET", "BACKFILL_URL"},
    "collect": _STORE_AND_QUEUE | _REPORTS | {"OIDC_CERTS_URL"},
    "backfill": _STORE_AND_QUEUE
    | _REPORTS
    | _MEET
    | _CALENDAR
    | {"OIDC_CERTS_URL", "BACKFILL_URL", "SCHEDULER_SERVICE_ACCOUNT", "BACKFILL_LOOKBACK_S"},
    "api": _STORE_AND_QUEUE | _REPORTS | {"OIDC_CERTS_URL", "API_URL", "API_PRINCIPALS"},
    "meet_events": _STORE_AND_QUEUE
    | _REPORTS
    | _MEET
    | {"OIDC_CERTS_URL", "MEET_EVENTS_URL", "PUBSUB_PUSH_SERVICE_ACCOUNT"},
    "cli": _STORE_AND_QUEUE
    | _REPORTS
    | _MEET
    | _CALENDAR
    | {"BACKFILL_URL", "BACKFILL_LOOKBACK_S"},
    # The CLI's reading commands (show, list, export, report, subscriptions without --ensure):
    # the project and the store, nothing a billing reader neither has nor should have.
    "reader": frozenset(
        {"GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "ALLOW_STAND_INS", "K_SERVICE"}
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    google_cloud_project: str
    tasks_location: str
    tasks_queue: str
    collect_url: str
    tasks_service_account: str
    reports_admin_subject: str | None = None
    reports_credentials: str = "keyless"
    webhook_secrets: tuple[str, ...] = ()
    first_poll_delay_s: int = DURATION_SETTINGS["FIRST_POLL_DELAY_S"].default
    max_poll_interval_s: int = DURATION_SETTINGS["MAX_POLL_INTERVAL_S"].default
    collect_deadline_s: int = DURATION_SETTINGS["COLLECT_DEADLINE_S"].default
    settle_s: int = DURATION_SETTINGS["SETTLE_S"].default
    absent_grace_s: int = DURATION_SETTINGS["ABSENT_GRACE_S"].default
    window_before_s: int = DURATION_SETTINGS["WINDOW_BEFORE_S"].default
    window_after_s: int = DURATION_SETTINGS["WINDOW_AFTER_S"].default
    backfill_lookback_s: int = DURATION_SETTINGS["BACKFILL_LOOKBACK_S"].default
    ip_address_mode: IpMode = "full"
    location_mode: LocationMode = "full"
    firestore_emulator_host: str | None = None
    cloud_tasks_emulator_host: str | None = None
    reports_api_endpoint: str | None = None
    oidc_certs_url: str | None = None
    backfill_url: str | None = None
    scheduler_service_account: str | None = None
    delegation_service_account: str | None = None
    erasure_key: str | None = None
    retention_days: int | None = None
    api_url: str | None = None
    api_principals: tuple[str, ...] = ()
    organizers: tuple[str, ...] = ()
    organizer_group: str | None = None
    workspace_events_topic: str | None = None
    meet_events_url: str | None = None
    pubsub_push_service_account: str | None = None
    meet_api_endpoint: str | None = None
    workspace_events_api_endpoint: str | None = None
    directory_api_endpoint: str | None = None
    calendar_notifications_url: str | None = None
    calendar_api_endpoint: str | None = None
    allow_stand_ins: bool = False

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
    def from_env(cls, env: Mapping[str, str] | None = None, *, role: Role = "cli") -> Settings:
        """The settings ``role`` reads from ``env`` (default ``os.environ``), all checked."""
        read = _Reader(os.environ if env is None else env, READS[role])
        function = role not in ("cli", "reader")
        location = read.required("TASKS_LOCATION")
        queue = read.required("TASKS_QUEUE")
        for name, value in (("TASKS_LOCATION", location), ("TASKS_QUEUE", queue)):
            if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
                read.problem(f"{name} may hold only letters, digits and hyphens (got {value!r})")
        reports_endpoint = read.url("REPORTS_API_ENDPOINT")
        credentials = read.text("REPORTS_CREDENTIALS") or "keyless"
        if credentials != "keyless" and not credentials.startswith("{"):
            read.problem("REPORTS_CREDENTIALS must be 'keyless' or a service-account key as JSON")
        durations = _durations(read)
        settings = cls(
            google_cloud_project=read.required("GOOGLE_CLOUD_PROJECT"),
            tasks_location=location,
            tasks_queue=queue,
            collect_url=read.url("COLLECT_URL", required=True) or "",
            tasks_service_account=read.email("TASKS_SERVICE_ACCOUNT", required=True) or "",
            reports_admin_subject=read.email(
                "REPORTS_ADMIN_SUBJECT",
                required=reports_endpoint is None and read.reads("REPORTS_ADMIN_SUBJECT"),
                what="an admin's email",
            ),
            reports_credentials=credentials,
            webhook_secrets=_webhook_secrets(read),
            first_poll_delay_s=durations["FIRST_POLL_DELAY_S"],
            max_poll_interval_s=durations["MAX_POLL_INTERVAL_S"],
            collect_deadline_s=durations["COLLECT_DEADLINE_S"],
            settle_s=durations["SETTLE_S"],
            absent_grace_s=durations["ABSENT_GRACE_S"],
            window_before_s=durations["WINDOW_BEFORE_S"],
            window_after_s=durations["WINDOW_AFTER_S"],
            backfill_lookback_s=durations["BACKFILL_LOOKBACK_S"],
            ip_address_mode=read.choice("IP_ADDRESS_MODE", get_args(IpMode)),  # type: ignore[arg-type]
            location_mode=read.choice("LOCATION_MODE", get_args(LocationMode)),  # type: ignore[arg-type]
            firestore_emulator_host=read.host_port("FIRESTORE_EMULATOR_HOST"),
            cloud_tasks_emulator_host=read.host_port("CLOUD_TASKS_EMULATOR_HOST"),
            reports_api_endpoint=reports_endpoint,
            oidc_certs_url=read.url("OIDC_CERTS_URL"),
            backfill_url=read.url("BACKFILL_URL", required=role == "backfill"),
            scheduler_service_account=read.email("SCHEDULER_SERVICE_ACCOUNT"),
            delegation_service_account=read.email("DELEGATION_SERVICE_ACCOUNT"),
            erasure_key=_erasure_key(read, required=function),
            retention_days=_retention_days(read),
            api_url=read.url("API_URL", required=role == "api"),
            api_principals=_principals(read, required=role == "api"),
            organizers=_organizers(read),
            organizer_group=read.email("ORGANIZER_GROUP", what="a group's email"),
            workspace_events_topic=_topic(read, required=role == "meet_events"),
            meet_events_url=read.url("MEET_EVENTS_URL", required=role == "meet_events"),
            pubsub_push_service_account=read.email(
                "PUBSUB_PUSH_SERVICE_ACCOUNT", required=role == "meet_events"
            ),
            meet_api_endpoint=read.url("MEET_API_ENDPOINT"),
            workspace_events_api_endpoint=read.url("WORKSPACE_EVENTS_API_ENDPOINT"),
            directory_api_endpoint=read.url("DIRECTORY_API_ENDPOINT"),
            calendar_notifications_url=read.url("CALENDAR_NOTIFICATIONS_URL"),
            calendar_api_endpoint=read.url("CALENDAR_API_ENDPOINT"),
            allow_stand_ins=_allow_stand_ins(read),
        )
        calendars = settings.organizers or settings.organizer_group
        if role == "backfill" and calendars and settings.calendar_notifications_url is None:
            read.problem(
                "CALENDAR_NOTIFICATIONS_URL is required when ORGANIZERS or ORGANIZER_GROUP is set "
                "(the ingest URL + calendar/notifications)"
            )
        if read.reads("WEBHOOK_SECRET") and not settings.webhook_secrets:
            read.problem(
                "WEBHOOK_SECRET is required (whsec_<base64>, comma-separated for rotation)"
            )
        _refuse_stand_ins_on_google_cloud(read, settings)
        if read.problems:
            raise ConfigError(read.problems)
        return settings

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables; ``from_env`` reads them back to an equal value
        (for the settings the reading role reads)."""
        env: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None or value == () or value is False:
                continue
            name = "WEBHOOK_SECRET" if field.name == "webhook_secrets" else field.name.upper()
            if isinstance(value, bool):
                env[name] = "true"
            else:
                env[name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env


class _Reader:
    """Reads and checks the settings of one role, collecting every problem instead of stopping at
    the first. A name the role does not read reads as unset."""

    def __init__(self, source: Mapping[str, str], names: frozenset[str]) -> None:
        self._source = source
        self._names = names
        self.problems: list[str] = []

    def reads(self, name: str) -> bool:
        return name in self._names

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def raw(self, name: str) -> str:
        return self._source.get(name, "").strip() if name in self._names else ""

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value:
            return value
        if required and self.reads(name):
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
            # The value is not echoed: an email-shaped setting may hold a person's address.
            self.problem(f"{name} must be {what}")
        return value

    def host_port(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not _HOST_PORT.match(value):
            self.problem(f"{name} must be host:port (got {value!r})")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name) or allowed[0]
        if value not in allowed:
            options = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            self.problem(f"{name} must be {options} (got {value!r})")
            return allowed[0]
        return value


def _durations(read: _Reader) -> dict[str, int]:
    durations: dict[str, int] = {}
    for name, limit in DURATION_SETTINGS.items():
        raw = read.raw(name)
        durations[name] = limit.default  # stands in when unset or until problems stop construction
        if not raw:
            continue
        try:
            seconds = int(raw)
        except ValueError:
            read.problem(f"{name} must be a whole number of seconds (got {raw!r})")
            continue
        if seconds < limit.minimum:
            read.problem(f"{name} must be at least {limit.minimum} (got {seconds})")
        if limit.maximum is not None and seconds > limit.maximum:
            read.problem(f"{name} must be at most {limit.maximum} ({limit.why_maximum})")
        durations[name] = seconds
    return durations


def _webhook_secrets(read: _Reader) -> tuple[str, ...]:
    secrets = tuple(part.strip() for part in read.raw("WEBHOOK_SECRET").split(",") if part.strip())
    for index, secret in enumerate(secrets, start=1):
        if not secret.startswith(SECRET_PREFIX):
            read.problem(f"WEBHOOK_SECRET entry {index} must start with whsec_")
            continue
        try:
            key = decode_secret(secret)
        except ValueError:
            read.problem(f"WEBHOOK_SECRET entry {index} is not valid base64 after whsec_")
            continue
        if len(key) < 16:
            read.problem(f"WEBHOOK_SECRET entry {index} is shorter than 16 bytes")
    return secrets


def _erasure_key(read: _Reader, *, required: bool) -> str | None:
    key = read.text("ERASURE_KEY", required=required)
    if key is not None and len(key) < MIN_ERASURE_KEY_LENGTH:
        read.problem(f"ERASURE_KEY must be at least {MIN_ERASURE_KEY_LENGTH} characters")
    return key


def _retention_days(read: _Reader) -> int | None:
    raw = read.raw("RETENTION_DAYS")
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        read.problem(f"RETENTION_DAYS must be a whole number of days (got {raw!r})")
        return None
    if days < MIN_RETENTION_DAYS:
        read.problem(
            f"RETENTION_DAYS must be at least {MIN_RETENTION_DAYS} (no month is deleted before "
            f"it is billed; got {days})"
        )
    return days


def _principals(read: _Reader, *, required: bool) -> tuple[str, ...]:
    emails = tuple(
        part.strip().lower() for part in read.raw("API_PRINCIPALS").split(",") if part.strip()
    )
    if required and not emails:
        read.problem("API_PRINCIPALS is required (comma-separated service-account emails)")
    for index, email in enumerate(emails, start=1):
        if not _EMAIL.match(email):
            read.problem(f"API_PRINCIPALS entry {index} must be an email")
    return emails


def _organizers(read: _Reader) -> tuple[str, ...]:
    emails = tuple(
        dict.fromkeys(
            part.strip().lower() for part in read.raw("ORGANIZERS").split(",") if part.strip()
        )
    )
    for index, email in enumerate(emails, start=1):
        if not _EMAIL.match(email):
            read.problem(f"ORGANIZERS entry {index} must be an email")
    return emails


_TOPIC = re.compile(r"projects/[a-z][a-z0-9-]{4,61}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}")


def _topic(read: _Reader, *, required: bool) -> str | None:
    topic = read.text("WORKSPACE_EVENTS_TOPIC", required=required)
    if topic is not None and not _TOPIC.fullmatch(topic):
        read.problem(
            f"WORKSPACE_EVENTS_TOPIC must be projects/PROJECT/topics/TOPIC (got {topic!r})"
        )
    return topic


def _allow_stand_ins(read: _Reader) -> bool:
    raw = read.raw("ALLOW_STAND_INS").lower()
    if raw not in ("", "true", "false"):
        read.problem(f"ALLOW_STAND_INS must be true or false (got {raw!r})")
    return raw == "true"


def _refuse_stand_ins_on_google_cloud(read: _Reader, settings: Settings) -> None:
    if not read.raw("K_SERVICE") or settings.allow_stand_ins:
        return
    for name in STAND_IN_SETTINGS:
        if read.raw(name):
            read.problem(
                f"{name} names a local stand-in, refused on Google Cloud (K_SERVICE is set; "
                "ALLOW_STAND_INS=true allows it)"
            )
