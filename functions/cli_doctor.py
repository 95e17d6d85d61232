"""``python -m functions doctor [--json]``: check a deployment piece by piece and name the admin
step that fixes what failed (the checks and their messages: ``functions.doctor``).

One line per check on standard output, ``ok|FAIL|skip <name>: <message>[; fix: <step>]``, or
with ``--json`` one object ``{"checks": [{"name", "status", "message", "step"?}], "ok"}``. Exit 0
only when every check passed (skipped organizer checks with no organizers configured count as
passed), 1 otherwise; never a traceback.
"""

from __future__ import annotations

import json

import click

from functions.cli import reports_failures
from functions.config import Settings
from functions.doctor import Probes, render_lines, run_doctor


def _probes(settings: Settings) -> Probes:
    from functions.adapters.doctor_probes import GoogleProbes

    return GoogleProbes(settings)


def _doctor(as_json: bool) -> None:
    """Check each piece a deployment needs and name the failing step."""
    report = run_doctor(load_settings=lambda: Settings.from_env(role="cli"), probes=_probes)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for line in render_lines(report):
            click.echo(line)
    if not report.ok:
        raise SystemExit(1)


# Built by calls rather than decorators and annotated, so that mypy knows its type inside the
# import cycle with functions.cli (which adds it to the group).
doctor: click.Command = click.command("doctor")(
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(
        reports_failures("doctor")(_doctor)
    )
)
