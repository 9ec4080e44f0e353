"""The paper's tables, whole, rendered from the result store beside the published numbers.

Every function here reads stored results only (sweeps found by `matrix.find_cell`, ImageNet-Hard
plain runs by `matrix.stored_hard_tables`, MEMO tables under results_dir/memo) and never computes a
sweep: a cell without stored results says so, and says how to get it. The numbers themselves come
from the existing analyses (`analysis.bounds.table1_row`, `summarize`, `anchor_bounds`,
`analysis.tta.tta_table`, `analysis.table5.memo_summary`, `analysis.hard.leaderboard`); this module lays them out
as the paper did, with the paper's value and the difference in every cell.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zoomstudy.analysis import paper
from zoomstudy import matrix

#: Table 1's metrics: column of `bounds.table1_row` -> (label, column of the paper's tables).
METRICS: dict[str, tuple[str, str | None]] = {
    "standard": ("1-crop", "standard"),
    "upper_324": ("324 views", "upper_324"),
    "upper_topn": ("top-36, in-sample", "upper_36"),
    "upper_topn_cv": ("top-36, cross-validated", "upper_36"),
}


def stored_location(results_dir: str | Path | None, dataset: str) -> str | None:
    """Where a stored sweep of `dataset` read its copy (the result set's provenance), or None: the
    store knows a copy that `zoomstudy paper --root` was given, which the notebook is not told."""
    from zoomstudy.data.registry import swept_dataset
    from zoomstudy.sweep.store import find_results

    if results_dir is None or not Path(results_dir).is_dir():
        return None
    for rs in find_results(results_dir, dataset=swept_dataset(dataset)):
        where = rs.settings.get("provenance", {}).get("dataset", {}).get("location")
        if isinstance(where, str) and Path(where).exists():
            return where
    return None


def how_to_get(dataset: str, model: str | None = None, roots: Mapping[str, str] | None = None,
               data_dir: str | Path | None = None, results_dir: str | Path | None = None) -> str:
    """What a cell without data says: provide the dataset (how), or run the sweep (the command)."""
    from zoomstudy.data.registry import dataset_spec, swept_dataset

    name = swept_dataset(dataset)
    st = matrix.locate(name, roots, data_dir, open_it=False)
    spec = dataset_spec(name)
    who = f" --models {model}" if model else ""
    if st.found:
        return f"not run yet: zoomstudy paper{who} --datasets {dataset}"
    known = stored_location(results_dir, name)
    if known:
        return f"not run yet: zoomstudy paper{who} --datasets {dataset} --root {name}={known}"
    from zoomstudy.data.registry import data_dir as default_data_dir

    env = f", ${spec.env}" if spec.env else ""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    return f"no data: provide {name} (zoomstudy paper --root {name}=PATH, {folder / spec.folder}/{env}; see --dry-run)"


def stored_models(results_dir: str | Path) -> dict[str, str]:
    """Table 1's rows for a store: {row name: model spec}, the paper's six first (under the paper's names,
    with or without stored results), then every other model with a stored sweep of a Table 1 dataset, under
    its stored name, so that a store of other models shows them in rows of their own."""
    from zoomstudy.data.registry import swept_dataset
    from zoomstudy.sweep.store import find_results

    swept = {swept_dataset(d) for d in matrix.TABLE1_DATASETS.values()}
    stored = []
    for rs in find_results(results_dir):
        key = rs.settings["key"]
        if key["dataset"].get("name") in swept and rs.committed_parts():
            stored.append(str(key["model"].get("name", "")).partition("@")[0])
    rows = dict(matrix.TABLE1_MODELS)
    paper_names = {matrix.model_name(spec) for spec in rows.values()}
    for name in dict.fromkeys(sorted(stored)):
        if name and name not in paper_names:
            rows[name] = name
    return rows


def weights_note(row: str, spec: str, model_key: Mapping) -> str:
    """Why a stored model under a paper row's name is not the paper's model ('' when it is, or when the
    row is not the paper's): random weights, a checkpoint file (its sha256 is the weights id), or other
    published weights than the tag the paper used."""
    from zoomstudy.models.loading import MODELS
    from zoomstudy.provenance import is_random_weights

    if row not in matrix.TABLE1_MODELS or spec not in MODELS:
        return ""
    want = MODELS[spec].weights
    got = str(model_key.get("weights_id"))
    if is_random_weights(model_key):
        return f"{row}: random weights, not the paper's {want}: its numbers are no reproduction"
    if want and (got.endswith(f".{want}") or got.endswith(want) or f"@{want}" in got):
        return ""
    what = f"a checkpoint file (sha256 {got[:12]})" if len(got) == 64 else f"weights {got}"
    return f"{row}: stored with {what}, not the paper's {want}: compare with the paper's numbers with care"


def _paper_value(model: str, dataset: str, column: str | None) -> float:
    if column is None:
        return np.nan
    table = paper.TABLE1_TOP36 if column == "upper_36" else paper.TABLE1
    sel = table[(table["model"] == model) & (table["dataset"] == dataset)]
    return float(sel[column].iloc[0]) if len(sel) else np.nan


def table1_cells(results_dir: str | Path, models: Mapping[str, str] | None = None,
                 datasets: Mapping[str, str] | None = None, *, top_n: int = 36, folds: int = 2,
                 roots: Mapping[str, str] | None = None, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 1, tidy, one row per (model, dataset) cell: ours, the paper's, the difference.

    models / datasets: paper name -> model spec / registry name (default: Table 1's six and seven).
    Columns: model, dataset, status ('ok' or the how-to of a missing cell), n_images, label_space,
    n_classes, note (an explicitly different label space, ReaL relabelling), result_set (its path),
    then per metric m of `METRICS`: m (ours %), m_paper, m_diff; random_topn / random_all (Table 1's
    'random' row for the cell's number of classes); center_share (% of the greedy top-N views at the
    centre anchor) and cover_length, from the same greedy cover (`bounds.summarize`, once per cell).
    """
    from zoomstudy.analysis.bounds import summarize
    from zoomstudy.study import label_space_note

    models = dict(models or stored_models(results_dir))
    datasets = dict(datasets or matrix.TABLE1_DATASETS)
    rows = []
    for m, spec in models.items():
        for d, name in datasets.items():
            row = {"model": m, "dataset": d, "status": "ok", "n_images": 0, "label_space": None, "n_classes": pd.NA,
                   "note": "", "weights_note": "", "result_set": None, "random_topn": np.nan, "random_all": np.nan,
                   "center_share": np.nan, "cover_length": 0}
            try:
                rs = matrix.find_cell(results_dir, spec, name)
                problem = None if rs is None else _unreadable(rs)
            except ValueError as e:  # ReaL on a val copy without val numbers, a damaged result set
                rs, problem = None, " ".join(str(e).split())
            if rs is None or problem or not len(rs.images()):
                row["status"] = (f"cannot be scored: {problem}" if problem
                                 else how_to_get(name, spec, roots, data_dir, results_dir))
                for k in METRICS:
                    row[k] = np.nan
            else:
                row["weights_note"] = weights_note(m, spec, rs.settings["key"]["model"])
                correct = rs.correct()
                grid = rs.grid
                space = rs.settings["key"]["model"]["label_space"]
                # one greedy cover per cell: the Table 1 bounds, the random row and the centre share
                ours = summarize(correct, grid, n_classes=int(space["n_classes"]), top_n=min(top_n, grid.n_views),
                                 folds=folds)
                notes = [label_space_note(rs.settings) or ""]
                if "analysis_relabel" in rs.settings:
                    r = rs.settings["analysis_relabel"]
                    notes.append(f"{r['dataset']} relabelled at analysis time from the {r['result_set_dataset']} "
                                 f"result set ({r['images_kept']} images)")
                if grid.n_views != 324:
                    notes.append(f"{grid.n_views}-view grid (the paper's has 324)")
                row.update(n_images=int(correct.shape[0]), label_space=space["name"], n_classes=int(space["n_classes"]),
                           note="; ".join(n for n in notes if n), result_set=str(rs.path))
                for k in ("standard", "upper_324", "upper_topn", "upper_topn_cv"):
                    value = ours["upper_all" if k == "upper_324" else k]  # (acc, lo, hi), or None
                    row[k] = value[0] if value is not None else np.nan
                row.update(random_topn=ours["random_topn"], random_all=ours["random_all"],
                           center_share=ours["center_share"], cover_length=ours["cover_length"])
            for k, (_, col) in METRICS.items():
                row[f"{k}_paper"] = _paper_value(m, d, col)
                row[f"{k}_diff"] = row[k] - row[f"{k}_paper"]
            rows.append(row)
    out = pd.DataFrame(rows)
    out["n_classes"] = out["n_classes"].astype("Int64")
    return out


def _unreadable(rs) -> str | None:
    """Why a found result set cannot be scored (its relabelling fails), or None; read once here."""
    try:
        rs.images()
    except ValueError as e:
        return " ".join(str(e).split())
    return None


def weights_warnings(cells: pd.DataFrame) -> list[str]:
    """One line per paper row whose stored model has other weights than the paper's (`weights_note`)."""
    return list(dict.fromkeys(n for n in cells.get("weights_note", pd.Series(dtype=str)) if n))


def missing_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset column with cells lacking data: column, the models it lacks, and the how-to
    (each cell's status, said once per distinct text), so that an empty store reads as a short list of
    what to provide rather than 42 repeated cells."""
    rows = []
    for d, g in cells[cells["status"] != "ok"].groupby("dataset", sort=False):
        rows.append({"dataset": d, "models without data": ", ".join(g["model"]),
                     "how to get them": " / ".join(dict.fromkeys(g["status"]))})
    return pd.DataFrame(rows, columns=["dataset", "models without data", "how to get them"])


def cell_notes(cells: pd.DataFrame) -> pd.DataFrame:
    """Where each Table 1 cell with data comes from: images, label space, notes (an explicitly other
    label space, an analysis-time relabelling, a reduced grid) and the result set read."""
    ok = cells[cells["status"] == "ok"]
    out = ok[["model", "dataset", "n_images", "label_space", "n_classes", "note", "result_set"]].reset_index(drop=True)
    return out.assign(result_set=[Path(p).name for p in out["result_set"]])  # the key's folder in the store


def table1_display(cells: pd.DataFrame, metric: str = "standard") -> pd.DataFrame:
    """Rows = models, columns = datasets; each cell 'ours (paper p, diff +d)', or the cell's how-to."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")

    def cell(r):
        if r["status"] != "ok":  # the how-to is said once per dataset by `missing_cells`
            return "no data" if r["status"].startswith("no data") else (
                "not run" if r["status"].startswith("not run") else "refused")
        if np.isnan(r[metric]):
            return "n/a"
        text = f"{r[metric]:.2f}"
        if not np.isnan(r[f"{metric}_paper"]):
            text += f" ({r[f'{metric}_paper']:.2f})"
        return text

    out = cells.assign(cell=cells.apply(cell, axis=1)).pivot(index="model", columns="dataset", values="cell")
    order_m = list(dict.fromkeys(cells["model"]))
    order_d = list(dict.fromkeys(cells["dataset"]))
    out = out.reindex(index=order_m, columns=order_d)
    out.columns.name = f"{METRICS[metric][0]}: ours (paper)"
    return out


def random_row(cells: pd.DataFrame) -> pd.DataFrame:
    """Table 1's 'random' row per dataset, from the number of classes of the space each cell used."""
    ok = cells[cells["status"] == "ok"].drop_duplicates("dataset")
    out = ok[["dataset", "label_space", "n_classes", "random_topn", "random_all"]].reset_index(drop=True)
    out.attrs["missing"] = [f"{d}: no stored cell, so no random row (its number of classes comes from a stored "
                            f"result set's label space)" for d in dict.fromkeys(cells["dataset"]) if d not in set(ok["dataset"])]
    return out


#: The datasets of the paper's per-anchor figure.
ANCHOR_DATASETS = ("IN", "IN-A", "ObjectNet")


def _with_data(results_dir, models: Mapping[str, str], datasets: Sequence[str]) -> dict[str, str]:
    """The rows of `models` with a stored sweep of at least one of `datasets`."""
    return {m: spec for m, spec in models.items()
            if any(matrix.find_cell(results_dir, spec, matrix.TABLE1_DATASETS[d]) is not None for d in datasets)}


def anchor_grids(results_dir: str | Path, models: Mapping[str, str] | None = None,
                 datasets: Sequence[str] = ANCHOR_DATASETS, **how) -> dict[str, dict]:
    """Per-anchor bounds (any view at that anchor, %) of the stored models: {"<model> <dataset>": {model,
    dataset, ours [g, g] or None, paper [3, 3] (the paper's grids are ResNet-50's), status, result_set}}.

    models: {row: spec}; None takes every stored model with a sweep of one of `datasets`
    (`stored_models`), and ResNet-50 in any case (the paper's reference, with how to get it when missing).
    """
    from zoomstudy.analysis.bounds import anchor_bounds

    if models is None:
        every = stored_models(results_dir)
        models = {"ResNet-50": every["ResNet-50"], **_with_data(results_dir, every, datasets)}
    out = {}
    for m, spec in models.items():
        for d in datasets:
            name = matrix.TABLE1_DATASETS[d]
            rs = matrix.find_cell(results_dir, spec, name)
            ref = paper.anchor_grid(paper.PER_ANCHOR, dataset=d)
            entry = {"model": m, "dataset": d, "paper": ref}
            if rs is None or not len(rs.images()):
                entry.update(ours=None, status=how_to_get(name, spec, results_dir=results_dir, **how), result_set=None)
            else:
                entry.update(ours=anchor_bounds(rs.correct(), rs.grid), status="ok", result_set=str(rs.path))
            out[f"{m} {d}"] = entry
    return out


def centre_share(cells: pd.DataFrame) -> pd.DataFrame:
    """Share of the greedy top-N views at the centre anchor per stored cell, and their mean (the
    paper averages over datasets and models: 26.65%; a uniform choice gives 100/9 = 11.1%)."""
    ok = cells[cells["status"] == "ok"]  # table1_cells computed each cell's cover (its first top_n views)
    out = ok[["model", "dataset", "center_share", "cover_length"]].reset_index(drop=True)
    out = out.astype({"center_share": float, "cover_length": int})
    # a cell whose cover is empty (no image solved by any view) has no share: left out of the mean
    out.attrs["mean"] = float(out["center_share"].mean()) if out["center_share"].notna().any() else np.nan
    out.attrs["n_cells"] = int(out["center_share"].notna().sum())
    out.attrs["paper"] = paper.CENTER_SHARE_TOP36
    out.attrs["missing"] = [] if len(out) else [
        "no stored Table 1 cell yet, so no greedy cover to place: run `zoomstudy paper` (see the Table 1 lines above)"]
    return out


def table4(results_dir: str | Path, models: Mapping[str, str] | None = None,
           datasets: Sequence[str] = ("IN", "IN-A"), **how) -> pd.DataFrame:
    """Table 4 (test-time aggregation without training) for the stored sweeps: model, dataset, group,
    aggregation, ours, paper, diff, status. The paper's values are ViT-B/32's: they stand beside the
    ViT-B/32 row only (another model's rows have no paper value, `table4_comparison`).

    models: {row: spec}; None: ViT-B/32 (the paper's) and every other stored model with a sweep of
    `datasets`. A missing model x dataset is one row whose status says how to get it (attrs['missing']
    lists them, one line each), never the paper's rows with empty values.
    """
    from zoomstudy.analysis.tta import table4_comparison, tta_table

    if models is None:
        every = stored_models(results_dir)
        models = {"ViT-B/32": every["ViT-B/32"], **_with_data(results_dir, every, datasets)}
    frames, missing, notes = [], [], []
    for m, spec in models.items():
        for d in datasets:
            name = matrix.TABLE1_DATASETS[d]
            rs = matrix.find_cell(results_dir, spec, name)
            if rs is None or not len(rs.images()):
                missing.append(f"{m} on {d}: {how_to_get(name, spec, results_dir=results_dir, **how)}")
                continue
            table = tta_table(rs)
            if not len(table):
                missing.append(f"{m} on {d}: the sweep has no 5-/10-crop views (it ran with --no-tta)")
                continue
            cmp = table4_comparison(table, rs.settings)
            f = cmp["ours"].rename(columns={"top1": "ours"})
            if cmp["comparable"]:
                ref = cmp["paper"].rename(columns={"top1": "paper"})
                f = f.merge(ref, on=["group", "aggregation"], how="left")
                f["status"] = "ok"
            else:
                f["paper"] = np.nan
                f["status"] = "ok"
            if not cmp["comparable"] and m in matrix.TABLE1_MODELS:
                notes.append(f"{m} on {d}: {cmp['caption']}")
            frames.append(f.assign(model=m, dataset=d))
    cols = ["model", "dataset", "group", "aggregation", "ours", "paper", "diff", "status"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    out["diff"] = out["ours"] - out["paper"] if len(out) else []
    out = out[cols]
    out.attrs.update(missing=missing, notes=notes)
    return out


def stored_memo_tables(results_dir: str | Path) -> list[tuple[dict, pd.DataFrame]]:
    """(settings, table) of every finished MEMO table under results_dir/memo (partial ones left out)."""
    out = []
    for meta in sorted((Path(results_dir) / "memo").glob("*.json")):
        table = meta.with_suffix(".parquet")
        if table.exists() and not meta.name.endswith(".partial.json"):
            out.append((json.loads(meta.read_text()), pd.read_parquet(table)))
    return out


def table5(results_dir: str | Path, paper_models: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Table 5 (MEMO) from the stored MEMO tables: method, model, dataset, ours, paper, diff, status.

    paper_models: weights id or checkpoint file name -> the paper's column ('DeepAugment+AugMix',
    'MoEx+CutMix') for the robust ResNet-50s; torchvision ResNet-50 V1 is recognised by itself.
    Paper rows without a stored table say how to get one (notebook 03 or `analysis.table5.memo_table`).
    """
    from zoomstudy.analysis.table5 import memo_summary, table5_comparison

    ours = []
    for settings, df in stored_memo_tables(results_dir):
        if not len(df):
            continue
        wid = str(settings["key"]["model"].get("weights_id"))
        pm = next((v for k, v in (paper_models or {}).items() if k in wid or k in json.dumps(settings["key"]["model"])), None)
        try:
            cmp = table5_comparison(memo_summary(df), settings, pm)
        except ValueError:
            continue
        if not cmp["comparable"]:
            continue
        model = pm or "ResNet-50"
        dataset = paper.to_paper_names(pd.DataFrame({"dataset": [settings["key"]["dataset"].get("name")]}))["dataset"][0]
        for r in cmp["ours"].itertuples(index=False):
            ours.append({"method": r.method, "model": model, "dataset": dataset, "ours": float(r.top1)})
    ref = paper.TABLE5.rename(columns={"top1": "paper"})
    out = ref.merge(pd.DataFrame(ours, columns=["method", "model", "dataset", "ours"]),
                    on=["method", "model", "dataset"], how="left")
    out["diff"] = out["ours"] - out["paper"]
    how = ("not stored: run notebook 03 (profile paper) or analysis.table5.memo_table; the robust ResNet-50s "
           "need their checkpoints")
    out["status"] = np.where(out["ours"].notna(), "ok", how)
    out = out[["method", "model", "dataset", "ours", "paper", "diff", "status"]]
    gone = out[out["ours"].isna()]
    out.attrs["missing"] = [f"MEMO {m} on {', '.join(dict.fromkeys(g['dataset']))}: {how}"
                            for m, g in gone.groupby("model", sort=False)]
    return out


def hard_leaderboard(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(leaderboard, per_origin) of the stored ImageNet-Hard plain runs.

    leaderboard: `hard.leaderboard` (model, paper_model, n, full_set, accuracy, CI, paper_top1,
    delta) plus one row per paper model without a stored run (status says how to get it).
    per_origin: origin x model accuracy (%), from `hard.per_origin_accuracy`.
    """
    from zoomstudy.analysis.hard import leaderboard, paper_model_name, per_origin_accuracy

    tables = {spec: df for spec, df in matrix.stored_hard_tables(results_dir).items() if len(df)}
    known = set(paper.IMAGENET_HARD["model"])
    names = {spec: (df.attrs.get("paper_model") if df.attrs.get("paper_model") in known else None)
             or paper_model_name(spec) or paper_model_name(df.attrs.get("model", "")) for spec, df in tables.items()}
    board = leaderboard(tables, paper_names={k: v for k, v in names.items() if v}) if tables else pd.DataFrame(
        columns=["model", "paper_model", "n", "full_set", "accuracy", "ci_low", "ci_high", "paper_top1", "delta"])
    board = board.assign(status="ok")
    have = set(board["paper_model"].dropna())
    missing = [{"model": m, "paper_model": m, "paper_top1": float(t),
                "status": f"not stored: zoomstudy paper --hard-models {matrix.HARD_MODELS.get(m, m)!r} "
                          f"(needs imagenet-hard: the hub at its pinned commit, --root imagenet-hard=PATH, or --hard-revision SHA --hard-rows N)"}
               for m, t in paper.IMAGENET_HARD[["model", "top1"]].itertuples(index=False) if m not in have]
    board = pd.concat([board, pd.DataFrame(missing)], ignore_index=True) if missing else board
    board.attrs["missing"] = [f"{r['model']}: {r['status']}" for r in missing]
    per = [per_origin_accuracy(df)[["origin", "accuracy"]].assign(model=names.get(s) or s) for s, df in tables.items()]
    per_origin = (pd.concat(per).pivot(index="origin", columns="model", values="accuracy") if per
                  else pd.DataFrame())
    return board, per_origin


def provenance_of_cells(cells: pd.DataFrame) -> list[str]:
    """The result sets every Table 1 cell was read from (the report's provenance record)."""
    return sorted({p for p in cells["result_set"].dropna()})


def the_paper(results_dir: str | Path, *, roots: Mapping[str, str] | None = None,
              data_dir: str | Path | None = None, top_n: int = 36, folds: int = 2,
              table1_models: Mapping[str, str] | None = None) -> dict:
    """Everything notebook 06 shows, in one call: Table 1 (tidy and per metric), the random row, the
    per-anchor grids, the centre share, Tables 4 and 5, the ImageNet-Hard leaderboard, for every model
    of the store (`stored_models`: the paper's six beside the paper's numbers, others in rows of their
    own) unless table1_models names the rows; weights_warnings: the paper rows stored with other weights."""
    how = {"roots": roots, "data_dir": data_dir}
    models = dict(table1_models) if table1_models else stored_models(results_dir)
    cells = table1_cells(results_dir, models, top_n=top_n, folds=folds, **how)
    board, per_origin = hard_leaderboard(results_dir)
    anchor_models = ({m: s for m, s in models.items()} if table1_models else None)
    return {
        "cells": cells,
        "table1": {m: table1_display(cells, m) for m in METRICS},
        "random": random_row(cells),
        "anchors": anchor_grids(results_dir, anchor_models, **how),
        "centre": centre_share(cells),
        "table4": table4(results_dir, anchor_models, **how),
        "table5": table5(results_dir),
        "hard": board,
        "hard_per_origin": per_origin,
        "result_sets": provenance_of_cells(cells),
        "weights_warnings": weights_warnings(cells),
    }


def anchor_figure(grids: Mapping[str, dict], title: str = "per-anchor bound (%): the paper's ResNet-50, then ours"):
    """The paper's per-anchor grids (ResNet-50) in the first row, then one row per stored model (a blank
    where it lacks the dataset), one colour scale per panel; None when no model has a stored grid
    (the paper's alone would say nothing about this store)."""
    from zoomstudy.report.plots import anchor_panels

    datasets = list(dict.fromkeys(g["dataset"] for g in grids.values()))
    models = list(dict.fromkeys(g["model"] for g in grids.values() if g["ours"] is not None))
    if not models:
        return None
    panels: dict = {}
    for d in datasets:
        ref = next(g["paper"] for g in grids.values() if g["dataset"] == d)
        panels[f"paper ResNet-50 {d}"] = ref
    for m in models:
        for d in datasets:
            g = grids.get(f"{m} {d}")
            panels[f"ours {m} {d}"] = None if g is None else g["ours"]
    return anchor_panels(panels, title=title, ncols=len(datasets))


def show(table, missing: Sequence[str] | None = None, *, what: str = "") -> None:
    """A table of notebook 06 as the report shows it: the rows with data (no index, integers as integers,
    text never cut, numbers on one line), then one line per missing piece (`attrs['missing']` when not
    given) instead of rows of NaN or a bare header."""
    from IPython.display import display

    attrs_missing = getattr(table, "attrs", {}).get("missing")
    notes = list(getattr(table, "attrs", {}).get("notes", []))
    missing = (attrs_missing or []) if missing is None else missing
    if isinstance(table, pd.DataFrame) and attrs_missing is not None:  # the missing rows are said as lines
        if "status" in table.columns:
            table = table[table["status"] == "ok"]
        if "ours" in table.columns:
            table = table[table["ours"].notna()]
    if isinstance(table, pd.DataFrame) and len(table) and len(table.columns):
        display(styled(table))
    elif not missing:
        print(f"{what or 'this table'}: nothing stored yet")
    for line in [*notes, *missing]:
        print(line)


def styled(table: pd.DataFrame):
    """A pandas Styler: numbers with 2 decimals and integers as integers, numbers and short labels on one
    line, long text (status, notes, paths) wrapped but never cut (pandas cuts strings at 50 characters)."""
    t = table.copy()
    index = not isinstance(t.index, pd.RangeIndex)
    for c in t.columns:
        if pd.api.types.is_float_dtype(t[c]) and t[c].dropna().apply(float.is_integer).all() and t[c].notna().any() \
                and c in ("n_classes", "n_images", "n", "cover_length", "images_kept"):
            t[c] = t[c].astype("Int64")
    st = t.style.format(precision=2, na_rep="-")
    if not index:
        st = st.hide(axis="index")
    long = [c for c in t.columns if (t[c].dtype == object or pd.api.types.is_string_dtype(t[c]))
            and t[c].astype(str).str.len().max() > 40]
    short = [c for c in t.columns if c not in long]
    if short:
        st = st.set_properties(subset=short, **{"white-space": "nowrap"})
    if long:  # wrapped inside the page, long paths broken anywhere, never cut
        st = st.set_properties(subset=long, **{"white-space": "normal", "overflow-wrap": "anywhere",
                                                "min-width": "16rem", "text-align": "left"})
    return st


def paper_findings(cells: pd.DataFrame, centre: pd.DataFrame) -> list[str]:
    """Headline sentences of notebook 06, computed from the stored cells (never typed in)."""
    ok = cells[cells["status"] == "ok"]
    out = [f"{len(ok)} of {len(cells)} Table 1 cells ({cells['model'].nunique()} models x "
           f"{cells['dataset'].nunique()} datasets) have stored results."]
    if len(ok):
        gap = ok["upper_324"] - ok["standard"]
        best = ok.loc[gap.idxmax()]
        out.append(f"Across them the right framing adds {gap.mean():.1f} points to 1-crop accuracy on average "
                   f"(largest: {best['model']} on {best['dataset']}, {best['standard']:.1f}% -> {best['upper_324']:.1f}%).")
        other = ok["weights_note"].astype(bool) if "weights_note" in ok else pd.Series(False, index=ok.index)
        diff = ok.loc[~other, "standard_diff"].dropna()
        if len(diff):
            out.append(f"1-crop accuracy differs from the paper's by {diff.abs().mean():.2f} points on average "
                       f"over the {len(diff)} cells the paper reports.")
        if other.any():
            out.append(f"{int(other.sum())} cells of the paper's rows were stored with other weights than the "
                       f"paper's ({', '.join(dict.fromkeys(ok.loc[other, 'model']))}) and are not compared with it.")
    if centre.attrs.get("n_cells"):
        out.append(f"{centre.attrs['mean']:.2f}% of the greedy top-N views sit at the centre anchor on average "
                   f"over {centre.attrs['n_cells']} cells (paper {centre.attrs['paper']:.2f}%, uniform 11.11%).")
    else:
        out.append("No stored cell has a greedy cover yet, so the centre share is not measured "
                   "(run `zoomstudy paper` with the datasets in data/).")
    return out
