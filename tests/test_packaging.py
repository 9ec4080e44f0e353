"""The install story: environment.yml parses and agrees with pyproject; the CLI and public API load."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml

from conftest import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert env["name"] == "zoomstudy"
    assert any(p.startswith("-e .") and "notebooks" in p for p in pip), "pip section must install this repo"
    names = {_name(d) for d in conda if not d.startswith(("python", "pip"))} | {_name(p) for p in pip if not p.startswith("-e")}
    assert names <= declared, f"environment.yml lists packages pyproject does not: {names - declared}"
    core = {_name(r) for r in project["dependencies"]}
    assert core <= names, f"environment.yml misses core dependencies: {core - names}"


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command in readme, f"README must give CI's test command {command!r}"


def test_cli_reports_bad_parameters_in_one_line():
    out = subprocess.run([sys.executable, "-m", "zoomstudy.cli", "sweep", "--model", "no-such-model", "--dataset", "synthetic:2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown model" in lines[0]


def test_public_api_resolves():
    import zoomstudy

    for name in zoomstudy.__all__:
        assert getattr(zoomstudy, name) is not None


def test_ci_installs_what_the_readme_installs():
    """The README's install command, run on a fresh machine, is enough for its test command: CI
    installs exactly those extras (plus clip, for the CLIP tests), and they include pytest."""
    import tomllib

    readme = (REPO / "README.md").read_text()
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', readme).group(1).split(",")
    ci = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', (REPO / ".ci" / "run").read_text()).group(1).split(",")
    assert sorted(ci) == sorted(extras + ["clip"])
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(_name(r) == "pytest" for e in extras for r in optional[e])
