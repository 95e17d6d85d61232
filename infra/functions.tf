# The three gen2 functions, built from one source with three entry points.
#
# Terraform creates them from var.source_bucket/var.source_object and owns their configuration
# (identity, settings, scaling, ingress, IAM). Later code deploys go through cloudbuild.yaml
# (gcloud functions deploy), so the source and the labels gcloud adds are ignored here.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  function_names = {
    ingest   = "${var.name_prefix}-ingest"
    collect  = "${var.name_prefix}-collect"
    backfill = "${var.name_prefix}-backfill"
  }

  # COLLECT_URL is needed by all three functions, collect included (it enqueues its own next poll),
  # so it cannot be read from collect's service_config[0].uri without a cycle. Cloud Run gives every
  # service a deterministic URL https://SERVICE-PROJECT_NUMBER.REGION.run.app, and a gen2
  # function's service is named after the function; Cloud Run accepts OIDC tokens whose audience is
  # this URL.
  run_url_suffix = "${data.google_project.this.number}.${var.region}.run.app"
  collect_url    = "https://${local.function_names.collect}-${local.run_url_suffix}"
  backfill_url   = "https://${local.function_names.backfill}-${local.run_url_suffix}"

  # CONTRACT §5. WEBHOOK_SECRET comes from Secret Manager (secret_environment_variables below).
  # The emulator and stand-in settings (FIRESTORE_EMULATOR_HOST, CLOUD_TASKS_EMULATOR_HOST,
  # REPORTS_API_ENDPOINT, OIDC_CERTS_URL) must never be set in production.
  app_env = {
    GOOGLE_CLOUD_PROJECT  = var.project_id
    TASKS_LOCATION        = var.region
    TASKS_QUEUE           = google_cloud_tasks_queue.collect.name
    COLLECT_URL           = local.collect_url
    TASKS_SERVICE_ACCOUNT = google_service_account.tasks.email
    # The backfill function accepts only the scheduler's OIDC tokens, for its own URL.
    BACKFILL_URL              = local.backfill_url
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.scheduler.email
    REPORTS_ADMIN_SUBJECT     = var.reports_admin_subject
    REPORTS_CREDENTIALS       = "keyless"
    IP_ADDRESS_MODE           = var.ip_address_mode
  }

}

resource "google_cloudfunctions2_function" "ingest" {
  # checkov:skip=CKV_GCP_124: ingest is the public webhook by design; every request is HMAC-verified (CONTRACT §4) and max instances are capped
  project     = var.project_id
  name        = local.function_names.ingest
  location    = var.region
  description = "Public, HMAC-signed webhook: meeting ended, manual sync, meeting read-back."

  build_config {
    runtime         = "python313"
    entry_point     = "ingest"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.runtime.email
    ingress_settings                 = "ALLOW_ALL" # the meeting platform calls it from the internet
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = var.ingest_max_instances
    max_instance_request_concurrency = 1
    available_memory                 = "512Mi"
    timeout_seconds                  = 120
    environment_variables            = merge(var.app_settings, local.app_env)

    secret_environment_variables {
      key        = "WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.webhook.secret_id
      version    = var.webhook_secret_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime,
    google_service_account_iam_member.runtime_token_creator_on_itself,
    google_service_account_iam_member.runtime_acts_as_tasks,
    google_secret_manager_secret_iam_member.runtime_reads_webhook_secret,
  ]
}

resource "google_cloudfunctions2_function" "collect" {
  # checkov:skip=CKV_GCP_124: Cloud Tasks is not an internal ingress source without a VPC-SC perimeter; IAM admits only the tasks account
  project     = var.project_id
  name        = local.function_names.collect
  location    = var.region
  description = "Cloud Tasks worker: polls the Reports API for one meeting and schedules the next poll."

  build_config {
    runtime         = "python313"
    entry_point     = "collect"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    # Cloud Tasks is not an "internal" source for Cloud Run ingress, so ingress stays open and
    # access is closed by IAM: only the tasks account holds run.invoker (and the app checks the
    # OIDC token's email and audience again).
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = var.collect_max_instances
    max_instance_request_concurrency = 1
    available_memory                 = "512Mi"
    timeout_seconds                  = 300
    environment_variables            = merge(var.app_settings, local.app_env)

    secret_environment_variables {
      key        = "WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.webhook.secret_id
      version    = var.webhook_secret_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime,
    google_service_account_iam_member.runtime_token_creator_on_itself,
    google_service_account_iam_member.runtime_acts_as_tasks,
    google_secret_manager_secret_iam_member.runtime_reads_webhook_secret,
  ]
}

resource "google_cloudfunctions2_function" "backfill" {
  # checkov:skip=CKV_GCP_124: Cloud Scheduler is not an internal ingress source without a VPC-SC perimeter; IAM admits only the scheduler account
  project     = var.project_id
  name        = local.function_names.backfill
  location    = var.region
  description = "Daily Reports scan: late data, unannounced meetings, overdue chains."

  build_config {
    runtime         = "python313"
    entry_point     = "backfill"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    # Cloud Scheduler is not an "internal" source either; only the scheduler account may invoke.
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = 3
    max_instance_request_concurrency = 1
    available_memory                 = "1Gi"
    timeout_seconds                  = 900
    environment_variables            = merge(var.app_settings, local.app_env)

    secret_environment_variables {
      key        = "WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.webhook.secret_id
      version    = var.webhook_secret_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime,
    google_service_account_iam_member.runtime_token_creator_on_itself,
    google_service_account_iam_member.runtime_acts_as_tasks,
    google_secret_manager_secret_iam_member.runtime_reads_webhook_secret,
  ]
}

# Invokers, on each function's Cloud Run service (gen2 functions are invoked through Cloud Run).

# The only public endpoint: every request is HMAC-verified by the app (CONTRACT §4).
resource "google_cloud_run_v2_service_iam_member" "ingest_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.ingest.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "collect_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.collect.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks.email}"
}

# The scheduler starts the daily run; the tasks identity delivers the run's slices (one task per
# time slice, fanned out by the run itself).
resource "google_cloud_run_v2_service_iam_member" "backfill_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.backfill.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_v2_service_iam_member" "backfill_slice_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.backfill.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks.email}"
}
