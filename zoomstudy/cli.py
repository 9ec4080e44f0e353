"""`zoomstudy` command line: sweep, merge, summary, reproduce, profile, paper.

Each subcommand has a `validate_*` step that `main` runs before its `cmd_*`: it checks and normalises
everything that can be checked without loading a model or opening the data (numbers, shards, scales,
paths, names), so a bad parameter ends with one line on stderr and exit 2 at once, not after a model
download. `cmd_sweep` then opens the data (row count and labels checked, nothing decoded) before it
loads the model. A new option gets its check in its subcommand's validate_* function.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class _Bad(ValueError):
    """A parameter error found by a validate_* step (one line, exit 2)."""


def _scales(text: str | None):
    if text is None or text == "paper":
        return None
    if not text.strip():
        raise _Bad("--scales is empty; leave it out for the paper's 36 scales, or give integers such as 128,224,448")
    try:
        scales = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise _Bad(f"--scales must be integers separated by commas, got {text!r}") from None
    if any(s < 1 for s in scales):
        raise _Bad(f"--scales must be positive, got {text!r}")
    return scales


def _at_least(a, name: str, least: int) -> None:
    value = getattr(a, name.lstrip("-").replace("-", "_"))
    if value is not None and value < least:
        raise _Bad(f"{name} must be >= {least}, got {value}")


def _results_dir(path) -> None:
    """A results directory that exists as a directory or can be created (no file on its way)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise _Bad(f"--results-dir {p} is a file, not a directory")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _Bad(f"--results-dir {p}: {parent} is a file, not a directory")
            break


def _dataset(spec: str, root: str | None) -> None:
    """The dataset spec names something that exists (cheap checks: no listing, no decoding)."""
    from zoomstudy.data import DATASETS, SOURCE_SCHEMES
    from zoomstudy.data.registry import dataset_spec

    if dataset_spec(spec) is not None:  # a registry name or one of its aliases (imagenet-plus-real, ...)
        if root is not None and not Path(root).expanduser().exists():
            raise _Bad(f"--root {root} does not exist")
        return
    if spec.startswith("world"):  # the world's data (world:REGIME, world-photo:N, world-hard:N), as open_data routes it
        return
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in SOURCE_SCHEMES:
        if scheme in ("csv", "folder"):
            folder = rest if scheme == "folder" or Path(rest).exists() else rest.partition(":")[0]
            if not folder or not Path(folder).expanduser().is_dir():
                raise _Bad(f"--dataset {spec}: folder {folder or '(none)'} does not exist")
        return
    if Path(spec).expanduser().is_dir():
        return
    raise _Bad(f"unknown dataset {spec!r}: give a registry name ({', '.join(sorted(DATASETS))}), csv:DIR, "
               f"folder:DIR, hf:REPO@REV:split, synthetic:N or world:REGIME")


def _model(spec: str, checkpoint: str | None, label_space: str | None, device: str | None) -> None:
    """Model name, checkpoint file, label space and device, checked without building anything."""
    from zoomstudy.data.labels import get_label_space
    from zoomstudy.models.loading import resolve_device, resolve_spec

    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise _Bad(f"--checkpoint {checkpoint} is not a file")
    if not spec.startswith("world:"):
        resolve_spec(spec)
    if label_space is not None:  # None: the dataset's own, which the registry knows
        get_label_space(label_space)
    resolve_device(device)


def _place(a, shard=None):
    """This process's placement (`models.placement`): a.device becomes its device ("cuda:LOCAL_RANK"
    under torchrun), and the shard defaults to the torchrun rank. Every command that loads a model calls it."""
    from zoomstudy.models.placement import placement

    place = placement(getattr(a, "device", None), shard)
    a.device = str(place.device)
    return place


