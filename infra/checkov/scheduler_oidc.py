"""CKV_ATT_2: Cloud Scheduler HTTP jobs authenticate with an OIDC token of a service account.

The backfill function is private: a job without an OIDC token (or with an OAuth token, which Cloud
Run does not accept) would be refused, or would tempt someone to make the function public.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


class SchedulerUsesOidc(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Cloud Scheduler HTTP job calls its target with an OIDC token",
            id="CKV_ATT_2",
            categories=[CheckCategories.IAM],
            supported_resources=["google_cloud_scheduler_job"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        target = _first(conf.get("http_target"))
        if not isinstance(target, dict):
            # Pub/Sub or App Engine targets carry no token; not this policy's concern.
            return CheckResult.PASSED
        if target.get("oauth_token"):
            return CheckResult.FAILED
        token = _first(target.get("oidc_token"))
        if not isinstance(token, dict) or not _first(token.get("service_account_email")):
            return CheckResult.FAILED
        return CheckResult.PASSED


check = SchedulerUsesOidc()
