# The operations dashboard: what flows through (meetings declared and completed per day, poll
# outcomes), what fails (Reports errors by kind, 5xx, subscription and channel problems) and the
# collect queue (depth, lateness, attempts by response). docs/operations.md reads each chart.

locals {
  # One chart per entry: a metric filter, how it is aligned and grouped, and how it is drawn.
  dashboard_charts = [
    {
      title    = "Meetings declared per day, by source"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.counters["meetings_declared"].name}\" resource.type=\"cloud_run_revision\""
      period   = "86400s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.source"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "Meetings completed per day"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.counters["meetings_completed"].name}\" resource.type=\"cloud_run_revision\""
      period   = "86400s"
      aligner  = "ALIGN_DELTA"
      group_by = []
      plot     = "STACKED_BAR"
    },
    {
      title    = "Poll outcomes per hour (status, decision)"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.counters["poll_outcomes"].name}\" resource.type=\"cloud_run_revision\""
      period   = "3600s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.status", "metric.label.decision"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "Reports errors per hour, by kind"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.counters["reports_errors"].name}\" resource.type=\"cloud_run_revision\""
      period   = "3600s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.kind"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "Subscription and channel problems per hour"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.alerts["subscription_problems"].name}\" resource.type=\"cloud_run_revision\""
      period   = "3600s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.message"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "ingest 401 refusals per hour"
      filter   = "metric.type=\"${local.user_metric}/${google_logging_metric.alerts["ingest_unauthorized"].name}\" resource.type=\"cloud_run_revision\""
      period   = "3600s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.code"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "5xx answers per 10 minutes, by function"
      filter   = "metric.type=\"run.googleapis.com/request_count\" resource.type=\"cloud_run_revision\" resource.label.service_name=one_of(${local.run_service_list}) metric.label.response_code_class=\"5xx\""
      period   = "600s"
      aligner  = "ALIGN_DELTA"
      group_by = ["resource.label.service_name"]
      plot     = "STACKED_BAR"
    },
    {
      title    = "Collect queue: tasks waiting (depth)"
      filter   = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" resource.type=\"cloud_tasks_queue\" resource.label.queue_id=\"${google_cloud_tasks_queue.collect.name}\""
      period   = "300s"
      aligner  = "ALIGN_MAX"
      group_by = []
      plot     = "LINE"
    },
    {
      title    = "Collect queue: dispatch delay p99 (ms late)"
      filter   = "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_delays\" resource.type=\"cloud_tasks_queue\" resource.label.queue_id=\"${google_cloud_tasks_queue.collect.name}\""
      period   = "300s"
      aligner  = "ALIGN_PERCENTILE_99"
      group_by = []
      plot     = "LINE"
    },
    {
      title    = "Collect queue: attempts by response code"
      filter   = "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_count\" resource.type=\"cloud_tasks_queue\" resource.label.queue_id=\"${google_cloud_tasks_queue.collect.name}\""
      period   = "300s"
      aligner  = "ALIGN_DELTA"
      group_by = ["metric.label.response_code"]
      plot     = "STACKED_BAR"
    },
  ]
}

resource "google_monitoring_dashboard" "operations" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${var.name_prefix}: operations"
    gridLayout = {
      columns = "2"
      widgets = [
        for chart in local.dashboard_charts : {
          title = chart.title
          xyChart = {
            dataSets = [{
              plotType           = chart.plot
              minAlignmentPeriod = chart.period
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = chart.filter
                  aggregation = {
                    alignmentPeriod    = chart.period
                    perSeriesAligner   = chart.aligner
                    crossSeriesReducer = chart.aligner == "ALIGN_PERCENTILE_99" ? "REDUCE_MAX" : "REDUCE_SUM"
                    groupByFields      = chart.group_by
                  }
                }
              }
            }]
            yAxis = { scale = "LINEAR" }
          }
        }
      ]
    }
  })

  depends_on = [google_project_service.enabled]
}
