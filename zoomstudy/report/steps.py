"""One call per notebook step: the logic the study notebooks run, kept here so that it is tested.

Every study notebook follows one pattern. Its parameters cell declares the parameters it takes
(`report.profiles`), the next cell resolves them (`profiles.notebook_parameters`) into `p`
(attribute access: `p.model`, `p.alpha`), and each later code cell is one call of this module that
returns what the cell displays (a table, a figure, a `Shown` of several), with short prose in the
markdown cells between. The functions take `p` and the objects earlier steps returned; they print
what a reader of the report should know (which weights and data produced the numbers,
random-weights warnings). The last cell is one `record(p, <notebook>_record(...))`: the
`*_record` functions turn a notebook's numbers into the sentences the report index leads with (so no
finding is typed by hand) and the provenance it keeps, and `record` writes both.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The first finding of a run with random weights, so that no reader takes its numbers for a result.
RANDOM_WEIGHTS_FINDING = "Random weights: these numbers check the pipeline end to end, not the paper's claims."
RANDOM_WEIGHTS_NOTE = ("Random weights: accuracies near chance level are expected. This run checks the pipeline end "
                       "to end; it does not reproduce the paper's numbers (use the local, quick or paper profile for that).")


def quiet_progress_warning() -> None:
    """tqdm.auto warns "IProgress not found" in a kernel without ipywidgets, then falls back to a text
    bar; the fallback is what we want, so the warning (a TqdmWarning) is silenced once, here."""
    try:
        from tqdm import TqdmWarning
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    warnings.filterwarnings("ignore", category=TqdmWarning, message="IProgress not found")


class Shown(tuple):
    """What one step shows, in order: tables (DataFrames, Stylers), figures; None items are skipped.

    A cell that ends with a step returning a Shown displays every item, so a step that shows a table
    and its figure is still one call."""

    def __new__(cls, *items):
        return super().__new__(cls, items)

    def _ipython_display_(self):
        from IPython.display import display

        for item in self:
            if item is not None:
                display(item)


def styled(frame: pd.DataFrame, formats: Mapping[str, str] | None = None, *, precision: int = 2,
           caption: str | None = None):
    """A table as the reports show it: `precision` decimals (or per-column `formats`), "-" for NaN,
    no index, an optional caption."""
    style = frame.style.format(formats, precision=precision, na_rep="-").hide(axis="index")
    return style.set_caption(caption) if caption else style


@dataclass
class Record:
    """What a notebook's last cell records: its headline findings (sentences computed from its
    numbers), the figure shown beside them in the index, links (text -> file in report_dir), the
    provenance dict, and the provenance sentences printed under the findings."""

    findings: list[str]
    provenance: dict
    figure: Any = None
    links: dict | None = None
    statements: Sequence[str] = ()


def record(p: Mapping[str, Any], rec: Record):
    """A notebook's last step: write its findings (and thumbnail) and its provenance for the report
    index (`notebooks.record_findings` / `record_provenance`; nothing is written in an interactive
    session, p.report_dir None), print the provenance sentences, and return the findings, which the
    cell displays as a list."""
    from zoomstudy.report import notebooks

    found = notebooks.record_findings(p.get("report_dir"), rec.findings, figure=rec.figure, links=rec.links)
    notebooks.record_provenance(p.get("report_dir"), rec.provenance)
    for line in rec.statements:
        print(line)
    return found


# ================================================================================================
# the sweep (notebooks 01, 02, 03, 04)
# ================================================================================================
@dataclass
class SweepResults:
    """A notebook's sweep as its steps read it: the result set, its grid, the provenance of its numbers
    and the correctness matrix (bool [images, views], top-1 in the image's label set). Named apart from
    `sweep.engine.sweep` (which runs one) and the store's `ResultSet` (which holds one)."""

    result_set: Any
    grid: Any
    info: dict
    correct: np.ndarray
    #: the data it was swept on (a spec or registry name, its root, the image limit) and the label
    #: space asked for (None: the sweep's default): what `source` reopens
    data: tuple = (None, None, None)
    label_space: str | None = None

    @cached_property
    def source(self):
        """The sweep's images, opened once (the gallery and the explorer decode them again)."""
        from zoomstudy import study

        spec, root, max_images = self.data
        return study.open_data(spec, root, max_images=max_images)

    @property
    def settings(self) -> dict:
        return self.result_set.settings

    @property
    def random_weights(self) -> bool:
        from zoomstudy.provenance import is_random_weights

        return is_random_weights(self.settings)

    @property
    def n_classes(self) -> int:
        """Classes of the label space the predictions were scored in (1000 for ImageNet-1k, 12 on the world)."""
        return int(self.settings["key"]["model"]["label_space"]["n_classes"])


def chance_saturation(sweep) -> str | None:
    """The clause a finding adds when a uniform guesser with as many tries as the grid has views would
    reach the any-view bound too (Table 1's random row at 50% or more): with few classes, hundreds of
    views cover every label by chance, so the bound says nothing about framing. None otherwise (with
    ImageNet's 1000 classes the paper's 324 views give a guesser 32.4%)."""
    from zoomstudy.analysis.bounds import random_bound

    v, k = sweep.grid.n_views, sweep.n_classes
    chance = random_bound(v, k)
    if chance < 50:
        return None
    return (f"{v} random guesses among {k} classes would reach {chance:.0f}% too, so this bound is saturated by "
            f"chance; the cross-validated top-N is the informative bound here")


def open_sweep(p: Mapping[str, Any], *, dataset: str | None = None, root: str | None = None,
               label_space: str | None = None, verbose: bool = True) -> SweepResults:
    """Run the notebook's sweep, or read back a finished one, and say what produced its numbers.

    p: the resolved parameters (model, checkpoint, pretrained, dataset, root, scales, grid, crop,
    max_images, results_dir, device, profile, report_dir). dataset / root replace p's (notebook 04
    sweeps its resolved stand-in); label_space None keeps the sweep's default (ImageNet-1k).
    Progress bars are shown in an interactive session only (report_dir None).
    """
    from zoomstudy import study
    from zoomstudy.report import provenance_text

    quiet_progress_warning()
    kw = {} if label_space is None else {"label_space": label_space}
    rs = study.ensure_results(p["model"], dataset or p["dataset"], checkpoint=p["checkpoint"],
                              root=root if dataset is not None else p["root"], scales=p["scales"], grid=p["grid"],
                              crop=p["crop"], results_dir=p["results_dir"], max_images=p["max_images"],
                              pretrained=p["pretrained"], device=p["device"], progress=p.get("report_dir") is None, **kw)
    info = provenance_text.provenance_info(rs, p["profile"], p["checkpoint"])
    data = (dataset or p["dataset"], root if dataset is not None else p["root"], p["max_images"])
    out = SweepResults(rs, rs.grid, info, rs.correct(), data=data, label_space=label_space)
    if verbose:
        print(info["statement"])
        print(f"{out.correct.shape[0]} images x {out.grid.n_views} views; {len(rs.errors())} undecodable images left "
              f"out; result set {rs.path}")
        if out.random_weights:
            print(RANDOM_WEIGHTS_NOTE)
    return out


# ================================================================================================
# 01: oracle accuracy
# ================================================================================================
def explorer_page(sweep: SweepResults, source, report_dir: str | Path | None, max_images: int | None = None) -> Path:
    """The view explorer of the notebook's sweep (`report.explorer`), next to the report (or in the
    result set's folder in an interactive session): explorer-<result set key>.html, the first
    max_images images (default `explorer.MAX_IMAGES`)."""
    from zoomstudy.report.explorer import MAX_IMAGES, write_explorer

    folder = Path(report_dir) if report_dir else Path(sweep.result_set.path)
    folder.mkdir(parents=True, exist_ok=True)
    return write_explorer(sweep.result_set, source, folder / f"explorer-{Path(sweep.result_set.path).name}.html",
                          max_images=MAX_IMAGES if max_images is None else max_images)


def _acc(table: pd.DataFrame, key: str) -> float | None:
    rows = table[table["key"] == key]
    return None if rows.empty or pd.isna(rows["accuracy"].iloc[0]) else float(rows["accuracy"].iloc[0])


def oracle_findings(table: pd.DataFrame, sweep: SweepResults, cover_length: int, top_n: int) -> list[str]:
    """Headline sentences of notebook 01 from its Table 1 frame (`table1`)."""
    n, v = sweep.correct.shape
    where = f"{sweep.info['model']} on {sweep.info['dataset']} ({n} images, {v} views each)"
    out = [RANDOM_WEIGHTS_FINDING] if sweep.random_weights else []
    std, upper = _acc(table, "standard"), _acc(table, "upper_all")
    if std is not None:
        s = (f"{where}: 1-crop accuracy is {std:.1f}%; the right framing among the {v} views would reach "
             f"{upper:.1f}% (+{upper - std:.1f} points)")
    else:
        s = f"{where}: the right framing among the {v} views would reach {upper:.1f}% (the grid has no 1-crop view)"
    chance = chance_saturation(sweep)
    out.append(s + (f", but {chance}." if chance else "."))
    topn, cv = _acc(table, "upper_topn"), _acc(table, "upper_topn_cv")
    if topn is not None:
        s = f"The greedy top-{top_n} views reach {topn:.1f}%"
        if cv is not None:
            s += f" ({cv:.1f}% when chosen on other images by cross-validation)"
        out.append(s + (f"; {cover_length} views together solve every image any view solves." if cover_length
                        else "; no view solves any image."))
    return out


def table1(p: Mapping[str, Any], sweep: SweepResults) -> pd.DataFrame:
    """Table 1 of the sweep (`analysis.bound_tables.bounds_frame`): 1-crop, the bounds, random rows."""
    from zoomstudy.analysis import bound_tables

    return bound_tables.bounds_frame(sweep.correct, sweep.grid, model=sweep.info["model"],
                                     dataset=sweep.info["dataset"], top_n=p["top_n"], folds=p["cv_folds"],
                                     seed=p["seed"], alpha=p["alpha"], n_classes=sweep.n_classes)


def table1_figure(sweep: SweepResults, table: pd.DataFrame):
    """Table 1 as bars with their intervals (the random rows, which have none, left out)."""
    from zoomstudy.report import plots

    return plots.bar_with_ci(table.dropna(subset=["ci_low"]), x="metric", y="accuracy", lo="ci_low", hi="ci_high",
                             title=f"{sweep.info['model']} on {sweep.info['dataset']} ({sweep.correct.shape[0]} images)",
                             ylabel="top-1 accuracy (%)")


def compare_view(comparison: Mapping[str, Any], **kw):
    """A comparison dict (ours, paper, on, value_cols, caption) as `plots.compare_table` shows it."""
    from zoomstudy.report import plots

    return plots.compare_table(comparison["ours"], comparison["paper"], on=comparison["on"],
                               value_cols=comparison["value_cols"], caption=comparison["caption"], **kw)


def table1_comparison(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame) -> tuple[list[int], Any]:
    """The whole greedy cover, and Table 1 beside its published target (`bound_tables.reference_comparison`),
    or, when no published number is comparable, the paper's Table 1 for orientation. Returns (cover,
    the table to show)."""
    from zoomstudy.analysis import bound_tables, bounds, paper

    cover = bounds.greedy_cover(sweep.correct)  # it stops when no view adds an image
    print(f"The greedy cover solves every solvable image with {len(cover)} of {sweep.grid.n_views} views.")
    comparison = bound_tables.reference_comparison(sweep.settings, table, top_n=p["top_n"], cover_length=len(cover))
    if comparison is not None:
        return cover, compare_view(comparison)
    print("No published number is comparable to this run (other model, data, weights or grid); "
          "the paper's Table 1 (1-crop / any of 324 views) for orientation:")
    published = paper.TABLE1.pivot(index="model", columns="dataset", values=["standard", "upper_324"])
    return cover, published.reindex(index=list(paper.MODELS)).style.format(precision=2)


def accuracy_vs_scale(p: Mapping[str, Any], sweep: SweepResults):
    """Accuracy against scale: the centre view and the best anchor at each scale, with intervals."""
    from zoomstudy.analysis import bounds
    from zoomstudy.report import plots

    per_scale = bounds.accuracy_vs_scale(sweep.correct, sweep.grid, alpha=p["alpha"])
    series = {"center": "centre view", "any_anchor": f"any of {sweep.grid.n_anchors} anchors"}
    return plots.accuracy_vs_scale(plots.series_table(per_scale, series), crop=sweep.grid.crop,
                                   title=sweep.info["dataset"])


def zoom_groups(p: Mapping[str, Any], sweep: SweepResults):
    """The bound of each zoom group and the images only it solves, as bars; prints the exclusive share."""
    from zoomstudy.analysis import bound_tables, bounds
    from zoomstudy.report import plots

    groups = bound_tables.group_table(sweep.correct, sweep.grid, alpha=p["alpha"])
    only = bounds.exclusive_solves(sweep.correct, sweep.grid)["any"]
    print(f"{only:.1f}% of the images are solved by one group of views only.")
    return plots.bar_with_ci(groups, x="group", y="accuracy", lo="ci_low", hi="ci_high", hue="measure",
                             title="bounds per zoom group", ylabel="% of images")


@dataclass
class Example:
    """One image shown view by view: its row in the sweep, the gallery of its centre views at every
    scale and the zoom map of all its views."""

    row: int
    image_id: str
    gallery: Any
    zoom_map: Any


def example_image(p: Mapping[str, Any], sweep: SweepResults) -> Example:
    """The image notebook 01 shows view by view: p.gallery_image, else one that zoom rescues
    (`examples.pick_example`), its centre views rendered again from the decoded image; prints what it is."""
    from zoomstudy.analysis import hard
    from zoomstudy.data.labels import class_name
    from zoomstudy.data.source import load_sample
    from zoomstudy.report import examples, plots

    g, correct = sweep.grid, sweep.correct
    images = hard.image_table(sweep.result_set)
    centre = [g.view_index(s, g.center, g.center) for s in g.scales]
    row = (examples.pick_example(correct, g.standard_view, shown=centre) if p["gallery_image"] is None
           else int(p["gallery_image"]))
    sample = load_sample(sweep.source, int(images.loc[row, "position"]))
    _, top1, conf = sweep.result_set.predictions()
    views, centre = examples.centre_views(sample.image, g)
    truth = ", ".join(class_name(c, names=sweep.result_set) for c in images.loc[row, "labels"])
    print(f"image {sample.image_id} ({sample.image.width} x {sample.image.height}), label: {truth}; "
          f"solved by {int(correct[row].sum())} of {g.n_views} views")
    gallery = plots.view_gallery(views, names=[f"S={s}: {class_name(top1[row, v], names=sweep.result_set)}" for s, v in zip(g.scales, centre)],
                                 correct=correct[row, centre], conf=conf[row, centre],
                                 title=f"{sample.image_id} (label: {truth}): centre view at each scale")
    zoom_map = plots.zoom_map(correct[row].reshape(g.n_scales, -1), conf[row].reshape(g.n_scales, -1),
                              scales=g.scales, crop=g.crop, title=sample.image_id)
    return Example(row, sample.image_id, gallery, zoom_map)


@dataclass
class Link:
    """A page written next to the report, shown as a link (relative in a report, absolute by hand)."""

    path: Path
    text: str
    relative: bool

    def _repr_html_(self) -> str:
        import html

        href = self.path.name if self.relative else str(self.path)
        return f"<p><a href='{html.escape(href)}'>{html.escape(self.text)}</a> ({html.escape(self.path.name)})</p>"


def view_explorer(p: Mapping[str, Any], sweep: SweepResults) -> Link:
    """The sweep's view explorer (`explorer_page`), as a link to show."""
    page = explorer_page(sweep, sweep.source, p.get("report_dir"))
    return Link(page, "Open the view explorer", relative=bool(p.get("report_dir")))


def oracle_record(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame, cover: Sequence[int], figure,
                  explorer: Link) -> Record:
    """Notebook 01's findings (`oracle_findings`) and provenance: the sweep's, Table 1's accuracies by
    key, the cover's length; the explorer linked from the index."""
    provenance = {**sweep.info, "n_images": int(sweep.correct.shape[0]), "top_n": int(p["top_n"]),
                  "results": dict(zip(table["key"], table["accuracy"].round(4))), "cover_length": len(cover)}
    return Record(oracle_findings(table, sweep, len(cover), p["top_n"]), provenance, figure,
                  {"view explorer": explorer.path.name}, [sweep.info["statement"]])


# ================================================================================================
# 02: centre bias
# ================================================================================================
def centre_share_table(summary: Mapping[str, Any], sweep: SweepResults) -> pd.DataFrame:
    """The share of the greedy top-N views at the centre, beside uniform, the paper and (for the
    real-data kit's run) the kit's reference figure."""
    from zoomstudy.analysis import bound_tables

    return bound_tables.centre_share_table(summary["cover_topn"], sweep.grid,
                                           realdata=bound_tables.is_realdata(sweep.settings))


def centre_findings(summary: Mapping[str, Any], sweep: SweepResults, top_n: int) -> list[str]:
    """Headline sentences of notebook 02 from analysis.bounds.summarize."""
    from zoomstudy.analysis import paper

    g = sweep.grid
    out = [RANDOM_WEIGHTS_FINDING] if sweep.random_weights else []
    bounds = np.asarray(summary["anchor_bounds"], float)
    if g.grid % 2:
        c = g.center
        others = np.delete(bounds.ravel(), c * g.grid + c)
        out.append(f"{sweep.info['model']} on {sweep.info['dataset']}: the per-anchor bound is {bounds[c, c]:.1f}% at "
                   f"the centre against {others.mean():.1f}% on average off-centre "
                   f"({bounds[c, c] - others.mean():+.1f} points).")
        share, n_cover = summary["center_share"], len(summary["cover_topn"])
        if n_cover and not math.isnan(share):
            out.append(f"{share:.1f}% of the greedy top-{top_n} views ({n_cover} views) sit at the centre, against "
                       f"{100 / g.n_anchors:.1f}% if uniform and {paper.CENTER_SHARE_TOP36}% in the paper.")
        else:
            out.append("No view solves any image: the centre share of the greedy views is undefined.")
    return out


def anchor_bounds(p: Mapping[str, Any], sweep: SweepResults) -> tuple[dict, Any]:
    """Section 3's numbers of the sweep (`analysis.bounds.summarize`) and the per-anchor bound beside
    the published grids (`bound_tables.anchor_references`), one colour scale per panel."""
    from zoomstudy.analysis import bound_tables, bounds
    from zoomstudy.report import plots

    summary = bounds.summarize(sweep.correct, sweep.grid, top_n=p["top_n"], alpha=p["alpha"])
    panels = {f"this run: {sweep.info['model']}": summary["anchor_bounds"],
              **bound_tables.anchor_references(sweep.settings)}
    return summary, plots.anchor_panels(panels, title="upper bound per anchor (%)")


def anchor_comparison(sweep: SweepResults, summary: Mapping[str, Any]):
    """This run's per-anchor bound beside the same grid published for the same model and data, or
    None (nothing shown) when there is no such reference."""
    from zoomstudy.analysis import bound_tables

    comparison = bound_tables.anchor_comparison(sweep.settings, summary["anchor_bounds"])
    return None if comparison is None else compare_view(comparison)


def anchor_bound_bars(p: Mapping[str, Any], sweep: SweepResults):
    """The per-anchor bound as bars with 95% intervals, the centre first."""
    from zoomstudy.analysis import bound_tables
    from zoomstudy.report import plots

    anchors = bound_tables.anchor_bound_table(sweep.correct, sweep.grid, alpha=p["alpha"])
    return plots.bar_with_ci(anchors, x="anchor", y="accuracy", lo="ci_low", hi="ci_high",
                             title="upper bound per anchor, with 95% intervals", ylabel="% of images")


def cover_anchors(p: Mapping[str, Any], sweep: SweepResults, summary: Mapping[str, Any]) -> Shown:
    """Where the greedy top-N views sit: the centre's share beside uniform and the paper, and the
    share at every anchor as a map."""
    from zoomstudy.analysis import paper
    from zoomstudy.report import plots

    share, n_cover, g = summary["cover_anchor_share"], len(summary["cover_topn"]), sweep.grid
    if n_cover == 0:
        print("No view solves any image: the greedy cover is empty and the shares are undefined.")
    limits = {"vmin": 0.0, "vmax": 100.0} if not np.isfinite(share).any() else {"vmin": 0.0}
    figure = plots.anchor_grid(share, cbar_label="share of the views (%)", **limits,
                               title=f"anchors of the greedy top-{p['top_n']} views ({n_cover} views)\n"
                                     f"uniform: {100 / g.n_anchors:.1f}% each; paper: {paper.CENTER_SHARE_TOP36}% "
                                     "at the centre")
    return Shown(styled(centre_share_table(summary, sweep)), figure)


def cover_scales(p: Mapping[str, Any], sweep: SweepResults, summary: Mapping[str, Any]):
    """The scales of the greedy top-N views (their share at each scale)."""
    from zoomstudy.analysis import bound_tables
    from zoomstudy.report import plots

    return plots.accuracy_vs_scale(bound_tables.cover_scale_table(summary["cover_topn"], sweep.grid),
                                   crop=sweep.grid.crop, ylabel=f"share of the top-{p['top_n']} views (%)",
                                   title=f"scales of the greedy top-{p['top_n']} views")


def centre_tests(p: Mapping[str, Any], sweep: SweepResults) -> Shown:
    """Exact McNemar tests of the centre against each other anchor, Holm-adjusted: for the per-anchor
    bounds (any scale), then for the single views at the 1-crop scale when the grid has one."""
    from zoomstudy.analysis import bound_tables, bounds

    g, alpha = sweep.grid, p["alpha"]
    tests = bound_tables.mcnemar_table(bounds.center_vs_anchors(sweep.correct, g), alpha=alpha)
    shown = [styled(tests, precision=3, caption="per-anchor bound, any scale")]
    if g.standard_view is not None:
        at = g.standard_scale
        single = bound_tables.mcnemar_table(bounds.center_vs_anchors(sweep.correct, g, scale=at), alpha=alpha)
        shown.append(styled(single, precision=3, caption=f"single views at scale {at}"))
    return Shown(*shown)


def centre_record(p: Mapping[str, Any], sweep: SweepResults, summary: Mapping[str, Any], figure) -> Record:
    """Notebook 02's findings (`centre_findings`) and provenance: the sweep's, the centre share, the
    per-anchor bounds and the cover's length."""
    provenance = {**sweep.info, "n_images": int(sweep.correct.shape[0]), "top_n": int(p["top_n"]),
                  "center_share": float(summary["center_share"]),
                  "anchor_bounds": np.round(summary["anchor_bounds"], 4).tolist(),
                  "cover_length": int(summary["cover_length"])}
    return Record(centre_findings(summary, sweep, p["top_n"]), provenance, figure, None, [sweep.info["statement"]])


# ================================================================================================
# 03: test-time augmentation
# ================================================================================================
def memo_arguments(p: Mapping[str, Any]) -> dict:
    """The model, weights and images MEMO adapts, from the notebook's memo_* parameters.

    memo_model None adapts the sweep's `model` with its `checkpoint` (unless memo_checkpoint is
    given); a different memo_model takes only memo_checkpoint (the sweep's checkpoint belongs to the
    other model). memo_pretrained None follows `pretrained`; memo_max_images None follows max_images.
    """
    own = p.get("memo_model") is None
    return {
        "model": p["model"] if own else p["memo_model"],
        "checkpoint": (p.get("memo_checkpoint") or p["checkpoint"]) if own else p.get("memo_checkpoint"),
        "pretrained": p["pretrained"] if p.get("memo_pretrained") is None else p["memo_pretrained"],
        "max_images": p["max_images"] if p.get("memo_max_images") is None else p["memo_max_images"],
    }


def run_memo(p: Mapping[str, Any], label_space: str):
    """Table 5: MEMO episodes (or the stored table of an earlier identical run); prints what ran.

    Returns the per-image table (attrs: settings, reused, path); analysis.table5.memo_summary makes the rows.
    """
    from zoomstudy import study
    from zoomstudy.analysis import table5
    from zoomstudy.provenance import is_random_weights

    quiet_progress_warning()
    a = memo_arguments(p)
    table = study.memo_table(a["model"], p["dataset"], a["checkpoint"], root=p["root"], pretrained=a["pretrained"],
                             label_space=label_space, device=p["device"], results_dir=p["results_dir"],
                          methods=p["memo_methods"], k=p["memo_k"], seeds=p["memo_seeds"], max_images=a["max_images"],
                          resize=round(p["crop"] * 256 / 224), crop=p["crop"], progress=p.get("report_dir") is None,
                          **({} if p.get("memo_lr") is None else {"lr": float(p["memo_lr"])}))
    settings = table.attrs["settings"]
    print(table5.memo_description(settings))
    print(("Read back from " if table.attrs["reused"] else "Computed and stored in ") + table.attrs["path"])
    if is_random_weights(settings):
        print("Random weights: MEMO's numbers here only show that the pipeline runs.")
    return table


def tta_findings(table: pd.DataFrame, memo_summary: pd.DataFrame | None, sweep: SweepResults,
                 curve: pd.DataFrame | None = None) -> list[str]:
    """Headline sentences of notebook 03 from Table 4 (tta.tta_table), the view budget
    (budget.budget_curve) and Table 5 (table5.memo_summary)."""
    from zoomstudy.analysis.budget import budget_findings

    out = [RANDOM_WEIGHTS_FINDING] if sweep.random_weights else []
    rows = table.dropna(subset=["delta"]) if "delta" in table.columns else table.iloc[0:0]
    if len(rows):
        best = rows.loc[rows["accuracy"].idxmax()]
        base = float(best["accuracy"] - best["delta"])
        out.append(f"Table 4 ({sweep.info['model']}, {int(table['n'].iloc[0])} images): 1-crop {base:.1f}%; the best "
                   f"aggregation, {best['method']}, gets {best['accuracy']:.1f}% ({best['delta']:+.1f} points"
                   + (f", McNemar p = {best['p_value']:.2g})." if not pd.isna(best["p_value"])
                      else "; no image changed correctness)."))
    if curve is not None and len(curve):
        out.append(budget_findings(curve))
    if memo_summary is not None and len(memo_summary):
        by = memo_summary.set_index("key")
        if "baseline" in by.index:
            parts = [f"{by.loc[k, 'method']} {by.loc[k, 'accuracy']:.1f}%" for k in ("memo_rrc", "memo_augmix")
                     if k in by.index]
            s = f"Table 5 (MEMO, {int(by.loc['baseline', 'n'])} images): baseline {by.loc['baseline', 'accuracy']:.1f}%"
            s += (", " + ", ".join(parts)) if parts else ""
            if {"memo_rrc", "memo_augmix"} <= set(by.index):
                r, a = by.loc["memo_rrc", "seconds_per_image"], by.loc["memo_augmix", "seconds_per_image"]
                if a and not (math.isnan(r) or math.isnan(a)):
                    s += f"; RRC views take {r / a:.2f} x the time of AugMix's (paper: {0.65 / 1.15:.2f} x)"
            out.append(s + ".")
    return out


#: How notebook 03 formats Table 4 and Table 5.
TABLE4_FORMAT = {"accuracy": "{:.2f}", "lo": "{:.2f}", "hi": "{:.2f}", "delta": "{:+.2f}", "p_value": "{:.3g}"}
TABLE5_FORMAT = {"accuracy": "{:.2f}", "spread": "{:.2f}", "acc_min": "{:.2f}", "acc_max": "{:.2f}", "lo": "{:.2f}",
                 "hi": "{:.2f}", "seconds_per_image": "{:.3f}", "delta": "{:+.2f}", "p_value": "{:.3g}"}


def open_tta_sweep(p: Mapping[str, Any]) -> SweepResults:
    """Notebook 03's sweep, scored in p.label_space (None: the dataset's own, e.g. ImageNet-A's 200
    classes; `study.resolve_label_space`); prints the label space used."""
    from zoomstudy import study

    sweep = open_sweep(p, label_space=study.resolve_label_space(p["dataset"], p["label_space"]))
    print(f"label space {sweep.settings['key']['model']['label_space']['name']}")
    return sweep


def tta_table(p: Mapping[str, Any], sweep: SweepResults) -> pd.DataFrame:
    """Table 4 from the stored sweep (`analysis.tta.tta_table`); says how many unlabelled images it leaves out."""
    from zoomstudy.analysis import tta

    table = tta.tta_table(sweep.result_set, alpha=p["alpha"])
    if table.attrs.get("left_out"):
        print(f"{table.attrs['left_out']} images without a label are left out of every row.")
    return table


def tta_figure(sweep: SweepResults, table: pd.DataFrame):
    """Table 4 as bars: one group of views per bar group, mean and max aggregation side by side."""
    from zoomstudy.analysis import tta
    from zoomstudy.report import plots

    bars = table.assign(**{"view group": [tta.method_label(g, "none", sweep.grid) for g in table["group"]]})
    return plots.bar_with_ci(bars, x="view group", y="accuracy", lo="lo", hi="hi", hue="aggregation",
                             title=f"{sweep.info['model']} on {sweep.info['dataset']} ({int(table['n'].iloc[0])} "
                                   "images): test-time aggregation", ylabel="top-1 accuracy (%)")


#: The Table 4 rows notebook 03 spells out against 1-crop (the paper's headline comparisons).
TABLE4_HEADLINES = (("zoom_in", "mean"), ("zoom_in", "max"), ("zoom_out", "mean"), ("ten_crop", "mean"))


def table4_comparison(sweep: SweepResults, table: pd.DataFrame):
    """Table 4 beside the paper's (`tta.table4_comparison`); prints the headline rows against 1-crop."""
    from zoomstudy.analysis import tta

    rows = table.set_index(["group", "aggregation"])
    for g, a in TABLE4_HEADLINES:
        if (g, a) in rows.index and not np.isnan(rows.loc[(g, a), "delta"]):
            r = rows.loc[(g, a)]
            print(f"{r['method']}: {r['accuracy']:.2f}% ({r['delta']:+.2f} points against 1-crop; "
                  f"fixed {r['fixed']}, broke {r['broke']}, McNemar p = {r['p_value']:.3g})")
    return compare_view(tta.table4_comparison(table, sweep.settings))


def view_budget(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame) -> tuple[pd.DataFrame, Shown]:
    """The view budget (`analysis.budget.budget_curve`, cross-validated): the curve, and its table and
    figure to show."""
    from zoomstudy.analysis import budget
    from zoomstudy.report import plots

    curve = budget.budget_curve(sweep.result_set, max_k=min(36, sweep.grid.n_views),
                                folds=min(5, int(table["n"].iloc[0])), seed=0, alpha=p["alpha"])
    figure = plots.budget_curve(curve, title=f"{sweep.info['model']} on {sweep.info['dataset']} "
                                             f"({int(curve['n'].iloc[0])} images): view budget")
    saturated = chance_saturation(sweep)
    if saturated:  # the whole-grid oracle row (e.g. 100% with 12 classes) says nothing about framing then
        print(f"The oracle over all {sweep.grid.n_views} views: {saturated}.")
    return curve, Shown(budget.budget_table(curve).style.hide(axis="index"), figure)


def _tta_group(p: Mapping[str, Any], table: pd.DataFrame) -> str:
    """p.tta_group when the sweep stored it, else the first stored group in Table 4's order."""
    from zoomstudy.analysis import tta

    stored = set(table["group"])
    return p["tta_group"] if p["tta_group"] in stored else next(g for g in tta.GROUP_ORDER if g in stored)


def tta_changes(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame) -> pd.DataFrame | None:
    """Per image, whether the chosen aggregation fixed or broke the 1-crop prediction (`tta.tta_changes`),
    with the counts printed; None when the grid has no 1-crop view."""
    from zoomstudy.analysis import tta

    g = sweep.grid
    if g.standard_view is None:
        print(f"The grid has no 1-crop view (scale {g.standard_scale} at the centre): nothing to compare against.")
        return None
    group = _tta_group(p, table)
    changes = tta.tta_changes(sweep.result_set, group, p["tta_aggregation"])
    counts = changes["change"].value_counts().reindex(list(tta.CHANGES), fill_value=0)
    print(f"{tta.method_label(group, p['tta_aggregation'], g)} against 1-crop, {len(changes)} images: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts["fixed"] + counts["broke"] == 0:
        print("No prediction changed correctness; the gallery shows the first images instead.")
    return changes


def tta_gallery(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame, changes: pd.DataFrame | None):
    """The images whose correctness the aggregation changed: the 1-crop view beside the whole image
    (`tta.change_views`); None without changes to show."""
    from zoomstudy.analysis import tta
    from zoomstudy.report import plots

    if changes is None:
        return None
    group, aggregation = _tta_group(p, table), p["tta_aggregation"]
    shown = tta.pick_changes(changes, n=p["n_examples"])
    views, names, ok, conf = tta.change_views(sweep.result_set, sweep.source, shown, group, aggregation)
    return plots.view_gallery(views, names=names, correct=ok, conf=conf, ncols=4,
                              title=f"1-crop against {tta.method_label(group, aggregation, sweep.grid)}")


def memo_results(p: Mapping[str, Any], sweep: SweepResults) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 5: the per-image MEMO table (`run_memo`, read back when stored) and its rows
    (`analysis.table5.memo_summary`)."""
    from zoomstudy.analysis import table5

    table = run_memo(p, sweep.label_space)
    return table, table5.memo_summary(table, alpha=p["alpha"])


def memo_figure(p: Mapping[str, Any], sweep: SweepResults, memo_table: pd.DataFrame, summary: pd.DataFrame):
    """Table 5 as bars with intervals."""
    from zoomstudy.report import plots

    model = memo_table.attrs["settings"]["key"]["model"]["name"]
    return plots.bar_with_ci(summary, x="method", y="accuracy", lo="lo", hi="hi",
                             title=f"MEMO, {model} on {sweep.info['dataset']} ({int(summary['n'].iloc[0])} images, "
                                   f"K = {p['memo_k']})", ylabel="top-1 accuracy (%)")


def table5_comparison(p: Mapping[str, Any], memo_table: pd.DataFrame, summary: pd.DataFrame) -> Shown:
    """Table 5 beside the paper's column (`table5.table5_comparison`), and the seconds per image beside
    the paper's (`table5.speed_comparison`)."""
    from zoomstudy.analysis import table5

    settings = memo_table.attrs["settings"]
    return Shown(compare_view(table5.table5_comparison(summary, settings, paper_model=p["memo_paper_model"])),
                 compare_view(table5.speed_comparison(summary, settings), precision=3))


def tta_record(p: Mapping[str, Any], sweep: SweepResults, table: pd.DataFrame, curve: pd.DataFrame,
               memo_table: pd.DataFrame, summary: pd.DataFrame, figure) -> Record:
    """Notebook 03's findings (`tta_findings`) and provenance: the sweep's, Table 4's accuracies, and
    which MEMO run (model, weights, K, seeds, images, stored file) gave Table 5 and its seconds."""
    from zoomstudy.analysis import table5

    settings = memo_table.attrs["settings"]
    model = settings["key"]["model"]
    provenance = {
        **sweep.info, "requested_label_space": sweep.label_space, "n_images": int(table["n"].iloc[0]),
        "table4": {m: round(float(a), 4) for m, a in zip(table["method"], table["accuracy"])},
        "memo_result": settings["key_hash"], "memo_file": memo_table.attrs["path"],
        "memo_model": model.get("architecture"), "memo_weights": model.get("weights_id"), "memo_k": int(p["memo_k"]),
        "memo_seeds": [int(s) for s in p["memo_seeds"]], "memo_images": int(summary["n"].iloc[0]),
        "table5": {m: round(float(a), 4) for m, a in zip(summary["method"], summary["accuracy"])},
        "memo_seconds_per_image": {m: round(float(s), 4) for m, s in zip(summary["method"], summary["seconds_per_image"])
                                   if not np.isnan(s)},
        "memo_description": table5.memo_description(settings),
    }
    return Record(tta_findings(table, summary, sweep, curve), provenance, figure, None,
                  [sweep.info["statement"], "MEMO: " + table5.memo_description(settings)])


# ================================================================================================
# 04: ImageNet-Hard
# ================================================================================================
PLAIN_PROTOCOLS = ("sweep", "model")


def plain_top1(p: Mapping[str, Any], sweep: SweepResults, data_spec: str, data_root: str | None) -> tuple[pd.DataFrame, str]:
    """ImageNet-Hard's plain 1-crop predictions under p.plain_protocol, and a sentence saying how.

    "sweep": the sweep's own 1-crop view (bicubic, no extra compute); "model": Resize 256 +
    CenterCrop 224 with the model's preprocessing (the paper's evaluation). A grid without a 1-crop
    view falls back to "model", and says so.
    """
    from zoomstudy import study
    from zoomstudy.analysis import hard

    protocol = p["plain_protocol"]
    if protocol not in PLAIN_PROTOCOLS:
        raise ValueError(f"plain_protocol must be 'sweep' or 'model', got {protocol!r}")
    g = sweep.grid
    if protocol == "sweep" and g.standard_view is None:
        print("The grid has no 1-crop view; evaluating Resize 256 + CenterCrop 224 with the model instead.")
        protocol = "model"
    if protocol == "sweep":
        return (hard.plain_from_sweep(sweep.result_set),
                f"the sweep's 1-crop view {g.view_name(g.standard_view)} (bicubic)")
    loaded = study.open_model(p["model"], p["checkpoint"], device=p["device"], pretrained=p["pretrained"])
    source = sweep.source if (data_spec, data_root) == sweep.data[:2] else study.open_data(
        data_spec, data_root, max_images=p["max_images"])  # the sweep's own images: opened once
    plain = hard.plain_from_model(loaded, source, max_images=p["max_images"])
    return plain, "Resize 256 + CenterCrop 224 with the model's preprocessing (hard.evaluate_plain)"


#: How the notebook-04 ranking labels this run's rows.
RUN_LABEL = "this run"


def hard_ranking(board: pd.DataFrame, sweep: SweepResults, data_spec: str, data_root: str | None = None, *,
                 alpha: float = 0.05) -> pd.DataFrame:
    """The leaderboard this run's plain 1-crop row is ranked in, tidy for `plots.bar_with_ci` (model,
    source, top1, ci_low, ci_high, n, note; best first), its attrs["reference"] naming the other rows.

    ImageNet-Hard (or any ImageNet-labelled set): beside the paper's models (`hard.hard_leaderboard_table`).
    world-hard: beside the world models trained here, the seed-0 model of every training regime
    (`hard_set.world_hard_leaderboard`, the same plain pipeline; the seed-1 models chose the images, so
    none of these did), measured on the same images; this run's own model is its row, not a duplicate.
    12-class world models have no place among ImageNet models.
    """
    from zoomstudy import study
    from zoomstudy.analysis import hard

    if str(data_spec).split(":")[0] != "world-hard":
        ranking = hard.hard_leaderboard_table(board, run_label=RUN_LABEL)
        ranking.attrs["reference"] = f"the paper's {int((ranking['source'] == 'paper').sum())} models"
        return ranking
    from zoomstudy.experiment.hard_set import LEADERBOARD_ARMS, world_hard_leaderboard

    mine = sweep.settings["key"]["model"]["name"]
    own = sweep.settings["key"]["model"].get("architecture", "").removeprefix("world:")  # "rrc": not evaluated twice
    world, _ = world_hard_leaderboard(study.open_data(data_spec, data_root), alpha=alpha,
                                      arms=tuple(a for a in LEADERBOARD_ARMS if a != own))
    rows = [{"model": r.model, "source": "world model (seed 0)", "top1": float(r.accuracy), "ci_low": float(r.ci_low),
             "ci_high": float(r.ci_high), "n": int(r.n), "note": "trained here"}
            for r in world.itertuples(index=False) if r.model != mine]
    rows += [{"model": f"{r.model} ({RUN_LABEL})", "source": RUN_LABEL, "top1": float(r.accuracy),
              "ci_low": float(r.ci_low), "ci_high": float(r.ci_high), "n": int(r.n), "note": ""}
             for r in board.itertuples(index=False)]
    ranking = pd.DataFrame(rows).sort_values("top1", ascending=False, kind="stable").reset_index(drop=True)
    ranking.attrs["reference"] = f"the {len(rows) - len(board)} other world models trained here (seed 0)"
    return ranking


def per_origin_table(images: pd.DataFrame, correct: np.ndarray, plain: pd.DataFrame, alpha: float = 0.05
                     ) -> pd.DataFrame | None:
    """Per source set (ImageNet-Hard's origin column): 1-crop accuracy and the zoom bound (any view).

    None when the dataset has no origin column. Columns: those of hard.per_origin_accuracy plus measure.
    """
    from zoomstudy.analysis import hard

    if "origin" not in images.columns:
        return None
    zoom = pd.DataFrame({"origin": images["origin"].astype(str), "correct": correct.any(axis=1)})
    return pd.concat([
        hard.per_origin_accuracy(plain, alpha=alpha).assign(measure="1-crop"),
        hard.per_origin_accuracy(zoom, alpha=alpha).assign(measure=f"any of {correct.shape[1]} views"),
    ], ignore_index=True)


def example_labels(images: pd.DataFrame, rows: Sequence[int], top1: np.ndarray, view: int, names=None) -> list[str]:
    """Captions of example images: [origin] first label (+ how many more), then the prediction at `view`;
    names: the classes' names (the sweep's result set: a world's own; `data.labels.class_names_of`)."""
    from zoomstudy.data.labels import class_name

    out = []
    for r in rows:
        labels = list(images.loc[r, "labels"])
        truth = class_name(labels[0], names=names) + (f" (+{len(labels) - 1})" if len(labels) > 1 else "")
        origin = f"[{images.loc[r, 'origin']}] " if "origin" in images.columns else ""
        out.append(f"{origin}{truth}\n1-crop: {class_name(top1[r, view], names=names)}")
    return out


def hard_findings(board: pd.DataFrame, ranking: pd.DataFrame, here: pd.DataFrame, sweep: SweepResults) -> list[str]:
    """Headline sentences of notebook 04: the plain 1-crop accuracy, its place among the paper's
    leaderboard, and how far the zoom bound gets on these images."""
    out = [RANDOM_WEIGHTS_FINDING] if sweep.random_weights else []
    r = board.iloc[0]
    ours = ranking.index[ranking["source"] == RUN_LABEL]
    place = int(ours[0]) + 1 if len(ours) else None
    reference = ranking.attrs.get("reference") or f"the paper's {int((ranking['source'] == 'paper').sum())} models"
    s = f"{sweep.info['model']} on {sweep.info['dataset']} ({int(r['n'])} images): plain 1-crop top-1 {r['accuracy']:.1f}%"
    if not math.isnan(r["paper_top1"]):
        s += f" (paper: {r['paper_top1']:.1f}%)"
    if place is not None:
        s += f", place {place} of {len(ranking)} beside {reference}"
    out.append(s + ".")
    upper = _acc(here, "upper_all")
    if upper is not None:
        chance = chance_saturation(sweep)
        out.append(f"The right framing among {sweep.grid.n_views} views would solve {upper:.1f}% of these images"
                   + (f", but {chance}." if chance else "."))
    return out


def open_hard_sweep(p: Mapping[str, Any]) -> SweepResults:
    """Notebook 04's sweep: "synthetic-hard:N" is written as a stand-in first (`data.standin`, once,
    under results_dir) and said to be one; any other dataset is swept as given."""
    from zoomstudy.data import standin

    spec, root, note = standin.resolve_dataset(p["dataset"], p["root"], p["results_dir"])
    if note:
        print(note)
    return open_sweep(p, dataset=spec, root=root)


def hard_leaderboard(p: Mapping[str, Any], sweep: SweepResults) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The plain 1-crop predictions (`plain_top1`), this run's leaderboard row (`hard.leaderboard`)
    and the ranking it is placed in (`hard_ranking`); prints the protocol. Returns (plain, board, ranking)."""
    from zoomstudy.analysis import hard

    spec, root, _ = sweep.data
    plain, how = plain_top1(p, sweep, spec, root)
    board = hard.leaderboard({sweep.settings["key"]["model"]["name"]: plain}, alpha=p["alpha"])
    print(f"1-crop protocol: {how}")
    return plain, board, hard_ranking(board, sweep, spec, root, alpha=p["alpha"])


def leaderboard_figure(sweep: SweepResults, ranking: pd.DataFrame):
    """The ranking as bars, this run's row among the others."""
    from zoomstudy.report import plots

    return plots.bar_with_ci(ranking, x="model", y="top1", lo="ci_low", hi="ci_high", hue="source",
                             title=f"{sweep.info['dataset']}, plain 1-crop top-1", ylabel="top-1 accuracy (%)")


def per_origin(p: Mapping[str, Any], sweep: SweepResults, plain: pd.DataFrame) -> Shown:
    """The 1-crop accuracy and the zoom bound per source set (`per_origin_table`), as a table and bars;
    nothing but a sentence when the dataset has no origin column."""
    from zoomstudy.analysis import hard
    from zoomstudy.report import plots

    table = per_origin_table(hard.image_table(sweep.result_set), sweep.correct, plain, alpha=p["alpha"])
    if table is None:
        print("This dataset has no origin column: no per-origin breakdown.")
        return Shown()
    wide = table.pivot(index="origin", columns="measure", values="accuracy")
    return Shown(wide.style.format(precision=2),
                 plots.bar_with_ci(table, x="origin", y="accuracy", lo="ci_low", hi="ci_high", hue="measure",
                                   title="accuracy per source set", ylabel="top-1 accuracy (%)"))


@dataclass
class DatasetComparison:
    """The zoom bounds on this dataset (`here`, a `bound_tables.bounds_frame`), the companion result
    sets of the same model and grid on other data, and what the notebook shows of them."""

    here: pd.DataFrame
    companions: list
    shown: Shown

    def _ipython_display_(self):
        self.shown._ipython_display_()


def compare_datasets(p: Mapping[str, Any], sweep: SweepResults) -> DatasetComparison:
    """1-crop accuracy and the zoom bounds here beside the same model and grid on other data in the
    result store (`hard.find_companions`, restricted to p.compare_with when given)."""
    from zoomstudy.analysis import bound_tables, hard
    from zoomstudy.report import plots, provenance_text

    info = sweep.info
    kw = dict(model=info["model"], top_n=p["top_n"], folds=p["cv_folds"], seed=p["seed"], alpha=p["alpha"],
              n_classes=sweep.n_classes, random_rows=False)
    here = bound_tables.bounds_frame(sweep.correct, sweep.grid, dataset=info["dataset"], **kw)
    companions = hard.find_companions(p["results_dir"], sweep.result_set, p["compare_with"])
    if not companions:
        print(f"No other result set of {info['model']} ({info['weights_id']}) with this grid in {p['results_dir']}"
              + (f" for {p['compare_with']}" if p["compare_with"] else "")
              + ": run the oracle notebook on ImageNet with the same parameters to compare. Skipped.")
        return DatasetComparison(here, [], Shown(styled(here.drop(columns=["key"]))))
    frames = [here]
    for other in companions:
        frames.append(bound_tables.bounds_frame(other.correct(), other.grid,
                                                dataset=other.settings["key"]["dataset"]["name"], **kw))
        print(f"compared with {provenance_text.describe_data(other.settings['key']['dataset'], len(other.images()))}")
    both = pd.concat(frames, ignore_index=True)
    figure = plots.bar_with_ci(both, x="metric", y="accuracy", lo="ci_low", hi="ci_high", hue="dataset",
                               title="1-crop accuracy and zoom bounds per dataset", ylabel="top-1 accuracy (%)")
    return DatasetComparison(here, companions, Shown(
        both.pivot(index="metric", columns="dataset", values="accuracy").style.format(precision=2), figure))


def hard_examples(p: Mapping[str, Any], sweep: SweepResults):
    """p.n_examples images with their labels and 1-crop prediction (`examples.example_rows`: those
    some zoom view solves first); None when there is none to show."""
    from zoomstudy.analysis import hard
    from zoomstudy.data.source import load_sample
    from zoomstudy.report import examples, plots

    g, correct = sweep.grid, sweep.correct
    images = hard.image_table(sweep.result_set)
    _, top1, conf = sweep.result_set.predictions()
    sv = g.standard_view if g.standard_view is not None else int(np.argmax(correct.sum(axis=0)))
    rows = examples.example_rows(correct, sv, p["n_examples"])
    if not rows:
        return None
    samples = [load_sample(sweep.source, int(images.loc[r, "position"])) for r in rows]
    return plots.view_gallery(examples.thumbnails([s.image for s in samples]),
                              names=example_labels(images, rows, top1, sv), correct=correct[rows, sv],
                              conf=conf[rows, sv], ncols=4, title=f"{sweep.info['dataset']}: label and 1-crop prediction")


def hard_record(p: Mapping[str, Any], sweep: SweepResults, board: pd.DataFrame, ranking: pd.DataFrame,
                datasets: DatasetComparison, figure) -> Record:
    """Notebook 04's findings (`hard_findings`) and provenance: the sweep's, the plain protocol and
    top-1, the any-view bound and the companion result sets compared with."""
    here = datasets.here
    provenance = {**sweep.info, "n_images": int(sweep.correct.shape[0]), "top_n": int(p["top_n"]),
                  "plain_protocol": p["plain_protocol"], "plain_top1": float(board.loc[0, "accuracy"]),
                  "upper_all": float(here.set_index("key").loc["upper_all", "accuracy"]),
                  "companions": [str(c.path) for c in datasets.companions]}
    return Record(hard_findings(board, ranking, here, sweep), provenance, figure, None, [sweep.info["statement"]])


# ================================================================================================
# 05: zoom sensitivity of several models
# ================================================================================================
def model_runs(models: Sequence[str] | None, checkpoints: Sequence[str | None] | None,
               model: str | None = None, checkpoint: str | None = None) -> list[tuple[str, str | None]]:
    """(model, checkpoint) pairs to profile: the profile's single `model` first, then `models`.

    checkpoints None means no checkpoint for any model; otherwise one entry per model. A model named
    both ways is profiled once, with the profile's checkpoint.
    """
    models = list(models or [])
    checkpoints = [None] * len(models) if checkpoints is None else list(checkpoints)
    if len(checkpoints) != len(models):
        raise ValueError(f"checkpoints must give one entry (a file or None) per model: {len(models)} models, "
                         f"{len(checkpoints)} checkpoints")
    runs = list(zip(models, checkpoints))
    if model is not None:
        runs = [(model, checkpoint)] + [(m, c) for m, c in runs if m != model]
    if not runs:
        raise ValueError("no model to profile: set `model` or `models`")
    return runs


def compute_profiles(p: Mapping[str, Any]) -> tuple[list, list[dict]]:
    """Notebook 05's sweeps: one compact profile per model (read back when stored) on the same images.

    Returns (profiles, provenance infos), and prints each model's provenance statement.
    """
    from zoomstudy import study
    from zoomstudy.provenance import is_random_weights
    from zoomstudy.report import profile_data, provenance_text

    quiet_progress_warning()
    runs = model_runs(p.get("models"), p.get("checkpoints"), p.get("model"), p.get("checkpoint"))
    source = study.open_data(p["dataset"], p["root"], max_images=p["max_images"])
    profiles, infos = [], []
    for name, ckpt in runs:
        prof = profile_data.compute_profile(name, source, checkpoint=ckpt, results_dir=p["results_dir"],
                                             scales=p["scales"], grid=p["grid"], crop=p["crop"],
                                             max_images=p["max_images"], resolution_sizes=p["sizes"],
                                             pretrained=p["pretrained"], device=p["device"],
                                             progress=p.get("report_dir") is None)
        info = provenance_text.provenance_info(prof.result_set, p["profile"], ckpt)
        profiles.append(prof)
        infos.append(info)
        print(info["statement"])
        if is_random_weights(prof.result_set.settings):
            print(f"  {prof.label}: random weights, accuracies near chance are expected (a pipeline check).")
    g = profiles[0].grid
    print(f"{profiles[0].metrics['n_images']} images x {g.n_views} views "
          f"({g.n_scales} scales x {g.grid}x{g.grid} anchors, crop {g.crop})")
    return profiles, infos


def write_model_reports(profiles: Sequence, p: Mapping[str, Any]) -> list[str]:
    """One model_profile report (HTML + JSON) per model, with the regression check; returns the pages.

    They go next to the notebook's report (report_dir/05_zoom_sensitivity_profiles), or under the
    result store in an interactive session.
    """
    from zoomstudy.report import model_profile

    out_root = (Path(p["report_dir"]) / "05_zoom_sensitivity_profiles" if p.get("report_dir")
                else Path(p["results_dir"]) / "profiles")
    thresholds = {"max_oracle_gap": p.get("max_oracle_gap"), "max_center_bias": p.get("max_center_bias")}
    written = []
    for i, prof in enumerate(profiles):
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in prof.label)
        summary = model_profile.write_report(prof, out_root / f"{i:02d}_{slug}", thresholds=thresholds,
                                             n_zoom_maps=p["zoom_maps"])
        written.append(summary["html_path"])
        reg = summary["regression"]
        verdict = "passed" if reg["passed"] else "FAILED: " + "; ".join(reg["failures"])
        print(f"{prof.label}: {summary['html_path']} (regression check {verdict})")
    return written


def sensitivity_findings(comparison: pd.DataFrame) -> list[str]:
    """Headline sentences of notebook 05, one per model, from model_profile.compare_metrics."""
    out = []
    for r in comparison.itertuples(index=False):
        s = (f"{r.model} ({int(r.n_images)} images): 1-crop {r.one_crop:.1f}%, oracle {r.oracle:.1f}% "
             f"(gap {r.oracle_gap:+.1f} points), centre bias {r.center_bias:+.1f} points")
        if r.best_scale is not None and not pd.isna(r.best_scale):
            s += f", best scale {int(r.best_scale)} px ({r.best_scale_accuracy:.1f}%)"
        out.append(s + ".")
    return out


def compare_profiles(profiles: Sequence):
    """The models side by side (`model_profile.compare_metrics`): 1-crop, oracle, gap, centre bias, best scale."""
    from zoomstudy.report import model_profile

    return model_profile.compare_metrics(profiles)


def zoom_curves(profiles: Sequence):
    """Accuracy against zoom scale for every model: the centre view and any anchor."""
    from zoomstudy.report import model_profile, plots

    return plots.accuracy_vs_scale(model_profile.scale_frame(profiles), crop=profiles[0].grid.crop,
                                   title="accuracy against zoom scale")


def position_grids(profiles: Sequence):
    """The per-anchor bound of every model on one colour scale."""
    from zoomstudy.report import model_profile, plots

    return plots.anchor_grids(model_profile.anchor_frame(profiles), vmin=0, vmax=100, title="upper bound per anchor (%)")


def oracle_gaps(profiles: Sequence):
    """1-crop against oracle accuracy per model, with intervals."""
    from zoomstudy.report import model_profile, plots

    return plots.bar_with_ci(model_profile.gap_frame(profiles), x="metric", y="accuracy", lo="lo", hi="hi", hue="model",
                             ylabel="top-1 accuracy (%)", title="1-crop against oracle, with 95% intervals")


def resolution_curves(profiles: Sequence):
    """Accuracy against test resolution per model (the training size marked when the models share
    one); None, with a sentence, when the curve was skipped (sizes = [])."""
    from zoomstudy.report import model_profile, plots

    curves = model_profile.resolution_frame(profiles)
    if not len(curves):
        print("resolution curve skipped (sizes = [])")
        return None
    train = sorted({int(prof.metrics["resolution_train_size"]) for prof in profiles})
    return plots.plot_resolution_curve(curves, train_size=train[0] if len(train) == 1 else None,
                                       title="accuracy against test resolution")


def zoom_maps(p: Mapping[str, Any], profiles: Sequence) -> Shown:
    """p.zoom_maps example images per model as zoom maps (`model_profile.example_rows`: those the
    1-crop view gets wrong and another view right first)."""
    from zoomstudy.report import model_profile

    return Shown(*[model_profile.zoom_map_figure(prof, row) for prof in profiles
                   for row in model_profile.example_rows(prof, p["zoom_maps"])])


def sensitivity_record(p: Mapping[str, Any], profiles: Sequence, infos: Sequence[dict], comparison: pd.DataFrame,
                       written: Sequence[str], figure) -> Record:
    """Notebook 05's findings (`sensitivity_findings`) and provenance: every model with its weights,
    the shared data and grid, the metrics and the model reports written."""
    provenance = {
        "profile": p["profile"], "models": [prof.spec for prof in profiles],
        "weights": [info["weights"] for info in infos], "weights_ids": [info["weights_id"] for info in infos],
        "data": infos[0]["data"], "dataset_fingerprint": infos[0]["dataset_fingerprint"],
        "grid": profiles[0].grid.to_dict(), "n_images": int(profiles[0].metrics["n_images"]),
        "resolution_sizes": profiles[0].settings["resolution_sizes"], "metrics": comparison.to_dict(orient="records"),
        "reports": list(written), "statements": [info["statement"] for info in infos],
    }
    statements = [f"This report was produced by profile {p['profile']} on data {infos[0]['data']}, with:"]
    statements += [f"  {prof.label}: weights {info['weights']}" for prof, info in zip(profiles, infos)]
    return Record(sensitivity_findings(comparison), provenance, figure, None, statements)


# ================================================================================================
# 00: the controlled experiment
# ================================================================================================
def run_questions(p: Mapping[str, Any]) -> tuple[Any, dict, pd.DataFrame]:
    """Train (or read back from the cache) the experiment's models and answer its five questions
    (`experiment.questions.run_questions`) with the design p sets. Returns (design, answers, the
    training table); the training log is printed in an interactive session only."""
    from zoomstudy.experiment import questions
    from zoomstudy.experiment.runs import Training

    design = questions.Design(seeds=tuple(p["seeds"]),
                              training=Training(epochs=p["epochs"], images_per_epoch=p["images_per_epoch"]),
                              n_test=p["n_test"], n_probe=p["n_probe"], n_boot=p["n_boot"])
    answers, training = questions.run_questions(design, log=print if p.get("report_dir") is None else None)
    return design, answers, training


def example_gallery(n: int = 6):
    """A figure of the measurement worlds, n images each, under the world's class names: the test
    images (centred), the photo-like images the paper notebooks analyse, and the context world."""
    from zoomstudy.experiment.world import WorldSource, WorldSpec
    from zoomstudy.report import plots
    from zoomstudy.views import pil_to_tensor

    sets = [("test", WorldSpec(), "test"), ("photo", WorldSpec(), "photo"),
            ("context decides", WorldSpec(context="decides"), "test")]
    images, names = [], []
    for title, spec, split in sets:
        for smp in WorldSource(spec, n, split, seed=1):
            images.append(pil_to_tensor(smp.image).numpy())
            names.append(f"{title}: {smp.meta['class_name']}")
    return plots.view_gallery(np.stack(images), names=names, ncols=n, title="world measurement images")


@dataclass
class WorldHard:
    """The world's ImageNet-Hard measured by the seed-0 world models: the leaderboard and the
    accuracy per origin (`experiment.hard_set.world_hard_leaderboard`)."""

    board: pd.DataFrame
    per_origin: pd.DataFrame

    def _ipython_display_(self):
        Shown(self.board[["model", "n", "accuracy", "ci_low", "ci_high"]].round(1),
              self.per_origin.pivot(index="origin", columns="model", values="accuracy").round(1))._ipython_display_()


def world_hard(p: Mapping[str, Any], design) -> WorldHard:
    """The world's ImageNet-Hard (p.hard_candidates per origin) and the plain 1-crop accuracy of the
    models trained with the design's training settings."""
    from zoomstudy import study
    from zoomstudy.experiment import hard_set

    source = study.open_data(f"world-hard:{p['hard_candidates']}")
    board, by_origin = hard_set.world_hard_leaderboard(source, training=design.training)
    return WorldHard(board, by_origin)


def experiment_record(p: Mapping[str, Any], answers: Mapping[str, Any], training: pd.DataFrame,
                      hard: WorldHard) -> Record:
    """Notebook 00's findings (each question's sentence) and provenance: the design, the answers,
    every model trained, the world-hard leaderboard; the centre-bias answer is the index's figure."""
    from zoomstudy.experiment import questions

    design = {k: (list(p[k]) if k == "seeds" else p[k])
              for k in ("seeds", "epochs", "images_per_epoch", "n_test", "n_probe", "n_boot")}
    provenance = {
        "profile": p["profile"], "design": design,
        "answers": questions.answers_table(answers).to_dict(orient="records"),
        "training": training.drop(columns=["path"]).round(3).to_dict(orient="records"),
        "world_hard": hard.board[["model", "n", "accuracy", "ci_low", "ci_high"]].round(2).to_dict(orient="records"),
    }
    return Record([a.sentence for a in answers.values()], provenance, questions.plot_answer(answers["centre_bias"]))


# ================================================================================================
# 06: the paper, whole
# ================================================================================================
def the_paper(p: Mapping[str, Any]) -> dict:
    """Every table and grid of notebook 06, read from the store once (`paper_tables.the_paper`);
    prints how many cells have data and any weights warning."""
    from zoomstudy.report import paper_tables

    paper = paper_tables.the_paper(p["results_dir"], roots=p["roots"], data_dir=p["data_dir"], top_n=p["top_n"],
                                   folds=p["folds"], table1_models=p["table1_models"])
    cells = paper["cells"]
    print(f"{int((cells['status'] == 'ok').sum())} of {len(cells)} cells have stored results, "
          f"{cells['model'].nunique()} models (store: {p['results_dir']})")
    for line in paper["weights_warnings"]:
        print(f"warning: {line}")
    return paper


def paper_table1(paper: Mapping[str, Any]) -> None:
    """Table 1 as grids, one per metric, and where each number comes from (when any cell has data),
    then what the empty cells need, once per dataset (`paper_tables.show`)."""
    from zoomstudy.report import paper_tables

    cells = paper["cells"]
    if (cells["status"] == "ok").any():
        for metric in paper_tables.METRICS:
            paper_tables.show(paper["table1"][metric])
        paper_tables.show(paper_tables.cell_notes(cells))
    paper_tables.show(paper_tables.missing_cells(cells))


def paper_anchors(paper: Mapping[str, Any]):
    """The per-anchor grids (`paper_tables.anchor_figure`), after a line for each grid without data."""
    from zoomstudy.report import paper_tables

    for g in paper["anchors"].values():
        if g["ours"] is None:
            print(f"{g['model']} on {g['dataset']}: {g['status']}")
    return paper_tables.anchor_figure(paper["anchors"])


def paper_record(p: Mapping[str, Any], paper: Mapping[str, Any], figure) -> Record:
    """Notebook 06's findings (`paper_tables.paper_findings`) and provenance: the store and the result
    sets read."""
    from zoomstudy.report import paper_tables

    cells = paper["cells"]
    provenance = {"profile": p["profile"], "results_dir": str(p["results_dir"]),
                  "table1_cells_with_data": int((cells["status"] == "ok").sum()), "result_sets": paper["result_sets"]}
    return Record(paper_tables.paper_findings(cells, paper["centre"]), provenance, figure)
