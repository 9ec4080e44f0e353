"""Run the study's notebooks headless and publish them as a small self-contained report site.

The notebooks are the study: each one is parameterised by papermill (a cell tagged "parameters")
and is run once per *profile* (`report.profiles`: offline, local, quick, paper), a named parameter
set saying where the data and the models come from and what hardware runs them. The profile
resolves inside the notebook (`profiles.notebook_parameters`), and `reproduce` injects the same
resolution (`profiles.resolve_parameters`), so a notebook run by hand and one run headless get the
same values.

`reproduce` runs every notebook of a folder in order with one profile, renders each executed
notebook to HTML written to be read (`render_html`: figures embedded, so a report is one file to
open or mail; code folded; no install cell, injected parameters or stderr) and writes index.html
(templates/site_index.html.j2), which leads with each notebook's headline findings and puts the
run's provenance below. It stops at the first failing notebook, leaving an index that shows what
succeeded and where it failed.

Conventions for a notebook (report_dir is injected by reproduce / run_notebook, None by hand;
$ZOOMSTUDY_NOTEBOOK names the notebook for its kernel); the study notebooks call both through
`steps.record`:

    record_findings(report_dir, sentences, figure=fig)   # <notebook>.findings.json + .thumb.png
    record_provenance(report_dir, {"dataset_revision": ..., "n_images": ...})  # <notebook>.provenance.json

Both do nothing but return when report_dir is None (an interactive session).
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoomstudy.provenance import git_commit
from zoomstudy.report.profiles import DEFAULT_PROFILE, check_parameters, papermill_value, resolve_parameters, takes

#: Environment variable naming the running notebook inside its kernel (set by run_notebook).
NOTEBOOK_ENV = "ZOOMSTUDY_NOTEBOOK"


# ================================================================================================
# running one notebook
# ================================================================================================
def _one_line(text: Any, limit: int = 400) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class NotebookFailed(RuntimeError):
    """A notebook stopped with an error; the message names the notebook, the cell and the error."""

    def __init__(self, notebook: str, ename: str, evalue: str, exec_count: int | None = None,
                 output: Path | None = None, html_path: Path | None = None):
        self.notebook = notebook
        self.ename = ename
        self.evalue = evalue
        self.exec_count = exec_count
        self.output = output  # the executed notebook, errors included, when papermill wrote one
        self.html = html_path  # its rendering, when it could be rendered
        cell = f" in cell [{exec_count}]" if exec_count is not None else ""
        super().__init__(_one_line(f"notebook {notebook} failed{cell}: {ename}: {evalue}", 600))


#: Tag of the cell that installs the package on Colab; it is left out of the rendered report.
INSTALL_TAG = "install"
_INSTALL_MARK = "# Install zoomstudy"  # first line of the install cell, for notebooks without the tag

#: The jinja2 templates of the reports (package data): the report page of one notebook
#: (notebook_report.html.j2, over nbconvert's lab template) and the site index (site_index.html.j2).
TEMPLATES = Path(__file__).resolve().parent / "templates"


#: The "Open in Colab" badge: a link to the source notebook, not to this run, and an image fetched
#: from the network, so reports leave it out.
_COLAB_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*")


def _is_install_cell(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and (INSTALL_TAG in tags or cell.get("source", "").lstrip().startswith(_INSTALL_MARK))


def prepare_for_reading(nb):
    """The executed notebook as a reader should see it (a copy; the .ipynb keeps everything).

    Leaves out the install cell (a no-op in a report) and the cell papermill injects (the parameters
    the run used are the index's and the provenance's business, and the parameters cell itself is
    kept, folded); drops stderr streams (warnings, progress bars): what a report states goes to stdout,
    and a warning worth reading is raised as an error or printed. Errors and tracebacks are kept.
    """
    nb = copy.deepcopy(nb)
    kept = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or _is_install_cell(cell):
            continue
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        elif cell.cell_type == "markdown":
            cell.source = _COLAB_BADGE.sub("", cell.source)
        kept.append(cell)
    nb.cells = kept
    return nb


def render_html(notebook: str | Path, html_path: str | Path) -> Path:
    """Executed notebook -> one self-contained HTML report, written to be read.

    Figures are embedded as data URIs (one file to open or mail), code cells are folded (one click
    opens one), and prepare_for_reading removes what is not for the reader.
    """
    import nbformat
    from jinja2 import FileSystemLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[FileSystemLoader(str(TEMPLATES))],
                            template_file="notebook_report.html.j2")
    exporter.embed_images = True  # also inline images referenced from markdown cells
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = prepare_for_reading(nbformat.read(str(notebook), as_version=4))
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": Path(notebook).stem}})
    html_path = Path(html_path)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def run_notebook(
    path: str | Path,
    out_dir: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str = "python3",
    timeout: float | None = None,
    cwd: str | Path | None = None,
) -> Path:
    """Execute a notebook with papermill into out_dir/<name>.ipynb and render out_dir/<name>.html.

    Returns the HTML path. timeout: seconds per cell (None: no limit). cwd: the kernel's working
    directory (None: the current one). On any failure raises NotebookFailed; the partly executed
    notebook (with the error) is still written and, when possible, rendered, for debugging.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = path.stem
    out_nb, out_html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    if out_nb.resolve() == path.resolve():
        raise ValueError(f"run_notebook: out_dir {out_dir} would overwrite the source notebook {path}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"run_notebook: timeout must be positive seconds or None, got {timeout}")
    params = dict(parameters or {})
    check_parameters(params, "run_notebook parameters")
    params = {k: papermill_value(v) for k, v in params.items()}

    previous = os.environ.get(NOTEBOOK_ENV)
    os.environ[NOTEBOOK_ENV] = name  # inherited by the kernel process: record_provenance's file name
    try:
        pm.execute_notebook(
            str(path), str(out_nb), parameters=params, kernel_name=kernel, progress_bar=False,
            log_output=False, cwd=str(cwd) if cwd is not None else None, execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        rendered = _try_render(out_nb, out_html)
        raise NotebookFailed(name, err.ename, err.evalue, err.exec_count, out_nb, rendered) from err
    except Exception as err:  # kernel missing or dead, cell timeout, unreadable notebook...
        evalue = str(err)
        if type(err).__name__ == "NoSuchKernel":
            evalue += " (install one with: python3 -m ipykernel install --user)"
        output = out_nb if out_nb.exists() else None
        raise NotebookFailed(name, type(err).__name__, evalue, None, output, _try_render(output, out_html)) from err
    finally:
        if previous is None:
            os.environ.pop(NOTEBOOK_ENV, None)
        else:
            os.environ[NOTEBOOK_ENV] = previous
    return render_html(out_nb, out_html)


def _try_render(notebook: Path | None, html_path: Path) -> Path | None:
    """Render a failed notebook if possible; a rendering error must not hide the notebook's error."""
    if notebook is None or not Path(notebook).exists():
        return None
    try:
        return render_html(notebook, html_path)
    except Exception:
        return None


# ================================================================================================
# provenance
# ================================================================================================
def _jsonable(value: Any) -> Any:
    """Fallback for json.dumps: paths, numpy scalars and arrays, sets, anything else as text."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def record_provenance(
    report_dir: str | Path | None, info: Mapping[str, Any], *, notebook: str | None = None
) -> Path | None:
    """Called by a notebook: note where its numbers come from, for the report index.

    Writes <report_dir>/<notebook>.provenance.json, merged with what earlier calls recorded. No-op
    (returns None) when report_dir is None, i.e. when the notebook runs interactively. notebook:
    the name, by default the one run_notebook gives the kernel ($ZOOMSTUDY_NOTEBOOK).
    """
    if report_dir is None or str(report_dir) == "":
        return None
    if not isinstance(info, Mapping):
        raise ValueError(f"record_provenance: info must be a dict, got {type(info).__name__}")
    name = notebook or os.environ.get(NOTEBOOK_ENV)
    if not name:
        raise ValueError("record_provenance: notebook name unknown; pass notebook= or run under run_notebook/reproduce")
    path = Path(report_dir) / f"{name}.provenance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = read_provenance(report_dir, name) or {}
    merged.update({str(k): v for k, v in info.items()})
    from zoomstudy.keyed import atomic_write

    return atomic_write(path, json.dumps(merged, indent=2, default=_jsonable))


def read_provenance(report_dir: str | Path, notebook: str) -> dict | None:
    """What a notebook recorded with record_provenance, or None."""
    path = Path(report_dir) / f"{notebook}.provenance.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


class Findings(list):
    """A notebook's headline findings; shown in the notebook as a short list, and led with by the index."""

    def _repr_markdown_(self) -> str:
        return "**Headline findings**\n\n" + "\n".join(f"- {f}" for f in self)


#: Width in pixels of the thumbnail the index shows beside a notebook's findings.
THUMBNAIL_WIDTH = 360


def record_findings(report_dir: str | Path | None, findings: Sequence[str], figure=None, *,
                    notebook: str | None = None, links: Mapping[str, str] | None = None) -> Findings:
    """Called by a notebook: state its headline findings (sentences with the key numbers) for the index.

    The index of a report site leads with these, so a reader sees what each notebook found before
    any table. figure: one matplotlib Figure, saved as <notebook>.thumb.png (THUMBNAIL_WIDTH px wide)
    and shown beside the findings. Writes <report_dir>/<notebook>.findings.json; when report_dir is
    None (an interactive session) it only returns the findings, which a notebook cell displays as a
    list. The sentences must be computed from the run's numbers (the steps module's *_findings
    functions), never typed in. links: {text: file relative to report_dir} (e.g. the view explorer),
    listed beside the report's link in the index.
    """
    if isinstance(findings, str) or not all(isinstance(f, str) and f.strip() for f in findings):
        raise ValueError("record_findings: findings must be a list of non-empty sentences")
    out = Findings(" ".join(f.split()) for f in findings)
    if report_dir is None or str(report_dir) == "":
        return out
    name = notebook or os.environ.get(NOTEBOOK_ENV)
    if not name:
        raise ValueError("record_findings: notebook name unknown; pass notebook= or run under run_notebook/reproduce")
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"findings": list(out), "thumbnail": None}
    if links:
        record["links"] = dict(links)
    thumb = report_dir / f"{name}.thumb.png"
    thumb.unlink(missing_ok=True)
    if figure is not None:
        from matplotlib.figure import Figure

        if not isinstance(figure, Figure):
            raise ValueError(f"record_findings: figure must be a matplotlib Figure, got {type(figure).__name__}")
        width_in = figure.get_size_inches()[0]
        figure.savefig(thumb, dpi=max(20, THUMBNAIL_WIDTH / width_in))  # the figure as laid out, THUMBNAIL_WIDTH wide
        record["thumbnail"] = thumb.name
    from zoomstudy.keyed import atomic_write

    atomic_write(report_dir / f"{name}.findings.json", json.dumps(record, indent=2))
    return out


def read_findings(report_dir: str | Path, notebook: str) -> dict | None:
    """What a notebook recorded with record_findings ({"findings": [...], "thumbnail": file or None}), or None."""
    path = Path(report_dir) / f"{notebook}.findings.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def notebook_title(notebook: str | Path) -> str | None:
    """The first level-1 heading of a notebook's first markdown cell, or None."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            return None
    return None


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("zoomstudy", "torch", "torchvision", "timm", "numpy", "pandas", "papermill"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def run_info(profile: str, notebooks_dir: str | Path | None = None, kernel: str | None = None) -> dict:
    """Provenance of a whole run: profile, date, versions, git commit, machine."""
    dirs = [Path(__file__).resolve().parent] + ([Path(notebooks_dir)] if notebooks_dir else [])
    return {
        "profile": profile,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(*dirs, dirty=True),
        "versions": _versions(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "kernel": kernel,
        "notebooks_dir": str(Path(notebooks_dir).resolve()) if notebooks_dir else None,
    }


# ================================================================================================
# the report site
# ================================================================================================
def _select_notebooks(notebooks_dir: Path, notebooks: Sequence[str | Path] | None) -> list[Path]:
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"notebooks folder not found: {notebooks_dir}")
    if notebooks is None:
        return sorted(p for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))
    chosen = []
    for nb in notebooks:
        p = Path(nb)
        candidates = [p, notebooks_dir / p, notebooks_dir / f"{p.name}.ipynb"]
        found = next((c for c in candidates if c.suffix == ".ipynb" and c.is_file()), None)
        if found is None:
            raise ValueError(f"notebook {str(nb)!r} not found in {notebooks_dir}")
        chosen.append(found)
    return chosen


def _value(value: Any) -> dict:
    """One value of a parameters / provenance table: strings as they are, short values as the Python
    literal papermill injects (False, None); long lists and dicts folded, so that no cell of the
    index is a wall of JSON."""
    text = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str) and len(text) > 80:
        short = f"{type(value).__name__} of {len(value)}" if hasattr(value, "__len__") else "value"
        return {"text": text, "summary": short, "folded": json.dumps(value, indent=1, default=_jsonable)}
    return {"text": text, "summary": None, "folded": None}


def _rows(d: Mapping[str, Any] | None) -> list[tuple[str, dict]]:
    return [(str(k), _value(v)) for k, v in (d or {}).items()]


def _entry_view(e: dict) -> dict:
    """What the index template shows of one notebook's entry."""
    found = e.get("findings") or {}
    links = ([("full report", e["html"])] if e.get("html") else []) + \
        ([("executed notebook", e["ipynb"])] if e.get("ipynb") else []) + list((found.get("links") or {}).items())
    prov = e.get("provenance")
    statement = (prov or {}).get("statement") or " ".join((prov or {}).get("statements") or [])
    return {"name": e["name"], "title": e.get("title") or e["name"], "status": e["status"], "links": links,
            "report": e.get("html"), "findings": found.get("findings") or [], "thumbnail": found.get("thumbnail"),
            "error": e.get("error"), "seconds": f"{e['seconds']:.1f}" if e.get("seconds") is not None else "",
            "statement": str(statement), "parameters": _rows(e.get("parameters")),
            "provenance": None if prov is None else _rows(prov)}


def _index_html(info: dict, entries: list[dict]) -> str:
    """index.html from templates/site_index.html.j2 (autoescaped) and its style sheet."""
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, keep_trailing_newline=True)
    versions = info.get("versions") or {}
    return env.get_template("site_index.html.j2").render(
        profile=info["profile"], done=sum(e["status"] == "ok" for e in entries),
        when=info.get("finished") or info.get("started"), css=(TEMPLATES / "site_index.css").read_text(encoding="utf-8"),
        git_commit=str(info.get("git_commit")), versions=[f"{k} {v}" for k, v in versions.items() if v],
        entries=[_entry_view(e) for e in entries], run=_rows({k: v for k, v in info.items() if k != "versions"}))


