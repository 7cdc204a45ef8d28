"""Hypothesis strategies for random matrices and spectra with known truths.

Importing this subpackage needs ``hypothesis`` (``pip install 'rmtkit[test]'``); ``import rmtkit``
does not import it.
"""

from rmtkit.testing.strategies import gaussian_matrices, pareto_samples, seeds

__all__ = ["gaussian_matrices", "pareto_samples", "seeds"]
