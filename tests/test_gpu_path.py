"""The GPU's code path, run and counted on CPU (issue 19): exact pixels whatever the caller's precision
settings, no host in the per-image loop, out-of-memory handled by halving.

The counts are per image through the code the CUDA branch runs (`method="batched"`): torch
operations seen by a TorchFunctionMode, host syncs (`aten._local_scalar_dense`, which every int() /
float() / .item() / tensor-index of a device tensor goes through, plus .cpu() / .tolist() calls) and
plan builds / uploads from the renderer's cache. Measured before this change on the same path (the
issue's figures): about 3,770 operations, 30 syncs and about 137 plan uploads per image, every image.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy import views
from zoomstudy.models.loading import load_model
from zoomstudy.sweep import engine
from zoomstudy.sweep.engine import sweep_to_store
from zoomstudy.views import ViewGrid, pil_to_tensor, render_views, render_views_reference, tta_crops

TINY = ViewGrid(scales=(32, 64, 96), grid=3, crop=48)
#: The paper's 36 scales at crop 64: as many scales (so as many operations) as the paper grid, cheap on CPU.
SMALL_PAPER = ViewGrid.scaled(64)
HOST_READS = {"cpu", "item", "tolist", "numpy"}


class _Ops(TorchFunctionMode):
    """Counts torch calls (functions and tensor methods) and host reads by name."""

    def __init__(self):
        super().__init__()
        self.names = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))

    @property
    def n(self) -> int:
        return sum(self.names.values())

    @property
    def host_reads(self) -> int:
        return sum(self.names[k] for k in HOST_READS)


class _Syncs(TorchDispatchMode):
    """Counts the aten operations run, and `_local_scalar_dense` (a device value read on the host)."""

    def __init__(self):
        super().__init__()
        self.ops = self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.syncs += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


class _Count:
    def __enter__(self):
        self.stats0 = dict(views.plan_cache().stats)
        self.f, self.d = _Ops(), _Syncs()
        self.f.__enter__()
        self.d.__enter__()
        return self

    def __exit__(self, *exc):
        self.d.__exit__(*exc)
        self.f.__exit__(*exc)
        st = views.plan_cache().stats
        self.builds = st["builds"] - self.stats0["builds"]
        self.uploads = st["uploads"] - self.stats0["uploads"]


def _noise(w, h, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng([seed, w, h]).integers(0, 256, (h, w, 3), dtype=np.uint8))


class _Sink:
    """A forwarder that keeps the views (the render alone is counted)."""

    def __init__(self):
        self.render_halving = engine._Halving(1, 1, 1024)
        self.got = []

    def add_image(self, item):
        return 0

    def fit(self, image_bytes):
        pass

    def add_views(self, slot, first, v):
        self.got.append((first, v))


# ================================================================================================
# The batched renderer is the banded one, pixel for pixel, and PIL's
# ================================================================================================
@pytest.mark.parametrize("size", [(60, 45), (40, 81), (300, 37), (91, 150)])
def test_batched_renderer_equals_pil_and_the_banded_one(size):
    """(40, 81) and (300, 37) take Pillow 13's vertical-first order at some scales: both pass orders
    in one batch. The 10-crop set comes from the same batch, flips by a reversed gather."""
    w, h = size
    grid = ViewGrid(scales=(16, 32, 48, 64, 100), grid=3, crop=48)
    im = _noise(w, h)
    x = pil_to_tensor(im)
    ref = render_views_reference(im, grid).double()
    assert torch.equal(render_views(x, grid, method="batched"), ref)
    assert torch.equal(render_views(x, grid, method="banded"), ref)
    entries, picks = views.view_layout(grid, w, h, True)
    both = views.render_batch(x.double(), entries, picks, grid.crop)
    assert torch.equal(both[grid.n_views:], tta_crops(x, grid.crop, grid.standard_scale))
    pieces = [views.render_batch(x.double(), e, p, grid.crop) for e, p in views.split_layout(entries, picks, 3)]
    assert torch.equal(torch.cat(pieces), both)


def test_float64_is_the_default_and_float32_is_within_two_levels():
    im = _noise(70, 50, seed=3)
    x = pil_to_tensor(im)
    ref = render_views_reference(im, TINY).double()
    for method in views.METHODS:
        assert render_views(x, TINY, method=method).dtype == torch.float64
        f32 = render_views(x, TINY, method=method, dtype=torch.float32)
        assert f32.dtype == torch.float32 and (f32.double() - ref).abs().max() <= 2


# ================================================================================================
# Exact whatever the caller set: TF32, matmul precision, autocast
# ================================================================================================
def test_render_is_exact_under_tf32_and_autocast_and_restores_the_settings():
    im = _noise(83, 61, seed=5)
    x = pil_to_tensor(im)
    ref = render_views_reference(im, TINY).double()
    clean32 = {m: render_views(x, TINY, method=m, dtype=torch.float32) for m in views.METHODS}
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("medium")  # on CPU: oneDNN may use bf16 for float32 matmuls
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a = torch.rand(8, 8)
            assert (a @ a).dtype == torch.bfloat16  # autocast is really on around the render
            for m in views.METHODS:
                assert torch.equal(render_views(x, TINY, method=m), ref)
                # float32 too gives exactly what it gives without autocast / TF32: the guard is active
                assert torch.equal(render_views(x, TINY, method=m, dtype=torch.float32), clean32[m])
            assert (a @ a).dtype == torch.bfloat16  # ... and still on after it
        assert torch.get_float32_matmul_precision() == "medium"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


# ================================================================================================
# No host in the per-image loop: operations, syncs, uploads per image
# ================================================================================================
def test_per_image_render_counts_on_the_gpu_code_path():
    """<= 100 torch operations to make all 334-equivalent views (36 scales + the 10-crop set), no sync,
    and after the first image of a size no plan build and no upload."""
    img = pil_to_tensor(_noise(120, 90, seed=1))
    item = engine._Item(0, "a", img, (1,), None, {})
    views.plan_cache().clear()
    counts = []
    for _ in range(2):
        sink = _Sink()
        with _Count() as c:
            engine._render_into(sink, item, SMALL_PAPER, torch.device("cpu"), torch.float64, True, method="batched")
        counts.append(c)
        (first, got), = sink.got  # every view in one piece
        assert first == 0 and got.shape == (SMALL_PAPER.n_views + 10, 3, 64, 64) and got.dtype == torch.uint8
    first, second = counts
    assert first.builds == 1 and first.uploads > 0  # the plan: built once for this size
    assert second.builds == 0 and second.uploads == 0
    assert second.f.n <= 100 and second.d.ops <= 100, (second.f.n, second.d.ops, second.f.names)
    assert second.d.syncs == 0 and second.f.host_reads == 0
    # the pixels are the banded renderer's
    want = torch.cat([render_views(img, SMALL_PAPER), tta_crops(img, 64, SMALL_PAPER.standard_scale)])
    assert torch.equal(got.double(), want)


def test_per_image_results_stay_on_the_device_until_the_part_is_written(tmp_path):
    """Render, forward, top-5 and group values of 4 images: no sync per image; the part's commit copies
    the results back once per table (3 host reads for the 4 images)."""
    from zoomstudy.data import SyntheticSource
    from zoomstudy.sweep.store import ResultSet, new_token

    model = load_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")
    src = SyntheticSource(4, size=((50, 60), (40, 50)), seed=2)
    settings = engine.sweep_settings(model, src, TINY, normalization="imagenet", render_dtype=torch.float64, tta=True)
    rs = ResultSet.create(tmp_path, settings)
    rs.claim_layout(None)
    groups = engine._Groups(TINY, True)
    writer = engine._PartWriter(rs, "part", new_token(), 4, TINY, groups=list(groups.index))
    fwd = engine._Forwarder(model, engine._ChunkPlan(64), TINY.n_views + 10, IMAGENET_MEAN, IMAGENET_STD,
                            done=lambda item, p: writer.add_image(item, p[:TINY.n_views], groups.values(p)))
    items = [engine._Item(i, s.image_id, pil_to_tensor(s.image), tuple(s.labels), None, {}) for i, s in enumerate(src)]
    engine._render_into(fwd, items[0], TINY, torch.device("cpu"), torch.float64, True, method="batched")  # warm
    fwd.flush()
    writer._reset()
    writer.images = []
    with _Count() as c:
        for item in items:
            engine._render_into(fwd, item, TINY, torch.device("cpu"), torch.float64, True, method="batched")
        fwd.flush()
    assert c.d.syncs == 0 and c.f.host_reads == 0, c.f.names
    with _Count() as c:
        writer.commit()
    assert c.d.syncs == 0 and c.f.names["cpu"] == 3  # preds, probs, group values: one copy each
    # the rows are the ones the per-image host path (`rows`) gives
    g = rs.groups()
    assert len(g) == 4 * len(groups.index) and len(rs.views()) == 4 * TINY.n_views


def test_plan_cache_is_bounded_in_bytes():
    cache = views.PlanCache({"cpu": 10_000})

    class P:
        def __init__(self, n):
            self.t = torch.zeros(n, dtype=torch.uint8)

        def tensors(self):
            return [self.t]

    for k in range(5):
        cache.get(("k", k), torch.device("cpu"), lambda: P(4000))
    assert cache.nbytes("cpu") <= 10_000 and len(cache) == 2 and cache.stats["evictions"] == 3
    assert cache.get(("k", 4), torch.device("cpu"), lambda: P(1)).t.numel() == 4000  # a hit
    cache.get(("big",), torch.device("cpu"), lambda: P(20_000))  # larger than the bound: used, not kept
    assert len(cache) == 2 and ("big",) not in cache._items


def test_items_are_pinnable():
    """torch's pin_memory recurses into the item and pins its image (a dataclass it would pass as is)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    class Marked(torch.Tensor):
        def pin_memory(self, *a, **k):
            return "pinned"

    img = torch.zeros(3, 4, 4, dtype=torch.uint8).as_subclass(Marked)
    item = engine._Item(0, "a", img, (1, 2), None, {"k": "v"})
    out = pin_memory(item)
    assert isinstance(out, engine._Item) and out.image == "pinned" and out.labels == (1, 2) and out.meta == {"k": "v"}


