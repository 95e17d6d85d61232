"""cloudbuild.yaml: valid for Cloud Build, runs as the build account, deploys every entry point as
its own account, changes code only, with flags gcloud accepts."""

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

from tests.infra.terraform import ENTRY_POINTS, REPO, load_infra, main_entry_points, resource_name
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
ACCOUNT_EMAIL = "${{_NAME_PREFIX}}-{name}@${{PROJECT_ID}}.iam.gserviceaccount.com"
BUILD_ACCOUNT = "projects/${PROJECT_ID}/serviceAccounts/" + ACCOUNT_EMAIL.format(name="build")
#: Flags that would change what Terraform owns: settings, secrets, invokers, identity, scaling.
TERRAFORM_OWNS = (
    "--allow-unauthenticated",
    "--no-allow-unauthenticated",
    "--set-env-vars",
    "--update-env-vars",
    "--remove-env-vars",
    "--clear-env-vars",
    "--env-vars-file",
    "--set-secrets",
    "--update-secrets",
    "--remove-secrets",
    "--clear-secrets",
    "--ingress-settings",
    "--max-instances",
    "--min-instances",
    "--clear-build-service-account",
)


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


def _flag(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return values[0] if len(values) == 1 else None


def identity_problems(build: dict[str, Any]) -> list[str]:
    """The build runs as the build account (Cloud Logging logs, as a user-specified account needs)
    and deploys each function as its own account, built by the build account, changing code only."""
    problems = []
    if build.get("serviceAccount") != BUILD_ACCOUNT:
        problems.append(f"serviceAccount is {build.get('serviceAccount')!r}, not {BUILD_ACCOUNT!r}")
    options = build.get("options", {})
    if options.get("logging") not in ("CLOUD_LOGGING_ONLY", "GCS_ONLY") and not build.get(
        "logsBucket"
    ):
        problems.append("a user-specified build account needs options.logging or logsBucket")
    for step in _deploys(build):
        args = step["args"]
        entry = _flag(args, "--entry-point")
        name = resource_name(str(entry))  # meet_events is deployed as NAME-meet-events
        if args[2] != f"${{_NAME_PREFIX}}-{name}":
            problems.append(f"{step['id']} deploys {args[2]}, not the {entry} function")
        if _flag(args, "--service-account") != ACCOUNT_EMAIL.format(name=name):
            problems.append(f"{step['id']} does not run {entry} as its own account")
        if _flag(args, "--build-service-account") != BUILD_ACCOUNT:
            problems.append(f"{step['id']} is not built by the build account")
        problems += [
            f"{step['id']} passes {flag}: Terraform owns it"
            for flag in TERRAFORM_OWNS
            for arg in args
            if arg == flag or arg.startswith(f"{flag}=")
        ]
    return problems


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
        entry = _flag(args, "--entry-point")
        assert entry in defined, f"{step['id']}: {entry} is not a function in main.py"
        assert {"--gen2", "--runtime=python313", "--source=."} <= set(args)
        assert "--trigger-http" in args
        deployed.append(entry)
    assert sorted(deployed) == sorted(ENTRY_POINTS)


def test_identities(build: dict[str, Any]) -> None:
    assert identity_problems(build) == []


def test_identities_match_terraform() -> None:
    # The emails cloudbuild.yaml names are the accounts infra/iam.tf creates.
    accounts = load_infra().of_type("google_service_account")
    for name in (*ENTRY_POINTS, "build"):
        assert accounts[name]["account_id"] == f"${{var.name_prefix}}-{resource_name(name)}"


IDENTITY_MUTATIONS = {
    "default build account": ("serviceAccount: projects/", "# serviceAccount: projects/"),
    "legacy logs bucket": ("logging: CLOUD_LOGGING_ONLY", "logging: LEGACY"),
    "collect runs as ingest": (
        "--service-account=${_NAME_PREFIX}-collect@",
        "--service-account=${_NAME_PREFIX}-ingest@",
    ),
    "api built by the default account": (
        "      - --entry-point=api\n      - --trigger-http\n      - --service-account=${_NAME_PREFIX}-api@${PROJECT_ID}.iam.gserviceaccount.com\n      - --build-service-account=",
        "      - --entry-point=api\n      - --trigger-http\n      - --service-account=${_NAME_PREFIX}-api@${PROJECT_ID}.iam.gserviceaccount.com\n      - --build-worker-pool=",
    ),
    "a deploy makes ingest public": (
        "      - --entry-point=ingest\n      - --trigger-http\n",
        "      - --entry-point=ingest\n      - --trigger-http\n      - --allow-unauthenticated\n",
    ),
    "a deploy sets a secret": (
        "      - --entry-point=collect\n      - --trigger-http\n",
        "      - --entry-point=collect\n      - --trigger-http\n      - --set-secrets=WEBHOOK_SECRET=s:latest\n",
    ),
}


@pytest.mark.parametrize("case", sorted(IDENTITY_MUTATIONS))
def test_identity_check_catches_a_breach(tools: Tools, tmp_path: Path, case: str) -> None:
    old, new = IDENTITY_MUTATIONS[case]
    text = CLOUDBUILD.read_text("utf-8")
    assert old in text, f"mutation does not apply: {old!r}"
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    document = load_yaml(tools, broken)
    assert identity_problems(document), f"not noticed: {case}"


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
    values = {
        "_REGION": "europe-west1",
        "_NAME_PREFIX": "attendance",
        "BUILD_ID": "b-1",
        "PROJECT_ID": "offline-check-000000",
    }
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