def write_index(out_dir: str | Path, info: dict, entries: list[dict]) -> Path:
    """index.html (for people) and index.json (for programs) describing a run."""
    out_dir = Path(out_dir)
    (out_dir / "index.json").write_text(json.dumps({"run": info, "notebooks": entries}, indent=2, default=_jsonable),
                                        encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(_index_html(info, entries), encoding="utf-8")
    return index


def reproduce(
    notebooks_dir: str | Path,
    out_dir: str | Path,
    profile: str = DEFAULT_PROFILE,
    notebooks: Sequence[str | Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    *,
    kernel: str = "python3",
    timeout: float | None = None,
    cwd: str | Path | None = None,
) -> Path:
    """Run the notebooks in order with one profile and build the report site; returns index.html.

    notebooks: names, file names or paths (default: every *.ipynb of notebooks_dir, sorted by name).
    overrides: parameters that replace the profile's for every notebook that declares them (ValueError
    when none of the notebooks run does). Each notebook also gets
    `report_dir` (out_dir, for record_provenance). The index is rewritten after every notebook, so it
    is current while a long run goes on. Raises NotebookFailed at the first failing notebook, after
    writing an index marking it (and the notebooks after it as not run).
    """
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
    paths = _select_notebooks(notebooks_dir, notebooks)
    if not paths:
        raise ValueError(f"no notebooks (*.ipynb) in {notebooks_dir}")
    report_dir = str(out_dir.resolve())
    entries = [
        {"name": p.stem, "source": str(p.resolve()), "status": "pending", "seconds": None, "html": None,
         "ipynb": None, "error": None, "provenance": None, "findings": None, "title": notebook_title(p),
         "parameters": {**resolve_parameters(profile, p.stem, overrides), "report_dir": report_dir}}
        for p in paths
    ]  # every notebook's parameters are resolved (and checked) before anything runs
    unused = sorted(k for k in (overrides or {}) if not any(takes(p.stem, k) for p in paths))
    if unused:  # a misspelt or misplaced override would otherwise be dropped without a word
        raise ValueError(f"overrides {unused} are parameters of none of the notebooks run "
                         f"({', '.join(p.stem for p in paths)}); see report.profiles.NOTEBOOK_PARAMETERS")
    out_dir.mkdir(parents=True, exist_ok=True)
    info = run_info(profile, notebooks_dir, kernel)
    write_index(out_dir, info, entries)
    n = len(paths)
    for i, (path, entry) in enumerate(zip(paths, entries), 1):
        name = entry["name"]
        for stale in (f"{name}.ipynb", f"{name}.html", f"{name}.provenance.json", f"{name}.findings.json",
                      f"{name}.thumb.png"):
            (out_dir / stale).unlink(missing_ok=True)
        entry["status"] = "running"
        write_index(out_dir, info, entries)
        if progress:
            print(f"[{i}/{n}] {name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            html_path = run_notebook(path, out_dir, entry["parameters"], kernel=kernel, timeout=timeout, cwd=cwd)
        except NotebookFailed as err:
            entry.update(status="failed", seconds=time.perf_counter() - t0, error=str(err),
                         html=err.html.name if err.html else None, ipynb=err.output.name if err.output else None,
                         provenance=read_provenance(out_dir, name), findings=read_findings(out_dir, name))
            for later in entries[i:]:
                later["status"] = "not-run"
            info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            write_index(out_dir, info, entries)
            if progress:
                print(f"FAILED after {entry['seconds']:.1f} s", flush=True)
            raise
        entry.update(status="ok", seconds=time.perf_counter() - t0, html=html_path.name, ipynb=f"{name}.ipynb",
                     provenance=read_provenance(out_dir, name), findings=read_findings(out_dir, name))
        if progress:
            print(f"ok in {entry['seconds']:.1f} s", flush=True)
    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    index = write_index(out_dir, info, entries)
    if progress:
        print(f"index: {index}", flush=True)
    return index
