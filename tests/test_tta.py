"""MEMO (zoomstudy.analysis.memo): episodic reset, BN prior, marginal entropy, the update, the views, the runner."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoomstudy.analysis import memo
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
SMALL = dict(resize=36, crop=32)  # tiny views keep the CPU tests fast


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops on a small shared CPU


def tiny_bn_net(num_classes: int = 10, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Sequential:
    """conv-BN-ReLU x 2, pool, linear, with non-trivial running statistics and affine BN params."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes),
        )
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.num_batches_tracked.fill_(7)
    return net.to(dtype)


def rand_image(h: int = 60, w: int = 80, seed: int = 0) -> torch.Tensor:
    """A smooth-ish uint8 [3, h, w] image (blocks + noise), so crops and ops have structure."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (3, h // 10 + 1, w // 10 + 1), generator=g).float()
    img = F.interpolate(coarse[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    img = img + torch.randint(-20, 21, (3, h, w), generator=g)
    return img.clamp(0, 255).round().to(torch.uint8)


def state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, ref: dict) -> None:
    now = model.state_dict()
    assert now.keys() == ref.keys()
    for k in ref:
        assert torch.equal(now[k], ref[k]), f"{k} changed"


def hand_bn_forward(net: nn.Sequential, x: torch.Tensor, prior: float) -> torch.Tensor:
    """The tiny net with MEMO's BN rule written out: detached batch mean / unbiased variance."""
    for mod in net:
        if isinstance(mod, nn.BatchNorm2d):
            xd = x.detach()
            n = xd.numel() // xd.shape[1]
            mu = xd.mean(dim=(0, 2, 3))
            var = ((xd - mu.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3)) / (n - 1)
            mm = prior * mod.running_mean + (1 - prior) * mu
            mv = prior * mod.running_var + (1 - prior) * var
            c = (1, -1, 1, 1)
            x = (x - mm.view(c)) / torch.sqrt(mv.view(c) + mod.eps) * mod.weight.view(c) + mod.bias.view(c)
        else:
            x = mod(x)
    return x


def direct_marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(dim=-1).mean(dim=0)
    return -torch.special.xlogy(p, p).sum()


# ------------------------------------------------------------------------------------------------
# Episodic reset
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer, kwargs", [("sgd", None), ("adamw", None), (torch.optim.SGD, {"momentum": 0.9})],
    ids=["sgd", "adamw", "sgd-class-momentum"],
)
def test_memo_predict_restores_every_parameter_and_buffer(optimizer, kwargs):
    net = tiny_bn_net()
    net.train()  # the mode must come back too
    ref = state_copy(net)
    config = memo.MemoConfig(k=4, lr=0.05, optimizer=optimizer, optimizer_kwargs=kwargs, **SMALL)
    out = memo.memo_predict(net, rand_image(), config, views="rrc")
    assert_state_equal(net, ref)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    assert set(out) == {"pred_1k_index", "probs_top5", "baseline_pred", "seconds"}


def test_adaptation_changes_weights_and_restore_undoes_it():
    """Guards the test above against a no-op: the step does move every parameter."""
    net = tiny_bn_net()
    ref = state_copy(net)
    snap = memo.snapshot_state(net)
    views = memo.rrc_views(rand_image(), 4, seed=1, size=32)
    opt = memo.make_optimizer(net.parameters(), "sgd", 0.05)
    memo.memo_adapt_step(net, views, opt, prior=16 / 17)
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, ref[n])}
    assert changed == {n for n, _ in net.named_parameters()}
    for n, b in net.named_buffers():  # eval-mode BN with the prior never touches running stats
        assert torch.equal(b, ref[n])
    with torch.no_grad():  # buffers too: MEMO's step leaves them alone, so disturb them by hand
        for b in net.buffers():
            b.add_(1)
    memo.restore_state(net, snap)
    assert_state_equal(net, ref)


# ------------------------------------------------------------------------------------------------
# Batch-norm prior
# ------------------------------------------------------------------------------------------------
def memo_reference_bn(bn: nn.BatchNorm2d, x: torch.Tensor, prior: float) -> torch.Tensor:
    """MEMO's `_modified_bn_forward` (utils/train_helpers.py) transcribed: batch stats via a
    momentum-1 running-stat update on throw-away buffers, then eval-mode BN on the mixture."""
    est_mean = torch.zeros_like(bn.running_mean)
    est_var = torch.ones_like(bn.running_var)
    F.batch_norm(x, est_mean, est_var, None, None, True, 1.0, bn.eps)
    rm = prior * bn.running_mean + (1 - prior) * est_mean
    rv = prior * bn.running_var + (1 - prior) * est_var
    return F.batch_norm(x, rm, rv, bn.weight, bn.bias, False, 0, bn.eps)


