"""docs/rules.md, the collection rules the code cites by heading: every heading the code relies on
exists, every citation of a heading in a tracked file names one that exists, and the page is the
project's own (it points to no document outside the repository and carries no version marks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "rules.md"
RULES_NAME = "docs/rules.md"

#: The headings the code cites; each must be a ``##`` or ``###`` heading with exactly this text.
REQUIRED = (
    "Which sessions belong to a meeting",
    "Polls never forget, and change a meeting all at once",
    "Atomic",
    "Bounded",
    "Schedule",
    "Status",
    "Expected participants, estimates and absences",
    "Declarations, sources and identity",
    "Identity",
    "Which times win",
    "Meet signals",
    "Preliminary attendance",
    "Calendar changes",
    "Backfill meetings",
    "never to none",
    "The daily run",
    "Privacy",
    "Erasure",
    "Documents",
)

#: What may separate the parts of a citation: spaces, and a line break into a ``#`` comment.
_GAP = r"(?:\s|#)"
#: A quoted heading, possibly wrapped over lines of a comment or docstring.
_QUOTE = r'"[^"]{1,120}"'
#: The page's name followed by one or more quoted headings: ``<page> "A"`` or ``<page> "A", "B"``.
CITATION = re.compile(
    re.escape(RULES_NAME) + rf"{_GAP}+({_QUOTE}(?:{_GAP}*(?:,|and){_GAP}*{_QUOTE})*)",
)
QUOTED = re.compile(r'"([^"]+)"')
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*#*\s*$")


def headings(text: str) -> list[tuple[int, str]]:
    """``(level, text)`` of every ATX heading outside fenced code blocks."""
    found = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2).strip()))
    return found


def rules_text() -> str:
    return RULES.read_text(encoding="utf-8")


def tracked_texts() -> list[tuple[str, str]]:
    """``(path, text)`` of every tracked file that exists and is UTF-8 text."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode("utf-8")
    texts = []
    for name in filter(None, listing.split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            texts.append((name, path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return texts


def citations(text: str) -> list[str]:
    """The heading texts a file cites as ``<page> "X"`` (several after one page name allowed), a
    heading wrapped over lines (of a ``#`` comment too) read as one line."""
    return [
        re.sub(r"\s*\n\s*(?:#\s*)?", " ", name)
        for group in CITATION.findall(text)
        for name in QUOTED.findall(group)
    ]


@pytest.mark.parametrize("heading", REQUIRED)
def test_every_heading_the_code_relies_on_exists(heading: str) -> None:
    levels = {level for level, text in headings(rules_text()) if text == heading}
    assert levels & {2, 3}, f'{RULES_NAME} has no "## {heading}" or "### {heading}" heading'


def test_headings_are_unique_so_their_anchors_are() -> None:
    names = [text for _, text in headings(rules_text())]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == [], f"{RULES_NAME} repeats headings {duplicates}"


def test_every_citation_names_an_existing_heading() -> None:
    existing = {text for _, text in headings(rules_text())}
    broken = [
        f"{name}: {cited!r}"
        for name, text in tracked_texts()
        for cited in citations(text)
        if cited not in existing
    ]
    assert broken == [], f"citations of {RULES_NAME} naming no heading: {broken}"


def test_citations_are_found_in_their_usual_forms() -> None:
    page = RULES_NAME
    assert citations(f'see {page} "Atomic".') == ["Atomic"]
    assert citations(f'({page} "Meet signals", "Preliminary\n    attendance")') == [
        "Meet signals",
        "Preliminary attendance",
    ]
    assert citations(f'{page} "Calendar changes", "The daily run"; api') == [
        "Calendar changes",
        "The daily run",
    ]
    assert citations(f'{page} "Bounded" and "Atomic"') == ["Bounded", "Atomic"]
    wrapped = f'# ({page}\n    # "Polls never forget, and\n    # change a meeting all at once")'
    assert citations(wrapped) == ["Polls never forget, and change a meeting all at once"]
    assert citations(f'{page} "Atomic" of "x"') == ["Atomic"]
    assert citations(f"{page} alone") == []


def test_the_page_is_the_projects_own() -> None:
    text = rules_text()
    assert "CONTRACT" not in text, f"{RULES_NAME} points to a document outside the repository"
    assert re.search(r"\bv2\b", text, re.IGNORECASE) is None, f"{RULES_NAME} carries version marks"