def validate_sweep(a) -> None:
    """Check and normalise `zoomstudy sweep`'s arguments (a.shard -> (i, n), a.scales -> list or None)."""
    from zoomstudy.study import make_grid
    from zoomstudy.sweep.engine import check_sweep_args, parse_shard

    a.shard = parse_shard(a.shard)
    a.scales = _scales(a.scales)
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1)):
        _at_least(a, name, least)
    try:
        check_sweep_args(batch_size=a.batch_size, workers=a.workers or 0, shard=a.shard, max_images=a.max_images,
                         max_host_mb=a.max_host_mb, normalization=a.normalization)
    except ValueError as e:
        raise _Bad(str(e).replace("max_host_mb", "--max-host-mb")) from None
    a.view_grid = make_grid(a.scales, a.grid, a.crop)
    _results_dir(a.results_dir)
    _dataset(a.dataset, a.root)
    if a.fingerprint is not None and a.dataset.startswith(("synthetic", "world")):
        raise _Bad(f"--fingerprint applies to data read from files, not to {a.dataset}")
    _model(a.model, a.checkpoint, a.label_space, a.device)


def cmd_sweep(a) -> int:
    from zoomstudy.study import ensure_results

    a.shard = _place(a, a.shard).shard
    # ensure_results opens the data first (row count, pins and labels checked, nothing decoded), then
    # loads the model in the dataset's own label space unless --label-space says otherwise; ReaL and
    # IN+ReaL come back as the val result set, relabelled.
    rs = ensure_results(
        a.model, a.dataset, checkpoint=a.checkpoint, root=a.root, scales=a.scales, grid=a.grid, crop=a.crop,
        results_dir=a.results_dir, label_space=a.label_space, max_images=a.max_images,
        pretrained=not a.no_pretrained, device=a.device, batch_size=a.batch_size, workers=a.workers,
        progress=not a.quiet, data_kw={} if a.fingerprint is None else {"fingerprint": a.fingerprint},
        shard=a.shard, normalization=a.normalization, tta=not a.no_tta, max_host_mb=a.max_host_mb,
    )
    print(json.dumps(rs.summary()))
    return 0


def validate_merge(a) -> None:
    _at_least(a, "--shards", 1)
    if not (Path(a.result_set) / "settings.json").is_file():
        raise _Bad(f"{a.result_set} is not a result set (no settings.json)")


def cmd_merge(a) -> int:
    from zoomstudy.sweep.store import ResultSet, merge

    rs = merge(ResultSet(Path(a.result_set)), a.shards)
    print(json.dumps(rs.summary()))
    return 0


def validate_summary(a) -> None:
    if not Path(a.results_dir).is_dir():
        raise _Bad(f"{a.results_dir} is not a directory")


def cmd_summary(a) -> int:
    import pandas as pd

    from zoomstudy.analysis.bounds import table1_row
    from zoomstudy.sweep.store import find_results

    from zoomstudy.data.registry import relabel_results, swept_dataset
    from zoomstudy.study import label_space_note

    rows = []
    for rs in find_results(a.results_dir, model=a.model, dataset=a.dataset and swept_dataset(a.dataset)):
        rs = relabel_results(rs, a.dataset) if a.dataset else rs
        s = rs.summary()
        correct = rs.correct(keep=None)
        row = table1_row(correct, rs.grid, s["model"], rs.settings["key"]["dataset"].get("name"))
        row["label_space"] = rs.settings["key"]["model"]["label_space"]["name"]
        row["note"] = label_space_note(rs.settings) or ""
        rows.append(row)
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
    from zoomstudy.models.placement import placement

    # the notebooks' kernels load their models on this process's device (cuda:LOCAL_RANK under torchrun)
    place = placement(overrides.get("device"))
    if place.device.type == "cuda":
        overrides["device"] = str(place.device)
    index = reproduce(Path(a.notebooks), Path(a.out), profile=a.profile, notebooks=a.only or None,
                      overrides=overrides or None, progress=not a.quiet)
    print(f"reports: {index}")
    return 0


def validate_profile(a) -> None:
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1),
                        ("--zoom-maps", 0)):
        _at_least(a, name, least)
    if a.scales not in (None, "paper"):
        _scales(a.scales)
    if a.results_dir is not None:
        _results_dir(a.results_dir)
    if a.checkpoint is not None and not Path(a.checkpoint).expanduser().is_file():
        raise _Bad(f"--checkpoint {a.checkpoint} is not a file")


