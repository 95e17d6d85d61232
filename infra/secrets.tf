# Secrets. Terraform creates the secrets only; their values never enter Terraform state. The operator
# adds versions with gcloud (see README "Secrets"). Who may read each one is in iam.tf: a secret is
# readable only by the identities whose function (or CLI command) reads it.

# WEBHOOK_SECRET, read by ingest alone:
#   printf 'whsec_%s' "$(openssl rand -base64 32)" | \
#     gcloud secrets versions add ATTENDANCE-webhook-secret --data-file=-
resource "google_secret_manager_secret" "webhook" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-webhook-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# ERASURE_KEY, the HMAC key of the erasure hashes (docs/rules.md Privacy), read by every function (all
# five write participants) and by operators whose CLI commands write participants. Add exactly one
# version, once, and never rotate it (var.erasure_key_version):
#   openssl rand -base64 48 | tr -d '\n' | \
#     gcloud secrets versions add ATTENDANCE-erasure-key --data-file=-
resource "google_secret_manager_secret" "erasure_key" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-erasure-key"

  replication {
    auto {}
  }

  # Losing the key loses every erasure: erasures/{hash} would match no one any more.
  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.enabled]
}
