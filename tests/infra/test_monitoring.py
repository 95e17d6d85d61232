"""Metrics and alerts follow the code: every log-based metric matches lines functions/ writes, and
every alert or chart reads a metric that exists.

Log-based metrics fail silently: a renamed message leaves the metric at zero and its alert quiet
forever. So each filter's messages, fields and values are looked up in functions/ (parsed with
``ast``), and a copy of the code or of infra/ broken in one way must be caught.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Edits
from tests.infra.terraform import REPO, Infra, load_infra

FUNCTIONS = REPO / "functions"
MakeCopy = Callable[[Edits], Path]

#: Google's own metric types the alerts and the dashboard read, each as Google lists it
#: (cloud.google.com/monitoring/api/metrics_gcp): Cloud Tasks publishes api/request_count,
#: queue/depth, queue/task_attempt_count and queue/task_attempt_delays, and no oldest-task age.
GOOGLE_METRICS = frozenset(
    {
        "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "run.googleapis.com/request_count",
        "cloudtasks.googleapis.com/queue/depth",
        "cloudtasks.googleapis.com/queue/task_attempt_count",
        "cloudtasks.googleapis.com/queue/task_attempt_delays",
    }
)
USER_METRIC_PREFIX = "logging.googleapis.com/user"
_LOG_CALLS = {"info": 0, "warning": 0, "error": 0, "report_error": 0, "log": 1}


@dataclass
class Logged:
    """What functions/ logs: constant messages, field names and every string constant."""

    messages: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)


def logged(root: Path = FUNCTIONS) -> Logged:
    found = Logged()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.constants.add(node.value)
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "logs"
            ):
                continue
            keywords = {k.arg for k in node.keywords if k.arg is not None} - {"stream"}
            if node.func.attr == "bind":
                found.fields |= keywords
            elif node.func.attr in _LOG_CALLS:
                position = _LOG_CALLS[node.func.attr]
                if len(node.args) > position:
                    message = node.args[position]
                    if isinstance(message, ast.Constant) and isinstance(message.value, str):
                        found.messages.add(message.value)
                found.fields |= keywords
    return found


def _plain(text: str) -> str:
    """An HCL string as parsed (``\\"`` kept) with its quotes unescaped."""
    return text.replace('\\"', '"')


def _text(value: Any) -> str:
    """Every string in a parsed block, quotes unescaped, one per line."""
    if isinstance(value, str):
        return _plain(value)
    if isinstance(value, dict):
        return "\n".join(_text(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return str(value)


def log_based_metrics(infra: Infra) -> dict[str, dict[str, Any]]:
    """Every log-based metric as ``resource[key]`` → its local entry (filter, labels)."""
    metrics: dict[str, dict[str, Any]] = {}
    for name, body in infra.of_type("google_logging_metric").items():
        entries = infra.resolve(body.get("for_each"))
        if isinstance(entries, dict):
            for key, entry in entries.items():
                metrics[f"{name}[{key}]"] = entry
        else:
            metrics[name] = {"filter": body.get("filter", ""), "labels": {}}
    return metrics


def named_messages(text: str) -> list[str]:
    messages = re.findall(r'jsonPayload\.message="([^"]*)"', text)
    for group in re.findall(r"jsonPayload\.message=\(([^)]*)\)", text):
        messages += re.findall(r'"([^"]*)"', group)
    return messages


def metric_problems(infra: Infra, code: Logged) -> list[str]:
    """A log-based metric naming a message, a field or a value that functions/ never logs."""
    problems = []
    for name, entry in sorted(log_based_metrics(infra).items()):
        text = _plain(str(entry.get("filter", "")))
        extractors = " ".join(_plain(str(v)) for v in (entry.get("labels") or {}).values())
        messages = named_messages(text)
        fields = set(re.findall(r"jsonPayload\.(\w+)", f"{text} {extractors}")) - {"message"}
        if not messages and not fields and "severity>=" not in text:
            problems.append(f"{name}: its filter names no message, field or severity")
        problems += [
            f"{name}: message {m!r} is logged nowhere in functions/"
            for m in messages
            if m not in code.messages
        ]
        problems += [
            f"{name}: field {f!r} is logged nowhere in functions/"
            for f in sorted(fields)
            if f not in code.fields
        ]
        for field_name, value in re.findall(r'jsonPayload\.(\w+)="([^"]*)"', text):
            if field_name != "message" and value not in code.constants:
                problems.append(f"{name}: {field_name}={value!r} is a value functions/ never has")
    return problems


def _user_metric_references(text: str) -> Iterator[tuple[str, str]]:
    """``(resource, key)`` of each ``google_logging_metric.R[KEY].name`` in ``text``."""
    pattern = r'google_logging_metric\.(\w+)\[(?:\\*"(\w+)\\*"|(each\.key))\]\.name'
    for resource, key, each in re.findall(pattern, text):
        yield resource, key or each


def reference_problems(infra: Infra) -> list[str]:
    """An alert or a chart reading a metric that no resource creates, or that Google never
    published; an alert reading none."""
    problems = []
    if infra.locals.get("user_metric") != USER_METRIC_PREFIX:
        problems.append(f"local.user_metric must be {USER_METRIC_PREFIX}")
    readers = {
        f"alert {name}": (body.get("for_each"), _text(body.get("conditions")))
        for name, body in infra.of_type("google_monitoring_alert_policy").items()
    }
    charts = infra.locals.get("dashboard_charts") or []
    if not infra.of_type("google_monitoring_dashboard") or not charts:
        problems.append("no google_monitoring_dashboard with local.dashboard_charts")
    for chart in charts:
        readers[f"chart {chart.get('title')!r}"] = (None, _text(chart.get("filter")))
    for reader, (for_each, text) in sorted(readers.items()):
        problems += _reads(infra, reader, for_each, text)
    return problems


def _reads(infra: Infra, reader: str, for_each: Any, text: str) -> list[str]:
    problems = []
    metrics = infra.of_type("google_logging_metric")
    references = list(_user_metric_references(text))
    google = re.findall(
        r'(?:metric\.type|"__name__")="([a-z][\w.]*\.googleapis\.com/[\w/]+)"', text
    )
    if not references and not google:
        problems.append(f"{reader} reads no metric")
    problems += [
        f"{reader} reads {m}, not a metric Google publishes"
        for m in google
        if m not in GOOGLE_METRICS
    ]
    for resource, key in references:
        body = metrics.get(resource)
        if body is None:
            problems.append(
                f"{reader} reads google_logging_metric.{resource}, which is not declared"
            )
            continue
        if key == "each.key":
            if body.get("for_each") != for_each:
                problems.append(f"{reader} iterates over another map than {resource}'s")
            continue
        entries = infra.resolve(body.get("for_each"))
        if not isinstance(entries, dict) or key not in entries:
            problems.append(
                f"{reader} reads google_logging_metric.{resource}[{key!r}], which is not declared"
            )
    problems += [
        f"{reader} reads a log-based metric under {path!r}"
        for path in re.findall(r'"([^"]*)/\$\{google_logging_metric\.', text)
        if path not in ("${local.user_metric}", USER_METRIC_PREFIX)
    ]
    return problems


# ------------------------------------------------------------------------------------------------


def test_the_code_scan_finds_what_the_code_logs() -> None:
    code = logged()
    assert {
        "poll finished",
        "meeting created",
        "meeting completed",
        "request refused",
    } <= code.messages
    assert {"meeting_id", "status", "decision", "error_code", "source", "code"} <= code.fields


def test_every_log_based_metric_matches_lines_the_code_writes() -> None:
    assert metric_problems(load_infra(), logged()) == []


def test_every_alert_and_chart_reads_a_metric_that_exists() -> None:
    assert reference_problems(load_infra()) == []


def test_the_alerts_cover_silence_refusals_5xx_the_queue_and_subscriptions() -> None:
    infra = load_infra()
    policies = infra.of_type("google_monitoring_alert_policy")
    alerts = infra.locals["log_alerts"]
    assert {"no_completions", "http_5xx", "collect_queue_delays", "dead_letters"} <= set(policies)
    assert {"ingest_unauthorized", "subscription_problems"} <= set(alerts)

    # Declarations gate the absence of completions in one query (docs/operations.md).
    query = _text(policies["no_completions"]["conditions"])
    declared, _, completed = query.partition(" unless ")
    assert 'counters["meetings_declared"]' in declared
    assert "offset" in declared
    assert 'counters["meetings_completed"]' in completed
    # Calendar declarations are of meetings up to 29 days ahead: they must not arm the alert.
    assert '"source"!="calendar"' in declared

    unauthorized = _plain(alerts["ingest_unauthorized"]["filter"])
    assert "jsonPayload.status=401" in unauthorized
    assert "${local.function_names.ingest}" in unauthorized
    assert alerts["ingest_unauthorized"]["threshold"] > 0  # a stray probe on a public URL

    five = _text(policies["http_5xx"]["conditions"])
    assert 'metric.labels.response_code_class="5xx"' in five
    assert "one_of(${local.run_service_list})" in five
    queue = infra.expand(_text(policies["collect_queue_delays"]["conditions"]))
    assert "google_cloud_tasks_queue.collect.name" in queue


def test_metric_check_catches_a_renamed_message_in_the_code(tmp_path: Path) -> None:
    copy = tmp_path / "functions"
    shutil.copytree(FUNCTIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    polling = copy / "polling.py"
    text = polling.read_text(encoding="utf-8")
    assert 'logs.info("meeting completed")' in text
    polling.write_text(text.replace('"meeting completed"', '"meeting done"'), encoding="utf-8")
    problems = metric_problems(load_infra(), logged(copy))
    assert problems == [
        "counters[meetings_completed]: message 'meeting completed' is logged nowhere in functions/"
    ]


BROKEN: dict[str, tuple[Callable[[Infra], list[str]], Edits, str]] = {
    "a filter names a message never logged": (
        lambda infra: metric_problems(infra, logged()),
        {"monitoring.tf": ('message=\\"meeting created\\"', 'message=\\"meeting declared\\"')},
        "'meeting declared' is logged nowhere",
    ),
    "one message of a disjunction renamed": (
        lambda infra: metric_problems(infra, logged()),
        {"monitoring.tf": ('\\"subscription suspended\\"', '\\"subscription paused\\"')},
        "'subscription paused' is logged nowhere",
    ),
    "a label extracts a field never logged": (
        lambda infra: metric_problems(infra, logged()),
        {"monitoring.tf": ("EXTRACT(jsonPayload.error_code)", "EXTRACT(jsonPayload.error_kind)")},
        "field 'error_kind' is logged nowhere",
    ),
    "a filter names a value the code never has": (
        lambda infra: metric_problems(infra, logged()),
        {"monitoring.tf": ('jsonPayload.status=\\"failed\\"', 'jsonPayload.status=\\"broken\\"')},
        "status='broken' is a value functions/ never has",
    ),
    "an alert reads an undeclared counter": (
        reference_problems,
        {"monitoring.tf": ('counters["meetings_completed"]', 'counters["meetings_finished"]')},
        "google_logging_metric.counters['meetings_finished'], which is not declared",
    ),
    "an alert reads an invented Google metric": (
        reference_problems,
        {
            "monitoring.tf": (
                "cloudtasks.googleapis.com/queue/task_attempt_delays",
                "cloudtasks.googleapis.com/queue/oldest_task_age",
            )
        },
        "cloudtasks.googleapis.com/queue/oldest_task_age, not a metric Google publishes",
    ),
    "a chart reads a metric resource that does not exist": (
        reference_problems,
        {
            "dashboard.tf": (
                'google_logging_metric.counters["poll_outcomes"]',
                'google_logging_metric.polls["poll_outcomes"]',
            )
        },
        "google_logging_metric.polls, which is not declared",
    ),
    "an alert reads a log-based metric by another path": (
        reference_problems,
        {
            "monitoring.tf": (
                'metric.type=\\"${local.user_metric}/',
                'metric.type=\\"custom.googleapis.com/',
            )
        },
        "reads a log-based metric under 'custom.googleapis.com'",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_checks_catch_a_broken_copy(infra_copy: MakeCopy, case: str) -> None:
    check, edits, expected = BROKEN[case]
    problems = check(load_infra(infra_copy(edits)))
    assert any(expected in problem for problem in problems), problems