# ================================================================================================
# Out of memory: halve around the render, the concatenation and the forward; grow back
# ================================================================================================
@pytest.fixture(scope="module")
def squeeze():
    return load_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")


def _sweep(model, out, **kw):
    from zoomstudy.data import SyntheticSource

    return sweep_to_store(model, SyntheticSource(5, size=((40, 70), (40, 70)), seed=4), TINY, out, chunk_images=2,
                 workers=0, progress=False, tta=True, **kw)


def test_injected_out_of_memory_is_halved_and_grows_back(squeeze, tmp_path, monkeypatch):
    """CUDA out-of-memory raised (on CPU) by the render above 2 entries, by the batch's concatenation and
    normalisation above 16 views and by the forward above 8: the sweep halves each, grows back after a
    run of successes, and stores what a sweep without failures stores."""
    monkeypatch.setattr(engine, "_RENDER_METHOD", "batched")
    monkeypatch.setattr(engine._ChunkPlan, "make", classmethod(lambda cls, *a: cls(32)))
    ref = _sweep(squeeze, tmp_path / "ref")
    tried, ran, pieces, normalized = [], [], [], []

    def hook(module, args):
        tried.append(len(args[0]))
        if len(args[0]) > 8:
            raise torch.cuda.OutOfMemoryError("injected: forward")
        ran.append(len(args[0]))

    real_normalize, real_render = engine.normalize, engine.render_batch

    def normalize(v, *a, **k):
        normalized.append(len(v))
        if len(v) > 16:
            raise torch.cuda.OutOfMemoryError("injected: concatenation")
        return real_normalize(v, *a, **k)

    def render(src, entries, picks, crop):
        pieces.append(len(entries))
        if len(entries) > 2:
            raise torch.cuda.OutOfMemoryError("injected: render")
        return real_render(src, entries, picks, crop)

    handle = squeeze.module.register_forward_pre_hook(hook)
    monkeypatch.setattr(engine, "render_batch", render)
    monkeypatch.setattr(engine, "normalize", normalize)
    try:
        got = _sweep(squeeze, tmp_path / "oom")
    finally:
        handle.remove()
    ids, top1, conf = got.predictions()
    ids_r, top1_r, conf_r = ref.predictions()
    assert ids == ids_r and np.array_equal(top1, top1_r)
    np.testing.assert_allclose(conf, conf_r, rtol=1e-5, atol=1e-7)
    pd_equal = got.groups().sort_values(["image_id", "group"]).reset_index(drop=True)
    assert pd_equal[["image_id", "group", "mean_pred", "max_pred"]].equals(
        ref.groups().sort_values(["image_id", "group"]).reset_index(drop=True)[["image_id", "group", "mean_pred", "max_pred"]])
    assert normalized[0] == 32 and max(tried) == 16 and max(ran) <= 8
    assert tried.count(16) >= 2  # after a run of successes at 8, the batch grew back to 16 (and failed again)
    # render: 4 entries (3 scales + the 10-crop set) -> pieces of 2 after one halving
    assert pieces[0] == 4 and set(pieces[1:]) == {2}


