r"""Test data with known truths: hypothesis strategies, matrix builders, closed-form RMT laws.

Each strategy draws data together with the property it guarantees, so a property test reads
``truth = draw; assert estimator(truth.data) ≈ truth.value``::

    from hypothesis import given
    from rmtkit.testing import gaussian_matrices

    @given(gaussian_matrices(qs=(1.0, 4.0)))
    def test_mp_edge(g):
        fit = rmtkit.mp_fit(rmtkit.esd(g.w), Q=g.q)
        assert abs(float(fit.bulk_max) / g.bulk_max - 1) < 0.05

========================== ======================== ===========================================
strategy                   returns                  truth
========================== ======================== ===========================================
`pareto_samples`           `ParetoSample`           exponent alpha, xmin of i.i.d. Pareto draws
`gaussian_matrices`        `GaussianMatrix`         MP edges, Tracy–Widom centre/scale
`spiked_matrices`          `SpikedMatrix`           BBP outlier locations and count
`heavy_tailed_matrices`    `HeavyTailedMatrix`      ESD tail exponent 1 + mu/2 (asymptotic)
`matrices_with_spectrum`   `PrescribedMatrix`       the eigenvalues of W^T W, exactly
`trapped_matrices`         `TrappedMatrix`          number and positions of correlation traps
========================== ======================== ===========================================

Importing this subpackage needs ``hypothesis`` (``pip install 'rmtkit[test]'``); ``import
rmtkit`` does not import it. The builders (:mod:`rmtkit.testing.matrices`), samplers
(:mod:`rmtkit.testing.samples`: Pareto and truncated-power-law tails, Wishart spectra, each
with its law) and laws (:mod:`rmtkit.testing.theory`) behind the strategies are plain numpy.
"""

from rmtkit.testing.matrices import (
    add_spikes,
    haar_orthonormal,
    pareto_entries,
    plant_traps,
    with_spectrum,
)
from rmtkit.testing.samples import pareto_draws, tpl_draws, wishart_eigenvalues
from rmtkit.testing.strategies import (
    GaussianMatrix,
    HeavyTailedMatrix,
    ParetoSample,
    PrescribedMatrix,
    SpikedMatrix,
    TrappedMatrix,
    gaussian_matrices,
    heavy_tailed_matrices,
    log_uniform_spectrum,
    matrices_with_spectrum,
    pareto_samples,
    seeds,
    spiked_matrices,
    trapped_matrices,
)
from rmtkit.testing.theory import bbp_outlier, bbp_threshold, mp_edges, tracy_widom_edge

__all__ = [
    "add_spikes",
    "bbp_outlier",
    "bbp_threshold",
    "GaussianMatrix",
    "gaussian_matrices",
    "haar_orthonormal",
    "heavy_tailed_matrices",
    "HeavyTailedMatrix",
    "log_uniform_spectrum",
    "matrices_with_spectrum",
    "mp_edges",
    "pareto_draws",
    "pareto_entries",
    "pareto_samples",
    "ParetoSample",
    "plant_traps",
    "PrescribedMatrix",
    "seeds",
    "spiked_matrices",
    "SpikedMatrix",
    "tpl_draws",
    "tracy_widom_edge",
    "trapped_matrices",
    "TrappedMatrix",
    "wishart_eigenvalues",
    "with_spectrum",
]
