# Identities and least-privilege bindings (infra/README.md "Identities" says who holds what and why).
# No key is ever created for any of these accounts, no basic role (owner/editor/viewer) is granted,
# and no impersonation role is granted on the whole project: every actAs and token-creator grant
# names one service account.
#
#   NAME-ingest      ingest, the public endpoint     Firestore, enqueue (polls, calendar syncs), webhook secret, erasure key
#   NAME-api         api, private (ID tokens)        Firestore, enqueue, erasure key, signs as delegation
#   NAME-collect     collect, the Cloud Tasks worker Firestore, enqueue, erasure key, signs as delegation
#   NAME-backfill    backfill, the daily run         Firestore, enqueue, erasure key, signs as delegation
#   NAME-meet-events meet_events, Pub/Sub push       Firestore, enqueue, erasure key, signs as delegation
#   NAME-tasks       OIDC identity of every task     run.invoker on collect and backfill
#   NAME-scheduler   OIDC identity of the daily job  run.invoker on backfill
#   NAME-pubsub-push OIDC identity of the pushes     run.invoker on meet_events (pubsub.tf)
#   NAME-delegate    the domain-wide delegation      no role at all: its client id is what Workspace trusts
#   NAME-build       Cloud Build and function builds deploys code as the five function accounts

resource "google_service_account" "ingest" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-ingest"
  display_name = "Meet attendance ingest (public webhook)"
  description  = "Runs ingest: declares meetings from signed webhooks; hands accepted Calendar notifications to backfill. Never signs as the delegation identity."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "api" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-api"
  display_name = "Meet attendance api (private operator API)"
  description  = "Runs api: manual sync, read-back and erasure for var.api_principals."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "collect" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-collect"
  display_name = "Meet attendance collect (Cloud Tasks worker)"
  description  = "Runs collect: polls the Reports API for one meeting and enqueues the next poll."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "backfill" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-backfill"
  display_name = "Meet attendance backfill (daily run)"
  description  = "Runs backfill: the daily Reports scan, chain repair, subscriptions, Calendar channels and syncs, retention."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "meet_events" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-meet-events" # service account ids allow no underscore
  display_name = "Meet attendance meet_events (Pub/Sub push)"
  description  = "Runs meet_events: Workspace Events for the organizers' Meet conferences; reads them through the Meet REST API as an organizer."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-tasks"
  display_name = "Meet attendance Cloud Tasks OIDC identity"
  description  = "Identity in the OIDC tokens of every task (polls, backfill slices, calendar syncs); the only account that may invoke collect."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Meet attendance Cloud Scheduler OIDC identity"
  description  = "Identity in the OIDC token of the daily backfill job."
  depends_on   = [google_project_service.enabled]
}

# The identity in the OIDC tokens of the Workspace Events pushes (pubsub.tf). It runs nothing and
# holds run.invoker on meet_events alone.
resource "google_service_account" "pubsub_push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pubsub-push"
  display_name = "Meet attendance Pub/Sub push OIDC identity"
  description  = "PUBSUB_PUSH_SERVICE_ACCOUNT: identity in the OIDC tokens of the Workspace Events push subscription; the only account that may invoke meet_events."
  depends_on   = [google_project_service.enabled]
}

# The Workspace admin authorises this account's client id for domain-wide delegation (README
# section 2). It holds no role and runs nothing: collect, backfill, api, meet_events (and
# operators' CLI) sign the delegation assertion as it through IAM signBlob, so the Workspace trust
# is one client id that no function runs as, and the public ingest cannot use it.
resource "google_service_account" "delegation" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-delegate"
  display_name = "Meet attendance domain-wide delegation"
  description  = "DELEGATION_SERVICE_ACCOUNT: the client id authorised for the Reports, Meet, Directory and Calendar read-only scopes (README section 2). Holds no role; collect, backfill, api and meet_events sign as it."
  depends_on   = [google_project_service.enabled]
}

# Runs cloudbuild.yaml (serviceAccount:) and the functions' own builds (build_config.service_account).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Meet attendance Cloud Build"
  description  = "Runs cloudbuild.yaml and the function builds: deploys code as the function accounts, pushes images to gcf-artifacts."
  depends_on   = [google_project_service.enabled]
}

