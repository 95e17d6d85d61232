"""``doctor``: check each piece a deployment needs, in order, and name the admin step that fixes
the first thing broken.

The checks, each after its prerequisites (a check whose prerequisite failed is skipped, not run)::

    settings ─┬─ firestore            one cheap read
              ├─ queue                get_queue of TASKS_QUEUE
              └─ reports ──(the delegation itself works)──┐
                 activities.list (meet, all, 1 result)    │  only when ORGANIZERS or
                                                          ├─ directory   ORGANIZER_GROUP is set:
                                                          ├─ meet        as the first organizer
                                                          └─ calendar

The probes (``functions.adapters.doctor_probes``) make the calls and classify what Google answered
into a :class:`Failure` of one :data:`FailureKind`; this module owns everything an operator
reads: the order, the results and, for each kind of failure, the message and the admin step.
Messages name settings, never their person-identifying values, and never carry a token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from functions.config import Settings
from functions.errors import ConfigError

__all__ = [
    "CheckResult",
    "Failure",
    "FailureKind",
    "Passed",
    "Probes",
    "Report",
    "run_doctor",
]

Status = Literal["ok", "FAIL", "skip"]
FailureKind = Literal[
    "unreachable",  # the network, an emulator down, a timeout
    "not_found",  # the Firestore database, the queue or the group does not exist
    "permission_denied",  # Cloud IAM refused the identity running doctor (Firestore, Tasks)
    "api_disabled",  # 403 accessNotConfigured / SERVICE_DISABLED
    "iam_disabled",  # the IAM Service Account Credentials API is not enabled (signBlob)
    "sign_denied",  # IAM refused signBlob: no roles/iam.serviceAccountTokenCreator
    "no_identity",  # no runtime service account to sign as
    "no_credentials",  # no Application Default Credentials at all
    "unauthorized_client",  # the token endpoint: client id not authorised for these scopes
    "subject_unknown",  # the token endpoint: invalid_grant, no such user
    "not_admin",  # Reports 401: the subject is not an admin
    "no_privilege",  # Reports 403: an admin without the Reports privilege
    "scope_insufficient",  # 403 insufficientPermissions / 401 from a Workspace API
    "forbidden",  # a plain 403 from a Workspace API
    "empty_group",  # ORGANIZER_GROUP has no user members
    "unexpected",  # anything else: the HTTP status and Google's reason
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """What a probe saw, classified. ``status``: the HTTP status (or gRPC code name) when Google
    answered; ``reason``: Google's reason (``accessNotConfigured``, ``unauthorized_client``);
    ``detail``: Google's message, one line, without addresses; ``scopes``: the OAuth scopes the
    credentials asked for."""

    kind: FailureKind
    status: int | str | None = None
    reason: str = ""
    detail: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Passed:
    """A probe that succeeded; ``note`` adds to the message; ``organizer``: the directory
    probe's first organizer."""

    note: str = ""
    organizer: str | None = None


Outcome = Passed | Failure


class Probes(Protocol):
    """The calls doctor makes; none raises (the runner still turns a raise into ``unexpected``)."""

    def firestore(self) -> Outcome: ...

    def queue(self) -> Outcome: ...

    def reports(self) -> Outcome: ...

    def directory(self) -> Outcome: ...

    def meet(self, organizer: str) -> Outcome: ...

    def calendar(self, organizer: str) -> Outcome: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    status: Status
    message: str
    step: str | None = None
    #: A skip that still counts as a pass (no organizers configured).
    optional: bool = False
    #: What failed, for the checks that depend on this one.
    kind: FailureKind | None = None

    @property
    def passed(self) -> bool:
        return self.status == "ok" or (self.status == "skip" and self.optional)

    def line(self) -> str:
        fix = f"; fix: {self.step}" if self.step else ""
        return f"{self.status} {self.name}: {self.message}{fix}"

    def to_json(self) -> dict[str, str]:
        out = {"name": self.name, "status": self.status, "message": self.message}
        if self.step:
            out["step"] = self.step
        return out


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"checks": [check.to_json() for check in self.checks], "ok": self.ok}


@dataclass(frozen=True, slots=True)
class _Api:
    """What a check's messages say about the API it calls."""

    title: str
    service: str
    call: str


APIS: Final = {
    "firestore": _Api("Cloud Firestore API", "firestore.googleapis.com", "one read"),
    "queue": _Api("Cloud Tasks API", "cloudtasks.googleapis.com", "get_queue"),
    "reports": _Api("Admin SDK API", "admin.googleapis.com", "Reports activities.list"),
    "directory": _Api("Admin SDK API", "admin.googleapis.com", "Directory"),
    "meet": _Api("Google Meet REST API", "meet.googleapis.com", "conferenceRecords.list"),
    "calendar": _Api("Google Calendar API", "calendar-json.googleapis.com", "events.list"),
}
ORGANIZER_CHECKS: Final = ("directory", "meet", "calendar")
#: Failures of the delegation itself: every delegated call would fail the same way.
DELEGATION_KINDS: Final = frozenset({"sign_denied", "iam_disabled", "no_identity"})
DWD_CONSOLE: Final = (
    "Admin console → Security → Access and data control → API controls → Domain-wide delegation"
)
_ADDRESS = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*")


