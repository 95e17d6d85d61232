"""Settings.from_env: every setting of docs/settings.md validated at once, one message naming each, and
each function reading only its own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from functions.config import READS, ROLES, STAND_IN_SETTINGS, Role, Settings
from functions.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ERASURE_KEY = "0123456789abcdef0123456789abcdef"
VALID = {
    "GOOGLE_CLOUD_PROJECT": "acme-attendance",
    "TASKS_LOCATION": "europe-west1",
    "TASKS_QUEUE": "attendance-collect",
    "COLLECT_URL": "https://collect-abc-ew.a.run.app/",
    "TASKS_SERVICE_ACCOUNT": "tasks@acme-attendance.iam.gserviceaccount.com",
    "REPORTS_ADMIN_SUBJECT": "admin@school.example",
    "WEBHOOK_SECRET": SECRET,
    "ERASURE_KEY": ERASURE_KEY,
    "BACKFILL_URL": "https://backfill-abc-ew.a.run.app/",
    "API_URL": "https://api-abc-ew.a.run.app/",
    "API_PRINCIPALS": "billing@acme-attendance.iam.gserviceaccount.com",
    "MEET_EVENTS_URL": "https://meet-events-abc-ew.a.run.app/",
    "PUBSUB_PUSH_SERVICE_ACCOUNT": "meet-push@acme-attendance.iam.gserviceaccount.com",
    "WORKSPACE_EVENTS_TOPIC": "projects/acme-attendance/topics/workspace-events",
    "ORGANIZERS": "Teacher@school.example, tutor@school.example",
    "CALENDAR_NOTIFICATIONS_URL": "https://ingest-abc-ew.a.run.app/calendar/notifications",
}


class Recording(Mapping[str, str]):
    """An environment that remembers which names were looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._values[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(name)
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings must look names up, not walk the environment")

    def __len__(self) -> int:
        return len(self._values)


def test_defaults_are_the_contract_defaults() -> None:
    settings = Settings.from_env(VALID, role="collect")
    assert settings.first_poll_delay_s == 900
    assert settings.max_poll_interval_s == 14400
    assert settings.collect_deadline_s == 86400
    assert settings.settle_s == 1800
    assert settings.absent_grace_s == 21600
    assert (settings.window_before_s, settings.window_after_s) == (900, 3600)
    assert settings.backfill_lookback_s == 172800
    assert settings.ip_address_mode == "full"
    assert settings.location_mode == "full"
    assert settings.retention_days is None
    assert settings.reports_credentials == "keyless"
    assert settings.queue_path == (
        "projects/acme-attendance/locations/europe-west1/queues/attendance-collect"
    )
    assert settings.firestore_emulator_host is None


@pytest.mark.parametrize("role", ROLES)
def test_round_trips_through_the_environment(role: Role) -> None:
    env = {**VALID, "FIRST_POLL_DELAY_S": "5", "IP_ADDRESS_MODE": "none", "RETENTION_DAYS": "90"}
    settings = Settings.from_env(env, role=role)
    assert Settings.from_env(settings.to_env(), role=role) == settings


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reads_only_its_settings(role: Role) -> None:
    env = Recording({**VALID, "K_SERVICE": "x", "ALLOW_STAND_INS": "true"})
    Settings.from_env(env, role=role)
    assert env.read <= READS[role]


def test_only_ingest_reads_the_webhook_secret() -> None:
    for role in ROLES:
        settings = Settings.from_env(VALID, role=role)
        assert bool(settings.webhook_secrets) is (role == "ingest"), role
        assert ("WEBHOOK_SECRET" in READS[role]) is (role == "ingest")


def test_only_api_reads_its_principals_and_the_public_function_no_delegation() -> None:
    for role in ROLES:
        assert ("API_PRINCIPALS" in READS[role]) is (role == "api"), role
    for name in ("REPORTS_ADMIN_SUBJECT", "REPORTS_CREDENTIALS", "DELEGATION_SERVICE_ACCOUNT"):
        assert name not in READS["ingest"]


@pytest.mark.parametrize(
    ("role", "required"),
    [
        ("ingest", {"WEBHOOK_SECRET", "ERASURE_KEY", "COLLECT_URL", "TASKS_SERVICE_ACCOUNT"}),
        ("collect", {"REPORTS_ADMIN_SUBJECT", "ERASURE_KEY", "COLLECT_URL"}),
        ("backfill", {"REPORTS_ADMIN_SUBJECT", "ERASURE_KEY", "BACKFILL_URL"}),
        ("api", {"REPORTS_ADMIN_SUBJECT", "ERASURE_KEY", "API_URL", "API_PRINCIPALS"}),
        ("cli", {"REPORTS_ADMIN_SUBJECT", "COLLECT_URL"}),
    ],
)
def test_every_problem_is_named_in_one_message(role: Role, required: set[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SETTLE_S": "soon"}, role=role)
    message = caught.value.message
    for name in {"GOOGLE_CLOUD_PROJECT", "TASKS_LOCATION", "TASKS_QUEUE", "SETTLE_S", *required}:
        assert name in message
    assert "\n" not in message


def test_a_setting_another_function_reads_is_not_checked() -> None:
    # collect never reads WEBHOOK_SECRET, so a broken one there cannot stop it starting.
    settings = Settings.from_env({**VALID, "WEBHOOK_SECRET": "nope"}, role="collect")
    assert settings.webhook_secrets == ()
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET entry 1 must start with whsec_"):
        Settings.from_env({**VALID, "WEBHOOK_SECRET": "nope"}, role="ingest")


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("COLLECT_URL", "collect.example", "COLLECT_URL must be an http(s) URL"),
        ("TASKS_SERVICE_ACCOUNT", "tasks", "TASKS_SERVICE_ACCOUNT must be an email"),
        ("TASKS_QUEUE", "bad/queue", "TASKS_QUEUE may hold only"),
        ("REPORTS_ADMIN_SUBJECT", "admin", "REPORTS_ADMIN_SUBJECT must be an admin's email"),
        ("REPORTS_CREDENTIALS", "/path/key.json", "REPORTS_CREDENTIALS must be 'keyless'"),
        ("WEBHOOK_SECRET", "secret", "must start with whsec_"),
        ("WEBHOOK_SECRET", "whsec_!!!", "not valid base64"),
        ("WEBHOOK_SECRET", "whsec_c2hvcnQ=", "shorter than 16 bytes"),
        ("WEBHOOK_SECRET", f"{SECRET},nope", "entry 2 must start with whsec_"),
        ("FIRST_POLL_DELAY_S", "0", "FIRST_POLL_DELAY_S must be at least 1"),
        ("SETTLE_S", "-1", "SETTLE_S must be at least 0"),
        ("WINDOW_AFTER_S", "1.5", "WINDOW_AFTER_S must be a whole number"),
        ("COLLECT_DEADLINE_S", str(31 * 86400), "at most 2592000"),
        ("BACKFILL_LOOKBACK_S", str(181 * 86400), "Reports keeps 180 days"),
        ("IP_ADDRESS_MODE", "masked", "IP_ADDRESS_MODE must be full, truncated or none"),
        ("LOCATION_MODE", "city", "LOCATION_MODE must be full, country or none"),
        ("RETENTION_DAYS", "61", "RETENTION_DAYS must be at least 62"),
        ("RETENTION_DAYS", "a year", "RETENTION_DAYS must be a whole number of days"),
        ("ERASURE_KEY", "short", "ERASURE_KEY must be at least 32 characters"),
        ("API_PRINCIPALS", "billing", "API_PRINCIPALS entry 1 must be an email"),
        ("API_URL", "api", "API_URL must be an http(s) URL"),
        ("ALLOW_STAND_INS", "yes", "ALLOW_STAND_INS must be true or false"),
        ("FIRESTORE_EMULATOR_HOST", "localhost", "FIRESTORE_EMULATOR_HOST must be host:port"),
        ("CLOUD_TASKS_EMULATOR_HOST", "http://x:1", "must be host:port"),
        ("OIDC_CERTS_URL", "certs", "OIDC_CERTS_URL must be an http(s) URL"),
    ],
)
def test_invalid_values_are_refused(name: str, value: str, complaint: str) -> None:
    roles: tuple[Role, ...] = ("ingest", "backfill", "api")
    role = next(r for r in roles if name in READS[r])
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**VALID, name: value}, role=role)
    assert complaint in caught.value.message
    assert caught.value.problems == [p for p in caught.value.problems if name in p]


