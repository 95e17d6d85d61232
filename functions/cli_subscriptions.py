"""``python -m functions subscriptions [--ensure] [--json]`` (docs/cli.md): the organizers' Meet
event subscriptions and Calendar push channels, and making sure of them now.

The adapters are built here only when a command needs them (``operator_*``, which tests
replace); the rules are ``functions.subscriptions`` and ``functions.calendar_sync``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import click

from functions.config import Settings
from functions.errors import CommandFailed
from functions.ports import CalendarApi, CalendarState, Directory, WorkspaceEvents, WorkspaceState

__all__ = [
    "channel_rows",
    "operator_calendar",
    "operator_workspace",
    "operator_workspace_apis",
    "render_channels",
    "run",
]


def operator_workspace(settings: Settings) -> WorkspaceState:
    from functions.adapters.firestore_workspace import FirestoreWorkspaceState

    return FirestoreWorkspaceState.from_settings(settings)


def operator_workspace_apis(settings: Settings) -> tuple[WorkspaceEvents, Directory]:
    """The Workspace Events and Directory adapters, built only for ``subscriptions --ensure``."""
    from functions.adapters.workspace import GoogleDirectory, GoogleWorkspaceEvents

    return GoogleWorkspaceEvents.from_settings(settings), GoogleDirectory.from_settings(settings)


def operator_calendar(settings: Settings, *, api: bool) -> tuple[CalendarApi | None, CalendarState]:
    """The channels' state, and the Calendar adapter when ``api`` (``--ensure``)."""
    from functions.adapters.firestore_calendar import FirestoreCalendarState

    state = FirestoreCalendarState.from_settings(settings)
    if not api:
        return None, state
    from functions.adapters.calendar import GoogleCalendarApi

    return GoogleCalendarApi.from_settings(settings), state


def run(
    *,
    ensure: bool,
    as_json: bool,
    workspace: Callable[[Settings], WorkspaceState] = operator_workspace,
    workspace_apis: Callable[[Settings], tuple[WorkspaceEvents, Directory]] = (
        operator_workspace_apis
    ),
    calendar: Callable[..., tuple[CalendarApi | None, CalendarState]] = operator_calendar,
) -> None:
    from functions import subscriptions as subs

    now = partial(datetime.now, UTC)
    # Listing reads the stored state alone: the project is all it needs.
    settings = Settings.from_env(role="cli" if ensure else "reader")
    topic = subs.topic_for_ensure(settings) if ensure else None  # before any adapter is built
    state = workspace(settings)
    report = None
    channels_report = None
    calendar_api, calendar_state = calendar(settings, api=ensure)
    if topic is not None:
        events, directory = workspace_apis(settings)
        who = subs.expand_organizers(settings.organizers, settings.organizer_group, directory)
        click.echo(f"subscriptions: ensuring {len(who)} organizer(s)", err=True)
        report = subs.ensure_subscriptions(
            organizers=who, events=events, directory=directory, state=state, topic=topic, clock=now
        )
        click.echo(f"subscriptions: {report.summary()}", err=True)
        if settings.calendar_notifications_url and calendar_api is not None:
            channels_report = _ensure_channels(settings, calendar_api, calendar_state, who)
            click.echo(f"channels: {channels_report}", err=True)
    rows = subs.subscription_rows(state, now())
    channels = channel_rows(calendar_state, now())
    if as_json:
        payload = [{"kind": "meet", **r} for r in rows] + [
            {"kind": "calendar", **r} for r in channels
        ]
        text = json.dumps(payload, ensure_ascii=False) + "\n"
    else:
        text = subs.render_table(rows) + render_channels(channels)
    sys.stdout.write(text)
    sys.stdout.flush()
    if report is not None and report.problems:
        raise CommandFailed(f"{report.problems} organizer(s) have a problem (see the table)")


def _ensure_channels(
    settings: Settings, calendar_api: CalendarApi, calendar_state: CalendarState, who: Any
) -> str:
    from functions.app import build_runtime
    from functions.calendar_sync import ensure_channels

    if settings.erasure_key is None:
        raise CommandFailed("channels need ERASURE_KEY: their syncs declare meetings")
    deps = build_runtime(settings).deps
    from dataclasses import replace

    deps = replace(deps, calendar=calendar_api, calendars=calendar_state)
    counts = ensure_channels(
        deps,
        organizers=who,
        address=settings.calendar_notifications_url or "",
        lookback=timedelta(seconds=settings.backfill_lookback_s),
    ).counts()
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def channel_rows(state: CalendarState, now: datetime) -> list[dict[str, Any]]:
    """One row per open channel: calendar, channel, expires in (s), last notification, last
    sync, problem (the calendar's last sync problem)."""
    rows: list[dict[str, Any]] = []
    for channel in state.channels():
        sync = state.sync_state(channel.calendar_id)
        rows.append(
            {
                "calendar": channel.calendar_id,
                "channel": channel.channel_id,
                "expires_in": None
                if channel.expiration is None
                else int((channel.expiration - now).total_seconds()),
                "last_notification_at": _iso(channel.last_notification_at),
                "last_sync_at": _iso(sync.last_sync_at if sync else None),
                "problem": sync.problem if sync else None,
            }
        )
    return rows


def render_channels(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    from functions.subscriptions import human_duration

    header = ("Calendar", "Channel", "Expires in", "Last notification", "Last sync", "Problem")
    lines = [
        (
            r["calendar"],
            r["channel"],
            "-" if r["expires_in"] is None else human_duration(r["expires_in"]),
            r["last_notification_at"] or "-",
            r["last_sync_at"] or "-",
            r["problem"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=False)]
    return (
        "\n"
        + "\n".join(
            "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in (header, *lines)
        )
        + "\n"
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