def run_doctor(
    *, load_settings: Callable[[], Settings], probes: Callable[[Settings], Probes]
) -> Report:
    """Every check in order; never raises for what a probe or the settings do."""
    try:
        settings = load_settings()
    except ConfigError as error:
        failed = CheckResult(
            name="settings",
            status="FAIL",
            message=" ".join(error.message.split()),
            step="set or correct the settings named (README: Settings)",
        )
        later = ("firestore", "queue", "reports", *ORGANIZER_CHECKS)
        return Report((failed, *(_skipped(name, "settings") for name in later)))
    checks = [CheckResult(name="settings", status="ok", message=_settings_summary(settings))]
    probe = probes(settings)
    checks.append(_check("firestore", settings, lambda: probe.firestore()))
    checks.append(_check("queue", settings, lambda: probe.queue()))
    reports = _check("reports", settings, lambda: probe.reports())
    checks.append(reports)
    checks.extend(_organizer_checks(settings, probe, reports))
    return Report(tuple(checks))


def _organizer_checks(settings: Settings, probe: Probes, reports: CheckResult) -> list[CheckResult]:
    if not settings.organizers and not settings.organizer_group:
        message = "no organizers configured (ORGANIZERS, ORGANIZER_GROUP)"
        return [
            CheckResult(name=name, status="skip", message=message, optional=True)
            for name in ORGANIZER_CHECKS
        ]
    if reports.kind in DELEGATION_KINDS:
        return [_skipped(name, "reports (the delegation itself)") for name in ORGANIZER_CHECKS]
    found: list[str | None] = [settings.organizers[0] if settings.organizers else None]

    def directory() -> Outcome:
        outcome = probe.directory()
        if isinstance(outcome, Passed) and found[0] is None:
            found[0] = outcome.organizer
        return outcome

    checks = [_check("directory", settings, directory)]
    organizer = found[0]
    if organizer is None:
        return [*checks, _skipped("meet", "directory"), _skipped("calendar", "directory")]
    checks.append(_check("meet", settings, lambda: probe.meet(organizer)))
    checks.append(_check("calendar", settings, lambda: probe.calendar(organizer)))
    return checks


def _check(name: str, settings: Settings, run: Callable[[], Outcome]) -> CheckResult:
    try:
        outcome = run()
    except Exception as error:
        outcome = Failure(kind="unexpected", reason=type(error).__name__, detail=_clean(error))
    if isinstance(outcome, Passed):
        note = f" ({outcome.note})" if outcome.note else ""
        return CheckResult(name=name, status="ok", message=_ok_message(name, settings) + note)
    return CheckResult(
        name=name,
        status="FAIL",
        message=_failure_message(name, outcome),
        step=_step(name, settings, outcome),
        kind=outcome.kind,
    )


def _skipped(name: str, prerequisite: str) -> CheckResult:
    return CheckResult(name=name, status="skip", message=f"not run: {prerequisite} failed")


def _settings_summary(settings: Settings) -> str:
    organizers = (
        f"{len(settings.organizers)} organizer(s)"
        if settings.organizers
        else ("ORGANIZER_GROUP" if settings.organizer_group else "no organizers")
    )
    return (
        f"project {settings.google_cloud_project}, queue {settings.tasks_queue} in "
        f"{settings.tasks_location}, {organizers}"
    )


def _ok_message(name: str, settings: Settings) -> str:
    if name == "firestore":
        return f"Firestore of project {settings.google_cloud_project} answered a read"
    if name == "queue":
        return f"{settings.queue_path} exists"
    if name == "reports":
        how = (
            "from the stand-in REPORTS_API_ENDPOINT (no delegation)"
            if settings.reports_api_endpoint
            else "through the delegation as REPORTS_ADMIN_SUBJECT"
        )
        return f"activities.list (meet, all users, 1 result) answered {how}"
    if name == "directory":
        return "the Directory API answered as REPORTS_ADMIN_SUBJECT"
    return f"the {APIS[name].title} answered {APIS[name].call} as the first organizer"


def _failure_message(name: str, failure: Failure) -> str:
    api = APIS[name]
    said = _said(failure)
    kind = failure.kind
    messages: dict[FailureKind, str] = {
        "unreachable": f"the {api.title} is unreachable{said}",
        "not_found": f"{_what_is_missing(name)} does not exist{said}",
        "permission_denied": f"the identity running doctor may not make {api.call}{said}",
        "api_disabled": f"the {api.title} is not enabled in the project{said}",
        "iam_disabled": "the IAM Service Account Credentials API is not enabled, so nothing can "
        f"sign the delegation assertion{said}",
        "sign_denied": f"IAM refused to sign the delegation assertion (signBlob){said}",
        "no_identity": f"no service account to sign the delegation assertion as{said}",
        "no_credentials": f"no Google credentials to make {api.call} with{said}",
        "unauthorized_client": "the token endpoint refused the domain-wide delegation for "
        f"{_scopes(failure)}{said}",
        "subject_unknown": f"the token endpoint does not know the impersonated user{said}",
        "not_admin": f"the Reports API refused REPORTS_ADMIN_SUBJECT{said}",
        "no_privilege": f"the Reports API refused REPORTS_ADMIN_SUBJECT access{said}",
        "scope_insufficient": f"the {api.title} refused the delegated token's scopes{said}",
        "forbidden": f"the {api.title} refused access{said}",
        "empty_group": "ORGANIZER_GROUP has no user members",
        "unexpected": f"unexpected answer to {api.call}{said}",
    }
    return messages[kind]


