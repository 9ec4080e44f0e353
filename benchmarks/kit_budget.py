"""The view budget curve of the real-data kit (100 ImageNet images, real SqueezeNet 1.0, paper grid).

Run once for the figures of the README and the report (seconds: no model runs):

    python benchmarks/kit_budget.py [--kit ../shared/realdata] [--results RESULT_SET] [--out budget.png]

Without --results it reads the kit's reference per-view predictions (reference/squeezenet1_0_views.npz:
top-1 class and float16 confidence of all 324 views, from an independent PIL implementation), which give
the cover and max rules; the mean rule needs each view's top-5, i.e. a stored sweep of the kit
(`zoomstudy sweep --model torchvision:squeezenet1_0 --checkpoint KIT/weights/... --dataset csv:KIT/imagenet-sample`),
given with --results.

With --results and --zoomtta it also checks the deployable module on every image of the sweep: `ZoomTTA`
with the policy chosen at each k (1, 2, 4, 8; and 36 with --k36) gives, image for image, the store's
max-aggregated prediction, and its mean-aggregated one wherever the store's top-5 proves that exact; the
S = 224 group (9 views), which the sweep aggregated from the full softmax, is compared under both rules
on every image. Prints the module's views/s on this machine.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from zoomstudy.analysis import budget
from zoomstudy.views import ViewGrid

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kit", default=str(HERE.parents[1] / "shared" / "realdata"))
    ap.add_argument("--results", help="a stored sweep of the kit (all three rules)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", help="save the figure here (PNG)")
    ap.add_argument("--zoomtta", action="store_true", help="with --results: ZoomTTA against the store, every image")
    ap.add_argument("--k36", action="store_true", help="with --zoomtta: also the 36-view policies (slow on CPU)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.results:
        from zoomstudy.sweep.store import ResultSet

        rs = ResultSet(Path(a.results))
        curve = budget.budget_curve(rs, folds=a.folds, max_k=min(36, rs.grid.n_views))
        what = f"result set {rs.path}"
    else:
        z = np.load(Path(a.kit) / "reference" / "squeezenet1_0_views.npz")
        grid = ViewGrid.paper()
        assert [int(s) for s in z["scales"]] == list(grid.scales)
        n = len(z["files"])
        sv = budget.StoredViews.from_top1([str(f) for f in z["files"]], [(int(x),) for x in z["labels"]],
                                          z["pred"].reshape(n, -1), z["conf"].astype(np.float64).reshape(n, -1), grid)
        curve = budget.budget_curve(views=sv, folds=a.folds)
        what = "the kit's reference predictions (top-1 and float16 confidence per view)"
    dt = time.perf_counter() - t0
    print(f"view budget of {what}; {a.folds}-fold CV, bootstrap 95% CI; {dt:.1f} s on {platform.processor() or platform.machine()}")
    print(budget.budget_table(curve).to_string(index=False))
    print("saturation (smallest k that no larger budget beats detectably):", curve.attrs["saturation"])
    print(budget.budget_findings(curve))
    if a.out:
        from zoomstudy.report import plots

        plots.budget_curve(curve, title="real SqueezeNet 1.0, kit (100 images)").savefig(a.out, dpi=100, bbox_inches="tight")
        print("figure:", a.out)
    if a.zoomtta:
        if not a.results:
            ap.error("--zoomtta needs --results (a stored sweep of the kit)")
        check_zoomtta(rs, a.kit, (1, 2, 4, 8, 36) if a.k36 else (1, 2, 4, 8), a.folds)


def check_zoomtta(rs, kit: str, ks, folds: int) -> None:
    """ZoomTTA on every image of the stored sweep `rs` against the store (see the module docstring)."""
    import torch

    from zoomstudy.analysis import tta
    from zoomstudy.data.folders import CsvSource
    from zoomstudy.data.source import load_sample
    from zoomstudy.models.loading import load_model
    from zoomstudy.sweep.zoomtta import ZoomTTA

    key = rs.settings["key"]
    ckpt = Path(kit) / "weights" / "squeezenet1_0_deepcompression.pt"
    model = load_model(key["model"].get("architecture") or "torchvision:squeezenet1_0", checkpoint=ckpt,
                       pretrained=False, device="cpu")
    src = CsvSource(root=Path(kit) / "imagenet-sample", csv=Path(kit) / "imagenet-sample" / "labels.csv")
    sv = budget.stored_views(rs)
    grid = sv.grid
    positions = rs.images().set_index("image_id")["position"]
    images = []
    for image_id in sv.image_ids:
        sample = load_sample(src, int(positions.loc[image_id]))
        assert sample.image_id == image_id, (sample.image_id, image_id)
        images.append(sample.image)
    n = len(images)
    out = tta._outcomes(rs)
    order_of = {k: i for i, k in enumerate(out.image_ids)}
    rows = np.array([order_of[i] for i in sv.image_ids])
    views_done, seconds = 0, 0.0

    def predict(views, agg):
        nonlocal views_done, seconds
        module = ZoomTTA(model, views, agg, grid=grid.grid, crop=grid.crop, render_dtype=torch.float64)
        t0 = time.perf_counter()
        got = np.concatenate([module.predict(images[i:i + 8]).numpy() for i in range(0, n, 8)])
        seconds += time.perf_counter() - t0
        views_done += n * len(views)
        return got

    print(f"ZoomTTA against the store, {n} images:")
    if ("zoom_224", "mean") in out.preds:  # the S = crop group: grid views, aggregated by the sweep itself
        vs = [(grid.crop, r, c) for r in range(grid.grid) for c in range(grid.grid)]
        for agg in ("mean", "max"):
            got = predict(vs, agg)
            same = int((got == out.preds[("zoom_224", agg)][rows]).sum())
            print(f"  group S = {grid.crop} {agg:4s} ({len(vs)} views): {same} of {n} images equal the store")
    for k in ks:
        for agg in ("max", "mean"):
            pol = budget.make_policy(rs, k, agg, folds=folds)
            order = np.tile([grid.view_index(*v) for v in pol["views"]], (n, 1))
            _, mean_pred, mean_exact, max_pred = budget._running(sv, order, sv.correct)
            got = predict(pol["views"], agg)
            if agg == "max":
                print(f"  policy k={k:2d} max : {int((got == max_pred[:, -1]).sum())} of {n} images equal the store")
            else:
                ex = mean_exact[:, -1]
                print(f"  policy k={k:2d} mean: {int((got[ex] == mean_pred[ex, -1]).sum())} of {int(ex.sum())} images "
                      f"where the store's top-5 proves the mean ({n - int(ex.sum())} not provable)")
    print(f"  ZoomTTA speed: {views_done / seconds:.1f} views/s ({views_done} views, batches of 8 images, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()})")


if __name__ == "__main__":
    main()
