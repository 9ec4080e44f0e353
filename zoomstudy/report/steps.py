"""One call per notebook step: the logic the study notebooks run, kept here so that it is tested.

A notebook cell resolves its parameters (`notebooks.notebook_parameters`), then calls one function
of this module per step and shows what it returns. The functions take the resolved parameters `p`
(attribute access: `p.model`, `p.alpha`) and the objects earlier steps returned; they print what a
reader of the report should know (which weights and data produced the numbers, random-weights
warnings) and return tables and figures. The headline-finding functions (`*_findings`) turn a
notebook's numbers into the sentences the report index leads with, so no finding is typed by hand.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


# ================================================================================================
# the sweep (notebooks 01, 02, 03, 04)
# ================================================================================================
@dataclass
class Sweep:
    """A notebook's sweep: the result set, its grid, the provenance of its numbers and the
    correctness matrix (bool [images, views], top-1 in the image's label set)."""

    result_set: Any
    grid: Any
    info: dict
    correct: np.ndarray

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
               label_space: str | None = None, verbose: bool = True) -> Sweep:
    """Run the notebook's sweep, or read back a finished one, and say what produced its numbers.

    p: the resolved parameters (model, checkpoint, pretrained, dataset, root, scales, grid, crop,
    max_images, results_dir, device, profile, report_dir). dataset / root replace p's (notebook 04
    sweeps its resolved stand-in); label_space None keeps the sweep's default (ImageNet-1k).
    Progress bars are shown in an interactive session only (report_dir None).
    """
    from zoomstudy import study
    from zoomstudy.report import tables

    quiet_progress_warning()
    kw = {} if label_space is None else {"label_space": label_space}
    rs = study.ensure_results(p["model"], dataset or p["dataset"], checkpoint=p["checkpoint"],
                              root=root if dataset is not None else p["root"], scales=p["scales"], grid=p["grid"],
                              crop=p["crop"], results_dir=p["results_dir"], max_images=p["max_images"],
                              pretrained=p["pretrained"], device=p["device"], progress=p.get("report_dir") is None, **kw)
    info = tables.provenance_info(rs, p["profile"], p["checkpoint"])
    out = Sweep(rs, rs.grid, info, rs.correct())
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
def explorer_page(sweep: Sweep, source, report_dir: str | Path | None, max_images: int | None = None) -> Path:
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


def oracle_findings(table: pd.DataFrame, sweep: Sweep, cover_length: int, top_n: int) -> list[str]:
    """Headline sentences of notebook 01 from its Table 1 frame (tables.bounds_frame)."""
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


# ================================================================================================
# 02: centre bias
# ================================================================================================
def centre_share_table(summary: Mapping[str, Any], sweep: Sweep) -> pd.DataFrame:
    """The share of the greedy top-N views at the centre, beside uniform, the paper and (for the
    real-data kit's run) the kit's reference figure."""
    from zoomstudy.report import tables

    return tables.centre_share_table(summary["cover_topn"], sweep.grid, realdata=tables._is_realdata(sweep.settings))


def centre_findings(summary: Mapping[str, Any], sweep: Sweep, top_n: int) -> list[str]:
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


def tta_findings(table: pd.DataFrame, memo_summary: pd.DataFrame | None, sweep: Sweep,
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


# ================================================================================================
# 04: ImageNet-Hard
# ================================================================================================
PLAIN_PROTOCOLS = ("sweep", "model")


def plain_top1(p: Mapping[str, Any], sweep: Sweep, data_spec: str, data_root: str | None) -> tuple[pd.DataFrame, str]:
    """ImageNet-Hard's plain 1-crop predictions under p.plain_protocol, and a sentence saying how.

    "sweep": the sweep's own 1-crop view (bicubic, no extra compute); "model": Resize 256 +
    CenterCrop 224 with the model's preprocessing (the paper's evaluation). A grid without a 1-crop
    view falls back to "model", and says so.
    """
    from zoomstudy import study
    from zoomstudy.analysis import hard
    from zoomstudy.report import tables

    protocol = p["plain_protocol"]
    if protocol not in PLAIN_PROTOCOLS:
        raise ValueError(f"plain_protocol must be 'sweep' or 'model', got {protocol!r}")
    g = sweep.grid
    if protocol == "sweep" and g.standard_view is None:
        print("The grid has no 1-crop view; evaluating Resize 256 + CenterCrop 224 with the model instead.")
        protocol = "model"
    if protocol == "sweep":
        return (tables.plain_from_sweep(sweep.result_set),
                f"the sweep's 1-crop view {g.view_name(g.standard_view)} (bicubic)")
    loaded = study.open_model(p["model"], p["checkpoint"], device=p["device"], pretrained=p["pretrained"])
    plain = hard.plain_from_model(loaded, study.open_data(data_spec, data_root, max_images=p["max_images"]),
                                  max_images=p["max_images"])
    return plain, "Resize 256 + CenterCrop 224 with the model's preprocessing (hard.evaluate_plain)"


#: How the notebook-04 ranking labels this run's rows.
RUN_LABEL = "this run"


def hard_ranking(board: pd.DataFrame, sweep: Sweep, data_spec: str, data_root: str | None = None, *,
                 alpha: float = 0.05) -> pd.DataFrame:
    """The leaderboard this run's plain 1-crop row is ranked in, tidy for `plots.bar_with_ci` (model,
    source, top1, ci_low, ci_high, n, note; best first), its attrs["reference"] naming the other rows.

    ImageNet-Hard (or any ImageNet-labelled set): beside the paper's models (`tables.hard_leaderboard_table`).
    world-hard: beside the world models trained here, the seed-0 model of every training regime
    (`hard_set.world_hard_leaderboard`, the same plain pipeline; the seed-1 models chose the images, so
    none of these did), measured on the same images; this run's own model is its row, not a duplicate.
    12-class world models have no place among ImageNet models.
    """
    from zoomstudy import study
    from zoomstudy.report import tables

    if str(data_spec).split(":")[0] != "world-hard":
        ranking = tables.hard_leaderboard_table(board, run_label=RUN_LABEL)
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
    from zoomstudy.report import tables

    out = []
    for r in rows:
        labels = list(images.loc[r, "labels"])
        truth = tables.class_name(labels[0], names=names) + (f" (+{len(labels) - 1})" if len(labels) > 1 else "")
        origin = f"[{images.loc[r, 'origin']}] " if "origin" in images.columns else ""
        out.append(f"{origin}{truth}\n1-crop: {tables.class_name(top1[r, view], names=names)}")
    return out


def hard_findings(board: pd.DataFrame, ranking: pd.DataFrame, here: pd.DataFrame, sweep: Sweep) -> list[str]:
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
    from zoomstudy.report import profile_data, tables

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
        info = tables.provenance_info(prof.result_set, p["profile"], ckpt)
        profiles.append(prof)
        infos.append(info)
        print(info["statement"])
        if tables.is_random_weights(prof.result_set.settings):
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
