"""docs/ kept true to the code: settings against ``READS``, the CLI page against the click group,
the Firestore page against the stored shape, the API page's signed example through ``ingest``,
and the example sender through the functions' own verifier and parser. Links resolve, and no
page points outside the repository."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml

from functions import app
from functions.attendance import Session
from functions.config import READS, ROLES, Settings
from functions.limits import DURATION_SETTINGS
from functions.model import MeetingRecord, RevisionRecord, estimated_record, session_document
from functions.payloads import TASK_REASONS, parse_meeting_ended
from functions.ports import Deps
from functions.retention import EXPIRE_AT
from functions.schedule import Status, Timing
from functions.signatures import verify_webhook_signature
from functions.stored_state import PREVIOUS_ATTENDED, STAGED_COMMIT
from tests.fakes import FakeIdTokens, ManualClock, MemoryQueue, MemoryStore, ScriptedReports

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "send_webhook.py"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next heading of level 2 (or the end)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"no section '## {heading}'"
    return match.group(1)


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of each Markdown table row whose first cell is a `NAME` in backticks."""
    for line in text.splitlines():
        if re.match(r"^\| `[^`]+` \|", line):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


# ------------------------------------------------------------------------------------------------
# docs/settings.md


def settings_read() -> set[str]:
    return set().union(*READS.values())


def test_settings_matrix_is_exactly_who_reads_what() -> None:
    text = section(read("settings.md"), "Who reads what")
    header = next(line for line in text.splitlines() if line.startswith("| setting |"))
    columns = [cell.strip() for cell in header.strip().strip("|").split("|")][1:]
    assert columns == list(ROLES), "the matrix needs one column per role of functions.config"
    documented: dict[str, set[str]] = {}
    for cells in table_rows(text):
        name = cells[0].strip("`")
        assert name not in documented, f"{name} has two rows"
        documented[name] = {role for role, mark in zip(columns, cells[1:], strict=True) if mark}
    expected = {name: {r for r in ROLES if name in READS[r]} for name in settings_read()}
    missing = sorted(set(expected) - set(documented))
    assert missing == [], f"settings read but not documented in docs/settings.md: {missing}"
    stale = sorted(set(documented) - set(expected))
    assert stale == [], f"docs/settings.md documents settings nothing reads: {stale}"
    wrong = {
        n: sorted(documented[n] ^ expected[n]) for n in expected if documented[n] != expected[n]
    }
    assert wrong == {}, f"docs/settings.md marks the wrong readers (role differences): {wrong}"


def test_every_setting_has_a_default_and_a_meaning() -> None:
    rows = {c[0].strip("`"): c for c in table_rows(section(read("settings.md"), "Each setting"))}
    assert sorted(rows) == sorted(settings_read())
    for name, cells in rows.items():
        assert len(cells) == 4, f"{name}: default, required and meaning"
        assert all(cells), f"{name}: an empty cell"
    for name, limit in DURATION_SETTINGS.items():
        assert rows[name][1] == str(limit.default), f"{name}'s documented default"


# ------------------------------------------------------------------------------------------------
# docs/cli.md


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from commands(command, prefix + name + " ")


def documented_names(param: click.Parameter) -> list[str]:
    if isinstance(param, click.Option):
        return [*param.opts, *param.secondary_opts]
    return [param.human_readable_name]


def test_every_command_and_option_is_documented() -> None:
    from functions.cli import cli

    text = read("cli.md")
    found = list(commands(cli))
    assert {"summarize", "sync", "show", "export", "list", "report", "doctor"} <= {
        name for name, _ in found
    }
    for name, command in found:
        body = section(text, f"`{name}`")
        absent = [n for p in command.params for n in documented_names(p) if n not in body]
        assert absent == [], f"docs/cli.md '## `{name}`' does not name {absent}"
    global_options = section(text, "Global options")
    absent = [n for p in cli.params for n in documented_names(p) if n not in global_options]
    assert absent == [], f"docs/cli.md 'Global options' does not name {absent}"


def test_cli_page_documents_no_command_that_does_not_exist() -> None:
    from functions.cli import cli

    headings = set(re.findall(r"^## `([^`]+)`$", read("cli.md"), re.M))
    assert headings == {name for name, _ in commands(cli)}


# ------------------------------------------------------------------------------------------------
# docs/firestore.md


def test_every_stored_field_is_documented() -> None:
    text = read("firestore.md")
    end = datetime(2026, 1, 15, 10, 45, tzinfo=UTC)
    meeting = MeetingRecord(
        meeting_id="x-1",
        source="webhook",
        meeting_code="abc-defg-hij",
        ended_at=end,
        started_at=end - timedelta(hours=1),
        external_id="session-1",
        window_start=end - timedelta(hours=2),
        window_end=end + timedelta(hours=1),
        deadline=end + timedelta(days=1),
    )
    participant = estimated_record(
        "a@school.com", meeting=meeting, revision=1, status=Status.SCHEDULED
    )
    session = Session(
        event_id="e",
        conference_id="c",
        endpoint_id="p",
        join_time=end,
        leave_time=end,
        duration_seconds=0,
    )
    revision = RevisionRecord(revision=1, at=end, reason="poll", changes=())
    fields = {
        *meeting.to_document(),
        *participant.document,
        *session_document(session, "full"),
        *revision.to_document(),
        EXPIRE_AT,
        STAGED_COMMIT,
        PREVIOUS_ATTENDED,
    }
    missing = sorted(name for name in fields if f"`{name}`" not in text)
    assert missing == [], f"stored fields not documented in docs/firestore.md: {missing}"


