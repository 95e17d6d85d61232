"""CKV_ATT_1: the Cloud Tasks queue retries failed tasks and is throttled below the Reports quota.

The Reports API allows 2,400 queries per minute (40/s) per project. A poll costs one query per page,
so a queue dispatching more than 20 tasks/s could spend the whole quota on polls alone.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

MAX_DISPATCHES_PER_SECOND = 20.0
RETRY_FIELDS = ("max_attempts", "min_backoff", "max_backoff")
RATE_FIELDS = ("max_dispatches_per_second", "max_concurrent_dispatches")


def _block(conf: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = conf.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else None


def _scalar(block: dict[str, Any], name: str) -> Any:
    value = block.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


class QueueRetryAndRateLimits(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Cloud Tasks queue has a retry config and rate limits sized to the Reports quota",
            id="CKV_ATT_1",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_cloud_tasks_queue"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        retry = _block(conf, "retry_config")
        rates = _block(conf, "rate_limits")
        if retry is None or rates is None:
            return CheckResult.FAILED
        if any(_scalar(retry, name) is None for name in RETRY_FIELDS):
            return CheckResult.FAILED
        if any(_scalar(rates, name) is None for name in RATE_FIELDS):
            return CheckResult.FAILED
        try:
            rate = float(_scalar(rates, "max_dispatches_per_second"))
            attempts = int(_scalar(retry, "max_attempts"))
        except (TypeError, ValueError):
            return CheckResult.UNKNOWN
        if rate <= 0 or rate > MAX_DISPATCHES_PER_SECOND or attempts < 1:
            return CheckResult.FAILED
        return CheckResult.PASSED


check = QueueRetryAndRateLimits()
