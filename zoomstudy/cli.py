"""`zoomstudy` command line: sweep, merge, summary, reproduce.

Bad parameters end with one line on stderr (exit 2) before any compute; the rest is the package's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _scales(text: str | None):
    if text in (None, "", "paper"):
        return None
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--scales must be integers separated by commas, got {text!r}") from None


def cmd_sweep(a) -> int:
    from zoomstudy.study import ensure_results
    from zoomstudy.sweep.engine import parse_shard

    rs = ensure_results(
        a.model, a.dataset, checkpoint=a.checkpoint, root=a.root, scales=_scales(a.scales), grid=a.grid,
        crop=a.crop, results_dir=a.results_dir, label_space=a.label_space, max_images=a.max_images,
        pretrained=not a.no_pretrained, device=a.device, batch_size=a.batch_size, workers=a.workers,
        progress=not a.quiet, shard=parse_shard(a.shard), normalization=a.normalization,
        tta=not a.no_tta,
    )
    print(json.dumps(rs.summary()))
    return 0


def cmd_merge(a) -> int:
    from zoomstudy.sweep.store import ResultSet, merge

    rs = merge(ResultSet(Path(a.result_set)), a.shards)
    print(json.dumps(rs.summary()))
    return 0


def cmd_summary(a) -> int:
    import pandas as pd

    from zoomstudy.analysis.bounds import table1_row
    from zoomstudy.sweep.store import find_results

    rows = []
    for rs in find_results(a.results_dir, model=a.model, dataset=a.dataset):
        s = rs.summary()
        correct = rs.correct(keep=None)
        rows.append(table1_row(correct, rs.grid, s["model"], s["dataset"]))
    if not rows:
        raise ValueError(f"no result sets under {a.results_dir}")
    print(pd.DataFrame(rows).round(2).to_string(index=False))
    return 0


def cmd_reproduce(a) -> int:
    from zoomstudy.report.notebooks import reproduce

    overrides = {}
    for kv in a.param or []:
        if "=" not in kv:
            raise ValueError(f"-p expects key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    index = reproduce(Path(a.notebooks), Path(a.out), profile=a.profile, notebooks=a.only or None,
                      overrides=overrides or None, progress=not a.quiet)
    print(f"reports: {index}")
    return 0


def cmd_profile(a) -> int:
    """Run a profile (or, with --check, only check an existing profile.json); exit 1 on a regression."""
    from zoomstudy.report.model_profile import check_regression, profile

    thresholds = {"max_oracle_gap": a.max_oracle_gap, "max_center_bias": a.max_center_bias}
    if a.check:
        failures = check_regression(a.check, **thresholds)
    else:
        if a.images is None:
            raise ValueError("--images is required (unless --check names an existing profile.json)")
        if a.model is None and a.checkpoint is None:
            raise ValueError("give --model NAME, --checkpoint PATH, or both")
        if a.out is None:
            raise ValueError("--out DIR is required: profile.html and profile.json are written there")
        try:
            sizes = None if not a.sizes else () if a.sizes == "none" else [
                int(x) for x in a.sizes.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"--sizes must be integers separated by commas, or 'none', got {a.sizes!r}") from None
        summary = profile(
            a.model, a.images, a.labels, checkpoint=a.checkpoint, out_dir=a.out,
            scales="paper" if a.scales == "paper" else _scales(a.scales), grid=a.grid, crop=a.crop,
            max_images=a.max_images, thresholds=thresholds, results_dir=a.results_dir,
            resolution_sizes=sizes, n_zoom_maps=a.zoom_maps,
            pretrained=not a.no_pretrained, device=a.device, label_space=a.label_space,
            batch_size=a.batch_size, workers=a.workers, progress=not a.quiet,
        )
        m = summary["metrics"]

        def pct(v):
            return "-" if v is None else f"{v:.2f}"

        print(f"report: {summary['html_path']}")
        print(f"summary: {summary['json_path']}")
        print(f"images {m['n_images']}: 1-crop {pct(m['one_crop'])}%, oracle {pct(m['oracle'])}%, "
              f"oracle gap {pct(m['oracle_gap'])} pp, centre bias {pct(m['center_bias'])} pp, "
              f"best scale {m['best_scale']}, resolution peak {m['resolution_peak_size']} px")
        failures = summary["regression"]["failures"]
    for line in failures:
        print(f"zoomstudy profile: regression: {line}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoomstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="run (or resume) one model over one dataset and one view grid")
    s.add_argument("--model", required=True,
                   help="torchvision:NAME, timm:NAME or a name of zoomstudy.models.loading.MODELS")
    s.add_argument("--checkpoint", help="local weights file for the architecture (state_dict)")
    s.add_argument("--no-pretrained", action="store_true", help="random weights (speed tests)")
    s.add_argument("--dataset", required=True, help="registry name (imagenet-val, imagenet-hard, ...) or csv:DIR, folder:DIR, hf:REPO@REV:split, synthetic:N")
    s.add_argument("--root", help="local copy of a registry dataset")
    s.add_argument("--label-space", default="imagenet1k")
    s.add_argument("--scales", help="comma-separated scales (default: the paper's 36)")
    s.add_argument("--grid", type=int, default=3)
    s.add_argument("--crop", type=int, default=224)
    s.add_argument("--results-dir", default="results")
    s.add_argument("--max-images", type=int)
    s.add_argument("--batch-size", type=int, default=512, help="views per forward pass")
    s.add_argument("--workers", type=int, help="decoding processes (default 4 on CUDA, 1 on CPU)")
    s.add_argument("--device", help="cuda, cuda:1, cpu (default: CUDA when present)")
    s.add_argument("--normalization", default="imagenet", choices=["imagenet", "model"])
    s.add_argument("--no-tta", action="store_true", help="skip the 5/10-crop views")
    s.add_argument("--shard", help="i/n: this process's share (default: the torchrun rank)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sweep)

    m = sub.add_parser("merge", help="validate that the shards of a sweep hold every image once")
    m.add_argument("result_set")
    m.add_argument("--shards", type=int, required=True)
    m.set_defaults(func=cmd_merge)

    t = sub.add_parser("summary", help="Table 1 rows for stored result sets")
    t.add_argument("results_dir", nargs="?", default="results")
    t.add_argument("--model")
    t.add_argument("--dataset")
    t.set_defaults(func=cmd_summary)

    r = sub.add_parser("reproduce", help="run every notebook headless into a report site")
    r.add_argument("--profile", default="offline", help="offline (default, no network), local, quick, paper")
    r.add_argument("--out", default="reports")
    r.add_argument("--notebooks", default=str(Path(__file__).resolve().parents[1] / "notebooks"))
    r.add_argument("--only", nargs="*", help="notebook names to run (default: all)")
    r.add_argument("-p", "--param", action="append", help="override a parameter: key=value (JSON values)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_reproduce)

    f = sub.add_parser("profile", help="zoom and position sensitivity of a model on your images: HTML + JSON report")
    f.add_argument("--model", help="torchvision:NAME, timm:NAME or a paper model (default with --checkpoint: "
                   "the torchvision architecture named in the checkpoint's file name)")
    f.add_argument("--checkpoint", help="local weights file (state_dict) for the model")
    f.add_argument("--no-pretrained", action="store_true", help="random weights (pipeline checks)")
    f.add_argument("--images", help="folder of images (labels.csv inside, or class sub-folders) or a source spec "
                   "(csv:DIR, folder:DIR, synthetic:N, a registry name)")
    f.add_argument("--labels", help="CSV (file,label) listing the images of --images")
    f.add_argument("--out", help="output folder: profile.html, profile.json (and results/, the sweep's store)")
    f.add_argument("--results-dir", help="the sweep's result store (default: OUT/results)")
    f.add_argument("--scales", help="comma-separated scales, or 'paper' for the 36 (default: 12 compact scales)")
    f.add_argument("--grid", type=int, default=3)
    f.add_argument("--crop", type=int, default=224)
    f.add_argument("--sizes", help="comma-separated input sizes of the resolution curve (default 128..448), "
                   "or 'none' to skip it")
    f.add_argument("--zoom-maps", type=int, default=3, help="example images shown as zoom maps")
    f.add_argument("--max-images", type=int)
    f.add_argument("--label-space", default="imagenet1k")
    f.add_argument("--batch-size", type=int, help="views per forward pass (default 32 on CPU, 512 on CUDA)")
    f.add_argument("--workers", type=int, help="decoding processes (default 4 on CUDA, 1 on CPU)")
    f.add_argument("--device", help="cuda, cpu (default: CUDA when present)")
    f.add_argument("--max-oracle-gap", type=float, help="exit 1 when the oracle gap (pp) exceeds this")
    f.add_argument("--max-center-bias", type=float, help="exit 1 when the centre bias (pp) exceeds this")
    f.add_argument("--check", metavar="JSON", help="check an existing profile.json against the thresholds, run nothing")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=cmd_profile)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"zoomstudy {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
