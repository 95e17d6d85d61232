"""The Terraform in ``infra/``, parsed with python-hcl2, and the security properties it must keep.

Each property is a function from :class:`Infra` to a list of problems (empty when it holds), so the
same code checks the real configuration and proves, on a broken copy, that it would catch a breach.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

from functions.config import Settings
from functions.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN_PY = REPO / "main.py"

ENTRY_POINTS = ("ingest", "collect", "backfill")
REPORTS_QUOTA_PER_MINUTE = 2400
#: A poll costs at least one Reports query; at most half the quota's rate goes to queue dispatches.
MAX_DISPATCHES_PER_SECOND = REPORTS_QUOTA_PER_MINUTE / 60 / 2
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor")
#: Stand-in settings of CONTRACT §5 that must never reach production.
LOCAL_ONLY_SETTINGS = (
    "FIRESTORE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
    "REPORTS_API_ENDPOINT",
    "OIDC_CERTS_URL",
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
)
RUNTIME_PROJECT_ROLES = frozenset(
    {
        "roles/datastore.user",
        "roles/cloudtasks.enqueuer",
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
    }
)

Block = dict[str, Any]


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
    text: dict[str, str] = field(default_factory=dict)

    def of_type(self, kind: str) -> dict[str, Block]:
        return self.resources.get(kind, {})

    def resolve(self, value: Any) -> Any:
        """``${local.name}`` becomes the local's value (one level; enough for this configuration)."""
        if isinstance(value, str):
            match = re.fullmatch(r"\$\{local\.(\w+)\}", value)
            if match and match.group(1) in self.locals:
                return self.locals[match.group(1)]
        return value

    def all_resources(self) -> Iterator[tuple[str, str, Block]]:
        for kind, by_name in self.resources.items():
            for name, body in by_name.items():
                yield kind, name, body


