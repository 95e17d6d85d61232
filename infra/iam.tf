# Identities and least-privilege bindings. No key is ever created for any of these accounts: the
# runtime signs its domain-wide delegation assertion through the IAM Credentials API (signBlob).

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-run"
  display_name = "Meet attendance functions (runtime)"
  description  = "Runs ingest, collect and backfill; reads the Reports API through keyless domain-wide delegation."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-tasks"
  display_name = "Meet attendance Cloud Tasks OIDC identity"
  description  = "Identity in the OIDC tokens of the collect tasks; the only account that may invoke collect."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Meet attendance Cloud Scheduler OIDC identity"
  description  = "Identity in the OIDC token of the daily backfill job; the only account that may invoke backfill."
  depends_on   = [google_project_service.enabled]
}

locals {
  runtime_member = "serviceAccount:${google_service_account.runtime.email}"

  # Project-level roles of the runtime account, each for one reason.
  runtime_project_roles = toset([
    "roles/datastore.user",      # read and write meetings, participants, revisions, webhook_deliveries
    "roles/cloudtasks.enqueuer", # create the named collect tasks
    "roles/logging.logWriter",   # structured logs
    "roles/monitoring.metricWriter",
  ])

  # What the operator CLI needs against production (see README "Operators").
  operator_project_roles = toset([
    "roles/datastore.user",      # show, export, manual sync writes
    "roles/cloudtasks.enqueuer", # sync/backfill start or repair chains
  ])
}

resource "google_project_iam_member" "runtime" {
  for_each = local.runtime_project_roles

  project = var.project_id
  role    = each.value
  member  = local.runtime_member
}

# Keyless delegation: the runtime account signs the JWT assertion for the Admin SDK as itself.
resource "google_service_account_iam_member" "runtime_token_creator_on_itself" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.runtime_member
}

# Creating a task whose OIDC token names the tasks account requires actAs on that account only.
resource "google_service_account_iam_member" "runtime_acts_as_tasks" {
  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

resource "google_secret_manager_secret_iam_member" "runtime_reads_webhook_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.webhook.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
}

# Billing reads Firestore and nothing else.
resource "google_project_iam_member" "billing_readers" {
  for_each = toset(var.billing_readers)

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = each.value
}

resource "google_project_iam_member" "operators" {
  for_each = {
    for pair in setproduct(var.operators, tolist(local.operator_project_roles)) :
    "${pair[0]} ${pair[1]}" => { member = pair[0], role = pair[1] }
  }

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

# Operators' CLI creates collect tasks that carry the tasks identity.
resource "google_service_account_iam_member" "operators_act_as_tasks" {
  for_each = toset(var.operators)

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Operators use the delegation by impersonating the runtime account
# (gcloud auth application-default login --impersonate-service-account=RUNTIME_SA), so the Workspace
# authorisation stays on one client id and no key file exists.
resource "google_service_account_iam_member" "operators_impersonate_runtime" {
  for_each = toset(var.operators)

  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# Code deployers (Cloud Build's account, release engineers): deploy functions running as the runtime account.
resource "google_project_iam_member" "deployers" {
  for_each = toset(var.deployers)

  project = var.project_id
  role    = "roles/cloudfunctions.developer"
  member  = each.value
}

resource "google_service_account_iam_member" "deployers_act_as_runtime" {
  for_each = toset(var.deployers)

  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
