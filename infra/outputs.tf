output "ingest_url" {
  description = "The webhook URL to give the meeting platform (POST /, signed)."
  value       = google_cloudfunctions2_function.ingest.service_config[0].uri
}

output "collect_url" {
  description = "COLLECT_URL: the worker's deterministic Cloud Run URL (task target and OIDC audience)."
  value       = local.collect_url
}

output "backfill_url" {
  description = "The backfill's deterministic Cloud Run URL (Cloud Scheduler target and OIDC audience)."
  value       = local.backfill_url
}

output "runtime_service_account_email" {
  description = "Identity of the three functions; operators impersonate it for the CLI."
  value       = google_service_account.runtime.email
}

output "runtime_service_account_client_id" {
  description = "OAuth client id to authorise in the Workspace Admin console (Security > API controls > Domain-wide delegation) for exactly https://www.googleapis.com/auth/admin.reports.audit.readonly."
  value       = google_service_account.runtime.unique_id
}

output "tasks_service_account_email" {
  description = "TASKS_SERVICE_ACCOUNT: identity of the collect tasks' OIDC tokens."
  value       = google_service_account.tasks.email
}

output "scheduler_service_account_email" {
  description = "Identity of the backfill job's OIDC token."
  value       = google_service_account.scheduler.email
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

output "function_names" {
  description = "Names of the three functions (used by cloudbuild.yaml's deploy steps)."
  value       = local.function_names
}
