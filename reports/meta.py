"""Run metadata for Allure: environment.properties, executor.json and categories.json."""

from __future__ import annotations

import getpass
import json
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from chaos.errors import STEADY_STATE_VIOLATED
from chaos.observer import DR_TARGET_MISSED
from reports.redact import redact_text

REPO_ROOT = Path(__file__).resolve().parent.parent

# Allure puts a result in the first category that matches it, so the order below is the triage order.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "DR target missed",
        "description": "A measured figure (RTO, RPO, latency, restore time, ...) missed its target: "
        "the product is at fault.",
        "matchedStatuses": ["failed"],
        "messageRegex": f"(?s).*{DR_TARGET_MISSED}.*",
    },
    {
        "name": "Steady state violated",
        "description": "The system was not in its steady state before the fault, so the scenario stopped "
        "before proving anything: the suite or its environment is at fault, not the DR measure.",
        "matchedStatuses": ["broken", "failed"],
        "messageRegex": f"(?s).*{STEADY_STATE_VIOLATED}.*",
    },
    {
        "name": "DR claim violated",
        "description": "A DR behaviour assertion failed (data lost, write not refused, "
        "backup not rejected, ...).",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Environment unavailable",
        "description": "The infrastructure (PostgreSQL, Toxiproxy, S3, Docker, a binary) could not be had: "
        "not a product fault.",
        "matchedStatuses": ["broken", "skipped"],
        "messageRegex": "(?is).*(EnvironmentUnavailable|environment unavailable|refused on the .* backend).*",
    },
    {
        "name": "Suite error",
        "description": "The suite itself broke (an unexpected exception in a scenario, fixture or helper).",
        "matchedStatuses": ["broken"],
    },
]


def git_commit(root: Path = REPO_ROOT) -> str:
    """The checked-out commit (with '+dirty' when the tree has changes), or a reason why there is none."""
    sha = os.environ.get("GITHUB_SHA")
    if sha:
        return sha
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "none (no commit yet)"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"


def _version(dist: str) -> str:
    """Installed version of a Python distribution, or 'not installed'."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_facts(run: Mapping[str, Any]) -> dict[str, str]:
    """Facts for environment.properties: the run's own plus host, commit and tool versions."""
    facts = {
        "profile": str(run.get("profile", "unknown")),
        "backend": str(run.get("backend", "unknown")),
        "postgres.version": str(run.get("postgres", "not started")),
        "toxiproxy.version": str(run.get("toxiproxy", "not started")),
        "git.commit": git_commit(),
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "allure-pytest": _version("allure-pytest"),
        "run.finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in run.items():
        if key not in {"profile", "backend", "postgres", "toxiproxy", "time_scale"}:
            facts[key] = str(value)
    facts.update(_scale_facts(facts["profile"], run.get("time_scale")))
    return {key: redact_text(value) for key, value in facts.items()}


def _scale_facts(profile_name: str, time_scale: Any) -> dict[str, str]:
    """Each window's scale against production ('scale.RTO=1/10 (60 s of 600 s)'), and what that means.

    A bare 'time_scale=1.0' read as real time; it is only the multiplier applied on top of the profile.
    """
    from reports.targets import PROFILES, profile_scales, scaled

    profile = PROFILES.get(profile_name)
    if profile is None:
        return {}
    facts = {f"scale.{label}": text for label, text in profile_scales(profile).items()}
    facts["profile.windows"] = (
        "scaled down: production windows not exercised" if scaled(profile) else "production windows"
    )
    if time_scale is not None:
        facts["scale.extra multiplier (--chaos-time-scale)"] = str(time_scale)
    return facts


def run_actor(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Who ran the drill and where: the CI actor and run URL, or the local user and host."""
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return {
            "actor": env.get("GITHUB_ACTOR", "unknown"),
            "where": f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}",
        }
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return {"actor": f"{user}@{socket.gethostname()}", "where": "local run (no CI run URL)"}


def _escape(text: str, *, key: bool = False) -> str:
    """Escape for java.util.Properties."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if key:
        out = out.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
    return out


def environment_properties(facts: Mapping[str, str]) -> str:
    """Render facts as a .properties document, keys sorted."""
    return "".join(f"{_escape(k, key=True)}={_escape(v)}\n" for k, v in sorted(facts.items()))


def executor_info(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """executor.json: the GitHub Actions run (name, number, URL) when present, else the local host."""
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        number = env.get("GITHUB_RUN_NUMBER", "0")
        info: dict[str, Any] = {
            "name": "GitHub Actions",
            "type": "github",
            "url": f"{server}/{env['GITHUB_REPOSITORY']}",
            "buildOrder": int(number) if number.isdigit() else 0,
            "buildName": f"{env.get('GITHUB_WORKFLOW', 'workflow')} #{number}",
            "buildUrl": run_url,
        }
        if env.get("DR_REPORT_URL"):
            info["reportUrl"] = env["DR_REPORT_URL"]
        return info
    stamp = datetime.now(UTC)
    return {
        "name": f"local ({socket.gethostname()})",
        "type": "local",
        "buildOrder": int(stamp.timestamp()),
        "buildName": f"local drill {stamp.isoformat(timespec='seconds')}",
    }


def write_run_metadata(
    alluredir: str | Path, run: Mapping[str, Any], env: Mapping[str, str] = os.environ
) -> None:
    """Write environment.properties, executor.json and categories.json into an allure-results directory."""
    out = Path(alluredir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "environment.properties").write_text(
        environment_properties(environment_facts(run)), encoding="utf-8"
    )
    (out / "executor.json").write_text(json.dumps(executor_info(env), indent=2), encoding="utf-8")
    (out / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), encoding="utf-8")
