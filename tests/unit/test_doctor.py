"""doctor's order, prerequisites, results and the admin step each failure points to, with
in-memory probes; and the CLI's lines, JSON and exit status on top of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import get_args

import pytest
from click.testing import CliRunner

from functions.cli import cli
from functions.config import READS, Settings
from functions.doctor import (
    DELEGATION_KINDS,
    Failure,
    FailureKind,
    Outcome,
    Passed,
    Report,
    run_doctor,
)
from functions.errors import ConfigError

REPORTS_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
ORGANIZER = "teacher@school.example"
MEMBER = "member@school.example"
ORDER = ["settings", "firestore", "queue", "reports", "directory", "meet", "calendar"]

SETTINGS = Settings(
    google_cloud_project="attendance-prod",
    tasks_location="europe-west1",
    tasks_queue="collect",
    collect_url="https://collect.example/",
    tasks_service_account="tasks@attendance-prod.iam.gserviceaccount.com",
    reports_admin_subject="admin@school.example",
    organizers=(ORGANIZER,),
)


class Probes:
    """Answers what it was told, and records what was called."""

    def __init__(self, **answers: Outcome | Exception) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str | None]] = []

    def _answer(self, name: str, organizer: str | None = None) -> Outcome:
        self.calls.append((name, organizer))
        answer = self.answers.get(name, Passed())
        if isinstance(answer, Exception):
            raise answer
        return answer

    def firestore(self) -> Outcome:
        return self._answer("firestore")

    def queue(self) -> Outcome:
        return self._answer("queue")

    def reports(self) -> Outcome:
        return self._answer("reports")

    def directory(self) -> Outcome:
        return self._answer("directory")

    def meet(self, organizer: str) -> Outcome:
        return self._answer("meet", organizer)

    def calendar(self, organizer: str) -> Outcome:
        return self._answer("calendar", organizer)


def doctor(probes: Probes, settings: Settings = SETTINGS) -> Report:
    return run_doctor(load_settings=lambda: settings, probes=lambda _: probes)


def by_name(report: Report) -> dict[str, tuple[str, str, str | None]]:
    return {c.name: (c.status, c.message, c.step) for c in report.checks}


def test_everything_passing_runs_every_check_in_order() -> None:
    probes = Probes()
    report = doctor(probes)
    assert [c.name for c in report.checks] == ORDER
    assert [c.status for c in report.checks] == ["ok"] * len(ORDER)
    assert report.ok
    assert probes.calls == [
        ("firestore", None),
        ("queue", None),
        ("reports", None),
        ("directory", None),
        ("meet", ORGANIZER),
        ("calendar", ORGANIZER),
    ]
    assert all(c.step is None for c in report.checks)
    assert report.checks[0].line().startswith("ok settings: project attendance-prod")


def test_invalid_settings_name_every_problem_and_nothing_else_runs() -> None:
    made: list[Settings] = []

    def load() -> Settings:
        raise ConfigError(["TASKS_QUEUE is required", "COLLECT_URL must be an http(s) URL"])

    report = run_doctor(load_settings=load, probes=lambda s: made.append(s) or Probes())  # type: ignore[func-returns-value]
    assert made == []
    settings, *rest = report.checks
    assert settings.status == "FAIL"
    assert "TASKS_QUEUE is required" in settings.message
    assert "COLLECT_URL must be an http(s) URL" in settings.message
    assert [c.status for c in rest] == ["skip"] * (len(ORDER) - 1)
    assert all("settings failed" in c.message for c in rest)
    assert not report.ok


def test_no_organizers_skips_their_checks_and_still_passes() -> None:
    probes = Probes()
    report = doctor(probes, replace(SETTINGS, organizers=()))
    statuses = {c.name: c.status for c in report.checks}
    assert [statuses[n] for n in ("directory", "meet", "calendar")] == ["skip"] * 3
    assert report.ok
    assert [name for name, _ in probes.calls] == ["firestore", "queue", "reports"]
    assert "ORGANIZERS" in by_name(report)["meet"][1]


def test_a_skip_because_a_prerequisite_failed_is_not_a_pass() -> None:
    probes = Probes(reports=Failure(kind="sign_denied", status=403, reason="PERMISSION_DENIED"))
    report = doctor(probes)
    assert not report.ok
    assert [name for name, _ in probes.calls] == ["firestore", "queue", "reports"]
    for name in ("directory", "meet", "calendar"):
        status, message, _ = by_name(report)[name]
        assert status == "skip"
        assert "reports" in message


@pytest.mark.parametrize("kind", sorted(DELEGATION_KINDS))
def test_each_failure_of_the_delegation_itself_skips_the_organizer_checks(
    kind: FailureKind,
) -> None:
    probes = Probes(reports=Failure(kind=kind))
    report = doctor(probes)
    assert ("meet", ORGANIZER) not in probes.calls
    assert by_name(report)["meet"][0] == "skip"


def test_a_reports_only_failure_still_runs_the_organizer_checks() -> None:
    # The client id is authorised per scope: Reports refused says nothing of Meet's scope.
    probes = Probes(reports=Failure(kind="unauthorized_client", scopes=(REPORTS_SCOPE,)))
    report = doctor(probes)
    assert ("meet", ORGANIZER) in probes.calls
    assert by_name(report)["meet"][0] == "ok"
    assert not report.ok


def test_firestore_and_queue_failures_do_not_stop_the_other_checks() -> None:
    probes = Probes(
        firestore=Failure(kind="unreachable", reason="ServiceUnavailable"),
        queue=Failure(kind="not_found", status=404, reason="NotFound"),
    )
    report = doctor(probes)
    assert by_name(report)["reports"][0] == "ok"
    status, message, step = by_name(report)["queue"]
    assert status == "FAIL"
    assert "queue" in message
    assert "gcloud tasks queues create collect" in str(step)


REPORTS_STEPS: dict[FailureKind, tuple[str, ...]] = {
    "api_disabled": ("not enabled", "gcloud services enable admin.googleapis.com"),
    "unauthorized_client": (REPORTS_SCOPE, "Domain-wide delegation"),
    "sign_denied": ("roles/iam.serviceAccountTokenCreator", "DELEGATION_SERVICE_ACCOUNT"),
    "iam_disabled": ("iamcredentials.googleapis.com",),
    "not_admin": ("REPORTS_ADMIN_SUBJECT", "Admin roles"),
    "no_privilege": ("REPORTS_ADMIN_SUBJECT", "Reports privilege"),
    "subject_unknown": ("REPORTS_ADMIN_SUBJECT must be an existing user",),
    "scope_insufficient": (REPORTS_SCOPE, "Domain-wide delegation"),
    "no_identity": ("service account",),
    "unreachable": ("network",),
}


@pytest.mark.parametrize("kind", sorted(REPORTS_STEPS))
def test_each_reports_failure_names_its_admin_step(kind: FailureKind) -> None:
    failure = Failure(kind=kind, status=403, reason="someReason", scopes=(REPORTS_SCOPE,))
    status, message, step = by_name(doctor(Probes(reports=failure)))["reports"]
    assert status == "FAIL"
    assert step is not None
    for needle in REPORTS_STEPS[kind]:
        assert needle in f"{message} {step}"
    assert "403 someReason" in message


def test_every_failure_kind_has_its_own_message_and_step() -> None:
    kinds: tuple[FailureKind, ...] = get_args(FailureKind)
    seen = set()
    for kind in kinds:
        check = by_name(doctor(Probes(reports=Failure(kind=kind))))["reports"]
        assert check[0] == "FAIL"
        seen.add((check[1], check[2]))
    assert len(seen) == len(kinds)


def test_unexpected_answers_carry_the_status_and_googles_reason() -> None:
    failure = Failure(kind="unexpected", status=500, reason="backendError", detail="Backend Error")
    status, message, step = by_name(doctor(Probes(reports=failure)))["reports"]
    assert status == "FAIL"
    assert "500 backendError: Backend Error" in message
    assert "Google's status and reason" in str(step)


def test_a_probe_that_raises_is_an_unexpected_failure_not_a_traceback() -> None:
    report = doctor(Probes(queue=RuntimeError("boom from the client")))
    status, message, _ = by_name(report)["queue"]
    assert status == "FAIL"
    assert "RuntimeError" in message
    assert "boom from the client" in message
    assert by_name(report)["reports"][0] == "ok"


@pytest.mark.parametrize(
    ("check", "needle"),
    [
        ("meet", "gcloud services enable meet.googleapis.com"),
        ("calendar", "gcloud services enable calendar-json.googleapis.com"),
        ("directory", "gcloud services enable admin.googleapis.com"),
    ],
)
def test_organizer_checks_name_their_own_api(check: str, needle: str) -> None:
    status, _, step = by_name(doctor(Probes(**{check: Failure(kind="api_disabled")})))[check]
    assert status == "FAIL"
    assert needle in (step or "")


def test_a_group_alone_takes_its_first_member_from_the_directory() -> None:
    settings = replace(SETTINGS, organizers=(), organizer_group="teachers@school.example")
    probes = Probes(directory=Passed(organizer=MEMBER))
    assert doctor(probes, settings).ok
    assert ("meet", MEMBER) in probes.calls
    assert ("calendar", MEMBER) in probes.calls


def test_a_group_whose_directory_check_failed_skips_meet_and_calendar() -> None:
    settings = replace(SETTINGS, organizers=(), organizer_group="teachers@school.example")
    probes = Probes(directory=Failure(kind="empty_group"))
    report = doctor(probes, settings)
    assert [name for name, _ in probes.calls][-1] == "directory"
    assert by_name(report)["meet"][:1] == ("skip",)
    assert "ORGANIZER_GROUP has no user members" in by_name(report)["directory"][1]


def test_messages_never_carry_the_organizers_address() -> None:
    probes = Probes(meet=Failure(kind="forbidden", status=403, detail="refused <address>"))
    report = doctor(probes)
    text = json.dumps(report.to_json())
    assert ORGANIZER not in text
    assert MEMBER not in text


def test_json_has_a_step_only_for_failures() -> None:
    report = doctor(Probes(firestore=Failure(kind="permission_denied", status=403)))
    data = report.to_json()
    assert data["ok"] is False
    checks = data["checks"]
    assert isinstance(checks, list)
    firestore = next(c for c in checks if c["name"] == "firestore")
    assert firestore["status"] == "FAIL"
    assert "roles/datastore.user" in firestore["step"]
    assert all("step" not in c for c in checks if c["status"] == "ok")


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    def run(*args: str, probes: Probes, env: dict[str, str] | None = None) -> tuple[int, str]:
        monkeypatch.setattr("functions.cli_doctor._probes", lambda settings: probes)
        base = SETTINGS.to_env()
        result = CliRunner().invoke(cli, ["doctor", *args], env=env if env is not None else base)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.exit_code, result.output

    for name in READS["cli"]:
        monkeypatch.delenv(name, raising=False)
    return run


def test_cli_prints_one_line_per_check_and_exits_0(
    run_cli: Callable[..., tuple[int, str]],
) -> None:
    status, output = run_cli(probes=Probes())
    lines = output.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"ok {name}" for name in ORDER]
    assert status == 0


def test_cli_exits_1_and_names_the_step(run_cli: Callable[..., tuple[int, str]]) -> None:
    failure = Failure(kind="not_admin", status=401, reason="authError")
    status, output = run_cli(probes=Probes(reports=failure))
    assert status == 1
    (line,) = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL reports: the Reports API refused REPORTS_ADMIN_SUBJECT (401")
    assert "; fix: make REPORTS_ADMIN_SUBJECT a Workspace admin" in line
    assert "Traceback" not in output


def test_cli_json(run_cli: Callable[..., tuple[int, str]]) -> None:
    status, output = run_cli("--json", probes=Probes(meet=Failure(kind="api_disabled")))
    data = json.loads(output)
    assert status == 1
    assert data["ok"] is False
    assert [c["name"] for c in data["checks"]] == ORDER
    meet = data["checks"][ORDER.index("meet")]
    assert meet["status"] == "FAIL"
    assert "meet.googleapis.com" in meet["step"]


def test_cli_with_invalid_settings_exits_1(run_cli: Callable[..., tuple[int, str]]) -> None:
    status, output = run_cli(probes=Probes(), env={"GOOGLE_CLOUD_PROJECT": ""})
    assert status == 1
    assert output.splitlines()[0].startswith("FAIL settings: ")
    assert "TASKS_QUEUE is required" in output
