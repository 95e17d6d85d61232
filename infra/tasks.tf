# The queue the collect chains run on.
#
# Reports quota: 2,400 queries per minute per project = 40 queries/s. A poll costs one query per
# result page (1,000 events), so a typical poll is 1 query and a large class 2:
#   10 dispatches/s x 2 queries = 20 queries/s = 1,200/min  -> half the quota, leaving the other half
#   for the backfill scan, manual syncs and the operator CLI.
# Concurrency by Little's law: 10 dispatches/s x ~3 s per poll (Reports pages + Firestore writes)
#   = 30 in flight. If polls slow down, the concurrency cap lowers the rate further (30 / 10 s = 3/s),
#   which is the safe direction. collect_max_instances (default 40) stays above 30 so the queue, not
#   Cloud Run's 429s, does the throttling.
resource "google_cloud_tasks_queue" "collect" {
  project  = var.project_id
  name     = "${var.name_prefix}-collect"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 10
    max_concurrent_dispatches = 30
  }

  # "Not yet" answers 2xx and the worker schedules the next poll itself; only unexpected failures
  # (5xx, timeouts) fall to this retry. Google's advice for Reports 503s is exponential backoff from
  # 5 s giving up after 5-7 tries; a chain that still breaks is re-enqueued by the daily backfill.
  retry_config {
    max_attempts       = 7
    min_backoff        = "5s"
    max_backoff        = "300s"
    max_doublings      = 6
    max_retry_duration = "3600s"
  }

  stackdriver_logging_config {
    sampling_ratio = 0.1
  }

  depends_on = [google_project_service.enabled]
}
