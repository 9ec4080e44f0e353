"""Sweep speed, as ratios measured in one run on one device and model (not a timed test).

(a) bare model forward on ready 224 x 224 batches          -> views/s, the ceiling
(b) the full sweep: decode once, views on device, forward, store   -> views/s
(c) the authors' way: per view a PIL decode + resize + crop, through a DataLoader -> views/s
Prints b/a (goal >= 0.90 on a GPU, >= 0.85 on CPU) and b/c (goal >= 20 on a GPU), and the peak host
memory: of the process before the first sweep (interpreter, libraries, model), after the sweeps (the
sweep's own peak: (b) runs first, (a) and (c) forward the same number of views at once), and of the
decoding worker processes. (a) and (c) use the sweep's forward chunk, which on CPU `--max-host-mb` sets.

    python benchmarks/sweep_speed.py --models squeezenet1_0 resnet50 --images 4
    python benchmarks/sweep_speed.py --models resnet18 --images 2 --size 4000 3000 --max-host-mb 1024
"""
from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from zoomstudy.data import SyntheticSource
from zoomstudy.models.loading import load_model
from zoomstudy.sweep.engine import DEFAULT_MAX_HOST_MB, sweep_to_store, views_per_forward
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--models", nargs="+", default=["squeezenet1_0", "resnet50"])
p.add_argument("--images", type=int, default=4, help="images per measurement")
p.add_argument("--size", type=int, nargs=2, default=[500, 375], help="synthetic image size (ImageNet's typical)")
p.add_argument("--batch-size", type=int, default=512)
p.add_argument("--workers", type=int, default=None)
p.add_argument("--device", default=None)
p.add_argument("--max-host-mb", type=float, default=DEFAULT_MAX_HOST_MB, help="the sweep's host-memory budget (MiB)")
args = p.parse_args()

grid = ViewGrid.paper()
device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
print(f"device: {device} ({hw}); torch {torch.__version__}; {args.images} images of {args.size[0]}x{args.size[1]}; "
      f"{grid.n_views} views each; max_host_mb {args.max_host_mb:.0f}")


def peak_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward(model, n_views: int, chunk: int) -> float:
    x = torch.randn(min(chunk, n_views), 3, 224, 224, device=device)
    model.logits(x)  # warm-up
    sync()
    t = time.perf_counter()
    done = 0
    while done < n_views:
        model.logits(x)
        done += len(x)
    sync()
    return done / (time.perf_counter() - t)


def full_sweep(model, tmp: Path) -> float:
    src = SyntheticSource(args.images, size=tuple(args.size), seed=0)
    sweep_to_store(model, SyntheticSource(1, size=tuple(args.size), seed=9), grid, tmp / "warm", progress=False, tta=False,
          workers=0, batch_size=args.batch_size, max_host_mb=args.max_host_mb)
    sync()
    t = time.perf_counter()
    sweep_to_store(model, src, grid, tmp / "run", batch_size=args.batch_size, progress=False, tta=False, workers=args.workers,
          max_host_mb=args.max_host_mb)
    sync()
    return args.images * grid.n_views / (time.perf_counter() - t)


class PerViewPIL(torch.utils.data.Dataset):
    """The authors' pipeline: every view decodes the file and resizes the whole image again."""

    def __init__(self, files):
        self.items = [(f, s, r, c) for f in files for s in grid.scales for r in range(3) for c in range(3)]
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        f, s, r, c = self.items[i]
        im = Image.open(f).convert("RGB")
        tops, lefts, W, H = grid.windows(im.width, im.height, s)
        im = im.resize((W, H), Image.BICUBIC)
        im = im.crop((lefts[c], tops[r], lefts[c] + 224, tops[r] + 224))
        x = torch.from_numpy(__import__("numpy").asarray(im).copy()).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std


def per_view_pil(model, tmp: Path, chunk: int) -> float:
    files = []
    for i, s in enumerate(SyntheticSource(args.images, size=tuple(args.size), seed=0)):
        f = tmp / f"img{i}.jpg"
        s.image.save(f, quality=90)
        files.append(f)
    workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 1)
    loader = torch.utils.data.DataLoader(PerViewPIL(files), batch_size=min(chunk, 324), num_workers=workers)
    batches = iter(loader)
    model.logits(next(batches).to(device))  # worker start-up and the first batch: warm-up, not timed
    sync()
    t = time.perf_counter()
    n = 0
    for x in batches:
        model.logits(x.to(device))
        n += len(x)
    sync()
    return n / (time.perf_counter() - t)


print(f"{'model':<16}{'(a) forward':>14}{'(b) sweep':>12}{'(c) PIL/view':>14}{'b/a':>8}{'b/c':>8}{'chunk':>7}")
before = None
after_sweeps = []
for name in args.models:
    model = load_model(name, pretrained=False, device=str(device))
    before = peak_mb() if before is None else before
    chunk = views_per_forward(model, grid, args.batch_size, args.max_host_mb)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        b = full_sweep(model, tmp)  # first: the peak after it is the sweep's (for the first model)
        after_sweeps.append((name, peak_mb()))
        a = bare_forward(model, args.images * grid.n_views, chunk)
        c = per_view_pil(model, tmp, chunk)
    print(f"{name:<16}{a:>12.0f}/s{b:>10.0f}/s{c:>12.0f}/s{b / a:>8.2f}{b / c:>8.1f}{chunk:>7}")
print(f"peak host memory: {before:.0f} MB before the first sweep (interpreter, libraries, first model); "
      + "; ".join(f"{peak:.0f} MB after the sweep of {n}" for n, peak in after_sweeps)
      + f"; {peak_mb():.0f} MB for the whole benchmark; decoding workers {peak_mb(resource.RUSAGE_CHILDREN):.0f} MB")
