# APIs the system uses. They stay enabled when this configuration is destroyed: other workloads in the
# project may depend on them.
locals {
  services = toset([
    "admin.googleapis.com",                # Admin SDK: the Reports and Directory APIs
    "artifactregistry.googleapis.com",     # function images
    "calendar-json.googleapis.com",        # Calendar API: the organizers' primary calendars (push channels, incremental sync)
    "cloudbuild.googleapis.com",           # function builds and cloudbuild.yaml
    "cloudfunctions.googleapis.com",       # gen2 functions
    "cloudresourcemanager.googleapis.com", # project IAM bindings
    "cloudscheduler.googleapis.com",       # the daily backfill
    "cloudtasks.googleapis.com",           # the collect chains
    "firestore.googleapis.com",            # the data
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # signBlob: keyless domain-wide delegation
    "logging.googleapis.com",              # logs and log-based metrics
    "meet.googleapis.com",                 # Meet REST API: conference records, participants, sessions
    "monitoring.googleapis.com",           # alert policies
    "pubsub.googleapis.com",               # the Workspace Events topic and its push subscription
    "run.googleapis.com",                  # gen2 functions run on Cloud Run
    "secretmanager.googleapis.com",        # the webhook secret and the erasure key
    "workspaceevents.googleapis.com",      # Workspace Events: the organizers' Meet subscriptions
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
