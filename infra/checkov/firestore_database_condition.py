"""CKV_ATT_4: Firestore roles granted on a project carry an IAM condition naming one database.

Firestore IAM has no per-collection scope, so roles/datastore.user (read and write documents) and
roles/datastore.viewer (read) are granted on the project; a condition
``resource.name == "projects/P/databases/(default)"`` keeps them off any other database the project
holds or will hold. An expression that checkov cannot render (a reference to a local) is accepted
here and checked by tests/infra (``firestore_access_conditioned``).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _names_one_database(expression: str) -> bool:
    if expression.startswith(("local.", "var.", "${local.", "${var.")) and " " not in expression:
        return True  # a reference checkov left unrendered
    return "resource.name" in expression and "==" in expression and "/databases/" in expression


class FirestoreRoleNamesOneDatabase(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Firestore roles on a project are conditioned on one database",
            id="CKV_ATT_4",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "google_project_iam_member",
                "google_project_iam_binding",
                "google_folder_iam_member",
                "google_folder_iam_binding",
                "google_organization_iam_member",
                "google_organization_iam_binding",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        role = _first(conf.get("role"))
        if not isinstance(role, str) or not role.startswith("roles/datastore."):
            return CheckResult.PASSED
        condition = _first(conf.get("condition"))
        if not isinstance(condition, dict):
            return CheckResult.FAILED
        expression = _first(condition.get("expression"))
        if not isinstance(expression, str) or not _names_one_database(expression):
            return CheckResult.FAILED
        return CheckResult.PASSED


check = FirestoreRoleNamesOneDatabase()
