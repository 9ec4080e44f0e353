"""The study's figures: one call per figure, over a tidy pandas table or a small array.

Every function returns a matplotlib `Figure` and never calls `plt.show`, so the same code makes the
inline figures of a notebook, the PNGs of a headless run and the images of the HTML reports
(`fig_to_base64_png`). Figures are created with pyplot and closed before they are returned: in a
notebook a returned figure that is a cell's last expression is displayed exactly once (the inline
backend does not show it a second time at the end of the cell) and loops over many figures do not
accumulate open windows. Use `display(fig)` to show a figure kept in a variable.

All figures share one seaborn look (`STYLE`, `CONTEXT`, `PALETTE`), applied per figure in a context
so that importing this module does not change the user's global matplotlib settings. Correct and
wrong views are always green and red (`CORRECT_COLOR`, `WRONG_COLOR`), with a second cue (a tick
or cross, or a colour-bar label) for readers who cannot tell the two apart.
"""
from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence

import matplotlib


def _use_headless_backend() -> None:
    """Pick Agg on a display-less Linux machine, unless a backend was chosen or a kernel runs us.

    Jupyter and Colab kernels set their inline backend themselves (MPLBACKEND), and switching the
    backend after pyplot was imported would close the user's figures, so both are left alone.
    """
    if "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND"):
        return
    if "ipykernel" in sys.modules or "google.colab" in sys.modules:
        return
    get_backend = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    if get_backend is not None and get_backend() is not None:
        return  # configured explicitly (matplotlibrc)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")


_use_headless_backend()

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

STYLE = "whitegrid"
CONTEXT = "notebook"
FONT_SCALE = 0.9
PALETTE = "colorblind"
HEATMAP_CMAP = "viridis"
CORRECT_COLOR = "#1a9850"
WRONG_COLOR = "#d73027"
#: Crop size of the paper's views: the boundary between zoom-out and zoom-in scales.
CROP = 224

__all__ = [
    "plot_resolution_curve",
    "anchor_grid",
    "anchor_grids",
    "accuracy_vs_scale",
    "series_table",
    "compare_frame",
    "compare_table",
    "view_gallery",
    "zoom_map",
    "bar_with_ci",
    "fig_to_base64_png",
]


# ================================================================================================
# shared helpers
# ================================================================================================
@contextlib.contextmanager
def _styled():
    """The one look of all figures, scoped to the figure being built."""
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT, font_scale=FONT_SCALE):
        yield


def _subplots(n: int, ncols: int, panel_w: float, panel_h: float, extra_w: float = 0.0):
    """A constrained-layout figure with n panels on a ncols-wide grid; unused cells removed."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, layout="constrained",
        figsize=(panel_w * ncols + extra_w, panel_h * nrows),
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def _done(fig: Figure, owned: bool) -> Figure:
    """Close a figure we created (see the module docstring); leave a caller's figure open."""
    if owned:
        plt.close(fig)
    return fig


