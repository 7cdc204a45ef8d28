"""Randomization, rand_distance and correlation traps (docs/math.md §6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from rmtkit.core.esd import esd
from rmtkit.core.svd import svd_sharpen
from rmtkit.core.traps import correlation_traps, rand_distance, randomize
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import gaussian_matrices

SHAPE = (120, 60)
CONV = (24, 16, 3, 3)
TRAP_AT = (7, 11)
CONV_TRAP_AT = (5, 9, 1, 2)
EDGE = np.sqrt(120) * (1 + np.sqrt(60 / 120))  # MP bulk edge of s(W), entry sd 1

traps = jax.jit(correlation_traps)
rand_distance_jit = jax.jit(rand_distance, static_argnames=("method", "bins"))


def gaussian(seed, shape=SHAPE):
    return jax.random.normal(jax.random.key(seed), shape)


def trapped():
    return gaussian(0).at[TRAP_AT].set(100.0)


def conv_trapped():
    return gaussian(1, CONV).at[CONV_TRAP_AT].set(60.0)


# ---------------------------------------------------------------------------- randomize


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(6, 4), (3, 5, 2), (4, 3, 2, 2)]))
def test_randomize_permutes_each_slice(seed, shape):
    w = jax.random.normal(jax.random.key(seed), shape)
    r = randomize(w, jax.random.key(seed + 1))
    assert r.shape == w.shape and r.dtype == w.dtype
    ws = np.asarray(w).reshape(shape[0] * shape[1], -1)
    rs = np.asarray(r).reshape(shape[0] * shape[1], -1)
    np.testing.assert_array_equal(np.sort(ws, axis=0), np.sort(rs, axis=0))  # per slice
    np.testing.assert_allclose(jnp.linalg.norm(r), jnp.linalg.norm(w), rtol=1e-12)


def test_randomize_reproducible_and_keyed():
    w = gaussian(2, (20, 10))
    a = randomize(w, jax.random.key(3))
    np.testing.assert_array_equal(a, randomize(w, jax.random.key(3)))
    assert not np.array_equal(a, randomize(w, jax.random.key(4)))
    assert not np.array_equal(a, w)
    # jit == eager and vmap over keys == loop (exactly): tests/core/test_conformance.py


# ---------------------------------------------------------------------------- rand_distance


def test_rand_distance_reference_values():
    p = jnp.array([1.0, 3.0, 4.0])
    q = jnp.array([2.0, 2.0, 6.0])
    # rank-aligned JS, natural log (scipy's default base is e)
    ref = jensenshannon(np.sort(p) / p.sum(), np.sort(q) / q.sum())
    np.testing.assert_allclose(rand_distance_jit(p, q), ref, rtol=1e-12)
    np.testing.assert_allclose(rand_distance_jit(p, q[::-1]), ref, rtol=1e-12)  # order-free
    assert float(rand_distance_jit(p, p)) == 0.0
    # histogram variant, 2 shared log bins: p -> [1, 2]/3 ; q -> [2, 1]/3 on [1, 6]
    ref_h = jensenshannon([1 / 3, 2 / 3], [2 / 3, 1 / 3])
    np.testing.assert_allclose(rand_distance_jit(p, q, method="hist", bins=2), ref_h)
    # disjoint histograms: the maximum sqrt(ln 2)
    far = rand_distance(jnp.array([1.0, 1.0]), jnp.array([100.0, 100.0]), method="hist")
    np.testing.assert_allclose(far, np.sqrt(np.log(2.0)))


def test_rand_distance_of_a_zero_spectrum_is_nan():
    # padding, jit == eager and vmap == loop of both methods: tests/core/test_conformance.py
    assert np.isnan(rand_distance(jnp.zeros(3), jnp.ones(3)))


@pytest.mark.slow
@settings(max_examples=8)
@given(gaussian_matrices(qs=(2.0,)), st.integers(0, 2**31 - 1))  # one shape: one compile
def test_gaussian_rand_distance_is_small(g, seed):
    w, key = jnp.asarray(g.w), jax.random.key(seed)
    d = rand_distance(esd(w), esd(randomize(w, key)))
    assert float(d) < 0.02
    stats = traps(w, key)
    assert float(stats.rand_distance) < 0.02
    assert int(stats.num_traps) == 0
    np.testing.assert_array_equal(stats.trap_index, -1)
    assert 0.9 < float(stats.ww_softrank) < 1.1  # random layer: max rand eval ~ lambda_max


# ---------------------------------------------------------------------------- traps


def test_planted_entry_is_a_trap_and_located():
    w = trapped()
    stats = traps(w, jax.random.key(1))
    assert bool(stats.ok)
    assert int(stats.num_traps) >= 1
    assert tuple(np.asarray(stats.trap_index[0])) == TRAP_AT
    lam = esd(w)
    np.testing.assert_allclose(stats.ww_softrank, stats.max_rand_eval / lam[-1], rtol=1e-12)
    np.testing.assert_allclose(stats.ww_maxdist, lam[-1] - stats.max_rand_eval, rtol=1e-9)
    # the randomized trap eigenvalue ~ 100^2 + noise, far above the randomized bulk
    assert float(stats.max_rand_eval) > 9000 > 1.2 * EDGE**2 > float(stats.rand_bulk_max)


def test_conv_trap_located_per_slice():
    w = conv_trapped()
    stats = traps(w, jax.random.key(2))
    assert int(stats.num_traps) >= 1
    assert tuple(np.asarray(stats.trap_index[0])) == CONV_TRAP_AT
    # units follow esd: pooled conv spectra times 1/2
    assert float(stats.max_rand_eval) > 0.5 * 60.0**2 * 0.9  # >> 0.5 * (sqrt 24 + 4)^2 ~ 39


def test_sharpening_removes_the_trap_and_never_raises_top_value():
    w = trapped()
    stats = traps(w, jax.random.key(1))
    top = float(jnp.linalg.norm(w, 2))
    sharp = svd_sharpen(w, stats.num_traps)  # mode="zero", WW's SVDSharpness
    assert int(traps(sharp, jax.random.key(1)).num_traps) == 0
    assert float(jnp.abs(sharp).max()) < 10.0
    assert float(jnp.linalg.norm(sharp, 2)) <= top * (1 + 1e-12)
    # "clip" shrinks the trap direction to the bulk edge: the top value drops to ~ the edge
    # (a rank-1 entry of that size can still trap a randomized eigenvalue: zero removes it)
    clipped = svd_sharpen(w, stats.num_traps, mode="clip")
    assert float(jnp.linalg.norm(clipped, 2)) <= top * (1 + 1e-12)
    assert float(jnp.linalg.norm(clipped, 2)) < 1.05 * EDGE


@pytest.mark.slow
def test_replicas_take_the_max_over_randomizations():
    w = gaussian(8, (40, 20))  # 20 eigenvalues < 100: 5 replicas by default
    stats = correlation_traps(w, jax.random.key(9))
    keys = jax.random.split(jax.random.key(9), 5)
    each = [float(esd(randomize(w, k))[-1]) for k in keys]
    np.testing.assert_allclose(stats.max_rand_eval, max(each), rtol=1e-10)
    # the MP fit and the distance use replica 0
    ref = rand_distance(esd(w), esd(randomize(w, keys[0])))
    np.testing.assert_allclose(stats.rand_distance, ref, rtol=1e-9)


def test_traps_zero_layer_is_nan():
    stats = correlation_traps(jnp.zeros((40, 20)), jax.random.key(0))
    assert not bool(stats.ok) and np.isnan(stats.max_rand_eval) and int(stats.num_traps) == 0


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError, match="`key` must be a jax.random key"):
        randomize(jnp.ones((3, 3)), 0)
    with pytest.raises(InvalidWeightsError, match="must be 2-D"):
        randomize(jnp.ones(3), jax.random.key(0))
    with pytest.raises(InvalidWeightsError, match="`rand_evals` must have the shape"):
        rand_distance(jnp.ones(3), jnp.ones(4))
    with pytest.raises(InvalidArgumentError, match="`method` must be one of"):
        rand_distance(jnp.ones(3), jnp.ones(3), method="kl")
    with pytest.raises(InvalidArgumentError, match="`margin` must be one of"):
        correlation_traps(jnp.ones((3, 3)), jax.random.key(0), margin="x")
    with pytest.raises(InvalidArgumentError, match="`replicas` must be"):
        correlation_traps(jnp.ones((3, 3)), jax.random.key(0), replicas=0)
