# Log-based metrics and alerts. The functions write one JSON line per event to stderr; Cloud Run
# turns it into jsonPayload (message, status, error, meeting_id, ...).

locals {
  run_services = join(" OR ", [for name in values(local.function_names) : "\"${name}\""])
  run_logs     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${local.run_services})"

  log_alerts = {
    failed_meetings = {
      name        = "${var.name_prefix}-failed-meetings"
      description = "Meetings whose last poll left them failed: every poll failed (last_error says why)."
      filter      = "${local.run_logs} AND jsonPayload.message=\"poll finished\" AND jsonPayload.status=\"failed\" AND jsonPayload.decision=\"final\""
      runbook     = "A meeting ended `failed`: every Reports poll failed. Read `last_error` with `python -m functions show MEETING_ID`, fix the cause (see infra/README.md troubleshooting), then `python -m functions sync MEETING_ID`."
    }
    delegation_errors = {
      name        = "${var.name_prefix}-delegation-errors"
      description = "Polls refused by domain-wide delegation, the Reports privilege, the admin subject or signBlob."
      filter      = "${local.run_logs} AND jsonPayload.error=~\"(?i)domain-wide delegation|Reports privilege|REPORTS_ADMIN_SUBJECT|unauthorized_client|invalid_grant|signBlob|sign the delegation\""
      runbook     = "Delegation is broken: check the client id authorisation (Security > API controls > Domain-wide delegation), the admin subject's Reports privilege and the functions' token creator bindings on the delegation account. See infra/README.md troubleshooting."
    }
    overdue_chains = {
      name        = "${var.name_prefix}-overdue-chains"
      description = "Collect chains the backfill found overdue by more than an hour and re-enqueued."
      filter      = "${local.run_logs} AND jsonPayload.message=\"overdue chain re-enqueued\""
      runbook     = "A collect chain broke (task lost or exhausted its retries). The backfill re-enqueued it; look at collect errors and the queue's retry log around the meeting's next_poll_at."
    }
    backfill_failures = {
      name        = "${var.name_prefix}-backfill-failures"
      description = "Errors of the daily backfill: function errors or 5xx, or the scheduler job failing."
      filter      = "(resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.backfill}\" AND severity>=ERROR) OR (resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=\"${var.name_prefix}-backfill-daily\" AND severity>=ERROR)"
      runbook     = "The daily backfill failed. Read the backfill service's logs; rerun with `gcloud scheduler jobs run ${var.name_prefix}-backfill-daily --location=${var.region}` once fixed."
    }
  }
}

resource "google_logging_metric" "alerts" {
  for_each = local.log_alerts

  project     = var.project_id
  name        = each.value.name
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_notification_channel" "email" {
  project      = var.project_id
  display_name = "${var.name_prefix} alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each = local.log_alerts

  project               = var.project_id
  display_name          = "${var.name_prefix}: ${replace(each.key, "_", " ")}"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = each.value.description

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.alerts[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = each.value.runbook
    mime_type = "text/markdown"
  }
}
