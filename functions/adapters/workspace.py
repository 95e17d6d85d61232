"""The MeetApi, Directory and WorkspaceEvents ports on Google's Meet REST v2, Admin SDK Directory
and Workspace Events v1 APIs. The only module that knows their clients.

Every call impersonates a Workspace user through domain-wide delegation: the organizer for Meet
REST and Workspace Events (only a space's owner or a participant may read its conference records,
and a subscription belongs to the user who authorised it), the Reports admin for the Directory
(:class:`~functions.adapters.google_credentials.SubjectConnections`; against a stand-in endpoint,
static ``local-subject:<email>`` tokens and no Google credentials at all).

Every call goes through the shared backoff (:mod:`functions.adapters.backoff`). A record that is
not there (404), or that the organizer may not read (a plain 403), answers None; an API that is
not enabled, a scope not authorised and a subject outside the Workspace are WorkspaceErrors of
kind ``permission`` whose message names the admin step. Google's JSON is read defensively: a
malformed item of a list is skipped, never a crash.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeGuard

import httplib2
from googleapiclient.discovery import build

from functions.adapters.backoff import Backoff, HttpFailure, Retrying
from functions.adapters.google_credentials import (
    DIRECTORY_GROUP_MEMBER_SCOPE,
    DIRECTORY_USER_SCOPE,
    MEET_SCOPE,
    SUBJECT_HELP,
    CredentialsUnavailable,
    SubjectConnections,
    describe_token_error,
    subject_credentials,
    unauthorized_client_help,
)
from functions.config import Settings
from functions.errors import ReportsErrorKind, SubscriptionExists, WorkspaceError
from functions.meet_records import (
    AttendeeKind,
    Conference,
    DirectoryUser,
    EventSubscription,
    MeetAttendee,
    MeetSessionTimes,
    MeetSpace,
    SubscriptionStateName,
)
from functions.timestamps import parse_timestamp

MEET_API: Final = "Meet REST API"
EVENTS_API: Final = "Workspace Events API"
DIRECTORY_API: Final = "Directory API"
MEET_SCOPES: Final = (MEET_SCOPE,)
DIRECTORY_SCOPES: Final = (DIRECTORY_USER_SCOPE, DIRECTORY_GROUP_MEMBER_SCOPE)
MEET_PAGE_SIZE: Final = 250  # participants and participantSessions: the documented maximum
SUBSCRIPTIONS_PAGE_SIZE: Final = 100
MEMBERS_PAGE_SIZE: Final = 200
#: How long a Workspace Events long-running operation may take before the call gives up.
OPERATION_WAIT_S: Final = 60.0
DEFAULT_BACKOFF: Final = Backoff()

ORGANIZER_HELP: Final = "the organizer is not a user of this Workspace"
MEET_ENABLE_HELP: Final = "enable the Google Meet REST API in the project"
EVENTS_ENABLE_HELP: Final = (
    "enable the Google Workspace Events API (and the Google Meet REST API) in the project"
)
DIRECTORY_ENABLE_HELP: Final = "enable the Admin SDK API in the project"
EVENTS_FORBIDDEN_HELP: Final = (
    "the organizer must own the target, and meet-api-event-push@system.gserviceaccount.com needs "
    "roles/pubsub.publisher on the topic"
)
DIRECTORY_FORBIDDEN_HELP: Final = (
    "REPORTS_ADMIN_SUBJECT must be an admin allowed to read users and groups"
)

_CONFERENCE = re.compile(r"conferenceRecords/[^/]+")
_PARTICIPANT = re.compile(r"conferenceRecords/[^/]+/participants/[^/]+")
_SPACE = re.compile(r"spaces/[^/]+")
_SUBSCRIPTION = re.compile(r"subscriptions/[^/]+")
_OPERATION = re.compile(r"operations/.+")
_USER = re.compile(r"users/[^/]+")
_DISABLED_REASONS = frozenset({"SERVICE_DISABLED", "accessNotConfigured"})
_SCOPE_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"})
_STATES: Final[frozenset[SubscriptionStateName]] = frozenset(
    {"ACTIVE", "SUSPENDED", "DELETED", "STATE_UNSPECIFIED"}
)
_KINDS: Final[tuple[tuple[str, AttendeeKind], ...]] = (
    ("signedinUser", "signed_in"),
    ("anonymousUser", "anonymous"),
    ("phoneUser", "phone"),
)
#: google.rpc.Code values of an Operation's ``error``: set-up problems, and ALREADY_EXISTS.
_PERMISSION_CODES = frozenset({7, 16})  # PERMISSION_DENIED, UNAUTHENTICATED
_ALREADY_EXISTS_CODE = 6


class _Missing(Exception):
    """A 404, or a plain 403 on a record the subject may not read: the call answers None."""


class _Conflict(Exception):
    """A 409 that is not ``ABORTED``: ``ALREADY_EXISTS``."""


def workspace_service(
    api: str, version: str, endpoint: str | None, *, timeout_s: float = 60.0
) -> Any:
    """A stock client with static discovery. Its own connection carries no credentials and only
    keeps build() from looking for default ones: every request is sent on a subject's."""
    return build(
        api,
        version,
        http=httplib2.Http(timeout=timeout_s),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": endpoint} if endpoint else None,
    )


