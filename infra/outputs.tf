output "ingest_url" {
  description = "The webhook URL to give the meeting platform (POST /, signed)."
  value       = google_cloudfunctions2_function.ingest.service_config[0].uri
}

output "api_url" {
  description = "API_URL: the private api's deterministic Cloud Run URL, to call and to use as the ID token's audience."
  value       = local.api_url
}

output "collect_url" {
  description = "COLLECT_URL: the worker's deterministic Cloud Run URL (task target and OIDC audience)."
  value       = local.collect_url
}

output "backfill_url" {
  description = "BACKFILL_URL: the backfill's deterministic Cloud Run URL (target and OIDC audience of the daily job, its slices and the calendar syncs ingest enqueues)."
  value       = local.backfill_url
}

output "calendar_notifications_url" {
  description = "CALENDAR_NOTIFICATIONS_URL: where the organizers' Calendar channels push (the deterministic ingest URL + /calendar/notifications). The CLI (subscriptions --ensure) must use this very value, as backfill does."
  value       = local.calendar_notifications_url
}

output "meet_events_url" {
  description = "MEET_EVENTS_URL: meet_events' deterministic Cloud Run URL (the push endpoint and the OIDC audience)."
  value       = local.meet_events_url
}

output "workspace_events_topic" {
  description = "WORKSPACE_EVENTS_TOPIC: projects/P/topics/T, the topic the organizers' Workspace Events subscriptions publish to."
  value       = google_pubsub_topic.workspace_events.id
}

output "pubsub_push_service_account_email" {
  description = "PUBSUB_PUSH_SERVICE_ACCOUNT: identity of the pushes' OIDC tokens."
  value       = google_service_account.pubsub_push.email
}

output "workspace_events_dead_letter_subscription" {
  description = "Pull subscription holding the Workspace Events messages meet_events failed on 10 times (gcloud pubsub subscriptions pull)."
  value       = google_pubsub_subscription.workspace_events_dead_letter.name
}

output "function_service_account_emails" {
  description = "The identity each function runs as (one account per function)."
  value       = { for name, account in local.function_accounts : name => account.email }
}

output "delegation_service_account_email" {
  description = "DELEGATION_SERVICE_ACCOUNT: the identity collect, backfill, api, meet_events and operators sign the delegation assertion as."
  value       = google_service_account.delegation.email
}

output "delegation_service_account_client_id" {
  description = "OAuth client id to authorise in the Workspace Admin console (Security > API controls > Domain-wide delegation) for exactly the scopes of infra/README.md section 2 (admin.reports.audit.readonly, meetings.space.readonly, admin.directory.user.readonly, admin.directory.group.member.readonly, calendar.events.readonly)."
  value       = google_service_account.delegation.unique_id
}

output "tasks_service_account_email" {
  description = "TASKS_SERVICE_ACCOUNT: identity of the tasks' OIDC tokens."
  value       = google_service_account.tasks.email
}

output "scheduler_service_account_email" {
  description = "Identity of the backfill job's OIDC token."
  value       = google_service_account.scheduler.email
}

output "build_service_account_email" {
  description = "The account cloudbuild.yaml runs as (serviceAccount:) and the functions are built by."
  value       = google_service_account.build.email
}

output "tasks_queue" {
  description = "TASKS_QUEUE (in TASKS_LOCATION = var.region)."
  value       = google_cloud_tasks_queue.collect.name
}

output "tasks_location" {
  description = "TASKS_LOCATION."
  value       = var.region
}

output "webhook_secret_id" {
  description = "Secret Manager secret holding WEBHOOK_SECRET; add versions with gcloud."
  value       = google_secret_manager_secret.webhook.secret_id
}

output "erasure_key_secret_id" {
  description = "Secret Manager secret holding ERASURE_KEY; add exactly one version, once, and never rotate it."
  value       = google_secret_manager_secret.erasure_key.secret_id
}

output "function_names" {
  description = "Names of the five functions (used by cloudbuild.yaml's deploy steps)."
  value       = local.function_names
}
