"""checkov (pinned, offline) finds no failed check in infra/, and the custom policies bite."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.conftest import Edits
from tests.infra.terraform import CHECKOV_DIR, INFRA
from tests.infra.tools import CheckovReport, Tools, run_checkov

CUSTOM_IDS = {
    "CKV_ATT_1",
    "CKV_ATT_2",
    "CKV_ATT_3",
    "CKV_ATT_4",
    "CKV_ATT_5",
    "CKV_ATT_6",
    "CKV_ATT_7",
}

MakeCopy = Callable[[Edits], Path]

#: Resources that break one IAM policy each, added to a copy of infra/ (extra.tf).
BAD_IAM = """
resource "google_project_iam_member" "editor" {
  project = var.project_id
  role    = "roles/editor"
  member  = "user:someone@example.com"
}

resource "google_project_iam_member" "sign_as_anyone" {
  project = var.project_id
  role    = "roles/iam.serviceAccountTokenCreator"
  member  = "group:ops@example.com"
}

resource "google_project_iam_member" "webhook_secret_for_all" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = "serviceAccount:${google_service_account.collect.email}"
}

resource "google_project_iam_member" "every_database" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.collect.email}"
}

resource "google_project_iam_member" "any_database" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = "group:billing@example.com"

  condition {
    title      = "not-a-database"
    expression = "request.time < timestamp(\\"2030-01-01T00:00:00Z\\")"
  }
}

resource "google_service_account_iam_member" "collect_signs_as_itself" {
  service_account_id = google_service_account.collect.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.collect.email}"
}

resource "google_service_account_iam_member" "ingest_signs_as_delegation" {
  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.ingest.email}"
}

resource "google_pubsub_topic_iam_member" "pubsub_admin" {
  project = var.project_id
  topic   = google_pubsub_topic.workspace_events.name
  role    = "roles/pubsub.admin"
  member  = "user:someone@example.com"
}
"""

#: Push subscriptions that break CKV_ATT_7 one way each.
BAD_PUSH = """
resource "google_pubsub_subscription" "push_without_dead_letters" {
  project = var.project_id
  name    = "no-dead-letters"
  topic   = google_pubsub_topic.workspace_events.id

  push_config {
    push_endpoint = local.meet_events_url
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
  }
}

resource "google_pubsub_subscription" "push_retrying_forever" {
  project = var.project_id
  name    = "too-many-attempts"
  topic   = google_pubsub_topic.workspace_events.id

  push_config {
    push_endpoint = local.meet_events_url
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.workspace_events_dead_letter.id
    max_delivery_attempts = 1000
  }
}
"""

#: (policy, resource) each bad resource must fail.
EXPECTED_FAILURES = {
    ("CKV_ATT_3", "google_project_iam_member.editor"),
    ("CKV_ATT_3", "google_project_iam_member.sign_as_anyone"),
    ("CKV_ATT_3", "google_project_iam_member.webhook_secret_for_all"),
    ("CKV_ATT_4", "google_project_iam_member.every_database"),
    ("CKV_ATT_4", "google_project_iam_member.any_database"),
    ("CKV_ATT_5", "google_service_account_iam_member.collect_signs_as_itself"),
    ("CKV_ATT_6", "google_service_account_iam_member.ingest_signs_as_delegation"),
    ("CKV_ATT_3", "google_pubsub_topic_iam_member.pubsub_admin"),
    ("CKV_ATT_7", "google_pubsub_subscription.push_without_dead_letters"),
    ("CKV_ATT_7", "google_pubsub_subscription.push_retrying_forever"),
}


@pytest.fixture(scope="module")
def report(tools: Tools) -> CheckovReport:
    return run_checkov(tools, INFRA)


def test_no_failed_checks(report: CheckovReport) -> None:
    failed = [f"{c['check_id']} {c['resource']}" for c in report.failed]
    assert failed == []
    assert len(report.passed) >= 10


def test_custom_policies_ran_and_passed(report: CheckovReport) -> None:
    assert report.ids("passed") >= CUSTOM_IDS


def test_every_custom_policy_file_is_tested() -> None:
    declared = set()
    for path in CHECKOV_DIR.glob("*.py"):
        declared |= set(re.findall(r'id="(CKV_ATT_\d+)"', path.read_text("utf-8")))
    assert declared == CUSTOM_IDS
    assert {policy for policy, _ in EXPECTED_FAILURES} | {"CKV_ATT_1", "CKV_ATT_2"} == CUSTOM_IDS


def test_every_skip_carries_a_reason(report: CheckovReport) -> None:
    for check in report.skipped:
        reason = str(check["check_result"].get("suppress_comment", "")).strip()
        assert len(reason) >= 20, (
            f"{check['check_id']} on {check['resource']} skipped without reason"
        )
    for path in INFRA.glob("*.tf"):
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(:?)([^\n]*)", path.read_text("utf-8")):
            assert match.group(2) == ":", f"{path.name}: {match.group(0)}"
            assert match.group(3).strip(), f"{path.name}: {match.group(0)}"


def test_checkov_fails_a_broken_copy(tools: Tools, infra_copy: MakeCopy) -> None:
    # One checkov run over one copy broken in several independent ways (checkov takes ~20 s).
    broken = infra_copy(
        {
            "tasks.tf": ("retry_config {", "dummy_block {"),
            "scheduler.tf": ("oidc_token {", "oauth_token {"),
            # An unexplained public, internet-open function: checkov's own CKV_GCP_124 must fire.
            "functions.tf": [
                ("  # checkov:skip=CKV_GCP_124: Cloud Tasks", "  # Cloud Tasks"),
                # meet_events needs no skip because it is internal-only; opened, CKV_GCP_124 fires.
                (
                    'ingress_settings                 = "ALLOW_INTERNAL_ONLY"',
                    'ingress_settings                 = "ALLOW_ALL"',
                ),
            ],
            # The real push subscription without its OIDC token.
            "pubsub.tf": ("    oidc_token {", "    no_token {"),
            "extra.tf": ("", BAD_IAM + BAD_PUSH),
        }
    )
    failed = {(str(c["check_id"]), str(c["resource"])) for c in run_checkov(tools, broken).failed}
    expected = EXPECTED_FAILURES | {
        ("CKV_ATT_1", "google_cloud_tasks_queue.collect"),
        ("CKV_ATT_2", "google_cloud_scheduler_job.backfill"),
        ("CKV_GCP_124", "google_cloudfunctions2_function.collect"),
        ("CKV_GCP_124", "google_cloudfunctions2_function.meet_events"),
        ("CKV_ATT_7", "google_pubsub_subscription.meet_events_push"),
    }
    assert failed >= expected
    # Each custom policy fails exactly its own fixtures, nothing of the real configuration.
    assert {pair for pair in failed if pair[0] in CUSTOM_IDS} == {
        pair for pair in expected if pair[0] in CUSTOM_IDS
    }
