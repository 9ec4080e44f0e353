"""ZoomTTA's cost against the 1-crop forward, measured in one run (no timed assertions anywhere else).

    python benchmarks/zoomtta_speed.py [--model squeezenet1_0] [--images 8] [--k 4] [--device cpu]

Per image, three ways, all on the same decoded images (500 x 375 random-noise images unless --kit points
at the real-data kit): (a) the bare 1-crop forward (view rendered beforehand, only the model timed);
(b) ZoomTTA with the one 1-crop view (render + forward); (c) ZoomTTA with k views (the views of a typical
policy: the 1-crop view and k - 1 zoom-in / zoom-out views). Prints images/s and views/s of each and the
ratios c/a and c/b: what k views cost against shipping the plain model. Random weights: speed does not
depend on them.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from zoomstudy.models.loading import load_model
from zoomstudy.sweep.zoomtta import ZoomTTA
from zoomstudy.views import normalize

#: A 4-view policy like the kit's (1-crop first, then zoom-in and zoom-out views at other anchors).
POLICY = [(256, 1, 1), (448, 1, 1), (128, 0, 0), (320, 2, 1), (640, 1, 0), (192, 1, 2), (512, 0, 1), (96, 1, 1)]


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up (plans, allocator)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="squeezenet1_0")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--k", type=int, default=4, choices=range(1, len(POLICY) + 1))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--kit", help="the real-data kit folder: use its first images instead of noise")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    model = load_model(f"torchvision:{a.model}", pretrained=False, device=a.device)
    if a.kit:
        from zoomstudy.data.decode import load_image

        files = sorted((Path(a.kit) / "imagenet-sample").glob("*.JPEG"))[: a.images]
        from zoomstudy.views import pil_to_tensor

        images = [pil_to_tensor(load_image(f)) for f in files]
    else:
        g = torch.Generator().manual_seed(0)
        images = [torch.randint(0, 256, (3, 375, 500), generator=g, dtype=torch.uint8) for _ in range(a.images)]
    n = len(images)
    one = ZoomTTA(model, POLICY[:1], "mean")
    tta = ZoomTTA(model, POLICY[: a.k], "mean")
    pre = normalize(torch.cat([one.render(im) for im in images]))  # the 1-crop views, rendered once
    t_bare = _timed(lambda: model.logits(pre), a.repeat)
    t_one = _timed(lambda: one(images), a.repeat)
    t_tta = _timed(lambda: tta(images), a.repeat)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"{a.model} on {dev}, {n} images ({'kit' if a.kit else '500x375 noise'}), k = {a.k}, mean aggregation")
    print(f"  (a) bare 1-crop forward      {n / t_bare:8.1f} images/s  {n / t_bare:8.1f} views/s")
    print(f"  (b) ZoomTTA, 1-crop view     {n / t_one:8.1f} images/s  {n / t_one:8.1f} views/s")
    print(f"  (c) ZoomTTA, {a.k} views        {n / t_tta:8.1f} images/s  {n * a.k / t_tta:8.1f} views/s")
    print(f"  c/a time per image: {t_tta / t_bare:.2f} x   c/b: {t_tta / t_one:.2f} x   (k = {a.k})")


if __name__ == "__main__":
    main()
