"""Marchenko–Pastur law and fit (docs/math.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from rmtkit.core.esd import esd
from rmtkit.core.mp import mp_cdf, mp_fit, mp_pdf, mp_quantile
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import spiked_matrices, wishart_eigenvalues

M = 200  # every spectrum in this file has M = 200 values: one compile per function
DRAWS = 600  # Monte Carlo batch: one size, one compile

pdf_jit = jax.jit(lambda x, q, s: mp_pdf(x, Q=q, sigma=s))
cdf_jit = jax.jit(lambda x, q, s: mp_cdf(x, Q=q, sigma=s))
fit_tw = jax.jit(jax.vmap(lambda e, q: mp_fit(e, Q=q, margin="tw95"), in_axes=(0, None)))
fit_ww = jax.jit(jax.vmap(lambda e, q: mp_fit(e, Q=q, margin="ww"), in_axes=(0, None)))
fit1_tw = jax.jit(lambda e, q: mp_fit(e, Q=q, margin="tw95"))
fit1_ww = jax.jit(lambda e, q: mp_fit(e, Q=q, margin="ww"))


def entry_sigma(fit, n_rows):
    """Entry standard deviation implied by a fit of a raw spectrum (sigma is at mean 1)."""
    return np.asarray(fit.sigma / (fit.W_scale * np.sqrt(n_rows)))


# ---------------------------------------------------------------------------------- law


def test_pdf_closed_form_values():
    # Q = 1, sigma = 1: rho(1) = sqrt(3 * 1) / (2 pi * 1)
    np.testing.assert_allclose(pdf_jit(1.0, 1.0, 1.0), np.sqrt(3.0) / (2 * np.pi), rtol=1e-12)
    # outside the bulk: 0; edges of Q = 4: 0.25, 2.25
    np.testing.assert_array_equal(pdf_jit(jnp.array([0.2, 2.3, -1.0]), 4.0, 1.0), 0.0)
    np.testing.assert_allclose(mp_quantile(jnp.array([0.0, 1.0]), Q=4.0), [0.25, 2.25])


@pytest.mark.parametrize("q", [1.0, 2.5, 8.0])
def test_cdf_is_integral_of_pdf_and_mean_is_sigma2(q):
    sigma = 1.3
    lo, hi = sigma**2 * (1 - q**-0.5) ** 2, sigma**2 * (1 + q**-0.5) ** 2

    def pdf(x):
        return float(pdf_jit(x, q, sigma))

    for x in np.linspace(lo, hi, 6)[1:-1]:
        ref, _ = scipy.integrate.quad(pdf, lo, x, limit=200)
        np.testing.assert_allclose(cdf_jit(x, q, sigma), ref, rtol=1e-7, atol=1e-9)
    mean, _ = scipy.integrate.quad(lambda x: x * pdf(x), lo, hi, limit=200)
    np.testing.assert_allclose(mean, sigma**2, rtol=1e-7)
    np.testing.assert_allclose(cdf_jit(jnp.array([lo - 1e-3, hi]), q, sigma), [0.0, 1.0])


def test_quantile_inverts_cdf():
    p = jnp.linspace(0.01, 0.99, 33)
    for q in (1.0, 3.0):
        np.testing.assert_allclose(
            mp_cdf(mp_quantile(p, Q=q, sigma=0.7), Q=q, sigma=0.7), p, atol=1e-12
        )
    assert np.isnan(mp_quantile(1.5, Q=2.0))
    # eager == jit, vmap and dtypes of the law: tests/core/test_conformance.py


# ---------------------------------------------------------------------------------- fit


@pytest.mark.slow
@pytest.mark.parametrize("q", [1, 2, 4, 8])
def test_pure_noise_sigma_within_2_percent_and_no_spikes(q):
    rng = np.random.default_rng(100 + q)
    evals = jnp.asarray(wishart_eigenvalues(q * M, M, DRAWS, rng=rng) * 0.3**2)  # entry sd 0.3
    fits = fit_tw(evals, float(q))
    assert np.all(np.asarray(fits.ok))
    err = np.abs(entry_sigma(fits, q * M) / 0.3 - 1.0)
    assert err.max() < 0.02, err.max()
    # The TW1 95 % edge gives 0 spikes with probability ~95 % by construction; with 600 draws
    # the share's binomial sd is 0.9 %, so 95 % - 2 sd is the one-sided bound tested.
    share = float(np.mean(np.asarray(fits.num_spikes) == 0))
    assert share >= 0.95 - 2 * np.sqrt(0.95 * 0.05 / DRAWS), share
    # the looser WeightWatcher margin essentially never fires on noise
    assert np.mean(np.asarray(fit_ww(evals, float(q)).num_spikes) == 0) >= 0.99


def planted(key, q, thetas):
    """W = Z / sqrt(N) + sum_k theta_k u_k v_k^T (orthonormal u, v): BBP threshold Q^(-1/4)."""
    n = q * M
    kz, ku, kv = jax.random.split(key, 3)
    z = jax.random.normal(kz, (n, M)) / np.sqrt(n)
    u, _ = jnp.linalg.qr(jax.random.normal(ku, (n, len(thetas))))
    v, _ = jnp.linalg.qr(jax.random.normal(kv, (M, len(thetas))))
    return z + (u * jnp.asarray(thetas)[None, :]) @ v.T


@pytest.mark.slow
@pytest.mark.parametrize("q", [1, 2, 4, 8])
def test_planted_rank1_above_bbp_is_one_spike(q):
    theta = 1.5 * q**-0.25
    keys = jax.random.split(jax.random.key(q), 4)
    evals = [esd(planted(k, q, [theta])) for k in keys]
    # the spike is always counted; the TW1 95 % edge adds a noise eigenvalue in ~5 % of draws
    tw = np.array([int(fit1_tw(e, float(q)).num_spikes) for e in evals])
    assert np.all(tw >= 1) and np.mean(tw == 1) >= 0.75, tw
    assert [int(fit1_ww(e, float(q)).num_spikes) for e in evals] == [1] * 4


@pytest.mark.slow
@settings(max_examples=12)
@given(spiked_matrices(qs=(1.0, 8.0), ranks=(3,), ratios=st.floats(2.0, 4.0)))
def test_sigma_robust_to_planted_spikes(s):
    n_rows = s.w.shape[0]
    evals = esd(s.w)
    fit = fit1_tw(evals, s.q)
    # docs/math.md §5: the entry sd within 2 % with a few planted spikes (3 of 2-4 x threshold)
    err = abs(float(entry_sigma(fit, n_rows)) / s.sigma - 1.0)
    assert err < 0.02, err
    assert int(fit.num_spikes) >= 3
    assert s.num_outliers == 3
    # WW margin: exactly the 3 spikes, but for a noise eigenvalue in the TW1 upper tail (about 1
    # draw in 2000 at q = 1; rmtkit.testing.spiked_matrices)
    ww = int(fit1_ww(evals, s.q).num_spikes)
    assert ww == 3 or (ww == 4 and (float(evals[-4]) - s.tw_center) / s.tw_scale > 1.0), ww


def test_fields_and_units():
    evals = jnp.asarray(wishart_eigenvalues(2 * M, M, 1, rng=np.random.default_rng(5))[0])
    fit = mp_fit(evals, Q=2.0)
    s2 = float(fit.sigma) ** 2
    scale2 = float(fit.W_scale) ** 2
    np.testing.assert_allclose(scale2, M / float(evals.sum()))
    np.testing.assert_allclose(fit.bulk_max, s2 * (1 + 0.5**0.5) ** 2 / scale2)
    np.testing.assert_allclose(fit.bulk_min, s2 * (1 - 0.5**0.5) ** 2 / scale2)
    np.testing.assert_allclose(fit.mp_softrank, fit.bulk_max / evals.max())
    # WW margin in rescaled units: sqrt(Q^-1/2 bulk_max^2/3 M^-2/3)
    bm = s2 * (1 + 0.5**0.5) ** 2
    edge = bm + np.sqrt(2.0**-0.5 * bm ** (2 / 3) * M ** (-2 / 3))
    np.testing.assert_allclose(fit.spike_edge, edge / scale2)
    # TW edge with an explicit M (here the same)
    fit_m = mp_fit(evals, Q=2.0, M=M, margin="tw95")
    n = 2 * M
    root = np.sqrt(n - 1) + np.sqrt(M)
    tw = s2 * (root**2 + 0.9793 * root * (1 / np.sqrt(n - 1) + 1 / np.sqrt(M)) ** (1 / 3)) / n
    np.testing.assert_allclose(fit_m.spike_edge, tw / scale2, rtol=1e-12)


def test_scale_invariance():
    # eager == jit, vmap == loop, padding and dtypes of mp_fit: tests/core/test_conformance.py
    evals = jnp.asarray(wishart_eigenvalues(3 * M, M, 3, rng=np.random.default_rng(6)))

    def fit(e):
        return fit1_ww(e, 3.0)

    one = fit(evals[0])
    scaled = fit(7.0 * evals[0])
    np.testing.assert_allclose(scaled.sigma, one.sigma, rtol=1e-10)
    np.testing.assert_allclose(scaled.bulk_max, 7.0 * one.bulk_max, rtol=1e-10)


def test_bad_values_give_nan_and_flag():
    fit = fit1_ww(jnp.zeros(M), 2.0)
    assert not bool(fit.ok) and np.isnan(fit.sigma) and int(fit.num_spikes) == 0
    fit = fit1_ww(jnp.ones(M).at[3].set(jnp.nan), 2.0)
    assert not bool(fit.ok) and np.isnan(fit.bulk_max)
    fit = fit1_ww(jnp.ones(M), 0.5)  # traced Q < 1
    assert not bool(fit.ok)


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidArgumentError, match="`Q` must be >= 1"):
        mp_fit(jnp.ones(5), Q=0.5)
    with pytest.raises(InvalidArgumentError, match="`margin` must be one of"):
        mp_fit(jnp.ones(5), Q=2.0, margin="tw")
    with pytest.raises(InvalidWeightsError, match="1-D spectrum"):
        mp_fit(jnp.ones((5, 5)), Q=2.0)
    with pytest.raises(InvalidWeightsError, match="`mask` must have the shape"):
        mp_fit(jnp.ones(5), jnp.ones(4, bool), Q=2.0)
    with pytest.raises(InvalidArgumentError, match="`bulk_fraction`"):
        mp_fit(jnp.ones(5), Q=2.0, bulk_fraction=0.0)
    with pytest.raises(InvalidArgumentError, match="`M` must be"):
        mp_fit(jnp.ones(5), Q=2.0, M=-3)
    with pytest.raises(InvalidArgumentError, match="`Q` must be >= 1"):
        mp_pdf(1.0, Q=0.9)