@pytest.mark.parametrize("batch", [4, 1])
def test_bn_prior_matches_hand_computation(batch):
    bn = tiny_bn_net(dtype=torch.float64)[1].eval()  # BatchNorm2d(4)
    x = torch.randn(batch, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    prior = memo.prior_from_n(16)
    assert prior == 16 / 17
    rm, rv = bn.running_mean, bn.running_var
    rm0, rv0 = rm.clone(), rv.clone()
    with memo.batchnorm_prior(bn, prior) as n_layers:
        out = bn(x)
    assert n_layers == 1
    # by hand: mean and unbiased variance over (N, H, W), mixed with the running statistics
    n = batch * 25
    mu = x.sum(dim=(0, 2, 3)) / n
    var = ((x - mu.view(1, 4, 1, 1)) ** 2).sum(dim=(0, 2, 3)) / (n - 1)
    mm = prior * rm0 + (1 - prior) * mu
    mv = prior * rv0 + (1 - prior) * var
    c = (1, 4, 1, 1)
    want = (x - mm.view(c)) / torch.sqrt(mv.view(c) + bn.eps) * bn.weight.view(c) + bn.bias.view(c)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, memo_reference_bn(bn, x, prior), rtol=1e-12, atol=1e-12)
    # the biased variance would be a different answer: the test can tell them apart
    mv_biased = prior * rv0 + (1 - prior) * var * (n - 1) / n
    biased = (x - mm.view(c)) / torch.sqrt(mv_biased.view(c) + bn.eps) * bn.weight.view(c) + bn.bias.view(c)
    assert (out - biased).abs().max() > 1e-6
    # the very same buffer tensors are back, unchanged, and the hooks are gone
    assert bn.running_mean is rm and bn.running_var is rv
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)
    torch.testing.assert_close(bn(x), F.batch_norm(x, rm0, rv0, bn.weight, bn.bias, False, 0, bn.eps))


def test_bn_prior_extremes_and_subclass():
    """prior 1 = plain eval BN, prior 0 = pure batch statistics; timm's BatchNormAct2d (own forward)
    is covered and keeps its activation."""
    timm = pytest.importorskip("timm")
    bn = timm.layers.BatchNormAct2d(3, act_layer=nn.ReLU).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
        bn.running_var.copy_(torch.tensor([1.5, 0.7, 2.0]))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    with memo.batchnorm_prior(bn, 1.0):
        plain = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, bn.eps)
        torch.testing.assert_close(bn(x), bn.act(plain))
    with memo.batchnorm_prior(bn, 0.0):
        out = bn(x)
    var, mu = torch.var_mean(x, dim=(0, 2, 3), correction=1)
    torch.testing.assert_close(out, torch.relu(F.batch_norm(x, mu, var, bn.weight, bn.bias, False, 0, bn.eps)))
    with pytest.raises(ValueError, match="prior"):
        with memo.batchnorm_prior(bn, 1.5):
            pass


# ------------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------------
def test_marginal_entropy_matches_direct_formula():
    logits = torch.randn(16, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    h, avg = memo.marginal_entropy(logits)
    torch.testing.assert_close(h, direct_marginal_entropy(logits), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(avg.exp(), logits.softmax(-1).mean(0), rtol=1e-12, atol=1e-12)
    one = memo.marginal_entropy(logits[:1])[0]  # K = 1: the entropy of that softmax
    torch.testing.assert_close(one, direct_marginal_entropy(logits[:1]), rtol=1e-12, atol=1e-12)


def test_marginal_entropy_is_stable_when_softmaxes_saturate():
    # two one-hot softmaxes on different classes, a third class with probability exp(-2e4) = 0
    logits = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, -1e4]], requires_grad=True)
    h, _ = memo.marginal_entropy(logits)
    assert math.isclose(h.item(), math.log(2), rel_tol=1e-6)
    ref = direct_marginal_entropy(logits.detach().double())  # xlogy handles 0 log 0 exactly
    assert math.isclose(h.item(), ref.item(), rel_tol=1e-6)
    naive = -(logits.softmax(-1).mean(0) * logits.softmax(-1).mean(0).log()).sum()
    assert torch.isnan(naive)  # why the log-space form is needed
    h.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError):
        memo.marginal_entropy(torch.zeros(5))


