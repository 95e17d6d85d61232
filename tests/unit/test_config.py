"""Settings.from_env: every setting of CONTRACT §5 validated at once, one message naming each."""

from __future__ import annotations

import pytest

from functions.config import Settings
from functions.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VALID = {
    "GOOGLE_CLOUD_PROJECT": "acme-attendance",
    "TASKS_LOCATION": "europe-west1",
    "TASKS_QUEUE": "attendance-collect",
    "COLLECT_URL": "https://collect-abc-ew.a.run.app/",
    "TASKS_SERVICE_ACCOUNT": "tasks@acme-attendance.iam.gserviceaccount.com",
    "REPORTS_ADMIN_SUBJECT": "admin@school.example",
    "WEBHOOK_SECRET": SECRET,
}


def test_defaults_are_the_contract_defaults() -> None:
    settings = Settings.from_env(VALID)
    assert settings.first_poll_delay_s == 900
    assert settings.max_poll_interval_s == 14400
    assert settings.collect_deadline_s == 86400
    assert settings.settle_s == 1800
    assert settings.absent_grace_s == 21600
    assert (settings.window_before_s, settings.window_after_s) == (900, 3600)
    assert settings.backfill_lookback_s == 172800
    assert settings.ip_address_mode == "full"
    assert settings.reports_credentials == "keyless"
    assert settings.queue_path == (
        "projects/acme-attendance/locations/europe-west1/queues/attendance-collect"
    )
    assert settings.firestore_emulator_host is None


def test_round_trips_through_the_environment() -> None:
    settings = Settings.from_env({**VALID, "FIRST_POLL_DELAY_S": "5", "IP_ADDRESS_MODE": "none"})
    assert Settings.from_env(settings.to_env()) == settings


def test_every_problem_is_named_in_one_message() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SETTLE_S": "soon", "IP_ADDRESS_MODE": "partial"})
    message = caught.value.message
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "TASKS_LOCATION",
        "TASKS_QUEUE",
        "COLLECT_URL",
        "TASKS_SERVICE_ACCOUNT",
        "REPORTS_ADMIN_SUBJECT",
        "WEBHOOK_SECRET",
        "SETTLE_S",
        "IP_ADDRESS_MODE",
    ):
        assert name in message
    assert "\n" not in message


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
        ("FIRESTORE_EMULATOR_HOST", "localhost", "FIRESTORE_EMULATOR_HOST must be host:port"),
        ("CLOUD_TASKS_EMULATOR_HOST", "http://x:1", "must be host:port"),
        ("OIDC_CERTS_URL", "certs", "OIDC_CERTS_URL must be an http(s) URL"),
    ],
)
def test_invalid_values_are_refused(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**VALID, name: value})
    assert complaint in caught.value.message
    assert caught.value.problems == [p for p in caught.value.problems if name in p]


def test_subject_is_optional_with_a_local_reports_endpoint() -> None:
    env = {k: v for k, v in VALID.items() if k != "REPORTS_ADMIN_SUBJECT"}
    with pytest.raises(ConfigError, match="REPORTS_ADMIN_SUBJECT is required"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "REPORTS_API_ENDPOINT": "http://127.0.0.1:9"})
    assert settings.reports_admin_subject is None


def test_secret_rotation_keeps_every_secret_in_order() -> None:
    second = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    settings = Settings.from_env({**VALID, "WEBHOOK_SECRET": f" {SECRET} , {second} "})
    assert settings.webhook_secrets == (SECRET, second)


def test_key_json_credentials_are_accepted() -> None:
    settings = Settings.from_env({**VALID, "REPORTS_CREDENTIALS": '{"type": "service_account"}'})
    assert settings.uses_key_file
