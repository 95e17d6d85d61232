"""Retention (docs/rules.md "Privacy"): meetings older than ``RETENTION_DAYS`` are deleted with
everything under them, and nothing older is created again — by a declaration, a manual sync or
a backfill range."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from functions.backfill import apply_retention, check_range, fan_out
from functions.errors import InvalidInput
from functions.retention import check_retained, expire_at, retention_cutoff
from tests.unit.test_use_cases import END, START, World

DAYS = 90


def retaining_world(days: int | None = DAYS) -> World:
    world = World(now=END + timedelta(days=DAYS))
    world.deps = replace(world.deps, retention_days=days)
    return world


def test_the_rule() -> None:
    assert expire_at(END, None) is None
    assert expire_at(END, DAYS) == END + timedelta(days=DAYS)
    assert retention_cutoff(END, None) is None
    assert retention_cutoff(END, DAYS) == END - timedelta(days=DAYS)
    check_retained(END, now=END + timedelta(days=DAYS), retention_days=DAYS, field="ended_at")
    with pytest.raises(InvalidInput) as caught:
        check_retained(
            END - timedelta(milliseconds=1),
            now=END + timedelta(days=DAYS),
            retention_days=DAYS,
            field="ended_at",
        )
    assert caught.value.field == "ended_at"


def test_a_declaration_older_than_the_retention_is_refused_and_creates_nothing() -> None:
    world = retaining_world()
    world.clock.now = END + timedelta(days=DAYS, seconds=1)
    with pytest.raises(InvalidInput, match="older than the retention of 90 days"):
        world.declare()
    assert world.store.meetings == {}
    assert world.queue.tasks == []
    world.clock.now = END + timedelta(days=DAYS)
    assert world.declare().meeting_id in world.store.meetings  # exactly at the cutoff: kept


def test_without_retention_old_declarations_are_taken() -> None:
    world = retaining_world(None)
    world.clock.now = END + timedelta(days=DAYS * 2)
    with pytest.raises(InvalidInput, match="180 days"):  # only Reports' own limit applies
        world.declare(started_at=START, ended_at=END - timedelta(days=100))
    world.clock.now = END + timedelta(days=DAYS, seconds=1)
    assert world.declare().meeting_id in world.store.meetings


def test_a_backfill_range_reaching_before_the_retention_is_refused() -> None:
    now = END + timedelta(days=DAYS)
    cutoff = now - timedelta(days=DAYS)
    check_range(cutoff, now, now, retention_days=DAYS)
    with pytest.raises(InvalidInput) as caught:
        check_range(cutoff - timedelta(seconds=1), now, now, retention_days=DAYS)
    assert caught.value.field == "since"
    world = retaining_world()
    with pytest.raises(InvalidInput):
        fan_out(world.deps, since=cutoff - timedelta(days=1), until=now)
    assert world.queue.slices == []


def test_the_daily_run_deletes_meetings_past_the_retention_and_nothing_else() -> None:
    world = retaining_world()
    world.clock.now = END
    world.class_activities()
    old = world.declare()
    while world.queue.tasks:
        world.run_next()
    recent = world.declare(external_id="class-2", ended_at=END + timedelta(days=2))
    assert world.store.participants(old.meeting_id)
    assert world.store.revision_docs[old.meeting_id]

    world.clock.now = END + timedelta(days=DAYS)
    assert apply_retention(world.deps, now=world.clock.now) == []  # exactly at the cutoff

    world.clock.now = END + timedelta(days=DAYS, seconds=1)
    report = fan_out(world.deps, since=world.clock.now - timedelta(days=2), until=world.clock.now)
    assert report.expired == [old.meeting_id]
    assert report.to_json()["expired"] == 1
    assert old.meeting_id not in world.store.meetings
    assert world.store.participants(old.meeting_id) == []
    assert old.meeting_id not in world.store.revision_docs
    assert recent.meeting_id in world.store.meetings

    world.deps = replace(world.deps, retention_days=None)
    world.clock.now = END + timedelta(days=1000)
    assert apply_retention(world.deps, now=world.clock.now) == []
    assert recent.meeting_id in world.store.meetings
