# Firestore (native mode) with point-in-time recovery and delete protection: billing data.
resource "google_firestore_database" "default" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON" # `terraform destroy` never deletes the data

  depends_on = [google_project_service.enabled]
}

# The composite indexes, with firestore.indexes.json as the one source of truth (the same file
# deploys with `firebase deploy --only firestore:indexes` or is read by tests).
locals {
  firestore_indexes = {
    for index in jsondecode(file("${path.module}/firestore.indexes.json")).indexes :
    join("-", concat([index.collectionGroup], [for field in index.fields : field.fieldPath])) => index
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.fieldPath
      order      = fields.value.order
    }
  }
}

# Replay-protection records expire by themselves (TTL deletes within about 24 h of expire_at).
resource "google_firestore_field" "webhook_deliveries_ttl" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "webhook_deliveries"
  field      = "expire_at"

  ttl_config {}

  # No single-field index on a TTL timestamp: nothing queries it and it avoids a write hotspot.
  index_config {}
}