def _require_columns(df: pd.DataFrame, columns: Sequence[str], func: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{func}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{func}: missing column(s) {missing}; the table has {list(df.columns)}")


def _to_numpy(x) -> np.ndarray:
    """ndarray from an array, a list or a (possibly CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _unique(values: pd.Series) -> list:
    """Distinct values in order of first appearance (the order the table author chose)."""
    return list(pd.unique(values))


# ================================================================================================
# anchor heatmaps
# ================================================================================================
def _as_grid(values, func: str) -> np.ndarray:
    """A square [g, g] float array from an array or a tidy (row, col, value) table."""
    if isinstance(values, pd.DataFrame):
        _require_columns(values, ["row", "col", "value"], func)
        if values.duplicated(["row", "col"]).any():
            raise ValueError(f"{func}: several values for the same (row, col); aggregate first")
        rows = values["row"].astype(int).to_numpy()
        cols = values["col"].astype(int).to_numpy()
        g = int(max(rows.max(), cols.max())) + 1 if len(values) else 0
        if g == 0 or rows.min() < 0 or cols.min() < 0 or len(values) != g * g:
            raise ValueError(f"{func}: rows and cols must cover a full g x g grid from 0, got {len(values)} cells")
        grid = np.full((g, g), np.nan)
        grid[rows, cols] = values["value"].astype(float).to_numpy()
        return grid
    grid = _to_numpy(values).astype(float)
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1] or grid.size == 0:
        raise ValueError(f"{func}: expected a square [g, g] array, got shape {grid.shape}")
    return grid


def _draw_heatmap(ax, grid: np.ndarray, *, vmin, vmax, fmt: str, cmap: str, cbar: bool, cbar_label: str) -> None:
    g = grid.shape[0]
    sns.heatmap(
        grid, ax=ax, annot=True, fmt=fmt, vmin=vmin, vmax=vmax, cmap=cmap, square=True,
        cbar=cbar, cbar_kws={"label": cbar_label} if cbar else None,
        linewidths=1.0, linecolor="white", xticklabels=list(range(g)), yticklabels=list(range(g)),
    )
    # seaborn already draws row 0 at the top (image layout); the labels say so.
    ax.set_xlabel("anchor column (0 = left)")
    ax.set_ylabel("anchor row (0 = top)")
    ax.tick_params(axis="y", rotation=0)


def anchor_grid(
    values,
    *,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = ".1f",
    ax=None,
    cmap: str = HEATMAP_CMAP,
    cbar: bool = True,
    cbar_label: str = "accuracy (%)",
) -> Figure:
    """A g x g anchor statistic (e.g. the per-anchor bound) in image layout, row 0 at the top.

    values: a [g, g] array (row, column) or a DataFrame with columns row, col, value. Each cell is
    annotated with its value formatted by `fmt`. With `ax`, draws into that axes (and returns its
    figure, left open) so that callers can compose panels.
    """
    grid = _as_grid(values, "anchor_grid")
    with _styled():
        owned = ax is None
        if owned:
            g = grid.shape[0]
            fig, ax = plt.subplots(figsize=(1.2 * g + 1.8, 1.2 * g + 0.8), layout="constrained")
        else:
            fig = ax.figure
        _draw_heatmap(ax, grid, vmin=vmin, vmax=vmax, fmt=fmt, cmap=cmap, cbar=cbar, cbar_label=cbar_label)
        if title:
            ax.set_title(title)
    return _done(fig, owned)


def anchor_grids(
    df: pd.DataFrame,
    col_wrap: int = 3,
    *,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = ".1f",
    cmap: str = HEATMAP_CMAP,
    cbar_label: str = "accuracy (%)",
) -> Figure:
    """Small multiples of anchor grids (one per model, dataset, training regime...) on one colour scale.

    df: columns panel, row, col, value; panels appear in the table's order. The colour scale is shared
    (one colour bar, limits from all panels unless given) so that colours compare across panels.
    """
    _require_columns(df, ["panel", "row", "col", "value"], "anchor_grids")
    if col_wrap < 1:
        raise ValueError(f"anchor_grids: col_wrap must be >= 1, got {col_wrap}")
    panels = _unique(df["panel"])
    if not panels:
        raise ValueError("anchor_grids: the table is empty")
    grids = [_as_grid(df.loc[df["panel"] == p, ["row", "col", "value"]], f"anchor_grids (panel {p!r})") for p in panels]
    vmin = float(np.nanmin([np.nanmin(g) for g in grids])) if vmin is None else vmin
    vmax = float(np.nanmax([np.nanmax(g) for g in grids])) if vmax is None else vmax
    g = grids[0].shape[0]
    with _styled():
        fig, axes = _subplots(len(panels), col_wrap, 1.1 * g + 1.3, 1.1 * g + 0.9, extra_w=1.0)
        for ax, panel, grid in zip(axes, panels, grids):
            _draw_heatmap(ax, grid, vmin=vmin, vmax=vmax, fmt=fmt, cmap=cmap, cbar=False, cbar_label=cbar_label)
            ax.set_title(str(panel))
        mappable = plt.cm.ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=cmap)
        fig.colorbar(mappable, ax=axes, label=cbar_label, shrink=0.8)
        if title:
            fig.suptitle(title)
    return _done(fig, True)


# ================================================================================================
# accuracy against scale
# ================================================================================================
_SCALE_TICKS = (10, 16, 32, 64, 128, 224, 512, 1024, 2048)


def series_table(wide: pd.DataFrame, series: dict[str, str], keys: Sequence[str] = ("scale",)) -> pd.DataFrame:
    """Wide per-scale results -> the long table accuracy_vs_scale draws (columns keys, series, accuracy, lo, hi).

    series maps a column prefix to its legend label: {"center": "centre", "any_anchor": "any of 9"}
    reads center / center_lo / center_hi and any_anchor / any_anchor_lo / any_anchor_hi (the layout
    of analysis.accuracy_vs_scale). A prefix without _lo / _hi columns gives NaN bounds.
    """
    keys = list(keys)
    _require_columns(wide, keys + list(series), "series_table")
    parts = []
    for prefix, label in series.items():
        part = wide[keys].copy()
        part["series"] = label
        part["accuracy"] = wide[prefix].astype(float)
        part["lo"] = wide[f"{prefix}_lo"].astype(float) if f"{prefix}_lo" in wide else np.nan
        part["hi"] = wide[f"{prefix}_hi"].astype(float) if f"{prefix}_hi" in wide else np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _series_handles(series: list, colors: dict) -> list:
    """One legend entry per series, even when the first panel lacks some of them."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colors[s], marker="o", markersize=3, label=str(s)) for s in series]


def _zoom_axis(a, crop: int, lo_x: float, hi_x: float, ticks: Sequence[float]) -> None:
    """The scale axis of `accuracy_vs_scale`: log scale, the zoom-out half shaded, S = crop dashed."""
    a.set_xscale("log")
    a.set_xlim(lo_x, hi_x)
    a.axvspan(lo_x, crop, color="0.94", zorder=0, lw=0)
    a.axvline(crop, color="0.25", ls="--", lw=1)
    top = a.get_xaxis_transform()
    a.text(crop / 1.08, 0.98, "zoom out", transform=top, ha="right", va="top", fontsize="small", color="0.3")
    a.text(crop * 1.08, 0.98, "zoom in", transform=top, ha="left", va="top", fontsize="small", color="0.3")
    a.set_xticks(ticks)
    a.xaxis.set_major_formatter(ScalarFormatter())
    a.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel(f"scale S (shorter side, px; crop {crop})")


def accuracy_vs_scale(
    df: pd.DataFrame,
    *,
    crop: int = CROP,
    title: str | None = None,
    ylabel: str = "top-1 accuracy (%)",
    col_wrap: int = 3,
    ax=None,
) -> Figure:
    """Accuracy against the resize scale S on a log axis, split into zoom-out and zoom-in halves.

    df: columns scale and accuracy; optional lo and hi (a confidence band, both or neither), series
    (one line per value, e.g. "centre" against "any of 9", or one per model) and facet (one panel per
    value). The dashed line marks S = crop, where the resized image's shorter side equals the crop:
    left of it the image is a thumbnail on black (zoom out), right of it the crop sees part of the
    image (zoom in).
    """
    _require_columns(df, ["scale", "accuracy"], "accuracy_vs_scale")
    has_band = "lo" in df.columns or "hi" in df.columns
    if has_band and not {"lo", "hi"} <= set(df.columns):
        raise ValueError("accuracy_vs_scale: give both lo and hi columns for the band, or neither")
    if len(df) == 0:
        raise ValueError("accuracy_vs_scale: the table is empty")
    if (df["scale"] <= 0).any():
        raise ValueError("accuracy_vs_scale: scales must be positive (log axis)")
    facets = _unique(df["facet"]) if "facet" in df.columns else [None]
    series = _unique(df["series"]) if "series" in df.columns else [None]
    if ax is not None and len(facets) > 1:
        raise ValueError("accuracy_vs_scale: ax= draws one panel; the table has several facets")
    colors = dict(zip(series, sns.color_palette(PALETTE, max(len(series), 1))))
    lo_x = min(float(df["scale"].min()), crop) / 1.2
    hi_x = max(float(df["scale"].max()), crop) * 1.2
    ticks = [t for t in _SCALE_TICKS if lo_x <= t <= hi_x]

    with _styled():
        owned = ax is None
        if owned:
            fig, axes = _subplots(len(facets), col_wrap, 5.0, 3.6)
        else:
            fig, axes = ax.figure, [ax]
        for a, facet in zip(axes, facets):
            part = df if facet is None else df[df["facet"] == facet]
            for s in series:
                d = part if s is None else part[part["series"] == s]
                if d.empty:
                    continue
                d = d.sort_values("scale")
                label = None if s is None else str(s)
                a.plot(d["scale"], d["accuracy"], marker="o", markersize=3, lw=1.6, color=colors[s], label=label)
                if has_band:
                    a.fill_between(d["scale"], d["lo"], d["hi"], color=colors[s], alpha=0.2, lw=0)
            _zoom_axis(a, crop, lo_x, hi_x, ticks)
            a.set_ylabel(ylabel)
            low = part["lo"] if has_band else part["accuracy"]
            if (low.dropna() >= 0).all():
                a.set_ylim(bottom=0)
            bottom, top_y = a.get_ylim()
            a.set_ylim(top=top_y + 0.12 * (top_y - bottom))  # headroom: no curve runs through "zoom out | zoom in"
            if facet is not None:
                a.set_title(str(facet))
        if series != [None]:
            if owned:
                # below the panels: a legend beside them sat level with (and over) the titles
                fig.legend(handles=_series_handles(series, colors), loc="outside lower center", fontsize="small",
                           ncol=min(len(series), 4), frameon=False)
            else:
                ax.legend(fontsize="small")
        if title and len(axes) > 1:
            fig.suptitle(title)
        elif title:
            axes[0].set_title(title if facets == [None] else f"{title}: {facets[0]}")
    return _done(fig, owned)


# ================================================================================================
# ours against the paper
# ================================================================================================
def compare_frame(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    on: list[str],
    value_cols: list[str] | None = None,
    *,
    decimals: int | None = 2,
) -> pd.DataFrame:
    """Our numbers next to the paper's, with diff = ours - paper, one row per key.

    Returns a DataFrame indexed by `on`, with columns (value column, "ours" | "paper" | "diff").
    Rows present on one side only keep NaN on the other (an outer join: a missing number is shown,
    not dropped). Non-numeric cells (e.g. "-" in a transcribed table) become NaN. value_cols=None
    takes the columns the two tables share besides `on`. decimals rounds the output (None: exact).
    """
    on = [on] if isinstance(on, str) else list(on)
    if not on:
        raise ValueError("compare_frame: `on` must name at least one key column")
    if value_cols is None:
        value_cols = [c for c in ours.columns if c in paper.columns and c not in on]
    value_cols = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    if not value_cols:
        raise ValueError("compare_frame: no value columns to compare")
    for name, table in (("ours", ours), ("paper", paper)):
        _require_columns(table, on + value_cols, f"compare_frame ({name})")
        if table.duplicated(on).any():
            raise ValueError(f"compare_frame: duplicate keys {on} in {name}; one row per key")
    left = ours[on + value_cols].copy()
    right = paper[on + value_cols].copy()
    for v in value_cols:
        left[v] = pd.to_numeric(left[v], errors="coerce")
        right[v] = pd.to_numeric(right[v], errors="coerce")
    merged = left.merge(right, on=on, how="outer", suffixes=("\0ours", "\0paper"), sort=False)
    out = pd.DataFrame(index=pd.MultiIndex.from_frame(merged[on]) if len(on) > 1 else pd.Index(merged[on[0]]))
    for v in value_cols:
        a = merged[f"{v}\0ours"].to_numpy(float)
        b = merged[f"{v}\0paper"].to_numpy(float)
        out[(v, "ours")] = a
        out[(v, "paper")] = b
        out[(v, "diff")] = a - b
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.round(decimals) if decimals is not None else out


def compare_table(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    on: list[str],
    value_cols: list[str] | None = None,
    *,
    precision: int = 2,
    caption: str | None = "diff = ours - paper (blue: ours higher, red: ours lower)",
):
    """`compare_frame` as a pandas Styler for reports: 2 decimals, the diff cells coloured.

    The diff colour is a diverging scale centred on 0 and symmetric around it, so that a glance
    shows which numbers reproduce (white) and in which direction the others miss.
    """
    frame = compare_frame(ours, paper, on, value_cols, decimals=None)
    diff_cols = [c for c in frame.columns if c[1] == "diff"]
    diffs = frame[diff_cols].to_numpy(float)
    lim = float(np.nanmax(np.abs(diffs))) if np.isfinite(diffs).any() else 0.0
    lim = lim if lim > 0 else 1.0
    styler = frame.style.format(precision=precision, na_rep="-")
    styler = styler.background_gradient(cmap="RdBu", subset=diff_cols, vmin=-lim, vmax=lim)
    # a missing diff (the paper has no such row) would take the colormap's "bad" colour, black: keep it blank
    styler = styler.map(lambda v: "background-color: transparent; color: inherit" if pd.isna(v) else "",
                        subset=diff_cols)
    if caption:
        styler = styler.set_caption(caption)
    return styler


# ================================================================================================
# images
# ================================================================================================
def _as_images(views, func: str) -> np.ndarray:
    """uint8 [V, h, w, 3] from uint8 or float grey levels [V, 3, h, w] (render_views' output)."""
    arr = _to_numpy(views)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"{func}: expected views of shape [V, 3, h, w], got {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 255):
            raise ValueError(f"{func}: views must hold grey levels 0..255 (not normalised tensors)")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr.transpose(0, 2, 3, 1)


def _per_view(values, n: int, name: str, func: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = _to_numpy(values).reshape(-1) if not isinstance(values, list) else np.asarray(values, dtype=object)
    if len(arr) != n:
        raise ValueError(f"{func}: {name} has {len(arr)} entries for {n} views")
    return arr


def view_gallery(
    views,
    *,
    names: Sequence[str] | None = None,
    correct=None,
    conf=None,
    ncols: int = 6,
    title: str | None = None,
    thumb: float = 1.9,
) -> Figure:
    """Thumbnails of one image's views (e.g. the centre view at each scale), framed green or red.

    views: uint8 (or float grey levels 0..255) [V, 3, h, w], a tensor or an array; names: a caption
    per view (e.g. ViewGrid.view_name); correct: bool [V] (green frame and a tick when right, red and
    a cross when wrong); conf: the model's confidence [V] in [0, 1], shown in each title.
    """
    imgs = _as_images(views, "view_gallery")
    n = len(imgs)
    if n == 0:
        raise ValueError("view_gallery: no views")
    if ncols < 1:
        raise ValueError(f"view_gallery: ncols must be >= 1, got {ncols}")
    names = _per_view(list(names) if names is not None else None, n, "names", "view_gallery")
    correct = _per_view(correct, n, "correct", "view_gallery")
    conf = _per_view(conf, n, "conf", "view_gallery")
    with _styled():
        fig, axes = _subplots(n, ncols, thumb, thumb + 0.45)
        for i, ax in enumerate(axes):
            ax.imshow(imgs[i], interpolation="antialiased")
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            lines = []
            if names is not None:
                lines.append(str(names[i]))
            status = ""
            if correct is not None:
                status = "\u2713 " if bool(correct[i]) else "\u2717 "
            if conf is not None:
                lines.append(f"{status}p = {float(conf[i]):.2f}")
            elif status:
                lines.append(status.strip())
            color = "0.2" if correct is None else (CORRECT_COLOR if bool(correct[i]) else WRONG_COLOR)
            ax.set_title("\n".join(lines), fontsize="x-small", color=color)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("0.7" if correct is None else color)
                spine.set_linewidth(0.8 if correct is None else 4.0)
        if title:
            fig.suptitle(title)
    return _done(fig, True)


def zoom_map(
    correct,
    conf=None,
    scales: Sequence[int] | None = None,
    *,
    crop: int = CROP,
    title: str | None = None,
) -> Figure:
    """One image's whole sweep at a glance: scales across, the g x g anchors down, one cell per view.

    correct: bool [n_scales, g*g] (or [n_scales, g, g]), anchors in row-major order (row 0 = top);
    conf: the confidence of each view's prediction, same shape, or None. Cells are green when the
    view is right and red when wrong; with conf the shade is the confidence (pale = unsure). Dashed
    lines bound the S = crop column (zoom out to the left, zoom in to the right). scales: the S of
    each row of `correct` (default: the paper's 36 when there are 36 rows).
    """
    ok = _to_numpy(correct)
    if ok.ndim == 3:
        ok = ok.reshape(ok.shape[0], -1)
    if ok.ndim != 2 or ok.size == 0:
        raise ValueError(f"zoom_map: expected correct of shape [n_scales, g*g], got {ok.shape}")
    n_scales, n_anchors = ok.shape
    g = math.isqrt(n_anchors)
    if g * g != n_anchors:
        raise ValueError(f"zoom_map: {n_anchors} anchors per scale is not a square grid")
    ok = ok.astype(bool)
    if scales is None:
        from zoomstudy.views import PAPER_SCALES

        if n_scales != len(PAPER_SCALES):
            raise ValueError(f"zoom_map: pass scales= for {n_scales} scales (the paper has {len(PAPER_SCALES)})")
        scales = PAPER_SCALES
    scales = [int(s) for s in getattr(scales, "scales", scales)]  # a ViewGrid works too
    if len(scales) != n_scales:
        raise ValueError(f"zoom_map: {len(scales)} scales for {n_scales} rows of correct")
    p = None
    if conf is not None:
        p = _to_numpy(conf).astype(float).reshape(ok.shape[0], -1)
        if p.shape != ok.shape:
            raise ValueError(f"zoom_map: conf has shape {p.shape}, correct {ok.shape}")
    shade = 0.25 + 0.7 * np.clip(p, 0, 1) if p is not None else np.full(ok.shape, 0.75)
    greens, reds = plt.get_cmap("Greens"), plt.get_cmap("Reds")
    rgb = np.where(ok[..., None], greens(shade)[..., :3], reds(shade)[..., :3])  # [S, A, 3]
    image = rgb.transpose(1, 0, 2)  # anchors down, scales across

    with _styled():
        fig, ax = plt.subplots(figsize=(max(4.0, 0.22 * n_scales + 2.6), 0.3 * n_anchors + 1.6), layout="constrained")
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.grid(False)
        ax.set_xticks(range(n_scales))
        ax.set_xticklabels([str(s) for s in scales], rotation=90, fontsize="x-small")
        ax.set_yticks(range(n_anchors))
        ax.set_yticklabels([f"{a // g},{a % g}" for a in range(n_anchors)], fontsize="x-small")
        ax.set_xticks(np.arange(-0.5, n_scales, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, n_anchors, 1), minor=True)
        ax.grid(which="minor", color="white", lw=0.5)
        ax.tick_params(which="minor", length=0)
        for b in (sum(s < crop for s in scales), sum(s <= crop for s in scales)):
            if 0 < b < n_scales:
                ax.axvline(b - 0.5, color="0.15", ls="--", lw=1)
        ax.set_xlabel(f"scale S (zoom out < {crop} < zoom in)")
        ax.set_ylabel("anchor (row, col)")
        summary = f"{int(ok.sum())} of {ok.size} views correct"
        ax.set_title(f"{title} ({summary})" if title else summary)
        if p is not None:
            norm = Normalize(0, 1)
            for cmap, label in ((greens, "confidence, correct"), (reds, "confidence, wrong")):
                # the colour bars show the shades actually used (0.25..0.95 of each map)
                shown = matplotlib.colors.ListedColormap(cmap(np.linspace(0.25, 0.95, 64)))
                fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=shown), ax=ax, label=label, fraction=0.04, pad=0.01)
        else:
            handles = [Patch(color=greens(0.75), label="correct"), Patch(color=reds(0.75), label="wrong")]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return _done(fig, True)


