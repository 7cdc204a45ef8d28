"""SVD sharpening / smoothing (docs/math.md §7) and detX (docs/math.md §8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmtkit.core.esd import esd
from rmtkit.core.mp import mp_fit
from rmtkit.core.powerlaw import fit_pl
from rmtkit.core.svd import detx, svd_sharpen, svd_smooth
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import spiked_matrices

DIAG = jnp.diag(jnp.array([5.0, 2.0, 1.0, 0.5]))


#: noise (entry sd sigma) plus 1-3 orthogonal spikes far above the BBP threshold, 120 x 60
SPIKED = spiked_matrices(n_cols=(60,), qs=(2.0,), ranks=(1, 2, 3), ratios=st.floats(4.0, 7.0))


# ------------------------------------------------------------------------------ sharpen


def test_sharpen_closed_form():
    np.testing.assert_allclose(svd_sharpen(DIAG, 1).diagonal(), [0, 2, 1, 0.5], atol=1e-12)
    np.testing.assert_allclose(svd_sharpen(DIAG, 2).diagonal(), [0, 0, 1, 0.5], atol=1e-12)
    np.testing.assert_array_equal(svd_sharpen(DIAG, 0), DIAG)  # exactly unchanged
    np.testing.assert_array_equal(svd_sharpen(DIAG, -1), DIAG)


@pytest.mark.slow
@settings(max_examples=10)
@given(SPIKED)
def test_clip_shrinks_to_the_bulk_edge(spiked):
    w, k = jnp.asarray(spiked.w), spiked.num_outliers
    sharp = svd_sharpen(w, k, mode="clip")
    fit = mp_fit(esd(w), Q=2.0)
    s_new = jnp.linalg.svd(sharp, compute_uv=False)
    s_old = jnp.linalg.svd(w, compute_uv=False)
    # the top k values become the edge, the rest stay (as multisets: the largest bulk value
    # may lie above the fitted edge, within its Tracy-Widom margin)
    want = np.concatenate([np.full(k, np.sqrt(float(fit.bulk_max))), s_old[k:]])
    np.testing.assert_allclose(np.sort(s_new), np.sort(want), rtol=1e-10)


def test_conv_slices_and_global_ranking():
    w = (
        jnp.zeros((4, 3, 2, 1))
        .at[:, :, 0, 0]
        .set(DIAG[:, :3])
        .at[:, :, 1, 0]
        .set(3.0 * jnp.eye(4, 3))
    )
    # scalar: the largest singular values over all slices (5, then the three 3s)
    out = svd_sharpen(w, 1)
    np.testing.assert_allclose(out[:, :, 0, 0], DIAG[:, :3].at[0, 0].set(0.0), atol=1e-12)
    np.testing.assert_allclose(out[:, :, 1, 0], w[:, :, 1, 0], atol=1e-12)
    # per-slice counts
    out = svd_sharpen(w, jnp.array([0, 1]))
    np.testing.assert_array_equal(out[:, :, 0, 0], w[:, :, 0, 0])
    assert float(jnp.linalg.norm(out[:, :, 1, 0], 2)) == pytest.approx(3.0)


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(0, 5), st.sampled_from(["zero", "clip"]))
def test_sharpen_never_raises_the_top_singular_value(seed, k, mode):
    w = jax.random.normal(jax.random.key(seed), (30, 20))
    out = sharpen_jit(w, k, mode=mode)
    assert float(jnp.linalg.norm(out, 2)) <= float(jnp.linalg.norm(w, 2)) * (1 + 1e-10)
    assert out.shape == w.shape and out.dtype == w.dtype


sharpen_jit = jax.jit(svd_sharpen, static_argnames=("mode", "margin"))


# jit == eager, vmap == loop and dtypes of svd_sharpen, svd_smooth and detx:
# tests/core/test_conformance.py


# ------------------------------------------------------------------------------ smooth


def test_smooth_closed_form():
    np.testing.assert_allclose(svd_smooth(DIAG, 2).diagonal(), [5, 2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(svd_smooth(DIAG, -2).diagonal(), [0, 0, 1, 0.5], atol=1e-12)
    np.testing.assert_array_equal(svd_smooth(DIAG, 0), DIAG)
    np.testing.assert_allclose(
        svd_smooth(DIAG, method="percent", percent=0.5).diagonal(), [5, 2, 0, 0], atol=1e-12
    )


@pytest.mark.slow
@settings(max_examples=10)
@given(SPIKED)
def test_smooth_methods_choose_k(spiked):
    w, k = jnp.asarray(spiked.w), spiked.num_outliers
    s = jnp.linalg.svd(w, compute_uv=False)
    lam = esd(w)

    def rank_kept(out):
        return int(jnp.sum(jnp.linalg.svd(out, compute_uv=False) > 1e-9 * s[0]))

    # rmt: the MP spikes (the planted ones)
    assert int(mp_fit(lam, Q=2.0).num_spikes) == k
    assert rank_kept(svd_smooth(w, method="rmt")) == k
    assert rank_kept(svd_smooth(w, method="detX")) == int(detx(lam).detX_num)
    n_tail = int(fit_pl(lam).num_pl_spikes)
    assert rank_kept(svd_smooth(w, method="alpha_min")) == n_tail
    # the kept part is the best rank-k approximation
    out = svd_smooth(w, method="rmt")
    np.testing.assert_allclose(jnp.linalg.norm(w - out), jnp.sqrt(jnp.sum(s[k:] ** 2)), rtol=1e-10)


# ------------------------------------------------------------------------------ detX


def test_detx_closed_form():
    r = detx(jnp.array([1.0, 0.25, 2.25, 0.5]))  # mean 1: 2.25, * 0.5 = 1.125, * 0.25 < 1
    assert int(r.detX_num) == 4 and float(r.detX_val) == 0.25
    r = detx(4.0 * jnp.array([0.1, 0.1, 0.8, 3.0]))  # 3 >= 1, 3 * 0.8 >= 1, 2.4 * 0.1 < 1
    assert int(r.detX_num) == 3 and float(r.detX_val) == pytest.approx(0.4)
    # padding invisible, order-free, scale: val scales, num does not
    padded = jnp.array([0.8, 0.1, 3.0, 0.1, 7.0, 7.0])
    r2 = detx(padded, jnp.array([True, True, True, True, False, False]))
    assert int(r2.detX_num) == 3 and float(r2.detX_val) == pytest.approx(0.1)
    bad = detx(jnp.zeros(4))
    assert not bool(bad.ok) and np.isnan(bad.detX_val) and int(bad.detX_num) == 0


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidArgumentError, match="`mode` must be one of"):
        svd_sharpen(DIAG, 1, mode="cut")
    with pytest.raises(InvalidArgumentError, match="`num_traps` must be an integer"):
        svd_sharpen(DIAG, 1.5)
    with pytest.raises(InvalidArgumentError, match="one count per slice"):
        svd_sharpen(DIAG, jnp.array([1, 2]))
    with pytest.raises(InvalidArgumentError, match="exactly one of `k` and `method`"):
        svd_smooth(DIAG, 1, method="rmt")
    with pytest.raises(InvalidArgumentError, match="exactly one of `k` and `method`"):
        svd_smooth(DIAG)
    with pytest.raises(InvalidArgumentError, match="`method` must be one of"):
        svd_smooth(DIAG, method="svd")
    with pytest.raises(InvalidArgumentError, match="`percent`"):
        svd_smooth(DIAG, method="percent", percent=2.0)
    with pytest.raises(InvalidWeightsError, match="must be 2-D"):
        svd_sharpen(jnp.ones(4), 1)
    with pytest.raises(InvalidWeightsError, match="1-D spectrum"):
        detx(jnp.ones((2, 2)))