# ------------------------------------------------------------------------------------------------
# The update
# ------------------------------------------------------------------------------------------------
def _manual_grads(net: nn.Module, views: torch.Tensor, prior: float) -> dict:
    loss = direct_marginal_entropy(hand_bn_forward(net, views, prior))
    names, params = zip(*net.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, params)))


def test_sgd_step_moves_each_parameter_by_lr_times_gradient():
    net = tiny_bn_net(dtype=torch.float64).eval()
    views = torch.randn(8, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    prior, lr = 16 / 17, 0.00025
    grads = _manual_grads(net, views, prior)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = memo.make_optimizer(net.parameters(), "sgd", lr)
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[0]["weight_decay"] == 0
    loss = memo.memo_adapt_step(net, views, opt, prior=prior)
    fresh = tiny_bn_net(dtype=torch.float64)
    assert math.isclose(loss, direct_marginal_entropy(hand_bn_forward(fresh, views, prior)).item(), rel_tol=1e-12)
    for n, p in net.named_parameters():
        assert grads[n].abs().max() > 0, f"{n} got no gradient"
        torch.testing.assert_close(p.detach() - before[n], -lr * grads[n], rtol=1e-9, atol=1e-15)


def test_adamw_first_step_is_lr_times_sign():
    """First AdamW step with weight decay 0: lr * g / (|g| + eps), bias corrections cancel."""
    net = tiny_bn_net(dtype=torch.float64).eval()
    views = torch.randn(8, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    prior, lr = memo.prior_from_n(16), 1e-3
    grads = _manual_grads(net, views, prior)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = memo.make_optimizer(net.parameters(), "adamw", lr)
    assert opt.param_groups[0]["weight_decay"] == 0
    memo.memo_adapt_step(net, views, opt, prior=prior)
    for n, p in net.named_parameters():
        g = grads[n]
        torch.testing.assert_close(p.detach() - before[n], -lr * g / (g.abs() + 1e-8), rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Views
# ------------------------------------------------------------------------------------------------
def _check_views(v: torch.Tensor, k: int, size: int) -> None:
    assert v.shape == (k, 3, size, size) and v.dtype == torch.float32
    assert torch.isfinite(v).all()
    pix = v * STD + MEAN  # back to [0, 1] pixels
    assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6
    flat = v.flatten(1)
    for i in range(k):
        for j in range(i + 1, k):
            assert not torch.equal(flat[i], flat[j]), f"views {i} and {j} coincide"


@pytest.mark.parametrize("make", [memo.rrc_views, memo.augmix_views], ids=["rrc", "augmix"])
def test_views_shape_range_and_seeding(make):
    img = rand_image(240, 320)
    k = 4
    v = make(img, k, seed=5)
    _check_views(v, k, 224)
    assert torch.equal(v, make(img, k, seed=5))
    assert torch.equal(v, make(img, k, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(v, make(img, k, seed=6))
    with pytest.raises(ValueError):
        make(img.float(), k)
    with pytest.raises(ValueError):
        make(img, 0)


def test_rrc_views_are_torchvision_random_resized_crops():
    from torchvision.transforms import RandomResizedCrop
    import torchvision.transforms.v2.functional as TF

    img = rand_image(90, 140)
    for seed in range(20):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            want = RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        assert memo.rrc_params(90, 140, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed)) == want
    top, left, h, w = memo.rrc_params(90, 140, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(3))
    crop = TF.resized_crop(img, top, left, h, w, [32, 32], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    v = memo.rrc_views(img, 1, seed=3, size=32)
    torch.testing.assert_close(v[0], (crop.float() / 255 - MEAN) / STD)


def test_augmix_preaugment_is_rrc_then_coin_flip():
    import torchvision.transforms.v2.functional as TF

    img = rand_image(90, 140)
    flips = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        top, left, h, w = memo.rrc_params(90, 140, (0.08, 1.0), (3 / 4, 4 / 3), g)
        flip = torch.empty(1).uniform_(0.0, 1.0, generator=g).item() < 0.5
        crop = TF.resized_crop(img, top, left, h, w, [32, 32], antialias=True)  # bilinear
        got = memo._preaugment(img, torch.Generator().manual_seed(seed), 32)
        assert torch.equal(got, TF.horizontal_flip(crop) if flip else crop)
        flips += flip
    assert 0 < flips < 20


def test_augmix_ops_follow_memo_pil_ops():
    """Each op against MEMO's PIL op with the same random level and sign (drawn in MEMO's order)."""
    from PIL import Image, ImageOps

    x = rand_image(64, 64, seed=4)
    pil = Image.fromarray(x.permute(1, 2, 0).numpy())
    fill = [float(c) for c in memo.MEMO_AUGMIX_FILL]

    def draws(seed, n):
        g = torch.Generator().manual_seed(seed)
        return [torch.empty(1).uniform_(0.1, 1.0, generator=g).item()] + [
            torch.empty(1).uniform_(0.0, 1.0, generator=g).item() for _ in range(n - 1)]

    def arr(img):
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()

    for seed in range(4):
        lvl, *sgn = draws(seed, 2)
        s = -1 if sgn and sgn[0] > 0.5 else 1
        t = int(lvl * (64 / 3) / 10) * s
        got = memo._augmix_op(x, "translate_x", torch.Generator().manual_seed(seed), 1.0, fill).float()
        want = arr(pil.transform((64, 64), Image.AFFINE, (1, 0, t, 0, 1, 0), resample=Image.BILINEAR, fillcolor=128))
        assert torch.equal(got, want)
        sh = lvl * 0.3 / 10 * s
        got = memo._augmix_op(x, "shear_y", torch.Generator().manual_seed(seed), 1.0, fill).float()
        want = arr(pil.transform((64, 64), Image.AFFINE, (1, 0, 0, sh, 1, 0), resample=Image.BILINEAR, fillcolor=128))
        assert (got - want)[:, 4:-4, 4:-4].abs().mean() < 1.0
        deg = int(lvl * 30 / 10) * s
        got = memo._augmix_op(x, "rotate", torch.Generator().manual_seed(seed), 1.0, fill).float()
        want = arr(pil.rotate(deg, resample=Image.BILINEAR, fillcolor=128))
        assert (got - want)[:, 4:-4, 4:-4].abs().mean() < 1.0
        got = memo._augmix_op(x, "solarize", torch.Generator().manual_seed(seed), 1.0, fill).float()
        assert torch.equal(got, arr(ImageOps.solarize(pil, 256 - int(lvl * 256 / 10))))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(memo._augmix_op(x, "posterize", g, 1.0, fill).float(), arr(ImageOps.posterize(pil, 4)))
    assert torch.equal(memo._augmix_op(x, "equalize", g, 1.0, fill).float(), arr(ImageOps.equalize(pil)))
    # MEMO's fillcolor=128 is (128, 0, 0) on RGB in PIL; so is ours
    assert np.asarray(pil.rotate(30, fillcolor=128))[0, 0].tolist() == list(memo.MEMO_AUGMIX_FILL)


# ------------------------------------------------------------------------------------------------
# memo_predict / run_memo
# ------------------------------------------------------------------------------------------------
def test_plain_view_is_resize_then_center_crop():
    img = rand_image(60, 90)
    v = memo.plain_view(img, **SMALL)
    assert v.shape == (1, 3, 32, 32)
    import torchvision.transforms.v2.functional as TF
    r = TF.resize(img, [36], antialias=True)
    assert r.shape[-2:] == (36, 54)  # shorter side -> 36, the other truncated
    torch.testing.assert_close(v[0], (TF.center_crop(r, [32, 32]).float() / 255 - MEAN) / STD)


def test_memo_predict_outputs_and_subset():
    net = tiny_bn_net(num_classes=10)
    img = rand_image()
    out = memo.memo_predict(net, img, memo.MemoConfig(k=4, **SMALL), views="augmix")
    probs = [p for _, p in out["probs_top5"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert out["pred_1k_index"] == out["probs_top5"][0][0] and out["seconds"] > 0
    with torch.no_grad():
        assert out["baseline_pred"] == int(net.eval()(memo.plain_view(img, **SMALL)).argmax())
    sub = memo.memo_predict(net, img, memo.MemoConfig(k=4, **SMALL), views="rrc", class_subset=[7, 2, 5])
    assert sub["pred_1k_index"] in (7, 2, 5) and sub["baseline_pred"] in (7, 2, 5)
    assert len(sub["probs_top5"]) == 3
    assert math.isclose(sum(p for _, p in sub["probs_top5"]), 1.0, rel_tol=1e-5)


def test_vit_without_batchnorm_runs_and_prior_is_moot():
    timm = pytest.importorskip("timm")
    name = "test_vit" if "test_vit" in timm.list_models("test_vit") else "vit_tiny_patch16_224"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = timm.create_model(name, pretrained=False, img_size=32)
    assert memo.count_batchnorm(vit) == 0
    ref = state_copy(vit)
    img = rand_image()
    a = memo.memo_predict(vit, img, memo.MemoConfig(k=4, prior_n=16, lr=0.01, **SMALL), views="rrc")
    b = memo.memo_predict(vit, img, memo.MemoConfig(k=4, prior_n=-1, lr=0.01, **SMALL), views="rrc")
    assert_state_equal(vit, ref)
    assert a["probs_top5"] == b["probs_top5"]  # nothing to mix without BN
    c = memo.memo_predict(vit, img, memo.MemoConfig(k=4, lr=0.01, optimizer="sgd", steps=1, **SMALL), views="rrc",
                          seed=0)
    assert c["probs_top5"] == a["probs_top5"]  # deterministic given the seed


def test_run_memo_rows_match_memo_predict():
    from PIL import Image

    net = tiny_bn_net(num_classes=10)
    ref = state_copy(net)
    imgs = [rand_image(seed=s) for s in range(3)]
    samples = [
        ("a", imgs[0], (3,)),
        ("b", Image.fromarray(imgs[1].permute(1, 2, 0).numpy()), [1, 4]),
        ("c", imgs[2], 9),
        ("broken", None, (0,)),
    ]
    with pytest.warns(UserWarning, match="skipped 1"):
        df = memo.run_memo(net, samples, memo.MemoConfig(k=4, **SMALL), seed=11)
    assert_state_equal(net, ref)
    assert list(df.columns) == [
        "image_id", "method", "seed", "k", "pred", "baseline_pred", "correct", "baseline_correct", "seconds"]
    assert len(df) == 6 and set(df.method) == {"memo_rrc", "memo_augmix"}
    assert (df.seed == 11).all() and (df.k == 4).all() and (df.seconds > 0).all()
    labels = {"a": (3,), "b": (1, 4), "c": (9,)}
    for row in df.itertuples():
        assert row.correct == (row.pred in labels[row.image_id])
        assert row.baseline_correct == (row.baseline_pred in labels[row.image_id])
        one = memo.memo_predict(net, imgs["abc".index(row.image_id)], memo.MemoConfig(k=4, **SMALL),
                                views=row.method.removeprefix("memo_"), seed=memo.image_seed(11, row.image_id))
        assert (row.pred, row.baseline_pred) == (one["pred_1k_index"], one["baseline_pred"])
    assert memo.image_seed(11, "a") != memo.image_seed(11, "b") != memo.image_seed(12, "b")


@pytest.mark.parametrize(
    "kwargs",
    [dict(views="zoom"), dict(k=0), dict(lr=0.0), dict(optimizer="lbfgs"), dict(prior_n=1.5),
     dict(interpolation="lanczos"), dict(steps=0), dict(class_subset=[])],
)
def test_bad_parameters_raise_before_compute(kwargs):
    run = {k: kwargs.pop(k) for k in ("views", "class_subset") if k in kwargs}
    with pytest.raises(ValueError):
        memo.memo_predict(tiny_bn_net(), rand_image(), memo.MemoConfig(**SMALL, **kwargs), **run)


def test_bad_image_raises():
    with pytest.raises(ValueError, match="uint8"):
        memo.memo_predict(tiny_bn_net(), torch.zeros(3, 40, 40), memo.MemoConfig(**SMALL))


# ------------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_realdata_squeezenet_memo_smoke(realdata):
    """Real SqueezeNet 1.0 on 5 real images, both view kinds (K = 8 to keep CPU time down).
    SqueezeNet has no BatchNorm, so the BN prior is a no-op here and MEMO reduces to one entropy
    step on the weights."""
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    labels = pd.read_csv(realdata / "imagenet-sample" / "labels.csv").iloc[:5]
    net = torchvision.models.squeezenet1_0()
    net.load_state_dict(torch.load(realdata / "weights" / "squeezenet1_0_deepcompression.pt", weights_only=True))
    assert memo.count_batchnorm(net) == 0
    ref = state_copy(net)
    images = [Image.open(realdata / "imagenet-sample" / f).convert("RGB") for f in labels.file]
    samples = [(f, im, (int(y),)) for f, im, y in zip(labels.file, images, labels.label)]
    df = memo.run_memo(net, samples, memo.MemoConfig(k=8), seed=0)
    assert_state_equal(net, ref)
    assert len(df) == 10 and set(df.method) == {"memo_rrc", "memo_augmix"}
    assert df.pred.between(0, 999).all() and (df.seconds > 0).all()
    # the baseline is the usual PIL pipeline (MEMO's te_transforms: Resize 256 bilinear, CenterCrop)
    pil_pipe = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    with torch.no_grad():
        want = net.eval()(torch.stack([pil_pipe(im) for im in images])).argmax(1).tolist()
    got = df[df.method == "memo_rrc"].baseline_pred.tolist()
    assert got == want
    assert df[df.method == "memo_rrc"].baseline_correct.sum() >= 2  # a trained model, not noise