def _step(name: str, settings: Settings, failure: Failure) -> str:
    api = APIS[name]
    project = settings.google_cloud_project
    subject = "the first organizer" if name in ("meet", "calendar") else "REPORTS_ADMIN_SUBJECT"
    steps: dict[FailureKind, str] = {
        "unreachable": f"check the network and the {api.title} endpoint settings, then retry",
        "not_found": _create_step(name, settings),
        "permission_denied": _permission_step(name),
        "api_disabled": f"enable the {api.title}: gcloud services enable {api.service} "
        f"--project {project}",
        "iam_disabled": "enable the IAM Service Account Credentials API: gcloud services enable "
        f"iamcredentials.googleapis.com --project {project}",
        "sign_denied": "grant the runtime service account roles/iam.serviceAccountTokenCreator "
        "on the delegation service account (DELEGATION_SERVICE_ACCOUNT; the runtime account "
        "itself when unset)",
        "no_identity": "run doctor as the functions' service account (Application Default "
        "Credentials of a service account), or set DELEGATION_SERVICE_ACCOUNT",
        "no_credentials": "give doctor Application Default Credentials (gcloud auth "
        "application-default login, or run it as the functions' service account)",
        "unauthorized_client": _authorise_step(failure),
        "subject_unknown": f"{subject} must be an existing user of this Workspace",
        "not_admin": "make REPORTS_ADMIN_SUBJECT a Workspace admin whose role has the Reports "
        "privilege (Admin console → Account → Admin roles)",
        "no_privilege": "give REPORTS_ADMIN_SUBJECT's admin role the Reports privilege (Admin "
        "console → Account → Admin roles → Privileges → Admin API → Reports)",
        "scope_insufficient": _authorise_step(failure),
        "forbidden": _forbidden_step(name),
        "empty_group": "add the organizers to ORGANIZER_GROUP as direct members, or set ORGANIZERS",
        "unexpected": "none known: read Google's status and reason above",
    }
    return steps[failure.kind]


def _authorise_step(failure: Failure) -> str:
    return (
        "authorise the delegation service account's OAuth client id for exactly these scopes: "
        f"{_scopes(failure)} ({DWD_CONSOLE})"
    )


def _create_step(name: str, settings: Settings) -> str:
    if name == "firestore":
        return (
            "create the Firestore database (default) in Native mode: gcloud firestore databases "
            f"create --project {settings.google_cloud_project} --location=REGION"
        )
    if name == "queue":
        return (
            f"create the queue: gcloud tasks queues create {settings.tasks_queue} --location "
            f"{settings.tasks_location} --project {settings.google_cloud_project} (or apply infra/)"
        )
    return "set ORGANIZER_GROUP to the email of an existing group"


def _permission_step(name: str) -> str:
    if name == "firestore":
        return "grant the identity running doctor roles/datastore.user (or datastore.viewer)"
    if name == "queue":
        return "grant the identity running doctor roles/cloudtasks.viewer on the queue"
    return "grant the identity running doctor access to the API"


def _forbidden_step(name: str) -> str:
    if name == "directory":
        return (
            "REPORTS_ADMIN_SUBJECT must be an admin allowed to read users and groups (Admin "
            "console → Account → Admin roles → Users: Read, Groups: Read)"
        )
    if name == "calendar":
        return "the first organizer must be a Workspace user with Google Calendar turned on"
    return "the first organizer must be a Workspace user with Google Meet turned on"


def _what_is_missing(name: str) -> str:
    return {
        "firestore": "the Firestore database",
        "queue": "the Cloud Tasks queue TASKS_QUEUE",
        "directory": "the group ORGANIZER_GROUP",
    }.get(name, "the resource")


def _said(failure: Failure) -> str:
    """`` (403 accessNotConfigured: Google's message)``: what Google answered, when it did."""
    head = " ".join(
        str(part) for part in (failure.status, failure.reason) if part not in ("", None)
    )
    if failure.detail:
        head = f"{head}: {failure.detail}" if head else failure.detail
    return f" ({head})" if head else ""


def _scopes(failure: Failure) -> str:
    return ", ".join(failure.scopes) if failure.scopes else "the scopes asked for"


def _clean(error: BaseException) -> str:
    return clean_detail(str(error))


def clean_detail(text: str, *, limit: int = 240) -> str:
    """Google's or a library's text as a message quotes it: one line, addresses replaced, cut."""
    line = _ADDRESS.sub("<address>", " ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def render_lines(report: Report) -> Sequence[str]:
    return [check.line() for check in report.checks]
