"""cloudbuild.yaml: valid for Cloud Build, deploys every entry point, flags gcloud accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.infra.terraform import ENTRY_POINTS, REPO, main_entry_points
from tests.infra.tools import Tools, load_yaml, validate_cloudbuild

CLOUDBUILD = REPO / "cloudbuild.yaml"
#: Substitutions Cloud Build itself provides.
BUILT_IN = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "BRANCH_NAME",
    "TAG_NAME",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}


@pytest.fixture(scope="module")
def build(tools: Tools) -> dict[str, Any]:
    document = load_yaml(tools, CLOUDBUILD)
    assert isinstance(document, dict)
    return document


def _steps(build: dict[str, Any]) -> list[dict[str, Any]]:
    steps = build["steps"]
    assert isinstance(steps, list)
    return steps


def _deploys(build: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _steps(build) if s.get("args", [])[:2] == ["functions", "deploy"]]


def test_schema(tools: Tools) -> None:
    result = validate_cloudbuild(tools, CLOUDBUILD)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_catches_a_broken_build(tools: Tools, tmp_path: Path) -> None:
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(CLOUDBUILD.read_text("utf-8").replace("waitFor: [install]", "waitFor: 3", 1))
    assert validate_cloudbuild(tools, broken).returncode != 0


def test_steps_are_named_and_ordered(build: dict[str, Any]) -> None:
    ids = [step.get("id") for step in _steps(build)]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    assert {"install", "lint", "typecheck", "test"} <= set(ids)
    for step in _deploys(build):
        assert "test" in step["waitFor"], f"{step['id']} must wait for the tests"
        assert step["entrypoint"] == "gcloud"


def test_every_entry_point_is_deployed_from_main(build: dict[str, Any]) -> None:
    defined = main_entry_points()
    deployed = []
    for step in _deploys(build):
        args = step["args"]
        entry = next(a.split("=", 1)[1] for a in args if a.startswith("--entry-point="))
        assert entry in defined, f"{step['id']}: {entry} is not a function in main.py"
        assert {"--gen2", "--runtime=python313", "--source=."} <= set(args)
        assert "--trigger-http" in args
        deployed.append(entry)
    assert sorted(deployed) == sorted(ENTRY_POINTS)
    public = [s["id"] for s in _deploys(build) if "--allow-unauthenticated" in s["args"]]
    assert public == ["deploy-ingest"]


def test_substitutions_are_defined_and_shell_variables_escaped(build: dict[str, Any]) -> None:
    text = CLOUDBUILD.read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    defined = set(build.get("substitutions", {}))
    # $$ is an escaped dollar; what remains after removing it is a Cloud Build substitution.
    for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", body.replace("$$", "")):
        assert name in defined or name in BUILT_IN, f"${name} is neither a substitution nor escaped"
    used = set(re.findall(r"\$\{(_[A-Z0-9_]+)\}", body))
    assert defined - used == set(), "unused substitutions make Cloud Build refuse the build"


def _gcloud_parse(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run gcloud with the step's arguments where it can only fail after parsing them."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not on PATH")
    values = {"_REGION": "europe-west1", "_NAME_PREFIX": "attendance", "BUILD_ID": "b-1"}
    values["_RUNTIME_SA"] = "attendance-run@offline-check.iam.gserviceaccount.com"
    concrete = [re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), "x"), a) for a in args]
    with tempfile.TemporaryDirectory() as config:
        env = {
            **os.environ,
            "CLOUDSDK_CONFIG": config,  # no account, no project: nothing to act with
            "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_GCE_CHECK": "True",
        }
        return subprocess.run(
            [gcloud, *concrete, "--project=offline-check-000000"],
            capture_output=True,
            text=True,
            env=env,
            cwd=config,
            timeout=120,
            check=False,
        )


def _accepted(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode not in (0, 2) and "unrecognized arguments" not in result.stderr


def test_gcloud_accepts_every_deploy_command(build: dict[str, Any]) -> None:
    steps = _deploys(build)
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        results = list(pool.map(lambda s: _gcloud_parse(s["args"]), steps))
    for step, result in zip(steps, results, strict=True):
        assert _accepted(result), f"{step['id']}: exit {result.returncode}: {result.stderr[-800:]}"


def test_gcloud_check_catches_a_bad_flag(build: dict[str, Any]) -> None:
    args = [*_deploys(build)[0]["args"], "--entry-pointt=ingest"]
    result = _gcloud_parse(args)
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