def test_halving_grows_back_after_a_run_of_successes():
    h = engine._Halving(64, 1, 64, grow_after=3, up=False)
    assert h.failed() and h.value == 32 and h.failed() and h.value == 16
    for _ in range(3):
        h.succeeded()
    assert h.value == 32
    for _ in range(3):
        h.succeeded()
    assert h.value == 64
    one = engine._Halving(1, 1, 1, up=False)
    assert not one.failed()  # nothing smaller to try: the error is raised

    def work(parts):
        if parts < 4:
            raise torch.cuda.OutOfMemoryError("injected")
        return parts

    r = engine._Halving(1, 1, 1024, grow_after=2)
    assert r.run(work) == 4 and r.halvings == 2


# ================================================================================================
# CLIP: built on the target device, prompts encoded there, text tower dropped
# ================================================================================================
def _tiny_clip():
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    return open_clip.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.CLIPVisionCfg(image_size=32, layers=1, width=32, head_width=16, patch_size=16),
        text_cfg=open_clip.CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    ).eval()


def test_prompts_are_encoded_on_the_text_towers_device():
    """On the meta device (a stand-in for a GPU: nothing can silently fall back to CPU there, a copy
    to CPU fails) every batch is encoded where the tower is, and the embeddings stay there."""
    from zoomstudy.models import clip

    open_clip = pytest.importorskip("open_clip")
    model = _tiny_clip().to("meta")
    seen = []
    real = model.encode_text

    def encode_text(tokens, *a, **k):
        seen.append((tokens.device.type, next(model.transformer.parameters()).device.type))
        return real(tokens, *a, **k)

    model.encode_text = encode_text
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    emb = clip.encode_class_embeddings(model, tok, ["cat", "dog", "fish"], ["a {}.", "the {}."], batch_size=4)
    assert seen == [("meta", "meta"), ("meta", "meta")]  # 6 prompts in batches of 4
    assert emb.device.type == "meta" and emb.shape == (3, 16)