locals {
  # The five function identities: every grant that all of them need iterates over this map.
  function_accounts = {
    ingest      = google_service_account.ingest
    api         = google_service_account.api
    collect     = google_service_account.collect
    backfill    = google_service_account.backfill
    meet_events = google_service_account.meet_events
  }

  # Firestore IAM has no per-collection scope: roles/datastore.user is the narrowest predefined role
  # that reads and writes documents, and the condition narrows it to this database (README
  # "Firestore access").
  firestore_database  = "projects/${var.project_id}/databases/${google_firestore_database.default.name}"
  firestore_condition = "resource.name == \"${local.firestore_database}\""
}

# --- the functions ---------------------------------------------------------------------------------

# Read and write meetings, participants, revisions, erasures, webhook_deliveries. Every function
# writes (none only reads, so none gets roles/datastore.viewer).
resource "google_project_iam_member" "function_datastore" {
  for_each = local.function_accounts

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${each.value.email}"

  condition {
    title       = "firestore-database-only"
    description = "Documents of the attendance database only."
    expression  = local.firestore_condition
  }
}

# Write-only: structured logs. Cloud Run also captures stderr itself; this role reads nothing.
resource "google_project_iam_member" "function_log_writer" {
  for_each = local.function_accounts

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${each.value.email}"
}

# Every function enqueues: ingest the first poll and, for an accepted Calendar notification, a
# calendar sync task to backfill; collect the next poll, backfill its slices and repaired chains,
# api the polls a manual sync causes, meet_events the polls a "conference ended" event brings
# forward. On the queue only, not project-wide.
resource "google_cloud_tasks_queue_iam_member" "function_enqueuer" {
  for_each = local.function_accounts

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.collect.name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${each.value.email}"
}

# Creating a task whose OIDC token names the tasks account requires actAs on that account only
# (whatever the task targets: collect for polls, backfill for slices and calendar syncs).
resource "google_service_account_iam_member" "function_acts_as_tasks" {
  for_each = local.function_accounts

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${each.value.email}"
}

# ERASURE_KEY: every function writes participants, so every function checks erasures/{hash}.
resource "google_secret_manager_secret_iam_member" "function_reads_erasure_key" {
  for_each = local.function_accounts

  project   = var.project_id
  secret_id = google_secret_manager_secret.erasure_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value.email}"
}

# WEBHOOK_SECRET: ingest alone verifies signatures.
resource "google_secret_manager_secret_iam_member" "ingest_reads_webhook_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.webhook.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.ingest.email}"
}

# Keyless delegation: the functions that call Workspace APIs sign the JWT assertion as the delegation
# identity (signBlob). Granted on that account only, to these four only: never to the public
# ingest, and no function holds token creator on its own account. ingest receives the Calendar
# notifications but reads no calendar: it enqueues the sync, and backfill (below) reads the changes
# impersonating the organizer.
resource "google_service_account_iam_member" "collect_signs_as_delegation" {
  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.collect.email}"
}

# backfill: Reports, the organizers' Meet subscriptions and, with the Calendar scope, their
# primary calendars (channels opened and stopped, incremental syncs).
resource "google_service_account_iam_member" "backfill_signs_as_delegation" {
  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.backfill.email}"
}

resource "google_service_account_iam_member" "api_signs_as_delegation" {
  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.api.email}"
}

# meet_events reads conference records, participants and sessions through the Meet REST API
# impersonating an organizer, renews or re-creates their Workspace Events subscriptions the same
# way, and looks signed-in participants up in the Directory as the admin subject.
resource "google_service_account_iam_member" "meet_events_signs_as_delegation" {
  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.meet_events.email}"
}

# --- people and other systems ----------------------------------------------------------------------

# Billing reads Firestore and nothing else, in this database only.
resource "google_project_iam_member" "billing_readers" {
  for_each = toset(var.billing_readers)

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = each.value

  condition {
    title       = "firestore-database-only"
    description = "Documents of the attendance database only."
    expression  = local.firestore_condition
  }
}

# Operators run the CLI with their own credentials (README "Operators"): show, export, sync, backfill,
# erase and subscriptions read and write Firestore ...
resource "google_project_iam_member" "operators_datastore" {
  for_each = toset(var.operators)

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value

  condition {
    title       = "firestore-database-only"
    description = "Documents of the attendance database only."
    expression  = local.firestore_condition
  }
}

