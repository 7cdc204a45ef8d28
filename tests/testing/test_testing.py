"""rmtkit.testing: every strategy delivers the truth its docstring promises (checked with
rmtkit's own estimators where they apply), and the closed-form laws behind them."""

import inspect

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import rmtkit
import rmtkit.testing as rt
from rmtkit.testing import matrices, theory

esd = jax.jit(rmtkit.esd, static_argnames=("method", "normalize"))
esd_batch = jax.jit(jax.vmap(rmtkit.esd))
fit_pl = jax.jit(rmtkit.fit_pl)
fit_pl_batch = jax.jit(jax.vmap(rmtkit.fit_pl))
mp_fit = jax.jit(lambda evals, q: rmtkit.mp_fit(evals, Q=q))
traps = jax.jit(rmtkit.correlation_traps)

#: hypothesis examples for the tests that draw several matrices or randomize (seconds each)
FEW = settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("q", [1.0, 2.5, 8.0])
def test_mp_edges_agree_with_rmtkit_mp_quantile(q):
    lo, hi = theory.mp_edges(q, 1.7)
    np.testing.assert_allclose(
        rmtkit.mp_quantile(np.array([0.0, 1.0]), Q=q, sigma=1.7), [lo, hi], rtol=1e-12, atol=1e-15
    )
    lo_raw, hi_raw = theory.mp_edges(q, 1.7, n_rows=300)
    np.testing.assert_allclose([lo_raw, hi_raw], [300 * lo, 300 * hi], rtol=1e-15)


@pytest.mark.parametrize("q", [1.0, 4.0])
def test_bbp_outlier_is_continuous_and_increasing(q):
    tc = theory.bbp_threshold(q)
    _, hi = theory.mp_edges(q)
    np.testing.assert_allclose(
        theory.bbp_outlier([0.0, 0.5 * tc, tc, tc * (1 + 1e-9)], q), hi, rtol=1e-8
    )
    above = theory.bbp_outlier(tc * np.linspace(1.01, 5.0, 50), q)
    assert np.all(np.diff(above) > 0) and above[0] > hi
    # strong spikes: lambda ~ theta^2 (the signal alone)
    np.testing.assert_allclose(theory.bbp_outlier(1e4, q) / 1e8, 1.0, rtol=1e-6)


def test_tracy_widom_edge_matches_rmtkit_tw95_margin():
    # rmtkit.mp_fit's "tw95" spike edge is sigma^2 (mu + 0.9793 s) / N in rescaled units
    n, m = 400, 200
    center, scale = theory.tracy_widom_edge(n, m)
    evals = rmtkit.esd(np.random.default_rng(0).normal(size=(n, m)))
    fit = rmtkit.mp_fit(evals, Q=2.0, margin="tw95")
    sigma2 = float(fit.sigma) ** 2 / (float(fit.W_scale) ** 2 * n)  # entry variance
    np.testing.assert_allclose(
        float(fit.spike_edge), sigma2 * (center + 0.9793 * scale), rtol=1e-10
    )
    assert abs(center / theory.mp_edges(2.0, n_rows=n)[1] - 1) < 0.01


@given(rt.seeds(), st.sampled_from([(5, 5), (50, 3), (200, 20)]))
def test_haar_orthonormal_columns(rng, shape):
    u = matrices.haar_orthonormal(*shape, rng=rng)
    np.testing.assert_allclose(u.T @ u, np.eye(shape[1]), atol=1e-13)


def test_haar_sign_fix_makes_the_law_invariant():
    # LAPACK's Householder QR alone gives R[0, 0] = -sign(a00) |a0|, so Q[0, 0] <= 0 always;
    # after the sign fix Q[0, 0] = a00 / |a0| is symmetric about 0, as Haar requires
    rng = np.random.default_rng(1)
    first = np.array([matrices.haar_orthonormal(3, 3, rng=rng)[0, 0] for _ in range(4000)])
    assert abs(np.mean(first > 0) - 0.5) < 4 * 0.5 / np.sqrt(first.size)


def test_builders_reject_impossible_requests():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k <= n"):
        matrices.haar_orthonormal(3, 4, rng=rng)
    with pytest.raises(ValueError, match="non-negative"):
        matrices.with_spectrum([1.0, -1.0], 4, rng=rng)
    with pytest.raises(ValueError, match="`n_rows` must be"):
        matrices.with_spectrum([1.0, 2.0, 3.0], 2, rng=rng)


# ---------------------------------------------------------------------------- strategies


@given(rt.pareto_samples())
def test_pareto_samples_follow_the_gamma_law(sample):
    assert sample.x.min() >= sample.xmin
    z = (sample.alpha - 1.0) * np.sum(np.log(sample.x / sample.xmin))
    p = stats.gamma.cdf(z, sample.x.size)  # exact: Gamma(n, 1)
    assert 1e-6 < p < 1 - 1e-6, p


# ---------------------------------------------------------------------------- samplers