def test_clip_is_built_on_the_target_device_and_keeps_only_its_image_tower(monkeypatch):
    from zoomstudy.models import clip, loading

    open_clip = pytest.importorskip("open_clip")
    built_on, encoded_on = [], []

    def create_model(arch, pretrained=None, device=None, **k):
        built_on.append(torch.device(device).type)
        return _tiny_clip().to(device)

    def encode(model, tokenizer, classnames, templates, batch_size=256):
        encoded_on.append(next(model.transformer.parameters()).device.type)
        return torch.nn.functional.normalize(torch.ones(len(classnames), 16), dim=-1)

    monkeypatch.setattr(open_clip, "create_model", create_model)
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda arch: open_clip.tokenizer.SimpleTokenizer(context_length=16))
    monkeypatch.setattr(clip, "encode_class_embeddings", encode)
    monkeypatch.setenv("ZOOMSTUDY_CLIP_TEMPLATES", "1")
    built = loading._clip_build("ViT-B-32", None, False, None, torch.device("meta"))
    assert built_on == ["meta"] and encoded_on == ["meta"]  # built there, then encoded there
    towers = dict(built.module.clip.named_children())
    assert "visual" in towers and "transformer" not in towers and not hasattr(built.module.clip, "token_embedding")
    # a speed probe encodes nothing at all
    encoded_on.clear()
    probe = loading._clip_build("ViT-B-32", None, False, None, torch.device("cpu"), encode_prompts=False)
    assert encoded_on == [] and probe.weights_id.endswith("+prompts-none")
    assert probe.module(torch.zeros(2, 3, 32, 32)).shape == (2, 1000)


