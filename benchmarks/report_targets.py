"""RESULTS.md sections for issue 15's figures: ingest's targets (round trips at the gRPC channel,
latency over one Firestore create, the one-create ceiling, the open loop at 50/s) and the history
benchmark. Filled from the benchmarks' JSON only; ``benchmarks.report`` calls them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    align = align or "-" + "r" * (len(header) - 1)
    marks = ["---" if a == "-" else "---:" for a in align.ljust(len(header), "r")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}" if value != int(value) or digits == 0 else f"{int(value):,}"


def load_note(result: dict[str, Any]) -> str:
    """What else kept the machine busy: its load averages as the benchmark started and ended."""
    load = result.get("load_average")
    if not load:
        return ""
    start, end = load["start"], load["end"]
    return (
        f"Machine load average (1/5/15 min) at the start {' / '.join(map(str, start))}, at the "
        f"end {' / '.join(map(str, end))} on {load.get('cores') or '?'} cores (a load above "
        "the cores means processes queued for them; the benchmark's own stand-ins count too)."
    )


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            t["figure"],
            "not measured"
            if t["value"] is None
            else f"{_n(t['value'], t.get('digits', 2))}{t['unit']}",
            t["target"],
            "**met**" if t["met"] else "**not met**",
        ]
        for t in targets
    ]
    return _table(["figure", "measured", "target", ""], rows, "-rr-")


def ingest_targets(i: dict[str, Any]) -> str:
    """The targets of the ingest benchmark, and the measurements behind them."""
    if "targets" not in i:
        return ""
    trips, latency, ceiling = i["round_trips"], i["latency_vs_create"], i["one_create_ceiling"]
    met = sum(t["met"] for t in i["targets"])
    trip_rows = [
        [
            label,
            _n(trips[kind]["firestore_calls"]),
            _n(trips[kind]["firestore_sequential"]),
            _n(trips[kind]["tasks_calls"]),
            _n(trips[kind]["sequential"]),
            _n(trips[kind]["latency_ms"], 1),
            ", ".join(str(s) for s in trips[kind]["statuses"]),
        ]
        for kind, label in (("new", "new meeting"), ("replay", "replay (same webhook-id)"))
    ]
    methods = trips["new"]["methods_first_sample"]
    replay_methods = trips["replay"]["methods_first_sample"]
    run_rows = [
        [index + 1, _n(r["webhook_p50_ms"], 1), _n(r["create_p50_ms"], 1), _n(r["ratio"], 2)]
        for index, r in enumerate(latency["runs"])
    ]
    ceiling_rows = [
        [p["phase"], _n(p["achieved_per_s"], 1), _n(p["p50_ms"], 1), _n(p["p99_ms"], 1)]
        for p in ceiling["phases"]
    ]
    return "\n".join(
        [
            "### ingest: targets (issue 15)",
            "",
            targets_table(i["targets"]),
            "",
            f"{met} of {len(i['targets'])} met. " + load_note(i),
            "",
            "**Round trips per webhook, counted at the gRPC channel.** A second instance of ingest "
            "runs as `python -m benchmarks.instrumented --target=ingest …`: the same code, with "
            "every channel of the Firestore and Cloud Tasks GAPIC transports wrapped in a counting "
            "client interceptor (`grpc.intercept_channel`); each counted webhook carries an "
            "`X-Bench-Request` key. A call lasts from its start to its outcome (unary) or to the "
            "last response its reader took (streams; a `get` reads one and leaves the stream). "
            "*In sequence* is the longest chain of calls each starting after the previous ended: "
            "calls that overlap count once. Median of "
            f"{trips['samples']} webhooks, after 3 uncounted ones; "
            f"{trips['unattributed_calls']} calls were made outside a counted request.",
            "",
            _table(
                [
                    "webhook",
                    "Firestore calls",
                    "Firestore in sequence",
                    "Cloud Tasks calls",
                    "all in sequence",
                    "latency ms (instrumented)",
                    "HTTP status",
                ],
                trip_rows,
                "-rrrrrr",
            ),
            "",
            "Calls of the first new meeting: "
            + (", ".join(f"{name} x{count}" for name, count in methods.items()) or "none")
            + "; of its replay: "
            + (", ".join(f"{name} x{count}" for name, count in replay_methods.items()) or "none")
            + ".",
            "",
            "**Webhook over one Firestore create.** In each run, "
            f"{latency['pairs_per_run']} single webhooks (new meetings, one at a time over a "
            "keep-alive connection: the HTTP hop included) alternate with "
            f"{latency['pairs_per_run']} single document creates made from the benchmark process "
            "with the stock client, on the same emulator; the ratio of the medians is taken "
            f"within each run, and the median of the runs reported: **{_n(latency['ratio'])}x** "
            f"(runs {_n(latency['ratio_min'])} to {_n(latency['ratio_max'])}), webhook "
            f"{_n(latency['webhook_p50_ms'], 1)} ms over create "
            f"{_n(latency['create_p50_ms'], 1)} ms.",
            "",
            _table(["run", "webhook p50 ms", "one create p50 ms", "ratio"], run_rows, "rrrr"),
            "",
            "**The one-create ceiling.** `benchmarks/one_create.py`, a trivial functions-framework "
            "function doing one Firestore create per request (one gunicorn worker, the same "
            f"threads), in closed loops of {ceiling['seconds_per_phase']:g} s: at most "
            f"**{_n(ceiling['max_throughput_per_s'], 1)} requests/s** "
            f"({ceiling['max_throughput_workers']}), against the webhook's "
            f"**{_n(i['max_throughput_per_s'], 1)}/s** on the same machine.",
            "",
            _table(["one-create phase", "achieved /s", "p50 ms", "p99 ms"], ceiling_rows),
        ]
    )


def history(h: dict[str, Any]) -> str:
    sizes = [str(s) for s in h["sizes"]]
    largest = h["sizes"][-1]
    rows = [
        [
            index + 1,
            _n(r["webhook_history_p50_ms"], 1),
            _n(r["webhook_fresh_p50_ms"], 1),
            _n(r["webhook_ratio"], 3),
            *[_n(r["poll_p50_ms"][s], 1) for s in sizes],
            _n(r["poll_ratio"], 3),
            _n(r["exponent"]["fit"], 3),
            _n(r["exponent"]["two_largest"], 3),
        ]
        for index, r in enumerate(h["runs"])
    ]
    rows.append(
        [
            "**median**",
            _n(h["webhook_history_p50_ms"], 1),
            _n(h["webhook_fresh_p50_ms"], 1),
            _n(h["webhook_ratio"], 3),
            *[_n(h["poll_p50_ms"][s], 1) for s in sizes],
            _n(h["poll_ratio"], 3),
            _n(h["exponent_fit"], 3),
            _n(h["exponent_two_largest"], 3),
        ]
    )
    met = sum(t["met"] for t in h["targets"])
    return "\n".join(
        [
            '## history: a personal room\'s past meetings (docs/rules.md "Bounded")',
            "",
            f"One meeting code with {largest:,} past meetings (one a day, one hour, never "
            "overlapping, long before the measured ones), and one with "
            + ", ".join(f"{s:,}" for s in h["sizes"][1:-1])
            + ", seeded straight into Firestore in the store's format (records built by "
            "`new_meeting_record`, completed as their chains left them, written with "
            "`FirestoreStore.create`; "
            + ", ".join(f"{int(k):,} in {v} s" for k, v in h["seeding_s"].items())
            + "). Size 0 is a fresh code (a new one for every measured item). Each measured "
            "item has its own time slot, 27 h from the next, the same for every size. Webhook: "
            "a signed new meeting of the room vs of a fresh code, alternating, one at a time "
            f"({h['webhooks_per_run']} each per run). Poll: a meeting of each code declared "
            f"in-process, {h['participants']} participants' events in the fake Reports API, one "
            "collect poll timed as a Cloud Tasks delivery runs it "
            f"({h['polls_per_run']} rounds per run, one poll per size each, sizes in rotating "
            "order). Within a run, each ratio is the median of the ratios of items made back to "
            "back (a webhook pair, a round of polls), and each exponent (slope of log time "
            "against log(history + 1): the fit over all sizes, and between the two largest) the "
            "median over the rounds; the times shown are the run's medians. Reported: the median "
            f"of {h['runs_count']} runs (of {h.get('runs_planned', h['runs_count'])} planned) "
            "after a warm-up run."
            + (
                " The sink gave up waiting for a task delivery once: later items may overlap one."
                if h.get("task_sink_gave_up")
                else ""
            ),
            "",
            _table(
                [
                    "run",
                    f"webhook ms ({largest:,} past)",
                    "webhook ms (fresh)",
                    "webhook ratio",
                    *[f"poll ms ({int(s):,} past)" for s in sizes],
                    "poll ratio",
                    "exponent (fit)",
                    "exponent (two largest)",
                ],
                rows,
                "r" * (7 + len(sizes)),
            ),
            "",
            targets_table(h["targets"]),
            "",
            f"{met} of {len(h['targets'])} met. " + load_note(h),
        ]
    )


def emulator_reads(e: dict[str, Any]) -> str:
    """The emulator's cost of a webhook's first read against its database's size."""
    rows = [
        [
            _n(r["meetings"], 0),
            _n(r["documents"], 0),
            *[_n(r["p50_ms"][name], 2) for name in e["calls"]],
            _n(r["first_read_over_create"], 2),
            _n(r.get("lookup_read_over_create", 0), 2),
        ]
        for r in e["rows"]
    ]
    return "\n".join(
        [
            "## emulator reads: a webhook's first read as the database grows",
            "",
            "`python -m benchmarks.emulator_reads`: on a fresh Firestore emulator, meetings stored "
            f"as a webhook stores them (each with its {e['roster']} participants' estimates, one "
            "request each, every meeting its own code); at each size, "
            f"{e['samples']} rounds of: one create, the batched get of the 2 meeting ids alone, "
            "each of the two queries alone, and the whole first read of a new meeting's webhook "
            "(`declaration_reads`: the get and both queries at once; "
            "`declaration_reads (lookups)`: "
            "the get with the lookup documents instead, as a webhook reads once the index is "
            "complete), for a code nobody used. "
            "Medians in ms.",
            "",
            _table(
                [
                    "meetings stored",
                    "documents",
                    *e["calls"],
                    "first read / one create",
                    "with lookups / one create",
                ],
                rows,
                "r" * (4 + len(e["calls"])),
            ),
            "",
            "Both queries find nothing, yet their cost grows with the documents the database "
            "holds; the get's and the create's do not. Google's Firestore serves them from an "
            "index (the automatic single-field ones, and the composite of "
            "infra/firestore.indexes.json), by the size of the answer.",
        ]
    )
