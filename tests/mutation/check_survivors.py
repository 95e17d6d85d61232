"""The gate of ``make mutate``: every mutant mutmut left alive is listed as equivalent, with why.

Run from anywhere after ``mutmut run`` (the Makefile does both)::

    python -m tests.mutation.check_survivors [PATTERN...]

PATTERNs (``fnmatch``, as ``mutmut run`` takes them, e.g. ``functions.schedule.*``) restrict the
check to the mutants they name; without one every mutant mutmut generated is checked. It prints a
table per module (total, killed, survived, equivalent, timeouts, anything else) and then every
problem, and exits 1 when there is one:

- a mutant that survived (or that no test ran) and is not in ``EQUIVALENT.md``;
- a mutant that was never run, or whose run mutmut could not classify (suspicious, segfault,
  interrupted);
- an ``EQUIVALENT.md`` entry whose mutant was killed, or whose mutation is no longer the one
  recorded (mutmut numbers mutants by their place in a function, so an edit of the function
  renumbers them: the recorded line is checked against ``mutmut show``).

A timeout counts as a kill (the tests did not pass); it is shown in its own column.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
EQUIVALENTS_FILE: Final = Path(__file__).with_name("EQUIVALENT.md")

KILLED: Final = frozenset({"killed", "caught by type check"})
TIMEOUT: Final = "timeout"
#: Alive: a test suite that passed with the mutant in place (or no test that runs it).
ALIVE: Final = frozenset({"survived", "no tests"})
#: Deliberately not mutated (``# pragma: no mutate``).
SKIPPED: Final = "skipped"

_RESULT_LINE: Final = re.compile(r"^\s*(?P<name>\S+): (?P<status>[a-z ]+)$")
_HEADING: Final = re.compile(r"^## (?P<name>\S+)\s*$")
_MUTATED: Final = re.compile(r"^- mutated: `(?P<line>.+)`\s*$")
_REASON: Final = re.compile(r"^- reason: (?P<reason>\S.*)$")


@dataclass(frozen=True, slots=True)
class Equivalent:
    """One entry of EQUIVALENT.md: the mutant, its mutated line, and why no test can kill it."""

    name: str
    mutated: str
    reason: str


def parse_results(text: str) -> dict[str, str]:
    """``mutmut results --all True`` → {mutant name: status}."""
    results: dict[str, str] = {}
    for line in text.splitlines():
        match = _RESULT_LINE.match(line)
        if match is not None:
            results[match["name"]] = match["status"]
    return results


def parse_equivalents(text: str) -> dict[str, Equivalent]:
    """The entries of EQUIVALENT.md; ValueError naming an entry without its mutated line or
    reason, or listed twice."""
    entries: dict[str, Equivalent] = {}
    name: str | None = None
    mutated: str | None = None
    reason: str | None = None

    def close() -> None:
        if name is None:
            return
        if mutated is None or reason is None:
            raise ValueError(f"{name}: an entry needs '- mutated: `...`' and '- reason: ...'")
        if name in entries:
            raise ValueError(f"{name} is listed twice")
        entries[name] = Equivalent(name, mutated, reason)

    for line in text.splitlines():
        if (heading := _HEADING.match(line)) is not None:
            close()
            name, mutated, reason = heading["name"], None, None
        elif name is not None and (line_match := _MUTATED.match(line)) is not None:
            mutated = line_match["line"]
        elif name is not None and (reason_match := _REASON.match(line)) is not None:
            reason = reason_match["reason"]
    close()
    return entries


def module_of(mutant: str) -> str:
    """``functions.schedule.x_decide__mutmut_3`` → ``functions.schedule`` (methods: ``xǁ``)."""
    parts = mutant.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].startswith(("x_", "xǁ")):
            return ".".join(parts[:index])
    return mutant.rpartition(".")[0]


def selected(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return sorted(names)
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def mutated_lines(diff: str) -> list[str]:
    """The added lines of a ``mutmut show`` diff, stripped."""
    return [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def table(
    results: Mapping[str, str], names: Sequence[str], equivalents: Mapping[str, object]
) -> str:
    columns = ("total", "killed", "survived", "equivalent", "timeout", "other")
    counts: dict[str, Counter[str]] = {}
    for name in names:
        status = results[name]
        row = counts.setdefault(module_of(name), Counter())
        row["total"] += 1
        if status in KILLED:
            row["killed"] += 1
        elif status == TIMEOUT:
            row["timeout"] += 1
        elif status in ALIVE:
            row["equivalent" if name in equivalents else "survived"] += 1
        else:
            row["other"] += 1
    width = max([len("module"), *(len(m) for m in counts)])
    lines = [f"{'module':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for module in sorted(counts):
        row = counts[module]
        lines.append(f"{module:<{width}}  " + "  ".join(f"{row[c]:>10}" for c in columns))
    return "\n".join(lines)


def problems(
    results: Mapping[str, str],
    names: Sequence[str],
    equivalents: Mapping[str, Equivalent],
    patterns: Sequence[str],
    show: Callable[[str], str],
) -> list[str]:
    """Everything that makes the gate fail (see the module docstring)."""
    found: list[str] = []
    for name in names:
        status = results[name]
        entry = equivalents.get(name)
        if status in ALIVE:
            if entry is None:
                found.append(f"{name}: {status}, and not listed in {EQUIVALENTS_FILE.name}")
            elif entry.mutated.strip() not in mutated_lines(show(name)):
                found.append(
                    f"{name}: listed as equivalent for `{entry.mutated}`, but mutmut now mutates "
                    "something else (renumbered?): check it again"
                )
        elif status in KILLED or status == TIMEOUT:
            if entry is not None:
                found.append(f"{name}: listed as equivalent, but it was {status}")
        elif status != SKIPPED:
            found.append(f"{name}: {status}")
    for name in selected(equivalents, patterns):
        if name not in results:
            found.append(f"{name}: listed as equivalent, but mutmut has no such mutant")
    return found


def _mutmut(*arguments: str) -> str:
    executable = Path(sys.executable).with_name("mutmut")
    completed = subprocess.run(
        [str(executable), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def main(argv: Sequence[str]) -> int:
    patterns = list(argv)
    results = parse_results(_mutmut("results", "--all", "True"))
    if not results:
        print("no mutmut results: run `make mutate` (or `mutmut run`) first", file=sys.stderr)
        return 1
    equivalents = parse_equivalents(EQUIVALENTS_FILE.read_text(encoding="utf-8"))
    names = selected(results, patterns)
    if not names:
        print(f"no mutant matches {' '.join(patterns)}", file=sys.stderr)
        return 1
    print(table(results, names, equivalents))
    found = problems(results, names, equivalents, patterns, lambda n: _mutmut("show", n))
    listed = [n for n in names if n in equivalents and results[n] in ALIVE]
    if listed:
        print(f"\n{len(listed)} equivalent mutant(s), see {EQUIVALENTS_FILE.relative_to(ROOT)}")
    if found:
        print(f"\n{len(found)} problem(s):")
        for problem in found:
            print(f"  {problem}")
        return 1
    print("\nno surviving mutant but the listed equivalents")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
