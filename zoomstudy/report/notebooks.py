"""Run the study's notebooks headless and publish them as a small self-contained report site.

The notebooks are the study: each one is parameterised by papermill (a cell tagged "parameters")
and is run once per *profile*, a named parameter set saying where the data and the models come from
and what hardware runs them:

* "offline" (default): the controlled experiment's world and models (synthetic stand-ins where a
  notebook needs them), no network; runs anywhere.
* "local": the user's own images, labels and checkpoint (by default the real-data kit in
  ../shared/realdata, or $ZOOMSTUDY_REALDATA), no network.
* "quick": a small pretrained model and a few hundred hub images; CPU with internet.
* "paper": the paper's models and datasets; GPU with internet.

The profile resolves inside the notebook: its parameters cell declares `profile`, `report_dir` and
every parameter, leaving at None those a profile provides, and the next cell calls
`notebook_parameters(profile, "<notebook>", globals())`, which fills them from PROFILES with the
values set in the cell overriding the profile's. `reproduce` injects the same resolution
(`resolve_parameters`), so a notebook run by hand and one run headless get the same values.

`reproduce` runs every notebook of a folder in order with one profile, renders each executed
notebook to HTML written to be read (`render_html`: figures embedded, so a report is one file to
open or mail; code folded; no install cell, injected parameters or stderr) and writes index.html,
which leads with each notebook's headline findings and puts the run's provenance below. It stops at
the first failing notebook, leaving an index that shows what succeeded and where it failed.

Conventions for a notebook (report_dir is injected by reproduce / run_notebook, None by hand;
$ZOOMSTUDY_NOTEBOOK names the notebook for its kernel):

    record_findings(report_dir, sentences, figure=fig)   # <notebook>.findings.json + .thumb.png
    record_provenance(report_dir, {"dataset_revision": ..., "n_images": ...})  # <notebook>.provenance.json

Both do nothing but return when report_dir is None (an interactive session).
"""
from __future__ import annotations

import copy
import datetime as _dt
import html
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

#: Environment variable naming the running notebook inside its kernel (set by run_notebook).
NOTEBOOK_ENV = "ZOOMSTUDY_NOTEBOOK"
#: Key of a profile's parameters shared by all notebooks (notebook-specific entries override it).
COMMON = "*"
DEFAULT_PROFILE = "offline"


def _realdata_dir() -> str:
    """The real-data kit: $ZOOMSTUDY_REALDATA, else ../shared/realdata next to the repository."""
    default = Path(__file__).resolve().parents[3] / "shared" / "realdata"  # <checkout>/zoomstudy/report/this file
    return os.environ.get("ZOOMSTUDY_REALDATA", str(default))


