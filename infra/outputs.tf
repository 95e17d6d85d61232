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
  description = "The backfill's deterministic Cloud Run URL (Cloud Scheduler target and OIDC audience)."
  value       = local.backfill_url
}

output "function_service_account_emails" {
  description = "The identity each function runs as (one account per function)."
  value       = { for name, account in local.function_accounts : name => account.email }
}

output "delegation_service_account_email" {
  description = "DELEGATION_SERVICE_ACCOUNT: the identity collect, backfill, api and operators sign the delegation assertion as."
  value       = google_service_account.delegation.email
}

output "delegation_service_account_client_id" {
  description = "OAuth client id to authorise in the Workspace Admin console (Security > API controls > Domain-wide delegation) for exactly https://www.googleapis.com/auth/admin.reports.audit.readonly."
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
  description = "Names of the four functions (used by cloudbuild.yaml's deploy steps)."
  value       = local.function_names
}
