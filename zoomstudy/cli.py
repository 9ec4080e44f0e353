"""`zoomstudy` command line: sweep, merge, summary, tta-policy, reproduce, profile, paper.

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


def _grid(a, default: str = "paper"):
    """--scales, --grid and --crop as the entry layer's view grid (`study.make_grid`, the one parser of
    scales, bounded by `study.MAX_SCALE`); its errors name the flag."""
    from zoomstudy.study import MAX_SCALE, make_grid

    try:
        return make_grid(a.scales, a.grid, a.crop, default=default, max_scale=MAX_SCALE)
    except ValueError as e:
        raise _Bad(f"--{e}" if str(e).startswith("scales") else str(e)) from None


#: Bounds of the numeric options, checked before anything loads (the scales' bound: `study.MAX_SCALE`).
#: grid g renders g x g windows per scale (the paper: 3); 32 is already 1,024 views per scale.
MAX_GRID = 32
#: decoding processes; more than this is a typo, not a machine.
MAX_WORKERS = 256


def _at_most(a, name: str, most: int) -> None:
    value = getattr(a, name.lstrip("-").replace("-", "_"))
    if value is not None and value > most:
        raise _Bad(f"{name} must be <= {most}, got {value}")


def _common_numbers(a) -> None:
    """--grid, --crop, --workers upper bounds (the lower ones are each subcommand's _at_least)."""
    from zoomstudy.study import MAX_SCALE

    for name, most in (("--grid", MAX_GRID), ("--crop", MAX_SCALE), ("--workers", MAX_WORKERS)):
        if hasattr(a, name[2:].replace("-", "_")):
            _at_most(a, name, most)


def _finite(a, name: str) -> None:
    import math

    value = getattr(a, name.lstrip("-").replace("-", "_"))
    if value is not None and not math.isfinite(value):
        raise _Bad(f"{name} must be a finite number, got {value}")


def _shard(text: str | None):
    """--shard parsed and range-checked (0 <= i < n), or the torchrun rank, or None."""
    from zoomstudy.sweep.engine import check_sweep_args, parse_shard

    try:
        shard = parse_shard(text)
        check_sweep_args(shard=shard)
    except ValueError as e:
        raise _Bad(str(e).replace("shard must", "--shard must")) from None
    return shard


def _sizes(text: str | None):
    """--sizes of `zoomstudy profile`: None (default sizes), () ('none') or distinct sizes 1..MAX_SCALE."""
    from zoomstudy.study import MAX_SCALE

    if not text:
        return None
    if text.strip() == "none":
        return ()
    try:
        sizes = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise _Bad(f"--sizes must be integers separated by commas, or 'none', got {text!r}") from None
    if not sizes or any(not 1 <= x <= MAX_SCALE for x in sizes) or len(set(sizes)) != len(sizes):
        raise _Bad(f"--sizes must be distinct integers in 1..{MAX_SCALE} (or 'none'), got {text!r}")
    return sizes


def _profile_json(spec: str) -> None:
    """`profile --check FILE`: a JSON object whose metrics are numbers or null, else one line naming
    the file (exit 2, not a traceback, and never 1, which means 'regression')."""
    from zoomstudy.report.profile_data import JSON_NAME, THRESHOLDS

    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / JSON_NAME
    if not path.is_file():
        raise _Bad(f"--check {path}: no such file (give a profile.json or the folder holding it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _Bad(f"--check {path} is not JSON ({type(e).__name__}: {' '.join(str(e).split())[:80]})") from None
    if not isinstance(data, dict):
        raise _Bad(f"--check {path} holds a JSON {type(data).__name__}, not a profile summary (an object with 'metrics')")
    metrics = data.get("metrics", data)
    if not isinstance(metrics, dict):
        raise _Bad(f"--check {path}: 'metrics' is {json.dumps(metrics)[:40]}, not an object of numbers")
    for key, _what in THRESHOLDS.values():
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _Bad(f"--check {path}: metric {key!r} is {json.dumps(value)[:40]}, not a number (or null)")


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


def _dataset(spec: str, root: str | None):
    """The dataset spec names something that exists (cheap checks: no listing, no decoding), routed as
    `study.open_data` routes it (`study.check_data`); returns the route."""
    from zoomstudy.study import check_data

    try:
        route = check_data(spec)
    except ValueError as e:
        raise _Bad(str(e)) from None
    if route.kind == "registry" and root is not None and not Path(root).expanduser().exists():
        raise _Bad(f"--root {root} does not exist")
    return route


def _model(spec: str, checkpoint: str | None, label_space: str | None, device: str | None) -> None:
    """Model name, checkpoint file, label space and device, checked without building anything."""
    from zoomstudy.data.labels import get_label_space
    from zoomstudy.models.loading import resolve_device
    from zoomstudy.study import check_model_name

    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise _Bad(f"--checkpoint {checkpoint} is not a file")
    check_model_name(spec)
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


#: --amp's values: the forward under CUDA autocast in bf16 (H100/H200) or fp16 (T4), or none (float32).
AMP_CHOICES = ("bf16", "fp16", "none")


def _amp(a) -> str | None:
    """--amp as load_model's amp (None for 'none'); bf16 / fp16 need CUDA: refused here, before loading."""
    amp = getattr(a, "amp", "none") or "none"
    if amp not in AMP_CHOICES:
        raise _Bad(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "none":
        return None
    from zoomstudy.models.loading import resolve_device

    try:
        dev = resolve_device(a.device)
    except ValueError as e:
        raise _Bad(str(e)) from None
    if dev.type != "cuda":
        raise _Bad(f"--amp {amp} runs the forward under CUDA autocast and needs a CUDA device (got {dev.type}); "
                   f"use --amp none")
    return amp


def validate_sweep(a) -> None:
    """Check and normalise `zoomstudy sweep`'s arguments (a.shard -> (i, n), a.scales -> list or None)."""
    from zoomstudy.sweep.engine import check_sweep_args

    a.shard = _shard(a.shard)
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1)):
        _at_least(a, name, least)
    _common_numbers(a)
    try:
        check_sweep_args(batch_size=a.batch_size, workers=a.workers or 0, shard=a.shard, max_images=a.max_images,
                         max_host_mb=a.max_host_mb, normalization=a.normalization)
    except ValueError as e:
        raise _Bad(str(e).replace("max_host_mb", "--max-host-mb")) from None
    a.view_grid = _grid(a)
    _results_dir(a.results_dir)
    route = _dataset(a.dataset, a.root)
    if a.fingerprint is not None and (route.kind == "scheme" or route.name == "synthetic"):
        raise _Bad(f"--fingerprint applies to data read from files, not to {a.dataset}")
    _model(a.model, a.checkpoint, a.label_space, a.device)
    _amp(a)


def cmd_sweep(a) -> int:
    from zoomstudy.study import ensure_results

    a.shard = _place(a, a.shard).shard
    # ensure_results opens the data first (row count, pins and labels checked, nothing decoded), then
    # loads the model in the dataset's own label space unless --label-space says otherwise; ReaL and
    # IN+ReaL come back as the val result set, relabelled.
    rs = ensure_results(
        a.model, a.dataset, checkpoint=a.checkpoint, root=a.root, scales=a.view_grid, grid=a.grid, crop=a.crop,
        results_dir=a.results_dir, label_space=a.label_space, max_images=a.max_images,
        pretrained=not a.no_pretrained, device=a.device, batch_size=a.batch_size, workers=a.workers,
        progress=not a.quiet, data_kw={} if a.fingerprint is None else {"fingerprint": a.fingerprint},
        shard=a.shard, normalization=a.normalization, tta=not a.no_tta, max_host_mb=a.max_host_mb, amp=_amp(a),
    )
    print(json.dumps(rs.summary()))
    return 0


def validate_merge(a) -> None:
    _at_least(a, "--shards", 1)
    if not (Path(a.result_set) / "settings.json").is_file():
        raise _Bad(f"{a.result_set} is not a result set (no settings.json)")


def cmd_merge(a) -> int:
    """Validate a result set (--verify: every table's sha256 too); --repair first removes damaged
    parts and duplicate images (each change printed on stderr, one line each)."""
    from zoomstudy.sweep.store import ResultSet, merge, repair

    rs = ResultSet(Path(a.result_set))
    if a.repair:
        for line in repair(rs, a.shards):
            print(f"zoomstudy merge: repair: {line}", file=sys.stderr)
        rs = ResultSet(rs.path)
    rs = merge(rs, a.shards, verify=a.verify)
    if a.compact:
        for line in rs.compact():
            print(f"zoomstudy merge: compact: {line}", file=sys.stderr)
    print(json.dumps(rs.summary()))
    return 0


def validate_summary(a) -> None:
    if not Path(a.results_dir).is_dir():
        raise _Bad(f"{a.results_dir} is not a directory")


def _all_failed(rs) -> None:
    """ValueError when every stored image of `rs` failed to decode (Table 1 has nothing to count):
    says so and where the reasons are, instead of an empty-array message from the analysis."""
    images = rs.images()
    if len(images) and "ok" in images and not images["ok"].astype(bool).any():
        errors = rs.errors()
        first = f" (e.g. {errors['image_id'].iloc[0]}: {errors['reason'].iloc[0]})" if len(errors) else ""
        raise ValueError(f"{rs.path}: every image ({len(images)}) failed to decode; the reasons are in "
                         f"{rs.path / 'parts'}/*.errors.parquet{first}")


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
        _all_failed(rs)
        correct = rs.correct(keep=None)
        row = table1_row(correct, rs.grid, s["model"], rs.settings["key"]["dataset"].get("name"))
        row["label_space"] = rs.settings["key"]["model"]["label_space"]["name"]
        row["note"] = "; ".join(n for n in (row.pop("note", None), label_space_note(rs.settings)) if n)  # last
        rows.append(row)
    if not rows:
        raise ValueError(f"no result sets under {a.results_dir}")
    print(pd.DataFrame(rows).round(2).to_string(index=False))
    return 0


#: Most views a policy may hold: the budget curve's range (the paper's 36).
MAX_POLICY_VIEWS = 36


def validate_tta_policy(a) -> None:
    if not (Path(a.result_set) / "settings.json").is_file():
        raise _Bad(f"{a.result_set} is not a result set (no settings.json)")
    _at_least(a, "--k", 1)
    _at_most(a, "--k", MAX_POLICY_VIEWS)
    _at_least(a, "--folds", 2)
    _at_least(a, "--seed", 0)
    out = Path(a.out)
    if out.is_dir():
        raise _Bad(f"--out {out} is a directory; give the policy file's path (e.g. policy.json)")
    if out.parent.exists() and not out.parent.is_dir():
        raise _Bad(f"--out {out}: {out.parent} is not a directory")


def cmd_tta_policy(a) -> int:
    """Choose k views on a stored sweep (cross-validated accuracy from the budget curve) and save the
    `ZoomTTA` policy JSON; prints the views and the accuracy to expect."""
    from zoomstudy.analysis.budget import make_policy
    from zoomstudy.sweep.store import ResultSet
    from zoomstudy.sweep.zoomtta import save_policy

    rs = ResultSet(Path(a.result_set))
    pol = make_policy(rs, a.k, a.aggregate, folds=a.folds, seed=a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    path = save_policy(pol, a.out)
    cv = pol["cv_accuracy"]
    print(f"{path}: {a.k} views {', '.join(pol['view_names'])}, {a.aggregate}; cross-validated top-1 "
          f"{cv['accuracy']:.2f}% [{cv['lo']:.2f}, {cv['hi']:.2f}] on {pol['chosen_on']['n_images']} images"
          + (f" (1-crop {cv['one_crop']:.2f}%)" if cv["one_crop"] is not None else ""))
    return 0


def validate_reproduce(a) -> None:
    """`zoomstudy reproduce`: profile name, folders and -p key=value, before any notebook runs."""
    from zoomstudy.report.profiles import PROFILES

    if a.profile not in PROFILES:
        raise _Bad(f"--profile must be one of {sorted(PROFILES)}, got {a.profile!r}")
    out = Path(a.out).expanduser()
    if out.exists() and not out.is_dir():
        raise _Bad(f"--out {out} is a file, not a directory")
    notebooks = Path(a.notebooks).expanduser()
    if not notebooks.is_dir():
        raise _Bad(f"--notebooks {notebooks} is not a directory")
    known = {p.stem for p in notebooks.glob("*.ipynb")}
    unknown = [n for n in a.only or [] if Path(n).stem not in known]
    if unknown:
        raise _Bad(f"--only: no notebook {unknown[0]!r} in {notebooks} (known: {', '.join(sorted(known))})")
    for kv in a.param or []:
        if "=" not in kv or not kv.partition("=")[0].strip():
            raise _Bad(f"-p expects key=value, got {kv!r}")


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
    """`zoomstudy profile`: every option, before a model or image is loaded; --check's file is read
    and its shape checked here (a malformed one is exit 2 naming it, never 1, which means regression)."""
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1),
                        ("--zoom-maps", 0)):
        _at_least(a, name, least)
    _common_numbers(a)
    for name in ("--max-oracle-gap", "--max-center-bias"):
        _finite(a, name)
    a.view_grid = _grid(a, default="compact")
    a.resolution_sizes = _sizes(a.sizes)
    if a.results_dir is not None:
        _results_dir(a.results_dir)
    if a.check:
        _profile_json(a.check)
        return
    if a.images is None:
        raise _Bad("--images is required (unless --check names an existing profile.json)")
    if a.model is None and a.checkpoint is None:
        raise _Bad("give --model NAME, --checkpoint PATH, or both")
    if a.out is None:
        raise _Bad("--out DIR is required: profile.html and profile.json are written there")
    out = Path(a.out).expanduser()
    if out.exists() and not out.is_dir():
        raise _Bad(f"--out {out} is a file, not a directory")
    if a.labels is not None and not Path(a.labels).expanduser().is_file():
        raise _Bad(f"--labels {a.labels} is not a file")
    if not Path(a.images).expanduser().is_dir():
        _dataset(a.images, None)
    if a.checkpoint is not None and not Path(a.checkpoint).expanduser().is_file():
        raise _Bad(f"--checkpoint {a.checkpoint} is not a file")
    if a.model is not None:
        _model(a.model, a.checkpoint, a.label_space, a.device)
    else:
        _model("torchvision:resnet18", None, a.label_space, a.device)  # label space and device only
    _amp(a)


