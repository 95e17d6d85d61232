# The daily backfill: Cloud Scheduler calls the private backfill function with an OIDC token of the
# scheduler account (the only account allowed to invoke it).
resource "google_cloud_scheduler_job" "backfill" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-backfill-daily"
  description      = "Daily Reports scan for late data, unannounced meetings and overdue chains."
  schedule         = var.backfill_schedule
  time_zone        = var.backfill_time_zone
  attempt_deadline = "900s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = local.backfill_url
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.backfill_url
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_cloud_run_v2_service_iam_member.backfill_invoker,
  ]
}
