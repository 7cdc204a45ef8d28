"""fit_pl: exact finite-n laws on Pareto samples, invariances, options, bad input (math §2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import jit_with
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import rmtkit
from rmtkit.core.powerlaw import gamma_quantile
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import pareto_draws, pareto_samples


def fit(x, mask=None, **kw):
    """Jitted fit_pl, one compile per (shape, options)."""
    return jit_with(rmtkit.fit_pl, **kw)(x, mask)


# --- exact finite-n laws at a known xmin ---------------------------------------------------------
# With xmin = the sample minimum (fit_pl snaps xmin to an eigenvalue), the tail of n points has
# S = sum ln(x/xmin) ~ Gamma(n-1, rate alpha-1) (Renyi), so alpha_hat - 1 = n / S is n times an
# inverse-gamma variable:  E[alpha_hat] = 1 + (alpha-1) n/(n-2),
#                          Var[alpha_hat] = (alpha-1)^2 n^2 / ((n-2)^2 (n-3)).

REPLICATES = 2000
fit_batch = jax.jit(jax.vmap(functools.partial(rmtkit.fit_pl, xmin=0.0, ci=0.95)))  # xmin: min


@pytest.mark.slow
@settings(max_examples=6)
@given(alpha=st.floats(1.5, 6.0), n=st.sampled_from([16, 64, 256]), seed=st.integers(0, 2**31))
def test_mean_and_spread_match_the_exact_law(alpha, n, seed):
    rng = np.random.default_rng(seed)
    samples = pareto_draws((REPLICATES, n), alpha, rng=rng)
    fits = fit_batch(samples)
    est = np.asarray(fits.alpha)
    assert (np.asarray(fits.num_pl_spikes) == n).all()
    mean = 1 + (alpha - 1) * n / (n - 2)
    sd = (alpha - 1) * n / ((n - 2) * np.sqrt(n - 3))
    assert abs(est.mean() - mean) < 4.5 * sd / np.sqrt(REPLICATES)
    # sample sd of an inverse-gamma is noisy: compare within 12 %
    assert abs(est.std(ddof=1) / sd - 1) < 0.12


@pytest.mark.slow
@settings(max_examples=4)
@given(alpha=st.floats(1.5, 6.0), n=st.sampled_from([16, 64, 256]), seed=st.integers(0, 2**31))
def test_confidence_interval_covers_95_percent(alpha, n, seed):
    samples = pareto_draws((REPLICATES, n), alpha, rng=np.random.default_rng(seed))
    fits = fit_batch(samples)
    lo, hi = np.asarray(fits.alpha_lo), np.asarray(fits.alpha_hi)
    coverage = np.mean((lo <= alpha) & (alpha <= hi))
    assert 0.93 <= coverage <= 0.97, coverage


def test_gamma_quantile_matches_scipy():
    p = np.array([0.025, 0.5, 0.975, 1e-6])
    for k in (1.0, 3.0, 15.0, 200.0, 5000.0):
        np.testing.assert_allclose(gamma_quantile(p, k), stats.gamma.ppf(p, k), rtol=1e-9)


def test_closed_form_example():
    evals = np.exp(np.arange(11.0) / 5)  # sum of logs above xmin = 1 is 11 = n_tail
    f = rmtkit.fit_pl(evals, xmin=1.0)
    assert float(f.alpha) == pytest.approx(2.0, rel=1e-12)
    assert int(f.num_pl_spikes) == 11
    assert float(f.sigma) == pytest.approx(1 / np.sqrt(11), rel=1e-12)
    # D by hand: max_j |1 - (x_j/xmin)^(-1) - j/11|
    j = np.arange(11)
    assert float(f.D) == pytest.approx(np.max(np.abs(1 - np.exp(-j / 5) - j / 11)), rel=1e-12)


def brute_force_search(x):
    """docs/math.md §2 steps 1-5 written as the plain loop (WW's algorithm), for n >= 20."""
    x = np.sort(x[x > 1e-5])
    n = x.size
    best = (np.inf, None)
    for i in range(n - 1):
        tail = x[i:]
        n_i = tail.size
        alpha = 1 + n_i / np.sum(np.log(tail / x[i]))
        d = np.max(np.abs(1 - (tail / x[i]) ** (1 - alpha) - np.arange(n_i) / n_i))
        if d < best[0]:
            best = (d, (alpha, x[i], n_i))
    return best


@settings(max_examples=10)
@given(pareto_samples(sizes=(32, 128)))
def test_search_equals_the_plain_loop(sample):
    d, (alpha, xmin, n_tail) = brute_force_search(sample.x)
    f = fit(sample.x)
    np.testing.assert_allclose(
        [float(f.alpha), float(f.xmin), float(f.D)], [alpha, xmin, d], rtol=1e-10
    )
    assert int(f.num_pl_spikes) == n_tail


# --- invariances ----------------------------------------------------------------------------------


@given(pareto_samples(), st.sampled_from([1e-3, 7.0, 1e4]))
def test_alpha_and_D_are_scale_invariant_and_xmin_scales(sample, c):
    # invariance holds while every value stays above the absolute 1e-5 fitting threshold
    assume(min(sample.x.min(), c * sample.x.min()) > 1e-4)
    a, b = fit(sample.x), fit(sample.x * c)
    np.testing.assert_allclose(float(b.alpha), float(a.alpha), rtol=1e-6)
    np.testing.assert_allclose(float(b.D), float(a.D), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(float(b.xmin), c * float(a.xmin), rtol=1e-9)


@given(pareto_samples(), st.integers(0, 2**31))
def test_permutation_invariant(sample, seed):
    shuffled = np.random.default_rng(seed).permutation(sample.x)
    assert fit(shuffled) == fit(sample.x) or np.allclose(
        np.asarray(fit(shuffled)), np.asarray(fit(sample.x)), equal_nan=True
    )


# jit, vmap, padding and dtypes of fit_pl: tests/core/test_conformance.py


@given(pareto_samples(sizes=(128, 512)))
def test_float32_agrees_with_float64(sample):
    f64, f32 = fit(sample.x), fit(sample.x.astype(np.float32))
    assert f32.alpha.dtype == jnp.float32
    if float(f32.xmin) == pytest.approx(float(f64.xmin), rel=1e-6):
        np.testing.assert_allclose(float(f32.alpha), float(f64.alpha), rtol=1e-4)
        np.testing.assert_allclose(float(f32.D), float(f64.D), atol=1e-5)
    else:  # a near-tie in D may pick a neighbouring xmin in float32: D must still be ~equal
        np.testing.assert_allclose(float(f32.D), float(f64.D), atol=1e-5)


def test_chunked_scan_matches_the_plain_loop_at_large_n():
    x = pareto_draws(3000, 2.5, rng=np.random.default_rng(5))  # > one chunk of candidates
    d, (alpha, xmin, _) = brute_force_search(x)
    f = fit(x)
    np.testing.assert_allclose(
        [float(f.alpha), float(f.xmin), float(f.D)], [alpha, xmin, d], rtol=1e-10
    )


# --- small n, options -------------------------------------------------------------------------


def test_small_n_rule():
    x = np.sort(pareto_draws(15, 2.5, rng=np.random.default_rng(3)))
    f = fit(x)
    # brute force docs/math.md §2.6: tails >= 8, bias-corrected alpha, argmin D - 0.868/sqrt(n_i)
    best = None
    for i in range(15 - 8 + 1):
        tail = x[i:]
        n_i = tail.size
        a = 1 + (n_i - 1) / np.sum(np.log(tail / x[i]))
        d = np.max(np.abs(1 - (tail / x[i]) ** (1 - a) - np.arange(n_i) / n_i))
        if best is None or d - 0.868 / np.sqrt(n_i) < best[0]:
            best = (d - 0.868 / np.sqrt(n_i), a, x[i], d)
    np.testing.assert_allclose([float(f.alpha), float(f.xmin), float(f.D)], best[1:], rtol=1e-10)


def test_too_few_or_bad_values_give_nan():
    assert np.isnan(float(fit(np.array([1e-7, 1e-8, 2e-6])).alpha))  # all below 1e-5
    x = pareto_draws(100, 3.0, rng=np.random.default_rng(1))
    x[5] = np.nan
    f = fit(x)
    assert np.isnan(float(f.alpha)) and np.isnan(float(f.D)) and int(f.num_evals) == 0
    x[5] = np.inf
    assert np.isnan(float(fit(x).alpha))
    assert np.isnan(float(fit(np.full(50, 3.0)).alpha))  # constant spectrum: no power law


def test_median_xmin_is_the_hill_estimator():
    x = np.sort(pareto_draws(101, 3.0, rng=np.random.default_rng(2)))
    f = rmtkit.fit_pl(x, xmin_method="median")
    tail = x[50:]
    assert float(f.xmin) == x[50]
    np.testing.assert_allclose(
        float(f.alpha), 1 + tail.size / np.sum(np.log(tail / x[50])), rtol=1e-12
    )


def test_fixed_xmin_snaps_to_nearest_eigenvalue():
    x = np.sort(pareto_draws(200, 3.0, rng=np.random.default_rng(4)))
    f = rmtkit.fit_pl(x, xmin=x[120] * 1.0000001)
    assert float(f.xmin) == x[120] and int(f.num_pl_spikes) == 80


def test_peak_restricts_xmin_to_the_histogram_peak_range():
    rng = np.random.default_rng(6)
    x = np.exp(rng.normal(size=2000))  # log-normal: peak near 1
    f = rmtkit.fit_pl(x, xmin_method="peak")
    counts, edges = np.histogram(np.log10(x), bins=100)
    p = 10 ** edges[np.argmax(counts)]
    assert 0.95 * p <= float(f.xmin) <= 1.5 * p
    xs = np.sort(x)
    ref = min(
        (i for i in range(xs.size - 1) if 0.95 * p <= xs[i] <= 1.5 * p), key=lambda i: ks_at(xs, i)
    )
    assert float(f.xmin) == xs[ref]


def ks_at(xs, i):
    """KS distance of the plain MLE fit at sorted index i (docs/math.md §2 step 4)."""
    tail = xs[i:]
    alpha = 1 + tail.size / np.sum(np.log(tail / xs[i]))
    return np.max(np.abs(1 - (tail / xs[i]) ** (1 - alpha) - np.arange(tail.size) / tail.size))


def test_xmax_options():
    x = np.sort(pareto_draws(300, 2.5, rng=np.random.default_rng(7)))
    clipped = rmtkit.fit_pl(x, xmax=-3)
    np.testing.assert_allclose(np.asarray(clipped), np.asarray(rmtkit.fit_pl(x[:-3])))
    forced = rmtkit.fit_pl(x, xmax="force")
    xm, a = float(forced.xmin), float(forced.alpha)
    tail = x[x >= xm]
    cdf = (1 - (tail / xm) ** (1 - a)) / (1 - (tail[-1] / xm) ** (1 - a))
    np.testing.assert_allclose(
        float(forced.D), np.max(np.abs(cdf - np.arange(tail.size) / tail.size)), rtol=1e-10
    )
    assert np.isnan(float(rmtkit.fit_pl(x[:10], xmax=-6).alpha))  # more than half dropped


def test_fix_fingers_drops_planted_fingers():
    rng = np.random.default_rng(8)
    x = np.sort(pareto_draws(500, 4.0, rng=rng))
    x[-3:] = x[-1] * np.array([30.0, 40.0, 50.0])  # three outliers flatten the tail fit
    f = rmtkit.fit_pl(x, fix_fingers="clip_xmax")
    raw = rmtkit.fit_pl(x)
    assert float(f.raw_alpha) == float(raw.alpha)
    if int(f.num_fingers):
        assert float(f.alpha) < float(raw.alpha) - 1.0
        refit = rmtkit.fit_pl(x[: -int(f.num_fingers)])
        assert float(f.alpha) == float(refit.alpha)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"xmin_method": "mode"}, "xmin_method"),
        ({"xmax": 3}, "xmax"),
        ({"xmax": "auto"}, "xmax"),
        ({"fix_fingers": "xmin_peak"}, "fix_fingers"),
        ({"ci": 1.5}, "ci"),
        ({"max_fingers": 0}, "max_fingers"),
    ],
)
def test_bad_options_raise(kw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        rmtkit.fit_pl(np.arange(1.0, 60.0), **kw)


@pytest.mark.bad_input
def test_bad_spectrum_shapes_raise():
    with pytest.raises(InvalidWeightsError, match="1-D"):
        rmtkit.fit_pl(np.ones((3, 3)))
    with pytest.raises(InvalidWeightsError, match="shape of the spectrum"):
        rmtkit.fit_pl(np.ones(5), np.ones(4, bool))


def test_candidates_reproduce_the_fit():
    x = pareto_draws(300, 2.5, rng=np.random.default_rng(9))
    c = rmtkit.pl_candidates(x)
    best = int(np.argmin(np.where(np.asarray(c.valid), np.asarray(c.D), np.inf)))
    f = rmtkit.fit_pl(x)
    assert float(c.xmin[best]) == float(f.xmin)
    np.testing.assert_allclose(float(c.alpha[best]), float(f.alpha), rtol=1e-12)


def test_alpha_is_differentiable_in_the_weights():
    w = jnp.asarray(np.random.default_rng(10).standard_t(3, size=(120, 60)))
    g = jax.grad(lambda w: rmtkit.fit_pl(rmtkit.esd(w)).alpha)(w)
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0