def test_an_invalid_email_setting_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**VALID, "REPORTS_ADMIN_SUBJECT": "jane.doe at school"}, role="api")
    assert "jane.doe" not in caught.value.message


def test_subject_is_optional_with_a_local_reports_endpoint() -> None:
    env = {k: v for k, v in VALID.items() if k != "REPORTS_ADMIN_SUBJECT"}
    with pytest.raises(ConfigError, match="REPORTS_ADMIN_SUBJECT is required"):
        Settings.from_env(env, role="collect")
    settings = Settings.from_env({**env, "REPORTS_API_ENDPOINT": "http://127.0.0.1:9"})
    assert settings.reports_admin_subject is None
    assert Settings.from_env(env, role="ingest").reports_admin_subject is None


@pytest.mark.parametrize("stand_in", STAND_IN_SETTINGS)
def test_stand_ins_are_refused_on_google_cloud(stand_in: str) -> None:
    value = "http://127.0.0.1:9" if stand_in.endswith(("ENDPOINT", "URL")) else "127.0.0.1:9"
    role: Role = next(r for r in ("collect", "meet_events", "backfill") if stand_in in READS[r])
    env = {**VALID, stand_in: value, "K_SERVICE": role}
    with pytest.raises(ConfigError, match=f"{stand_in} names a local stand-in"):
        Settings.from_env(env, role=role)
    allowed = Settings.from_env({**env, "ALLOW_STAND_INS": "true"}, role=role)
    assert allowed.allow_stand_ins
    assert Settings.from_env({**VALID, stand_in: value}, role=role)  # not on Google Cloud


def test_secret_rotation_keeps_every_secret_in_order() -> None:
    second = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    settings = Settings.from_env(
        {**VALID, "WEBHOOK_SECRET": f" {SECRET} , {second} "}, role="ingest"
    )
    assert settings.webhook_secrets == (SECRET, second)


def test_principals_are_lower_cased_and_split() -> None:
    env = {**VALID, "API_PRINCIPALS": " Billing@Acme.example , ops@acme.example "}
    settings = Settings.from_env(env, role="api")
    assert settings.api_principals == ("billing@acme.example", "ops@acme.example")


def test_key_json_credentials_are_accepted() -> None:
    settings = Settings.from_env({**VALID, "REPORTS_CREDENTIALS": '{"type": "service_account"}'})
    assert settings.uses_key_file


def test_organizers_need_the_calendar_notifications_address_in_the_daily_run() -> None:
    env = {k: v for k, v in VALID.items() if k != "CALENDAR_NOTIFICATIONS_URL"}
    with pytest.raises(ConfigError, match="CALENDAR_NOTIFICATIONS_URL is required"):
        Settings.from_env(env, role="backfill")
    assert Settings.from_env(env, role="ingest")  # ingest does not open channels
    no_organizers = {k: v for k, v in env.items() if k != "ORGANIZERS"}
    assert Settings.from_env(no_organizers, role="backfill").calendar_notifications_url is None
