"""The Terraform parses, keeps its security properties, and the checks catch a broken copy.

Every property of tests/infra/terraform.py has at least one mutation below: a copy of infra/ broken
in one way, on which the property must report a problem (``test_property_check_catches_a_breach``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.conftest import Edits
from tests.infra.terraform import (
    ENTRY_POINTS,
    INFRA,
    PROPERTIES,
    load_infra,
    main_entry_points,
    required_settings,
)

MakeCopy = Callable[[Edits], Path]


def test_every_tf_file_parses() -> None:
    infra = load_infra()
    assert len(infra.text) >= 8
    assert infra.of_type("google_cloudfunctions2_function")


def test_every_function_is_an_entry_point_of_main() -> None:
    assert set(ENTRY_POINTS) <= main_entry_points()


def test_required_settings_are_read_from_config() -> None:
    # The env-var properties follow functions/config.py instead of a list copied here.
    assert {"GOOGLE_CLOUD_PROJECT", "COLLECT_URL", "WEBHOOK_SECRET", "ERASURE_KEY"} <= set(
        required_settings("ingest")
    )
    assert {"API_URL", "API_PRINCIPALS"} <= set(required_settings("api"))
    assert "WEBHOOK_SECRET" not in required_settings("collect")
    assert {"MEET_EVENTS_URL", "PUBSUB_PUSH_SERVICE_ACCOUNT", "WORKSPACE_EVENTS_TOPIC"} <= set(
        required_settings("meet_events")
    )


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_property_holds(name: str) -> None:
    assert PROPERTIES[name](load_infra()) == []


def test_firestore_indexes_json_is_deployable() -> None:
    document = json.loads((INFRA / "firestore.indexes.json").read_text("utf-8"))
    for index in document["indexes"]:
        assert index["queryScope"] in ("COLLECTION", "COLLECTION_GROUP")
        assert len(index["fields"]) >= 2
        assert {f["order"] for f in index["fields"]} <= {"ASCENDING", "DESCENDING"}
    keys = set()
    for override in document["fieldOverrides"]:
        keys.add(f"{override['collectionGroup']}-{override['fieldPath']}")
        assert isinstance(override.get("ttl", False), bool)
        for index in override["indexes"]:
            assert index["queryScope"] in ("COLLECTION", "COLLECTION_GROUP")
            assert ("order" in index) != ("arrayConfig" in index), index
            assert index.get("order", "ASCENDING") in ("ASCENDING", "DESCENDING")
            assert index.get("arrayConfig", "CONTAINS") == "CONTAINS"
    assert len(keys) == len(document["fieldOverrides"]), "an override is declared twice"


def test_the_existing_ttl_policy_moves_instead_of_being_recreated() -> None:
    # google_firestore_field.webhook_deliveries_ttl became an instance of the JSON-driven resource.
    infra = load_infra()
    assert {
        "from": "${google_firestore_field.webhook_deliveries_ttl}",
        "to": '${google_firestore_field.overrides["webhook_deliveries-expire_at"]}',
    } in infra.moved


SA_KEY = 'resource "google_service_account_key" "leak" {\n  service_account_id = "x"\n}\n'


def _extra(resource: str, name: str, body: str) -> Edits:
    """A new file extra.tf holding one resource."""
    return {"extra.tf": ("", f'resource "{resource}" "{name}" {{\n{body}\n}}\n')}


COLLECT_SA = "serviceAccount:${google_service_account.collect.email}"
INGEST_SA = "serviceAccount:${google_service_account.ingest.email}"

MUTATIONS: dict[str, tuple[str, Edits]] = {
    "service account key": ("no_service_account_keys", {"leak.tf": ("", SA_KEY)}),
    # --- broad roles
    "editor role": (
        "no_broad_roles",
        {
            "iam.tf": (
                'role    = "roles/logging.logWriter"\n  member  = "serviceAccount:${each.value.email}"',
                'role    = "roles/editor"\n  member  = "serviceAccount:${each.value.email}"',
            )
        },
    ),
    "owner in a local": (
        "no_broad_roles",
        {"iam.tf": ("  build_member = ", '  admin_role   = "roles/owner"\n  build_member = ')},
    ),
    "datastore.owner": (
        "no_broad_roles",
        {"iam.tf": ('role    = "roles/datastore.user"', 'role    = "roles/datastore.owner"')},
    ),
    "secretmanager.admin": (
        "no_broad_roles",
        {
            "iam.tf": (
                'role      = "roles/secretmanager.secretAccessor"\n  member    = "serviceAccount:${google_service_account.ingest.email}"',
                'role      = "roles/secretmanager.admin"\n  member    = "serviceAccount:${google_service_account.ingest.email}"',
            )
        },
    ),
    "token creator project-wide": (
        "no_broad_roles",
        _extra(
            "google_project_iam_member",
            "wide",
            f'  project = var.project_id\n  role = "roles/iam.serviceAccountTokenCreator"\n  member = "{COLLECT_SA}"',
        ),
    ),
    "actAs project-wide": (
        "no_broad_roles",
        _extra(
            "google_project_iam_member",
            "wide",
            '  project = var.project_id\n  role = "roles/iam.serviceAccountUser"\n  member = "user:ops@example.com"',
        ),
    ),
    "secret accessor project-wide": (
        "no_broad_roles",
        _extra(
            "google_project_iam_member",
            "wide",
            f'  project = var.project_id\n  role = "roles/secretmanager.secretAccessor"\n  member = "{INGEST_SA}"',
        ),
    ),
    # --- public access and invokers
    "collect public": (
        "only_ingest_is_public",
        {
            "functions.tf": (
                'name     = google_cloudfunctions2_function.collect.name\n  role     = "roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.tasks.email}"',
                'name     = google_cloudfunctions2_function.collect.name\n  role     = "roles/run.invoker"\n  member   = "allUsers"',
            )
        },
    ),
    "collect public (invoker check)": (
        "collect_invoked_only_by_tasks",
        {
            "functions.tf": (
                'name     = google_cloudfunctions2_function.collect.name\n  role     = "roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.tasks.email}"',
                'name     = google_cloudfunctions2_function.collect.name\n  role     = "roles/run.invoker"\n  member   = "allUsers"',
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
    "api public": (
        "api_invoked_only_by_its_principals",
        {"functions.tf": ('member   = "serviceAccount:${each.value}"', 'member   = "allUsers"')},
    ),
    "api public (public check)": (
        "only_ingest_is_public",
        {"functions.tf": ('member   = "serviceAccount:${each.value}"', 'member   = "allUsers"')},
    ),
    "api principals optional": (
        "api_invoked_only_by_its_principals",
        {
            "variables.tf": (
                "  type        = list(string)\n\n  validation {\n    condition     = length(var.api_principals) > 0",
                "  type        = list(string)\n  default     = []\n\n  validation {\n    condition     = length(var.api_principals) > 0",
            )
        },
    ),
    # --- identities
    "two functions share an account": (
        "each_function_has_its_own_account",
        {
            "functions.tf": (
                "service_account_email = google_service_account.collect.email",
                "service_account_email = google_service_account.ingest.email",
            )
        },
    ),
    "a function runs as the delegation identity": (
        "delegation_identity_holds_nothing",
        {
            "functions.tf": (
                "service_account_email = google_service_account.api.email",
                "service_account_email = google_service_account.delegation.email",
            )
        },
    ),
    "the delegation identity holds a role": (
        "delegation_identity_holds_nothing",
        _extra(
            "google_project_iam_member",
            "delegation_logs",
            '  project = var.project_id\n  role = "roles/logging.logWriter"\n  member = "serviceAccount:${google_service_account.delegation.email}"',
        ),
    ),
    "DELEGATION_SERVICE_ACCOUNT names a function": (
        "each_function_has_its_own_account",
        {
            "functions.tf": (
                "DELEGATION_SERVICE_ACCOUNT = google_service_account.delegation.email",
                "DELEGATION_SERVICE_ACCOUNT = google_service_account.collect.email",
            )
        },
    ),
    "a function built by a function's account": (
        "functions_built_right",
        {
            "functions.tf": (
                "service_account = google_service_account.build.id",
                "service_account = google_service_account.ingest.id",
            )
        },
    ),
    # --- roles of the function accounts
    "extra function role": (
        "function_roles_are_least",
        {
            "iam.tf": (
                'role    = "roles/logging.logWriter"\n  member  = "serviceAccount:${each.value.email}"',
                'role    = "roles/monitoring.metricWriter"\n  member  = "serviceAccount:${each.value.email}"',
            )
        },
    ),
    "enqueuer on the project": (
        "function_roles_are_least",
        _extra(
            "google_project_iam_member",
            "enqueue",
            f'  project = var.project_id\n  role = "roles/cloudtasks.enqueuer"\n  member = "{COLLECT_SA}"',
        ),
    ),
    "functions act as the scheduler": (
        "function_roles_are_least",
        {
            "iam.tf": (
                'service_account_id = google_service_account.tasks.name\n  role               = "roles/iam.serviceAccountUser"\n  member             = "serviceAccount:${each.value.email}"',
                'service_account_id = google_service_account.scheduler.name\n  role               = "roles/iam.serviceAccountUser"\n  member             = "serviceAccount:${each.value.email}"',
            )
        },
    ),
    # --- token creator
    "token creator for the public function": (
        "token_creator_only_on_delegation",
        _extra(
            "google_service_account_iam_member",
            "ingest_signs",
            '  service_account_id = google_service_account.delegation.name\n  role = "roles/iam.serviceAccountTokenCreator"\n'
            f'  member = "{INGEST_SA}"',
        ),
    ),
    "token creator on itself": (
        "token_creator_only_on_delegation",
        {
            "iam.tf": (
                'resource "google_service_account_iam_member" "collect_signs_as_delegation" {\n  service_account_id = google_service_account.delegation.name',
                'resource "google_service_account_iam_member" "collect_signs_as_delegation" {\n  service_account_id = google_service_account.collect.name',
            )
        },
    ),
    "api cannot sign as the delegation identity": (
        "token_creator_only_on_delegation",
        {
            "iam.tf": (
                'member             = "serviceAccount:${google_service_account.api.email}"',
                'member             = "user:someone@example.com"',
            )
        },
    ),
    # --- secrets
    "webhook secret readable by collect": (
        "secrets_only_where_read",
        {
            "iam.tf": (
                'role      = "roles/secretmanager.secretAccessor"\n  member    = "serviceAccount:${google_service_account.ingest.email}"',
                'role      = "roles/secretmanager.secretAccessor"\n  member    = "serviceAccount:${google_service_account.collect.email}"',
            )
        },
    ),
    "webhook secret mounted into collect": (
        "secrets_only_where_read",
        {
            "functions.tf": (
                "    environment_variables            = local.function_env.collect\n",
                "    environment_variables            = local.function_env.collect\n\n"
                "    secret_environment_variables {\n"
                '      key        = "WEBHOOK_SECRET"\n'
                "      project_id = var.project_id\n"
                "      secret     = google_secret_manager_secret.webhook.secret_id\n"
                "      version    = var.webhook_secret_version\n"
                "    }\n",
            )
        },
    ),
    "erasure key not mounted into api": (
        "secrets_only_where_read",
        {
            "functions.tf": (
                '    environment_variables            = local.function_env.api\n\n    secret_environment_variables {\n      key        = "ERASURE_KEY"',
                '    environment_variables            = local.function_env.api\n\n    secret_environment_variables {\n      key        = "OTHER_KEY"',
            )
        },
    ),
    "functions read the webhook secret instead of the erasure key": (
        "secrets_only_where_read",
        {
            "iam.tf": (
                'secret_id = google_secret_manager_secret.erasure_key.secret_id\n  role      = "roles/secretmanager.secretAccessor"\n  member    = "serviceAccount:${each.value.email}"',
                'secret_id = google_secret_manager_secret.webhook.secret_id\n  role      = "roles/secretmanager.secretAccessor"\n  member    = "serviceAccount:${each.value.email}"',
            )
        },
    ),
    "secret as plain env": (
        "secrets_only_where_read",
        {
            "functions.tf": (
                "    COLLECT_URL           = local.collect_url\n",
                '    COLLECT_URL           = local.collect_url\n    ERASURE_KEY           = "x"\n',
            )
        },
    ),
    # --- settings
    "missing COLLECT_URL": (
        "functions_have_settings",
        {"functions.tf": ("    COLLECT_URL           = local.collect_url\n", "")},
    ),
    "emulator in production": (
        "functions_have_settings",
        {
            "functions.tf": (
                "    COLLECT_URL           = local.collect_url\n",
                '    COLLECT_URL           = local.collect_url\n    FIRESTORE_EMULATOR_HOST = "x:1"\n',
            )
        },
    ),
    "backfill lookback in ingest": (
        "functions_have_settings",
        {
            "functions.tf": (
                "ingest      = merge(local.timing_env,",
                "ingest      = merge(var.app_settings,",
            )
        },
    ),
    "Reports settings in ingest": (
        "functions_have_settings",
        {
            "functions.tf": (
                "ingest      = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.ingest_env)",
                "ingest      = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.ingest_env, local.reports_env)",
            )
        },
    ),
    "API settings in collect": (
        "functions_have_settings",
        {
            "functions.tf": (
                "collect     = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env)",
                "collect     = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env, local.api_env)",
            )
        },
    ),
    "backfill without its URL": (
        "functions_have_settings",
        {"functions.tf": ("    BACKFILL_URL              = local.backfill_url\n", "")},
    ),
    "wrong entry point": (
        "functions_built_right",
        {"functions.tf": ('entry_point     = "backfill"', 'entry_point     = "collect"')},
    ),
    # --- the build account
    "build account writes every repository": (
        "build_account_is_least",
        {
            "iam.tf": (
                '  condition {\n    title       = "gcf-artifacts-only"',
                '  removed_condition {\n    title       = "gcf-artifacts-only"',
            )
        },
    ),
    "build account acts as the tasks identity": (
        "build_account_is_least",
        {
            "iam.tf": (
                'resource "google_service_account_iam_member" "build_acts_as_itself" {\n  service_account_id = google_service_account.build.name',
                'resource "google_service_account_iam_member" "build_acts_as_itself" {\n  service_account_id = google_service_account.tasks.name',
            )
        },
    ),
    "operators act as a function": (
        "build_account_is_least",
        {
            "iam.tf": (
                'resource "google_service_account_iam_member" "operators_act_as_tasks" {\n  for_each = toset(var.operators)\n\n  service_account_id = google_service_account.tasks.name',
                'resource "google_service_account_iam_member" "operators_act_as_tasks" {\n  for_each = toset(var.operators)\n\n  service_account_id = google_service_account.collect.name',
            )
        },
    ),
    # --- the rest
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
    "Firestore access unconditioned": (
        "firestore_access_conditioned",
        {
            "iam.tf": (
                'firestore_condition = "resource.name == \\"${local.firestore_database}\\""',
                'firestore_condition = "true"',
            )
        },
    ),
    "Firestore access to every database": (
        "firestore_access_conditioned",
        {
            "iam.tf": (
                "/databases/${google_firestore_database.default.name}",
                '/databases/\\" || true || \\"',
            )
        },
    ),
    "no TTL on participants": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                '"collectionGroup": "participants",\n      "fieldPath": "expire_at",\n      "ttl": true',
                '"collectionGroup": "participants",\n      "fieldPath": "expire_at",\n      "ttl": false',
            )
        },
    ),
    "no TTL on Meet event deliveries": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                '"collectionGroup": "meet_deliveries",\n      "fieldPath": "expire_at",\n      "ttl": true',
                '"collectionGroup": "meet_deliveries",\n      "fieldPath": "expire_at",\n      "ttl": false',
            )
        },
    ),
    "TTL on erasures": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                '  "fieldOverrides": [\n',
                '  "fieldOverrides": [\n    {"collectionGroup": "erasures", "fieldPath": "expire_at", "ttl": true, "indexes": []},\n',
            )
        },
    ),
    "no collection-group index on participant_key": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                ',\n        {"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}',
                "",
            )
        },
    ),
    "no collection-group index on revisions.participant_keys": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                ',\n        {"arrayConfig": "CONTAINS", "queryScope": "COLLECTION_GROUP"}',
                "",
            )
        },
    ),
    "TTL not taken from the file": (
        "firestore_retention_and_erasure",
        {
            "firestore.tf": (
                'for_each = lookup(each.value, "ttl", false) ? [true] : []',
                "for_each = []",
            )
        },
    ),
    "no TTL on webhook deliveries": (
        "webhook_deliveries_expire",
        {
            "firestore.indexes.json": (
                '"collectionGroup": "webhook_deliveries",\n      "fieldPath": "expire_at",\n      "ttl": true',
                '"collectionGroup": "webhook_deliveries",\n      "fieldPath": "expire_at",\n      "ttl": false',
            )
        },
    ),
    "indexes not from the file": (
        "firestore_indexes_from_json",
        {
            "firestore.tf": (
                "for index in local.firestore_document.indexes :",
                "for index in [] :",
            )
        },
    ),
    "billing index missing": (
        "firestore_indexes_from_json",
        {
            "firestore.indexes.json": (
                '{"fieldPath": "email", "order": "ASCENDING"},\n        ',
                "",
            )
        },
    ),
    "retention below 62 days": (
        "privacy_settings_validated",
        {"variables.tf": ("var.retention_days >= 62", "var.retention_days >= 30")},
    ),
    "retention on by default": (
        "privacy_settings_validated",
        {
            "variables.tf": (
                "  type        = number\n  default     = null",
                "  type        = number\n  default     = 30",
            )
        },
    ),
    "location mode unchecked": (
        "privacy_settings_validated",
        {"variables.tf": ('contains(["full", "country", "none"], var.location_mode)', "true")},
    ),
    "erasure key follows latest": (
        "privacy_settings_validated",
        {"variables.tf": ('  default     = "1"\n', '  default     = "latest"\n')},
    ),
    "iamcredentials API off": (
        "apis_enabled",
        {
            "apis.tf": (
                '    "iamcredentials.googleapis.com",       # signBlob: keyless domain-wide delegation\n',
                "",
            )
        },
    ),
    "overdue chain alert lost": (
        "alerts_declared",
        {
            "monitoring.tf": (
                'jsonPayload.message=\\"overdue chain re-enqueued\\"',
                'jsonPayload.message=\\"x\\"',
            )
        },
    ),
    "bucket in backend": (
        "state_and_provider",
        {"backend.tf": ('prefix = "', 'bucket = "b"\n    prefix = "')},
    ),
    "api URL not output": (
        "outputs_declared",
        {"outputs.tf": ('output "api_url" {', 'output "api_address" {')},
    ),
    # --- the Meet side: meet_events, its push subscription and the topic
    "meet_events runs as collect's account": (
        "each_function_has_its_own_account",
        {
            "functions.tf": (
                "service_account_email = google_service_account.meet_events.email",
                "service_account_email = google_service_account.collect.email",
            )
        },
    ),
    "PUBSUB_PUSH_SERVICE_ACCOUNT names meet_events' own account": (
        "each_function_has_its_own_account",
        {
            "functions.tf": (
                "PUBSUB_PUSH_SERVICE_ACCOUNT = google_service_account.pubsub_push.email",
                "PUBSUB_PUSH_SERVICE_ACCOUNT = google_service_account.meet_events.email",
            )
        },
    ),
    "meet_events account id with an underscore": (
        "each_function_has_its_own_account",
        {"iam.tf": ('"${var.name_prefix}-meet-events"', '"${var.name_prefix}-meet_events"')},
    ),
    "meet_events function named with an underscore": (
        "functions_built_right",
        {
            "functions.tf": (
                'meet_events = "${var.name_prefix}-meet-events"',
                'meet_events = "${var.name_prefix}-meet_events"',
            )
        },
    ),
    "meet_events public": (
        "only_ingest_is_public",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.pubsub_push.email}"',
                'member   = "allUsers"',
            )
        },
    ),
    "meet_events public (invoker check)": (
        "meet_events_invoked_only_by_push",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.pubsub_push.email}"',
                'member   = "allUsers"',
            )
        },
    ),
    "the tasks account invokes meet_events": (
        "meet_events_invoked_only_by_push",
        {
            "functions.tf": (
                'member   = "serviceAccount:${google_service_account.pubsub_push.email}"',
                'member   = "serviceAccount:${google_service_account.tasks.email}"',
            )
        },
    ),
    "the push account holds another role": (
        "meet_events_invoked_only_by_push",
        _extra(
            "google_project_iam_member",
            "push_logs",
            '  project = var.project_id\n  role = "roles/logging.logWriter"\n  member = "serviceAccount:${google_service_account.pubsub_push.email}"',
        ),
    ),
    "push without OIDC": (
        "meet_events_push_authenticated",
        {"pubsub.tf": ("    oidc_token {", "    no_token {")},
    ),
    "push token for another audience": (
        "meet_events_push_authenticated",
        {
            "pubsub.tf": (
                "audience              = local.meet_events_url",
                "audience              = local.api_url",
            )
        },
    ),
    "push token signed as the tasks account": (
        "meet_events_push_authenticated",
        {
            "pubsub.tf": (
                "service_account_email = google_service_account.pubsub_push.email",
                "service_account_email = google_service_account.tasks.email",
            )
        },
    ),
    "push to another URL": (
        "meet_events_push_authenticated",
        {"pubsub.tf": ("push_endpoint = local.meet_events_url", "push_endpoint = local.api_url")},
    ),
    "push without dead-letter policy": (
        "meet_events_push_authenticated",
        {"pubsub.tf": ("  dead_letter_policy {", "  no_dead_letter_policy {")},
    ),
    "push without retry policy": (
        "meet_events_push_authenticated",
        {"pubsub.tf": ("  retry_policy {", "  no_retry_policy {")},
    ),
    "push subscription expires when idle": (
        "meet_events_push_authenticated",
        {
            "pubsub.tf": (
                '  expiration_policy {\n    ttl = ""\n  }\n\n  push_config',
                "  push_config",
            )
        },
    ),
    "ack deadline shorter than meet_events' timeout": (
        "meet_events_push_authenticated",
        {"pubsub.tf": ("ack_deadline_seconds       = 300", "ack_deadline_seconds       = 30")},
    ),
    "dead letters dropped (no subscription keeps them)": (
        "meet_events_push_authenticated",
        {
            "pubsub.tf": (
                "  topic   = google_pubsub_topic.workspace_events_dead_letter.id\n\n  ack_deadline_seconds       = 60",
                "  topic   = google_pubsub_topic.workspace_events.id\n\n  ack_deadline_seconds       = 60",
            )
        },
    ),
    "the Pub/Sub agent cannot acknowledge dead letters": (
        "meet_events_push_authenticated",
        {
            "pubsub.tf": (
                'role         = "roles/pubsub.subscriber"\n  member       = local.pubsub_service_agent',
                'role         = "roles/pubsub.viewer"\n  member       = local.pubsub_service_agent',
            )
        },
    ),
    "the Pub/Sub agent holds more": (
        "meet_events_push_authenticated",
        _extra(
            "google_pubsub_topic_iam_member",
            "agent_edits",
            '  project = var.project_id\n  topic = google_pubsub_topic.workspace_events.name\n  role = "roles/pubsub.editor"\n  member = local.pubsub_service_agent',
        ),
    ),
    "Meet cannot publish": (
        "meet_can_publish_workspace_events",
        {
            "pubsub.tf": (
                'topic   = google_pubsub_topic.workspace_events.name\n  role    = "roles/pubsub.publisher"\n  member  = local.meet_event_publisher',
                'topic   = google_pubsub_topic.workspace_events_dead_letter.name\n  role    = "roles/pubsub.publisher"\n  member  = local.meet_event_publisher',
            )
        },
    ),
    "ORGANIZERS not given to backfill": (
        "functions_get_every_deployment_setting",
        {
            "functions.tf": (
                "local.workspace_events_env, local.organizers_env, local.calendar_env, local.backfill_env",
                "local.workspace_events_env, local.calendar_env, local.backfill_env",
            )
        },
    ),
    "ORGANIZER_GROUP from nowhere": (
        "functions_get_every_deployment_setting",
        {"functions.tf": ("ORGANIZER_GROUP = var.organizer_group", 'ORGANIZER_GROUP = ""')},
    ),
    "MEET_EVENTS_URL missing": (
        "functions_have_settings",
        {"functions.tf": ("    MEET_EVENTS_URL             = local.meet_events_url\n", "")},
    ),
    "Meet settings in collect": (
        "functions_have_settings",
        {
            "functions.tf": (
                "collect     = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env)",
                "collect     = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env, local.workspace_events_env)",
            )
        },
    ),
    "WORKSPACE_EVENTS_TOPIC names the dead-letter topic": (
        "functions_have_settings",
        {
            "functions.tf": (
                "WORKSPACE_EVENTS_TOPIC = google_pubsub_topic.workspace_events.id",
                "WORKSPACE_EVENTS_TOPIC = google_pubsub_topic.workspace_events_dead_letter.id",
            )
        },
    ),
    "meet_events cannot sign as the delegation identity": (
        "token_creator_only_on_delegation",
        {
            "iam.tf": (
                'member             = "serviceAccount:${google_service_account.meet_events.email}"',
                'member             = "user:someone@example.com"',
            )
        },
    ),
    "a person signs as the push account": (
        "token_creator_only_on_delegation",
        {
            "pubsub.tf": (
                'service_account_id = google_service_account.pubsub_push.name\n  role               = "roles/iam.serviceAccountTokenCreator"\n  member             = local.pubsub_service_agent',
                'service_account_id = google_service_account.pubsub_push.name\n  role               = "roles/iam.serviceAccountTokenCreator"\n  member             = "user:someone@example.com"',
            )
        },
    ),
    "Meet REST API off": (
        "apis_enabled",
        {"apis.tf": ('    "meet.googleapis.com",', "")},
    ),
    "dead-letter alert on another metric": (
        "alerts_declared",
        {
            "monitoring.tf": (
                "subscription/num_undelivered_messages",
                "subscription/ack_message_count",
            )
        },
    ),
    "meet_events URL not output": (
        "outputs_declared",
        {"outputs.tf": ('output "meet_events_url" {', 'output "meet_events_address" {')},
    ),
    # --- the Calendar side: channels push to ingest, which hands the sync to backfill
    "Calendar API off": (
        "apis_enabled",
        {"apis.tf": ('    "calendar-json.googleapis.com",', "")},
    ),
    "calendar channels push to the api": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                'calendar_notifications_url = "${local.ingest_url}/calendar/notifications"',
                'calendar_notifications_url = "${local.api_url}/calendar/notifications"',
            )
        },
    ),
    "calendar channels push to ingest's webhook route": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                'calendar_notifications_url = "${local.ingest_url}/calendar/notifications"',
                'calendar_notifications_url = "${local.ingest_url}/"',
            )
        },
    ),
    "the ingest URL names another service": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                'ingest_url      = "https://${local.function_names.ingest}-',
                'ingest_url      = "https://${local.function_names.collect}-',
            )
        },
    ),
    "CALENDAR_NOTIFICATIONS_URL not given to backfill": (
        "calendar_notifications_reach_ingest",
        {"functions.tf": ("local.organizers_env, local.calendar_env, ", "local.organizers_env, ")},
    ),
    "CALENDAR_NOTIFICATIONS_URL not given to backfill (settings check)": (
        "functions_get_every_deployment_setting",
        {"functions.tf": ("local.organizers_env, local.calendar_env, ", "local.organizers_env, ")},
    ),
    "the CLI is told another address": (
        "calendar_notifications_reach_ingest",
        {
            "outputs.tf": (
                "value       = local.calendar_notifications_url",
                'value       = "${google_cloudfunctions2_function.ingest.service_config[0].uri}/calendar/notifications"',
            )
        },
    ),
    "calendar URL not output": (
        "outputs_declared",
        {
            "outputs.tf": (
                'output "calendar_notifications_url" {',
                'output "calendar_address" {',
            )
        },
    ),
    "ingest without BACKFILL_URL": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                "local.store_and_queue_env, local.ingest_env)",
                "local.store_and_queue_env)",
            )
        },
    ),
    "ingest without BACKFILL_URL (settings check)": (
        "functions_get_every_deployment_setting",
        {
            "functions.tf": (
                "local.store_and_queue_env, local.ingest_env)",
                "local.store_and_queue_env)",
            )
        },
    ),
    "ingest's calendar syncs target collect": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                "  ingest_env = {\n    BACKFILL_URL = local.backfill_url",
                "  ingest_env = {\n    BACKFILL_URL = local.collect_url",
            )
        },
    ),
    "ingest gets the delegation settings": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                "local.store_and_queue_env, local.ingest_env)",
                "local.store_and_queue_env, local.ingest_env, local.reports_env)",
            )
        },
    ),
    "ingest signs as the delegation identity to read calendars": (
        "calendar_notifications_reach_ingest",
        _extra(
            "google_service_account_iam_member",
            "ingest_reads_calendars",
            '  service_account_id = google_service_account.delegation.name\n  role = "roles/iam.serviceAccountTokenCreator"\n'
            f'  member = "{INGEST_SA}"',
        ),
    ),
    "ingest cannot act as the tasks identity": (
        "calendar_notifications_reach_ingest",
        {
            "iam.tf": (
                'resource "google_service_account_iam_member" "function_acts_as_tasks" {\n  for_each = local.function_accounts',
                'resource "google_service_account_iam_member" "function_acts_as_tasks" {\n  for_each = { for name, account in local.function_accounts : name => account if name != "ingest" }',
            )
        },
    ),
    "the tasks account cannot invoke backfill": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                'name     = google_cloudfunctions2_function.backfill.name\n  role     = "roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.tasks.email}"',
                'name     = google_cloudfunctions2_function.backfill.name\n  role     = "roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.scheduler.email}"',
            )
        },
    ),
    "ingest not public": (
        "calendar_notifications_reach_ingest",
        {
            "functions.tf": (
                '  member   = "allUsers"',
                '  member   = "serviceAccount:${google_service_account.tasks.email}"',
            )
        },
    ),
    "TTL on calendar channels": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                '  "fieldOverrides": [\n',
                '  "fieldOverrides": [\n    {"collectionGroup": "calendar_channels", "fieldPath": "expiration", "ttl": true, "indexes": []},\n',
            )
        },
    ),
    "TTL on calendar sync tokens": (
        "firestore_retention_and_erasure",
        {
            "firestore.indexes.json": (
                '  "fieldOverrides": [\n',
                '  "fieldOverrides": [\n    {"collectionGroup": "calendar_syncs", "fieldPath": "expire_at", "ttl": true, "indexes": []},\n',
            )
        },
    ),
}


def test_every_property_has_a_mutation() -> None:
    assert set(PROPERTIES) == {check for check, _ in MUTATIONS.values()}


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