def test_pareto_draws_follow_the_gamma_law():
    # (alpha - 1) sum ln(x / xmin) ~ Gamma(n, 1) for each of 400 samples of 64: uniform p-values
    alpha, xmin, n = 2.7, 0.3, 64
    x = rt.pareto_draws((400, n), alpha, xmin, rng=np.random.default_rng(0))
    assert x.min() >= xmin
    z = (alpha - 1.0) * np.sum(np.log(x / xmin), axis=1)
    assert stats.kstest(stats.gamma.cdf(z, n), "uniform").pvalue > 1e-3


def test_tpl_draws_follow_the_truncated_power_law():
    # the CDF 1 - Γ(1-α, Λx) / Γ(1-α, Λ xmin) (docs/math.md §3), incomplete gamma of rmtkit
    # (checked against mpmath in tests/core/test_tpl.py)
    from rmtkit.core.tpl import upper_gamma

    alpha, lam, xmin = 2.2, 0.3, 1.5
    x = rt.tpl_draws(3000, alpha, lam, xmin, rng=np.random.default_rng(1))
    assert x.shape == (3000,) and x.min() >= xmin

    def cdf(v):
        s = 1.0 - alpha
        return 1.0 - np.asarray(upper_gamma(s, lam * v)) / float(upper_gamma(s, lam * xmin))

    assert stats.kstest(x, cdf).pvalue > 1e-3


def test_wishart_eigenvalues_have_the_chi_square_trace_and_the_law_of_gaussian_matrices():
    n, m, reps = 30, 12, 400
    evals = rt.wishart_eigenvalues(n, m, reps, rng=np.random.default_rng(2))
    assert evals.shape == (reps, m) and np.all(np.diff(evals, axis=1) >= 0)
    # exact: the trace of W^T W is a sum of n m squared standard normals
    assert stats.kstest(evals.sum(axis=1), stats.chi2(n * m).cdf).pvalue > 1e-3
    # the same law as the spectra of drawn matrices: compare the largest eigenvalues
    rng = np.random.default_rng(3)
    drawn = np.array([np.linalg.eigvalsh(g.T @ g)[-1] for g in rng.normal(size=(reps, n, m))])
    assert stats.ks_2samp(evals[:, -1], drawn).pvalue > 1e-3


def assert_extra_spikes_are_noise(evals, counted, planted, truth):
    """``counted`` spikes = the ``planted`` ones, plus at most one top noise eigenvalue, and
    then only one above the 95th percentile of TW1 (0.98) of the noise's largest."""
    assert planted <= counted <= planted + 1, (counted, planted)
    if counted > planted:
        z = (float(evals[-counted]) - truth.tw_center) / truth.tw_scale
        assert z > 1.0, z


@pytest.mark.slow
@given(rt.gaussian_matrices())
def test_gaussian_matrices_have_the_mp_edges(g):
    n, m = g.w.shape
    assert n >= m and g.q == n / m
    evals = esd(g.w)
    fit = mp_fit(evals, g.q)
    # measured: bulk_max within 0.8 % sd, worst of 4000 draws 3.1 % (q = 1)
    assert abs(float(fit.bulk_max) / g.bulk_max - 1) < 0.05
    assert abs(float(fit.bulk_min) - g.bulk_min) < 0.05 * g.bulk_max
    # mp_fit calls no eigenvalue of pure noise a spike, unless it is in the TW1 upper tail
    # (about 1 draw in 2000 at q = 1)
    assert_extra_spikes_are_noise(evals, int(fit.num_spikes), 0, g)
    # docs/math.md §5: the entry sd is recovered within 2 % for M >= 200
    entry_sigma = float(fit.sigma) / (float(fit.W_scale) * np.sqrt(n))
    assert abs(entry_sigma / g.sigma - 1) < 0.02
    # the largest eigenvalue is TW1-distributed about tw_center: P(TW1 outside (-8, 6)) < 1e-6
    z = (float(evals[-1]) - g.tw_center) / g.tw_scale
    assert -8 < z < 6, z
    # normalized units divide by N
    np.testing.assert_allclose(esd(g.w, normalize=True), evals / n, rtol=1e-12)


@given(rt.gaussian_matrices(n_cols=(20,), qs=st.floats(1.0, 3.0), dtype=np.float32))
def test_gaussian_matrices_knobs(g):
    assert g.w.dtype == np.float32 and g.w.shape[1] == 20
    assert g.q == g.w.shape[0] / 20 and 1.0 <= g.q <= 3.05


@pytest.mark.slow
@given(rt.spiked_matrices())
def test_spiked_matrices_separate_exactly_the_supercritical_spikes(s):
    evals = np.asarray(esd(s.w))
    fit = mp_fit(evals, s.q)
    k = s.num_outliers
    assert k == int(np.sum(s.thetas > s.threshold))
    assert_extra_spikes_are_noise(evals, int(fit.num_spikes), k, s)  # 599 of 600 draws: == k
    if k:
        # outliers: sd 3-4.5 % about the BBP limit at M = 200, worst of 1120 draws 12 %
        want = np.sort(s.outliers[s.thetas > s.threshold])
        np.testing.assert_allclose(evals[-k:], want, rtol=0.25)
        assert evals[-k] > s.bulk_max
    np.testing.assert_array_equal(s.outliers[s.thetas <= s.threshold], s.bulk_max)