def _default_profiles() -> dict[str, dict[str, dict[str, Any]]]:
    rd = _realdata_dir()
    # A reduced grid (6 scales x 3 x 3 = 54 views, zoom out to zoom in) for CPU runs of a few minutes.
    reduced_scales = [64, 128, 224, 256, 320, 448]
    # ImageNet-Hard for the local profile: a local copy named by $ZOOMSTUDY_IMAGENET_HARD, else the
    # synthetic multi-label stand-in (no network in that profile).
    local_hard = "imagenet-hard" if os.environ.get("ZOOMSTUDY_IMAGENET_HARD") else "synthetic-hard:24"
    return {
        "offline": {
            # the paper in miniature: the world model trained like ImageNet models (RandomResizedCrop)
            # on photo-like world images (varied position and size, centre preference), 35 scales x 3 x 3
            COMMON: {"model": "world:rrc", "checkpoint": None, "pretrained": False,
                     "dataset": "world-photo:96", "root": None, "scales": None, "grid": 3, "crop": 56,
                     "max_images": None, "results_dir": "results/offline", "device": "cpu"},
            # the world's ImageNet-Hard (experiment/hard_set.py), compared with the photo set above
            "04_imagenet_hard": {"dataset": "world-hard:150", "plain_protocol": "sweep",
                                 "compare_with": ["world-photo"]},
            "05_zoom_sensitivity": {"models": [], "checkpoints": [], "sizes": [32, 40, 48, 56, 64, 80, 96, 112]},
            # MEMO on all 96 images, the paper's K = 16, three view seeds. Its SGD step 0.00025 was tuned for
            # ResNet-50 and moves this small CNN by nothing (MEMO = baseline on every image); on a held-out
            # draw (96 photo-like images, seed 1) accuracy rises with the step and plateaus from 0.05
            # (README, "The controlled experiment"), so the world uses 0.05.
            "03_test_time_augmentation": {"memo_k": 16, "memo_seeds": [0, 1, 2], "memo_max_images": None,
                                          "memo_lr": 0.05},
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
#:   notebooks then analyse the one trained like ImageNet models ("world:rrc", RandomResizedCrop) on
#:   96 photo-like world images ("world-photo:96") with the paper's scales scaled to its 56-px input
#:   (35 distinct scales): minutes on a CPU, no network. 04_imagenet_hard measures it on the world's
#:   ImageNet-Hard ("world-hard:150", built by experiment/hard_set.py as a local parquet).
#: * local: the real-data kit (SqueezeNet 1.0 Deep Compression weights, its 100 ImageNet images),
#:   the paper's 324 views; compared with the kit's reference figures. ImageNet-Hard from
#:   $ZOOMSTUDY_IMAGENET_HARD when set, else the stand-in.
#: * quick: torchvision ResNet-18 (V1 weights, a paper model) on the first 300 ImageNet-Hard images
#:   from the hub at the pinned commit (only the first of its 9 parquet files, ~190 MB, is downloaded;
#:   the 10,980-row guard applies, from the files' parquet footers), 6 scales.
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


#: Names a notebook's namespace holds that are not parameters (IPython's own).
_NOT_PARAMETERS = frozenset({"In", "Out", "get_ipython", "exit", "quit", "profile", "report_dir"})


def _plain(value: Any) -> bool:
    """A value a parameters cell can hold: None, bool, number, string, or lists / dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class Parameters(dict):
    """A notebook's resolved parameters: a dict that also reads as attributes (`p.model`).

    Attribute access keeps the notebook cells short and fails loudly on a misspelt name, where
    `p.get("modle")` would quietly give None.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}; parameters are {sorted(self)}") from None


def notebook_parameters(profile: str | None, notebook: str | Path, namespace: Mapping[str, Any],
                        ) -> Parameters:
    """The parameters a notebook runs with, resolved inside the notebook: the one call after its parameters cell.

    A parameters cell declares `profile`, `report_dir` and every parameter; a parameter whose value
    is None takes the profile's value (PROFILES[profile]["*"] < PROFILES[profile][notebook]), any
    other value overrides the profile. The notebook passes its namespace (`globals()`): the
    parameters are its plain values (None, numbers, strings, lists, dicts; no modules, functions,
    private or IPython names). So a notebook run by hand with `profile = "quick"` gets the quick
    profile's model and data, exactly as `zoomstudy reproduce --profile quick` (which injects the
    profile's values, resolved the same way) gives it.

    profile None means DEFAULT_PROFILE. A parameter that is None and that the profile does not set
    stays None (the notebook's own meaning of None, e.g. "all images").
    """
    profile = DEFAULT_PROFILE if profile is None else profile
    if not isinstance(namespace, Mapping):
        raise ValueError(f"notebook_parameters: namespace must be a dict such as globals(), got {type(namespace).__name__}")
    given = {k: v for k, v in namespace.items()
             if isinstance(k, str) and k.isidentifier() and not k.startswith("_") and k not in _NOT_PARAMETERS
             and _plain(v)}
    explicit = {k: v for k, v in given.items() if v is not None}
    resolved = resolve_parameters(profile, notebook, explicit)
    for k in given:
        resolved.setdefault(k, None)
    resolved["report_dir"] = namespace.get("report_dir")
    return Parameters(resolved)


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

#: The report page: nbconvert's lab template, with every code input folded into a <details> element
#: (one click opens it), no prompts, no script or font fetched from the network (the reports open
#: offline), and a narrower, paper-like column.
_REPORT_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}<style type="text/css">
body.jp-Notebook { max-width: 64rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
.jp-Notebook .jp-Cell { padding: 0.15rem 0; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
details.zs-code > summary { cursor: pointer; color: #777; font-size: 0.78rem; font-family: ui-monospace, Menlo, monospace;
                            list-style: none; user-select: none; }
details.zs-code > summary::before { content: "\25b8  "; }
details.zs-code[open] > summary::before { content: "\25be  "; }
details.zs-code > summary::-webkit-details-marker { display: none; }
details.zs-code[open] { border-left: 3px solid #ddd; padding-left: 0.5rem; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table { font-size: 0.85rem; }
.jp-RenderedHTMLCommon caption { width: max-content; max-width: 56rem; text-align: left; color: #444; }
.zs-nav { font-size: 0.85rem; margin-bottom: 1rem; }
</style>{% endblock extra_css %}
{% block input_group -%}
<details class="zs-code"><summary>{{ "parameters" if "parameters" in cell.metadata.get("tags", []) else "code" }}</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""


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
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"zoomstudy_report.html.j2": _REPORT_TEMPLATE})],
                            template_file="zoomstudy_report.html.j2")
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


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 64rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin: 0 0 0.4rem; }
h3 { font-size: 1rem; margin-top: 1.5rem; }
.lead { color: #555; margin-top: 0; }
.nb { display: flex; gap: 1.2rem; align-items: flex-start; border-top: 1px solid #e5e5e5; padding: 1.2rem 0; }
.nb .text { flex: 1; min-width: 0; } .nb ul { margin: 0.3rem 0 0.5rem 1.1rem; padding: 0; }
.nb li { margin: 0.15rem 0; } .thumb img { width: 300px; border: 1px solid #e5e5e5; border-radius: 4px; }
.links { font-size: 0.9rem; } .muted { color: #777; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem;
        text-align: left; vertical-align: top; font-size: 0.85rem; }
th { background: #f5f5f5; } code, pre { font-family: ui-monospace, Menlo, monospace; font-size: 0.8rem; }
pre { margin: 0; white-space: pre-wrap; }
details { margin: 0.3rem 0; } summary { cursor: pointer; color: #555; font-size: 0.9rem; }
.status { font-weight: bold; font-size: 0.8rem; padding: 0.05rem 0.45rem; border-radius: 0.3rem; color: white; }
.ok { background: #1a9850; } .failed { background: #d73027; } .running { background: #4575b4; }
.not-run, .pending { background: #999; }
.error { color: #d73027; font-family: ui-monospace, Menlo, monospace; font-size: 0.85rem; }
.provenance { margin-top: 2.5rem; border-top: 2px solid #ccc; }
"""


def _value_html(value: Any) -> str:
    """Strings as they are, short values as the Python literal papermill injects (False, None);
    long lists and dicts folded, so that no cell of the index is a wall of JSON."""
    text = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str) and len(text) > 80:
        short = f"{type(value).__name__} of {len(value)}" if hasattr(value, "__len__") else "value"
        return f"<details><summary>{html.escape(short)}</summary><pre>{html.escape(json.dumps(value, indent=1, default=_jsonable))}</pre></details>"
    return f"<code>{html.escape(text)}</code>"


def _dict_table(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "<p><em>none</em></p>"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_value_html(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _findings_html(e: dict) -> str:
    """One notebook's block at the top of the index: title, status, findings, thumbnail, links."""
    name = html.escape(e["name"])
    title = html.escape(e.get("title") or e["name"])
    found = e.get("findings") or {}
    report = html.escape(e["html"]) if e.get("html") else None
    head = f"<h2 id='{name}'>{title}</h2>"
    links = []
    if report:
        links.append(f"<a href='{report}'>full report</a>")
    if e.get("ipynb"):
        links.append(f"<a href='{html.escape(e['ipynb'])}'>executed notebook</a>")
    for text, href in (found.get("links") or {}).items():
        links.append(f"<a href='{html.escape(href)}'>{html.escape(text)}</a>")
    status = "" if e["status"] == "ok" else f" <span class='status {e['status']}'>{e['status']}</span>"
    meta = f"<p class='links'><code>{name}</code>{status}" + (" &middot; " + " &middot; ".join(links) if links else "") + "</p>"
    body = ""
    if found.get("findings"):
        body = "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in found["findings"]) + "</ul>"
    elif e["status"] == "ok":
        body = "<p class='muted'>This notebook records no headline findings; see its report.</p>"
    elif e["status"] in ("pending", "running", "not-run"):
        body = f"<p class='muted'>{'Running now.' if e['status'] == 'running' else 'Not run (yet).'}</p>"
    if e.get("error"):
        body += f"<p class='error'>{html.escape(e['error'])}</p>"
    thumb = ""
    if found.get("thumbnail"):
        img = f"<img src='{html.escape(found['thumbnail'])}' alt='headline figure of {name}'>"
        thumb = f"<div class='thumb'>{f'<a href={chr(39)}{report}{chr(39)}>{img}</a>' if report else img}</div>"
    return f"<div class='nb'><div class='text'>{head}{meta}{body}</div>{thumb}</div>"


def _index_html(info: dict, entries: list[dict]) -> str:
    profile = html.escape(info["profile"])
    done = sum(e["status"] == "ok" for e in entries)
    when = info.get("finished") or info.get("started")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>zoomstudy reports ({profile})</title><style>{_CSS}</style></head><body>",
        "<h1>zoomstudy: zoom, position and cropping in image classifiers</h1>",
        f"<p class='lead'>Profile <code>{profile}</code>: {done} of {len(entries)} notebooks ran"
        + (f", {html.escape(str(when))}" if when else "") + ". What each one found, then the run's provenance.</p>",
    ]
    parts += [_findings_html(e) for e in entries]
    versions = info.get("versions") or {}
    parts += [
        "<div class='provenance'><h2 style='margin-top:1rem'>Provenance</h2>",
        "<p class='muted'>Every number above comes from this run: "
        f"profile <code>{profile}</code>, git commit <code>{html.escape(str(info.get('git_commit')))}</code>, "
        + ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in versions.items() if v) + ".</p>",
        "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>what produced it</th></tr>",
    ]
    for e in entries:
        secs = f"{e['seconds']:.1f}" if e.get("seconds") is not None else ""
        prov = e.get("provenance") or {}
        statement = prov.get("statement") or " ".join(prov.get("statements") or [])
        parts.append(f"<tr><td><a href='#{html.escape(e['name'])}'>{html.escape(e['name'])}</a></td>"
                     f"<td><span class='status {e['status']}'>{e['status']}</span></td><td>{secs}</td>"
                     f"<td>{html.escape(str(statement))}</td></tr>")
    parts.append("</table>")
    parts.append("<details><summary>the run</summary>" + _dict_table({k: v for k, v in info.items() if k != "versions"})
                 + "</details>")
    for e in entries:
        parts.append(f"<details><summary>{html.escape(e['name'])}: parameters and recorded provenance</summary>"
                     "<h3>Parameters</h3>" + _dict_table(e.get("parameters")))
        if e.get("provenance") is not None:
            parts.append("<h3>Provenance</h3>" + _dict_table(e["provenance"]))
        parts.append("</details>")
    parts.append("</div></body></html>")
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
         "ipynb": None, "error": None, "provenance": None, "findings": None, "title": notebook_title(p),
         "parameters": {**resolve_parameters(profile, p.stem, overrides), "report_dir": report_dir}}
        for p in paths
    ]  # every notebook's parameters are resolved (and checked) before anything runs
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
