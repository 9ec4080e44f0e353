"""A procedural image world in which we control what a model saw during training.

The paper measures pretrained models and finds them centre-biased and zoom-sensitive, but cannot say
why: nobody controlled where and how large the objects were in their training images. Here the
package draws its own world (no downloads), so the training distribution of position and scale is a
parameter and its effect can be measured with the very view protocol of the sweep.

A *scene* lives in continuous scene units (one unit = one pixel of a test source image, a square of
`source_size` units): a smooth mottled background, up to two dark panels, `clutter` distractor strokes
and blobs, and on top one object of one of `n_classes` shapes (random colour, flat / striped /
checked texture, small rotation). Any rectangle of the scene (a *viewport*) can be rasterised at any
resolution, so every regime is just a distribution over (object position, object size, viewport):

* test images: the whole source scene, object centred at the typical size. Their standard view
  (resize `standard_scale`, centre crop `image_size`, SPEC section 1) shows the object at
  `object_size * image_size` pixels, exactly the training framing of the "centered" regime.
* "centered":  object centred, one size, viewport = the standard view's window.
* "anywhere":  one size, object centre uniform in the standard window shrunk by a quarter of the
  object (at most a quarter of it cut off on a side), viewport = the standard window.
* "multiscale": object centred, size log-uniform over `scale_range` times the typical size.
* "rrc":       object centred at the typical size, viewport = a RandomResizedCrop window of the
  source scene (area `rrc_scale`, aspect `rrc_ratio`, torchvision's 10 tries then whole image), so the
  crop is rasterised exactly instead of resampled.

The panels (half-planes entering from an edge, half of them black) are there for the measurement:
the protocol pads views with black (off-centre anchors at the standard scale, every zoom-out view).
Photos have dark regions with straight edges (ImageNet even has letterboxed images), but a world
without any would make the padding itself a signal no model had ever seen, and every regime would
fail the off-centre views for that reason alone, hiding the effect of position. They are the same
for every regime.

Rasterisation is batched tensor code (antialiased sprites sampled with `grid_sample`) so that
training batches are generated on the fly; all randomness is drawn up front from one
`torch.Generator` into a `Scenes` record, so a seed fixes every pixel.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from zoomstudy.data import Sample

#: Bump when a change alters the pixels the world draws (it keys the model cache of train.py).
WORLD_VERSION = 1

REGIMES: tuple[str, ...] = ("centered", "anywhere", "multiscale", "rrc", "left")
#: Measurement distributions (not training regimes): "test" = object centred at the typical size;
#: "photo" = varied position and size with a centre preference, as objects sit in photographs.
MEASURE_REGIMES: tuple[str, ...] = ("test", "photo")
SPLITS: tuple[str, ...] = ("train", "test", "photo")
#: How a companion object relates to the class: "none" (no companion), "present" (drawn beside the
#: object, independent of the class: the object alone decides), "decides" (the class is the pair
#: shape x companion kind: the same shape means two classes depending on its context).
CONTEXTS: tuple[str, ...] = ("none", "present", "decides")
COMPANION_NAMES: tuple[str, ...] = ("sun", "bars")

#: Object classes, in label order; a WorldSpec with n_classes = k uses the first k.
CLASS_NAMES: tuple[str, ...] = (
    "disc", "ring", "square", "frame", "triangle", "plus", "cross", "star",
    "crescent", "glyph_H", "glyph_L", "glyph_T", "arrow", "hexagon", "half_disc", "glyph_E",
)
_SPRITE_RES = 48  # object sprite side (texels)
_CLUTTER_RES = 32  # clutter sprite side (texels)
_N_TEXTURES = 3  # flat, stripes, checker
_N_PANELS = 2  # dark half-planes per scene, each present with probability 1/2


@dataclass(frozen=True)
class WorldSpec:
    """Everything that decides the pixels of the world and the training distribution.

    Sizes: `image_size` is the model's input (the view crop); test source images are `source_size`
    square; `object_size` is the typical object side as a fraction of `image_size` in the standard
    view. `clutter` counts distractor elements per source scene. `seed` draws the training stream
    and its background pool; the images of a WorldSource are drawn from the source's own seed, so
    every world seed and regime is measured on the same test images.
    """

    n_classes: int = 12
    image_size: int = 56
    regime: str = "centered"
    seed: int = 0
    source_size: int = 72
    object_size: float = 0.45
    scale_range: tuple[float, float] = (0.35, 2.0)
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    max_rotation: float = 15.0
    clutter: int = 10
    context: str = "none"
    companion_size: float = 0.7
    companion_distance: float = 0.9
    companion_palette: str = "by-kind"

    @property
    def context_tag(self) -> str:
        """"" for the plain world, "-ctx-KIND" for a context world: the suffix of its names."""
        return "" if self.context == "none" else f"-ctx-{self.context}"

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(x) for x in self.scale_range))
        object.__setattr__(self, "rrc_scale", tuple(float(x) for x in self.rrc_scale))
        object.__setattr__(self, "rrc_ratio", tuple(float(x) for x in self.rrc_ratio))
        if not 2 <= self.n_classes <= len(CLASS_NAMES):
            raise ValueError(f"WorldSpec: n_classes must be in 2..{len(CLASS_NAMES)}, got {self.n_classes}")
        if self.regime not in REGIMES:
            raise ValueError(f"WorldSpec: regime must be one of {REGIMES}, got {self.regime!r}")
        if self.image_size < 8:
            raise ValueError(f"WorldSpec: image_size must be >= 8, got {self.image_size}")
        if self.source_size < self.standard_scale:
            raise ValueError(
                f"WorldSpec: source_size ({self.source_size}) must be >= the standard resize "
                f"{self.standard_scale} so that the standard view shrinks the source, as with photos"
            )
        if not 0.05 <= self.object_size <= 1.0:
            raise ValueError(f"WorldSpec: object_size must be in [0.05, 1], got {self.object_size}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"WorldSpec: scale_range must be 0 < lo <= hi, got {self.scale_range}")
        lo, hi = self.rrc_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"WorldSpec: rrc_scale must be 0 < lo <= hi <= 1, got {self.rrc_scale}")
        lo, hi = self.rrc_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"WorldSpec: rrc_ratio must be 0 < lo <= hi, got {self.rrc_ratio}")
        if not 0 <= self.max_rotation <= 180:
            raise ValueError(f"WorldSpec: max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        if self.clutter < 0:
            raise ValueError(f"WorldSpec: clutter must be >= 0, got {self.clutter}")
        if self.context not in CONTEXTS:
            raise ValueError(f"WorldSpec: context must be one of {CONTEXTS}, got {self.context!r}")
        if not (0 < self.companion_size <= 1 and 0 < self.companion_distance <= 2):
            raise ValueError(f"WorldSpec: need 0 < companion_size <= 1 and 0 < companion_distance <= 2, got "
                             f"{self.companion_size}, {self.companion_distance}")
        if self.companion_palette not in ("by-kind", "random"):
            raise ValueError(f"WorldSpec: companion_palette must be 'by-kind' or 'random', got {self.companion_palette!r}")
        if self.context == "decides" and self.n_classes % 2:
            raise ValueError(f"WorldSpec: context='decides' pairs each shape with 2 companions: n_classes must be even, got {self.n_classes}")

    # ---- derived geometry -----------------------------------------------------------------------
    @property
    def standard_scale(self) -> int:
        """The 1-crop resize for this crop (256 for 224), as ViewGrid.standard_scale."""
        return round(self.image_size * 256 / 224)

    @property
    def standard_window(self) -> float:
        """Side, in scene units, of the source region the standard view shows."""
        return self.source_size * self.image_size / self.standard_scale

    @property
    def base_size(self) -> float:
        """Typical object side in scene units (it appears as object_size * image_size px in the standard view)."""
        return self.object_size * self.image_size * self.source_size / self.standard_scale

    @property
    def n_shapes(self) -> int:
        """Distinct object shapes: n_classes, or half of it when the companion decides the class."""
        return self.n_classes // 2 if self.context == "decides" else self.n_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.context == "decides":
            return tuple(f"{CLASS_NAMES[shape]}+{COMPANION_NAMES[comp]}"
                         for shape, comp in map(self.class_pair, range(self.n_classes)))
        return CLASS_NAMES[: self.n_classes]

    def class_pair(self, cls):
        """The pairing rule of the context world, its one home: class -> (object shape, companion kind).

        context "decides": class c is shape c % n_shapes with companion c // n_shapes (the same shape
        is two classes, told apart by the companion); otherwise the class is the shape and the
        companion (if any) is free: None. `cls` is an int or an integer tensor.
        """
        if self.context == "decides":
            return cls % self.n_shapes, cls // self.n_shapes
        return cls, None

    def replace(self, **changes) -> "WorldSpec":
        d = self.to_dict()
        d.update(changes)
        return WorldSpec.from_dict(d)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["context"] == "none":  # no companion: the dict (and so the model cache keys) as before
            for k in ("context", "companion_size", "companion_distance", "companion_palette"):
                del d[k]
        for k in ("scale_range", "rrc_scale", "rrc_ratio"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldSpec":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"WorldSpec.from_dict: unknown keys {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ================================================================================================
# Sprites: the class shapes and the clutter shapes, drawn once with PIL
# ================================================================================================
def _draw_sprite(draw_fn, res: int, *, fit_bbox: bool) -> np.ndarray:
    """Draw at 4x with PIL on u, v in [-1, 1], antialias down to res x res; optionally stretch the
    shape's bounding box onto the whole sprite, so that an object's size is exactly its box side."""
    from PIL import Image, ImageDraw

    hi = 4 * res
    canvas = Image.new("L", (hi, hi), 0)
    draw = ImageDraw.Draw(canvas)

    def px(u: float, v: float) -> tuple[float, float]:
        return ((u + 1) / 2 * hi, (v + 1) / 2 * hi)

    draw_fn(draw, px, hi)
    if fit_bbox:
        canvas = canvas.crop(canvas.getbbox())
    canvas = canvas.resize((res, res), Image.BOX)
    return np.asarray(canvas, dtype=np.float32) / 255.0  # [res, res]


def _poly(d, px, pts, fill=255):
    d.polygon([px(u, v) for u, v in pts], fill=fill)


def _rect(d, px, u0, v0, u1, v1, fill=255):
    d.rectangle([px(u0, v0), px(u1, v1)], fill=fill)


def _ellipse(d, px, u0, v0, u1, v1, fill=255):
    d.ellipse([px(u0, v0), px(u1, v1)], fill=fill)


def _regular(n: int, r: float, start_deg: float) -> list[tuple[float, float]]:
    return [
        (r * math.cos(math.radians(start_deg + 360 * k / n)), r * math.sin(math.radians(start_deg + 360 * k / n)))
        for k in range(n)
    ]


def _class_drawers():
    t = 0.55  # stroke width of the cross

    def star(d, px, hi):
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = math.radians(-90 + 36 * k)
            pts.append((r * math.cos(a), r * math.sin(a)))
        _poly(d, px, pts)

    return {
        "disc": lambda d, px, hi: _ellipse(d, px, -1, -1, 1, 1),
        "ring": lambda d, px, hi: (_ellipse(d, px, -1, -1, 1, 1), _ellipse(d, px, -0.55, -0.55, 0.55, 0.55, 0)),
        "square": lambda d, px, hi: _rect(d, px, -1, -1, 1, 1),
        "frame": lambda d, px, hi: (_rect(d, px, -1, -1, 1, 1), _rect(d, px, -0.5, -0.5, 0.5, 0.5, 0)),
        "triangle": lambda d, px, hi: _poly(d, px, [(0, -1), (1, 1), (-1, 1)]),
        "plus": lambda d, px, hi: (_rect(d, px, -0.27, -1, 0.27, 1), _rect(d, px, -1, -0.27, 1, 0.27)),
        "cross": lambda d, px, hi: (
            _poly(d, px, [(-1, -1), (-1 + t, -1), (1, 1 - t), (1, 1), (1 - t, 1), (-1, -1 + t)]),
            _poly(d, px, [(1, -1), (1 - t, -1), (-1, 1 - t), (-1, 1), (-1 + t, 1), (1, -1 + t)]),
        ),
        "star": star,
        "crescent": lambda d, px, hi: (_ellipse(d, px, -1, -1, 1, 1), _ellipse(d, px, -0.4, -0.85, 1.3, 0.85, 0)),
        "glyph_H": lambda d, px, hi: (
            _rect(d, px, -1, -1, -0.5, 1), _rect(d, px, 0.5, -1, 1, 1), _rect(d, px, -1, -0.22, 1, 0.22)
        ),
        "glyph_L": lambda d, px, hi: (_rect(d, px, -1, -1, -0.45, 1), _rect(d, px, -1, 0.45, 1, 1)),
        "glyph_T": lambda d, px, hi: (_rect(d, px, -1, -1, 1, -0.45), _rect(d, px, -0.27, -1, 0.27, 1)),
        "arrow": lambda d, px, hi: (_rect(d, px, -1, -0.25, 0.1, 0.25), _poly(d, px, [(0.1, -1), (1, 0), (0.1, 1)])),
        "hexagon": lambda d, px, hi: _poly(d, px, _regular(6, 1.0, 0)),
        "half_disc": lambda d, px, hi: d.pieslice([px(-1, -1), px(1, 1)], 180, 360, fill=255),
        "glyph_E": lambda d, px, hi: (
            _rect(d, px, -1, -1, -0.45, 1), _rect(d, px, -1, -1, 1, -0.6),
            _rect(d, px, -1, -0.2, 0.8, 0.2), _rect(d, px, -1, 0.6, 1, 1),
        ),
    }


def _clutter_drawers():
    """Distractors: strokes, arcs and blobs that belong to no class (nothing to label them with)."""
    blob = [(0.9 * math.cos(a) * r, 0.6 * math.sin(a) * r) for a, r in zip(
        np.linspace(0, 2 * math.pi, 7, endpoint=False), (1.0, 0.7, 0.95, 0.6, 0.85, 0.75, 0.9))]

    def line(d, px, hi, pts, w):
        d.line([px(u, v) for u, v in pts], fill=255, width=max(1, int(w * hi / 2)), joint="curve")

    wave = [(u, 0.35 * math.sin(3 * u * math.pi)) for u in np.linspace(-0.95, 0.95, 24)]
    return [
        lambda d, px, hi: line(d, px, hi, [(-0.95, 0), (0.95, 0)], 0.12),
        lambda d, px, hi: d.arc([px(-0.9, -0.9), px(0.9, 0.9)], 200, 340, fill=255, width=int(0.12 * hi / 2)),
        lambda d, px, hi: line(d, px, hi, [(-0.9, 0.3), (-0.45, -0.3), (0, 0.3), (0.45, -0.3), (0.9, 0.3)], 0.1),
        lambda d, px, hi: line(d, px, hi, wave, 0.1),
        lambda d, px, hi: _poly(d, px, blob),
        lambda d, px, hi: [_ellipse(d, px, u - 0.15, v - 0.15, u + 0.15, v + 0.15)
                           for u, v in ((-0.6, -0.4), (0.1, -0.7), (0.5, 0.2), (-0.2, 0.6))],
        lambda d, px, hi: line(d, px, hi, [(-0.8, -0.7), (0, 0.7), (0.8, -0.7)], 0.12),
        lambda d, px, hi: d.arc([px(-0.9, -0.9), px(0.9, 0.9)], 0, 120, fill=255, width=int(0.3 * hi / 2)),
    ]


def _companion_drawers():
    """The context world's companions: a sun (disc with rays) and three bars, unlike any class or
    distractor shape, so that a model can only tell the pair classes apart by seeing the companion."""

    def sun(d, px, hi):
        _ellipse(d, px, -0.45, -0.45, 0.45, 0.45)
        for k in range(8):
            a = math.radians(45 * k)
            c, s_ = math.cos(a), math.sin(a)
            _poly(d, px, [(0.55 * c - 0.12 * s_, 0.55 * s_ + 0.12 * c), (0.55 * c + 0.12 * s_, 0.55 * s_ - 0.12 * c),
                          (1.0 * c, 1.0 * s_)])

    def bars(d, px, hi):
        for u in (-0.85, -0.15, 0.55):
            _rect(d, px, u, -1, u + 0.3, 1)

    return {"sun": sun, "bars": bars}


@functools.lru_cache(maxsize=1)
def companion_sprites() -> torch.Tensor:
    """float [len(COMPANION_NAMES), 1, R, R]: coverage of each companion shape."""
    drawers = _companion_drawers()
    return torch.from_numpy(np.stack([_draw_sprite(drawers[n], _SPRITE_RES, fit_bbox=False) for n in COMPANION_NAMES]))[:, None]


@functools.lru_cache(maxsize=1)
def class_sprites() -> torch.Tensor:
    """float [len(CLASS_NAMES), 1, R, R]: coverage of each class shape; its bounding box fills the sprite."""
    drawers = _class_drawers()
    sprites = [_draw_sprite(drawers[n], _SPRITE_RES, fit_bbox=True) for n in CLASS_NAMES]
    return torch.from_numpy(np.stack(sprites))[:, None]


@functools.lru_cache(maxsize=1)
def clutter_sprites() -> torch.Tensor:
    """float [n_kinds, 1, R, R]: coverage of each distractor shape."""
    sprites = [_draw_sprite(f, _CLUTTER_RES, fit_bbox=False) for f in _clutter_drawers()]
    return torch.from_numpy(np.stack(sprites))[:, None]


# ================================================================================================
# Scenes: all the randomness of a batch, drawn up front
# ================================================================================================
@dataclass
class Scenes:
    """A batch of B scenes (tensors, batch first), in scene units (source pixels)."""

    cls: torch.Tensor  # long [B]
    obj: torch.Tensor  # float [B, 4]: centre x, centre y, size (box side), rotation (radians)
    obj_col: torch.Tensor  # float [B, 2, 3]: the two colours of the texture, 0..1
    tex: torch.Tensor  # float [B, 4]: kind (0 flat, 1 stripes, 2 checker), cycles per size, angle, phase
    bg_coarse: torch.Tensor  # float [B, 3, 4, 4]: smooth background colour field over the scene
    bg_fine: torch.Tensor  # float [B, 1, 16, 16]: fine luminance mottle over the scene
    clut_kind: torch.Tensor  # long [B, K]
    clut: torch.Tensor  # float [B, K, 4]: centre x, centre y, size, rotation
    clut_col: torch.Tensor  # float [B, K, 3]
    panel: torch.Tensor  # float [B, P, 3]: outward normal angle, depth from the scene edge (units), present 0/1
    panel_col: torch.Tensor  # float [B, P, 3]
    view: torch.Tensor  # float [B, 4]: viewport x0, y0, width, height
    scene_size: tuple[float, float]  # (width, height) of the scene in units
    shape: torch.Tensor | None = None  # long [B]: object sprite; None = cls (no context world)
    comp: torch.Tensor | None = None  # float [B, 5]: companion kind, centre x, centre y, size, rotation
    comp_col: torch.Tensor | None = None  # float [B, 3]

    def __len__(self) -> int:
        return int(self.cls.shape[0])

    @staticmethod
    def cat(items: list["Scenes"]) -> "Scenes":
        if len({s.scene_size for s in items}) != 1 or len({s.clut.shape[1] for s in items}) != 1:
            raise ValueError("Scenes.cat: scenes must share scene_size and clutter count")
        kw = {}
        for f in fields(Scenes):
            if f.name == "scene_size":
                continue
            parts = [getattr(s, f.name) for s in items]
            if any(p is None for p in parts):
                if not all(p is None for p in parts):
                    raise ValueError(f"Scenes.cat: some scenes have {f.name}, others not")
                kw[f.name] = None
            else:
                kw[f.name] = torch.cat(parts)
        return Scenes(**kw, scene_size=items[0].scene_size)


def _uniform(g: torch.Generator, shape, lo=0.0, hi=1.0) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float64).float() * (hi - lo) + lo


def _sample_scene_content(
    spec: WorldSpec, n: int, g: torch.Generator, scene_wh: tuple[float, float], n_clutter: int
) -> dict:
    """Class, appearance, background and clutter (everything but object geometry and viewport)."""
    W, H = scene_wh
    cls = torch.randint(0, spec.n_classes, (n,), generator=g)
    col_a = _uniform(g, (n, 3))
    col_b = (col_a + _uniform(g, (n, 3), -0.35, 0.35)).clamp(0, 1)
    tex = torch.stack(
        [
            torch.randint(0, _N_TEXTURES, (n,), generator=g).float(),
            _uniform(g, (n,), 1.5, 4.0),
            _uniform(g, (n,), 0, math.pi),
            _uniform(g, (n,), 0, 2 * math.pi),
        ],
        1,
    )
    grey = _uniform(g, (n, 1, 1, 1), 0.25, 0.75)
    bg_coarse = (0.5 * grey + 0.5 * _uniform(g, (n, 3, 4, 4))).clamp(0, 1)
    bg_fine = _uniform(g, (n, 1, 16, 16), -0.12, 0.12)
    k = n_clutter
    clut_kind = torch.randint(0, clutter_sprites().shape[0], (n, k), generator=g)
    clut = torch.stack(
        [
            _uniform(g, (n, k), -0.1 * W, 1.1 * W),
            _uniform(g, (n, k), -0.1 * H, 1.1 * H),
            _uniform(g, (n, k), 0.3, 0.8) * spec.base_size,
            _uniform(g, (n, k), 0, 2 * math.pi),
        ],
        2,
    )
    clut_col = _uniform(g, (n, k, 3))
    # panels: dark half-planes entering from an edge (mostly axis-aligned, half of them black)
    p = _N_PANELS
    axis = torch.randint(0, 4, (n, p), generator=g).float() * (math.pi / 2)
    tilted = _uniform(g, (n, p), 0, 2 * math.pi)
    angle = torch.where(_uniform(g, (n, p)) < 0.75, axis, tilted)
    depth = _uniform(g, (n, p), 0.05, 0.4) * min(W, H)
    present = (_uniform(g, (n, p)) < 0.5).float()
    panel = torch.stack([angle, depth, present], 2)
    black = (_uniform(g, (n, p, 1)) < 0.5).float()
    panel_col = (1 - black) * _uniform(g, (n, p, 3), 0.0, 0.5)
    rot = _uniform(g, (n,), -1, 1) * math.radians(spec.max_rotation)
    out = dict(cls=cls, obj_col=torch.stack([col_a, col_b], 1), tex=tex, bg_coarse=bg_coarse, bg_fine=bg_fine,
               clut_kind=clut_kind, clut=clut, clut_col=clut_col, panel=panel, panel_col=panel_col, rot=rot)
    if spec.context != "none":  # drawn only then, so the other worlds keep their pixels
        free_kind = torch.randint(0, len(COMPANION_NAMES), (n,), generator=g)  # drawn either way: same stream
        out["shape"], comp = spec.class_pair(cls)
        out["comp_kind"] = free_kind if comp is None else comp
        out["comp_angle"] = _uniform(g, (n,), 0, 2 * math.pi)
        out["comp_rot"] = _uniform(g, (n,), -1, 1) * math.radians(spec.max_rotation)
        # "by-kind": each companion kind has its own colour (yellow sun, cyan bars), varied in brightness:
        # a cue a small CNN learns within its budget (with "random" colours the scale-augmented model
        # learned the companion barely: 51% against 75% after 24,576 images)
        if spec.companion_palette == "by-kind":
            kind_col = torch.tensor([[1.0, 0.85, 0.1], [0.1, 0.85, 1.0]])
            out["comp_col"] = kind_col[out["comp_kind"]] * _uniform(g, (n, 1), 0.75, 1.0)
        else:
            out["comp_col"] = _uniform(g, (n, 3), 0.55, 1.0) * _uniform(g, (n, 1), 0.7, 1.0)
    return out


def _place_companion(c: dict, obj: torch.Tensor, spec: WorldSpec) -> dict:
    """Turn the companion draws of `c` into Scenes fields, beside the object `obj` [B, 4]: centre at
    spec.companion_distance (0.9) object sizes from the object's centre, side spec.companion_size (0.7)
    of the object's: large enough to be learned on a CPU budget, far enough that a 2x zoom-in crop
    leaves it out of view."""
    if "comp_kind" not in c:
        return c
    kind, angle, rot = c.pop("comp_kind"), c.pop("comp_angle"), c.pop("comp_rot")
    d = spec.companion_distance * obj[:, 2]
    comp = torch.stack([kind.float(), obj[:, 0] + d * torch.cos(angle), obj[:, 1] + d * torch.sin(angle),
                        spec.companion_size * obj[:, 2], rot], 1)
    c["comp"] = comp
    return c


def _rrc_windows(spec: WorldSpec, n: int, g: torch.Generator) -> torch.Tensor:
    """torchvision RandomResizedCrop.get_params on the source square, vectorised: 10 tries, then the
    whole image (the fallback for a square source). Returns float [n, 4] x0, y0, w, h in units."""
    side = float(spec.source_size)
    area = side * side
    tries = 10
    scale = _uniform(g, (n, tries), *spec.rrc_scale) * area
    log_r = _uniform(g, (n, tries), math.log(spec.rrc_ratio[0]), math.log(spec.rrc_ratio[1]))
    ratio = torch.exp(log_r)
    w = torch.sqrt(scale * ratio).round()  # torchvision rounds to whole pixels
    h = torch.sqrt(scale / ratio).round()
    ok = (w > 0) & (h > 0) & (w <= side) & (h <= side)  # [n, tries]
    first = torch.argmax(ok.int(), 1)  # first valid try (0 when none)
    rows = torch.arange(n)
    w, h, any_ok = w[rows, first], h[rows, first], ok.any(1)
    w = torch.where(any_ok, w, torch.full_like(w, side))
    h = torch.where(any_ok, h, torch.full_like(h, side))
    x0 = torch.floor(_uniform(g, (n,)) * (side - w + 1))
    y0 = torch.floor(_uniform(g, (n,)) * (side - h + 1))
    return torch.stack([x0, y0, w, h], 1)


def sample_scenes(spec: WorldSpec, n: int, generator: torch.Generator, *, regime: str | None = None) -> Scenes:
    """n scenes of a regime (default spec.regime), or regime="test": the measurement images."""
    regime = spec.regime if regime is None else regime
    if regime not in REGIMES + MEASURE_REGIMES:
        raise ValueError(f"sample_scenes: regime must be one of {REGIMES + MEASURE_REGIMES}, got {regime!r}")
    if n < 1:
        raise ValueError(f"sample_scenes: n must be >= 1, got {n}")
    side = float(spec.source_size)
    c = _sample_scene_content(spec, n, generator, (side, side), spec.clutter)
    half = side / 2
    cx = torch.full((n,), half)
    cy = torch.full((n,), half)
    size = torch.full((n,), spec.base_size)
    win = spec.standard_window
    view = torch.tensor([half - win / 2, half - win / 2, win, win]).repeat(n, 1)
    margin = win / 2 - spec.base_size / 4  # centre anywhere in the window, at most 1/4 of the box cut off
    if regime in MEASURE_REGIMES:
        view = torch.tensor([0.0, 0.0, side, side]).repeat(n, 1)
    if regime == "photo":
        # photographers centre their subject, roughly: offsets ~ N(0, 0.15 side) per axis, kept within
        # the middle 70% of the frame; sizes log-normal around the typical size (sd 0.4 in log), 0.4x-2x
        off = (torch.randn((n, 2), generator=generator) * 0.15 * side).clamp(-0.35 * side, 0.35 * side)
        cx, cy = half + off[:, 0], half + off[:, 1]
        size = spec.base_size * torch.exp(torch.randn((n,), generator=generator) * 0.4).clamp(0.4, 2.0)
    elif regime == "anywhere":
        cx = half + _uniform(generator, (n,), -margin, margin)
        cy = half + _uniform(generator, (n,), -margin, margin)
    elif regime == "left":
        # the left half of the window only (centre x left of the middle), any height: the right half
        # of every position map is then unseen in training
        cx = half + _uniform(generator, (n,), -margin, 0.0)
        cy = half + _uniform(generator, (n,), -margin, margin)
    elif regime == "multiscale":
        lo, hi = spec.scale_range
        size = spec.base_size * torch.exp(_uniform(generator, (n,), math.log(lo), math.log(hi)))
    elif regime == "rrc":
        view = _rrc_windows(spec, n, generator)
    obj = torch.stack([cx, cy, size, c.pop("rot")], 1)
    return Scenes(obj=obj, view=view, scene_size=(side, side), **_place_companion(c, obj, spec))


# ================================================================================================
# Rasterisation
# ================================================================================================
def _sprite_alpha(bank: torch.Tensor, kind: torch.Tensor, geom: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
    """Coverage of one sprite per scene. geom [B, 4] (cx, cy, size, rot); xs [B, W], ys [B, H] pixel
    centres in scene units. Returns (alpha [B, 1, H, W], u [B, H, W], v [B, H, W]) with u, v the
    object coordinates in [-1, 1] over the sprite's box."""
    cx, cy, size, rot = (geom[:, i] for i in range(4))
    inv = 2.0 / size
    cos, sin = (torch.cos(rot) * inv)[:, None, None], (torch.sin(rot) * inv)[:, None, None]  # [B, 1, 1]
    dx = xs[:, None, :] - cx[:, None, None]  # [B, 1, W]
    dy = ys[:, :, None] - cy[:, None, None]  # [B, H, 1]
    grid = torch.empty(xs.shape[0], ys.shape[1], xs.shape[1], 2)  # [B, H, W, 2]
    u = torch.add(cos * dx, sin * dy, out=grid[..., 0])  # [B, H, W]
    v = torch.sub(cos * dy, sin * dx, out=grid[..., 1])  # [B, H, W]
    alpha = F.grid_sample(bank[kind], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return alpha, u, v


def _pixel_centres(view: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene coordinates of the pixel centres of each viewport: xs [B, width], ys [B, height]."""
    x0, y0, vw, vh = (view[:, i : i + 1] for i in range(4))  # each [B, 1]
    xs = x0 + (torch.arange(width, dtype=torch.float32)[None] + 0.5) * (vw / width)
    ys = y0 + (torch.arange(height, dtype=torch.float32)[None] + 0.5) * (vh / height)
    return xs, ys


def _scene_grid(xs: torch.Tensor, ys: torch.Tensor, scene_wh: tuple[float, float]) -> torch.Tensor:
    """grid_sample coordinates of pixel centres over a whole-scene raster: [B, H, W, 2]."""
    B, W, H = xs.shape[0], xs.shape[1], ys.shape[1]
    gx = (xs / scene_wh[0] * 2 - 1)[:, None, :].expand(B, H, W)
    gy = (ys / scene_wh[1] * 2 - 1)[:, :, None].expand(B, H, W)
    return torch.stack([gx, gy], -1)


def _draw_background(scenes: Scenes, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Smooth colour + fine mottle + clutter, all fixed to the scene: float [B, 3, H, W]."""
    grid = _scene_grid(xs, ys, scenes.scene_size)  # [B, H, W, 2]
    img = F.grid_sample(scenes.bg_coarse, grid, mode="bilinear", padding_mode="border", align_corners=True)
    img = img + F.grid_sample(scenes.bg_fine, grid, mode="bilinear", padding_mode="border", align_corners=True)
    sw, sh = scenes.scene_size
    half = min(sw, sh) / 2
    for k in range(scenes.panel.shape[1]):
        angle, depth, present = (scenes.panel[:, k, i, None, None] for i in range(3))  # each [B, 1, 1]
        reach = torch.cos(angle) * (xs[:, None, :] - sw / 2) + torch.sin(angle) * (ys[:, :, None] - sh / 2)  # [B, H, W]
        a = ((reach - (half - depth)) * (xs.shape[1] / (scenes.view[:, 2, None, None])) + 0.5).clamp(0, 1) * present
        img = img + a[:, None] * (scenes.panel_col[:, k, :, None, None] - img)  # 1-pixel antialiased edge
    bank = clutter_sprites()
    for k in range(scenes.clut.shape[1]):  # painter's order, behind the object
        a, _, _ = _sprite_alpha(bank, scenes.clut_kind[:, k], scenes.clut[:, k], xs, ys)  # [B, 1, H, W]
        img = img + a * (scenes.clut_col[:, k, :, None, None] - img)
    return img


def _draw_object(
    img: torch.Tensor, scenes: Scenes, xs: torch.Tensor, ys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object over img [B, 3, H, W]: two colours mixed by a texture in object coordinates (so the
    texture scales with the object). Returns (image, coverage [B, 1, H, W])."""
    if scenes.comp is not None:  # the companion first, beside (and behind) the object
        ca, _, _ = _sprite_alpha(companion_sprites(), scenes.comp[:, 0].long(), scenes.comp[:, 1:], xs, ys)
        img = img + ca * (scenes.comp_col[:, :, None, None] - img)
    shape = scenes.cls if scenes.shape is None else scenes.shape
    a, u, v = _sprite_alpha(class_sprites(), shape, scenes.obj, xs, ys)
    kind, freq, ang, phase = (scenes.tex[:, i, None, None] for i in range(4))  # each [B, 1, 1]
    w = math.pi * freq  # freq cycles over the box (u spans 2)
    cos, sin = torch.cos(ang), torch.sin(ang)
    wave = torch.sin(w * (cos * u + sin * v) + phase)  # [B, H, W]
    checker = wave * torch.sin(w * (cos * v - sin * u))
    mix = torch.where(kind == 1, wave, torch.where(kind == 2, checker, torch.full_like(u, -1.0)))
    mix = torch.sigmoid(6 * mix)[:, None]  # [B, 1, H, W], 0 = first colour
    c0, c1 = scenes.obj_col[:, 0, :, None, None], scenes.obj_col[:, 1, :, None, None]  # [B, 3, 1, 1]
    return img + a * (c0 + mix * (c1 - c0) - img), a


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def render_scenes(scenes: Scenes, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise each scene's viewport at width x height (one sample per pixel; the sprites are
    antialiased at about the size objects are drawn).

    Returns (uint8 [B, 3, height, width] RGB, float [B, height, width] object coverage 0..1).
    """
    if width < 1 or height < 1:
        raise ValueError(f"render_scenes: width and height must be >= 1, got {width}, {height}")
    xs, ys = _pixel_centres(scenes.view, width, height)
    img, a = _draw_object(_draw_background(scenes, xs, ys), scenes, xs, ys)
    return _to_uint8(img), a[:, 0]


def background_pool(spec: WorldSpec, n: int = 512) -> torch.Tensor:
    """n object-free source scenes (background + clutter), 1 px per unit: float [n, 3, side, side] 0..1.

    Training batches cut their viewports from these (each under a random mirroring) instead of
    drawing clutter afresh: the clutter is most of the rasterisation cost and carries no label, so a
    pool of its draws keeps the background distribution and makes batches cheap enough for a CPU.
    """
    if n < 1:
        raise ValueError(f"background_pool: n must be >= 1, got {n}")
    # only these fields change backgrounds: share one pool across regimes and object settings
    canonical = WorldSpec(seed=spec.seed, image_size=spec.image_size, source_size=spec.source_size,
                          object_size=spec.object_size, clutter=spec.clutter)
    return _background_pool(canonical, n)


@functools.lru_cache(maxsize=4)
def _background_pool(spec: WorldSpec, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(spec.seed, "pool"))
    side = spec.source_size
    out = []
    for start in range(0, n, 64):
        scenes = sample_scenes(spec, min(64, n - start), g, regime="test")
        xs, ys = _pixel_centres(scenes.view, side, side)
        out.append(_to_uint8(_draw_background(scenes, xs, ys)).float() / 255)  # quantised as test images are
    return torch.cat(out)


def render_batch(
    spec: WorldSpec, n: int, generator: torch.Generator, *, regime: str | None = None, pool_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch of a regime at the model's input size: (uint8 [n, 3, S, S], long labels [n]).

    Backgrounds come from `background_pool(spec, pool_size)`, each under one of its 4 mirror images.
    """
    scenes = sample_scenes(spec, n, generator, regime=regime)
    pool = background_pool(spec, pool_size)  # [P, 3, side, side] float 0..1
    pick = torch.randint(0, pool.shape[0], (n,), generator=generator)
    flip = torch.randint(0, 2, (n, 2), generator=generator).bool()  # mirror x, mirror y
    S = spec.image_size
    xs, ys = _pixel_centres(scenes.view, S, S)  # [n, S] each
    side_x, side_y = scenes.scene_size
    bx = torch.where(flip[:, :1], side_x - xs, xs)
    by = torch.where(flip[:, 1:], side_y - ys, ys)
    bg = F.grid_sample(pool[pick], _scene_grid(bx, by, scenes.scene_size), mode="bilinear",
                       padding_mode="border", align_corners=False)  # [n, 3, S, S]
    img, _ = _draw_object(bg, scenes, xs, ys)
    return _to_uint8(img), scenes.cls


def _object_meta(scenes: Scenes, i: int, width: int, height: int, alpha: torch.Tensor,
                 names: tuple[str, ...] = CLASS_NAMES) -> dict:
    """True geometry of scene i in the rendered image's pixels, plus the visible mask's box."""
    fill = class_sprites().mean((1, 2, 3))  # [n_shapes]: share of its box each shape covers
    shape = int((scenes.cls if scenes.shape is None else scenes.shape)[i])
    x0, y0, vw, vh = (float(t) for t in scenes.view[i])
    cx, cy, size, rot = (float(t) for t in scenes.obj[i])
    sx, sy = width / vw, height / vh
    mask = alpha[i] >= 0.5  # [H, W]
    ys, xs = torch.nonzero(mask, as_tuple=True)
    bbox = None if xs.numel() == 0 else [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return {
        "class_name": names[int(scenes.cls[i])],
        "center_xy": [(cx - x0) * sx, (cy - y0) * sy],
        "size": size * sx,  # box side in pixels (x; equal to y except for an anisotropic rrc crop)
        "size_xy": [size * sx, size * sy],
        "rotation_deg": math.degrees(rot),
        "bbox": bbox,  # [x0, y0, x1, y1) of pixels >= half covered, None when the object is out of view
        # share of the object's area inside the image (the rest is cut off by the viewport)
        "visible_fraction": float(alpha[i].sum() / max(fill[shape] * (size * sx) * (size * sy), 1e-9)),
    }


# ================================================================================================
# Single images and a Sample source
# ================================================================================================
def render_object_image(
    class_id: int,
    *,
    center_xy: tuple[float, float],
    size: float,
    rng: np.random.Generator,
    image_size: int | tuple[int, int] = 72,
    spec: WorldSpec | None = None,
    rotation: float | None = None,
    return_mask: bool = False,
):
    """One object of class `class_id` with its box centred at center_xy (pixels) and side `size`
    (pixels), on clutter, in an image of image_size (int or (W, H)). Appearance, clutter (density of
    `spec`) and, unless `rotation` (degrees) is given, the rotation are drawn from rng.

    Returns a PIL RGB image, or (image, float [H, W] coverage) with return_mask.
    """
    from PIL import Image

    spec = WorldSpec() if spec is None else spec
    W, H = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    if not 0 <= class_id < spec.n_classes:
        raise ValueError(f"render_object_image: class_id must be in 0..{spec.n_classes - 1}, got {class_id}")
    if W < 1 or H < 1:
        raise ValueError(f"render_object_image: image_size must be positive, got {image_size}")
    if not size > 0:
        raise ValueError(f"render_object_image: size must be > 0, got {size}")
    g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    n_clutter = int(round(spec.clutter * W * H / spec.source_size**2))
    c = _sample_scene_content(spec, 1, g, (float(W), float(H)), n_clutter)
    rot = c.pop("rot")
    if rotation is not None:
        rot = torch.tensor([math.radians(rotation)], dtype=torch.float32)
    c["cls"] = torch.tensor([class_id])
    if "shape" in c:  # a context world: the class gives the shape (and, when it decides, the companion)
        c["shape"], comp = spec.class_pair(c["cls"])
        if comp is not None:
            c["comp_kind"] = comp
    obj = torch.tensor([[float(center_xy[0]), float(center_xy[1]), float(size), float(rot[0])]])
    c = _place_companion(c, obj, spec)
    scenes = Scenes(obj=obj, view=torch.tensor([[0.0, 0.0, float(W), float(H)]]), scene_size=(float(W), float(H)), **c)
    rgb, alpha = render_scenes(scenes, W, H)
    image = Image.fromarray(rgb[0].permute(1, 2, 0).numpy(), "RGB")
    return (image, alpha[0].numpy()) if return_mask else image


def derive_seed(*parts) -> int:
    """A 62-bit seed from ints and strings (stable across processes, unlike hash())."""
    words = [int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little") if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence([WORLD_VERSION, *words]).generate_state(1, np.uint64)[0] >> np.uint64(2))


def _item_generator(seed: int, split: str, index: int) -> torch.Generator:
    """Each item has its own stream, so that a shard renders exactly the pixels of the full source."""
    return torch.Generator().manual_seed(derive_seed(seed, "item", split, index))


class WorldSource:
    """n images of the world as zoomstudy.data.Sample, deterministic in (spec, split, seed).

    split="test": the measurement images, independent of spec.regime (every regime is measured on the
    same images): source_size squares, object centred at the typical size. split="train": images of
    the regime's training distribution at image_size (with freshly drawn clutter, where training
    batches reuse a background pool), for inspection. Item i is drawn from its own seed, so a shard
    (every n-th item) holds exactly the pixels of those items in the whole source.
    """

    CHUNK = 64  # images rasterised per batch

    def __init__(
        self, spec: WorldSpec, n: int, split: str = "test", seed: int = 0, *, _indices: tuple[int, ...] | None = None
    ):
        if n < 0:
            raise ValueError(f"WorldSource: n must be >= 0, got {n}")
        if split not in SPLITS:
            raise ValueError(f"WorldSource: split must be one of {SPLITS}, got {split!r}")
        self.spec, self.n, self.split, self.seed = spec, int(n), split, int(seed)
        self._indices = tuple(range(self.n)) if _indices is None else _indices

    @property
    def name(self) -> str:
        ctx = self.spec.context_tag
        if self.split in MEASURE_REGIMES:
            return f"world-{self.split}{ctx}"
        return f"world-train-{self.spec.regime}{ctx}"

    @property
    def labels(self) -> list[tuple[int, ...]]:
        """Label sets of the items, without rendering (the class is drawn first from each item's stream)."""
        return [(int(self._scene(i).cls[0]),) for i in self._indices]

    def _scene(self, index: int) -> Scenes:
        return sample_scenes(self.spec, 1, _item_generator(self.seed, self.split, index), regime=self._regime)

    @property
    def _regime(self) -> str:
        return self.split if self.split in MEASURE_REGIMES else self.spec.regime

    def __len__(self) -> int:
        return len(self._indices)

    def shard(self, i: int, n: int) -> "WorldSource":
        """Every n-th item by position, starting at i."""
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"WorldSource.shard: need n >= 1 and 0 <= i < n, got i={i}, n={n}")
        return WorldSource(self.spec, self.n, self.split, self.seed, _indices=self._indices[i::n])

    def provenance(self) -> dict:
        return {
            "source": "zoomstudy.world",
            "world_version": WORLD_VERSION,
            "name": self.name,
            "split": self.split,
            "n": self.n,
            "items": len(self),
            "seed": self.seed,
            "spec": self.spec.to_dict(),
            "class_names": list(self.spec.class_names),
            "image_size": [self.spec.source_size] * 2 if self.split in MEASURE_REGIMES else [self.spec.image_size] * 2,
            "note": "procedural; the test and photo splits ignore spec.regime so every regime is measured on the same images",
        }

    def __iter__(self) -> Iterator[Sample]:
        from PIL import Image

        side = self.spec.source_size if self.split in MEASURE_REGIMES else self.spec.image_size
        for start in range(0, len(self._indices), self.CHUNK):
            idx = self._indices[start : start + self.CHUNK]
            scenes = Scenes.cat([self._scene(i) for i in idx])
            rgb, alpha = render_scenes(scenes, side, side)
            for j, i in enumerate(idx):
                meta = _object_meta(scenes, j, side, side, alpha, self.spec.class_names)
                meta.update(split=self.split, regime=self._regime, index=i)
                yield Sample(
                    image_id=f"world-{self.split}-{i:06d}",
                    image=Image.fromarray(rgb[j].permute(1, 2, 0).numpy(), "RGB"),
                    labels=(int(scenes.cls[j]),),
                    meta=meta,
                )
