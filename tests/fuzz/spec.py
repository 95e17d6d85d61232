"""``openapi.yaml`` as data: its operations, the function that serves each, and whether an answer
is one the description documents.

Shared by ``tests/unit/test_openapi.py`` (answers of the handlers over in-memory ports) and the
fuzzer (answers of the local stack). Paths in the description are keyed ``/<function><path>``;
``x-function`` names the function and ``x-path`` the path it serves (see the description's
``info.description``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT: Final = Path(__file__).resolve().parents[2]
SPEC_PATH: Final = ROOT / "openapi.yaml"
FUNCTIONS: Final = ("ingest", "api", "collect", "backfill", "meet_events")
#: The stack.env variable holding each function's URL (README "The local stack").
URL_SETTINGS: Final = {
    "ingest": "INGEST_URL",
    "api": "API_URL",
    "collect": "COLLECT_URL",
    "backfill": "BACKFILL_URL",
    "meet_events": "MEET_EVENTS_URL",
}
_BASE: Final = "urn:meet-attendance:openapi"
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@functools.cache
def load_spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return document


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented operation: ``method`` on ``path`` of ``function``."""

    key: str  # the path's key in openapi.yaml
    method: str  # upper case
    function: str
    path: str  # what the function serves (x-path), a template
    operation_id: str

    @property
    def pointer(self) -> str:
        """The JSON pointer of this operation in the description."""
        escaped = self.key.replace("~", "~0").replace("/", "~1")
        return f"/paths/{escaped}/{self.method.lower()}"

    def local_path(self, parameters: Mapping[str, Any]) -> str:
        """``path`` with ``parameters`` filled in (percent-encoded, ``/`` included)."""
        path = self.path
        for name, value in parameters.items():
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        return path

    def description(self) -> dict[str, Any]:
        item: dict[str, Any] = load_spec()["paths"][self.key][self.method.lower()]
        return item

    def __str__(self) -> str:
        return f"{self.function} {self.method} {self.path}"


@functools.cache
def operations() -> tuple[Operation, ...]:
    found = []
    for key, item in load_spec()["paths"].items():
        for method in _METHODS:
            if method in item:
                found.append(
                    Operation(
                        key=key,
                        method=method.upper(),
                        function=item["x-function"],
                        path=item["x-path"],
                        operation_id=item[method]["operationId"],
                    )
                )
    return tuple(found)


def operation(operation_id: str) -> Operation:
    for candidate in operations():
        if candidate.operation_id == operation_id:
            return candidate
    raise KeyError(operation_id)


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(load_spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_BASE, resource)
    return registry


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Response or Request Body object, following ``$ref`` into ``components``."""
    while "$ref" in node:
        resolved = _registry().resolver(_BASE).lookup(_BASE + node["$ref"]).contents
        node = resolved
    return node


def validator(pointer: str) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator (formats checked) of the schema at ``pointer`` in the
    description; ``$ref``s inside it resolve against the whole description."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": _BASE + "#" + pointer,
    }
    cls = jsonschema.Draft202012Validator
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


def schema_problems(pointer: str, value: Any) -> list[str]:
    """Why ``value`` does not match the schema at ``pointer`` (empty: it does)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message[:300]}"
        for error in validator(pointer).iter_errors(value)
    ]


def request_body_pointer(op: Operation) -> str:
    body = op.description().get("requestBody")
    if body is None:
        raise KeyError(f"{op} documents no request body")
    return op.pointer + "/requestBody/content/application~1json/schema"


def _response_key(op: Operation, status: int) -> str | None:
    responses = op.description()["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return key
    return None


def answer_problems(op: Operation, status: int, body: bytes | Any) -> list[str]:
    """Why an answer (status and body: bytes as sent, or the decoded JSON) is not one that
    ``op`` documents (empty: it is)."""
    key = _response_key(op, status)
    if key is None:
        return [f"{op}: status {status} is not documented"]
    response = _resolve(op.description()["responses"][key])
    content = response.get("content")
    if isinstance(body, bytes | bytearray):
        if not content:
            return [] if not body else [f"{op}: {status} documents no body"]
        try:
            body = json.loads(body)
        except ValueError:
            start = bytes(body).lstrip()[:15].lower()
            if "text/html" in content and start.startswith((b"<html", b"<!doctype html")):
                # The HTTP server's own refusal, documented as such, or the meeting report page.
                return []
            return [f"{op}: {status} body is not JSON: {bytes(body[:80])!r}"]
    if not content:
        return [f"{op}: {status} documents no body"]
    if "application/json" not in content:
        return [f"{op}: {status} documents no JSON body"]
    escaped = key.replace("/", "~1")
    pointer = f"{op.pointer}/responses/{escaped}"
    if "$ref" in op.description()["responses"][key]:
        ref = op.description()["responses"][key]["$ref"]
        pointer = ref.removeprefix("#")
    pointer += "/content/application~1json/schema"
    return [f"{op}: {status}: {problem}" for problem in schema_problems(pointer, body)]
