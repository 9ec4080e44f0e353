"""Where the notebooks install the package from on Colab, named once.

The one name is `[project.urls] Repository` in pyproject.toml (the package's metadata once it is
installed). A notebook opened in Colab has no zoomstudy yet, so its install cell and its "Open in
Colab" badge cannot ask the package: `sync_notebooks` writes both from that one name into every
notebook, and a test checks that the committed notebooks agree with it. To publish the project
somewhere else: change `Repository` in pyproject.toml, then run

    python -m zoomstudy.report.colab            # rewrites notebooks/*.ipynb: badges and install cells

A Colab user can also point one session elsewhere without editing anything, before running the
install cell: `%env ZOOMSTUDY_PIP_SPEC=git+https://github.com/ME/zoomstudy@my-branch` (or the path of
an uploaded checkout or wheel). The install cell reads that override first.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

#: Environment variable that overrides the install source of the notebooks' install cell.
PIP_SPEC_ENV = "ZOOMSTUDY_PIP_SPEC"
#: Branch of the repository the Colab badges open.
BRANCH = "main"
#: Extras the install cell installs (the notebooks need papermill's and nbconvert's companions).
EXTRAS = "notebooks"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def repository_url() -> str:
    """`[project.urls] Repository` of this checkout's pyproject.toml, else of the installed package's metadata."""
    pyproject = _REPO_ROOT / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        urls = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
        if urls.get("Repository"):
            return str(urls["Repository"]).rstrip("/")
    from importlib import metadata

    try:
        for entry in metadata.metadata("zoomstudy").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "repository":
                return url.strip().rstrip("/")
    except metadata.PackageNotFoundError:
        pass
    raise RuntimeError("zoomstudy: no [project.urls] Repository in pyproject.toml or the installed metadata")


def _github_path(url: str) -> str:
    m = re.fullmatch(r"https://github\.com/([^/\s]+/[^/\s]+?)(\.git)?", url)
    if not m:
        raise ValueError(f"Colab opens notebooks from GitHub; Repository must be https://github.com/OWNER/NAME, got {url!r}")
    return m.group(1)


def pip_spec(url: str | None = None) -> str:
    """What the install cell gives pip: $ZOOMSTUDY_PIP_SPEC, else `zoomstudy[notebooks] @ git+<Repository>`."""
    override = os.environ.get(PIP_SPEC_ENV)
    if override:
        return override
    return f"zoomstudy[{EXTRAS}] @ git+{url or repository_url()}"


def badge_url(notebook: str, url: str | None = None) -> str:
    """The Colab address of notebooks/<notebook>.ipynb in the repository."""
    return (f"https://colab.research.google.com/github/{_github_path(url or repository_url())}/blob/{BRANCH}/"
            f"notebooks/{Path(notebook).stem}.ipynb")


def badge_markdown(notebook: str, url: str | None = None) -> str:
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({badge_url(notebook, url)})")


def install_cell_source(url: str | None = None) -> str:
    """The install cell: installs the package where it is missing (Colab), a no-op where it is installed."""
    default = f"zoomstudy[{EXTRAS}] @ git+{url or repository_url()}"
    return (
        "# Install zoomstudy when it is missing (e.g. on Colab); a no-op where it is installed.\n"
        f"# The source is [project.urls] Repository in pyproject.toml; ${PIP_SPEC_ENV} overrides it.\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        "try:\n"
        "    import zoomstudy\n"
        "except ImportError:\n"
        f"    _spec = os.environ.get(\"{PIP_SPEC_ENV}\") or \"{default}\"\n"
        "    if subprocess.call([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", _spec]) != 0:\n"
        f"        raise SystemExit(f\"could not install {{_spec!r}}; set {PIP_SPEC_ENV} to where zoomstudy is published \"\n"
        "                         \"(e.g. git+https://github.com/OWNER/zoomstudy, or an uploaded checkout's path)\")\n"
        "    import zoomstudy"
    )


_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def _install_cell_index(cells: list) -> int | None:
    for i, cell in enumerate(cells):
        src = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "code" and src.lstrip().startswith("# Install zoomstudy"):
            return i
    return None


def synced_notebook(nb, name: str, url: str | None = None):
    """nb (an nbformat notebook) with its Colab badge and install cell written from the one install source."""
    url = url or repository_url()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if _BADGE.search(cell.source):
                cell.source = _BADGE.sub(lambda _: badge_markdown(name, url), cell.source)
            break
    i = _install_cell_index(nb.cells)
    if i is not None:
        nb.cells[i].source = install_cell_source(url)
        tags = nb.cells[i].metadata.setdefault("tags", [])
        if "install" not in tags:
            tags.append("install")
    return nb


def sync_notebooks(folder: str | Path = _REPO_ROOT / "notebooks", url: str | None = None) -> list[Path]:
    """Rewrite every notebook's badge and install cell from Repository; returns the files changed."""
    import nbformat

    changed = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        before = nbformat.writes(nb)
        after = nbformat.writes(synced_notebook(nb, path.stem, url))
        if after != before:
            nbformat.write(nb, str(path))
            changed.append(path)
    return changed


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else _REPO_ROOT / "notebooks"
    for p in sync_notebooks(folder):
        print(f"updated {p}")
