"""The HTML report: the page (``functions.report_page``), ``report --html`` and
``GET /meetings/{id}/report`` (the handler, and main.py's HTML answer)."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import functions_framework
import pytest
from click.testing import CliRunner

from functions import app, cli
from functions.report_page import (
    CONTENT_SECURITY_POLICY,
    HtmlAnswer,
    ReportData,
    read_report,
    render_report,
)
from functions.views import sorted_participants
from tests.fakes import FakeIdTokens, MemoryStore
from tests.unit.test_app import API_URL, OPERATOR, SETTINGS, operator
from tests.unit.test_timeline import Known, known_meeting

MAIN = Path(__file__).resolve().parents[2] / "main.py"
HOSTILE = ('"><img src=x onerror=alert(1)>', "<script>alert('bob')</script>")
#: Elements whose text a browser shows apart from the text before them.
_BLOCKS = frozenset({"p", "div", "tr", "td", "th", "li", "br", "dt", "dd", "ul", "table"})


class Page(HTMLParser):
    """What a browser would build, enough to count: elements by tag and class, attributes,
    the text of each section."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.sections: dict[str, str] = {}
        self._section: list[str] | None = None
        self._heading = False
        self._title = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "h2":
            self._heading, self._title = True, ""
            self._section = []
        elif self._section is not None and tag in _BLOCKS:
            self._section.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._heading = False
        if tag == "section" and self._section is not None:
            self.sections[self._title] = " ".join("".join(self._section).split())
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._heading:
            self._title += data
        elif self._section is not None:
            self._section.append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if name in a.get("class", "").split()]


def stored_sessions(known: Known) -> int:
    return sum(len(d.get("sessions") or ()) for d in known.store.participants(known.meeting))


def page_of(known: Known, **options: Any) -> str:
    return render_report(read_report(known.store, known.meeting), **options)


# ------------------------------------------------------------------------------------------------
# The page


def test_one_session_bar_per_stored_session() -> None:
    known = known_meeting()
    bars = Page(page_of(known)).with_class("session-bar")
    assert len(bars) == stored_sessions(known) == 6
    for bar in bars:
        found = re.fullmatch(r"left:([\d.]+)%;width:([\d.]+)%", bar["style"])
        assert found is not None
        left, width = map(float, found.groups())
        assert left >= 0
        assert left + width <= 100.0001
    # The teacher's session began before the boundary (09:40, credited from 09:52:30 of a
    # 09:40 to 10:50 session): that part, and only that one, is drawn as not credited.
    (part,) = Page(page_of(known)).with_class("uncredited")
    assert part["style"] == f"left:0.0000%;width:{12.5 / 70 * 100:.4f}%"


def test_hostile_names_are_text_never_markup() -> None:
    known = known_meeting(hostile=True)
    page = page_of(known)
    parsed = Page(page)
    # Nothing of the names became an element or an attribute.
    assert {tag for tag, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "p", "dl", "dt", "dd",
        "span", "section", "h2", "div", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
        "br", "small",
    }  # fmt: skip
    assert not any("onerror" in attrs for _, attrs in parsed.tags)
    for name in HOSTILE:
        assert name not in page
        # ... and each is shown, as text, in the participant table.
        assert name in parsed.sections["Participants"]
    assert "&lt;script&gt;alert(&#x27;bob&#x27;)&lt;/script&gt;" in page
    # In attributes (a bar's row label), quotes are escaped too: the attribute stays whole.
    titles = [a.get("title", "") for _, a in parsed.tags if "tl-who" in a.get("class", "")]
    assert any(t.startswith(HOSTILE[0]) for t in titles)


def test_the_page_fetches_nothing() -> None:
    page = page_of(known_meeting())
    parsed = Page(page)
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in parsed.tags if {"src", "href", "srcset"} & a.keys()]
    assert "url(" not in page
    assert "@import" not in page
    policy = [a["content"] for t, a in parsed.tags if a.get("http-equiv")]
    assert policy == [CONTENT_SECURITY_POLICY]
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY


def test_the_header_has_status_revision_and_totals() -> None:
    known = known_meeting()
    meeting = known.store.get(known.meeting)
    assert meeting is not None
    text = " ".join(page_of(known).split())
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", text))
    assert re.sub("<[^>]+>", "", facts["Status"]) == "complete"
    assert facts["Revision"] == str(meeting.revision)
    assert facts["Totals"].startswith(f"{meeting.participant_count} participant(s) with sessions")
    assert "6 session(s)" in facts["Totals"]
    # The credited span: after the boundary with the earlier class (09:52:30) to the window end.
    assert facts["Credited span"] == "2026-11-20 09:52:30 → 2026-11-20 11:45:00"


