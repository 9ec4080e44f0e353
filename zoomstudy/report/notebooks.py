"""Run the study's notebooks headless and publish them as a small self-contained report site.

The notebooks are the study: each one is parameterised by papermill (a cell tagged "parameters")
and is run once per *profile*, a named parameter set saying where the data and the models come from
and what hardware runs them:

* "offline" (default): synthetic data and random-weight models, no network; runs anywhere.
* "local": the user's own images, labels and checkpoint (by default the real-data kit in
  ../shared/realdata, or $ZOOMSTUDY_REALDATA), no network.
* "quick": a small pretrained model and a few hundred hub images; CPU with internet.
* "paper": the paper's models and datasets; GPU with internet.

`reproduce` runs every notebook of a folder in order with one profile, renders each executed
notebook to HTML (figures embedded, so a report is one file to open or mail) and writes index.html
linking the reports with their parameters and provenance. It stops at the first failing notebook,
leaving an index that shows what succeeded and where it failed.

A notebook's parameters cell should declare every key its profiles set, plus `profile` and
`report_dir` (always injected); papermill warns about injected names that the cell lacks.

Provenance convention: reproduce injects the papermill parameter `report_dir` (the output folder)
into every notebook, and sets $ZOOMSTUDY_NOTEBOOK to the notebook's name for its kernel. A notebook
declares `report_dir = None` in its parameters cell and calls

    zoomstudy.report.notebooks.record_provenance(report_dir, {"dataset_revision": ..., "n_images": ...})

which writes <report_dir>/<notebook>.provenance.json (merging successive calls) when run by
reproduce / run_notebook, and does nothing in an interactive session (report_dir is None). The
index shows that dictionary next to the profile, date, package versions and git commit of the run.
"""
from __future__ import annotations

import copy
import datetime as _dt
import html
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoomstudy.provenance import git_commit

#: Environment variable naming the running notebook inside its kernel (set by run_notebook).
NOTEBOOK_ENV = "ZOOMSTUDY_NOTEBOOK"
#: Key of a profile's parameters shared by all notebooks (notebook-specific entries override it).
COMMON = "*"
DEFAULT_PROFILE = "offline"


def _realdata_dir() -> str:
    """The real-data kit: $ZOOMSTUDY_REALDATA, else ../shared/realdata next to the repository."""
    default = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    return os.environ.get("ZOOMSTUDY_REALDATA", str(default))


def _default_profiles() -> dict[str, dict[str, dict[str, Any]]]:
    rd = _realdata_dir()
    # The one place to swap the offline data (e.g. for the controlled "world:" experiments): every
    # notebook reads it through the `dataset` parameter.
    offline_dataset = "world:centered"  # the controlled experiment's 48 test images
    # A reduced grid (6 scales x 3 x 3 = 54 views, zoom out to zoom in) for CPU runs of a few minutes.
    reduced_scales = [64, 128, 224, 256, 320, 448]
    # ImageNet-Hard for the local profile: a local copy named by $ZOOMSTUDY_IMAGENET_HARD, else the
    # synthetic multi-label stand-in (no network in that profile).
    local_hard = "imagenet-hard" if os.environ.get("ZOOMSTUDY_IMAGENET_HARD") else "synthetic-hard:24"
    return {
        "offline": {
            COMMON: {"model": "world:centered", "checkpoint": None, "pretrained": False,
                     "dataset": offline_dataset, "root": None, "scales": None, "grid": 3, "crop": 56,
                     "max_images": None, "results_dir": "results/offline", "device": "cpu"},
            "04_imagenet_hard": {"model": "torchvision:squeezenet1_0", "dataset": "synthetic-hard:24",
                                 "scales": reduced_scales, "crop": 224, "plain_protocol": "sweep"},
            "05_zoom_sensitivity": {"models": [], "checkpoints": [], "sizes": [32, 40, 48, 56, 64, 80, 96, 112]},
            "03_test_time_augmentation": {"memo_k": 4, "memo_seeds": [0, 1], "memo_max_images": 8},
        },
        "local": {
            COMMON: {"model": "torchvision:squeezenet1_0",
                     "checkpoint": f"{rd}/weights/squeezenet1_0_deepcompression.pt", "pretrained": False,
                     "dataset": f"csv:{rd}/imagenet-sample", "root": None, "scales": None, "grid": 3, "crop": 224,
                     "max_images": None, "results_dir": "results/local", "device": None},
            "04_imagenet_hard": {"dataset": local_hard, "plain_protocol": "sweep"},
            "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0], "memo_max_images": 20},
        },
        "quick": {
            COMMON: {"model": "resnet18", "checkpoint": None, "pretrained": True,
                     "dataset": "imagenet-hard", "root": None, "scales": reduced_scales, "grid": 3, "crop": 224,
                     "max_images": 300, "results_dir": "results/quick", "device": None},
            "04_imagenet_hard": {"plain_protocol": "sweep"},
            "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0], "memo_max_images": 30},
        },
        "paper": {
            COMMON: {"model": "resnet50", "checkpoint": None, "pretrained": True,
                     "dataset": "imagenet-val", "root": None, "scales": None, "grid": 3, "crop": 224,
                     "max_images": None, "results_dir": "results/paper", "device": None},
            "04_imagenet_hard": {"dataset": "imagenet-hard", "plain_protocol": "model",
                                 "compare_with": ["imagenet-val"]},
            # Table 4 is ViT-B/32's, Table 5 ResNet-50's (robust models: memo_checkpoint + memo_paper_model)
            "03_test_time_augmentation": {"model": "vit_b_32", "memo_model": "resnet50", "memo_k": 16,
                                          "memo_seeds": [0], "memo_max_images": None},
        },
    }


