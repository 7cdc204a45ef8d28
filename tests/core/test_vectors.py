"""Eigenvector localization (docs/math.md §11.1): closed forms, WeightWatcher's histogram
entropy, and the eigenvectors of W^T W."""

import numpy as np
import pytest
from hypothesis import given

import rmtkit
from rmtkit.core.vectors import _histogram_counts
from rmtkit.errors import InvalidWeightsError
from rmtkit.testing import unit_vectors


@given(unit_vectors())
def test_localization_of_known_vectors(u):
    """delta: 1 and 1; uniform: m and m^(1/4); block of k: k and k^(1/4) (exact)."""
    assert float(rmtkit.localization_ratio(u.v)) == pytest.approx(u.localization_ratio)
    assert float(rmtkit.participation_ratio(u.v)) == pytest.approx(u.participation_ratio)
    assert float(rmtkit.localization_ratio(-3.0 * u.v)) == pytest.approx(u.localization_ratio)


def test_entropy_of_delta_and_flat_vectors():
    """WeightWatcher's discrete entropy: a flat vector's |v| - mean is all 0, one bin holds
    everything: p = (1 + 99 eps') / ... -> entropy ~ 1e-9; a delta puts m - 1 values in the first
    bin and 1 in the last: p = (m-1)/m, 1/m (up to the 1e-10 floor)."""
    m = 30
    flat = np.ones(m) / np.sqrt(m)
    assert float(rmtkit.vector_entropy(flat)) < 1e-8
    delta = np.zeros(m)
    delta[3] = 1.0
    p = np.array([(m - 1) / m, 1 / m])
    expected = -np.sum(p * np.log(p))
    assert float(rmtkit.vector_entropy(delta)) == pytest.approx(expected, rel=1e-6)


def test_histogram_is_numpys():
    rng = np.random.default_rng(0)
    for x in (
        rng.standard_normal(57),
        np.full(9, 2.5),
        np.array([0.0, 1.0, 1.0, 0.5]),
        rng.random(1000),
    ):
        counts, width = _histogram_counts(x, 100)
        ref, edges = np.histogram(x, bins=100)
        np.testing.assert_array_equal(np.asarray(counts), ref)
        assert float(width) == pytest.approx(edges[1] - edges[0])


def test_eigenvector_metrics_are_those_of_the_right_singular_vectors():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 12))
    vm = rmtkit.eigenvector_metrics(w)
    _, s, vt = np.linalg.svd(w)
    np.testing.assert_allclose(vm.evals, np.sort(s**2), rtol=1e-10)
    order = np.argsort(s**2)
    for j, i in enumerate(order):
        v = vt[i]
        assert float(vm.loc_ratio[j]) == pytest.approx(np.abs(v).sum() / np.abs(v).max())
        assert float(vm.part_ratio[j]) == pytest.approx(1 / np.sum(v**4) ** 0.25)


def test_orientation_and_slices():
    """W and W^T give the same metrics (the smaller Gram); a kernel pools its slices."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((12, 40))
    a, b = rmtkit.eigenvector_metrics(w), rmtkit.eigenvector_metrics(w.T)
    np.testing.assert_allclose(a.loc_ratio, b.loc_ratio, rtol=1e-8)
    k = rng.standard_normal((8, 6, 2, 2))
    vm = rmtkit.eigenvector_metrics(k, scale=0.5)
    assert vm.evals.shape == (24,)
    pooled = np.sort(
        np.concatenate(
            [
                np.linalg.svd(k[:, :, i, j], compute_uv=False) ** 2
                for i in range(2)
                for j in range(2)
            ]
        )
    )
    np.testing.assert_allclose(vm.evals, 0.5 * pooled, rtol=1e-10)


def test_bulk_tail_split():
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    evals = np.array([0.1, 0.2, 0.3, 5.0, 6.0])
    bt = rmtkit.bulk_tail(values, evals, 1.0)
    assert float(bt.bulk_mean) == pytest.approx(2.0)
    assert float(bt.bulk_var) == pytest.approx(np.var([1.0, 2.0, 3.0]))
    assert float(bt.tail_mean) == pytest.approx(15.0)
    assert float(bt.tail_var) == pytest.approx(25.0)
    empty = rmtkit.bulk_tail(values, evals, 100.0)
    assert np.isnan(float(empty.tail_mean)) and float(empty.bulk_mean) == pytest.approx(7.2)
    assert np.isnan(float(rmtkit.bulk_tail(values, evals, np.nan).bulk_mean))


def test_zero_vector_is_nan():
    assert np.isnan(float(rmtkit.localization_ratio(np.zeros(4))))
    assert np.isnan(float(rmtkit.participation_ratio(np.zeros(4))))


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError):
        rmtkit.localization_ratio(np.ones((2, 2)))
    with pytest.raises(InvalidWeightsError):
        rmtkit.eigenvector_metrics(np.ones(5))


def test_non_finite_input_gives_nan_never_a_number():
    v = np.array([0.5, np.inf, 0.1])
    assert np.isnan(float(rmtkit.vector_entropy(v)))
    assert np.isnan(float(rmtkit.localization_ratio(v)))
    assert np.isnan(float(rmtkit.participation_ratio(np.array([0.5, np.nan, 0.1]))))
    w = np.random.default_rng(3).standard_normal((6, 4, 2, 2))
    w[0, 0, 1, 1] = np.nan
    vm = rmtkit.eigenvector_metrics(w)
    bad = np.isnan(np.asarray(vm.loc_ratio))
    assert bad.sum() == 4 and np.isfinite(np.asarray(vm.loc_ratio)[~bad]).all()
