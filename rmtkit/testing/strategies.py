r"""Strategies that draw data with a known ground truth, for property-based tests.

Each strategy draws a small set of shapes (JAX compiles once per shape) and a numpy seed, and
returns the data with the truth it was drawn from.
"""

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st


class ParetoSample(NamedTuple):
    """Pareto sample: ``x`` i.i.d. with density :math:`(\\alpha-1) x_{\\min}^{\\alpha-1}
    x^{-\\alpha}` on :math:`x \\ge x_{\\min}`."""

    x: np.ndarray
    alpha: float
    xmin: float


class GaussianMatrix(NamedTuple):
    """``W`` of shape ``(n_rows, n_cols)`` with i.i.d. :math:`N(0, \\sigma^2)` entries; its
    ESD of :math:`W^\\top W/N` follows Marchenko-Pastur with :math:`q = N/M` and variance
    :math:`\\sigma^2`."""

    w: np.ndarray
    sigma: float
    q: float


def seeds() -> st.SearchStrategy[np.random.Generator]:
    """A numpy ``Generator`` seeded from a drawn integer (shrinks, replays)."""
    return st.integers(0, 2**32 - 1).map(np.random.default_rng)


_ALPHAS = st.floats(1.5, 6.0)
_XMINS = st.sampled_from((1e-3, 1.0, 50.0))
_SIGMAS = st.sampled_from((0.5, 1.0, 3.0))


@st.composite
def pareto_samples(
    draw,
    sizes=(32, 128, 512),
    alphas=_ALPHAS,
    xmins=_XMINS,
    dtype=np.float64,
) -> ParetoSample:
    r"""Pareto samples with known exponent :math:`\alpha` and lower bound :math:`x_{\min}`.

    Drawn by inversion: :math:`x = x_{\min} U^{-1/(\alpha-1)}`. Truth: the MLE at the true
    :math:`x_{\min}` is unbiased up to :math:`O(1/n)` and
    :math:`(\alpha - 1)\sum\ln(x/x_{\min}) \sim \mathrm{Gamma}(n, 1)`.
    """
    n = draw(st.sampled_from(sizes))
    alpha = draw(alphas)
    xmin = draw(xmins)
    rng = draw(seeds())
    u = 1.0 - rng.random(n)  # in (0, 1]
    x = xmin * u ** (-1.0 / (alpha - 1.0))
    return ParetoSample(x.astype(dtype), float(alpha), float(xmin))


@st.composite
def gaussian_matrices(
    draw, shapes=((200, 200), (400, 200), (800, 200)), sigmas=_SIGMAS,
    dtype=np.float64,
) -> GaussianMatrix:
    """Gaussian matrices of a few shapes (Q = N/M = 1, 2, 4 by default) and known sigma."""
    n_rows, n_cols = draw(st.sampled_from(shapes))
    sigma = draw(sigmas)
    rng = draw(seeds())
    w = rng.normal(0.0, sigma, size=(n_rows, n_cols)).astype(dtype)
    return GaussianMatrix(w, float(sigma), n_rows / n_cols)