class _Caller:
    """Sends requests as a subject through the backoff; reads pages."""

    def __init__(
        self, api: str, connections: SubjectConnections, retrying: Retrying[WorkspaceError]
    ) -> None:
        self.api = api
        self.connections = connections
        self.retrying = retrying

    def call(self, request: Any, subject: str, *, exists: str = "") -> dict[str, Any] | None:
        """The JSON object answered; None for :class:`_Missing`; SubscriptionExists(``exists``)
        for a 409 when ``exists`` names the target created."""
        try:
            response, _ = self.retrying.call(
                lambda: request.execute(http=self.connections.http(subject), num_retries=0)
            )
        except CredentialsUnavailable as error:
            raise WorkspaceError(str(error), kind="permission") from None
        except _Missing:
            return None
        except _Conflict:
            if exists:
                raise SubscriptionExists(exists) from None
            raise WorkspaceError(f"the {self.api} answered 409", kind="transient") from None
        if not isinstance(response, dict):
            raise WorkspaceError(f"the {self.api} answered a non-object", kind="transient")
        return response

    def pages(
        self, collection: Any, request: Any, subject: str, key: str, *, missing: str = ""
    ) -> Iterator[dict[str, Any]]:
        """The objects under ``key`` on every page; a 404 ends the list, or raises a permission
        error saying ``missing`` when given."""
        tokens: set[str] = set()
        while request is not None:
            page = self.call(request, subject)
            if page is None:
                if missing:
                    raise WorkspaceError(missing, kind="permission")
                return
            items = page.get(key)
            if isinstance(items, list):
                yield from (item for item in items if isinstance(item, dict))
            token = str(page.get("nextPageToken"))
            if token in tokens:
                raise WorkspaceError(f"the {self.api} repeated a page token", kind="transient")
            tokens.add(token)
            request = collection.list_next(request, page)


def _permanent(
    api: str, *, enable: str, scopes: Sequence[str], forbidden: str
) -> Callable[[HttpFailure], Exception]:
    """What a Google answer that is not retried means; ``forbidden`` is the admin step a plain
    403 points to (empty: the subject may not read the record, which answers None)."""

    def permanent(failure: HttpFailure) -> Exception:
        status, reasons = failure.status, failure.all_reasons
        if status == 404:
            return _Missing()
        if status == 409 and failure.rpc_status != "ABORTED":
            return _Conflict()
        if status == 403 and (
            reasons & _DISABLED_REASONS or "has not been used in project" in failure.message
        ):
            return WorkspaceError(
                f"the {api} is not enabled ({failure.message}): {enable}", kind="permission"
            )
        if status == 401 or (status == 403 and reasons & _SCOPE_REASONS):
            return WorkspaceError(
                f"the {api} refused the delegated credentials ({status}): "
                f"{unauthorized_client_help(scopes)}",
                kind="permission",
            )
        if status == 403:
            if not forbidden:
                return _Missing()
            message = f"the {api} refused access (403: {failure.message}): {forbidden}"
            return WorkspaceError(message, kind="permission")
        return WorkspaceError(f"the {api} answered {status}: {failure.message}", kind="transient")

    return permanent


