"""The Terraform in ``infra/``, parsed with python-hcl2, and the security properties it must keep.

Each property is a function from :class:`Infra` to a list of problems (empty when it holds), so the
same code checks the real configuration and proves, on a broken copy, that it would catch a breach.

IAM is read as a list of :class:`Grant` (who holds which role on what), with ``for_each`` over a
local map expanded into one grant per key, so "which identity holds what" is checked on exactly
what Terraform would create. What each function may read (settings and secrets) comes from
``functions/config.py`` (``READS``), never from a list copied here.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

from functions.config import READS, STAND_IN_SETTINGS, Settings
from functions.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN_PY = REPO / "main.py"
CHECKOV_DIR = INFRA / "checkov"

#: The functions, named after their entry points in main.py and their roles in functions/config.py.
ENTRY_POINTS = ("ingest", "api", "collect", "backfill", "meet_events")
#: The functions that call Workspace APIs, signing the delegation assertion as the delegation identity.
DELEGATING_FUNCTIONS = frozenset({"collect", "backfill", "api", "meet_events"})
#: Set by Cloud Run itself, never by the deployment.
PLATFORM_SETTINGS = frozenset({"K_SERVICE"})
#: Google-managed identities the Meet side grants to (pubsub.tf): the project's Pub/Sub service
#: agent (dead letters, push tokens) and the identity Google Meet publishes Workspace Events as.
PUBSUB_SERVICE_AGENT = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
MEET_EVENT_PUBLISHER = "serviceAccount:meet-api-event-push@system.gserviceaccount.com"
#: Settings that come from Secret Manager, never from a plain variable.
SECRET_SETTINGS = frozenset({"WEBHOOK_SECRET", "ERASURE_KEY"})
REPORTS_QUOTA_PER_MINUTE = 2400
#: A poll costs at least one Reports query; at most half the quota's rate goes to queue dispatches.
MAX_DISPATCHES_PER_SECOND = REPORTS_QUOTA_PER_MINUTE / 60 / 2
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
TOKEN_ROLES = frozenset(
    {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountOpenIdTokenCreator"}
)
ACT_AS = "roles/iam.serviceAccountUser"
#: Stand-in settings of docs/settings.md that must never reach production (functions/config.py's list,
#: plus the ones named before it had one).
LOCAL_ONLY_SETTINGS = tuple(
    dict.fromkeys(
        (
            "FIRESTORE_EMULATOR_HOST",
            "CLOUD_TASKS_EMULATOR_HOST",
            "REPORTS_API_ENDPOINT",
            "OIDC_CERTS_URL",
            *STAND_IN_SETTINGS,
            "ALLOW_STAND_INS",
        )
    )
)
REQUIRED_APIS = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "secretmanager.googleapis.com",
    "iamcredentials.googleapis.com",
    "admin.googleapis.com",
    "artifactregistry.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "meet.googleapis.com",
    "workspaceevents.googleapis.com",
    "pubsub.googleapis.com",
    "calendar-json.googleapis.com",
)
#: Where Google Calendar pushes the organizers' channel notifications (docs/api.md "ingest", §5): the
#: public ingest's deterministic Cloud Run URL (NAME-ingest-PROJECT_NUMBER.REGION.run.app) plus the
#: route, with locals expanded.
CALENDAR_NOTIFICATIONS_URL = (
    "https://${var.name_prefix}-ingest-${data.google_project.this.number}.${var.region}.run.app"
    "/calendar/notifications"
)
#: Settings that let a function sign as the delegation identity or name whom to impersonate: never
#: in the public ingest, which hands Calendar notifications to backfill instead of reading calendars.
DELEGATION_SETTINGS = frozenset(
    {"REPORTS_ADMIN_SUBJECT", "REPORTS_CREDENTIALS", "DELEGATION_SERVICE_ACCOUNT"}
)
#: (scope, role) a function's account may hold; ``secret:*`` is any secret its function mounts.
FUNCTION_GRANTS = frozenset(
    {
        ("project", "roles/datastore.user"),
        ("project", "roles/logging.logWriter"),
        ("queue:collect", "roles/cloudtasks.enqueuer"),
        ("service_account:tasks", ACT_AS),
        ("secret:*", "roles/secretmanager.secretAccessor"),
        ("service_account:delegation", "roles/iam.serviceAccountTokenCreator"),
    }
)
#: What every function needs to start and to enqueue tasks as the tasks identity.
EVERY_FUNCTION_NEEDS = FUNCTION_GRANTS - {
    ("secret:*", "roles/secretmanager.secretAccessor"),
    ("service_account:delegation", "roles/iam.serviceAccountTokenCreator"),
}
#: What the build account holds (besides actAs on the function accounts and itself).
BUILD_GRANTS = frozenset(
    {
        ("project", "roles/cloudfunctions.developer"),
        ("project", "roles/logging.logWriter"),
        ("project", "roles/artifactregistry.writer"),
        ("project", "roles/storage.objectViewer"),
        ("bucket:var.source_bucket", "roles/storage.objectViewer"),
    }
)
#: Collection groups whose documents carry expire_at and expire by a TTL policy (docs/rules.md).
#: meet_deliveries: the handled CloudEvent ids (meet_events' dedupe by ce-id).
TTL_COLLECTIONS = ("meetings", "participants", "revisions", "webhook_deliveries", "meet_deliveries")
#: Collection groups that must never expire: an erasure must outlive every poll; a channel record
#: is deleted by the code when the channel is stopped (a TTL deleting a live one would have its
#: notifications refused), and a calendar's sync token must outlive any retention.
NO_TTL_COLLECTIONS = ("erasures", "calendar_channels", "calendar_syncs")

Block = dict[str, Any]


def resource_name(entry_point: str) -> str:
    """A function's (and its account's) name suffix: names allow hyphens, not underscores."""
    return entry_point.replace("_", "-")


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and names; drop them and its markers."""
    if isinstance(value, str):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, dict):
        return {
            _unquote(key): _unquote(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    return value


def _checkov_constant(module: str, name: str) -> frozenset[str]:
    """A ``frozenset({...})`` constant of a custom checkov policy: one list, used by both checks
    (the policies import checkov, which cannot be installed next to python-hcl2)."""
    tree = ast.parse((CHECKOV_DIR / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Call)
        ):
            return frozenset(ast.literal_eval(node.value.args[0]))
    raise AssertionError(f"{name} not found in infra/checkov/{module}.py")


BROAD_ROLES = _checkov_constant("iam_broad_roles", "BROAD_ROLES")
NOT_PROJECT_WIDE = _checkov_constant("iam_broad_roles", "NOT_PROJECT_WIDE")


@dataclass
class Infra:
    """The parsed configuration: resources by type and name, locals, variables, outputs, text."""

    directory: Path
    resources: dict[str, dict[str, Block]] = field(default_factory=dict)
    data: dict[str, dict[str, Block]] = field(default_factory=dict)
    locals: Block = field(default_factory=dict)
    variables: dict[str, Block] = field(default_factory=dict)
    outputs: dict[str, Block] = field(default_factory=dict)
    terraform: list[Block] = field(default_factory=list)
    moved: list[Block] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)

    def of_type(self, kind: str) -> dict[str, Block]:
        return self.resources.get(kind, {})

    def resolve(self, value: Any) -> Any:
        """``${local.name}`` (or ``${local.name.key}``) becomes the local's value."""
        if isinstance(value, str):
            match = re.fullmatch(r"\$\{local\.(\w+)((?:\.\w+)*)\}", value)
            if match and match.group(1) in self.locals:
                resolved = self.locals[match.group(1)]
                for key in filter(None, match.group(2).split(".")):
                    if not isinstance(resolved, dict) or key not in resolved:
                        return value
                    resolved = resolved[key]
                return resolved
        return value

    def expand(self, text: str, depth: int = 5) -> str:
        """``text`` with every ``${local.name}`` holding a string replaced by that string."""
        for _ in range(depth):
            replaced = re.sub(
                r"\$\{local\.(\w+)\}",
                lambda m: (
                    str(self.locals[m.group(1)])
                    if isinstance(self.locals.get(m.group(1)), str)
                    else m.group(0)
                ),
                text,
            )
            if replaced == text:
                return text
            text = replaced
        return text

    def all_resources(self) -> Iterator[tuple[str, str, Block]]:
        for kind, by_name in self.resources.items():
            for name, body in by_name.items():
                yield kind, name, body

    def instances(self) -> Iterator[tuple[str, str, Block]]:
        """Every resource as Terraform would create it: ``for_each`` over a local map becomes one
        instance per key (``each.value`` replaced by the map's value); ``for_each`` over a variable
        stays one symbolic instance (its members come from outside)."""
        for kind, name, body in self.all_resources():
            for_each = body.get("for_each")
            local = self.resolve(for_each) if isinstance(for_each, str) else None
            if isinstance(local, dict):
                for key, value in local.items():
                    yield kind, f"{name}[{key}]", _substitute_each(body, key, value)
            else:
                yield kind, name, body


def _substitute_each(body: Any, key: str, value: Any) -> Any:
    inner = value[2:-1] if isinstance(value, str) and value.startswith("${") else str(value)
    if isinstance(body, str):
        return body.replace("each.value", inner).replace("each.key", f'"{key}"')
    if isinstance(body, list):
        return [_substitute_each(item, key, value) for item in body]
    if isinstance(body, dict):
        return {k: _substitute_each(v, key, value) for k, v in body.items() if k != "for_each"}
    return body


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any]:
    """One file's HCL (a broken copy of infra/ re-parses only the files it changed)."""
    parsed: dict[str, Any] = _unquote(hcl2.loads(text))
    return parsed


