"""CKV_ATT_6: the public function's identity can neither sign as nor impersonate any account.

ingest answers the whole internet. Whatever a flaw in it could reach must not include minting
tokens or signing blobs as another account: above all not as the delegation identity, which the
Workspace trusts to read every user's Meet activity. (tests/infra checks the same for whichever
function holds an allUsers invoker, found from the invoker bindings; this check names it.)
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

#: The accounts of the functions that allow unauthenticated (allUsers) invocations.
PUBLIC_FUNCTION_ACCOUNTS = frozenset({"ingest"})
SIGNING_ROLES = frozenset(
    {
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.serviceAccountOpenIdTokenCreator",
        "roles/iam.workloadIdentityUser",
        "roles/iam.serviceAccountKeyAdmin",
    }
)
ACCOUNT_REFERENCE = re.compile(r"google_service_account\.([A-Za-z0-9_-]+)")


def _values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [] if value is None else [str(value)]


class PublicIdentityCannotSign(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="The public function's service account holds no token creator or signing role",
            id="CKV_ATT_6",
            categories=[CheckCategories.IAM],
            supported_resources=[
                f"google_{kind}_iam_{flavour}"
                for kind in ("project", "folder", "organization", "service_account")
                for flavour in ("member", "binding")
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not SIGNING_ROLES.intersection(_values(conf.get("role"))):
            return CheckResult.PASSED
        members = _values(conf.get("member")) + _values(conf.get("members"))
        accounts = {name for text in members for name in ACCOUNT_REFERENCE.findall(text)}
        return CheckResult.FAILED if accounts & PUBLIC_FUNCTION_ACCOUNTS else CheckResult.PASSED


check = PublicIdentityCannotSign()
