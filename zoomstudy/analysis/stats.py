"""Uncertainty for the study's accuracies (SPEC section 3, "beyond the paper").

The paper reports point estimates only; on ImageNet-A (7,500 images) or a 100-image kit the sampling
error is a percentage point or more, so every accuracy here can carry an interval, and the centre-bias
claim gets a paired test instead of a comparison of two numbers.

Proportions are fractions in [0, 1] at this level; `accuracy_with_ci` converts to percent, the unit of
the paper's tables.
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
from scipy import stats as _st

# scipy >= 1.15 takes `rng`; older releases only `random_state` (pyproject allows scipy >= 1.10).
_BOOT_RNG_ARG = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"

CI_METHODS = ("clopper_pearson", "bootstrap")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (conservative) binomial interval for k successes in n trials, as fractions.

    Chosen as the default because it never undercovers, also at 0% or 100% (ImageNet-A 1-crop of
    ResNet-50 is 0.21%), where the normal approximation collapses to a point.
    """
    _check_alpha(alpha)
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"clopper_pearson needs n >= 1 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n, got k={k}, n={n}")
    lo = 0.0 if k == 0 else float(_st.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(_st.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def bootstrap_ci(
    data: np.ndarray | tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray] = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float]:
    """Seeded bootstrap interval of a scalar statistic, images being the resampling unit.

    data: one [N] vector, or a tuple of [N] vectors resampled with the same indices (paired, e.g. the
    centre and an anchor outcome of the same images). `statistic(*samples, axis=-1)` must be vectorised
    like np.mean. 'percentile' is the default because BCa is undefined when every image agrees.
    """
    _check_alpha(alpha)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if method not in ("percentile", "basic", "BCa"):
        raise ValueError(f"method must be 'percentile', 'basic' or 'BCa', got {method!r}")
    samples = tuple(np.asarray(d) for d in (data if isinstance(data, tuple) else (data,)))
    n = samples[0].shape[0] if samples[0].ndim == 1 else -1
    if n < 1 or any(s.ndim != 1 or s.shape[0] != n for s in samples):
        raise ValueError("bootstrap_ci needs one or more non-empty [N] vectors of equal length")
    samples = tuple(s.astype(np.float64) if s.dtype == bool else s for s in samples)
    # scipy materialises batch x N resamples at a time: cap that at ~4M elements to bound memory.
    batch = max(1, (1 << 22) // (n * len(samples)))
    res = _st.bootstrap(
        samples,
        statistic,
        n_resamples=n_boot,
        confidence_level=1 - alpha,
        method=method,
        vectorized=True,
        paired=len(samples) > 1,
        batch=batch,
        **{_BOOT_RNG_ARG: np.random.default_rng(seed)},
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def accuracy_with_ci(
    correct: np.ndarray,
    alpha: float = 0.05,
    method: str = "clopper_pearson",
    seed: int = 0,
    n_boot: int = 2000,
) -> tuple[float, float, float]:
    """(accuracy %, lower %, upper %) of a bool [N] correctness vector."""
    correct = np.asarray(correct)
    if correct.dtype != bool or correct.ndim != 1:
        raise ValueError(f"accuracy_with_ci expects a bool [N] vector, got {correct.dtype} {correct.shape}")
    n = correct.size
    if n == 0:
        raise ValueError("accuracy_with_ci needs at least one image")
    k = int(np.count_nonzero(correct))
    if method == "clopper_pearson":
        lo, hi = clopper_pearson(k, n, alpha)
    elif method == "bootstrap":
        lo, hi = bootstrap_ci(correct, np.mean, n_boot=n_boot, alpha=alpha, seed=seed)
    else:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    return 100.0 * k / n, 100.0 * lo, 100.0 * hi


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired bool [N] outcomes (e.g. centre vs one anchor).

    Only discordant images carry information: under H0 each one favours a or b with probability 1/2,
    so the p-value is the binomial test of (a only) among (a only + b only). No discordant pair -> 1.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != bool or b.dtype != bool or a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"mcnemar_exact expects two bool [N] vectors of equal length, got {a.shape}, {b.shape}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    return float(_st.binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
