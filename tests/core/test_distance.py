"""Per-matrix distances (docs/math.md §8)."""

import jax.numpy as jnp
import numpy as np
import pytest

from rmtkit.core.distance import distances
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError


def test_closed_forms():
    a = jnp.eye(2)
    b = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    assert float(distances(a, b)) == pytest.approx(2.0)
    assert float(distances(a, b, method="cosine")) == pytest.approx(1.0)
    # CKA: ||A^T B||_F / sqrt(||A^T A||_F ||B^T B||_F) = sqrt(2) / sqrt(sqrt2 sqrt2) = 1
    assert float(distances(a, b, method="cka")) == pytest.approx(1.0)
    c = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    # A^T C = C: ||C|| = 1 ; ||A^T A|| = sqrt 2 ; ||C^T C|| = 1
    assert float(distances(a, c, method="cka")) == pytest.approx(2**-0.25)
    assert float(distances(a, -a, method="cosine")) == pytest.approx(2.0)


def test_against_numpy_and_invariances():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(2, 30, 20))
    np.testing.assert_allclose(distances(w1, w2), np.linalg.norm(w1 - w2), rtol=1e-12)
    cos = 1 - np.sum(w1 * w2) / (np.linalg.norm(w1) * np.linalg.norm(w2))
    np.testing.assert_allclose(distances(w1, w2, method="cosine"), cos, rtol=1e-12)
    cka = np.linalg.norm(w1.T @ w2) / np.sqrt(np.linalg.norm(w1.T @ w1) * np.linalg.norm(w2.T @ w2))
    np.testing.assert_allclose(distances(w1, w2, method="cka"), cka, rtol=1e-12)
    # CKA and cosine are scale invariant; identical weights: 0 / 0 / 1
    np.testing.assert_allclose(distances(3 * w1, w2, method="cka"), cka, rtol=1e-12)
    np.testing.assert_allclose(distances(w1, 3 * w2, method="cosine"), cos, rtol=1e-12)
    assert float(distances(w1, w1)) == 0.0
    assert float(distances(w1, w1, method="cosine")) == pytest.approx(0.0, abs=1e-14)
    assert float(distances(w1, w1, method="cka")) == pytest.approx(1.0)
    # zero weights: undefined -> NaN
    assert np.isnan(distances(w1, 0 * w1, method="cosine"))


def test_conv_per_slice():
    # jit and vmap of distances: tests/core/test_conformance.py
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(2, 8, 6, 3, 3))
    np.testing.assert_allclose(distances(w1, w2), np.linalg.norm(w1 - w2), rtol=1e-12)
    per = [
        distances(w1[:, :, i, j], w2[:, :, i, j], method="cka") for i in range(3) for j in range(3)
    ]
    np.testing.assert_allclose(distances(w1, w2, method="cka"), np.mean(per), rtol=1e-12)


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError, match="must have the same shape"):
        distances(jnp.ones((3, 2)), jnp.ones((2, 3)))
    with pytest.raises(InvalidArgumentError, match="`method` must be one of"):
        distances(jnp.ones((3, 2)), jnp.ones((3, 2)), method="l1")
    with pytest.raises(InvalidWeightsError, match="`W2` must be 2-D"):
        distances(jnp.ones((3, 2)), jnp.ones(6))
