"""The result store at the paper's size: Table 1 (`zoomstudy summary`), `rs.correct()`, `merge`,
`merge --verify` and the resume of a finished sweep, on a result set of N images x the paper's 324
views (50,000 images: the paper's ImageNet val, 16.2 M view rows, 1,563 parts of 32 images).

Why a benchmark: reading the store must stay a small cost next to computing it (issue 20 measured
61-73 s for one summary at 50k images); this builds such a set with the engine's own part writer
(`engine._PartWriter`, the code a sweep commits with) from synthetic predictions, then times each
reader in a fresh process pinned to one core (one thread), and reports its peak memory above the
interpreter's (RSS after the imports).

    python benchmarks/store_scale.py --images 5000                # quick
    python benchmarks/store_scale.py --images 50000 --dir /tmp/s50k --keep
    python benchmarks/store_scale.py --images 50000 --dir /tmp/s50k --compact   # then compacted, again
    PYTHONPATH=/path/to/other/checkout python benchmarks/store_scale.py ...   # the same for other code

The set is built once per --dir and reused (delete it, or give another --dir, to rebuild).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("summary", "correct", "merge", "verify", "resume")  # and "compact", with --compact


def _tiny_model():
    """A random one-convolution classifier: the sweep's settings need a model, nothing is forwarded."""
    import torch

    from zoomstudy.data.labels import get_label_space
    from zoomstudy.models.loading import LoadedModel

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
            self.head = torch.nn.Linear(8, 1000)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return LoadedModel(module=Tiny().eval(), name="tiny", source="bench", weights_id="tiny-seed0",
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=(3, 224, 224),
                       interpolation="bicubic", crop_pct=0.875, label_space=get_label_space("imagenet1k"),
                       device=torch.device("cpu"), architecture="bench:tiny")


def _inputs(n: int):
    from zoomstudy.data import SyntheticSource
    from zoomstudy.views import ViewGrid

    return _tiny_model(), SyntheticSource(n, size=(64, 48), seed=0), ViewGrid.paper()