def load_infra(directory: Path = INFRA) -> Infra:
    """Parse every ``*.tf`` file of ``directory``; a syntax error raises (the parse test)."""
    infra = Infra(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        infra.text[path.name] = text
        parsed = copy.deepcopy(_parse(text))
        for section, target in (("resource", infra.resources), ("data", infra.data)):
            for entry in parsed.get(section, []):
                for kind, by_name in entry.items():
                    for name, body in by_name.items():
                        if name in target.setdefault(kind, {}):
                            raise ValueError(f"{kind}.{name} is declared twice")
                        target[kind][name] = body
        for entry in parsed.get("locals", []):
            infra.locals.update(entry)
        for entry in parsed.get("variable", []):
            infra.variables.update(entry)
        for entry in parsed.get("output", []):
            infra.outputs.update(entry)
        infra.terraform.extend(parsed.get("terraform", []))
        infra.moved.extend(parsed.get("moved", []))
    return infra


def _first(value: Any) -> Any:
    """A nested block as python-hcl2 gives it (a one-element list), or the value itself."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


def _text(value: Any) -> str:
    """Every string in ``value``, joined: enough to look for a fragment of an expression."""
    return "\n".join(_strings(value))


def _account_ref(name: str) -> str:
    return f"serviceAccount:${{google_service_account.{name}.email}}"


def _member_account(member: str) -> str | None:
    """``serviceAccount:${google_service_account.X.email}`` → ``X``."""
    match = re.fullmatch(r"serviceAccount:\$\{google_service_account\.(\w+)\.email\}", member)
    return match.group(1) if match else None


def _referenced(kind: str, value: Any, attributes: str = r"\w+") -> str | None:
    """``${KIND.NAME.attr}`` → ``NAME``."""
    match = re.fullmatch(rf"\$\{{{kind}\.(\w+)\.(?:{attributes})\}}", str(value))
    return match.group(1) if match else None


def _members(infra: Infra, body: Block) -> list[str]:
    members: list[str] = []
    for key in ("member", "members"):
        value = infra.resolve(body.get(key))
        if isinstance(value, str):
            members.append(infra.expand(value))
        elif isinstance(value, list):
            members.extend(infra.expand(str(item)) for item in value)
    return members


# --- IAM as grants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One IAM member binding: ``member`` holds ``role`` on ``scope``."""

    resource: str
    scope: str
    role: str
    member: str
    condition: str | None

    @property
    def account(self) -> str | None:
        """The google_service_account the member is, if it is one of ours."""
        return _member_account(self.member)


def _scope(infra: Infra, kind: str, body: Block) -> str:
    if kind.startswith(("google_project_iam", "google_folder_iam", "google_organization_iam")):
        return kind.split("_iam")[0].removeprefix("google_")
    if kind.startswith("google_service_account_iam"):
        target = _referenced("google_service_account", body.get("service_account_id"), "name|id")
        return f"service_account:{target or body.get('service_account_id')}"
    if kind.startswith("google_secret_manager_secret_iam"):
        secret = _referenced("google_secret_manager_secret", body.get("secret_id"), "secret_id|id")
        return f"secret:{secret or body.get('secret_id')}"
    if kind.startswith("google_cloud_tasks_queue_iam"):
        queue = _referenced("google_cloud_tasks_queue", body.get("name"), "name|id")
        return f"queue:{queue or body.get('name')}"
    if kind.startswith(("google_cloud_run", "google_cloudfunctions")):
        target = body.get("name") or body.get("service") or body.get("cloud_function")
        function = _referenced("google_cloudfunctions2_function", target, "name")
        return f"function:{function or target}"
    if kind.startswith("google_storage_bucket_iam"):
        return f"bucket:{str(body.get('bucket', '')).strip('${}')}"
    if kind.startswith("google_pubsub_topic_iam"):
        topic = _referenced("google_pubsub_topic", body.get("topic"), "name|id")
        return f"topic:{topic or body.get('topic')}"
    if kind.startswith("google_pubsub_subscription_iam"):
        subscription = _referenced(
            "google_pubsub_subscription", body.get("subscription"), "name|id"
        )
        return f"subscription:{subscription or body.get('subscription')}"
    return kind


def grants(infra: Infra) -> list[Grant]:
    found = []
    for kind, name, body in infra.instances():
        if "_iam_" not in kind or kind.endswith("_iam_policy"):
            continue
        condition = _first(body.get("condition"))
        expression = condition.get("expression") if isinstance(condition, dict) else None
        for member in _members(infra, body):
            found.append(
                Grant(
                    resource=f"{kind}.{name}",
                    scope=_scope(infra, kind, body),
                    role=str(body.get("role")),
                    member=member,
                    condition=infra.expand(str(expression)) if expression else None,
                )
            )
    return found


def _functions(infra: Infra) -> dict[str, Block]:
    return infra.of_type("google_cloudfunctions2_function")


def _service(body: Block) -> Block:
    service = _first(body.get("service_config"))
    return service if isinstance(service, dict) else {}


def function_accounts(infra: Infra) -> dict[str, str | None]:
    """Function → the google_service_account it runs as."""
    return {
        name: _referenced(
            "google_service_account", _service(body).get("service_account_email"), "email"
        )
        for name, body in _functions(infra).items()
    }


def public_functions(infra: Infra) -> set[str]:
    """Functions whose Cloud Run service admits allUsers or allAuthenticatedUsers."""
    return {
        g.scope.removeprefix("function:")
        for g in grants(infra)
        if g.scope.startswith("function:") and g.member in PUBLIC_MEMBERS
    }


# --- settings --------------------------------------------------------------------------------------


def app_settings_names(infra: Infra) -> set[str]:
    """The timing overrides var.app_settings may hold (its validation's list)."""
    variable = infra.variables.get("app_settings", {})
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', _text(variable.get("validation", []))))


def _for_expression_keys(infra: Infra, expression: str) -> dict[str, Any] | None:
    """``{for k, v in SOURCE : k => ... if k != "X"}`` over var.app_settings or an object
    literal: the keys it can produce."""
    match = re.fullmatch(r"\$\{\{for (\w+), \w+ in (.+?) : \1 => .+?(?: if (.+))?\}\}", expression)
    if match is None:
        return None
    key_name, source, condition = match.groups()
    if source == "var.app_settings":
        keys = app_settings_names(infra)
    elif source.startswith("{"):
        keys = set(re.findall(r"(\w+)\s*=", source))
    else:
        return None
    excluded = set(re.findall(rf'{key_name} != \\?"(\w+)\\?"', condition or ""))
    return dict.fromkeys(sorted(keys - excluded), expression)


def environment(infra: Infra, body: Block) -> dict[str, Any]:
    """The plain environment variables a function can get: a map, or a ``merge(...)`` of
    ``local.*`` maps and ``var.app_settings`` (every name it may hold counts)."""
    value = infra.resolve(_service(body).get("environment_variables"))
    if isinstance(value, dict):
        return value
    env: dict[str, Any] = {}
    for reference in re.findall(r"(local\.\w+|var\.app_settings)", str(value)):
        if reference == "var.app_settings":
            env.update(dict.fromkeys(app_settings_names(infra), "${var.app_settings}"))
            continue
        local = infra.locals.get(reference.removeprefix("local."))
        if isinstance(local, dict):
            env.update(local)
        elif isinstance(local, str):
            keys = _for_expression_keys(infra, local)
            if keys is None:
                env[f"<unreadable {reference}>"] = local
            else:
                env.update(keys)
    return env


def secret_mounts(infra: Infra, body: Block) -> dict[str, str | None]:
    """Setting → the google_secret_manager_secret mounted as it."""
    mounts: dict[str, str | None] = {}
    for mount in _service(body).get("secret_environment_variables") or []:
        secret = _referenced("google_secret_manager_secret", mount.get("secret"), "secret_id")
        mounts[str(mount.get("key"))] = secret
    return mounts


def required_settings(role: str = "cli") -> list[str]:
    """Settings functions/config.py refuses to start ``role`` without."""
    try:
        Settings.from_env({}, role=role)  # type: ignore[arg-type]
    except ConfigError as error:
        names = [re.match(r"([A-Z_]+) is required", p) for p in error.problems]
        return sorted({m.group(1) for m in names if m})
    raise AssertionError(f"Settings.from_env({{}}, role={role!r}) unexpectedly succeeded")


# --- the properties -------------------------------------------------------------------------------


def no_service_account_keys(infra: Infra) -> list[str]:
    return [
        f"{kind}.{name}: no key files (delegation is keyless)"
        for kind, name, _ in infra.all_resources()
        if kind == "google_service_account_key"
    ]


def no_broad_roles(infra: Infra) -> list[str]:
    """No basic or admin role anywhere (text included: a role in a local counts), and no
    impersonation, secret, queue or invoker role on the whole project."""
    problems = []
    for kind, name, body in infra.all_resources():
        for text in _strings(body):
            problems += [f"{kind}.{name} grants {role}" for role in BROAD_ROLES if text == role]
    for name, value in infra.locals.items():
        for text in _strings(value):
            problems += [f"local.{name} holds {role}" for role in BROAD_ROLES if role in text]
    for grant in grants(infra):
        if grant.scope in ("project", "folder", "organization") and grant.role in NOT_PROJECT_WIDE:
            problems.append(f"{grant.resource} grants {grant.role} on the whole {grant.scope}")
    return problems


def only_ingest_is_public(infra: Infra) -> list[str]:
    problems = []
    for kind, name, body in infra.all_resources():
        public = [m for m in _members(infra, body) if m in PUBLIC_MEMBERS]
        if not public:
            continue
        allowed = (
            kind == "google_cloud_run_v2_service_iam_member"
            and body.get("name") == "${google_cloudfunctions2_function.ingest.name}"
            and body.get("role") == "roles/run.invoker"
        )
        if not allowed:
            problems.append(f"{kind}.{name} gives {public} access; only ingest may be public")
    for kind, name, body in infra.all_resources():
        if "policy_data" in body:
            problems.append(f"{kind}.{name}: authoritative IAM policies are not used here")
    return problems


def each_function_has_its_own_account(infra: Infra) -> list[str]:
    """One service account per function, named after it, used by nothing else as an identity."""
    accounts = function_accounts(infra)
    problems = [
        f"function {name} runs as {account!r}, not google_service_account.{name}"
        for name, account in accounts.items()
        if account != name
    ]
    used = [a for a in accounts.values() if a]
    problems += [
        f"google_service_account.{a} runs several functions" for a in set(used) if used.count(a) > 1
    ]
    other_identities = {
        "TASKS_SERVICE_ACCOUNT": "tasks",
        "SCHEDULER_SERVICE_ACCOUNT": "scheduler",
        "DELEGATION_SERVICE_ACCOUNT": "delegation",
        "PUBSUB_PUSH_SERVICE_ACCOUNT": "pubsub_push",
    }
    for name, service_account in infra.of_type("google_service_account").items():
        account_id = service_account.get("account_id")
        if name in ENTRY_POINTS and account_id != f"${{var.name_prefix}}-{resource_name(name)}":
            problems.append(
                f"google_service_account.{name}: account_id {account_id!r} is not "
                f"NAME-{resource_name(name)} (cloudbuild.yaml deploys as that account)"
            )
    for function, body in _functions(infra).items():
        env = environment(infra, body)
        for setting, expected in other_identities.items():
            account = _referenced("google_service_account", env.get(setting), "email")
            if setting in env and account != expected:
                problems.append(f"function {function}: {setting} is {env[setting]!r}")
            if account in used:
                problems.append(f"function {function}: {setting} is a function's own account")
        build = _first(body.get("build_config")) or {}
        if _referenced("google_service_account", build.get("service_account"), "id") in used:
            problems.append(f"function {function} is built by a function's account")
    for name, job in infra.of_type("google_cloud_scheduler_job").items():
        token = _first((_first(job.get("http_target")) or {}).get("oidc_token")) or {}
        if (
            _referenced("google_service_account", token.get("service_account_email"), "email")
            in used
        ):
            problems.append(f"scheduler job {name} signs its token as a function's account")
    for name, subscription in infra.of_type("google_pubsub_subscription").items():
        token = _first((_first(subscription.get("push_config")) or {}).get("oidc_token")) or {}
        if (
            _referenced("google_service_account", token.get("service_account_email"), "email")
            in used
        ):
            problems.append(f"push subscription {name} signs its token as a function's account")
    return problems


def function_roles_are_least(infra: Infra) -> list[str]:
    """A function's account holds exactly: Firestore and log writing on the project, enqueue on
    the queue, actAs on the tasks identity, the secrets its function mounts, and (for the
    functions that call Workspace APIs) token creator on the delegation identity."""
    accounts = {a: f for f, a in function_accounts(infra).items() if a}
    held: dict[str, set[tuple[str, str]]] = {f: set() for f in accounts.values()}
    problems = []
    for grant in grants(infra):
        function = accounts.get(grant.account or "")
        if function is None:
            continue
        key = (grant.scope, grant.role)
        if grant.scope.startswith("secret:"):
            key = ("secret:*", grant.role)
        if key not in FUNCTION_GRANTS:
            problems.append(
                f"{grant.resource}: {function} must not hold {grant.role} on {grant.scope}"
            )
        held[function].add(key)
    for function, keys in held.items():
        problems += [
            f"function {function} lacks {role} on {scope}"
            for scope, role in sorted(EVERY_FUNCTION_NEEDS - keys)
        ]
    return problems


def token_creator_only_on_delegation(infra: Infra) -> list[str]:
    """Token creator on the delegation identity for exactly the functions that call Workspace
    APIs; never to a public function; never on a function's own (or any function's) account. The
    one grant on another account: the Pub/Sub service agent on the push account (push tokens)."""
    accounts = {a: f for f, a in function_accounts(infra).items() if a}
    public = {function_accounts(infra).get(f) for f in public_functions(infra)}
    signers = set()
    problems = []
    for grant in grants(infra):
        if grant.role not in TOKEN_ROLES:
            continue
        target = grant.scope.removeprefix("service_account:")
        if grant.account is not None and grant.account == target:
            problems.append(f"{grant.resource}: {grant.account} holds {grant.role} on itself")
        if grant.account is not None and grant.account in public:
            problems.append(
                f"{grant.resource}: the public function's account may sign ({grant.role})"
            )
        if target in accounts:
            problems.append(
                f"{grant.resource}: {grant.member} may sign as function {accounts[target]}"
            )
        elif target != "delegation" and (target, grant.member) != (
            "pubsub_push",
            PUBSUB_SERVICE_AGENT,
        ):
            problems.append(
                f"{grant.resource}: {grant.member} holds {grant.role} on {grant.scope}; only the "
                "delegation identity is signed as (and the push account by the Pub/Sub agent)"
            )
        if grant.account in accounts and target == "delegation":
            signers.add(accounts[grant.account])
    if signers != DELEGATING_FUNCTIONS:
        problems.append(
            f"functions signing as the delegation identity are {sorted(signers)}, expected "
            f"{sorted(DELEGATING_FUNCTIONS)}"
        )
    return problems


def delegation_identity_holds_nothing(infra: Infra) -> list[str]:
    """The account Workspace trusts runs nothing and holds no role: only signing as it counts."""
    problems = [
        f"{g.resource}: the delegation identity holds {g.role} on {g.scope}"
        for g in grants(infra)
        if g.account == "delegation"
    ]
    if "delegation" in function_accounts(infra).values():
        problems.append("a function runs as the delegation identity")
    if "delegation" not in infra.of_type("google_service_account"):
        problems.append("no google_service_account.delegation")
    return problems


def secrets_only_where_read(infra: Infra) -> list[str]:
    """Each function mounts exactly the secrets its role reads and requires; a secret is readable
    only by the functions that mount it (WEBHOOK_SECRET: ingest's account alone)."""
    problems = []
    readers: dict[str, set[str]] = {}
    for function, body in _functions(infra).items():
        reads = READS.get(function, frozenset())  # type: ignore[call-overload]
        mounts = secret_mounts(infra, body)
        for key, secret in mounts.items():
            if key not in reads:
                problems.append(f"function {function} mounts {key}, which it does not read")
            if secret is None:
                problems.append(f"function {function}: {key} is not from a Terraform secret")
            else:
                readers.setdefault(secret, set()).add(function)
        for key in sorted(SECRET_SETTINGS & set(required_settings(function))):
            if key not in mounts:
                problems.append(f"function {function}: {key} is not mounted from Secret Manager")
        if SECRET_SETTINGS & set(environment(infra, body)):
            problems.append(f"function {function}: a secret is a plain environment variable")
    accounts = {a: f for f, a in function_accounts(infra).items() if a}
    can_read: dict[str, set[str]] = {}
    for grant in grants(infra):
        if not grant.scope.startswith("secret:") or grant.account not in accounts:
            continue
        secret, function = grant.scope.removeprefix("secret:"), accounts[grant.account]
        can_read.setdefault(secret, set()).add(function)
        if function not in readers.get(secret, set()):
            problems.append(
                f"{grant.resource}: secret {secret} is readable by {function}, which does not read it"
            )
    for secret, functions in readers.items():
        problems += [
            f"function {f} mounts secret {secret} but its account cannot read it"
            for f in sorted(functions - can_read.get(secret, set()))
        ]
    for name, body in infra.of_type("google_secret_manager_secret_version").items():
        if "secret_data" in body:
            problems.append(f"secret version {name} puts the secret's value in Terraform state")
    return problems


def functions_have_settings(infra: Infra) -> list[str]:
    """Each function gets every setting its role requires and none its role does not read."""
    problems = []
    functions = _functions(infra)
    if sorted(functions) != sorted(ENTRY_POINTS):
        problems.append(f"functions are {sorted(functions)}, expected {sorted(ENTRY_POINTS)}")
    expected_values = {
        "TASKS_SERVICE_ACCOUNT": "${google_service_account.tasks.email}",
        "DELEGATION_SERVICE_ACCOUNT": "${google_service_account.delegation.email}",
        "SCHEDULER_SERVICE_ACCOUNT": "${google_service_account.scheduler.email}",
        "COLLECT_URL": "${local.collect_url}",
        "BACKFILL_URL": "${local.backfill_url}",
        "API_URL": "${local.api_url}",
        "API_PRINCIPALS": '${join(",", var.api_principals)}',
        "LOCATION_MODE": "${var.location_mode}",
        "IP_ADDRESS_MODE": "${var.ip_address_mode}",
        "MEET_EVENTS_URL": "${local.meet_events_url}",
        "PUBSUB_PUSH_SERVICE_ACCOUNT": "${google_service_account.pubsub_push.email}",
        "WORKSPACE_EVENTS_TOPIC": "${google_pubsub_topic.workspace_events.id}",
        "CALENDAR_NOTIFICATIONS_URL": "${local.calendar_notifications_url}",
    }
    for name, body in functions.items():
        reads = READS.get(name)  # type: ignore[call-overload]
        if reads is None:
            problems.append(f"function {name} has no role in functions/config.py READS")
            continue
        env = environment(infra, body)
        given = set(env) | set(secret_mounts(infra, body))
        problems += [
            f"function {name}: {n} is not set" for n in required_settings(name) if n not in given
        ]
        problems += [f"function {name}: {n} is set but not read" for n in sorted(set(env) - reads)]
        problems += [f"function {name}: {n} is set" for n in LOCAL_ONLY_SETTINGS if n in env]
        if env.get("REPORTS_CREDENTIALS", "keyless") != "keyless":
            problems.append(f"function {name}: REPORTS_CREDENTIALS must stay keyless")
        problems += [
            f"function {name}: {n} is {env[n]!r}, expected {value!r}"
            for n, value in expected_values.items()
            if n in env and env[n] != value
        ]
    return problems


def deployment_settings(role: str) -> frozenset[str]:
    """What ``role`` reads that a deployment sets: READS without the local stand-ins and what
    Cloud Run sets itself."""
    reads: frozenset[str] = READS[role]  # type: ignore[index]
    return reads - set(LOCAL_ONLY_SETTINGS) - PLATFORM_SETTINGS


def functions_get_every_deployment_setting(infra: Infra) -> list[str]:
    """Each function can be given exactly the deployment settings its role reads: none is left
    out (an optional one, such as ORGANIZERS or RETENTION_DAYS, counts when a variable can set it),
    none is extra."""
    problems = []
    for name, body in _functions(infra).items():
        if name not in READS:
            continue  # functions_have_settings reports it
        given = set(environment(infra, body)) | set(secret_mounts(infra, body))
        expected = deployment_settings(name)
        problems += [f"function {name}: {n} can never be set" for n in sorted(expected - given)]
        problems += [f"function {name}: {n} is not read" for n in sorted(given - expected)]
    organizers = str(infra.locals.get("organizers_env", ""))
    for fragment in ('join(",", var.organizers)', "var.organizer_group"):
        if fragment not in organizers:
            problems.append(f"local.organizers_env does not take {fragment}")
    return problems


def main_entry_points(main_py: Path = MAIN_PY) -> set[str]:
    tree = ast.parse(main_py.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def functions_built_right(infra: Infra) -> list[str]:
    problems = []
    entry_points = main_entry_points()
    for name, body in _functions(infra).items():
        build = _first(body.get("build_config")) or {}
        service = _service(body)
        if build.get("runtime") != "python313":
            problems.append(f"function {name}: runtime is {build.get('runtime')!r}")
        if build.get("entry_point") != name or name not in entry_points:
            problems.append(
                f"function {name}: entry point {build.get('entry_point')!r} is not main.{name}"
            )
        if build.get("service_account") != "${google_service_account.build.id}":
            problems.append(f"function {name} is not built by the build account")
        names = infra.locals.get("function_names") or {}
        if body.get("name") != f"${{local.function_names.{name}}}" or names.get(name) != (
            f"${{var.name_prefix}}-{resource_name(name)}"
        ):
            problems.append(
                f"function {name} is not named NAME-{resource_name(name)} "
                "(cloudbuild.yaml deploys that name)"
            )
        if "max_instance_count" not in service:
            problems.append(f"function {name}: max_instance_count is not capped")
    return problems


def build_account_is_least(infra: Infra) -> list[str]:
    """The build account deploys: functions developer, logs, the functions' image repository and
    sources (by condition), the source bucket, actAs on the function accounts and itself."""
    function_names = {a for a in function_accounts(infra).values() if a}
    held: set[tuple[str, str]] = set()
    acts_as: set[str] = set()
    problems = []
    for grant in grants(infra):
        if grant.account != "build":
            continue
        if grant.role == ACT_AS and grant.scope.startswith("service_account:"):
            acts_as.add(grant.scope.removeprefix("service_account:"))
            continue
        key = (grant.scope, grant.role)
        held.add(key)
        if key not in BUILD_GRANTS:
            problems.append(
                f"{grant.resource}: the build account must not hold {grant.role} on {grant.scope}"
            )
        scoped_by_condition = grant.role.startswith(("roles/storage.", "roles/artifactregistry."))
        if (
            grant.scope == "project"
            and scoped_by_condition
            and "resource.name.startsWith(" not in (grant.condition or "")
        ):
            problems.append(
                f"{grant.resource}: {grant.role} on the project needs a resource condition"
            )
    problems += [
        f"the build account lacks {role} on {scope}" for scope, role in sorted(BUILD_GRANTS - held)
    ]
    if acts_as != function_names | {"build"}:
        problems.append(
            f"the build account acts as {sorted(acts_as)}; only the function accounts (and itself)"
        )
    for grant in grants(infra):
        target = grant.scope.removeprefix("service_account:")
        if grant.role == ACT_AS and target in function_names and grant.account != "build":
            problems.append(f"{grant.resource}: {grant.member} may act as function {target}")
    return problems


def _invokers(infra: Infra, function: str) -> list[str]:
    return [
        g.member
        for g in grants(infra)
        if g.scope == f"function:{function}"
        and g.role in ("roles/run.invoker", "roles/cloudfunctions.invoker")
    ]


def _no_project_wide_invokers(infra: Infra) -> list[str]:
    return [
        f"{g.resource} grants {g.role} on the whole project"
        for g in grants(infra)
        if g.scope == "project" and g.role in ("roles/run.invoker", "roles/cloudfunctions.invoker")
    ]


def collect_invoked_only_by_tasks(infra: Infra) -> list[str]:
    members = _invokers(infra, "collect")
    problems = _no_project_wide_invokers(infra)
    if members != [_account_ref("tasks")]:
        problems.append(f"collect invokers are {members}; only the tasks account may invoke it")
    return problems


def backfill_invoked_only_by_its_callers(infra: Infra) -> list[str]:
    members = _invokers(infra, "backfill")
    problems = _no_project_wide_invokers(infra)
    callers = sorted([_account_ref("scheduler"), _account_ref("tasks")])
    if sorted(members) != callers:
        problems.append(
            f"backfill invokers are {members}; only the scheduler (the run) and the tasks "
            "account (its slices) may"
        )
    return problems


def api_invoked_only_by_its_principals(infra: Infra) -> list[str]:
    """Cloud Run admits exactly var.api_principals (service accounts) to the api."""
    problems = _no_project_wide_invokers(infra)
    bindings = [
        (name, body)
        for kind, name, body in infra.all_resources()
        if _scope(infra, kind, body) == "function:api" and "_iam_" in kind
    ]
    expected = ("${toset(var.api_principals)}", "serviceAccount:${each.value}")
    if [(b.get("for_each"), b.get("member")) for _, b in bindings] != [expected]:
        problems.append(f"api invokers are {[b for _, b in bindings]}; exactly var.api_principals")
    variable = infra.variables.get("api_principals", {})
    if "default" in variable:
        problems.append("var.api_principals has a default: the api needs its callers named")
    if "gserviceaccount" not in _text(variable.get("validation", [])):
        problems.append("var.api_principals does not check that it holds service accounts")
    return problems


def meet_events_invoked_only_by_push(infra: Infra) -> list[str]:
    """Only the push account invokes meet_events (it is not public), and the push account holds
    nothing else: it exists to sign the pushes' OIDC tokens."""
    problems = _no_project_wide_invokers(infra)
    members = _invokers(infra, "meet_events")
    if members != [_account_ref("pubsub_push")]:
        problems.append(f"meet_events invokers are {members}; only the push account may invoke it")
    problems += [
        f"{g.resource}: {g.member} has {g.role} on meet_events"
        for g in grants(infra)
        if g.scope == "function:meet_events" and g.member != _account_ref("pubsub_push")
    ]
    problems += [
        f"{g.resource}: the push account holds {g.role} on {g.scope}"
        for g in grants(infra)
        if g.account == "pubsub_push"
        and (g.scope, g.role) != ("function:meet_events", "roles/run.invoker")
    ]
    if "meet_events" not in _functions(infra):
        problems.append("no meet_events function")
    return problems


def _push_subscriptions(infra: Infra) -> dict[str, Block]:
    return {
        name: body
        for name, body in infra.of_type("google_pubsub_subscription").items()
        if _first(body.get("push_config"))
    }


def meet_events_push_authenticated(infra: Infra) -> list[str]:
    """The Workspace Events topic has one push subscription, to MEET_EVENTS_URL with an OIDC token
    of the push account whose audience is MEET_EVENTS_URL; it backs off, never expires and
    dead-letters to a topic that a pull subscription keeps; the Pub/Sub service agent holds exactly
    what dead-lettering and push tokens need."""
    problems = []
    url = "${local.meet_events_url}"
    # What the Pub/Sub service agent may hold: token creator on the push account, and per push
    # subscription subscriber on it and publisher on its dead-letter topic.
    allowed = {("service_account:pubsub_push", "roles/iam.serviceAccountTokenCreator")}
    pushes = {
        name: body
        for name, body in _push_subscriptions(infra).items()
        if body.get("topic") == "${google_pubsub_topic.workspace_events.id}"
    }
    if list(pushes) != ["meet_events_push"]:
        problems.append(f"push subscriptions on the Workspace Events topic are {sorted(pushes)}")
    for name, body in _push_subscriptions(infra).items():
        push = _first(body.get("push_config")) or {}
        token = _first(push.get("oidc_token")) or {}
        if push.get("push_endpoint") != url:
            problems.append(f"push subscription {name} pushes to {push.get('push_endpoint')!r}")
        if token.get("service_account_email") != "${google_service_account.pubsub_push.email}":
            problems.append(f"push subscription {name} has no OIDC token of the push account")
        if token.get("audience") != url:
            problems.append(f"push subscription {name}: OIDC audience is not MEET_EVENTS_URL")
        if "no_wrapper" in push:
            problems.append(f"push subscription {name} unwraps; meet_events reads the envelope")
        if not _first(body.get("retry_policy")):
            problems.append(f"push subscription {name} has no retry_policy (exponential backoff)")
        if (_first(body.get("expiration_policy")) or {}).get("ttl", "default") != "":
            problems.append(f"push subscription {name} expires after 31 idle days")
        deadline = body.get("ack_deadline_seconds")
        timeout = _service(_functions(infra).get("meet_events", {})).get("timeout_seconds")
        if not isinstance(deadline, int) or not isinstance(timeout, int) or deadline < timeout:
            problems.append(
                f"push subscription {name}: ack deadline {deadline!r} is shorter than "
                f"meet_events' timeout {timeout!r} (a slow push would be redelivered meanwhile)"
            )
        dead_letter = _first(body.get("dead_letter_policy")) or {}
        topic = _referenced("google_pubsub_topic", dead_letter.get("dead_letter_topic"), "id")
        attempts = dead_letter.get("max_delivery_attempts")
        if topic is None or topic == "workspace_events":
            problems.append(f"push subscription {name} has no dead-letter topic of its own")
            continue
        if not isinstance(attempts, int) or not 5 <= attempts <= 100:
            problems.append(f"push subscription {name}: max_delivery_attempts {attempts!r}")
        keepers = [
            s
            for s, b in infra.of_type("google_pubsub_subscription").items()
            if b.get("topic") == f"${{google_pubsub_topic.{topic}.id}}"
            and not _first(b.get("push_config"))
            and (_first(b.get("expiration_policy")) or {}).get("ttl", "default") == ""
        ]
        if not keepers:
            problems.append(
                f"dead-letter topic {topic} has no never-expiring pull subscription: "
                "dead letters would be dropped"
            )
        agent = {(g.scope, g.role) for g in grants(infra) if g.member == PUBSUB_SERVICE_AGENT}
        needed = {
            (f"topic:{topic}", "roles/pubsub.publisher"),
            (f"subscription:{name}", "roles/pubsub.subscriber"),
        }
        allowed |= needed
        problems += [
            f"the Pub/Sub service agent lacks {role} on {scope} (dead-lettering)"
            for scope, role in sorted(needed - agent)
        ]
    problems += [
        f"{g.resource}: the Pub/Sub service agent holds {g.role} on {g.scope}"
        for g in grants(infra)
        if g.member == PUBSUB_SERVICE_AGENT and (g.scope, g.role) not in allowed
    ]
    return problems


def meet_can_publish_workspace_events(infra: Infra) -> list[str]:
    """Google Meet's publisher identity may publish to the topic WORKSPACE_EVENTS_TOPIC names (and
    nothing else); the topic has no storage policy (Workspace Events publishes with ordering keys)."""
    problems = []
    topics = infra.of_type("google_pubsub_topic")
    if "workspace_events" not in topics:
        return ["no google_pubsub_topic.workspace_events"]
    if "message_storage_policy" in topics["workspace_events"]:
        problems.append("the Workspace Events topic has a message storage policy")
    held = [(g.scope, g.role) for g in grants(infra) if g.member == MEET_EVENT_PUBLISHER]
    if held != [("topic:workspace_events", "roles/pubsub.publisher")]:
        problems.append(
            f"meet-api-event-push holds {held}; it needs roles/pubsub.publisher on the "
            "Workspace Events topic, nothing else"
        )
    return problems


def _expand_url(infra: Infra, value: Any) -> str:
    """A URL expression with its locals expanded, ``${local.function_names.X}`` included."""
    names = infra.locals.get("function_names") or {}
    return re.sub(
        r"\$\{local\.function_names\.(\w+)\}",
        lambda m: str(names.get(m.group(1), m.group(0))),
        infra.expand(str(value)),
    )


def calendar_notifications_reach_ingest(infra: Infra) -> list[str]:
    """The organizers' Calendar channels push to the public ingest (its deterministic URL +
    /calendar/notifications), the address backfill opens them with and the CLI is given (output
    calendar_notifications_url); ingest hands each accepted notification to backfill without
    signing as anyone: it gets BACKFILL_URL, enqueues on the queue acting as the tasks identity
    (which may invoke backfill), and holds no token role and no delegation setting."""
    problems = []
    functions = _functions(infra)
    url = environment(infra, functions.get("backfill", {})).get("CALENDAR_NOTIFICATIONS_URL")
    if url is None:
        problems.append("backfill has no CALENDAR_NOTIFICATIONS_URL: it cannot open channels")
    elif _expand_url(infra, url) != CALENDAR_NOTIFICATIONS_URL:
        problems.append(
            f"backfill's CALENDAR_NOTIFICATIONS_URL is {_expand_url(infra, url)!r}, expected "
            f"{CALENDAR_NOTIFICATIONS_URL!r} (the ingest URL + calendar/notifications)"
        )
    output = (infra.outputs.get("calendar_notifications_url") or {}).get("value")
    if output is None or _expand_url(infra, output) != CALENDAR_NOTIFICATIONS_URL:
        problems.append(
            f"output calendar_notifications_url is {output!r}: the CLI must open channels with "
            "the address backfill uses, or each would replace the other's channels"
        )
    if (functions.get("ingest") or {}).get("name") != "${local.function_names.ingest}":
        problems.append("the ingest function is not named local.function_names.ingest")
    if "ingest" not in public_functions(infra):
        problems.append("ingest admits no allUsers: Google Calendar pushes without credentials")
    ingest_env = environment(infra, functions.get("ingest", {}))
    if ingest_env.get("BACKFILL_URL") != "${local.backfill_url}":
        problems.append(
            f"ingest's BACKFILL_URL is {ingest_env.get('BACKFILL_URL')!r}: its calendar sync "
            "tasks must target backfill (${local.backfill_url})"
        )
    problems += [
        f"ingest gets {name}: it must not sign as the delegation identity"
        for name in sorted(DELEGATION_SETTINGS & set(ingest_env))
    ]
    account = function_accounts(infra).get("ingest")
    held = {(g.scope, g.role) for g in grants(infra) if account and g.account == account}
    enqueues = (("queue:collect", "roles/cloudtasks.enqueuer"), ("service_account:tasks", ACT_AS))
    for scope, role in enqueues:
        if (scope, role) not in held:
            problems.append(f"ingest lacks {role} on {scope}: it cannot enqueue calendar syncs")
    problems += [
        f"ingest holds {role} on {scope}: the public function signs as no one"
        for scope, role in sorted(held)
        if role in TOKEN_ROLES
    ]
    if _account_ref("tasks") not in _invokers(infra, "backfill"):
        problems.append("the tasks account cannot invoke backfill: calendar syncs would be refused")
    return problems


def scheduler_uses_oidc(infra: Infra) -> list[str]:
    jobs = infra.of_type("google_cloud_scheduler_job")
    if not jobs:
        return ["no Cloud Scheduler job for the daily backfill"]
    problems = []
    for name, body in jobs.items():
        target = _first(body.get("http_target")) or {}
        token = _first(target.get("oidc_token")) or {}
        if "oauth_token" in target:
            problems.append(f"scheduler job {name} uses an OAuth token; Cloud Run needs OIDC")
        if token.get("service_account_email") != "${google_service_account.scheduler.email}":
            problems.append(f"scheduler job {name} has no OIDC token of the scheduler account")
        if target.get("uri") != "${local.backfill_url}" or token.get("audience") not in (
            None,
            "${local.backfill_url}",
        ):
            problems.append(f"scheduler job {name} does not target backfill's URL")
    return problems


def queue_sized_to_reports_quota(infra: Infra) -> list[str]:
    queues = infra.of_type("google_cloud_tasks_queue")
    if not queues:
        return ["no Cloud Tasks queue"]
    problems = []
    for name, body in queues.items():
        retry = _first(body.get("retry_config")) or {}
        rates = _first(body.get("rate_limits")) or {}
        for key in ("max_attempts", "min_backoff", "max_backoff"):
            if key not in retry:
                problems.append(f"queue {name}: retry_config.{key} is not set")
        rate = rates.get("max_dispatches_per_second")
        if not isinstance(rate, int | float) or not 0 < rate <= MAX_DISPATCHES_PER_SECOND:
            problems.append(
                f"queue {name}: max_dispatches_per_second {rate!r} must be a number in "
                f"(0, {MAX_DISPATCHES_PER_SECOND:g}] for a {REPORTS_QUOTA_PER_MINUTE}/min quota"
            )
        if not isinstance(rates.get("max_concurrent_dispatches"), int):
            problems.append(f"queue {name}: rate_limits.max_concurrent_dispatches is not set")
    return problems


def firestore_protected(infra: Infra) -> list[str]:
    databases = infra.of_type("google_firestore_database")
    if not databases:
        return ["no Firestore database"]
    problems = []
    for name, body in databases.items():
        expected = {
            "type": "FIRESTORE_NATIVE",
            "point_in_time_recovery_enablement": "POINT_IN_TIME_RECOVERY_ENABLED",
            "delete_protection_state": "DELETE_PROTECTION_ENABLED",
        }
        problems += [
            f"firestore database {name}: {key} must be {value} (is {body.get(key)!r})"
            for key, value in expected.items()
            if body.get(key) != value
        ]
    return problems


def firestore_access_conditioned(infra: Infra) -> list[str]:
    """Firestore roles are the narrowest predefined ones (datastore.user to write, .viewer to
    read), granted on the project with a condition naming the one database."""
    database = 'resource.name == \\"projects/${var.project_id}/databases/${google_firestore_database.default.name}\\"'
    problems = []
    for grant in grants(infra):
        if not grant.role.startswith("roles/datastore."):
            continue
        if grant.role not in ("roles/datastore.user", "roles/datastore.viewer"):
            problems.append(f"{grant.resource} grants {grant.role}; datastore.user or .viewer only")
        if grant.condition != database:
            problems.append(
                f"{grant.resource}: condition {grant.condition!r} does not name the database"
            )
    return problems


def _field_overrides(infra: Infra) -> list[dict[str, Any]]:
    document = json.loads((infra.directory / "firestore.indexes.json").read_text("utf-8"))
    overrides: list[dict[str, Any]] = document.get("fieldOverrides", [])
    return overrides


def firestore_retention_and_erasure(infra: Infra) -> list[str]:
    """TTL on expire_at of meetings, participants, revisions, webhook and Meet event deliveries
    (and never on erasures, calendar channels or calendar syncs); participant_key and
    revisions.participant_keys indexed for collection-group lookups; all from the JSON file."""
    problems = []
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in _field_overrides(infra)}
    for collection in TTL_COLLECTIONS:
        if not (overrides.get((collection, "expire_at")) or {}).get("ttl"):
            problems.append(f"no TTL policy on {collection}.expire_at")
    problems += [
        f"{collection}.{field} has a TTL: {collection} must never expire"
        for (collection, field), o in overrides.items()
        if collection in NO_TTL_COLLECTIONS and o.get("ttl")
    ]
    key_indexes = (overrides.get(("participants", "participant_key")) or {}).get("indexes", [])
    if not any(i.get("queryScope") == "COLLECTION_GROUP" and i.get("order") for i in key_indexes):
        problems.append(
            "participants.participant_key has no collection-group index (erasure lookup)"
        )
    named_indexes = (overrides.get(("revisions", "participant_keys")) or {}).get("indexes", [])
    if not any(
        i.get("queryScope") == "COLLECTION_GROUP" and i.get("arrayConfig") == "CONTAINS"
        for i in named_indexes
    ):
        problems.append(
            "revisions.participant_keys has no collection-group array-contains index (erasure lookup)"
        )
    fields = infra.of_type("google_firestore_field")
    if [b.get("for_each") for b in fields.values()] != ["${local.firestore_field_overrides}"]:
        problems.append(
            "google_firestore_field must be one resource over local.firestore_field_overrides"
        )
    for name, body in fields.items():
        dynamic = _text(body.get("dynamic", []))
        if "ttl_config" not in dynamic or '"ttl"' not in dynamic:
            problems.append(f"google_firestore_field.{name} does not set ttl_config from the file")
        if "index_config" not in body:
            problems.append(
                f"google_firestore_field.{name} does not set index_config from the file"
            )
    source = str(infra.locals.get("firestore_field_overrides", ""))
    if "local.firestore_document.fieldOverrides" not in source:
        problems.append("local.firestore_field_overrides must read firestore.indexes.json")
    return problems


def privacy_settings_validated(infra: Infra) -> list[str]:
    """RETENTION_DAYS is optional and at least 62; LOCATION_MODE is full, country or none."""
    problems = []
    retention = infra.variables.get("retention_days", {})
    if retention.get("default", "missing") is not None:
        problems.append("var.retention_days must default to null (keep until erased)")
    if ">= 62" not in _text(retention.get("validation", [])):
        problems.append("var.retention_days is not validated to be at least 62")
    location = _text(infra.variables.get("location_mode", {}).get("validation", []))
    problems += [
        f"var.location_mode does not allow {mode}"
        for mode in ("full", "country", "none")
        if f'"{mode}"' not in location
    ]
    if "latest" in str(infra.variables.get("erasure_key_version", {}).get("default", "latest")):
        problems.append("ERASURE_KEY must be pinned to a version: a new key forgets every erasure")
    return problems


def webhook_deliveries_expire(infra: Infra) -> list[str]:
    overrides = _field_overrides(infra)
    if any(
        o["collectionGroup"] == "webhook_deliveries"
        and o["fieldPath"] == "expire_at"
        and o.get("ttl")
        for o in overrides
    ) and infra.of_type("google_firestore_field"):
        return []
    return ["no TTL (google_firestore_field ttl_config) on webhook_deliveries.expire_at"]


def apis_enabled(infra: Infra) -> list[str]:
    services = str(infra.locals.get("services", ""))
    return [f"API {api} is not enabled" for api in REQUIRED_APIS if api not in services]


def firestore_indexes_from_json(infra: Infra) -> list[str]:
    problems = []
    document_source = str(infra.locals.get("firestore_document", ""))
    index_source = str(infra.locals.get("firestore_indexes", ""))
    if 'jsondecode(file("${path.module}/firestore.indexes.json"))' not in document_source:
        problems.append("local.firestore_document must read firestore.indexes.json")
    if "local.firestore_document.indexes" not in index_source:
        problems.append("google_firestore_index must read firestore.indexes.json")
    if not infra.of_type("google_firestore_index"):
        problems.append("no google_firestore_index resource")
    document = json.loads((infra.directory / "firestore.indexes.json").read_text("utf-8"))
    declared = {
        (
            index["collectionGroup"],
            index["queryScope"],
            tuple(f["fieldPath"] for f in index["fields"]),
        )
        for index in document["indexes"]
    }
    needed = {
        ("participants", "COLLECTION_GROUP", ("email", "meeting_status", "ended_at")),
        ("participants", "COLLECTION_GROUP", ("meeting_status", "ended_at")),
        ("meetings", "COLLECTION", ("meeting_code", "ended_at")),
        ("meetings", "COLLECTION", ("status", "next_poll_at")),
        ("meetings", "COLLECTION", ("status", "ended_at")),
    }
    problems += [
        f"index {index} is missing from firestore.indexes.json" for index in needed - declared
    ]
    return problems


def alerts_declared(infra: Infra) -> list[str]:
    alerts = infra.locals.get("log_alerts")
    if not isinstance(alerts, dict):
        return ["local.log_alerts is missing"]
    expected = {
        "failed_meetings": ('jsonPayload.message=\\"poll finished\\"', 'status=\\"failed\\"'),
        "delegation_errors": ("jsonPayload.error=~", "Reports privilege", "REPORTS_ADMIN_SUBJECT"),
        "overdue_chains": ("overdue chain re-enqueued",),
        "backfill_failures": ("severity>=ERROR", "local.function_names.backfill"),
        "meet_events_errors": ("severity>=ERROR", "local.function_names.meet_events"),
    }
    problems = []
    for key, fragments in expected.items():
        alert_filter = str((alerts.get(key) or {}).get("filter", ""))
        problems += [f"alert {key}: filter lacks {f}" for f in fragments if f not in alert_filter]
    #: Alerts on Google's own metrics or on several log-based metrics, beside the log-based ones,
    #: and the dashboard's counters (tests/infra/test_monitoring.py checks those).
    exempt_names = {
        "google_monitoring_alert_policy": {
            "dead_letters",
            "no_completions",
            "http_5xx",
            "collect_queue_delays",
        },
        "google_logging_metric": {"counters"},
    }
    for kind in ("google_logging_metric", "google_monitoring_alert_policy"):
        for name, body in infra.of_type(kind).items():
            exempt = name in exempt_names[kind]
            if body.get("for_each") != "${local.log_alerts}" and not exempt:
                problems.append(f"{kind}.{name} does not cover local.log_alerts")
        if not infra.of_type(kind):
            problems.append(f"no {kind}")
    for name, body in infra.of_type("google_monitoring_alert_policy").items():
        if not body.get("notification_channels"):
            problems.append(f"alert policy {name} notifies no one")
    dead_letters = infra.of_type("google_monitoring_alert_policy").get("dead_letters")
    condition = _first(
        (_first((dead_letters or {}).get("conditions")) or {}).get("condition_threshold")
    )
    condition = condition if isinstance(condition, dict) else {}
    dead_letter_filter = str(condition.get("filter", ""))
    for fragment in (
        "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "${google_pubsub_subscription.workspace_events_dead_letter.name}",
    ):
        if fragment not in dead_letter_filter:
            problems.append(f"the dead-letter alert's filter lacks {fragment}")
    if condition.get("comparison") != "COMPARISON_GT" or condition.get("threshold_value") != 0:
        problems.append("the dead-letter alert must fire on more than 0 undelivered messages")
    return problems


def state_and_provider(infra: Infra) -> list[str]:
    problems = []
    backends = [_first(t.get("backend")) for t in infra.terraform if "backend" in t]
    gcs = [b.get("gcs") for b in backends if isinstance(b, dict) and "gcs" in b]
    if len(gcs) != 1:
        problems.append("expected exactly one gcs backend block")
    elif "bucket" in _first(gcs[0]):
        problems.append("the gcs backend's bucket comes from -backend-config, not the code")
    providers = [_first(t.get("required_providers")) for t in infra.terraform]
    google = [p["google"] for p in providers if isinstance(p, dict) and "google" in p]
    version = str(google[0].get("version", "")) if google else ""
    if not re.fullmatch(r"=?\s*\d+\.\d+\.\d+", version):
        problems.append(f"the google provider must be pinned to one version (is {version!r})")
    return problems


def outputs_declared(infra: Infra) -> list[str]:
    needed = (
        "ingest_url",
        "api_url",
        "function_service_account_emails",
        "delegation_service_account_email",
        "delegation_service_account_client_id",
        "tasks_service_account_email",
        "scheduler_service_account_email",
        "build_service_account_email",
        "tasks_queue",
        "erasure_key_secret_id",
        "meet_events_url",
        "workspace_events_topic",
        "pubsub_push_service_account_email",
        "calendar_notifications_url",
    )
    return [f"output {name} is missing" for name in needed if name not in infra.outputs]


PROPERTIES: dict[str, Callable[[Infra], list[str]]] = {
    check.__name__: check
    for check in (
        no_service_account_keys,
        no_broad_roles,
        only_ingest_is_public,
        each_function_has_its_own_account,
        function_roles_are_least,
        token_creator_only_on_delegation,
        delegation_identity_holds_nothing,
        secrets_only_where_read,
        build_account_is_least,
        collect_invoked_only_by_tasks,
        backfill_invoked_only_by_its_callers,
        api_invoked_only_by_its_principals,
        meet_events_invoked_only_by_push,
        meet_events_push_authenticated,
        meet_can_publish_workspace_events,
        calendar_notifications_reach_ingest,
        scheduler_uses_oidc,
        queue_sized_to_reports_quota,
        firestore_protected,
        firestore_access_conditioned,
        firestore_retention_and_erasure,
        privacy_settings_validated,
        webhook_deliveries_expire,
        functions_have_settings,
        functions_get_every_deployment_setting,
        functions_built_right,
        apis_enabled,
        firestore_indexes_from_json,
        alerts_declared,
        state_and_provider,
        outputs_declared,
    )
}
