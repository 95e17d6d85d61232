"""checkov and check-jsonschema, pinned, in their own virtualenv (see requirements-tools.txt).

checkov cannot share the project's virtualenv: it installs bc-python-hcl2, which provides the same
``hcl2`` module as python-hcl2, and pins an older ``packaging``. The tools venv lives inside .venv
(git-ignored, removed by ``make clean``) unless ``INFRA_TOOLS_VENV`` names another place; it is built
once and rebuilt when requirements-tools.txt changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.terraform import REPO

REQUIREMENTS = Path(__file__).with_name("requirements-tools.txt")
DEFAULT_VENV = REPO / ".venv" / "infra-tools"
CUSTOM_CHECKS = REPO / "infra" / "checkov"

#: Nothing the tools run may leave the machine: checkov otherwise fetches guidelines from Prisma.
OFFLINE_ENV = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "BC_API_KEY": "",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
}


@dataclass(frozen=True)
class Tools:
    venv: Path

    @property
    def checkov(self) -> Path:
        return self.venv / "bin" / "checkov"

    @property
    def check_jsonschema(self) -> Path:
        return self.venv / "bin" / "check-jsonschema"


def ensure_tools() -> Tools:
    venv = Path(os.environ.get("INFRA_TOOLS_VENV") or DEFAULT_VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return Tools(venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(digest)
    return Tools(venv)


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BC_")}
    env.update(OFFLINE_ENV)
    return env


@dataclass(frozen=True)
class CheckovReport:
    passed: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    output: str

    def ids(self, which: str) -> set[str]:
        checks: list[dict[str, Any]] = getattr(self, which)
        return {str(check["check_id"]) for check in checks}


def run_checkov(tools: Tools, directory: Path) -> CheckovReport:
    result = subprocess.run(
        [
            str(tools.checkov),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--external-checks-dir",
            str(CUSTOM_CHECKS),
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=180,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov crashed ({result.returncode}): {result.stderr[-2000:]}")
    document = json.loads(result.stdout)
    reports = document if isinstance(document, list) else [document]
    checks: dict[str, list[dict[str, Any]]] = {"passed": [], "failed": [], "skipped": []}
    for report in reports:
        results = report.get("results", {})
        for key in checks:
            checks[key] += results.get(f"{key}_checks", [])
    return CheckovReport(
        passed=checks["passed"],
        failed=checks["failed"],
        skipped=checks["skipped"],
        output=result.stdout,
    )


def validate_cloudbuild(tools: Tools, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against its vendored Cloud Build schema (SchemaStore's cloudbuild.json)."""
    return subprocess.run(
        [str(tools.check_jsonschema), "--builtin-schema", "vendor.cloudbuild", str(path)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=120,
        check=False,
    )


def load_yaml(tools: Tools, path: Path) -> Any:
    """YAML as JSON data, read by the tools venv's PyYAML (the project venv has no YAML parser)."""
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    result = subprocess.run(
        [str(tools.venv / "bin" / "python"), "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)