@pytest.mark.slow
@FEW
@given(st.data())
def test_heavy_tailed_matrices_give_alpha_one_plus_mu_over_two_on_average(data):
    mu = data.draw(st.floats(0.5, 1.5), label="mu")
    q = data.draw(st.sampled_from([1.0, 2.0]), label="q")
    draws = [data.draw(rt.heavy_tailed_matrices(qs=(q,), mus=(mu,))) for _ in range(8)]
    assert all(h.alpha == 1 + mu / 2 for h in draws)
    alphas = np.asarray(fit_pl_batch(esd_batch(np.stack([h.w for h in draws]))).alpha)
    # measured at M = 200: bias -0.03 ... +0.15 over mu in [0.5, 1.5], per-draw sd <= 0.16,
    # so the mean of 8 is within 0.15 + 4 * 0.16 / sqrt(8) = 0.38 of the asymptotic value
    assert -0.2 < alphas.mean() - (1 + mu / 2) < 0.4, (mu, alphas)


def test_heavy_tailed_matrices_refuse_mu_without_a_truth():
    @given(rt.heavy_tailed_matrices(mus=(2.5,)))
    def draw(_):
        pass

    with pytest.raises(ValueError, match=r"mu in \(0, 2\)"):
        draw()


@pytest.mark.slow
@settings(max_examples=10)
@given(rt.matrices_with_spectrum())
def test_prescribed_spectrum_is_exact(p):
    assert np.all(np.diff(p.evals) >= 0) and p.evals.size == p.w.shape[1]
    np.testing.assert_allclose(esd(p.w, method="svd"), p.evals, rtol=1e-10)
    np.testing.assert_allclose(esd(p.w), p.evals, rtol=1e-10)


def pareto_spectrum(m, *, rng):
    """Eigenvalues with a Pareto(alpha = 2.5) law: a prescribed power-law tail."""
    return (1.0 - rng.random(m)) ** (-1.0 / 1.5)


@pytest.mark.slow
@settings(max_examples=10)
@given(rt.matrices_with_spectrum(n_cols=(100,), qs=(1.0, 2.0), spectrum=pareto_spectrum))
def test_fit_pl_of_a_prescribed_spectrum_is_the_fit_of_the_truth(p):
    got, want = fit_pl(esd(p.w, method="svd")), fit_pl(p.evals)
    assert int(got.num_pl_spikes) == int(want.num_pl_spikes)
    np.testing.assert_allclose(
        [float(got.alpha), float(got.D)], [float(want.alpha), float(want.D)], rtol=1e-8
    )


@pytest.mark.slow
@FEW
@given(rt.trapped_matrices(qs=(1.0, 4.0)), st.integers(0, 2**31 - 1))  # 2 shapes: 2 compiles
def test_trapped_matrices_traps_are_counted_and_located(t, seed):
    key = jax.random.key(seed)
    # correlation_traps randomizes with split(key, replicas)[0] (1 replica at M >= 100): find
    # where the planted entries land, and require distinct rows and columns (the documented
    # condition, probability >= 97 % here)
    randomized = np.asarray(rmtkit.randomize(t.w, jax.random.split(key, 1)[0]))
    planted = t.w[t.trap_index[:, 0], t.trap_index[:, 1]]
    landed = np.array([np.argwhere(randomized == v)[0] for v in planted])
    assume(len(set(landed[:, 0])) == t.num_traps == len(set(landed[:, 1])))

    found = traps(t.w, key)
    rand_evals = np.asarray(esd(randomized))
    assert_extra_spikes_are_noise(rand_evals, int(found.num_traps), t.num_traps, t)
    located = {tuple(i) for i in np.asarray(found.trap_index)[: t.num_traps]}
    assert located == {tuple(i) for i in t.trap_index}
    # strong traps (3-6 x threshold): the outlier is within ~1 % (sd 0.6 %, worst 1.6 %)
    np.testing.assert_allclose(float(found.max_rand_eval), t.outliers.max(), rtol=0.05)
    # the same spikes in the original spectrum
    evals = np.asarray(esd(t.w))
    np.testing.assert_allclose(evals[-t.num_traps :], np.sort(t.outliers), rtol=0.05)
    assert evals[-t.num_traps] > t.bulk_max


# ---------------------------------------------------------------------------- the module


def test_public_names_and_lazy_import():
    assert rmtkit.testing is rt
    for name in rt.__all__:
        assert getattr(rt, name).__doc__, name
    strategies = [
        getattr(rt, n)
        for n in rt.__all__
        if n.endswith(("_samples", "_matrices")) or n == "matrices_with_spectrum"
    ]
    assert len(strategies) == 6
    for strategy in strategies:
        doc = inspect.getdoc(strategy)
        assert "Truth" in doc or "truth" in doc, strategy.__name__
        assert isinstance(strategy(), st.SearchStrategy)