#: profile name -> {COMMON or notebook name (file stem) -> parameters}. A plain dict: add profiles
#: or notebook entries by assignment. COMMON ("*") holds the parameters every study notebook
#: declares: model, checkpoint, pretrained, dataset, root, scales (None = the paper's 36), grid,
#: crop, max_images, results_dir, device.
#:
#: * offline: the controlled experiment (00) trains small CNNs on the procedural world; the paper
#:   notebooks then analyse the centre-trained one ("world:centered") on the world's 48 test images
#:   with the paper's 36 scales scaled to its 56-px input: minutes on a CPU, no network.
#:   04_imagenet_hard uses the synthetic multi-label stand-in ("synthetic-hard:24") with a random
#:   SqueezeNet: it checks that pipeline, its accuracies are chance.
#: * local: the real-data kit (SqueezeNet 1.0 Deep Compression weights, its 100 ImageNet images),
#:   the paper's 324 views; compared with the kit's reference figures. ImageNet-Hard from
#:   $ZOOMSTUDY_IMAGENET_HARD when set, else the stand-in.
#: * quick: torchvision ResNet-18 (V1 weights, a paper model) on the first 300 ImageNet-Hard images
#:   from the hub (all parquet files are downloaded; the 10,980-row guard applies), 6 scales.
#: * paper: ResNet-50 (torchvision IMAGENET1K_V1, the paper's; "torchvision:resnet50" would load V2)
#:   on ImageNet val (a local copy: root or $ZOOMSTUDY_IMAGENET_VAL) with the paper's 324 views on a
#:   GPU; ImageNet-Hard from the hub. The paper's other models and datasets are the `model` and
#:   `dataset` parameters: pass them as overrides, one run per model (e.g. model="vit_b_32",
#:   dataset="imagenet-a"); the result store keeps every sweep apart.
PROFILES: dict[str, dict[str, dict[str, Any]]] = _default_profiles()


def _papermill_value(value: Any) -> Any:
    """Values papermill can write as Python literals: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_papermill_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _papermill_value(v) for k, v in value.items()}
    return value


def _check_parameters(params: Mapping[str, Any], what: str) -> None:
    if not isinstance(params, Mapping):
        raise ValueError(f"{what} must be a dict of parameter name -> value, got {type(params).__name__}")
    bad = [k for k in params if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise ValueError(f"{what}: parameter names must be Python identifiers, got {bad}")


def resolve_parameters(profile: str, notebook: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The parameters one notebook runs with: {"profile": name} < profile["*"] < profile[notebook] < overrides.

    notebook: a name, file name or path (its stem selects the notebook-specific entry).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    stem = Path(str(notebook)).stem
    entries = PROFILES[profile]
    params: dict[str, Any] = {"profile": profile}
    layers = (
        (entries.get(COMMON, {}), f"profile {profile!r}"),
        (entries.get(stem, {}), f"profile {profile!r}[{stem!r}]"),
        (overrides or {}, "overrides"),
    )
    for part, what in layers:
        _check_parameters(part, what)
        params.update(copy.deepcopy(dict(part)))
    return {k: _papermill_value(v) for k, v in params.items()}


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


def render_html(notebook: str | Path, html_path: str | Path) -> Path:
    """Executed notebook -> one self-contained HTML file (outputs' images embedded as data URIs)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.embed_images = True  # also inline images referenced from markdown cells
    body, _ = exporter.from_filename(str(notebook))
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
    _check_parameters(params, "run_notebook parameters")
    params = {k: _papermill_value(v) for k, v in params.items()}

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
    from zoomstudy.sweep.store import atomic_write

    return atomic_write(path, json.dumps(merged, indent=2, default=_jsonable))


def read_provenance(report_dir: str | Path, notebook: str) -> dict | None:
    """What a notebook recorded with record_provenance, or None."""
    path = Path(report_dir) / f"{notebook}.provenance.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


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


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem;
        text-align: left; vertical-align: top; font-size: 0.9rem; }
