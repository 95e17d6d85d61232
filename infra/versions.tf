# Terraform and provider versions. The provider is pinned exactly; `terraform init` records its
# checksums in .terraform.lock.hcl (commit that file after the first init).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.40.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app        = var.name_prefix
    managed-by = "terraform"
  }
}