def build(results_dir: Path, n: int, chunk: int = 32) -> Path:
    """Write the set with the engine's part writer: each image's 324 views get synthetic softmax rows
    (its label most probable in about 60% of the views), top-5 and the TTA groups as a sweep stores them."""
    import numpy as np
    import torch

    from zoomstudy.sweep import engine
    from zoomstudy.sweep.store import ResultSet, new_token

    model, source, grid = _inputs(n)
    settings = engine.sweep_settings(model, source, grid, normalization="imagenet", render_dtype=torch.float64,
                                     tta=True)
    rs = ResultSet.create(results_dir, settings)
    if hasattr(rs, "claim_layout"):
        rs.claim_layout(None)
    if rs.complete_parts() if hasattr(rs, "complete_parts") else False:
        return rs.path
    writer = engine._PartWriter(rs, "part", new_token(), chunk, grid)
    groups = list(engine._Groups(grid, True).index)
    rng = np.random.default_rng(0)
    image = torch.zeros((3, 48, 64), dtype=torch.uint8)
    t0 = time.perf_counter()
    v = grid.n_views
    for i, rec in enumerate(source._records):
        probs = rng.random((v, 1000), dtype=np.float32)
        hit = rng.random(v) < 0.6
        probs[hit, rec.labels[0]] = 2.0
        probs /= probs.sum(1, keepdims=True)
        rows = [(rec.image_id, g, int(rec.labels[0]), 0.5, int(rec.labels[0]), 0.9) for g in groups]
        item = engine._Item(i, rec.image_id, image, tuple(rec.labels), None, {})
        writer.add_image(item, torch.from_numpy(probs), rows)
        if writer.full():
            writer.commit()
        if i and i % 5000 == 0:
            print(f"  built {i} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    writer.commit()
    print(f"  built {n} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rs.path


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(step: str, results_dir: Path, n: int) -> dict:
    """One step, in this (fresh) process: seconds, peak RSS and RSS before the step (MiB)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)
    from zoomstudy import cli
    from zoomstudy.sweep.engine import sweep_to_store
    from zoomstudy.sweep.store import ResultSet

    # imports count as the interpreter: the libraries each step needs, loaded before the clock starts
    # (a sweep's provenance names the timm and torchvision versions; summary imports the analyses)
    import importlib

    for module in ("pandas", "pyarrow.parquet", "pyarrow.compute", "timm", "torchvision", "zoomstudy.study",
                   "zoomstudy.analysis.bounds", "zoomstudy.data.registry", "zoomstudy.analysis.tta"):
        importlib.import_module(module)

    path = next(p.parent for p in sorted(results_dir.glob("*/settings.json")))
    inputs = _inputs(n) if step == "resume" else None
    base = _rss_mb()
    t0 = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        if step == "summary":
            rc = cli.main(["summary", str(results_dir)])
        elif step == "correct":
            rc = int(ResultSet(path).correct().shape[0] != n)
        elif step == "merge":
            rc = cli.main(["merge", str(path), "--shards", "1"])
        elif step == "compact":
            rc = cli.main(["merge", str(path), "--shards", "1", "--compact"])
        elif step == "verify":
            rc = cli.main(["merge", str(path), "--shards", "1", "--verify"])
        elif step == "resume":
            model, source, grid = inputs
            sweep_to_store(model, source, grid, results_dir, workers=0, progress=False, chunk_images=32)
            rc = 0
        else:
            raise ValueError(step)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": step, "seconds": round(seconds, 2), "peak_above_mb": round(peak - base, 0), "rc": rc,
            "output": out.getvalue()[-300:] if rc else ""}


def _measure_all(steps: list[str], folder: Path, n: int) -> None:
    """Each step in a fresh process, one core, one thread; one line each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for step in steps:
        r = subprocess.run([sys.executable, __file__, "--measure", step, "--dir", str(folder), "--images", str(n)],
                           capture_output=True, text=True, env=env)
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"  {step:8s} failed: {r.stderr.strip()[-300:]}")
            continue
        note = f"  (rc {res['rc']}: {' '.join(res['output'].split())[:160]})" if res["rc"] else ""
        print(f"  {step:8s} {res['seconds']:8.2f} s   peak {res['peak_above_mb']:6.0f} MiB above the "
              f"interpreter{note}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50000, help="images in the set (default 50000)")
    p.add_argument("--dir", help="where the set is built (default: a temporary folder, deleted after)")
    p.add_argument("--keep", action="store_true", help="keep a temporary --dir")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    p.add_argument("--compact", action="store_true",
                   help="then copy the set, compact the copy (merge --compact, timed) and measure the steps again")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one step in a fresh process
    a = p.parse_args(argv)
    if a.images < 1:
        p.error("--images must be >= 1")
    if a.measure:
        print(json.dumps(measure(a.measure, Path(a.dir), a.images)))
        return 0
    folder = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="store_scale_"))
    try:
        t0 = time.perf_counter()
        path = build(folder, a.images)
        build_s = time.perf_counter() - t0
        parts = path / "parts"
        files = list(parts.iterdir())
        size_mb = sum(f.stat().st_size for f in files) / 2**20
        import zoomstudy

        print(f"store_scale: {a.images} images x 324 views, {len(files)} files, {size_mb:.0f} MiB "
              f"(build {build_s:.0f} s); code: {Path(zoomstudy.__file__).parents[1]}")
        steps = list(filter(None, a.steps.split(",")))
        _measure_all(steps, folder, a.images)
        if a.compact:
            compacted = folder.with_name(folder.name + "-compacted")
            shutil.rmtree(compacted, ignore_errors=True)
            shutil.copytree(folder, compacted)
            _measure_all(["compact"], compacted, a.images)
            files = list(next(compacted.glob("*/parts")).iterdir())
            print(f"compacted: {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.0f} MiB")
            _measure_all(steps, compacted, a.images)
            if not a.keep:
                shutil.rmtree(compacted, ignore_errors=True)
    finally:
        if not a.dir and not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
