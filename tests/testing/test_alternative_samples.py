"""rmtkit.testing.alternative_samples: tails of the power law's alternatives, with their truth."""

import numpy as np
from hypothesis import given, settings
from scipy import stats

from rmtkit.testing import alternative_samples


@settings(max_examples=15, deadline=None)
@given(alternative_samples(sizes=(4000,), xmins=(1.0, 5.0)))
def test_samples_follow_their_law(sample):
    x = sample.x
    assert x.shape == (4000,) and np.all(x >= sample.xmin) and np.all(np.isfinite(x))
    if sample.model == "exponential":
        (lam,) = sample.params
        assert stats.kstest(x - sample.xmin, "expon", args=(0.0, 1.0 / lam)).pvalue > 1e-4
    elif sample.model == "lognormal":
        mu, sigma = sample.params
        lo = stats.norm.cdf((np.log(sample.xmin) - mu) / sigma)
        u = (stats.norm.cdf((np.log(x) - mu) / sigma) - lo) / (1.0 - lo)
        assert stats.kstest(u, "uniform").pvalue > 1e-4
    else:
        alpha, lam = sample.params
        assert 1.0 < alpha and lam > 0.0
        # the cut-off thins the tail: fewer large values than the pure Pareto of alpha
        pareto_sf = (np.quantile(x, 0.99) / sample.xmin) ** (1.0 - alpha)
        assert pareto_sf > 0.01
