"""Seconds per image of the plain baseline, MEMO + RRC and MEMO + AugMix (paper, Table 5 text:
0.65 s against 1.15 s, hardware not stated).

Why a benchmark: MEMO costs K forward passes, one backward and a reset per image, and the two view
generators differ in cost (AugMix runs up to 9 image ops per chain); this measures both on the
device at hand. Weights are random (speed does not depend on them); images are the real-data kit's
when present, else synthetic 375 x 500 images.

    python benchmarks/memo_speed.py --device cpu --k 16 --n-images 3
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torchvision

from zoomstudy.analysis import memo
from zoomstudy.views import pil_to_tensor

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "imagenet-sample"
MODELS = {"resnet50": torchvision.models.resnet50, "squeezenet1_0": torchvision.models.squeezenet1_0}


def load_images(n: int, seed: int) -> list[torch.Tensor]:
    """uint8 [3, H, W] images: the real sample if available, else seeded noise."""
    files = sorted(REALDATA.glob("*.JPEG"))[:n] if REALDATA.is_dir() else []
    if len(files) == n:
        from PIL import Image

        return [pil_to_tensor(Image.open(f)) for f in files]
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=g) for _ in range(n)]


def time_baseline(model: torch.nn.Module, img: torch.Tensor) -> float:
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.eval()(memo.plain_view(img.to(device)))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--k", type=int, default=16, help="augmented views per image")
    ap.add_argument("--n-images", type=int, default=3, help="timed images (after one warm-up image)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {tuple(MODELS)}")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    if args.k < 1 or args.n_images < 1 or any(m not in MODELS for m in names):
        raise SystemExit(f"need k >= 1, n-images >= 1 and models from {tuple(MODELS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = load_images(args.n_images + 1, args.seed)

    rows = []
    for name in names:
        torch.manual_seed(args.seed)
        model = MODELS[name]().to(device)
        times: dict[str, list[float]] = {"baseline": [], "memo_rrc": [], "memo_augmix": []}
        for i, img in enumerate(images):
            img = img.to(device)
            b = time_baseline(model, img)
            config = memo.MemoConfig(k=args.k)
            r = memo.memo_predict(model, img, config, views="rrc", seed=args.seed + i)["seconds"]
            a = memo.memo_predict(model, img, config, views="augmix", seed=args.seed + i)["seconds"]
            if i > 0:  # image 0 warms up allocators / kernels
                times["baseline"].append(b)
                times["memo_rrc"].append(r)
                times["memo_augmix"].append(a)
        rows.append((name, *(sum(v) / len(v) for v in times.values())))

    print(f"seconds per image, device={device}, K={args.k}, n={args.n_images}, threads={torch.get_num_threads()}")
    print(f"{'model':<15}{'baseline':>10}{'MEMO+RRC':>10}{'MEMO+AugMix':>13}")
    for name, b, r, a in rows:
        print(f"{name:<15}{b:>10.3f}{r:>10.3f}{a:>13.3f}")


if __name__ == "__main__":
    main()