def cmd_profile(a) -> int:
    """Run a profile (or, with --check, only check an existing profile.json); exit 1 on a regression."""
    from zoomstudy.report.model_profile import check_regression, profile
    from zoomstudy.study import resolve_label_space

    thresholds = {"max_oracle_gap": a.max_oracle_gap, "max_center_bias": a.max_center_bias}
    if not a.check:
        _place(a)
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
            pretrained=not a.no_pretrained, device=a.device,
            label_space=resolve_label_space(a.images if a.labels is None else None, a.label_space),
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


def validate_paper(a) -> None:
    """`zoomstudy paper`: numbers, shard, scales and the results folder, before any data or model."""
    from zoomstudy.study import make_grid
    from zoomstudy.sweep.engine import parse_shard

    parse_shard(a.shard)
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1),
                        ("--hard-rows", 1)):
        _at_least(a, name, least)
    make_grid(_scales(a.scales), a.grid, a.crop)
    _results_dir(a.results_dir)


def cmd_paper(a) -> int:
    """The paper as a matrix: preflight (data found / missing / cost), then every runnable sweep."""
    from zoomstudy import matrix
    from zoomstudy.study import make_grid
    from zoomstudy.sweep.engine import parse_shard

    grid = make_grid(_scales(a.scales), a.grid, a.crop)  # bad parameters fail here, before anything loads
    shard = _place(a, parse_shard(a.shard)).shard  # torchrun: rank i on cuda:LOCAL_RANK, shard i/n
    roots = matrix.parse_assignments(a.root, "--root")
    checkpoints = matrix.parse_assignments(a.checkpoint, "--checkpoint")
    rows = {k: None if v == "none" else int(v) for k, v in matrix.parse_assignments(a.expected_rows, "--expected-rows").items()}
    if a.hard_rows is not None:
        rows["imagenet-hard"] = a.hard_rows
    jobs = matrix.plan(a.models, a.datasets, [] if a.no_hard else a.hard_models)
    pre = matrix.preflight(jobs, roots=roots, data_dir=a.data_dir, grid=grid, probe=not a.no_probe, device=a.device,
                           batch_size=a.batch_size, hard_revision=a.hard_revision, expected_rows=rows,
                           max_images=a.max_images)
    print(pre.text(), flush=True)
    if a.dry_run:
        return 0
    if not pre.runnable:
        raise ValueError("no dataset of the plan was found; see the preflight above for how to provide each")
    done = matrix.run(pre, results_dir=a.results_dir, grid=grid, checkpoints=checkpoints, pretrained=not a.no_pretrained,
                      device=a.device, batch_size=a.batch_size, workers=a.workers, shard=shard,
                      max_images=a.max_images, tta=not a.no_tta, progress=not a.quiet)
    print(done.drop(columns=["path"]).to_string(index=False))
    print(f"render the tables: zoomstudy reproduce --profile paper --only 06_the_paper -p results_dir={a.results_dir}")
    return 1 if done["status"].str.startswith("failed").any() else 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line too (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoomstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="run (or resume) one model over one dataset and one view grid")
    s.add_argument("--model", required=True,
                   help="torchvision:NAME, timm:NAME or a name of zoomstudy.models.loading.MODELS")
    s.add_argument("--checkpoint", help="local weights file for the architecture (state_dict)")
    s.add_argument("--no-pretrained", action="store_true", help="random weights (speed tests)")
    s.add_argument("--dataset", required=True, help="registry name (imagenet-val, imagenet-hard, ...) or csv:DIR, folder:DIR, hf:REPO@REV:split, synthetic:N")
    s.add_argument("--root", help="local copy of a registry dataset")
    s.add_argument("--label-space", help="default: the dataset's own (imagenet-a/-r: 200 classes, objectnet: 113; "
                   "csv:/folder: specs: imagenet1k); a different one is recorded in settings.json")
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
    s.add_argument("--fingerprint", choices=["quick", "sha256", "size"],
                   help="how image files enter the data's fingerprint (the result set's key): quick (default: "
                        "size, modification time, first and last 64 KiB), sha256 (every byte; copies of the data "
                        "share a key even without their modification times), size (weak)")
    s.add_argument("--max-host-mb", type=float, help="bound on the sweep's own host memory in MiB (default 2048)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sweep, validate=validate_sweep)

    m = sub.add_parser("merge", help="validate that the shards of a sweep hold every image once")
    m.add_argument("result_set")
    m.add_argument("--shards", type=int, required=True)
    m.set_defaults(func=cmd_merge, validate=validate_merge)

    t = sub.add_parser("summary", help="Table 1 rows for stored result sets")
    t.add_argument("results_dir", nargs="?", default="results")
    t.add_argument("--model")
    t.add_argument("--dataset")
    t.set_defaults(func=cmd_summary, validate=validate_summary)

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
    f.add_argument("--label-space", help="default: the dataset's own when --images is a registry name, else imagenet1k")
    f.add_argument("--batch-size", type=int, help="views per forward pass (default 32 on CPU, 512 on CUDA)")
    f.add_argument("--workers", type=int, help="decoding processes (default 4 on CUDA, 1 on CPU)")
    f.add_argument("--device", help="cuda, cpu (default: CUDA when present)")
    f.add_argument("--max-oracle-gap", type=float, help="exit 1 when the oracle gap (pp) exceeds this")
    f.add_argument("--max-center-bias", type=float, help="exit 1 when the centre bias (pp) exceeds this")
    f.add_argument("--check", metavar="JSON", help="check an existing profile.json against the thresholds, run nothing")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=cmd_profile, validate=validate_profile)

    q = sub.add_parser("paper", help="the paper as a matrix: preflight, then every (model, dataset) sweep of "
                       "Table 1 and the ImageNet-Hard runs that this machine has data for")
    q.add_argument("--results-dir", default="results/paper")
    q.add_argument("--root", action="append", metavar="DATASET=PATH", help="a dataset's local copy (repeatable)")
    q.add_argument("--data-dir", default="data", help="folder of <dataset>/ copies (default ./data)")
    q.add_argument("--checkpoint", action="append", metavar="MODEL=FILE", help="local weights for a model (repeatable)")
    q.add_argument("--models", nargs="*", help="paper names or specs of Table 1's rows to run (default: all six)")
    q.add_argument("--datasets", nargs="*", help="paper or registry names of the columns (default: all seven)")
    q.add_argument("--hard-models", nargs="*", help="ImageNet-Hard leaderboard models (default: all nine)")
    q.add_argument("--no-hard", action="store_true", help="skip ImageNet-Hard")
    q.add_argument("--hard-revision", help="40-hex commit sha of taesiri/imagenet-hard (with --hard-rows)")
    q.add_argument("--hard-rows", type=int, help="row count of that revision")
    q.add_argument("--expected-rows", action="append", metavar="DATASET=N", help="row count of a copy ('none': partial)")
    q.add_argument("--scales", help="comma-separated scales (default: the paper's 36)")
    q.add_argument("--grid", type=int, default=3)
    q.add_argument("--crop", type=int, default=224)
    q.add_argument("--max-images", type=int)
    q.add_argument("--batch-size", type=int, default=512, help="views per forward pass")
    q.add_argument("--workers", type=int)
    q.add_argument("--device")
    q.add_argument("--shard", help="i/n: this process's share of every sweep (default: the torchrun rank)")
    q.add_argument("--no-tta", action="store_true", help="skip the 5/10-crop views (Table 4 then lacks them)")
    q.add_argument("--no-pretrained", action="store_true", help="random weights (pipeline checks)")
    q.add_argument("--no-probe", action="store_true", help="skip the one-batch speed probe")
    q.add_argument("--dry-run", action="store_true", help="print the preflight only")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_paper, validate=validate_paper)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or an argparse error (2, already printed in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        validate = getattr(args, "validate", None)
        if validate is not None:
            validate(args)  # nothing loaded yet
        return args.func(args)
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split()) if str(e).strip() else type(e).__name__
        print(f"zoomstudy {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
