variable "project_id" {
  description = "Google Cloud project that runs the functions, Firestore and Cloud Tasks."
  type        = string
}

variable "region" {
  description = "Region of the functions, the Cloud Tasks queue and the Cloud Scheduler job."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Firestore location (a region such as europe-west1, or a multi-region such as eur3). Defaults to var.region. Cannot change after creation."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, service accounts, queue, job, secret)."
  type        = string
  default     = "attendance"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,16}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 4-18 characters, lower-case letters, digits and hyphens (service account ids are limited to 30 characters)."
  }
}

variable "reports_admin_subject" {
  description = "Workspace admin the delegation identity impersonates for the Reports API (REPORTS_ADMIN_SUBJECT). Needs an admin role with the Reports privilege."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.reports_admin_subject))
    error_message = "reports_admin_subject must be an email address."
  }
}

variable "organizers" {
  description = "ORGANIZERS: Workspace users (emails) whose Meet conferences and primary calendars feed the system (each gets a Workspace Events subscription and a Calendar push channel, created impersonating them). Empty: only organizer_group's members, or none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.organizers : can(regex("^[^@\\s,]+@[^@\\s,]+\\.[^@\\s,]+$", email))])
    error_message = "organizers holds email addresses only (no commas)."
  }
}

variable "organizer_group" {
  description = "ORGANIZER_GROUP: a Google Group whose members are added to organizers (expanded by the daily run through the Directory API). Null: none."
  type        = string
  default     = null

  validation {
    condition     = var.organizer_group == null ? true : can(regex("^[^@\\s,]+@[^@\\s,]+\\.[^@\\s,]+$", var.organizer_group))
    error_message = "organizer_group must be a group's email address, or null."
  }
}

variable "source_bucket" {
  description = "GCS bucket holding the zipped function source used when Terraform creates the functions (later code deploys go through cloudbuild.yaml)."
  type        = string
}

variable "source_object" {
  description = "Object name of the source zip in source_bucket, e.g. source/meet-attendance-<sha>.zip."
  type        = string
}

variable "alert_email" {
  description = "Email address that receives the alerts (failed meetings, delegation errors, overdue chains, backfill failures, Meet events errors and dead letters)."
  type        = string
}

variable "api_principals" {
  description = "API_PRINCIPALS: service-account emails allowed to call the private api function (Cloud Run invoker, and checked again by the app). A back end runs as one; a person impersonates one (infra/README.md \"Calling the api\")."
  type        = list(string)

  validation {
    condition     = length(var.api_principals) > 0
    error_message = "api_principals needs at least one service-account email: the api refuses to start without API_PRINCIPALS."
  }

  validation {
    condition = alltrue([
      for email in var.api_principals : can(regex("^[a-z0-9][a-z0-9._-]*@[a-z0-9.-]+\\.gserviceaccount\\.com$", email))
    ])
    error_message = "api_principals holds service-account emails only (lower-case, ending in gserviceaccount.com)."
  }
}

variable "retention_days" {
  description = "RETENTION_DAYS: delete a meeting and everything under it this many days after its ended_at (Firestore TTL on expire_at plus the daily sweep). Null keeps attendance until erased. At least 62, so no month is deleted before it is billed."
  type        = number
  default     = null

  validation {
    condition     = var.retention_days == null ? true : (var.retention_days >= 62 && floor(var.retention_days) == var.retention_days)
    error_message = "retention_days must be a whole number of days, at least 62 (no month is deleted before it is billed), or null."
  }
}

variable "location_mode" {
  description = "LOCATION_MODE: full, country or none, applied to location_country/location_region before anything is stored."
  type        = string
  default     = "full"

  validation {
    condition     = contains(["full", "country", "none"], var.location_mode)
    error_message = "location_mode must be full, country or none."
  }
}

variable "erasure_key_version" {
  description = "Version of the erasure-key secret mounted as ERASURE_KEY. Pinned (not \"latest\"): erasure records are keyed hashes, so a new key would no longer recognise people already erased and a later poll could store them again. Never rotate it."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.erasure_key_version))
    error_message = "erasure_key_version must be a version number: \"latest\" would change the key whenever a version is added."
  }
}

variable "webhook_secret_version" {
  description = "Version of the webhook secret mounted as WEBHOOK_SECRET. \"latest\" is read when an instance starts; pin a number and apply to roll every instance onto a new version at once."
  type        = string
  default     = "latest"
}

variable "ingest_max_instances" {
  description = "Cap on ingest instances: the public endpoint cannot scale (or bill) without bound."
  type        = number
  default     = 10
}

variable "collect_max_instances" {
  description = "Cap on collect instances; at least the queue's max_concurrent_dispatches so the queue, not Cloud Run, throttles."
  type        = number
  default     = 40
}

variable "backfill_schedule" {
  description = "Cron schedule of the daily backfill."
  type        = string
  default     = "17 3 * * *"
}

variable "backfill_time_zone" {
  description = "Time zone of backfill_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "ip_address_mode" {
  description = "IP_ADDRESS_MODE: full, truncated (/24, /48) or none, applied before anything is stored."
  type        = string
  default     = "full"

  validation {
    condition     = contains(["full", "truncated", "none"], var.ip_address_mode)
    error_message = "ip_address_mode must be full, truncated or none."
  }
}

variable "app_settings" {
  description = "Optional overrides of the timing settings of docs/settings.md (FIRST_POLL_DELAY_S, MAX_POLL_INTERVAL_S, COLLECT_DEADLINE_S, SETTLE_S, ABSENT_GRACE_S, WINDOW_BEFORE_S, WINDOW_AFTER_S, BACKFILL_LOOKBACK_S)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for name in keys(var.app_settings) : contains([
      "FIRST_POLL_DELAY_S", "MAX_POLL_INTERVAL_S", "COLLECT_DEADLINE_S", "SETTLE_S",
      "ABSENT_GRACE_S", "WINDOW_BEFORE_S", "WINDOW_AFTER_S", "BACKFILL_LOOKBACK_S",
    ], name)])
    error_message = "app_settings may only hold the timing settings of docs/settings.md."
  }
}

variable "billing_readers" {
  description = "IAM members (user:, group:, serviceAccount:) that read attendance in Firestore, read-only (roles/datastore.viewer on the database only)."
  type        = list(string)
  default     = []
}

variable "operators" {
  description = "IAM members that run the operator CLI (python -m functions sync/backfill/show/export/erase/subscriptions) against production: Firestore, the queue, actAs the tasks identity, signing as the delegation identity and the erasure key (infra/README.md \"Operators\")."
  type        = list(string)
  default     = []
}

variable "deployers" {
  description = "IAM members that start code deploys (gcloud builds submit --config=cloudbuild.yaml): they run builds as the build account and stage source in source_bucket; they never hold the deploy roles themselves."
  type        = list(string)
  default     = []
}
