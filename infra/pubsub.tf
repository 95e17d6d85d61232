# Google Meet events (docs/api.md "meet_events"): each organizer's Workspace Events subscription (created and
# renewed by backfill and meet_events, impersonating the organizer) publishes to one topic; a push
# subscription delivers every message to meet_events with an OIDC token of the push account; what
# fails repeatedly goes to a dead-letter topic, kept by a pull subscription and alerted on
# (monitoring.tf). Nothing here is needed for correctness: the daily backfill still finds every
# meeting from Reports (infra/README.md "Google Meet events").

locals {
  # Google-managed identities (not ours): the Pub/Sub service agent of this project, which forwards
  # dead letters and mints the pushes' OIDC tokens, and the identity Google Meet publishes as.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  meet_event_publisher = "serviceAccount:meet-api-event-push@system.gserviceaccount.com"
}

# WORKSPACE_EVENTS_TOPIC (its id is projects/P/topics/T). No message_storage_policy: Workspace
# Events publishes with ordering keys, and a storage policy that excludes the nearest region makes
# its publishing fail. The messages carry resource names only (conference records, subscriptions).
resource "google_pubsub_topic" "workspace_events" {
  # checkov:skip=CKV_GCP_83: the messages carry Google resource names only (conference record and subscription names, no personal data) and are kept 7 days at most (31 as dead letters); Google-managed encryption is enough
  project = var.project_id
  name    = "${var.name_prefix}-workspace-events"

  depends_on = [google_project_service.enabled]
}

# Where a message goes after max_delivery_attempts failed pushes.
resource "google_pubsub_topic" "workspace_events_dead_letter" {
  # checkov:skip=CKV_GCP_83: dead letters are copies of the Workspace Events messages (resource names only); Google-managed encryption is enough
  project = var.project_id
  name    = "${var.name_prefix}-workspace-events-dead-letter"

  depends_on = [google_project_service.enabled]
}

# Google Meet publishes its Workspace Events as this system identity ("It can take a few minutes").
# An organization policy constraints/iam.allowedPolicyMemberDomains rejects this binding until the
# project allows it (infra/README.md "Google Meet events").
resource "google_pubsub_topic_iam_member" "meet_publishes_workspace_events" {
  project = var.project_id
  topic   = google_pubsub_topic.workspace_events.name
  role    = "roles/pubsub.publisher"
  member  = local.meet_event_publisher
}

# The push: wrapped messages (docs/api.md "meet_events" reads {"message": ..., "subscription": ...}), an OIDC
# token of the push account whose audience is MEET_EVENTS_URL. meet_events answers 2xx once an
# event is handled (or is unusable), 5xx only when a retry may help.
resource "google_pubsub_subscription" "meet_events_push" {
  project = var.project_id
  name    = "${var.name_prefix}-meet-events-push"
  topic   = google_pubsub_topic.workspace_events.id

  # A push not answered within the deadline counts as failed; meet_events' timeout is no longer.
  ack_deadline_seconds       = 300
  message_retention_duration = "604800s" # 7 days of undelivered events
  retain_acked_messages      = false

  # Never deleted for inactivity (the default is 31 days without deliveries: a school holiday).
  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = local.meet_events_url

    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.meet_events_url
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # After 10 failed pushes a message is forwarded to the dead-letter topic instead of being retried
  # for 7 days; the Pub/Sub service agent needs the two grants below for it.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.workspace_events_dead_letter.id
    max_delivery_attempts = 10
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.meet_events_invoker,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
    google_pubsub_subscription.workspace_events_dead_letter,
  ]
}

# Messages on a topic without a subscription are dropped: this one keeps the dead letters (31 days,
# the most Pub/Sub keeps) until an operator reads them (README "Google Meet events"). Never expires.
resource "google_pubsub_subscription" "workspace_events_dead_letter" {
  project = var.project_id
  name    = "${var.name_prefix}-workspace-events-dead-letter"
  topic   = google_pubsub_topic.workspace_events_dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "2678400s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering: the Pub/Sub service agent publishes the failed message to the dead-letter topic
# and acknowledges it on the source subscription. On these two resources only.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.workspace_events_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_lettered" {
  project      = var.project_id
  subscription = google_pubsub_subscription.meet_events_push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The Pub/Sub service agent mints the pushes' OIDC tokens as the push account. Older guides (and
# older projects) need this grant; whether it is still required is unconfirmed, so it is kept, on
# the push account only (which holds run.invoker on meet_events and nothing else).
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.enabled]
}

# Operators read (and acknowledge, once handled) the dead letters:
#   gcloud pubsub subscriptions pull NAME-workspace-events-dead-letter --limit=10
resource "google_pubsub_subscription_iam_member" "operators_read_dead_letters" {
  for_each = toset(var.operators)

  project      = var.project_id
  subscription = google_pubsub_subscription.workspace_events_dead_letter.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}
