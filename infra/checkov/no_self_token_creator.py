"""CKV_ATT_5: no service account holds token creator on itself.

Keyless delegation signs as a separate delegation identity; a function that may mint tokens or
sign blobs as its own account needs no such grant, and one on itself hides who signs what (and
would let a compromised function sign the delegation assertion if it were ever authorised).
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

TOKEN_ROLES = frozenset(
    {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountOpenIdTokenCreator"}
)
ACCOUNT_REFERENCE = re.compile(r"google_service_account\.([A-Za-z0-9_-]+)")


def _values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [] if value is None else [str(value)]


def _accounts(value: Any) -> set[str]:
    return {name for text in _values(value) for name in ACCOUNT_REFERENCE.findall(text)}


class NoTokenCreatorOnItself(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="No service account holds token creator on itself",
            id="CKV_ATT_5",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "google_service_account_iam_member",
                "google_service_account_iam_binding",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not TOKEN_ROLES.intersection(_values(conf.get("role"))):
            return CheckResult.PASSED
        target = _accounts(conf.get("service_account_id"))
        members = _accounts(conf.get("member")) | _accounts(conf.get("members"))
        return CheckResult.FAILED if target & members else CheckResult.PASSED


check = NoTokenCreatorOnItself()