# ================================================================================================
# Precision: --amp validated before anything loads; TF32 state, amp and render dtype recorded
# ================================================================================================
@pytest.mark.parametrize("argv", [
    ["sweep", "--model", "squeezenet1_0", "--dataset", "synthetic:2", "--device", "cpu"],
    ["paper", "--models", "resnet50", "--no-hard", "--device", "cpu", "--dry-run"],
    ["profile", "--model", "squeezenet1_0", "--images", "synthetic:2", "--out", "OUT", "--device", "cpu"],
])
@pytest.mark.parametrize("amp, why", [("bf16", "needs a CUDA device"), ("int8", "invalid choice")])
def test_amp_is_checked_before_anything_loads(argv, amp, why, monkeypatch, tmp_path, capsys):
    from zoomstudy import cli, matrix, study

    def refuse(*a, **k):
        raise AssertionError("something was loaded before --amp was checked")

    for mod, name in ((study, "open_model"), (study, "open_data"), (matrix, "preflight")):
        monkeypatch.setattr(mod, name, refuse)
    argv = [str(tmp_path / "out") if v == "OUT" else v for v in argv]
    assert cli.main(argv + ["--amp", amp]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and "amp" in err[0], err


def test_precision_is_recorded_and_keys_only_what_is_not_the_default(squeeze):
    from zoomstudy.data import SyntheticSource

    src = SyntheticSource(2, size=((40, 50), (40, 50)), seed=1)
    base = engine.sweep_settings(squeeze, src, TINY, normalization="imagenet", render_dtype=torch.float64, tta=True)
    assert "precision" not in base["key"]  # torch's defaults: the key of earlier runs is unchanged
    prec = base["provenance"]["precision"]
    assert prec["render_dtype"] == "float64" and prec["amp"] == "none"
    assert prec["float32_matmul_precision"] == "highest" and prec["cudnn_benchmark"] is False
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # TF32 on CUDA, bf16 in oneDNN on CPU: outputs change
        tf32 = engine.sweep_settings(squeeze, src, TINY, normalization="imagenet", render_dtype=torch.float64, tta=True)
    finally:
        torch.set_float32_matmul_precision(before)
    assert tf32["key"]["precision"] == {"float32_matmul_precision": "high"}
    f32 = engine.sweep_settings(squeeze, src, TINY, normalization="imagenet", render_dtype=torch.float32, tta=True)
    assert f32["key"]["render"]["dtype"] == "float32" != base["key"]["render"]["dtype"]


# ================================================================================================
# benchmarks/gpu_check.py: the device check, as a CPU smoke test
# ================================================================================================
def test_gpu_check_runs_on_cpu(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--images", "2",
           "--sweep-images", "2", "--crop", "32", "--models", "squeezenet1_0", "--memo-model", "squeezenet1_0",
           "--memo-k", "2", "--realdata", str(tmp_path / "no-kit"), "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root,
                       env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["check"]: row["value"] for row in json.loads(out.read_text())}
    assert rows["render float64 vs CPU float64"].startswith("0.00e+00 of pixels differ (max 0 levels), 0/")
    assert "sweep/bare" in rows["sweep squeezenet1_0 amp=none"] and "MEMO+RRC squeezenet1_0 K=2" in rows
    assert "render float32 vs CPU float64" in r.stdout  # the one table
    bad = subprocess.run(cmd[:2] + ["--models", "nope"], capture_output=True, text=True, timeout=60, cwd=root,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert bad.returncode == 2