def load_infra(directory: Path = INFRA) -> Infra:
    """Parse every ``*.tf`` file of ``directory``; a syntax error raises (the parse test)."""
    infra = Infra(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        infra.text[path.name] = text
        with path.open(encoding="utf-8") as handle:
            parsed = _unquote(hcl2.load(handle))
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


def _account_ref(name: str) -> str:
    return f"serviceAccount:${{google_service_account.{name}.email}}"


def _members(infra: Infra, body: Block) -> list[str]:
    members: list[str] = []
    for key in ("member", "members"):
        value = infra.resolve(body.get(key))
        if isinstance(value, str):
            members.append(value)
        elif isinstance(value, list):
            members.extend(str(item) for item in value)
    return members


# --- the properties -------------------------------------------------------------------------------


def no_service_account_keys(infra: Infra) -> list[str]:
    return [
        f"{kind}.{name}: no key files (delegation is keyless)"
        for kind, name, _ in infra.all_resources()
        if kind == "google_service_account_key"
    ]


def no_primitive_roles(infra: Infra) -> list[str]:
    problems = []
    for kind, name, body in infra.all_resources():
        for text in _strings(body):
            problems += [f"{kind}.{name} grants {role}" for role in PRIMITIVE_ROLES if role in text]
    for name, value in infra.locals.items():
        for text in _strings(value):
            problems += [f"local.{name} holds {role}" for role in PRIMITIVE_ROLES if role in text]
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


def runtime_signs_for_itself(infra: Infra) -> list[str]:
    for body in infra.of_type("google_service_account_iam_member").values():
        if (
            body.get("role") == "roles/iam.serviceAccountTokenCreator"
            and body.get("service_account_id") == "${google_service_account.runtime.name}"
            and _account_ref("runtime") in _members(infra, body)
        ):
            return []
    return ["no roles/iam.serviceAccountTokenCreator of the runtime account on itself"]


def _invokers(infra: Infra, function: str) -> list[str]:
    members: list[str] = []
    for kind in (
        "google_cloud_run_v2_service_iam_member",
        "google_cloud_run_v2_service_iam_binding",
        "google_cloud_run_service_iam_member",
        "google_cloud_run_service_iam_binding",
        "google_cloudfunctions2_function_iam_member",
        "google_cloudfunctions2_function_iam_binding",
    ):
        for body in infra.of_type(kind).values():
            target = str(body.get("name") or body.get("service") or body.get("cloud_function"))
            if f"google_cloudfunctions2_function.{function}." in target:
                members += _members(infra, body)
    return members


def _no_project_wide_invokers(infra: Infra) -> list[str]:
    return [
        f"google_project_iam_member.{name} grants {body.get('role')} on the whole project"
        for name, body in infra.of_type("google_project_iam_member").items()
        if body.get("role") in ("roles/run.invoker", "roles/cloudfunctions.invoker")
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


def webhook_deliveries_expire(infra: Infra) -> list[str]:
    for body in infra.of_type("google_firestore_field").values():
        if (
            body.get("collection") == "webhook_deliveries"
            and body.get("field") == "expire_at"
            and "ttl_config" in body
        ):
            return []
    return ["no TTL (google_firestore_field ttl_config) on webhook_deliveries.expire_at"]


def _functions(infra: Infra) -> dict[str, Block]:
    return infra.of_type("google_cloudfunctions2_function")


def _environment(infra: Infra, service: Block) -> dict[str, Any]:
    """The function's plain environment: ``merge(var.app_settings, local.app_env)`` or a map."""
    value = service.get("environment_variables")
    if isinstance(value, dict):
        return value
    env: dict[str, Any] = {}
    for name in re.findall(r"local\.(\w+)", str(value)):
        local = infra.locals.get(name)
        if isinstance(local, dict):
            env.update(local)
    return env


def webhook_secret_from_secret_manager(infra: Infra) -> list[str]:
    problems = []
    for name, body in _functions(infra).items():
        service = _first(body.get("service_config")) or {}
        secrets = service.get("secret_environment_variables") or []
        mounted = [
            s
            for s in secrets
            if s.get("key") == "WEBHOOK_SECRET"
            and s.get("secret") == "${google_secret_manager_secret.webhook.secret_id}"
        ]
        if not mounted:
            problems.append(f"function {name}: WEBHOOK_SECRET is not mounted from Secret Manager")
        if "WEBHOOK_SECRET" in _environment(infra, service):
            problems.append(f"function {name}: WEBHOOK_SECRET must not be a plain variable")
    for name, body in infra.of_type("google_secret_manager_secret_version").items():
        if "secret_data" in body:
            problems.append(f"secret version {name} puts the secret's value in Terraform state")
    if not infra.of_type("google_secret_manager_secret"):
        problems.append("no google_secret_manager_secret for the webhook secret")
    return problems


def required_settings() -> list[str]:
    """Settings functions/config.py refuses to start without (WEBHOOK_SECRET included)."""
    try:
        Settings.from_env({})
    except ConfigError as error:
        names = [re.match(r"([A-Z_]+) is required", p) for p in error.problems]
        return sorted({m.group(1) for m in names if m})
    raise AssertionError("Settings.from_env({}) unexpectedly succeeded")


def functions_have_settings(infra: Infra) -> list[str]:
    required = [name for name in required_settings() if name != "WEBHOOK_SECRET"]
    problems = []
    functions = _functions(infra)
    if sorted(functions) != sorted(ENTRY_POINTS):
        problems.append(f"functions are {sorted(functions)}, expected {sorted(ENTRY_POINTS)}")
    for name, body in functions.items():
        env = _environment(infra, _first(body.get("service_config")) or {})
        problems += [f"function {name}: {n} is not set" for n in required if n not in env]
        problems += [f"function {name}: {n} is set" for n in LOCAL_ONLY_SETTINGS if n in env]
        if env.get("REPORTS_CREDENTIALS", "keyless") != "keyless":
            problems.append(f"function {name}: REPORTS_CREDENTIALS must stay keyless")
    return problems


def main_entry_points(main_py: Path = MAIN_PY) -> set[str]:
    tree = ast.parse(main_py.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def functions_built_right(infra: Infra) -> list[str]:
    problems = []
    entry_points = main_entry_points()
    for name, body in _functions(infra).items():
        build = _first(body.get("build_config")) or {}
        service = _first(body.get("service_config")) or {}
        if build.get("runtime") != "python313":
            problems.append(f"function {name}: runtime is {build.get('runtime')!r}")
        if build.get("entry_point") not in entry_points:
            problems.append(
                f"function {name}: entry point {build.get('entry_point')!r} not in main.py"
            )
        if service.get("service_account_email") != "${google_service_account.runtime.email}":
            problems.append(f"function {name} does not run as the runtime account")
        if "max_instance_count" not in service:
            problems.append(f"function {name}: max_instance_count is not capped")
    return problems


def runtime_roles_are_least(infra: Infra) -> list[str]:
    roles = infra.locals.get("runtime_project_roles")
    if not isinstance(roles, str):
        return ["local.runtime_project_roles is missing"]
    granted = set(re.findall(r'"(roles/[\w.]+)"', roles)) or set(re.findall(r"roles/[\w.]+", roles))
    problems = []
    if granted != RUNTIME_PROJECT_ROLES:
        problems.append(f"runtime project roles are {sorted(granted)}")
    runtime = "${local.runtime_member}"
    for name, body in infra.of_type("google_project_iam_member").items():
        if body.get("member") == runtime and body.get("role") != "${each.value}":
            problems.append(f"google_project_iam_member.{name} adds {body.get('role')} to runtime")
    acts_as = [
        body.get("service_account_id")
        for body in infra.of_type("google_service_account_iam_member").values()
        if body.get("role") == "roles/iam.serviceAccountUser" and body.get("member") == runtime
    ]
    if acts_as != ["${google_service_account.tasks.name}"]:
        problems.append(f"runtime acts as {acts_as}; only the tasks account is needed")
    secret_access = [
        body
        for body in infra.of_type("google_secret_manager_secret_iam_member").values()
        if body.get("member") == runtime
    ]
    if [b.get("role") for b in secret_access] != ["roles/secretmanager.secretAccessor"]:
        problems.append("runtime needs secretAccessor on the webhook secret only")
    return problems


def apis_enabled(infra: Infra) -> list[str]:
    services = str(infra.locals.get("services", ""))
    return [f"API {api} is not enabled" for api in REQUIRED_APIS if api not in services]


def firestore_indexes_from_json(infra: Infra) -> list[str]:
    problems = []
    index_source = str(infra.locals.get("firestore_indexes", ""))
    if 'jsondecode(file("${path.module}/firestore.indexes.json"))' not in index_source:
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
    }
    problems = []
    for key, fragments in expected.items():
        alert_filter = str((alerts.get(key) or {}).get("filter", ""))
        problems += [f"alert {key}: filter lacks {f}" for f in fragments if f not in alert_filter]
    for kind in ("google_logging_metric", "google_monitoring_alert_policy"):
        for name, body in infra.of_type(kind).items():
            if body.get("for_each") != "${local.log_alerts}":
                problems.append(f"{kind}.{name} does not cover local.log_alerts")
        if not infra.of_type(kind):
            problems.append(f"no {kind}")
    for name, body in infra.of_type("google_monitoring_alert_policy").items():
        if not body.get("notification_channels"):
            problems.append(f"alert policy {name} notifies no one")
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
        "runtime_service_account_email",
        "runtime_service_account_client_id",
        "tasks_service_account_email",
        "scheduler_service_account_email",
        "tasks_queue",
    )
    return [f"output {name} is missing" for name in needed if name not in infra.outputs]


PROPERTIES: dict[str, Callable[[Infra], list[str]]] = {
    check.__name__: check
    for check in (
        no_service_account_keys,
        no_primitive_roles,
        only_ingest_is_public,
        runtime_signs_for_itself,
        collect_invoked_only_by_tasks,
        backfill_invoked_only_by_its_callers,
        scheduler_uses_oidc,
        queue_sized_to_reports_quota,
        firestore_protected,
        webhook_deliveries_expire,
        webhook_secret_from_secret_manager,
        functions_have_settings,
        functions_built_right,
        runtime_roles_are_least,
        apis_enabled,
        firestore_indexes_from_json,
        alerts_declared,
        state_and_provider,
        outputs_declared,
    )
}
