"""Truncated power law (docs/math.md §3) and the negative-order incomplete gamma."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from rmtkit.core.tpl import fit_tpl, log_upper_gamma, upper_gamma
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import tpl_draws

N_FIXED = 2000  # fixed-xmin fits: one shape
N_SEARCH = 400  # xmin searches: one shape

# fit_tpl is jitted inside: eager calls with the same shapes and options reuse one compile
fit_fixed = jax.jit(jax.vmap(lambda x: fit_tpl(x, xmin=1.0)))  # batches of 4


def fit_search(x, mask):
    return fit_tpl(x, mask)


def fit_peak(x, mask):
    return fit_tpl(x, mask, xmin_method="peak")


# ------------------------------------------------------------------------- incomplete gamma


def test_upper_gamma_matches_mpmath():
    # mpmath.gammainc(s, x) is the upper incomplete gamma Γ(s, x) for any real s
    mpmath.mp.dps = 30
    s = np.array(
        [
            -30.0,
            -20.3,
            -5.0,
            -3.7,
            -2.0,
            -1.0 - 1e-10,
            -1.0,
            -0.5,
            -1e-9,
            0.0,
            1e-6,
            0.3,
            1.0,
            2.5,
            4.9,
        ]
    )
    x = np.array([1e-8, 1e-4, 0.01, 0.3, 1.0, 1.99, 2.0, 2.01, 3.0, 10.0, 50.0, 200.0, 1000.0])
    ss, xx = (a.ravel() for a in np.meshgrid(s, x))
    got = np.asarray(jax.jit(log_upper_gamma)(ss, xx))
    ref = np.array(
        [
            float(mpmath.log(mpmath.gammainc(mpmath.mpf(a), mpmath.mpf(b))))
            for a, b in zip(ss, xx, strict=True)
        ]
    )
    rel = np.abs(np.expm1(got - ref))  # relative error of Γ itself
    assert rel.max() < 1e-10, (ss[rel.argmax()], xx[rel.argmax()], rel.max())
    np.testing.assert_allclose(upper_gamma(1.0, 2.0), np.exp(-2.0), rtol=1e-13)
    # E1(x) = Γ(0, x)
    np.testing.assert_allclose(upper_gamma(0.0, 0.5), float(mpmath.e1(0.5)), rtol=1e-12)
    assert np.isnan(log_upper_gamma(1.0, -1.0)) and np.isnan(log_upper_gamma(-40.0, 1.0))


def test_upper_gamma_gradients():
    grad = jax.grad(log_upper_gamma, argnums=(0, 1))
    for s, x in [(-1.5, 1.0), (-1.5, 3.0), (0.4, 0.2)]:
        gs, gx = grad(s, x)
        ref_s = float(mpmath.diff(lambda t: mpmath.log(mpmath.gammainc(t, x)), s))
        ref_x = float(-mpmath.power(x, s - 1) * mpmath.exp(-x) / mpmath.gammainc(s, x))
        np.testing.assert_allclose(gs, ref_s, rtol=1e-8)
        np.testing.assert_allclose(gx, ref_x, rtol=1e-8)


# ------------------------------------------------------------------------------- fit


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_alpha_lambda_within_standard_errors(seed):
    rng = np.random.default_rng(seed)
    params = [(2.5, 0.1), (1.5, 0.5), (3.0, 0.05), (0.5, 1.0)]  # alpha < 1 allowed (Lambda > 0)
    data = []
    for alpha, lam in params:
        if alpha > 1:
            data.append(tpl_draws(N_FIXED, alpha, lam, 1.0, rng=rng))
        else:  # alpha = 0.5 < 1: Gamma(0.5, 1/lam) restricted to x >= 1, by rejection
            x = rng.gamma(1.0 - alpha, 1.0 / lam, 20 * N_FIXED)
            data.append(x[x >= 1.0][:N_FIXED])
    fits = fit_fixed(jnp.asarray(np.stack(data)))
    assert np.all(np.asarray(fits.ok))
    for i, (alpha, lam) in enumerate(params):
        z_alpha = (float(fits.alpha[i]) - alpha) / float(fits.sigma[i])
        z_lam = (float(fits.Lambda[i]) - lam) / float(fits.sigma_Lambda[i])
        assert abs(z_alpha) < 3 and abs(z_lam) < 3, (alpha, lam, z_alpha, z_lam)
        assert float(fits.xmin[i]) == pytest.approx(1.0, rel=1e-3)
        assert int(fits.n_tail[i]) >= N_FIXED - 1


def test_mle_is_stationary_and_beats_neighbours():
    # jit, vmap, padding and dtypes of fit_tpl: tests/core/test_conformance.py
    rng = np.random.default_rng(5)
    xs = jnp.asarray(np.stack([tpl_draws(N_FIXED, 2.2, 0.2, 1.0, rng=rng) for _ in range(4)]))
    fit = fit_tpl(xs[0], xmin=1.0)  # eager (one spectrum)
    a, lam = float(fit.alpha), float(fit.Lambda)
    y = np.asarray(xs[0])
    y = y[y >= float(fit.xmin)]

    def loglik(a, lam):  # mpmath reference log-likelihood
        xm = float(fit.xmin)
        norm = mpmath.power(lam, 1 - a) / mpmath.gammainc(1 - a, lam * xm)
        return float(len(y) * mpmath.log(norm) - a * np.sum(np.log(y)) - lam * np.sum(y))

    np.testing.assert_allclose(fit.loglik, loglik(a, lam), rtol=1e-10)
    best = loglik(a, lam)
    for da, dl in [(1e-3, 0), (-1e-3, 0), (0, 1e-4), (0, -1e-4)]:
        assert loglik(a + da, lam + dl) < best


@pytest.mark.slow
def test_xmin_search_and_lr_test():
    rng = np.random.default_rng(7)
    tail = tpl_draws(300, 2.0, 0.3, 1.0, rng=rng)
    body = rng.uniform(0.05, 0.9, N_SEARCH - 300)
    x = jnp.asarray(np.concatenate([body, tail]))
    mask = jnp.ones(N_SEARCH, bool)
    fit = fit_search(x, mask)
    assert 0.9 < float(fit.xmin) < 1.5
    assert abs(float(fit.alpha) - 2.0) < 3 * float(fit.sigma)
    assert float(fit.R) > 0 and float(fit.p_value) < 0.05  # the cut-off is real
    # a pure power law: the TPL does not win significantly
    pl = jnp.asarray(1.0 + rng.pareto(1.5, N_SEARCH))
    fit_pl = fit_search(pl, mask)
    assert float(fit_pl.p_value) > 0.05
    assert abs(float(fit_pl.alpha) - 2.5) < 3 * float(fit_pl.sigma)
    # E_TPL: xmin inside [0.95 p, 1.5 p], p = left edge of the modal bin of 100 log10 bins
    peak = fit_peak(x, mask)
    counts, edges = np.histogram(np.log10(np.asarray(x)), bins=100)
    p = 10 ** edges[np.argmax(counts)]
    assert bool(peak.ok) and 0.95 * p <= float(peak.xmin) <= 1.5 * p


@pytest.mark.slow
def test_scale_invariance():
    rng = np.random.default_rng(8)
    x = np.sort(tpl_draws(N_SEARCH - 56, 2.5, 0.2, 1.0, rng=rng))
    padded = jnp.asarray(np.concatenate([x, np.zeros(56)]))
    mask = jnp.arange(N_SEARCH) < N_SEARCH - 56
    base = fit_search(padded, mask)
    scaled = fit_search(5.0 * padded, mask)
    np.testing.assert_allclose(scaled.alpha, base.alpha, rtol=1e-6)
    np.testing.assert_allclose(scaled.Lambda, base.Lambda / 5.0, rtol=1e-6)
    np.testing.assert_allclose(scaled.xmin, 5.0 * base.xmin, rtol=1e-12)


def test_too_short_tail_is_nan():
    x = jnp.zeros(N_SEARCH).at[:3].set(jnp.array([1.0, 2.0, 3.0]))  # 3 values above 1e-5
    fit = fit_search(x, jnp.ones(N_SEARCH, bool))
    assert not bool(fit.ok) and np.isnan(fit.alpha) and int(fit.n_tail) == 0


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidArgumentError, match="`xmin_method` must be one of"):
        fit_tpl(jnp.ones(20), xmin_method="median")
    with pytest.raises(InvalidArgumentError, match="`min_tail` must be"):
        fit_tpl(jnp.ones(20), min_tail=1)
    with pytest.raises(InvalidWeightsError, match="1-D spectrum"):
        fit_tpl(jnp.ones((4, 5)))
    with pytest.raises(InvalidWeightsError, match="`mask` must be boolean"):
        fit_tpl(jnp.ones(5), jnp.ones(5))
