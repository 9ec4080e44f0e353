"""Deterministic random images for tests and benchmarks (`SyntheticSource`, the "synthetic:N" spec)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
from PIL import Image

from .labels import N_IMAGENET_CLASSES
from .source import Record, Source


class SyntheticSource(Source):
    """Deterministic random images for tests and benchmarks: item i depends on (seed, i) only.

    size: (width, height), or ((w_min, w_max), (h_min, h_max)) inclusive ranges drawn per image.
    The pixels are smooth random blobs plus noise (bilinear upsampling of a coarse random grid), so
    resizing them behaves like a photo rather than like white noise.
    """

    kind = "synthetic"

    def __init__(self, n: int = 16, *, size=(64, 48), n_classes: int = N_IMAGENET_CLASSES, seed: int = 0):
        if n < 0:
            raise ValueError(f"SyntheticSource: n must be >= 0, got {n}")
        if not 1 <= n_classes <= N_IMAGENET_CLASSES:
            raise ValueError(f"SyntheticSource: n_classes must be in 1..{N_IMAGENET_CLASSES} (labels are ImageNet-1k indices), "
                             f"got {n_classes}")
        self.size_range = self._size_range(size)
        super().__init__(f"synthetic-{n}")
        self.n, self.n_classes, self.seed = int(n), int(n_classes), int(seed)
        self._records = []
        for i in range(self.n):
            rng = np.random.default_rng([self.seed, i, 0])
            label = int(rng.integers(self.n_classes))
            (w0, w1), (h0, h1) = self.size_range
            wh = (int(rng.integers(w0, w1 + 1)), int(rng.integers(h0, h1 + 1)))
            self._records.append(Record(f"synthetic/{i:06d}", (i, wh), (label,), {}))

    @staticmethod
    def _size_range(size) -> tuple[tuple[int, int], tuple[int, int]]:
        try:
            w, h = size
            w = (int(w), int(w)) if np.isscalar(w) else (int(w[0]), int(w[1]))
            h = (int(h), int(h)) if np.isscalar(h) else (int(h[0]), int(h[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"SyntheticSource: size must be (w, h) or ((w_min, w_max), (h_min, h_max)), got {size!r}"
            ) from None
        if min(w[0], h[0]) < 1 or w[0] > w[1] or h[0] > h[1]:
            raise ValueError(f"SyntheticSource: sizes must be >= 1 with min <= max, got {size!r}")
        return w, h

    def _read(self, ref):
        i, (w, h) = ref
        rng = np.random.default_rng([self.seed, i, 1])
        coarse = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)  # [h/8, w/8, 3]
        smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.int16)  # [h, w, 3]
        noise = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))

    def _provenance(self) -> dict:
        params = {"n": self.n, "size": self.size_range, "n_classes": self.n_classes, "seed": self.seed}
        return {
            "location": None,
            "revision": None,
            "params": json.loads(json.dumps(params)),
            "fingerprint_method": "sha256 over the generator parameters",
            "fingerprint": hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest(),
        }