# ... sync, backfill and subscriptions --ensure (whose calendar syncs declare meetings) start or
# repair chains on the queue, as tasks carrying the tasks identity ...
resource "google_cloud_tasks_queue_iam_member" "operators_enqueue" {
  for_each = toset(var.operators)

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.collect.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# ... doctor reads the queue's configuration (get_queue: cloudtasks.queues.get, which the enqueuer
# role lacks) to tell a missing queue from a permission problem ...
resource "google_cloud_tasks_queue_iam_member" "operators_view_queue" {
  for_each = toset(var.operators)

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.collect.name
  role     = "roles/cloudtasks.viewer"
  member   = each.value
}

resource "google_service_account_iam_member" "operators_act_as_tasks" {
  for_each = toset(var.operators)

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# ... sync, backfill and subscriptions --ensure call Workspace APIs, signing as the delegation
# identity (never impersonating a function's account) ...
resource "google_service_account_iam_member" "operators_sign_as_delegation" {
  for_each = toset(var.operators)

  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# ... and the commands that write participants (sync, backfill, subscriptions --ensure, erase)
# need ERASURE_KEY.
resource "google_secret_manager_secret_iam_member" "operators_read_erasure_key" {
  for_each = toset(var.operators)

  project   = var.project_id
  secret_id = google_secret_manager_secret.erasure_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}

# --- deploying -------------------------------------------------------------------------------------

locals {
  build_member = "serviceAccount:${google_service_account.build.email}"
}

# gcloud functions deploy (create/update functions, upload source). Cloud Functions has no narrower
# predefined deploy role; it cannot change IAM (no setIamPolicy), so invokers stay Terraform's.
resource "google_project_iam_member" "build_functions_developer" {
  project = var.project_id
  role    = "roles/cloudfunctions.developer"
  member  = local.build_member
}

# Build logs (cloudbuild.yaml sets logging: CLOUD_LOGGING_ONLY, required with a user-specified account).
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

# Function builds push their images to the gcf-artifacts repository Cloud Functions keeps per region.
resource "google_project_iam_member" "build_artifact_writer" {
  project = var.project_id
  role    = "roles/artifactregistry.writer"
  member  = local.build_member

  condition {
    title       = "gcf-artifacts-only"
    description = "The functions' image repository only."
    expression  = "resource.name.startsWith(\"projects/${var.project_id}/locations/${var.region}/repositories/gcf-artifacts\")"
  }
}

# Function builds read the source gcloud uploaded, which Cloud Functions keeps in its sources bucket.
resource "google_project_iam_member" "build_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.build_member

  condition {
    title       = "gcf-sources-only"
    description = "The functions' source bucket only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

# The source bucket: Terraform's first builds read var.source_object from it, and cloudbuild.yaml's
# source is staged there (gcloud builds submit --gcs-source-staging-dir).
resource "google_storage_bucket_iam_member" "build_reads_source_bucket" {
  bucket = var.source_bucket
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

# Deploying code that runs as an account needs actAs on that account: the five function accounts ...
resource "google_service_account_iam_member" "build_acts_as_functions" {
  for_each = local.function_accounts

  service_account_id = each.value.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.build_member
}

# ... and itself, because cloudbuild.yaml names it as the functions' build account
# (--build-service-account). actAs on oneself grants nothing one does not already hold.
resource "google_service_account_iam_member" "build_acts_as_itself" {
  service_account_id = google_service_account.build.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.build_member
}

# Deployers start builds that run as the build account; they hold no deploy role themselves.
resource "google_project_iam_member" "deployers_start_builds" {
  # checkov:skip=CKV_GCP_49: starting a build needs cloudbuild.builds.create, which exists project-wide only; a build runs only as an account its starter may actAs (the build account alone, below)
  for_each = toset(var.deployers)

  project = var.project_id
  role    = "roles/cloudbuild.builds.editor"
  member  = each.value
}

resource "google_service_account_iam_member" "deployers_act_as_build" {
  for_each = toset(var.deployers)

  service_account_id = google_service_account.build.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# gcloud builds submit stages the source in var.source_bucket (it reads the bucket's metadata first).
resource "google_storage_bucket_iam_member" "deployers_stage_source" {
  for_each = {
    for pair in setproduct(var.deployers, ["roles/storage.objectCreator", "roles/storage.legacyBucketReader"]) :
    "${pair[0]} ${pair[1]}" => { member = pair[0], role = pair[1] }
  }

  bucket = var.source_bucket
  role   = each.value.role
  member = each.value.member
}
