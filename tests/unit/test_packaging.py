"""pyproject.toml builds the wheel the README promises: ``functions`` and ``functions.adapters``
only, the ``meet-attendance`` console script, the version of ``functions.__version__`` and the
runtime pins of requirements.txt. The wheel is built from a copy of the tree in a temporary
directory, so no build/ or *.egg-info is ever left in the repository."""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

import functions

ROOT = Path(__file__).resolve().parents[2]
#: What the copy leaves out: caches, environments, generated and large local data.
SKIPPED = {".git", ".venv", ".local", "mutants", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIPPED |= {".hypothesis", "__pycache__", "build", "dist"}


def runtime_requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIPPED or n.endswith(".egg-info")}
    if Path(directory) == ROOT / "benchmarks":
        skipped.add("data")  # generated inputs, hundreds of MiB
    return skipped


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    before = sorted(p.name for p in ROOT.iterdir())
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=_ignore)
    out = tmp / "wheels"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    command += ["--no-build-isolation", "--quiet", "-w", str(out)]
    subprocess.run(command, check=True, cwd=tmp, env=env, timeout=300)
    built = sorted(out.glob("*.whl"))
    assert len(built) == 1, built
    assert sorted(p.name for p in ROOT.iterdir()) == before, "the build touched the repository"
    with zipfile.ZipFile(built[0]) as archive:
        yield archive


def dist_info(archive: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}")]
    return archive.read(path).decode()


def test_the_wheel_holds_the_functions_and_adapters_only(wheel: zipfile.ZipFile) -> None:
    names = [n for n in wheel.namelist() if ".dist-info/" not in n]
    tops = {n.split("/")[0] for n in names}
    assert tops == {"functions"}, f"the wheel holds more than functions/: {sorted(tops)}"
    assert "functions/__init__.py" in names
    assert "functions/cli.py" in names
    assert "functions/adapters/firestore_store.py" in names
    packaged = {n for n in names if n.endswith(".py")}
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in [*(ROOT / "functions").glob("*.py"), *(ROOT / "functions/adapters").glob("*.py")]
    }
    assert packaged == expected
    assert not any(n.startswith(("tests/", "local/", "benchmarks/")) for n in wheel.namelist())
    assert "main.py" not in names


def test_the_console_script_is_declared(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(dist_info(wheel, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"meet-attendance": "functions.cli:main"}


def test_the_wheel_has_the_packages_version_and_runtime_pins(wheel: zipfile.ZipFile) -> None:
    metadata = Parser().parsestr(dist_info(wheel, "METADATA"))
    assert metadata["Name"] == "meet-attendance"
    assert metadata["Version"] == functions.__version__
    assert sorted(metadata.get_all("Requires-Dist") or []) == sorted(runtime_requirements())


def test_pyproject_dependencies_are_requirements_txt() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert sorted(project["dependencies"]) == sorted(runtime_requirements())
    assert project["scripts"] == {"meet-attendance": "functions.cli:main"}


def test_standardwebhooks_is_a_development_dependency_only() -> None:
    assert not any(r.startswith("standardwebhooks") for r in runtime_requirements())
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("standardwebhooks==") for line in dev)
    importers = []
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            if any(m.split(".")[0] == "standardwebhooks" for m in modules):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == [], "functions/ deploys without standardwebhooks; do not import it"


def test_build_outputs_are_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert {"build/", "dist/", "*.egg-info/"} <= set(ignored)
