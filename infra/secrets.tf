# The webhook signing secret. Terraform creates the secret only; its value never enters Terraform
# state. The operator adds versions with gcloud (see README "Webhook secret"):
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
