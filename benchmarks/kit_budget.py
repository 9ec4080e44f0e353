"""The view budget curve of the real-data kit (100 ImageNet images, real SqueezeNet 1.0, paper grid).

Run once for the figures of the README and the report (seconds: no model runs):

    python benchmarks/kit_budget.py [--kit ../shared/realdata] [--results RESULT_SET] [--out budget.png]

Without --results it reads the kit's reference per-view predictions (reference/squeezenet1_0_views.npz:
top-1 class and float16 confidence of all 324 views, from an independent PIL implementation), which give
the cover and max rules; the mean rule needs each view's top-5, i.e. a stored sweep of the kit
(`zoomstudy sweep --model torchvision:squeezenet1_0 --checkpoint KIT/weights/... --dataset csv:KIT/imagenet-sample`),
given with --results.
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
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.results:
        from zoomstudy.sweep.store import ResultSet

        rs = ResultSet(Path(a.results))
        curve = budget.budget_curve(rs, folds=a.folds)
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


if __name__ == "__main__":
    main()
