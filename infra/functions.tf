# The five gen2 functions, built from one source with five entry points (main.py), each running as
# its own service account (iam.tf) with only the settings and secrets its role reads
# (functions/config.py READS).
#
# Terraform creates them from var.source_bucket/var.source_object and owns their configuration
# (identity, settings, secrets, scaling, ingress, IAM). Later code deploys go through cloudbuild.yaml
# (gcloud functions deploy, which changes only the fields it is given), so the source and the labels
# gcloud adds are ignored here.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Function (and Cloud Run service) names allow no underscore: meet_events runs as NAME-meet-events.
  function_names = {
    ingest      = "${var.name_prefix}-ingest"
    api         = "${var.name_prefix}-api"
    collect     = "${var.name_prefix}-collect"
    backfill    = "${var.name_prefix}-backfill"
    meet_events = "${var.name_prefix}-meet-events"
  }

  # COLLECT_URL is needed by every function, collect included (it enqueues its own next poll),
  # API_URL by the api itself and MEET_EVENTS_URL by meet_events itself, so none can be read from
  # service_config[0].uri without a cycle. Cloud Run gives every service a deterministic URL
  # https://SERVICE-PROJECT_NUMBER.REGION.run.app, a gen2 function's service is named after the
  # function, and Cloud Run accepts ID tokens whose audience is this URL. BACKFILL_URL is read by
  # ingest too (the target of its calendar sync tasks), and the Calendar channels push to the
  # ingest URL, so those are deterministic as well: the address a channel was opened with stays
  # the same across deploys.
  run_url_suffix  = "${data.google_project.this.number}.${var.region}.run.app"
  ingest_url      = "https://${local.function_names.ingest}-${local.run_url_suffix}"
  collect_url     = "https://${local.function_names.collect}-${local.run_url_suffix}"
  backfill_url    = "https://${local.function_names.backfill}-${local.run_url_suffix}"
  api_url         = "https://${local.function_names.api}-${local.run_url_suffix}"
  meet_events_url = "https://${local.function_names.meet_events}-${local.run_url_suffix}"

  # CALENDAR_NOTIFICATIONS_URL (docs/api.md "ingest"): Google Calendar pushes the organizers' channel
  # notifications to the public ingest, which checks them against the stored channel and hands the
  # sync to backfill.
  calendar_notifications_url = "${local.ingest_url}/calendar/notifications"

  # docs/settings.md, split by what each role reads (functions/config.py READS): no function gets a
  # setting it does not read. WEBHOOK_SECRET and ERASURE_KEY come from Secret Manager
  # (secret_environment_variables). The stand-in settings (FIRESTORE_EMULATOR_HOST,
  # CLOUD_TASKS_EMULATOR_HOST, REPORTS_API_ENDPOINT, OIDC_CERTS_URL) are never set in production.
  store_and_queue_env = {
    GOOGLE_CLOUD_PROJECT  = var.project_id
    TASKS_LOCATION        = var.region
    TASKS_QUEUE           = google_cloud_tasks_queue.collect.name
    COLLECT_URL           = local.collect_url
    TASKS_SERVICE_ACCOUNT = google_service_account.tasks.email
  }

  # Where Workspace APIs are called (collect, backfill, api, meet_events): the delegation identity
  # the function signs as, and the privacy modes applied to what those APIs return. Never in the
  # public ingest.
  reports_env = {
    REPORTS_ADMIN_SUBJECT      = var.reports_admin_subject
    REPORTS_CREDENTIALS        = "keyless"
    DELEGATION_SERVICE_ACCOUNT = google_service_account.delegation.email
    IP_ADDRESS_MODE            = var.ip_address_mode
    LOCATION_MODE              = var.location_mode
  }

  # The api checks its callers' ID tokens: audience API_URL, email in API_PRINCIPALS.
  api_env = {
    API_URL        = local.api_url
    API_PRINCIPALS = join(",", var.api_principals)
  }

  # The backfill accepts the scheduler's OIDC tokens for its own URL (and the tasks identity's, for
  # its slices and the calendar syncs ingest enqueues).
  backfill_env = {
    BACKFILL_URL              = local.backfill_url
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.scheduler.email
  }

  # ingest turns an accepted Calendar notification into a task to backfill (OIDC token of the
  # tasks identity, audience BACKFILL_URL): backfill reads the calendar's changes impersonating
  # the organizer, so ingest itself never signs as the delegation identity.
  ingest_env = {
    BACKFILL_URL = local.backfill_url
  }

  # The Calendar side, read by backfill (the daily run opens, renews and stops the organizers'
  # channels, addressed to this URL, and syncs their calendars).
  calendar_env = {
    CALENDAR_NOTIFICATIONS_URL = local.calendar_notifications_url
  }

  # The Meet side, read by backfill (the daily run creates, renews and closes the organizers'
  # Workspace Events subscriptions, published to this topic) and by meet_events (it renews or
  # re-creates them on lifecycle events, and reads conferences as an organizer).
  workspace_events_env = {
    WORKSPACE_EVENTS_TOPIC = google_pubsub_topic.workspace_events.id # projects/P/topics/T
  }

  # ORGANIZERS and ORGANIZER_GROUP only when set (unset: no subscription is kept for anyone).
  organizers_env = { for name, value in { ORGANIZERS = join(",", var.organizers), ORGANIZER_GROUP = var.organizer_group } : name => value if value != null && value != "" }

  # meet_events checks the Pub/Sub push OIDC tokens: audience MEET_EVENTS_URL, email the push
  # identity (pubsub.tf).
  meet_events_env = {
    MEET_EVENTS_URL             = local.meet_events_url
    PUBSUB_PUSH_SERVICE_ACCOUNT = google_service_account.pubsub_push.email
  }

  # RETENTION_DAYS only when set (unset keeps attendance until erased).
  retention_env = { for name, days in { RETENTION_DAYS = var.retention_days } : name => tostring(days) if days != null }

  # The timing overrides: BACKFILL_LOOKBACK_S is read by the backfill alone.
  timing_env = { for name, value in var.app_settings : name => value if name != "BACKFILL_LOOKBACK_S" }

  function_env = {
    ingest      = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.ingest_env)
    api         = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env, local.api_env)
    collect     = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env)
    backfill    = merge(var.app_settings, local.retention_env, local.store_and_queue_env, local.reports_env, local.workspace_events_env, local.organizers_env, local.calendar_env, local.backfill_env)
    meet_events = merge(local.timing_env, local.retention_env, local.store_and_queue_env, local.reports_env, local.workspace_events_env, local.organizers_env, local.meet_events_env)
  }
}

