"""The layout the README's "Layout" section promises, checked on the source itself.

Each module of ``functions/`` belongs to a layer, and a layer may import only the layers below it:
pure rules know nothing of ports or I/O, use cases know ports but no adapter, and only adapters
(and ``main.py``) import Google's libraries, Flask or gRPC. Modules and functions stay short
enough to read, and the participant-key prefixes are spelled in one module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions"

#: Layer of each module (``adapters`` stands for every module under functions/adapters/).
LAYERS = {
    "pure": {
        "errors",
        "limits",
        "timestamps",
        "intervals",
        "meeting_codes",
        "participant_keys",
        "duplicates",
        "attendance",
        "reports_events",
        "fingerprints",
        "selection",
        "schedule",
        "model",
        "stored_state",
        "signatures",
        "poll_types",
        "poll_plan",
        "retention",
        "redeclaration",
        "meet_records",
        "meeting_ids",
        "calendar_records",
        "calendar_events",
        "meeting_search",
    },
    "ports": {"ports", "logs", "config"},
    "edge": {"payloads", "http_edge", "commits", "pubsub_push", "doctor"},
    "use_cases": {
        "chain",
        "declarations",
        "known_meetings",
        "neighbours",
        "polling",
        "backfill",
        "erasure",
        "meet_attendance",
        "meet_signals",
        "subscriptions",
        "calendar_sync",
        "channels",
    },
    "read_side": {
        "views",
        "export",
        "dumps",
        "timeline",
        "report_page",
    },
    "adapters": {"adapters"},
    "wiring": {"app"},
    "cli": {
        "cli",
        "cli_subscriptions",
        "cli_list",
        "cli_doctor",
        "cli_report",
        "cli_sync",
        "__main__",
    },
}
#: What each layer may import (besides itself).
MAY_IMPORT = {
    "pure": set(),
    "ports": {"pure"},
    "edge": {"pure", "ports"},
    "use_cases": {"pure", "ports"},
    "read_side": {"pure", "ports", "use_cases"},
    "adapters": {"pure", "ports", "edge"},
    "wiring": {"pure", "ports", "edge", "use_cases", "read_side", "adapters"},
    "cli": {"pure", "ports", "edge", "use_cases", "read_side", "adapters", "wiring"},
}
FOREIGN = (
    "google",
    "googleapiclient",
    "google_auth_httplib2",
    "httplib2",
    "flask",
    "functions_framework",
    "grpc",
)
OURS_OUTSIDE = ("local", "benchmarks", "tests", "main")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
KEY_PREFIXES = ("phone:", "device:", "anon:", "endpoint:")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        if relative.name == "__init__":
            continue
        yield ".".join(relative.parts), path


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    for layer, members in LAYERS.items():
        if top in members:
            return layer
    raise AssertionError(f"functions/{module}.py belongs to no layer: add it to LAYERS and README")


def imported(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize(("module", "path"), list(modules()), ids=lambda v: str(v))
def test_each_module_imports_only_the_layers_below_it(module: str, path: Path) -> None:
    layer = layer_of(module)
    allowed = {layer, *MAY_IMPORT[layer]}

    def refused(name: str) -> bool:
        top = name.split(".")[0]
        if top in OURS_OUTSIDE or (top in FOREIGN and layer != "adapters"):
            return True
        inner = name.removeprefix("functions.")
        return top == "functions" and inner != name and layer_of(inner) not in allowed

    wrong = [name for name in imported(path) if refused(name)]
    assert wrong == [], f"functions/{module} ({layer}) may not import {wrong}"


@pytest.mark.parametrize(("module", "path"), list(modules()), ids=lambda v: str(v))
def test_modules_and_functions_are_short(module: str, path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"functions/{module} is over 600 lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], f"functions/{module}: functions over 80 lines: {long}"


def _docstring(node: ast.AST) -> ast.AST | None:
    body = getattr(node, "body", None)
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and body:
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            return first.value
    return None


def _code_strings(tree: ast.AST) -> Iterator[str]:
    """String constants of a module that are not docstrings."""
    docstrings = {id(doc) for node in ast.walk(tree) if (doc := _docstring(node)) is not None}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.value


def test_participant_key_prefixes_are_spelled_in_one_module() -> None:
    spelled = {
        module
        for module, path in modules()
        for text in _code_strings(ast.parse(path.read_text()))
        if any(prefix in text for prefix in KEY_PREFIXES)
    }
    assert spelled <= {"participant_keys"}


def test_main_adapts_flask_to_the_handlers_and_nothing_else() -> None:
    imports = set(imported(ROOT / "main.py"))
    ours = {name for name in imports if name == "functions" or name.startswith("functions.")}
    assert ours <= {"functions", "functions.limits"}
