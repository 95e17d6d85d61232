"""CKV_ATT_7: Pub/Sub push subscriptions push with an OIDC token and dead-letter what keeps failing.

meet_events is private: a push without an OIDC token of a service account would be refused by
Cloud Run IAM (or tempt someone to make the function public). Pub/Sub redelivers a failed push for
the whole retention (7 days); with a retry policy and a dead-letter policy a poison message backs
off, and after max_delivery_attempts moves to a dead-letter topic that is kept and alerted on
instead of being retried or silently dropped.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

#: Pub/Sub allows 5 to 100 delivery attempts before dead-lettering.
MIN_ATTEMPTS, MAX_ATTEMPTS = 5, 100


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


class PushSubscriptionAuthenticatesAndDeadLetters(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Pub/Sub push subscriptions push with an OIDC token of a service account, back "
                "off and dead-letter"
            ),
            id="CKV_ATT_7",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_pubsub_subscription"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        push = _first(conf.get("push_config"))
        if not isinstance(push, dict):
            return CheckResult.PASSED  # a pull subscription (the dead letters) pushes nothing
        token = _first(push.get("oidc_token"))
        if not isinstance(token, dict) or not _first(token.get("service_account_email")):
            return CheckResult.FAILED
        if not isinstance(_first(conf.get("retry_policy")), dict):
            return CheckResult.FAILED
        dead_letter = _first(conf.get("dead_letter_policy"))
        if not isinstance(dead_letter, dict) or not _first(dead_letter.get("dead_letter_topic")):
            return CheckResult.FAILED
        attempts = _first(dead_letter.get("max_delivery_attempts"))
        if attempts is None:
            return CheckResult.FAILED  # Pub/Sub's default (5) is fine, but say it
        try:
            count = int(attempts)
        except (TypeError, ValueError):
            return CheckResult.UNKNOWN
        if not MIN_ATTEMPTS <= count <= MAX_ATTEMPTS:
            return CheckResult.FAILED
        return CheckResult.PASSED


check = PushSubscriptionAuthenticatesAndDeadLetters()
