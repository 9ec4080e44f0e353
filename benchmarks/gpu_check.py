"""The device check in one call (issue 19): fidelity and speed of the GPU path, one table.

Run once on a fresh GPU machine (torch, torchvision, timm, pandas and pyarrow are all it needs; about
2-4 minutes on one H200 with the defaults):

    python benchmarks/gpu_check.py                     # CUDA, every check
    python benchmarks/gpu_check.py --device cpu --images 2 --sweep-images 2 --crop 32 \\
        --models squeezenet1_0 --memo-model squeezenet1_0 --memo-k 2        # CI smoke test (seconds)

Rows of the table:
* render agreement with CPU float64 (the banded renderer, PIL-exact) of the device's batched render in
  float64 and float32: share of differing pixels, largest difference, top-1 flips over all views
  (real-data kit images and its real SqueezeNet when the kit is found, else noise and random weights);
* sweep views/s and sweep / bare-forward views/s per precision for the first model (ResNet-50): the
  sweep is the real one (`sweep.engine.sweep_to_store`, store and all), the bare forward is `model.logits` on a
  resident batch of the same size; views/s of the sweep for the other models (SqueezeNet, ViT-B/32);
* MEMO + RRC, K=16: seconds per image (`analysis.memo.memo_predict`);
* host time per image: CPU seconds of the main process per swept image (decoding runs in workers);
* peak GPU memory of each row.

Weights are random except the kit's SqueezeNet (speed does not depend on them); nothing is downloaded.
Goals on one H200 (issue 19): sweep / bare >= 0.90 for ResNet-50 bf16, >= 13,500 views/s, MEMO+RRC
K=16 <= 0.13 s/image, float64 render identical to CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoomstudy import views  # noqa: E402
from zoomstudy.views import ViewGrid, pil_to_tensor, render_views, tta_crops  # noqa: E402

KIT_CANDIDATES = [os.environ.get("ZOOMSTUDY_REALDATA", ""), str(ROOT / "shared" / "realdata"),
                  str(ROOT.parent / "shared" / "realdata")]
ARCH = {"resnet50": "torchvision:resnet50", "squeezenet1_0": "torchvision:squeezenet1_0",
        "vit_b_32": "torchvision:vit_b_32"}


def find_kit(path: str | None) -> Path | None:
    for p in ([path] if path else KIT_CANDIDATES):
        if p and (Path(p) / "imagenet-sample" / "labels.csv").is_file():
            return Path(p)
    return None


def kit_images(kit: Path | None, n: int) -> list[torch.Tensor]:
    if kit is not None:
        from PIL import Image

        files = sorted((kit / "imagenet-sample").glob("*.JPEG"))[:n]
        return [pil_to_tensor(Image.open(f)) for f in files]
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=g) for _ in range(n)]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mb(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")


def load(name: str, dev: torch.device, amp: str | None = None, kit: Path | None = None):
    from zoomstudy.models.loading import load_model

    ckpt = kit / "weights" / "squeezenet1_0_deepcompression.pt" if kit is not None and name == "squeezenet1_0" else None
    if ckpt is not None and ckpt.is_file():
        return load_model(ARCH[name], checkpoint=ckpt, pretrained=False, device=dev, amp=amp)
    return load_model(ARCH[name], pretrained=False, device=dev, amp=amp)


def agreement(images, grid: ViewGrid, dev: torch.device, kit: Path | None) -> list[dict]:
    """Device batched render (float64, float32) against the CPU float64 banded render."""
    model = load("squeezenet1_0", dev, kit=kit)
    rows = {d: {"pixels": 0, "diff": 0, "maxdiff": 0.0, "views": 0, "flips": 0} for d in ("float64", "float32")}
    for img in images:
        ref = torch.cat([render_views(img, grid), tta_crops(img, grid.crop, grid.standard_scale)])  # CPU float64
        ref_top = model.logits(views.normalize(ref.to(dev))).argmax(1)
        entries, picks = views.view_layout(grid, img.shape[2], img.shape[1], True)
        x = img.to(dev)
        for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            got = views.render_batch(x.to(dtype), entries, picks, grid.crop).double().cpu()
            d = (got - ref).abs()
            r = rows[name]
            r["pixels"] += d.numel()
            r["diff"] += int((d > 0).sum())
            r["maxdiff"] = max(r["maxdiff"], float(d.max()))
            r["views"] += len(ref)
            r["flips"] += int((model.logits(views.normalize(got.to(dev))).argmax(1) != ref_top).sum())
    out = []
    for name, r in rows.items():
        out.append({"check": f"render {name} vs CPU float64", "value":
                    f"{r['diff'] / r['pixels']:.2e} of pixels differ (max {r['maxdiff']:.0f} levels), "
                    f"{r['flips']}/{r['views']} top-1 flips",
                    "goal": "identical" if name == "float64" else "opt-in: <= 2 levels"})
    return out


def sweep_rate(model, source, grid: ViewGrid, n_images: int, batch_size: int, workers: int) -> dict:
    """views/s of a real sweep (warm-up images first, in their own result set), host CPU s/image, peak MB."""
    from zoomstudy.sweep.engine import sweep_to_store

    dev = model.device
    with tempfile.TemporaryDirectory() as tmp:
        sweep_to_store(model, source, grid, Path(tmp) / "warm", batch_size=batch_size, workers=workers, max_images=2,
              progress=False)
        peak_reset(dev)
        sync(dev)
        c0, t0 = time.process_time(), time.perf_counter()
        sweep_to_store(model, source, grid, Path(tmp) / "timed", batch_size=batch_size, workers=workers,
              max_images=n_images, progress=False)
        sync(dev)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    views_done = n_images * (grid.n_views + 10)
    return {"views_s": views_done / wall, "host_s": cpu / n_images, "peak_mb": peak_mb(dev)}


def bare_rate(model, grid: ViewGrid, batch_size: int, n_views: int) -> float:
    """views/s of `model.logits` alone on a resident batch: what the sweep should approach."""
    dev = model.device
    x = torch.randn(batch_size, 3, grid.crop, grid.crop, device=dev)
    model.logits(x)
    sync(dev)
    reps = max(1, n_views // batch_size)
    t0 = time.perf_counter()
    for _ in range(reps):
        model.logits(x)
    sync(dev)
    return reps * batch_size / (time.perf_counter() - t0)


def memo_rate(name: str, dev: torch.device, images, k: int) -> tuple[float, float]:
    from zoomstudy.analysis import memo

    model = load(name, dev).module
    times = []
    peak_reset(dev)
    for i, img in enumerate(images[: max(2, min(len(images), 6))]):
        s = memo.memo_predict(model, img.to(dev), memo.MemoConfig(k=k), views="rrc", seed=i)["seconds"]
        if i:
            times.append(s)
    return float(np.mean(times)), peak_mb(dev)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=8, help="images for the render agreement")
    ap.add_argument("--sweep-images", type=int, default=32, help="timed images per sweep")
    ap.add_argument("--crop", type=int, default=224, help="the paper's grid scaled to this crop (CI: 32)")
    ap.add_argument("--models", default="resnet50,squeezenet1_0,vit_b_32",
                    help="sweep models; the first gets the sweep / bare-forward ratio per precision")
    ap.add_argument("--precisions", default=None, help="amp choices (default: none,bf16,fp16 on CUDA; none on CPU)")
    ap.add_argument("--memo-model", default="resnet50")
    ap.add_argument("--memo-k", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=None, help="views per forward (default 512 CUDA, 64 CPU)")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default 4 CUDA, 0 CPU)")
    ap.add_argument("--realdata", default=None, help="the real-data kit (default: $ZOOMSTUDY_REALDATA, ../shared/realdata)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    bad = [m for m in models + [a.memo_model] if m not in ARCH]
    if bad or a.images < 1 or a.sweep_images < 1 or a.memo_k < 1 or a.crop < 8:
        print(f"gpu_check: bad arguments (models from {sorted(ARCH)}; counts >= 1; crop >= 8)", file=sys.stderr)
        return 2
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    precisions = (a.precisions or ("none,bf16,fp16" if cuda else "none")).split(",")
    batch = a.batch_size or (512 if cuda else 64)
    workers = (4 if cuda else 0) if a.workers is None else a.workers
    grid = ViewGrid.scaled(a.crop)
    kit = find_kit(a.realdata)
    images = kit_images(kit, max(a.images, 2))
    t_start = time.perf_counter()
    rows = [{"check": "device", "value": torch.cuda.get_device_name(dev) if cuda else "cpu", "goal": ""},
            {"check": "data", "value": f"real-data kit {kit}" if kit else "noise images (kit not found)", "goal": ""},
            {"check": "grid", "value": f"{grid.n_scales} scales x {grid.n_anchors} + 10 crops, crop {grid.crop}", "goal": ""}]
    rows += agreement(images[: a.images], grid, dev, kit)

    from zoomstudy.data import SyntheticSource
    from zoomstudy.study import open_data

    source = (open_data(f"csv:{kit / 'imagenet-sample'}") if kit is not None
              else SyntheticSource(a.sweep_images + 2, size=((333, 500), (333, 500)), seed=0))
    for i, name in enumerate(models):
        for amp in (precisions if i == 0 else precisions[:1]):
            model = load(name, dev, amp=None if amp == "none" else amp, kit=None)
            r = sweep_rate(model, source, grid, a.sweep_images, batch, workers)
            value = f"{r['views_s']:.0f} views/s"
            goal = ""
            if i == 0:
                bare = bare_rate(model, grid, batch, a.sweep_images * (grid.n_views + 10))
                value += f", bare forward {bare:.0f} views/s, sweep/bare {r['views_s'] / bare:.2f}"
                goal = ">= 0.90 (bf16), >= 13,500 views/s" if amp == "bf16" else ""
            rows.append({"check": f"sweep {name} amp={amp}", "value": value, "goal": goal})
            rows.append({"check": f"  host time, peak memory ({name} amp={amp})",
                         "value": f"{r['host_s'] * 1e3:.1f} ms CPU per image, peak {r['peak_mb']:.0f} MB", "goal": ""})
            del model
            if cuda:
                torch.cuda.empty_cache()
    s, peak = memo_rate(a.memo_model, dev, images, a.memo_k)
    rows.append({"check": f"MEMO+RRC {a.memo_model} K={a.memo_k}", "value": f"{s:.3f} s/image, peak {peak:.0f} MB",
                 "goal": "<= 0.13 s/image (K=16, H200)"})
    rows.append({"check": "plan cache", "value": f"{views.plan_cache().stats}", "goal": ""})
    rows.append({"check": "total", "value": f"{time.perf_counter() - t_start:.0f} s", "goal": "< 8 min"})

    import pandas as pd

    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(pd.DataFrame(rows).to_string(index=False))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