# ================================================================================================
# bars
# ================================================================================================
def bar_with_ci(
    df: pd.DataFrame,
    x: str,
    y: str,
    lo: str,
    hi: str,
    hue: str | None = None,
    *,
    title: str | None = None,
    ylabel: str | None = None,
    ax=None,
) -> Figure:
    """Grouped bars of an accuracy per group (e.g. per ImageNet-Hard origin) with interval error bars.

    One row per bar: x the category, y the value, lo and hi the interval bounds (absolute values,
    not half-widths), hue an optional second grouping (e.g. model). Orders follow the table.
    """
    cols = [x, y, lo, hi] + ([hue] if hue else [])
    _require_columns(df, cols, "bar_with_ci")
    if len(df) == 0:
        raise ValueError("bar_with_ci: the table is empty")
    if df.duplicated([x] + ([hue] if hue else [])).any():
        raise ValueError(f"bar_with_ci: several rows for the same {[x] + ([hue] if hue else [])}; one row per bar")
    vals = df[[y, lo, hi]].astype(float)
    bad = (vals[lo] > vals[y]) | (vals[y] > vals[hi])
    if bad.any():
        raise ValueError(f"bar_with_ci: need {lo} <= {y} <= {hi}; violated in {int(bad.sum())} row(s)")
    cats = _unique(df[x])
    hues = _unique(df[hue]) if hue else [None]
    colors = sns.color_palette(PALETTE, len(hues))
    # one bar per category (a leaderboard coloured by source): full-width bars at the category, no gaps
    single = hue is not None and not df.duplicated([x]).any()
    width = 0.8 if single else 0.8 / len(hues)
    pos = {c: i for i, c in enumerate(cats)}
    with _styled():
        owned = ax is None
        if owned:
            width_in = max(4.0, 0.6 * len(cats) * (1.0 if single else max(1.0, 0.6 * len(hues))) + 1.5)
            fig, ax = plt.subplots(figsize=(width_in, 3.8), layout="constrained")
        else:
            fig = ax.figure
        for j, h in enumerate(hues):
            d = df if h is None else df[df[hue] == h]
            xs = np.array([pos[c] for c in d[x]], float) - 0.4 + width * ((0 if single else j) + 0.5)
            yv = d[y].to_numpy(float)
            err = np.vstack([yv - d[lo].to_numpy(float), d[hi].to_numpy(float) - yv])
            ax.bar(xs, yv, width * 0.95, yerr=err, capsize=3, color=colors[j],
                   error_kw={"elinewidth": 1, "ecolor": "0.2"}, label=None if h is None else str(h))
        ax.set_xticks(range(len(cats)))
        long = len(cats) > 6 or max(len(str(c)) for c in cats) > 8
        ax.set_xticklabels([str(c) for c in cats], rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel or y)
        ax.grid(axis="x", visible=False)
        if hue:  # beside the axes: inside, "best" still covered bars or error bars when every spot was taken
            ax.legend(title=hue, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        if title:
            ax.set_title(title)
    return _done(fig, owned)


def budget_curve(curve: pd.DataFrame, *, title: str | None = None, ax=None) -> Figure:
    """Accuracy against the number of views (`analysis.budget.budget_curve`): one line per rule with its
    bootstrap band, the whole grid as the last point, the fixed groups as markers at their view count,
    and each rule's saturation budget (after which more views add nothing detectable) as a ring."""
    _require_columns(curve, ["rule", "method", "k", "accuracy", "lo", "hi"], "budget_curve")
    if not len(curve):
        raise ValueError("budget_curve: the table is empty")
    rules = [r for r in _unique(curve["rule"]) if r != "fixed"]
    sat = curve.attrs.get("saturation", {})
    colors = dict(zip(rules + ["fixed"], sns.color_palette(PALETTE, len(rules) + 1)))
    markers = ["o", "s", "D", "^", "v", "P", "X", "*"]
    with _styled():
        owned = ax is None
        if owned:
            fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
        else:
            fig = ax.figure
        for rule in rules:
            d = curve[curve["rule"] == rule].sort_values("k")
            ax.plot(d["k"], d["accuracy"], "-", color=colors[rule], label=str(d["method"].iloc[0]), lw=1.6)
            ax.fill_between(d["k"], d["lo"], d["hi"], color=colors[rule], alpha=0.15, lw=0)
            if sat.get(rule) is not None and int(sat[rule]) in set(d["k"]):
                r = d[d["k"] == int(sat[rule])].iloc[0]
                ax.plot([r["k"]], [r["accuracy"]], "o", ms=11, mfc="none", mec=colors[rule], mew=1.8)
        fixed = curve[curve["rule"] == "fixed"]
        for j, r in enumerate(fixed.itertuples(index=False)):
            ax.errorbar([r.k], [r.accuracy], yerr=[[r.accuracy - r.lo], [r.hi - r.accuracy]], fmt=markers[j % len(markers)],
                        color="0.25", ms=6, capsize=2, lw=0.8, label=str(r.method))
        ax.set_xscale("log")
        ticks = sorted({1, 2, 4, 8, 16, 36} | {int(k) for k in curve["k"].max().reshape(-1)})
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("views per image (k; log scale; rings: more views add nothing detectable)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        if title:
            ax.set_title(title)
    return _done(fig, owned)


# ================================================================================================
# export
# ================================================================================================
def fig_to_base64_png(fig: Figure, *, dpi: int = 100) -> str:
    """The figure as base64 PNG text, for self-contained HTML: f'<img src="data:image/png;base64,{s}">'."""
    if not isinstance(fig, Figure):
        raise ValueError(f"fig_to_base64_png: expected a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_resolution_curve(
    curve: pd.DataFrame,
    *,
    train_size: int | None = 224,
    title: str | None = None,
    ylabel: str = "top-1 accuracy (%)",
):
    """Accuracy against input size (one line per `series` value when that column exists), with the
    interval band and a dashed line at the training size. Skipped sizes are marked on the x axis."""
    if not isinstance(curve, pd.DataFrame) or not {"size", "accuracy"} <= set(curve.columns):
        raise ValueError("plot_resolution_curve: expected a DataFrame with size and accuracy columns")
    if curve.empty:
        raise ValueError("plot_resolution_curve: the table is empty")
    series = list(pd.unique(curve["series"])) if "series" in curve.columns else [None]
    colors = dict(zip(series, sns.color_palette(PALETTE, max(len(series), 1))))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT, font_scale=FONT_SCALE):
        fig, ax = plt.subplots(figsize=(5.6 if series == [None] else 6.8, 3.6), layout="constrained")
        for s in series:
            d = (curve if s is None else curve[curve["series"] == s]).sort_values("size")
            ok = d.dropna(subset=["accuracy"])
            label = None if s is None else str(s)
            if not ok.empty:
                ax.plot(ok["size"], ok["accuracy"], marker="o", markersize=3, lw=1.6, color=colors[s], label=label)
                if {"lo", "hi"} <= set(ok.columns):
                    ax.fill_between(ok["size"], ok["lo"], ok["hi"], color=colors[s], alpha=0.2, lw=0)
            skipped = d[d["accuracy"].isna()]
            if not skipped.empty:
                ax.plot(skipped["size"], np.zeros(len(skipped)), ls="none", marker="x", color=colors[s])
        if train_size:
            ax.axvline(train_size, color="0.25", ls="--", lw=1)
            ax.text(train_size * 1.01, 0.98, f"train size {train_size}", transform=ax.get_xaxis_transform(),
                    ha="left", va="top", fontsize="small", color="0.3")
        sizes = sorted(int(v) for v in pd.unique(curve["size"]))
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(v) for v in sizes], rotation=45 if len(sizes) > 6 else 0)
        ax.set_xlabel("input size (px; Resize size x 256/224, CenterCrop size)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        if curve["accuracy"].isna().any():
            ax.text(0.01, 0.02, "x: size rejected by the model", transform=ax.transAxes, fontsize="x-small",
                    color="0.3")
        if series != [None]:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_title(title or "accuracy against test resolution (fixed framing)")
    plt.close(fig)
    return fig


def anchor_panels(panels: Mapping[str, np.ndarray | None], *, fmt: str = ".1f", cbar_label: str = "accuracy (%)",
                  title: str | None = None, ncols: int | None = None):
    """Anchor heatmaps side by side, each on its own colour scale (`plots.anchor_grid` per panel).

    Use it to put a run next to references measured on other models and data (the paper's ResNet-50,
    the real-data kit), where one shared colour scale would flatten the panel with the smaller range.
    ncols: panels per row (default: all in one row), filled row by row; a panel of None is a blank
    saying "no data" (a model without that dataset, so the columns stay the datasets).
    """
    if not panels:
        raise ValueError("anchor_panels: no panels")
    ncols = len(panels) if not ncols else int(ncols)
    nrows = -(-len(panels) // ncols)
    with _styled():
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), layout="constrained", squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (name, values) in zip(axes.flat, panels.items()):
            if values is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name}\nno data", ha="center", va="center", transform=ax.transAxes)
                continue
            grid = np.asarray(values, float)
            finite = grid[np.isfinite(grid)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
            if vmin == vmax:
                vmin, vmax = vmin - 1.0, vmax + 1.0
            anchor_grid(grid, ax=ax, title=str(name), fmt=fmt, vmin=vmin, vmax=vmax, cbar_label=cbar_label)
        if title:
            fig.suptitle(title)
    plt.close(fig)
    return fig
