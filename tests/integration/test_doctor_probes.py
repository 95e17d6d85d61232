"""doctor's probes through the unmodified Google clients against the stand-ins: keyless delegation
(IAM signBlob and the token endpoint faked), the fake Reports, Meet/Directory and Calendar APIs,
the Cloud Tasks emulator and Google's Firestore emulator. Each fault gives its own message."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import google.auth.credentials
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.adapters.calendar import CALENDAR_SCOPES
from functions.adapters.doctor_probes import GoogleProbes
from functions.adapters.google_credentials import (
    DIRECTORY_GROUP_MEMBER_SCOPE,
    DIRECTORY_USER_SCOPE,
    MEET_SCOPE,
    REPORTS_SCOPE,
    keyless_delegated_credentials,
)
from functions.config import Settings
from functions.doctor import CheckResult, Failure, Outcome, Passed, run_doctor
from local._net import free_port
from local.fake_calendar import FakeCalendarServer
from local.fake_google_auth import FakeIam, FakeSourceCredentials, FakeTokenServer, generate_key
from local.fake_reports import FakeReportsServer
from local.fake_workspace import FakeWorkspaceServer
from local.firestore_emulator import FirestoreEmulator
from local.tasks_emulator import TasksEmulator

os.environ["NO_GCE_CHECK"] = "True"

ADMIN = "reports-admin@school.example"
ORGANIZER = "teacher@school.example"
TOKEN = "delegated-token-for-doctor"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROJECT = "doctor-test"
QUEUE_PATH = f"projects/{PROJECT}/locations/here/queues/collect"
ALL_SCOPES = " ".join(
    [
        REPORTS_SCOPE,
        MEET_SCOPE,
        DIRECTORY_USER_SCOPE,
        DIRECTORY_GROUP_MEMBER_SCOPE,
        *CALENDAR_SCOPES,
    ]
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses name resolution of anything but loopback; keeps google-auth's regional access
    boundary lookup (a call to Google) off."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.delenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", raising=False
    )


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture(scope="module")
def reports() -> Iterator[FakeReportsServer]:
    with FakeReportsServer(require_token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def workspace() -> Iterator[FakeWorkspaceServer]:
    server = FakeWorkspaceServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def calendar() -> Iterator[FakeCalendarServer]:
    with FakeCalendarServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(
    reports: FakeReportsServer, workspace: FakeWorkspaceServer, calendar: FakeCalendarServer
) -> None:
    reports.reset()
    workspace.reset()
    calendar.reset()


@pytest.fixture
def settings(
    reports: FakeReportsServer, workspace: FakeWorkspaceServer, calendar: FakeCalendarServer
) -> Settings:
    return Settings(
        google_cloud_project=PROJECT,
        tasks_location="here",
        tasks_queue="collect",
        collect_url="http://127.0.0.1:9/",
        tasks_service_account="tasks@doctor-test.iam.gserviceaccount.com",
        reports_admin_subject=ADMIN,
        reports_api_endpoint=reports.url,
        meet_api_endpoint=workspace.url,
        directory_api_endpoint=workspace.url,
        calendar_api_endpoint=calendar.url,
        organizers=(ORGANIZER,),
    )


Delegate = Callable[[str, Sequence[str]], google.auth.credentials.Credentials]


def delegation(
    key: rsa.RSAPrivateKey,
    *,
    scopes: str = ALL_SCOPES,
    subject: str = ADMIN,
    deny: bool = False,
    disabled: bool = False,
) -> tuple[Delegate, FakeTokenServer, FakeIam]:
    """Keyless delegation on the stand-ins: ``scopes`` is what the admin console authorised."""
    iam = FakeIam(key=key, deny=deny, disabled=disabled)
    server = FakeTokenServer(
        expected_subject=subject, expected_scope=scopes, iam=iam, access_token=TOKEN
    )
    server.start()

    def delegate(who: str, asked: Sequence[str]) -> google.auth.credentials.Credentials:
        return keyless_delegated_credentials(
            subject=who,
            source=FakeSourceCredentials(),
            request=iam,
            token_uri=server.token_uri,
            scopes=asked,
        )

    return delegate, server, iam


@pytest.fixture
def token_servers() -> Iterator[list[FakeTokenServer]]:
    started: list[FakeTokenServer] = []
    yield started
    for server in started:
        server.stop()


def delegated_probes(
    settings: Settings,
    key: rsa.RSAPrivateKey,
    token_servers: list[FakeTokenServer],
    **options: Any,
) -> tuple[GoogleProbes, FakeTokenServer, FakeIam]:
    delegate, server, iam = delegation(key, **options)
    token_servers.append(server)
    return GoogleProbes(settings, delegate=delegate, timeout_s=5), server, iam


class Only:
    """The real probe for the checks named (and the organizer checks' prerequisite, reports),
    every other check passing without a call: nothing looks for Google credentials."""

    def __init__(self, probes: GoogleProbes, *names: str) -> None:
        self._probes = probes
        self._names = {*names, "reports"}

    def firestore(self) -> Outcome:
        return self._probes.firestore() if "firestore" in self._names else Passed()

    def queue(self) -> Outcome:
        return self._probes.queue() if "queue" in self._names else Passed()

    def reports(self) -> Outcome:
        return self._probes.reports()

    def directory(self) -> Outcome:
        return self._probes.directory() if "directory" in self._names else Passed()

    def meet(self, organizer: str) -> Outcome:
        return self._probes.meet(organizer) if "meet" in self._names else Passed()

    def calendar(self, organizer: str) -> Outcome:
        return self._probes.calendar(organizer) if "calendar" in self._names else Passed()


def check(settings: Settings, probes: GoogleProbes, name: str) -> CheckResult:
    """The named check of a doctor run with these probes."""
    only = Only(probes, name)
    report = run_doctor(load_settings=lambda: settings, probes=lambda _: only)
    return next(c for c in report.checks if c.name == name)


# --- Reports through keyless delegation ----------------------------------------------------------


def test_reports_passes_through_the_delegation_with_one_small_listing(
    settings: Settings,
    key: rsa.RSAPrivateKey,
    token_servers: list[FakeTokenServer],
    reports: FakeReportsServer,
) -> None:
    probes, token_server, iam = delegated_probes(settings, key, token_servers)
    assert probes.reports() == Passed()
    (request,) = reports.requests()
    assert request["path"] == "/admin/reports/v1/activity/users/all/applications/meet"
    assert request["query"]["maxResults"] == "1"
    assert request["status"] == 200
    (grant,) = token_server.requests()
    assert grant["claims"]["sub"] == ADMIN
    assert grant["claims"]["scope"] == REPORTS_SCOPE
    assert [r["status"] for r in iam.sign_requests()] == [200]


def test_unauthorized_client_names_the_admin_console_step_and_the_scope(
    settings: Settings, key: rsa.RSAPrivateKey, token_servers: list[FakeTokenServer]
) -> None:
    probes, _, _ = delegated_probes(settings, key, token_servers, scopes=MEET_SCOPE)
    failure = probes.reports()
    assert isinstance(failure, Failure)
    assert failure.kind == "unauthorized_client"
    result = check(settings, probes, "reports")
    assert result.status == "FAIL"
    assert "unauthorized_client" in result.message
    assert result.step is not None
    assert "Domain-wide delegation" in result.step
    assert REPORTS_SCOPE in result.step


def test_sign_blob_denied_names_the_token_creator_role(
    settings: Settings, key: rsa.RSAPrivateKey, token_servers: list[FakeTokenServer]
) -> None:
    probes, token_server, _ = delegated_probes(settings, key, token_servers, deny=True)
    failure = probes.reports()
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.status, failure.reason) == (
        "sign_denied",
        403,
        "PERMISSION_DENIED",
    )
    assert token_server.requests() == []  # nothing was signed, so nothing was exchanged
    result = check(settings, probes, "reports")
    assert "roles/iam.serviceAccountTokenCreator" in str(result.step)
    # The organizer checks share the delegation: they are skipped, not run.
    assert check(settings, probes, "meet").status == "skip"


def test_iam_credentials_api_disabled_is_its_own_failure(
    settings: Settings, key: rsa.RSAPrivateKey, token_servers: list[FakeTokenServer]
) -> None:
    probes, _, _ = delegated_probes(settings, key, token_servers, disabled=True)
    failure = probes.reports()
    assert isinstance(failure, Failure)
    assert failure.kind == "iam_disabled"
    assert "gcloud services enable iamcredentials.googleapis.com" in str(
        check(settings, probes, "reports").step
    )


def test_a_subject_the_token_endpoint_does_not_know(
    settings: Settings, key: rsa.RSAPrivateKey, token_servers: list[FakeTokenServer]
) -> None:
    probes, _, _ = delegated_probes(
        settings, key, token_servers, subject="someone-else@school.example"
    )
    failure = probes.reports()
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.reason) == ("subject_unknown", "invalid_grant")
    step = str(check(settings, probes, "reports").step)
    assert "REPORTS_ADMIN_SUBJECT must be an existing user" in step


@pytest.mark.parametrize(
    ("fault", "count", "kind", "status", "needle"),
    [
        # A 401 makes the client refresh its token once and resend: the fault answers both.
        ("not_admin", 2, "not_admin", 401, "Admin roles"),
        ("not_authorized", 1, "no_privilege", 403, "Reports privilege"),
        ("api_disabled", 1, "api_disabled", 403, "gcloud services enable admin.googleapis.com"),
        ("insufficient_scopes", 1, "scope_insufficient", 403, REPORTS_SCOPE),
        ("server_error", 1, "unexpected", 500, "Google's status and reason"),
    ],
)
def test_each_reports_fault_gives_its_own_failure(
    settings: Settings,
    key: rsa.RSAPrivateKey,
    token_servers: list[FakeTokenServer],
    reports: FakeReportsServer,
    fault: str,
    count: int,
    kind: str,
    status: int,
    needle: str,
) -> None:
    probes, _, _ = delegated_probes(settings, key, token_servers)
    reports.add_fault(fault, count=count)
    failure = probes.reports()
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.status) == (kind, status)
    reports.add_fault(fault, count=count)
    result = check(settings, probes, "reports")
    assert result.status == "FAIL"
    assert needle in f"{result.message} {result.step}"
    assert "Traceback" not in result.message


def test_reports_without_delegation_against_the_stand_in(
    settings: Settings, reports: FakeReportsServer
) -> None:
    # The collect function's own credentials for a stand-in endpoint: none at all.
    open_reports = FakeReportsServer()
    with open_reports:
        probes = GoogleProbes(replace(settings, reports_api_endpoint=open_reports.url))
        assert probes.reports() == Passed()
        assert [r["status"] for r in open_reports.requests()] == [200]
    # The token-checking fake refuses an anonymous call: the 401 of a token Google rejects.
    failure = GoogleProbes(settings).reports()
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.status) == ("not_admin", 401)


def test_reports_unreachable(settings: Settings) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    failure = GoogleProbes(replace(settings, reports_api_endpoint=closed), timeout_s=5).reports()
    assert isinstance(failure, Failure)
    assert failure.kind == "unreachable"


# --- Meet, Directory, Calendar -------------------------------------------------------------------


def test_organizer_checks_pass_against_the_stand_ins(
    settings: Settings, workspace: FakeWorkspaceServer, calendar: FakeCalendarServer
) -> None:
    probes = GoogleProbes(settings)
    assert probes.meet(ORGANIZER) == Passed()
    (meet,) = workspace.requests()
    assert (meet["path"], meet["query"]["pageSize"], meet["subject"]) == (
        "/v2/conferenceRecords",
        "1",
        ORGANIZER,
    )
    directory = probes.directory()
    assert isinstance(directory, Passed)
    assert "not in the directory" in directory.note  # the fake knows no users yet
    workspace.load(users=[{"id": "1001", "primaryEmail": ORGANIZER}])
    assert probes.directory() == Passed(organizer=ORGANIZER)
    assert workspace.requests()[-1]["subject"] == ADMIN
    first = probes.calendar(ORGANIZER)
    assert isinstance(first, Passed)
    assert "not found" in first.note
    calendar.add_events(ORGANIZER, [])
    assert probes.calendar(ORGANIZER) == Passed()
    assert calendar.requests()[-1]["subject"] == ORGANIZER


def test_a_group_gives_its_first_user_member(
    settings: Settings, workspace: FakeWorkspaceServer
) -> None:
    grouped = replace(settings, organizers=(), organizer_group="teachers@school.example")
    workspace.load(
        groups=[
            {"email": "teachers@school.example", "members": ["staff@school.example", ORGANIZER]},
            {"email": "staff@school.example", "members": []},
        ]
    )
    # staff@ is a group, not a user: the first organizer is the first USER member.
    assert GoogleProbes(grouped).directory() == Passed(organizer=ORGANIZER)
    missing = GoogleProbes(replace(grouped, organizer_group="nobody@school.example")).directory()
    assert isinstance(missing, Failure)
    assert missing.kind == "not_found"
    workspace.load(groups=[{"email": "empty@school.example", "members": []}])
    empty = GoogleProbes(replace(grouped, organizer_group="empty@school.example")).directory()
    assert empty == Failure(kind="empty_group")


@pytest.mark.parametrize(
    ("name", "prefix", "scope"),
    [
        ("meet", "/v2/", MEET_SCOPE),
        ("directory", "/admin/", DIRECTORY_USER_SCOPE),
    ],
)
@pytest.mark.parametrize(
    ("reason", "kind", "needle"),
    [
        ("accessNotConfigured", "api_disabled", "gcloud services enable"),
        ("insufficientPermissions", "scope_insufficient", "Domain-wide delegation"),
    ],
)
def test_workspace_faults(
    settings: Settings,
    workspace: FakeWorkspaceServer,
    name: str,
    prefix: str,
    scope: str,
    reason: str,
    kind: str,
    needle: str,
) -> None:
    workspace.add_faults({"path_prefix": prefix, "status": 403, "reason": reason, "count": 2})
    result = check(settings, GoogleProbes(settings), name)
    assert result.status == "FAIL"
    assert result.kind == kind
    assert needle in str(result.step)
    if kind == "scope_insufficient":
        assert scope in str(result.step)
    else:
        service = "meet.googleapis.com" if name == "meet" else "admin.googleapis.com"
        assert service in str(result.step)


@pytest.mark.parametrize(
    ("reason", "kind", "needle"),
    [
        ("accessNotConfigured", "api_disabled", "calendar-json.googleapis.com"),
        ("insufficientPermissions", "scope_insufficient", CALENDAR_SCOPES[0]),
    ],
)
def test_calendar_faults(
    settings: Settings, calendar: FakeCalendarServer, reason: str, kind: str, needle: str
) -> None:
    calendar.add_faults({"path_prefix": "/calendar/", "status": 403, "reason": reason})
    failure = GoogleProbes(settings).calendar(ORGANIZER)
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.status, failure.reason) == (kind, 403, reason)
    calendar.add_faults({"path_prefix": "/calendar/", "status": 403, "reason": reason})
    assert needle in str(check(settings, GoogleProbes(settings), "calendar").step)


def test_meet_scope_not_authorised_for_delegation(
    settings: Settings, key: rsa.RSAPrivateKey, token_servers: list[FakeTokenServer]
) -> None:
    probes, _, _ = delegated_probes(settings, key, token_servers, scopes=REPORTS_SCOPE)
    assert probes.reports() == Passed()
    failure = probes.meet(ORGANIZER)
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.scopes) == ("unauthorized_client", (MEET_SCOPE,))
    assert MEET_SCOPE in str(check(settings, probes, "meet").step)


# --- Firestore and Cloud Tasks -------------------------------------------------------------------


def test_queue_exists_and_missing(settings: Settings) -> None:
    with TasksEmulator() as emulator:
        emulator.create_queue(QUEUE_PATH)
        here = replace(settings, cloud_tasks_emulator_host=emulator.address)
        assert GoogleProbes(here, timeout_s=5).queue() == Passed()
        missing = replace(here, tasks_queue="missing")
        gone = GoogleProbes(missing, timeout_s=5).queue()
        result = check(missing, GoogleProbes(missing, timeout_s=5), "queue")
    assert isinstance(gone, Failure)
    assert (gone.kind, gone.status) == ("not_found", 404)
    assert result.status == "FAIL"
    assert "gcloud tasks queues create missing" in str(result.step)


def test_queue_unreachable(settings: Settings) -> None:
    closed = replace(settings, cloud_tasks_emulator_host=f"127.0.0.1:{free_port()}")
    failure = GoogleProbes(closed, timeout_s=3).queue()
    assert isinstance(failure, Failure)
    assert failure.kind == "unreachable"


def test_firestore_answers_a_read(settings: Settings, firestore_db: FirestoreEmulator) -> None:
    here = replace(
        settings, google_cloud_project=PROJECT, firestore_emulator_host=firestore_db.host
    )
    assert GoogleProbes(here, timeout_s=10).firestore() == Passed()


def test_firestore_unreachable(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    failure = GoogleProbes(replace(settings, firestore_emulator_host=host), timeout_s=3).firestore()
    assert isinstance(failure, Failure)
    assert failure.kind == "unreachable"
