# Log-based metrics, alerts and the operations dashboard (docs/operations.md explains each).
#
# The functions write one JSON line per event to stderr; Cloud Run turns it into jsonPayload
# (message, status, error, meeting_id, ...). Every filter below names messages and fields the code
# really writes: tests/infra/test_monitoring.py checks each against functions/, so renaming a log
# message or a field breaks the tests rather than silently emptying a metric.
#
# Alerts look at failures (failed meetings, delegation, errors) and at silence (no meeting
# completed while meetings were declared; tasks running late; a rate of refusals or 5xx).

locals {
  run_services = join(" OR ", [for name in values(local.function_names) : "\"${name}\""])
  run_logs     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${local.run_services})"
  # The same services as a Cloud Monitoring filter (one_of takes a comma-separated list).
  run_service_list = join(", ", [for name in values(local.function_names) : "\"${name}\""])

  # One log-based counter and one alert policy each (resources "alerts" below). An alert fires
  # when more than `threshold` lines match within `window`; `labels` are extracted from the line.
  log_alerts = {
    failed_meetings = {
      name        = "${var.name_prefix}-failed-meetings"
      description = "Meetings whose last poll left them failed: every poll failed (last_error says why)."
      filter      = "${local.run_logs} AND jsonPayload.message=\"poll finished\" AND jsonPayload.status=\"failed\" AND jsonPayload.decision=\"final\""
      threshold   = 0
      window      = "300s"
      labels      = {}
      runbook     = "A meeting ended `failed`: every Reports poll failed. Read `last_error` with `python -m functions show MEETING_ID`, fix the cause (see infra/README.md troubleshooting), then `python -m functions sync MEETING_ID`."
    }
    delegation_errors = {
      name        = "${var.name_prefix}-delegation-errors"
      description = "Polls refused by domain-wide delegation, the Reports privilege, the admin subject or signBlob."
      filter      = "${local.run_logs} AND jsonPayload.error=~\"(?i)domain-wide delegation|Reports privilege|REPORTS_ADMIN_SUBJECT|unauthorized_client|invalid_grant|signBlob|sign the delegation\""
      threshold   = 0
      window      = "300s"
      labels      = {}
      runbook     = "Delegation is broken: check the client id authorisation (Security > API controls > Domain-wide delegation), the admin subject's Reports privilege and the functions' token creator bindings on the delegation account. See infra/README.md troubleshooting."
    }
    overdue_chains = {
      name        = "${var.name_prefix}-overdue-chains"
      description = "Collect chains the backfill found overdue by more than an hour and re-enqueued."
      filter      = "${local.run_logs} AND jsonPayload.message=\"overdue chain re-enqueued\""
      threshold   = 0
      window      = "300s"
      labels      = {}
      runbook     = "A collect chain broke (task lost or exhausted its retries). The backfill re-enqueued it; look at collect errors and the queue's retry log around the meeting's next_poll_at."
    }
    backfill_failures = {
      name        = "${var.name_prefix}-backfill-failures"
      description = "Errors of the daily backfill: function errors or 5xx, or the scheduler job failing."
      filter      = "(resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.backfill}\" AND severity>=ERROR) OR (resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=\"${var.name_prefix}-backfill-daily\" AND severity>=ERROR)"
      threshold   = 0
      window      = "300s"
      labels      = {}
      runbook     = "The daily backfill failed. Read the backfill service's logs; rerun with `gcloud scheduler jobs run ${var.name_prefix}-backfill-daily --location=${var.region}` once fixed."
    }
    meet_events_errors = {
      name        = "${var.name_prefix}-meet-events-errors"
      description = "Errors of meet_events: suspended Workspace Events subscriptions, pushes it failed on (5xx), Meet REST refusals."
      filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.meet_events}\" AND severity>=ERROR"
      threshold   = 0
      window      = "300s"
      labels      = {}
      runbook     = "meet_events failed on a Workspace Event or a subscription was suspended. Read the meet_events logs and `python -m functions subscriptions`; see infra/README.md \"Google Meet events\". Attendance is not lost: the daily backfill still finds the meeting from Reports."
    }
    # Signed webhooks (and Calendar notifications) that ingest refused with 401: a rotated secret
    # the platform does not have yet, or a clock off by more than 5 minutes. ingest is public, so a
    # stray unsigned probe is normal; a secret mismatch refuses every delivery and the platform
    # retries each, hence more than 3 in half an hour.
    ingest_unauthorized = {
      name        = "${var.name_prefix}-ingest-unauthorized"
      description = "Deliveries ingest refused with 401 (bad or missing signature, channel token or timestamp)."
      filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.ingest}\" AND jsonPayload.message=\"request refused\" AND jsonPayload.status=401"
      threshold   = 3
      window      = "1800s"
      labels      = { code = "EXTRACT(jsonPayload.code)" }
      runbook     = "ingest refuses signed deliveries with 401: the platform's webhook secret differs from `attendance-webhook-secret` (a rotation half done), or its clock is off by more than 5 minutes. Compare the secret versions (infra/README.md section 7, secret rotation); if the requests come from unknown sources instead, it is noise from the public endpoint. Meetings refused are declared again by the daily backfill from Reports."
    }
    # Workspace Events subscriptions and Calendar channels the daily run or meet_events could not
    # keep: without them, Meet signals and calendar declarations stop (Reports still works).
    subscription_problems = {
      name        = "${var.name_prefix}-subscription-problems"
      description = "Workspace Events subscriptions or Calendar channels that could not be created, renewed or read, or were suspended."
      filter      = "${local.run_logs} AND jsonPayload.message=(\"organizer subscription problem\" OR \"subscription lifecycle problem\" OR \"subscription suspended\" OR \"subscriptions not ensured\" OR \"calendar channel problem\" OR \"calendar channels not ensured\" OR \"calendar sync refused by Google; recorded\")"
      threshold   = 0
      window      = "300s"
      labels      = { message = "EXTRACT(jsonPayload.message)", code = "EXTRACT(jsonPayload.code)" }
      runbook     = "A Workspace Events subscription or a Calendar channel is broken. Run `python -m functions subscriptions` (the problem and its code per organizer), fix the cause (infra/README.md troubleshooting: scopes, APIs, the Meet publisher grant, organizers not in the domain), then `python -m functions subscriptions --ensure`. Attendance still comes from Reports meanwhile."
    }
  }

  # Log-based counters charted on the dashboard; the "no meeting completed" alert combines the
  # first two.
  log_metrics = {
    meetings_declared = {
      name        = "${var.name_prefix}-meetings-declared"
      description = "Meetings created, by source (webhook, calendar, backfill, manual, meet)."
      filter      = "${local.run_logs} AND jsonPayload.message=\"meeting created\""
      labels      = { source = "EXTRACT(jsonPayload.source)" }
    }
    meetings_completed = {
      name        = "${var.name_prefix}-meetings-completed"
      description = "Meetings reaching complete (once each; re-polls of a complete meeting do not count)."
      filter      = "${local.run_logs} AND jsonPayload.message=\"meeting completed\""
      labels      = {}
    }
    poll_outcomes = {
      name        = "${var.name_prefix}-poll-outcomes"
      description = "Reports polls, by the status they left the meeting in and whether the chain stops (final) or continues."
      filter      = "${local.run_logs} AND jsonPayload.message=\"poll finished\""
      labels      = { status = "EXTRACT(jsonPayload.status)", decision = "EXTRACT(jsonPayload.decision)" }
    }
    reports_errors = {
      name        = "${var.name_prefix}-reports-errors"
      description = "Polls whose Reports query failed after the adapter's retries, by kind (permission, quota, transient)."
      filter      = "${local.run_logs} AND jsonPayload.message=\"poll finished\" AND jsonPayload.error_code:*"
      labels      = { kind = "EXTRACT(jsonPayload.error_code)" }
    }
  }

  # The collect queue's own metrics (Cloud Tasks publishes no "oldest task age": its metrics are
  # api/request_count, queue/depth, queue/task_attempt_count and queue/task_attempt_delays). A
  # poll is scheduled hours ahead, so depth says nothing about lateness; the delay between a
  # task's schedule time and its dispatch does: tasks running late.
  collect_queue_filter = "resource.type=\"cloud_tasks_queue\" AND resource.labels.queue_id=\"${google_cloud_tasks_queue.collect.name}\""
  # p99 lateness of collect dispatches that pages: 15 minutes, sustained for 15 minutes. Normal
  # dispatches are seconds late; only a throttled or starved queue (max_dispatches_per_second,
  # Cloud Run answering 429) gets there.
  queue_delay_ms = 900000
  # 5xx answers per function in 10 minutes that page. The queue retries 5xx, and a contention
  # 503 now and then is normal; a broken deploy or a dependency down answers 5xx to everything.
  http_5xx_threshold = 10

  user_metric = "logging.googleapis.com/user"
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

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "counters" {
  for_each = local.log_metrics

  project     = var.project_id
  name        = each.value.name
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

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
      filter          = "metric.type=\"${local.user_metric}/${google_logging_metric.alerts[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period     = each.value.window
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

# Silence: meetings were declared, none completed. An absence condition on completions alone
# would fire on every quiet weekend or holiday, and a threshold condition cannot compare two
# metrics, so this is one PromQL condition over both log-based counters (MQL is deprecated):
# meetings that ended (declared by any source but the calendar, which declares meetings up to 29
# days ahead) between 30 and 6 hours ago, and no meeting completed in the last 24 hours. Six hours
# is far more than a normal meeting needs (first poll 15 min after the end, settled 30 min later),
# so a meeting still not complete after it points at a stuck pipeline: polls not dispatched,
# Reports refused, collect failing. `unless` also fires when no completion was ever counted (no
# series at all), which is the case this alert exists for.
resource "google_monitoring_alert_policy" "no_completions" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: no meeting completed"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "Meetings ended 6 to 30 hours ago were declared, and no meeting completed in the last 24 hours."

    condition_prometheus_query_language {
      query               = "(sum(increase({\"__name__\"=\"${local.user_metric}/${google_logging_metric.counters["meetings_declared"].name}\",\"monitored_resource\"=\"cloud_run_revision\",\"source\"!=\"calendar\"}[1d] offset 6h)) > 0) unless (sum(increase({\"__name__\"=\"${local.user_metric}/${google_logging_metric.counters["meetings_completed"].name}\",\"monitored_resource\"=\"cloud_run_revision\"}[1d])) > 0)"
      duration            = "0s"
      evaluation_interval = "900s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = "Meetings were declared but none completed for a day. Check, in order: the collect queue is running (`gcloud tasks queues describe ${var.name_prefix}-collect --location=${var.region}`, not PAUSED); collect's logs (`poll finished` lines: their status and `error`); the delegation and failed-meetings alerts; `python -m functions list --status=collecting`. Then `python -m functions sync MEETING_ID` on one of them. docs/operations.md has the details."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

# 5xx answers of any function, from Cloud Run's own request metric (it counts the answers our code
# never logs too: crashes, timeouts, out of memory).
resource "google_monitoring_alert_policy" "http_5xx" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: 5xx answers"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "A function answered more than ${local.http_5xx_threshold} requests with 5xx in 10 minutes."

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=one_of(${local.run_service_list}) AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.http_5xx_threshold
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
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
    content   = "A function answers 5xx. Open Error Reporting (the function is the service) and the function's ERROR lines (`request failed`: code and detail; `unexpected failure`: the stack trace). A deploy just before: roll back (infra/README.md section 9). `unavailable`/`contention`: a dependency is down or writers collide; the queue retries."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "collect_queue_delays" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: collect tasks running late"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "99th percentile of collect dispatch delay (schedule time to attempt) over 15 minutes for 15 minutes."

    condition_threshold {
      filter          = "${local.collect_queue_filter} AND metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_delays\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.queue_delay_ms
      duration        = "900s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_PERCENTILE_99"
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
    content   = "Polls are dispatched more than 15 minutes after their time: the queue is throttled (rate limits in infra/tasks.tf, Cloud Run 429s when collect hits its max instances) or a backlog formed (a large backfill). Look at the dashboard's queue charts and collect's instance count; raise `collect_max_instances` or wait for the backlog. A PAUSED queue dispatches nothing and so reports no delay: the \"no meeting completed\" and \"overdue chains\" alerts catch that."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
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