def test_times_are_in_the_zone_asked_for() -> None:
    known = known_meeting()
    utc = page_of(known)
    paris = page_of(known, zone=ZoneInfo("Europe/Paris"))
    assert "Times in UTC." in utc
    assert "Times in Europe/Paris." in paris
    assert "2026-11-20 09:52:30 → 2026-11-20 11:45:00" in utc
    assert "2026-11-20 10:52:30 → 2026-11-20 12:45:00" in paris  # UTC+1 in November
    # The same bars, wherever the reader is.
    assert [a["style"] for a in Page(utc).with_class("session-bar")] == [
        a["style"] for a in Page(paris).with_class("session-bar")
    ]


def test_absences_name_the_expected_who_did_not_come() -> None:
    known = known_meeting()
    sections = Page(page_of(known)).sections
    assert "carol@school.example" in sections["Absences"]
    assert "expected, no session in this meeting" in sections["Absences"]
    for came in ("teacher@", "alice@", "bob@"):
        assert came not in sections["Absences"]


def test_absences_of_a_meeting_still_estimated() -> None:
    known = known_meeting()
    data = read_report(known.store, known.meeting)
    waiting = [
        {**d, "estimated": True, "sessions": [], "absent": False}
        if d["participant_key"] == "alice@school.example"
        else d
        for d in data.participants
    ]
    sections = Page(render_report(replace(data, participants=waiting))).sections
    assert "alice@school.example" in sections["Absences"]
    assert "no attendance data yet" in sections["Absences"]


def test_the_revision_history_says_who_gained_when_and_why() -> None:
    known = known_meeting()
    revisions = known.store.revisions(known.meeting)
    history = Page(page_of(known)).sections["Revision history"]
    assert [r["reason"] for r in revisions] == ["manual", "poll", "poll"]
    assert "manual an operator's sync" in history
    # The operator's sync replaced the estimates: Bob's zero-length session is worth nothing,
    # Dan, not expected, is recorded; the next poll added Bob's five minutes; the last one
    # found Carol absent.
    assert "Bob (bob@school.example): 0:45:00 → 0:00:00 (\N{MINUS SIGN}0:45:00)" in history
    assert "Dan (dan@school.example): recorded: 0:05:00" in history
    assert "Bob (bob@school.example): 0:00:00 → 0:05:00 (+0:05:00)" in history
    assert "carol@school.example: 0:45:00 → 0:00:00 (\N{MINUS SIGN}0:45:00)" in history
    assert "2026-11-20 14:00:00" in history  # when: the clock of the polls
    # Newest first.
    numbers = [int(n) for n in re.findall(r"<tr><td class=\"num\">(\d+)</td>", page_of(known))]
    assert numbers == sorted((int(r["revision"]) for r in revisions), reverse=True)


def test_a_loss_is_shown_as_one() -> None:
    known = known_meeting()
    data = read_report(known.store, known.meeting)
    lost = {
        "revision": 9,
        "at": data.meeting.ended_at,
        "reason": "neighbour",
        "changes": [{"participant_key": "teacher@school.example", "before": 4200, "after": 3000}],
    }
    history = Page(render_report(replace(data, revisions=[lost]))).sections["Revision history"]
    assert "1:10:00 → 0:50:00 (\N{MINUS SIGN}0:20:00)" in history
    assert "neighbouring meeting" in history


def test_render_is_pure() -> None:
    known = known_meeting()
    data = read_report(known.store, known.meeting)
    assert render_report(data) == render_report(data)
    empty = ReportData(meeting=data.meeting, participants=[], revisions=[])
    parsed = Page(render_report(empty))
    assert parsed.with_class("session-bar") == []
    assert "No revision yet" in parsed.sections["Revision history"]


# ------------------------------------------------------------------------------------------------
# report --html


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> Known:
    found = known_meeting()
    monkeypatch.setattr(cli, "operator_store", lambda: found.store)
    monkeypatch.setattr("functions.cli_report.operator_store", lambda: found.store)
    return found


