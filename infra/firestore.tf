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

# The composite indexes and the single-field overrides (TTL policies, index exemptions), with
# firestore.indexes.json as the one source of truth (the same file deploys with
# `firebase deploy --only firestore:indexes` or is read by tests).
locals {
  firestore_document = jsondecode(file("${path.module}/firestore.indexes.json"))

  firestore_indexes = {
    for index in local.firestore_document.indexes :
    join("-", concat([index.collectionGroup], [for field in index.fields : field.fieldPath])) => index
  }

  firestore_field_overrides = {
    for override in local.firestore_document.fieldOverrides :
    "${override.collectionGroup}-${override.fieldPath}" => override
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

# Retention (docs/rules.md Privacy): a TTL policy on expire_at of meetings, participants and revisions
# (set when RETENTION_DAYS is), of webhook_deliveries (replay protection) and of meet_deliveries
# (the CloudEvent ids meet_events handled, kept as long as Pub/Sub may redeliver) and of
# meeting_lookups (a week's document after every meeting that can end in it); TTL deletes within
# about 24 h after expire_at, and the daily run sweeps what it has not deleted yet. erasures/{hash}
# has no TTL: an erasure must outlive every poll. Nor do calendar_channels/{channel id} (the code
# deletes a channel's record when it stops the channel; a TTL deleting a live one would have its
# notifications refused) and calendar_syncs/{calendar id} (a lost sync token costs a full
# resync). TTL fields carry no index: nothing queries them
# (the sweep selects meetings by ended_at) and a monotonic timestamp index is a write hotspot.
#
# The erasure looks a person up across meetings (a collection-group query on participants where
# participant_key == K): single-field indexes are collection-scoped by default, so participant_key
# gets a collection-group index too (its collection-scoped ones are kept as they were), and so
# does revisions.participant_keys (array-contains: records naming a participant who left the
# meeting). Its lookups of expected_participants/missing_participants (array-contains on
# meetings) use the automatic indexes.
resource "google_firestore_field" "overrides" {
  for_each = local.firestore_field_overrides

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.value.collectionGroup
  field      = each.value.fieldPath

  dynamic "ttl_config" {
    for_each = lookup(each.value, "ttl", false) ? [true] : []
    content {}
  }

  # Replaces the automatic single-field indexes of this field; empty disables them.
  index_config {
    dynamic "indexes" {
      for_each = each.value.indexes
      content {
        query_scope  = lookup(indexes.value, "queryScope", "COLLECTION")
        order        = lookup(indexes.value, "order", null)
        array_config = lookup(indexes.value, "arrayConfig", null)
      }
    }
  }
}

# The webhook_deliveries TTL was declared on its own before the overrides came from the JSON file.
moved {
  from = google_firestore_field.webhook_deliveries_ttl
  to   = google_firestore_field.overrides["webhook_deliveries-expire_at"]
}
