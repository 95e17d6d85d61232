"""The gate of ``make mutate`` on made-up mutmut output: what passes and what fails it."""

from __future__ import annotations

import pytest

from tests.mutation.check_survivors import (
    EQUIVALENTS_FILE,
    Equivalent,
    module_of,
    parse_equivalents,
    parse_results,
    problems,
    table,
)

RESULTS = parse_results(
    "\n".join(
        [
            "    functions.schedule.x_decide__mutmut_1: killed",
            "    functions.schedule.x_decide__mutmut_2: survived",
            "    functions.schedule.x_next_poll_at__mutmut_3: survived",
            "    functions.intervals.xǁSpanǁoverlaps__mutmut_4: timeout",
            "    functions.intervals.x_clipped__mutmut_5: no tests",
            "    functions.intervals.x_clipped__mutmut_6: not checked",
        ]
    )
)
EQUIVALENTS = {
    "functions.schedule.x_next_poll_at__mutmut_3": Equivalent(
        "functions.schedule.x_next_poll_at__mutmut_3", "exponent = min(polls_done, 41)", "why"
    )
}
DIFF = "--- a\n+++ b\n-    exponent = min(polls_done, 40)\n+    exponent = min(polls_done, 41)\n"


def show(name: str) -> str:
    return DIFF


def test_results_and_modules_are_read_from_mutmut_output() -> None:
    assert RESULTS["functions.intervals.x_clipped__mutmut_5"] == "no tests"
    assert module_of("functions.intervals.xǁSpanǁoverlaps__mutmut_4") == "functions.intervals"
    assert module_of("functions.schedule.x_decide__mutmut_2") == "functions.schedule"


def test_unlisted_survivors_and_unfinished_runs_fail_listed_equivalents_pass() -> None:
    found = problems(RESULTS, sorted(RESULTS), EQUIVALENTS, [], show)
    assert found == [
        "functions.intervals.x_clipped__mutmut_5: no tests, and not listed in EQUIVALENT.md",
        "functions.intervals.x_clipped__mutmut_6: not checked",
        "functions.schedule.x_decide__mutmut_2: survived, and not listed in EQUIVALENT.md",
    ]


def test_an_equivalent_whose_mutation_changed_or_that_was_killed_fails() -> None:
    renumbered = problems(RESULTS, sorted(RESULTS), EQUIVALENTS, [], lambda name: "+    x = 1\n")
    assert any("mutates something else" in p for p in renumbered)
    killed = {**RESULTS, "functions.schedule.x_next_poll_at__mutmut_3": "killed"}
    assert any(
        "it was killed" in p for p in problems(killed, sorted(killed), EQUIVALENTS, [], show)
    )
    gone = {k: v for k, v in RESULTS.items() if "next_poll_at" not in k}
    assert any("no such mutant" in p for p in problems(gone, sorted(gone), EQUIVALENTS, [], show))


def test_the_table_counts_each_module() -> None:
    rendered = table(RESULTS, sorted(RESULTS), EQUIVALENTS).splitlines()
    assert rendered[0].split() == [
        "module",
        "total",
        "killed",
        "survived",
        "equivalent",
        "timeout",
        "other",
    ]
    assert rendered[1].split() == ["functions.intervals", "3", "0", "1", "0", "1", "1"]
    assert rendered[2].split() == ["functions.schedule", "3", "1", "1", "1", "0", "0"]


def test_the_checked_in_equivalents_parse_and_each_has_a_reason() -> None:
    entries = parse_equivalents(EQUIVALENTS_FILE.read_text(encoding="utf-8"))
    for entry in entries.values():
        assert entry.mutated, entry.name
        assert len(entry.reason) > 20, entry.name


def test_an_entry_without_a_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="needs"):
        parse_equivalents("## functions.schedule.x_decide__mutmut_2\n- mutated: `x = 1`\n")
