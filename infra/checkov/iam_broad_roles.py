"""CKV_ATT_3: no broad role anywhere; no impersonation, secret, queue or invoker role project-wide.

Every identity here holds named roles on named resources (infra/README.md "Identities"). A basic
role, an admin role, or a role that lets its holder act as, sign as or read secrets of *every*
service account or secret in the project undoes that, whoever it is granted to.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

#: Too broad on any resource: basic roles, admin roles, roles that manage IAM or keys.
BROAD_ROLES = frozenset(
    {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/browser",
        "roles/iam.securityAdmin",
        "roles/iam.roleAdmin",
        "roles/iam.organizationRoleAdmin",
        "roles/iam.serviceAccountAdmin",
        "roles/iam.serviceAccountKeyAdmin",
        "roles/iam.workloadIdentityPoolAdmin",
        "roles/resourcemanager.projectIamAdmin",
        "roles/resourcemanager.folderAdmin",
        "roles/resourcemanager.organizationAdmin",
        "roles/datastore.owner",
        "roles/datastore.importExportAdmin",
        "roles/firebase.admin",
        "roles/secretmanager.admin",
        "roles/run.admin",
        "roles/cloudfunctions.admin",
        "roles/cloudtasks.admin",
        "roles/cloudtasks.queueAdmin",
        "roles/cloudscheduler.admin",
        "roles/cloudbuild.builds.builder",
        "roles/storage.admin",
        "roles/artifactregistry.admin",
        "roles/logging.admin",
        "roles/pubsub.admin",
        "roles/serviceusage.serviceUsageAdmin",
    }
)

#: Fine on one service account, secret, queue or service; far too broad on a project, folder or
#: organisation, where it covers every one of them.
NOT_PROJECT_WIDE = frozenset(
    {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.serviceAccountOpenIdTokenCreator",
        "roles/iam.workloadIdentityUser",
        "roles/secretmanager.secretAccessor",
        "roles/secretmanager.secretVersionManager",
        "roles/cloudtasks.enqueuer",
        "roles/run.invoker",
        "roles/cloudfunctions.invoker",
    }
)

HIERARCHY = ("google_project_", "google_folder_", "google_organization_")

IAM_RESOURCES = [
    f"google_{kind}_iam_{flavour}"
    for kind in (
        "project",
        "folder",
        "organization",
        "service_account",
        "secret_manager_secret",
        "cloud_run_v2_service",
        "cloud_run_service",
        "cloudfunctions2_function",
        "cloudfunctions_function",
        "cloud_tasks_queue",
        "storage_bucket",
        "artifact_registry_repository",
        "pubsub_topic",
        "pubsub_subscription",
    )
    for flavour in ("member", "binding")
]


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


class NoBroadRoles(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "No basic or admin role, and no impersonation, secret, queue or invoker role "
                "on a whole project"
            ),
            id="CKV_ATT_3",
            categories=[CheckCategories.IAM],
            supported_resources=IAM_RESOURCES,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        role = _first(conf.get("role"))
        if not isinstance(role, str):
            return CheckResult.UNKNOWN
        if role in BROAD_ROLES:
            return CheckResult.FAILED
        if self.entity_type.startswith(HIERARCHY) and role in NOT_PROJECT_WIDE:
            return CheckResult.FAILED
        return CheckResult.PASSED


check = NoBroadRoles()