def cmd_profile(a) -> int:
    """Run a profile (or, with --check, only check an existing profile.json); exit 1 on a regression."""
    from zoomstudy.report.model_profile import profile
    from zoomstudy.report.profile_data import check_regression
    from zoomstudy.study import resolve_label_space

    thresholds = {"max_oracle_gap": a.max_oracle_gap, "max_center_bias": a.max_center_bias}
    if not a.check:
        _place(a)
    if a.check:
        failures = check_regression(a.check, **thresholds)
    else:
        sizes = a.resolution_sizes  # parsed and checked by validate_profile
        summary = profile(
            a.model, a.images, a.labels, checkpoint=a.checkpoint, out_dir=a.out,
            scales=a.scales, grid=a.grid, crop=a.crop,
            max_images=a.max_images, thresholds=thresholds, results_dir=a.results_dir,
            resolution_sizes=sizes, n_zoom_maps=a.zoom_maps,
            pretrained=not a.no_pretrained, device=a.device,
            label_space=resolve_label_space(a.images if a.labels is None else None, a.label_space),
            batch_size=a.batch_size, workers=a.workers, progress=not a.quiet, amp=_amp(a),
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
    _shard(a.shard)
    for name, least in (("--batch-size", 1), ("--workers", 0), ("--max-images", 1), ("--grid", 1), ("--crop", 1),
                        ("--hard-rows", 1)):
        _at_least(a, name, least)
    _common_numbers(a)
    a.view_grid = _grid(a)
    _results_dir(a.results_dir)
    _paper_names(a)
    a.expected = _expected_rows(a.expected_rows, a.hard_rows)
    a.checkpoints = _paper_checkpoints(a)


def _expected_rows(items, hard_rows) -> dict:
    """--expected-rows DATASET=N|none: names of swept registry datasets, counts that are integers >= 0."""
    from zoomstudy import matrix
    from zoomstudy.data.registry import DATASETS, dataset_spec

    try:
        given = matrix.parse_assignments(items, "--expected-rows")
    except ValueError as e:
        raise _Bad(str(e)) from None
    swept = sorted(n for n, s in DATASETS.items() if s.swept_as == n)
    rows = {}
    for name, value in given.items():
        spec = dataset_spec(name)
        if spec is None:
            raise _Bad(f"--expected-rows {name}={value}: unknown dataset {name!r}; give one of {', '.join(swept)}")
        if spec.swept_as != name:  # ReaL, IN+ReaL and aliases: the copy counted is the one swept
            raise _Bad(f"--expected-rows {name}={value}: {name} is scored from the {spec.swept_as} sweep; "
                       f"count that copy: --expected-rows {spec.swept_as}=N (or =none)")
        if value.strip().lower() == "none":
            rows[name] = None
        elif value.strip().isdigit():
            rows[name] = int(value)
        else:
            raise _Bad(f"--expected-rows {name}={value}: the count must be an integer >= 0 or 'none' (a partial copy)")
    if hard_rows is not None:
        rows["imagenet-hard"] = hard_rows
    return rows


def _paper_checkpoints(a) -> dict:
    """--checkpoint MODEL=FILE: every MODEL names a model of the plan (its paper name or spec) and every
    FILE is a file. An unmatched name is refused, naming the models it could mean: it would otherwise be
    ignored and the model's downloaded weights swept instead."""
    import difflib

    from zoomstudy import matrix

    try:
        given = matrix.parse_assignments(a.checkpoint, "--checkpoint")
    except ValueError as e:
        raise _Bad(str(e)) from None
    jobs = matrix.plan(a.models, a.datasets, [] if a.no_hard else a.hard_models)
    names = list(dict.fromkeys(n for j in jobs for n in (j.model, j.spec)))
    for name, file in given.items():
        if name not in names:
            tail = [n for n in names if n.split(":")[-1].split("@")[0].lower() == name.lower()
                    or name.lower() in n.lower()]
            close = tail or difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            maybe = f"did you mean {' or '.join(close)}? " if close else ""
            raise _Bad(f"--checkpoint {name}={file}: no model of the plan is named {name!r}; {maybe}"
                       f"the plan's models: {', '.join(names)}")
        if not Path(file).expanduser().is_file():
            raise _Bad(f"--checkpoint {name}={file}: {file} is not a file")
    return given


def _paper_names(a) -> None:
    """`zoomstudy paper`'s names: models, datasets, hard models (as matrix.plan reads them, nothing
    loaded), the hub revision, the device and the data folder."""
    import re

    from zoomstudy import matrix
    from zoomstudy.models.loading import resolve_device
    from zoomstudy.study import check_model_name

    try:
        for job in matrix.plan(a.models, a.datasets, [] if a.no_hard else a.hard_models):
            check_model_name(job.spec)  # a model name that no loader or scheme knows: refused now, not per job
    except (ValueError, KeyError) as e:
        raise _Bad(" ".join(str(e).strip("'\"").split())) from None
    if a.hard_revision is not None and not re.fullmatch(r"[0-9a-f]{40}", a.hard_revision):
        raise _Bad(f"--hard-revision must be a 40-hex commit sha, got {a.hard_revision!r}")
    data_dir = Path(a.data_dir).expanduser() if a.data_dir is not None else Path("data")
    if data_dir.exists() and not data_dir.is_dir():
        raise _Bad(f"--data-dir {data_dir} is a file, not a directory")
    resolve_device(a.device)
    _amp(a)


def cmd_paper(a) -> int:
    """The paper as a matrix: preflight (data found / missing / cost), then every runnable sweep."""
    from zoomstudy import matrix
    from zoomstudy.sweep.engine import parse_shard

    grid = a.view_grid  # checked by validate_paper, before anything loads
    shard = _place(a, parse_shard(a.shard)).shard  # torchrun: rank i on cuda:LOCAL_RANK, shard i/n
    roots = matrix.parse_assignments(a.root, "--root")
    checkpoints, rows = a.checkpoints, a.expected  # checked by validate_paper
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
                      max_images=a.max_images, tta=not a.no_tta, progress=not a.quiet, amp=_amp(a))
    print(done.drop(columns=["path"]).to_string(index=False))
    print(f"render the tables: zoomstudy reproduce --profile paper --only 06_the_paper -p results_dir={a.results_dir}")
    return 1 if done["status"].str.startswith("failed").any() else 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line too (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_sweep(sub) -> None:
    """`zoomstudy sweep` and its options."""
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
    s.add_argument("--amp", default="none", choices=AMP_CHOICES,
                   help="forward precision on CUDA: bf16 (H100/H200), fp16 (T4) or none (float32, default)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sweep, validate=validate_sweep)


def _add_merge(sub) -> None:
    """`zoomstudy merge` and its options."""
    m = sub.add_parser("merge", help="validate that the shards of a sweep hold every image once")
    m.add_argument("result_set")
    m.add_argument("--shards", type=int, required=True)
    m.add_argument("--verify", action="store_true",
                   help="also compare every table's sha256 with its part's manifest (default: sizes only)")
    m.add_argument("--repair", action="store_true",
                   help="first delete damaged parts and remove duplicate images (printed, one line each)")
    m.add_argument("--compact", action="store_true",
                   help="after the checks, rewrite the set's small parts as a few large ones (fewer files to scan)")
    m.set_defaults(func=cmd_merge, validate=validate_merge)


def _add_summary(sub) -> None:
    """`zoomstudy summary` and its options."""
    t = sub.add_parser("summary", help="Table 1 rows for stored result sets")
    t.add_argument("results_dir", nargs="?", default="results")
    t.add_argument("--model")
    t.add_argument("--dataset")
    t.set_defaults(func=cmd_summary, validate=validate_summary)


def _add_tta_policy(sub) -> None:
    """`zoomstudy tta-policy` and its options."""
    v = sub.add_parser("tta-policy", help="choose k zoom views on a stored sweep: a ZoomTTA policy JSON")
    v.add_argument("result_set", help="a result set folder (results/<model>/<dataset>/<key>)")
    v.add_argument("--k", type=int, default=4, help=f"number of views (1..{MAX_POLICY_VIEWS}, default 4)")
    v.add_argument("--aggregate", default="mean", choices=["mean", "max"])
    v.add_argument("--folds", type=int, default=5, help="cross-validation folds of the accuracy (default 5)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", default="policy.json")
    v.set_defaults(func=cmd_tta_policy, validate=validate_tta_policy)


def _add_reproduce(sub) -> None:
    """`zoomstudy reproduce` and its options."""
    r = sub.add_parser("reproduce", help="run every notebook headless into a report site")
    r.add_argument("--profile", default="offline", help="offline (default, no network), local, quick, paper")
    r.add_argument("--out", default="reports")
    r.add_argument("--notebooks", default=str(Path(__file__).resolve().parents[1] / "notebooks"))
    r.add_argument("--only", nargs="*", help="notebook names to run (default: all)")
    r.add_argument("-p", "--param", action="append", help="override a parameter: key=value (JSON values)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_reproduce, validate=validate_reproduce)


def _add_profile(sub) -> None:
    """`zoomstudy profile` and its options."""
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
    f.add_argument("--amp", default="none", choices=AMP_CHOICES, help="forward precision on CUDA (bf16, fp16, none)")
    f.add_argument("--check", metavar="JSON", help="check an existing profile.json against the thresholds, run nothing")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=cmd_profile, validate=validate_profile)


def _add_paper(sub) -> None:
    """`zoomstudy paper` and its options."""
    q = sub.add_parser("paper", help="the paper as a matrix: preflight, then every (model, dataset) sweep of "
                       "Table 1 and the ImageNet-Hard runs that this machine has data for")
    q.add_argument("--results-dir", default="results/paper")
    q.add_argument("--root", action="append", metavar="DATASET=PATH", help="a dataset's local copy (repeatable)")
    q.add_argument("--data-dir", help="folder of <dataset>/ copies (default $ZOOMSTUDY_DATA, else ./data)")
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
    q.add_argument("--amp", default="none", choices=AMP_CHOICES, help="forward precision on CUDA (bf16, fp16, none)")
    q.add_argument("--dry-run", action="store_true", help="print the preflight only")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_paper, validate=validate_paper)


#: The subcommands in --help order, each its parser's options (one function per subcommand).
_SUBCOMMANDS = (_add_sweep, _add_merge, _add_summary, _add_tta_policy, _add_reproduce, _add_profile, _add_paper)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoomstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
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
    except Exception as e:  # noqa: BLE001 - anything else (a notebook that failed, ...): one line too, exit 1
        if os.environ.get("ZOOMSTUDY_TRACEBACK"):
            raise
        msg = " ".join(str(e).split()) or "(no message)"
        print(f"zoomstudy {args.command}: error: {type(e).__name__}: {msg} "
              f"(ZOOMSTUDY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