# ------------------------------------------------------------------------------------------------
# docs/api.md


def http_blocks(text: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Each ```http block: its first line, its headers, and its body's exact bytes."""
    blocks = []
    for block in re.findall(r"^```http\n(.*?)\n```$", text, re.M | re.S):
        head, _, body = block.partition("\n\n")
        first, *lines = head.splitlines()
        headers = dict(line.split(": ", 1) for line in lines)
        blocks.append((first, {k.lower(): v for k, v in headers.items()}, body.encode()))
    return blocks


def ingest_runtime(now: datetime) -> app.Runtime:
    env = {
        "GOOGLE_CLOUD_PROJECT": "acme",
        "TASKS_LOCATION": "here",
        "TASKS_QUEUE": "q",
        "COLLECT_URL": "http://127.0.0.1:9/",
        "TASKS_SERVICE_ACCOUNT": "tasks@acme.iam.gserviceaccount.com",
        "WEBHOOK_SECRET": SECRET,
        "ERASURE_KEY": "k" * 32,
    }
    settings = Settings.from_env(env, role="ingest")
    deps = Deps(
        store=MemoryStore(),
        queue=MemoryQueue(),
        reports=ScriptedReports(),
        clock=ManualClock(now),
        timing=Timing(),
        erasure_key=settings.erasure_key,
    )
    return app.Runtime(settings, deps, FakeIdTokens(settings.collect_url))


def as_request(method: str, path: str, headers: dict[str, str], body: bytes) -> app.HttpRequest:
    return app.HttpRequest(
        method=method,
        path=path,
        headers=headers,
        body=body,
        content_type=headers.get("content-type"),
        content_length=len(body),
    )


def test_the_signed_example_verifies_and_ingest_answers_as_documented() -> None:
    text = read("api.md")
    assert SECRET in text
    (request_line, headers, body), (status_line, _, answer) = http_blocks(text)[:2]
    now = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert (
        verify_webhook_signature(headers=headers, body=body, secrets=[SECRET], now=now)
        == (headers["webhook-id"])
    )
    assert parse_meeting_ended(body, now=now).meeting_code == "abc-defg-hij"
    method, path, _ = request_line.split()
    rt = ingest_runtime(now)
    status = int(status_line.split()[1])
    assert app.ingest(as_request(method, path, headers, body), rt) == (status, json.loads(answer))
    # The same delivery again: 200, the same meeting (as the page says).
    assert app.ingest(as_request(method, path, headers, body), rt) == (200, json.loads(answer))


def test_the_api_page_covers_every_function_and_route() -> None:
    text = read("api.md")
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    for item in spec["paths"].values():
        function, path = item["x-function"], item["x-path"]
        assert f"## `{function}`" in text, f"docs/api.md has no section for {function}"
        if function in ("ingest", "api"):
            for method in item.keys() & {"get", "post", "put", "patch", "delete"}:
                assert f"`{method.upper()} {path}`" in text, f"{method} {path} of {function}"
    collect = section(text, "`collect` — one poll, as Cloud Tasks calls it")
    assert all(f"`{reason}`" in collect for reason in TASK_REASONS)


# ------------------------------------------------------------------------------------------------
# docs/examples/send_webhook.py


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("send_webhook_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ingest_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """``ingest`` on 127.0.0.1 (in-memory storage): the requests it got, and its URL."""
    rt = ingest_runtime(datetime.now(UTC))
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.append((headers, body))
            status, answer = app.ingest(as_request("POST", self.path, headers, body), rt)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_example_sender_signs_what_ingest_verifies_and_parses(
    ingest_server: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    url, received = ingest_server
    example = load_example()
    now = datetime.now(UTC)
    event = example.meeting_ended(
        "abc-defg-hij", now.replace(microsecond=0), ["student@school.com"]
    )
    status, answer = example.send(url, SECRET, event)
    assert (status, answer["status"]) == (202, "scheduled"), answer
    headers, body = received[0]
    assert headers["webhook-id"] == verify_webhook_signature(
        headers=headers, body=body, secrets=[SECRET], now=now
    )
    declared = parse_meeting_ended(body, now=now)
    assert (declared.meeting_code, declared.expected_participants) == (
        "abc-defg-hij",
        ("student@school.com",),
    )
    # Another secret: ingest refuses it, and the example reports the refusal instead of raising.
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    assert example.send(url, other, event)[0] == 401


# ------------------------------------------------------------------------------------------------
# Links: inside the repository only, and they resolve


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    if page.suffix != ".md":
        return set()
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_and_stay_in_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "CONTRACT" not in text, f"{page.name} points to a document outside the repository"
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        outside = not resolved.exists() or ROOT not in resolved.parents
        if outside or (anchor and anchor not in anchors(resolved)):
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_example_is_python_the_docs_name() -> None:
    assert "examples/send_webhook.py" in read("api.md")
    assert "standardwebhooks" in EXAMPLE.read_text(encoding="utf-8")
