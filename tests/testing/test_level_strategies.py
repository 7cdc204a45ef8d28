"""Level samples and unit vectors (rmtkit.testing) carry the truths they state."""

import numpy as np
from hypothesis import given, settings

from rmtkit.testing import level_samples, unit_vectors


@settings(max_examples=10)
@given(level_samples(sizes=(50,)))
def test_level_samples(sample):
    assert sample.levels.shape == (50,) and np.all(np.diff(sample.levels) >= 0)
    assert sample.ensemble in ("GOE", "GUE", "Poisson")
    assert 0.38 < sample.mean_ratio < 0.61 and 0.2 < sample.ratio_sd < 0.3
    if sample.ensemble == "Poisson":
        assert sample.levels[0] > 0


@given(unit_vectors())
def test_unit_vectors(u):
    assert abs(np.linalg.norm(u.v) - 1) < 1e-12
    assert np.count_nonzero(u.v) == u.support
    nz = np.abs(u.v[u.v != 0])
    np.testing.assert_allclose(nz, 1 / np.sqrt(u.support))
    assert u.localization_ratio == u.support
    if u.kind == "delta":
        assert u.support == 1
    elif u.kind == "uniform":
        assert u.support == u.v.size