def test_report_writes_the_page(known: Known, tmp_path: Path) -> None:
    target = tmp_path / "class.html"
    result = CliRunner().invoke(
        cli.cli, ["report", known.meeting, "--html", str(target), "--tz", "Europe/Paris"]
    )
    assert result.exit_code == 0, result.output
    expected = render_report(read_report(known.store, known.meeting), zone=ZoneInfo("Europe/Paris"))
    assert target.read_text(encoding="utf-8") == expected
    assert result.stderr == (
        f"report: wrote {target} (5 participant(s), 6 session(s), "
        f"{len(known.store.revisions(known.meeting))} revision(s))\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["class.html"]  # no temporary file left


def test_report_to_standard_output(known: Known) -> None:
    result = CliRunner().invoke(cli.cli, ["report", known.meeting, "--html", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_report(read_report(known.store, known.meeting))


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--tz", "Mars/Olympus"], 2, "report: --tz must be an IANA time zone"),
        (["--tz", ""], 2, "report: --tz must be an IANA time zone"),
    ],
)
def test_report_refuses_a_bad_zone(
    known: Known, tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    target = tmp_path / "x.html"
    result = CliRunner().invoke(cli.cli, ["report", known.meeting, "--html", str(target), *args])
    assert result.exit_code == status
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert not target.exists()


def test_report_refuses_a_bad_meeting_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.cli, ["report", "a/b", "--html", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert result.stderr.startswith("report: MEETING_ID must be")
    assert result.stderr.count("\n") == 1


def test_report_of_an_unknown_meeting(known: Known, tmp_path: Path) -> None:
    target = tmp_path / "x.html"
    result = CliRunner().invoke(cli.cli, ["report", "m-nope", "--html", str(target)])
    assert (result.exit_code, result.stderr) == (1, "report: no meeting m-nope\n")
    assert not target.exists()


def test_report_into_a_missing_directory(known: Known, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.html"
    result = CliRunner().invoke(cli.cli, ["report", known.meeting, "--html", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"report: cannot write {target}: ")
    assert result.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# GET /meetings/{id}/report


def runtime_of(found: Known) -> app.Runtime:
    return app.Runtime(SETTINGS, found.deps, FakeIdTokens(SETTINGS.collect_url, API_URL))


def test_the_api_serves_the_page() -> None:
    found = known_meeting()
    status, body = app.api(operator("GET", f"/meetings/{found.meeting}/report"), runtime_of(found))
    assert status == 200
    assert isinstance(body, HtmlAnswer)
    assert body == {}  # nothing for a JSON encoder; the page is the answer
    assert body.html == render_report(read_report(found.store, found.meeting))
    assert len(Page(body.html).with_class("session-bar")) == stored_sessions(found)


@pytest.mark.parametrize(
    ("method", "path", "email", "status", "code"),
    [
        ("GET", "/meetings/{id}/report", None, 401, "unauthorized"),
        ("GET", "/meetings/{id}/report", "kid@school.example", 403, "forbidden"),
        ("GET", "/meetings/m-nope/report", OPERATOR, 404, "not_found"),
        ("GET", "/meetings/a.b/report", OPERATOR, 404, "not_found"),
        ("POST", "/meetings/{id}/report", OPERATOR, 405, "method_not_allowed"),
        ("GET", "/meetings/{id}/report/x", OPERATOR, 404, "not_found"),
    ],
)
def test_the_api_refuses_as_the_other_routes(
    method: str, path: str, email: str | None, status: int, code: str
) -> None:
    found = known_meeting()
    request = operator(method, path.format(id=found.meeting), email=email)
    got, body = app.api(request, runtime_of(found))
    assert (got, body["error"]["code"]) == (status, code)
    assert not isinstance(body, HtmlAnswer)


def test_an_unknown_meeting_is_checked_after_the_token() -> None:
    found = known_meeting()
    got, body = app.api(operator("GET", "/meetings/m-nope/report", email=None), runtime_of(found))
    assert (got, body["error"]["code"]) == (401, "unauthorized")


def test_main_sends_the_page_as_html(monkeypatch: pytest.MonkeyPatch) -> None:
    found = known_meeting()
    current = runtime_of(found)
    monkeypatch.setattr(app, "runtime", lambda role: current)
    client = functions_framework.create_app(target="api", source=str(MAIN)).test_client()  # type: ignore[no-untyped-call]
    bearer = {"Authorization": f"Bearer {OPERATOR}"}
    answer = client.get(f"/meetings/{found.meeting}/report", headers=bearer)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.get_data(as_text=True) == render_report(read_report(found.store, found.meeting))
    missing = client.get("/meetings/m-nope/report", headers=bearer)
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "application/json")
    assert missing.get_json()["error"]["code"] == "not_found"


def test_the_store_read_is_the_meetings_revisions_in_order() -> None:
    found = known_meeting()
    store: MemoryStore = found.store
    numbers = [r["revision"] for r in store.revisions(found.meeting)]
    assert numbers == sorted(numbers)
    assert numbers == sorted(store.revision_docs[found.meeting])
    assert store.revisions("m-nope") == []
    documents = sorted_participants(store, store.get(found.meeting))  # type: ignore[arg-type]
    assert read_report(store, found.meeting).participants == documents
