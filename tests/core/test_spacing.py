"""rmtkit.level_spacing and friends (docs/math.md §11.2): closed forms and known ensembles."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings

import rmtkit
from rmtkit.core.spacing import (
    GOE_MEAN_RATIO,
    GUE_MEAN_RATIO,
    POISSON_MEAN_RATIO,
    wigner_cdf,
)
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import level_samples


def test_ratios_closed_form():
    # spacings 1, 2, 4, 1 -> ratios 1/2, 2/4, 1/4
    r, ok = rmtkit.spacing_ratios(np.array([0.0, 1.0, 3.0, 7.0, 8.0]))
    np.testing.assert_allclose(np.asarray(r)[np.asarray(ok)], [0.5, 0.5, 0.25])
    assert float(rmtkit.level_spacing(np.array([0.0, 1.0, 3.0, 7.0, 8.0])).mean_ratio) == (
        pytest.approx(5.0 / 12.0)
    )


def test_order_and_padding_do_not_matter():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.exponential(size=60))
    ref = rmtkit.level_spacing(x)
    shuffled = rmtkit.level_spacing(rng.permutation(x))
    padded = np.concatenate([x, np.full(20, 7.0)])
    mask = np.arange(80) < 60
    masked = rmtkit.level_spacing(padded, mask)
    for other in (shuffled, masked):
        for a, b in zip(ref, other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10)
    assert int(ref.num_spacings) == 59


def test_equally_spaced_levels():
    """A picket fence: every ratio is 1, every unfolded spacing 1 (the most repelling)."""
    r = rmtkit.level_spacing(np.arange(50.0) * 3.0 + 1.0)
    assert float(r.mean_ratio) == pytest.approx(1.0)
    s, ok = rmtkit.unfolded_spacings(np.arange(50.0))
    np.testing.assert_allclose(np.asarray(s)[np.asarray(ok)], 1.0, atol=1e-8)


def test_too_few_levels_is_nan():
    r = rmtkit.level_spacing(np.array([1.0, 2.0]))
    assert np.isnan(float(r.mean_ratio)) and np.isnan(float(r.ks_wigner))
    assert int(r.num_spacings) == 1


def test_unfolded_spacings_average_one():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 300))
    s, ok = rmtkit.unfolded_spacings(np.linalg.eigvalsh((a + a.T) / 2))
    assert float(np.mean(np.asarray(s)[np.asarray(ok)])) == pytest.approx(1.0)


def test_wigner_cdf_closed_form():
    s = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(wigner_cdf(s), 1.0 - np.exp(-np.pi * s**2 / 4.0))


@settings(max_examples=12)
@given(level_samples())
def test_mean_ratio_of_known_ensembles(sample):
    """<r> of GOE / GUE eigenvalues and of Poisson points within 4 standard errors of the
    large-n value (Atas et al. 2013), and the KS distances tell repulsion from independence."""
    r = rmtkit.level_spacing(sample.levels)
    n = sample.levels.size
    assert abs(float(r.mean_ratio) - sample.mean_ratio) < 4 * sample.ratio_sd / np.sqrt(n)
    if sample.ensemble == "Poisson":
        assert float(r.ks_poisson) < float(r.ks_wigner)
    else:
        assert float(r.ks_wigner) < float(r.ks_poisson)


def test_the_three_constants_are_ordered():
    assert POISSON_MEAN_RATIO == pytest.approx(2 * np.log(2) - 1)
    assert POISSON_MEAN_RATIO < GOE_MEAN_RATIO < GUE_MEAN_RATIO


def test_jit_and_vmap():
    rng = np.random.default_rng(2)
    batch = np.sort(np.cumsum(rng.exponential(size=(3, 40)), axis=1), axis=1)
    vm = jax.vmap(rmtkit.level_spacing)(batch)
    for i in range(3):
        one = rmtkit.level_spacing(batch[i])
        np.testing.assert_allclose(vm.mean_ratio[i], one.mean_ratio, rtol=1e-10)
        np.testing.assert_allclose(vm.ks_wigner[i], one.ks_wigner, rtol=1e-8)


def test_nan_level_is_ignored_not_propagated():
    x = np.array([0.0, 1.0, np.nan, 3.0, 4.0, 6.0])
    r = rmtkit.level_spacing(x)
    assert np.isfinite(float(r.mean_ratio)) and int(r.num_spacings) == 4


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError):
        rmtkit.level_spacing(np.zeros((3, 3)))
    with pytest.raises(InvalidArgumentError, match="degree"):
        rmtkit.level_spacing(np.arange(5.0), degree=0)