resource "google_cloudfunctions2_function" "ingest" {
  # checkov:skip=CKV_GCP_124: ingest is the public webhook by design; every request is HMAC-verified or, for Calendar notifications, checked against the stored channel's token (docs/api.md "ingest"), and max instances are capped
  project     = var.project_id
  name        = local.function_names.ingest
  location    = var.region
  description = "Public: HMAC-signed webhook (meeting ended) and Google Calendar push notifications (per-channel token)."

  build_config {
    runtime         = "python313"
    entry_point     = "ingest"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.ingest.email
    ingress_settings                 = "ALLOW_ALL" # the meeting platform and Google Calendar call it from the internet
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = var.ingest_max_instances
    max_instance_request_concurrency = 1
    available_memory                 = "512Mi"
    timeout_seconds                  = 120
    environment_variables            = local.function_env.ingest

    secret_environment_variables {
      key        = "WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.webhook.secret_id
      version    = var.webhook_secret_version
    }

    secret_environment_variables {
      key        = "ERASURE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.erasure_key.secret_id
      version    = var.erasure_key_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.function_datastore,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_service_account_iam_member.function_acts_as_tasks,
    google_secret_manager_secret_iam_member.function_reads_erasure_key,
    google_secret_manager_secret_iam_member.ingest_reads_webhook_secret,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_reads_source_bucket,
  ]
}

resource "google_cloudfunctions2_function" "api" {
  # checkov:skip=CKV_GCP_124: operators and back ends call the api from outside Google Cloud; Cloud Run IAM admits only var.api_principals and the app checks the ID token again
  project     = var.project_id
  name        = local.function_names.api
  location    = var.region
  description = "Private operator API (ID tokens of api_principals): manual sync, meeting read-back, erasure."

  build_config {
    runtime         = "python313"
    entry_point     = "api"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.api.email
    # Callers are outside Google (an operator's laptop, a back end on another cloud), so ingress is
    # open and access is closed by IAM: only var.api_principals hold run.invoker.
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = 5
    max_instance_request_concurrency = 1
    available_memory                 = "512Mi"
    timeout_seconds                  = 600 # an erasure rewrites every meeting the person attended
    environment_variables            = local.function_env.api

    secret_environment_variables {
      key        = "ERASURE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.erasure_key.secret_id
      version    = var.erasure_key_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.function_datastore,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_service_account_iam_member.function_acts_as_tasks,
    google_secret_manager_secret_iam_member.function_reads_erasure_key,
    google_service_account_iam_member.api_signs_as_delegation,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_reads_source_bucket,
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
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.collect.email
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
    environment_variables            = local.function_env.collect

    secret_environment_variables {
      key        = "ERASURE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.erasure_key.secret_id
      version    = var.erasure_key_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.function_datastore,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_service_account_iam_member.function_acts_as_tasks,
    google_secret_manager_secret_iam_member.function_reads_erasure_key,
    google_service_account_iam_member.collect_signs_as_delegation,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_reads_source_bucket,
  ]
}

resource "google_cloudfunctions2_function" "backfill" {
  # checkov:skip=CKV_GCP_124: Cloud Scheduler is not an internal ingress source without a VPC-SC perimeter; IAM admits only the scheduler account
  project     = var.project_id
  name        = local.function_names.backfill
  location    = var.region
  description = "Daily run: Reports scan for late data, unannounced meetings and overdue chains; Meet subscriptions, Calendar channels and syncs; retention."

  build_config {
    runtime         = "python313"
    entry_point     = "backfill"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.backfill.email
    # Cloud Scheduler is not an "internal" source either; only the scheduler account (the run) and
    # the tasks account (its slices and the calendar syncs) may invoke.
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = 3
    max_instance_request_concurrency = 1
    available_memory                 = "1Gi"
    timeout_seconds                  = 900
    environment_variables            = local.function_env.backfill

    secret_environment_variables {
      key        = "ERASURE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.erasure_key.secret_id
      version    = var.erasure_key_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.function_datastore,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_service_account_iam_member.function_acts_as_tasks,
    google_secret_manager_secret_iam_member.function_reads_erasure_key,
    google_service_account_iam_member.backfill_signs_as_delegation,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_reads_source_bucket,
  ]
}

resource "google_cloudfunctions2_function" "meet_events" {
  project     = var.project_id
  name        = local.function_names.meet_events
  location    = var.region
  description = "Private Pub/Sub push endpoint (OIDC of the push account): Workspace Events for the organizers' Meet conferences."

  build_config {
    runtime         = "python313"
    entry_point     = "meet_events"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.meet_events.email
    # Only Pub/Sub calls it. Cloud Run counts a push from a subscription of the same project to the
    # default run.app URL as internal (Cloud Run "Restrict ingress"), so ingress is closed to the
    # internet as well as by IAM: only the push account holds run.invoker, and the app checks the
    # OIDC token's email and audience again (docs/api.md "meet_events").
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = 10 # Pub/Sub push slows down on its own when the endpoint answers 429/5xx
    max_instance_request_concurrency = 1
    available_memory                 = "512Mi"
    timeout_seconds                  = 300 # at most the push subscription's ack deadline (pubsub.tf)
    environment_variables            = local.function_env.meet_events

    secret_environment_variables {
      key        = "ERASURE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.erasure_key.secret_id
      version    = var.erasure_key_version
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.function_datastore,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_service_account_iam_member.function_acts_as_tasks,
    google_secret_manager_secret_iam_member.function_reads_erasure_key,
    google_service_account_iam_member.meet_events_signs_as_delegation,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_reads_source_bucket,
  ]
}

# Invokers, on each function's Cloud Run service (gen2 functions are invoked through Cloud Run).

# The only public endpoint: every webhook is HMAC-verified by the app, every Calendar notification
# checked against the channel this system opened (docs/api.md "ingest"). Google Calendar pushes without
# any Google identity, so the route cannot be closed by IAM.
resource "google_cloud_run_v2_service_iam_member" "ingest_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.ingest.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The api admits exactly the principals of var.api_principals (the app checks API_PRINCIPALS again).
resource "google_cloud_run_v2_service_iam_member" "api_invokers" {
  for_each = toset(var.api_principals)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.api.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${each.value}"
}

resource "google_cloud_run_v2_service_iam_member" "collect_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.collect.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks.email}"
}

# The scheduler starts the daily run; the tasks identity delivers the run's slices (one task per
# time slice, fanned out by the run itself) and the calendar syncs ingest enqueues for accepted
# Calendar notifications.
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

# Pub/Sub pushes Workspace Events with OIDC tokens of the push account (pubsub.tf), the only
# account that may invoke meet_events (the app checks PUBSUB_PUSH_SERVICE_ACCOUNT again).
resource "google_cloud_run_v2_service_iam_member" "meet_events_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.meet_events.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_push.email}"
}
