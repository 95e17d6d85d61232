# Remote state in a GCS bucket (create it once, with versioning on, in any project you trust):
#
#   gcloud storage buckets create gs://MY-TFSTATE --location=EU --uniform-bucket-level-access
#   gcloud storage buckets update gs://MY-TFSTATE --versioning
#   terraform -chdir=infra init -backend-config="bucket=MY-TFSTATE"
#
# This is a partial configuration: the bucket is supplied at init time so the same code serves
# every environment (add -backend-config="prefix=..." to keep several states in one bucket).
terraform {
  backend "gcs" {
    prefix = "meet-attendance/state"
  }
}
