from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.terraform import INFRA
from tests.infra.tools import Tools, ensure_tools

#: One text edit ``(old, new)``, or several applied in order, per file.
Edits = dict[str, tuple[str, str] | list[tuple[str, str]]]


@pytest.fixture(scope="session")
def tools() -> Tools:
    """The pinned checkov/check-jsonschema venv, built on first use (about a minute, once)."""
    return ensure_tools()


@pytest.fixture
def infra_copy(tmp_path: Path) -> Callable[[Edits], Path]:
    """A copy of infra/ with text edits applied: ``{file: (old, new)}`` or ``{file: [(old, new),
    ...]}``; each edit must apply (a new file starts empty)."""

    def make(edits: Edits) -> Path:
        target = tmp_path / "infra"
        shutil.copytree(INFRA, target, ignore=shutil.ignore_patterns("__pycache__", ".terraform*"))
        for name, change in edits.items():
            path = target / name
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            for old, new in change if isinstance(change, list) else [change]:
                assert old in text, f"mutation does not apply: {old!r} not in {name}"
                text = text.replace(old, new, 1)
            path.write_text(text, encoding="utf-8")
        return target

    return make
