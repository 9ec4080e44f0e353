"""The install story: environment.yml parses and agrees with pyproject, every dependency is used; the CLI
and the documented public API load."""
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
    assert set(zoomstudy.__all__) <= set(dir(zoomstudy))


def test_public_api_is_documented_one_line_per_name():
    """The module docstring lists every public name once, with a line saying what it is."""
    import zoomstudy

    listed = re.findall(r"^    (\w+)\s{2,}\S", zoomstudy.__doc__, flags=re.M)
    assert sorted(listed) == sorted(set(zoomstudy.__all__) - {"__version__"}), "docstring and _API differ"


def test_import_is_cheap_and_names_load_on_use():
    code = ("import sys, zoomstudy; cheap = 'torch' not in sys.modules; zoomstudy.ViewGrid; "
            "print(cheap, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


#: Distribution name -> the module it is imported as, where the two differ.
_IMPORT_NAMES = {"pillow": "PIL", "pyyaml": "yaml", "open-clip-torch": "open_clip"}


def test_every_core_dependency_is_imported():
    """A dependency the package never imports (pyyaml was one) is not declared."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    source = "\n".join(p.read_text() for p in (REPO / "zoomstudy").rglob("*.py"))
    for req in project["dependencies"]:
        name = _name(req)
        module = _IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, flags=re.M), f"{name} is never imported"


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


def test_readme_and_docs_links_resolve():
    """Every relative link of README.md and docs/*.md names a file of the repository (the README's first
    screen sends readers to docs/ pages and a screenshot; a moved page must not leave a dead link)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    dead = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                dead.append(f"{page.relative_to(REPO)} -> {target}")
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_report_templates_are_package_data():
    """The jinja2 templates the reports render from (zoomstudy/report/templates) ship with the package:
    pyproject's package-data names their folder, and every template the code loads is there."""
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["zoomstudy"]
    assert "report/templates/*" in data
    from zoomstudy.report import notebooks

    for name in ("site_index.html.j2", "site_index.css", "notebook_report.html.j2"):
        assert (notebooks.TEMPLATES / name).is_file(), name
    assert notebooks.TEMPLATES == REPO / "zoomstudy" / "report" / "templates"
