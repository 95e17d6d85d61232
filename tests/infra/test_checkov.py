"""checkov (pinned, offline) finds no failed check in infra/, and the custom policies bite."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.terraform import INFRA
from tests.infra.tools import CheckovReport, Tools, run_checkov

CUSTOM_IDS = {"CKV_ATT_1", "CKV_ATT_2"}


@pytest.fixture(scope="module")
def report(tools: Tools) -> CheckovReport:
    return run_checkov(tools, INFRA)


def test_no_failed_checks(report: CheckovReport) -> None:
    failed = [f"{c['check_id']} {c['resource']}" for c in report.failed]
    assert failed == []
    assert len(report.passed) >= 10


def test_custom_policies_ran_and_passed(report: CheckovReport) -> None:
    assert report.ids("passed") >= CUSTOM_IDS


def test_every_skip_carries_a_reason(report: CheckovReport) -> None:
    for check in report.skipped:
        reason = str(check["check_result"].get("suppress_comment", "")).strip()
        assert len(reason) >= 20, (
            f"{check['check_id']} on {check['resource']} skipped without reason"
        )
    for path in INFRA.glob("*.tf"):
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(:?)([^\n]*)", path.read_text("utf-8")):
            assert match.group(2) == ":", f"{path.name}: {match.group(0)}"
            assert match.group(3).strip(), f"{path.name}: {match.group(0)}"


def test_checkov_fails_a_broken_copy(
    tools: Tools, infra_copy: Callable[[dict[str, tuple[str, str]]], Path]
) -> None:
    broken = infra_copy(
        {
            "tasks.tf": ("retry_config {", "dummy_block {"),
            "scheduler.tf": ("oidc_token {", "oauth_token {"),
            # An unexplained public, internet-open function: checkov's own CKV_GCP_124 must fire.
            "functions.tf": ("  # checkov:skip=CKV_GCP_124: Cloud Tasks", "  # Cloud Tasks"),
        }
    )
    failed = run_checkov(tools, broken).ids("failed")
    assert failed >= {"CKV_ATT_1", "CKV_ATT_2", "CKV_GCP_124"}
