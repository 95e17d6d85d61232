"""The Terraform parses, keeps its security properties, and the checks catch a broken copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.terraform import INFRA, PROPERTIES, load_infra, required_settings

MakeCopy = Callable[[dict[str, tuple[str, str]]], Path]


def test_every_tf_file_parses() -> None:
    infra = load_infra()
    assert len(infra.text) >= 8
    assert infra.of_type("google_cloudfunctions2_function")


def test_required_settings_are_read_from_config() -> None:
    # The env-var property follows functions/config.py instead of a list copied here.
    assert {"GOOGLE_CLOUD_PROJECT", "COLLECT_URL", "WEBHOOK_SECRET"} <= set(required_settings())


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_property_holds(name: str) -> None:
    assert PROPERTIES[name](load_infra()) == []


def test_firestore_indexes_json_is_deployable() -> None:
    document = json.loads((INFRA / "firestore.indexes.json").read_text("utf-8"))
    for index in document["indexes"]:
        assert index["queryScope"] in ("COLLECTION", "COLLECTION_GROUP")
        assert len(index["fields"]) >= 2
        assert {f["order"] for f in index["fields"]} <= {"ASCENDING", "DESCENDING"}
    assert any(
        o["collectionGroup"] == "webhook_deliveries" and o["fieldPath"] == "expire_at" and o["ttl"]
        for o in document["fieldOverrides"]
    )


SA_KEY = 'resource "google_service_account_key" "leak" {\n  service_account_id = "x"\n}\n'

MUTATIONS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "service account key": ("no_service_account_keys", {"leak.tf": ("", SA_KEY)}),
    "editor role": (
        "no_primitive_roles",
        {"iam.tf": ('"roles/datastore.user",      #', '"roles/editor", #')},
    ),
    "collect public": (
        "only_ingest_is_public",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.tasks.email}"',
                'member   = "allUsers"',
            )
        },
    ),
    "collect public (invoker check)": (
        "collect_invoked_only_by_tasks",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.tasks.email}"',
                'member   = "allUsers"',
            )
        },
    ),
    "backfill public": (
        "backfill_invoked_only_by_its_callers",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.scheduler.email}"',
                'member   = "allUsers"',
            )
        },
    ),
    "no token creator on itself": (
        "runtime_signs_for_itself",
        {
            "iam.tf": (
                'role               = "roles/iam.serviceAccountTokenCreator"\n  member             = local.runtime_member',
                'role               = "roles/iam.serviceAccountTokenCreator"\n  member             = "user:someone@example.com"',
            )
        },
    ),
    "scheduler without OIDC": (
        "scheduler_uses_oidc",
        {"scheduler.tf": ("oidc_token {", "oauth_token {")},
    ),
    "queue without retry": (
        "queue_sized_to_reports_quota",
        {"tasks.tf": ("retry_config {", "dummy_block {")},
    ),
    "queue too fast": (
        "queue_sized_to_reports_quota",
        {"tasks.tf": ("max_dispatches_per_second = 10", "max_dispatches_per_second = 500")},
    ),
    "no PITR": (
        "firestore_protected",
        {"firestore.tf": ('"POINT_IN_TIME_RECOVERY_ENABLED"', '"POINT_IN_TIME_RECOVERY_DISABLED"')},
    ),
    "no delete protection": (
        "firestore_protected",
        {"firestore.tf": ('"DELETE_PROTECTION_ENABLED"', '"DELETE_PROTECTION_DISABLED"')},
    ),
    "no TTL": ("webhook_deliveries_expire", {"firestore.tf": ("  ttl_config {}\n", "")}),
    "secret as plain env": (
        "webhook_secret_from_secret_manager",
        {
            "functions.tf": (
                "    IP_ADDRESS_MODE           = var.ip_address_mode\n",
                '    IP_ADDRESS_MODE           = var.ip_address_mode\n    WEBHOOK_SECRET = "whsec_x"\n',
            )
        },
    ),
    "missing COLLECT_URL": (
        "functions_have_settings",
        {"functions.tf": ("    COLLECT_URL           = local.collect_url\n", "")},
    ),
    "emulator in production": (
        "functions_have_settings",
        {
            "functions.tf": (
                "    IP_ADDRESS_MODE           = var.ip_address_mode\n",
                '    IP_ADDRESS_MODE           = var.ip_address_mode\n    FIRESTORE_EMULATOR_HOST = "x:1"\n',
            )
        },
    ),
    "wrong entry point": (
        "functions_built_right",
        {"functions.tf": ('entry_point     = "backfill"', 'entry_point     = "backfil"')},
    ),
    "extra runtime role": (
        "runtime_roles_are_least",
        {"iam.tf": ('"roles/logging.logWriter",', '"roles/logging.logWriter", "roles/run.admin",')},
    ),
    "bucket in backend": (
        "state_and_provider",
        {"backend.tf": ('prefix = "', 'bucket = "b"\n    prefix = "')},
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_property_check_catches_a_breach(case: str, infra_copy: MakeCopy) -> None:
    check, edits = MUTATIONS[case]
    broken = load_infra(infra_copy(edits))
    assert PROPERTIES[check](broken), f"{check} did not notice: {case}"


def _terraform() -> str:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH: `terraform fmt -check` not run")
    return terraform


def _fmt_check(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    env.pop("TF_CLI_CONFIG_FILE", None)
    return subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", "-diff", str(directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_terraform_fmt() -> None:
    # `terraform validate` needs the provider, which cannot be downloaded here (infra/README.md).
    result = _fmt_check(INFRA)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_fmt_catches_bad_layout(infra_copy: MakeCopy) -> None:
    broken = infra_copy({"tasks.tf": ("max_attempts       = 7", "max_attempts=7")})
    assert _fmt_check(broken).returncode != 0