def _caller(
    api: str,
    connections: SubjectConnections,
    backoff: Backoff,
    *,
    enable: str,
    scopes: Sequence[str],
    subject_help: str,
    forbidden: str = "",
) -> _Caller:
    retrying = backoff.retrying(
        api=api,
        error=WorkspaceError,
        permanent=_permanent(api, enable=enable, scopes=scopes, forbidden=forbidden),
        describe_auth=lambda error: describe_token_error(
            error, scopes=scopes, subject_help=subject_help
        ),
    )
    return _Caller(api, connections, retrying)


def delegated_connections(
    settings: Settings, endpoint: str | None, scopes: Sequence[str], timeout_s: float
) -> SubjectConnections:
    """Static ``local-subject:`` tokens against a stand-in (no Google credentials looked up),
    else delegation: keyless, or with the key in ``REPORTS_CREDENTIALS``."""
    factory = subject_credentials(
        scopes=scopes,
        stand_in=bool(endpoint),
        key_json=settings.reports_credentials if settings.uses_key_file else None,
        service_account_email=settings.delegation_service_account,
    )
    return SubjectConnections(factory, timeout_s=timeout_s)


# ----------------------------------------------------------------------------- Meet REST


class GoogleMeetApi:
    """:class:`functions.ports.MeetApi` on Meet REST v2, as the organizer."""

    def __init__(
        self, service: Any, connections: SubjectConnections, *, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        self._service = service
        self._caller = _caller(
            MEET_API,
            connections,
            backoff,
            enable=MEET_ENABLE_HELP,
            scopes=MEET_SCOPES,
            subject_help=ORGANIZER_HELP,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, backoff: Backoff = DEFAULT_BACKOFF, timeout_s: float = 60.0
    ) -> GoogleMeetApi:
        endpoint = settings.meet_api_endpoint
        return cls(
            workspace_service("meet", "v2", endpoint, timeout_s=timeout_s),
            delegated_connections(settings, endpoint, MEET_SCOPES, timeout_s),
            backoff=backoff,
        )

    def conference(self, name: str, *, as_user: str) -> Conference | None:
        if not _CONFERENCE.fullmatch(name):
            return None
        found = self._caller.call(self._service.conferenceRecords().get(name=name), as_user)
        return None if found is None else conference_of(found)

    def space(self, name: str, *, as_user: str) -> MeetSpace | None:
        """``spaces/ID``, or a meeting code (Meet reads it as an alias of its space)."""
        name = name if name.startswith("spaces/") else f"spaces/{name}"
        if not _SPACE.fullmatch(name):
            return None
        found = self._caller.call(self._service.spaces().get(name=name), as_user)
        return None if found is None else space_of(found)

    def attendees(self, conference: str, *, as_user: str) -> list[MeetAttendee]:
        if not _CONFERENCE.fullmatch(conference):
            return []
        participants = self._service.conferenceRecords().participants()
        request = participants.list(parent=conference, pageSize=MEET_PAGE_SIZE)
        attendees: dict[str, MeetAttendee] = {}
        for item in self._caller.pages(participants, request, as_user, "participants"):
            attendee = attendee_of(item)
            if attendee is not None and attendee.name not in attendees:
                sessions = self._sessions(participants, attendee.name, as_user)
                attendees[attendee.name] = dataclasses.replace(attendee, sessions=sessions)
        return list(attendees.values())

    def _sessions(
        self, participants: Any, participant: str, as_user: str
    ) -> tuple[MeetSessionTimes, ...]:
        collection = participants.participantSessions()
        request = collection.list(parent=participant, pageSize=MEET_PAGE_SIZE)
        sessions: dict[str, MeetSessionTimes] = {}
        for item in self._caller.pages(collection, request, as_user, "participantSessions"):
            session = session_of(item)
            if session is not None:
                sessions.setdefault(session.name, session)
        return tuple(sorted(sessions.values(), key=lambda session: (session.start, session.name)))


def conference_of(item: dict[str, Any]) -> Conference | None:
    """A ``ConferenceRecord``; None without a name, a space or a start."""
    name, space, start = item.get("name"), item.get("space"), parse_timestamp(item.get("startTime"))
    if not (_text(name) and _CONFERENCE.fullmatch(name) and _text(space) and start is not None):
        return None
    return Conference(name=name, space=space, start=start, end=parse_timestamp(item.get("endTime")))


def space_of(item: dict[str, Any]) -> MeetSpace | None:
    name, code = item.get("name"), item.get("meetingCode")
    if not (_text(name) and _SPACE.fullmatch(name)):
        return None
    return MeetSpace(name=name, meeting_code=code if _text(code) else None)


def attendee_of(item: dict[str, Any]) -> MeetAttendee | None:
    """A ``Participant`` without its sessions; None without a name or a kind of user."""
    name = item.get("name")
    if not (_text(name) and _PARTICIPANT.fullmatch(name)):
        return None
    for field, kind in _KINDS:
        who = item.get(field)
        if isinstance(who, dict):
            user = who.get("user") if kind == "signed_in" else None
            display = who.get("displayName")
            return MeetAttendee(
                name=name,
                kind=kind,
                user=user if _text(user) and _USER.fullmatch(user) else None,
                display_name=display if _text(display) else None,
                sessions=(),
            )
    return None


def session_of(item: dict[str, Any]) -> MeetSessionTimes | None:
    """A ``ParticipantSession``; None without a name or a start, or ending before it starts."""
    name, start = item.get("name"), parse_timestamp(item.get("startTime"))
    end = parse_timestamp(item.get("endTime"))
    if not _text(name) or start is None or (end is not None and end < start):
        return None
    return MeetSessionTimes(name=name, start=start, end=end)


# ----------------------------------------------------------------------------- Directory


class GoogleDirectory:
    """:class:`functions.ports.Directory` on the Admin SDK Directory API, as ``subject`` (the
    Reports admin)."""

    def __init__(
        self,
        service: Any,
        connections: SubjectConnections,
        *,
        subject: str,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self._service = service
        self._subject = subject
        self._caller = _caller(
            DIRECTORY_API,
            connections,
            backoff,
            enable=DIRECTORY_ENABLE_HELP,
            scopes=DIRECTORY_SCOPES,
            subject_help=SUBJECT_HELP,
            forbidden=DIRECTORY_FORBIDDEN_HELP,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, backoff: Backoff = DEFAULT_BACKOFF, timeout_s: float = 60.0
    ) -> GoogleDirectory:
        endpoint = settings.directory_api_endpoint
        return cls(
            workspace_service("admin", "directory_v1", endpoint, timeout_s=timeout_s),
            delegated_connections(settings, endpoint, DIRECTORY_SCOPES, timeout_s),
            subject=settings.reports_admin_subject or "",
            backoff=backoff,
        )

    def user(self, key: str) -> DirectoryUser | None:
        """By id (``users/ID`` is read as ``ID``, as Meet writes it), email or alias."""
        key = key.removeprefix("users/").strip()
        if not key or "/" in key:
            return None
        found = self._caller.call(self._service.users().get(userKey=key), self._subject)
        if found is None:
            return None
        user_id, email = found.get("id"), found.get("primaryEmail")
        if not (_text(user_id) and _text(email)):
            return None
        return DirectoryUser(id=user_id, primary_email=email)

    def group_members(self, group: str) -> list[str]:
        """Direct members of type USER, lower-cased, in the directory's order. A group the
        directory does not have is a permission error (the setting names a wrong group)."""
        members = self._service.members()
        request = members.list(groupKey=group, maxResults=MEMBERS_PAGE_SIZE)
        missing = f"the directory has no group {group!r}"
        emails: dict[str, None] = {}
        for item in self._caller.pages(members, request, self._subject, "members", missing=missing):
            email = item.get("email")
            if item.get("type") == "USER" and _text(email):
                emails.setdefault(email.strip().lower())
        return list(emails)


# ----------------------------------------------------------------------------- Workspace Events


class GoogleWorkspaceEvents:
    """:class:`functions.ports.WorkspaceEvents` on Workspace Events v1, as the organizer.

    Writes answer a long-running Operation; an Operation also has a ``name``, so it is never read
    as a Subscription: it is polled (``operations.get``, with backoff, ``operation_wait_s`` in
    all) until ``done``, and then its ``response`` (or its ``error``) is what was answered."""

    def __init__(
        self,
        service: Any,
        connections: SubjectConnections,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        operation_wait_s: float = OPERATION_WAIT_S,
    ) -> None:
        self._service = service
        self._caller = _caller(
            EVENTS_API,
            connections,
            backoff,
            enable=EVENTS_ENABLE_HELP,
            scopes=MEET_SCOPES,
            subject_help=ORGANIZER_HELP,
            forbidden=EVENTS_FORBIDDEN_HELP,
        )
        self._operation_wait_s = operation_wait_s

    @classmethod
    def from_settings(
        cls, settings: Settings, *, backoff: Backoff = DEFAULT_BACKOFF, timeout_s: float = 60.0
    ) -> GoogleWorkspaceEvents:
        endpoint = settings.workspace_events_api_endpoint
        return cls(
            workspace_service("workspaceevents", "v1", endpoint, timeout_s=timeout_s),
            delegated_connections(settings, endpoint, MEET_SCOPES, timeout_s),
            backoff=backoff,
        )

    def create(
        self, *, as_user: str, target: str, event_types: Sequence[str], topic: str
    ) -> EventSubscription:
        body = {
            "targetResource": target,
            "eventTypes": list(event_types),
            "notificationEndpoint": {"pubsubTopic": topic},
            "payloadOptions": {"includeResource": False},
            "ttl": "0s",  # the maximum
        }
        request = self._service.subscriptions().create(body=body)
        operation = self._caller.call(request, as_user, exists=target)
        return _subscription(self._finished(operation, as_user, "create", target=target))

    def find(self, *, as_user: str, target: str, event_type: str) -> EventSubscription | None:
        """The subscription on ``target`` for ``event_type``, an ACTIVE one first."""
        if any(mark in target + event_type for mark in '"\\'):
            raise ValueError("a target or event type with quotes cannot be filtered on")
        subscriptions = self._service.subscriptions()
        query = f'event_types:"{event_type}" AND target_resource="{target}"'
        request = subscriptions.list(filter=query, pageSize=SUBSCRIPTIONS_PAGE_SIZE)
        found = [
            subscription
            for item in self._caller.pages(subscriptions, request, as_user, "subscriptions")
            if (subscription := subscription_of(item)) is not None
            and subscription.target_resource == target
            and event_type in subscription.event_types
        ]
        found.sort(key=lambda subscription: subscription.state != "ACTIVE")
        return found[0] if found else None

    def get(self, name: str, *, as_user: str) -> EventSubscription | None:
        if not _SUBSCRIPTION.fullmatch(name):
            return None
        found = self._caller.call(self._service.subscriptions().get(name=name), as_user)
        return None if found is None else subscription_of(found)

    def renew(self, name: str, *, as_user: str) -> EventSubscription:
        """``patch`` with ``updateMask=ttl`` and ``ttl`` 0s: the maximum from now."""
        request = self._service.subscriptions().patch(
            name=_subscription_name(name), updateMask="ttl", body={"ttl": "0s"}
        )
        operation = self._caller.call(request, as_user)
        return _subscription(self._finished(operation, as_user, f"renewal of {name}"))

    def reactivate(self, name: str, *, as_user: str) -> EventSubscription:
        request = self._service.subscriptions().reactivate(name=_subscription_name(name), body={})
        operation = self._caller.call(request, as_user)
        return _subscription(self._finished(operation, as_user, f"reactivation of {name}"))

    def delete(self, name: str, *, as_user: str) -> None:
        if not _SUBSCRIPTION.fullmatch(name):
            return
        request = self._service.subscriptions().delete(name=name, allowMissing=True)
        operation = self._caller.call(request, as_user)
        if operation is not None:
            self._finished(operation, as_user, f"deletion of {name}")

    def _finished(
        self, operation: dict[str, Any] | None, subject: str, what: str, *, target: str = ""
    ) -> dict[str, Any]:
        """The ``response`` of ``operation`` once done; its ``error`` raised."""
        retrying = self._caller.retrying
        waited = 0.0
        polls = 0
        while operation is None or operation.get("done") is not True:
            name = None if operation is None else operation.get("name")
            if not (_text(name) and _OPERATION.fullmatch(name)):
                problem = "no such subscription" if operation is None else "no operation name"
                raise WorkspaceError(f"the {EVENTS_API}'s {what}: {problem}", kind="transient")
            polls += 1
            delay = retrying.delay(polls)
            if waited + delay > self._operation_wait_s:
                raise WorkspaceError(
                    f"the {EVENTS_API}'s {what} ({name}) not done after {polls - 1} poll(s)",
                    kind="transient",
                )
            retrying.sleep(delay)
            waited += delay
            operation = self._caller.call(self._service.operations().get(name=name), subject)
        error = operation.get("error")
        if error is not None:
            raise _operation_error(error, what, target)
        response = operation.get("response")
        return response if isinstance(response, dict) else {}


def _subscription_name(name: str) -> str:
    if not _SUBSCRIPTION.fullmatch(name):
        raise WorkspaceError(f"{name!r} is not a subscription name", kind="transient")
    return name


def _subscription(response: dict[str, Any]) -> EventSubscription:
    subscription = subscription_of(response)
    if subscription is None:
        raise WorkspaceError(f"the {EVENTS_API} answered no subscription", kind="transient")
    return subscription


def _operation_error(error: Any, what: str, target: str) -> Exception:
    """What a done Operation's ``error`` (a google.rpc.Status) means."""
    details = error if isinstance(error, dict) else {}
    code = details.get("code")
    if code == _ALREADY_EXISTS_CODE and target:
        return SubscriptionExists(target)
    text = " ".join(str(details.get("message") or "").split())[:300]
    kind: ReportsErrorKind = "permission" if code in _PERMISSION_CODES else "transient"
    return WorkspaceError(f"the {EVENTS_API}'s {what} failed (code {code}): {text}", kind=kind)


def subscription_of(item: dict[str, Any]) -> EventSubscription | None:
    """A ``Subscription`` (camelCase, or the proto's snake_case); None without a name or target."""
    name = item.get("name")
    target = _field(item, "targetResource", "target_resource")
    if not (_text(name) and _SUBSCRIPTION.fullmatch(name) and _text(target)):
        return None
    types = _field(item, "eventTypes", "event_types")
    state = item.get("state")
    reason = _field(item, "suspensionReason", "suspension_reason")
    return EventSubscription(
        name=name,
        target_resource=target,
        event_types=tuple(t for t in types if _text(t)) if isinstance(types, list) else (),
        state=state if state in _STATES else "STATE_UNSPECIFIED",
        suspension_reason=reason if _text(reason) and reason != "ERROR_TYPE_UNSPECIFIED" else None,
        expire_time=parse_timestamp(_field(item, "expireTime", "expire_time")),
    )


def _field(item: dict[str, Any], camel: str, snake: str) -> Any:
    return item.get(camel, item.get(snake))


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)
