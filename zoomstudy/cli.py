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
    from .study import ensure_results
    from .sweep import parse_shard

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
    from .store import ResultSet, merge

    rs = merge(ResultSet(Path(a.result_set)), a.shards)
    print(json.dumps(rs.summary()))
    return 0


def cmd_summary(a) -> int:
    import pandas as pd

    from .analysis import table1_row
    from .store import find_results

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
    from .reports import reproduce

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoomstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="run (or resume) one model over one dataset and one view grid")
    s.add_argument("--model", required=True, help="torchvision:NAME, timm:NAME or a name of zoomstudy.models.MODELS")
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
