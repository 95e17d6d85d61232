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
    meet_events_errors = {
      name        = "${var.name_prefix}-meet-events-errors"
      description = "Errors of meet_events: suspended Workspace Events subscriptions, pushes it failed on (5xx), Meet REST refusals."
      filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.meet_events}\" AND severity>=ERROR"
      runbook     = "meet_events failed on a Workspace Event or a subscription was suspended. Read the meet_events logs and `python -m functions subscriptions`; see infra/README.md \"Google Meet events\". Attendance is not lost: the daily backfill still finds the meeting from Reports."
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

# A Workspace Events message that meet_events failed on max_delivery_attempts times waits in the
# dead-letter subscription (pubsub.tf): alert while any is there. The gauge stays above zero until
# an operator has read and acknowledged them, so the incident stays open until then.
resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: workspace events dead letters"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "Workspace Events messages meet_events could not handle wait in the dead-letter subscription."

    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.workspace_events_dead_letter.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
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
    content   = "Pushes of Workspace Events to meet_events failed 10 times (401/403: push account or audience; 5xx: meet_events errors). Read the meet_events logs, then the messages: `gcloud pubsub subscriptions pull ${var.name_prefix}-workspace-events-dead-letter --limit=10` (add `--auto-ack` once handled). Nothing is lost: the daily backfill finds those meetings from Reports. See infra/README.md \"Google Meet events\"."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}