th { background: #f5f5f5; } code, pre { font-family: ui-monospace, Menlo, monospace; font-size: 0.85rem; }
pre { margin: 0; white-space: pre-wrap; }
.status { font-weight: bold; padding: 0.1rem 0.5rem; border-radius: 0.3rem; color: white; }
.ok { background: #1a9850; } .failed { background: #d73027; } .running { background: #4575b4; }
.not-run, .pending { background: #999; }
.error { color: #d73027; font-family: ui-monospace, Menlo, monospace; }
"""


def _value_html(value: Any) -> str:
    """Strings as they are, anything else as the Python literal papermill injects (False, None)."""
    text = value if isinstance(value, str) else repr(value)
    return f"<code>{html.escape(text)}</code>"


def _dict_table(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "<p><em>none</em></p>"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_value_html(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _index_html(info: dict, entries: list[dict]) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>zoomstudy reports ({html.escape(info['profile'])})</title><style>{_CSS}</style></head><body>",
        f"<h1>zoomstudy reports: profile <code>{html.escape(info['profile'])}</code></h1>",
        "<h2>Run</h2>",
        _dict_table({k: v for k, v in info.items() if k != "versions"}),
        "<h3>Versions</h3>",
        _dict_table(info.get("versions")),
        "<h2>Notebooks</h2><table><tr><th>#</th><th>notebook</th><th>status</th><th>seconds</th></tr>",
    ]
    for i, e in enumerate(entries, 1):
        name = html.escape(e["name"])
        link = f"<a href='{html.escape(e['html'])}'>{name}</a>" if e.get("html") else name
        secs = f"{e['seconds']:.1f}" if e.get("seconds") is not None else ""
        parts.append(f"<tr><td>{i}</td><td>{link}</td><td><span class='status {e['status']}'>{e['status']}</span>"
                     f"</td><td>{secs}</td></tr>")
    parts.append("</table>")
    for e in entries:
        name = html.escape(e["name"])
        parts.append(f"<h2 id='{name}'>{name} <span class='status {e['status']}'>{e['status']}</span></h2>")
        links = []
        if e.get("html"):
            links.append(f"<a href='{html.escape(e['html'])}'>report</a>")
        if e.get("ipynb"):
            links.append(f"<a href='{html.escape(e['ipynb'])}'>executed notebook</a>")
        if links:
            parts.append("<p>" + " &middot; ".join(links) + "</p>")
        if e.get("error"):
            parts.append(f"<p class='error'>{html.escape(e['error'])}</p>")
        parts.append("<h3>Parameters</h3>" + _dict_table(e.get("parameters")))
        if e.get("provenance") is not None:
            parts.append("<h3>Provenance</h3>" + _dict_table(e["provenance"]))
    parts.append("</body></html>")
    return "\n".join(parts)


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
    overrides: parameters that replace the profile's for every notebook. Each notebook also gets
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
         "ipynb": None, "error": None, "provenance": None,
         "parameters": {**resolve_parameters(profile, p.stem, overrides), "report_dir": report_dir}}
        for p in paths
    ]  # every notebook's parameters are resolved (and checked) before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    info = run_info(profile, notebooks_dir, kernel)
    write_index(out_dir, info, entries)
    n = len(paths)
    for i, (path, entry) in enumerate(zip(paths, entries), 1):
        name = entry["name"]
        for stale in (f"{name}.ipynb", f"{name}.html", f"{name}.provenance.json"):
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
                         provenance=read_provenance(out_dir, name))
            for later in entries[i:]:
                later["status"] = "not-run"
            info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            write_index(out_dir, info, entries)
            if progress:
                print(f"FAILED after {entry['seconds']:.1f} s", flush=True)
            raise
        entry.update(status="ok", seconds=time.perf_counter() - t0, html=html_path.name, ipynb=f"{name}.ipynb",
                     provenance=read_provenance(out_dir, name))
        if progress:
            print(f"ok in {entry['seconds']:.1f} s", flush=True)
    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    index = write_index(out_dir, info, entries)
    if progress:
        print(f"index: {index}", flush=True)
    return index
