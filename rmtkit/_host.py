r"""Host (numpy / LAPACK) spectra of whole layers: the fast route of the model-level analysis.

:func:`rmtkit.esd` is the pure-JAX, differentiable spectrum (and the GPU path). A model's
analysis only needs the eigenvalues, once per layer, so on a CPU it takes the fastest LAPACK route
measured on the reference machine (SPEC §1): ``scipy.linalg.eigh(G, eigvals_only=True,
driver="evd")`` of the float64 Gram matrix :math:`G = A^\top A` of the smaller side of each
:math:`N \times M` slice :math:`A` (:math:`N \ge M`). Float64 keeps every eigenvalue
:math:`\ge 10^{-6}\lambda_{\max}` within :math:`10^{-9}` relative of float64 SVD values (a float32
eigensolve would not: its absolute error is :math:`\sim 10^{-7}\lambda_{\max}`). Very thin slices
(:math:`M \le` :data:`SVD_BELOW`) use ``svd(compute_uv=False)`` instead, which is faster there.

The Gram route resolves eigenvalues only down to :math:`\sim M\epsilon\lambda_{\max}` (its
round-off), i.e. singular values down to :math:`\sim\sqrt\epsilon\, s_{\max}`, while
``matrix_rank`` counts :math:`s_i > N \epsilon s_{\max}`. So a slice whose smallest Gram eigenvalue
is below :data:`GRAM_FLOOR` :math:`\cdot\lambda_{\max}` (numerically rank-deficient or nearly
so, where the rank matters) is recomputed with float64 SVD values; full-rank slices, the vast
majority, keep the fast route.

The conventions are those of :func:`rmtkit.esd` exactly (raw units, slices
``W[:, :, i(, j)]`` oriented :math:`N \ge M`, pooled convolution spectra times ``conv_norm``,
unpooled ones times ``rf * conv_norm``, ``normalize`` divides by :math:`N`); the tests check
both routes agree.
"""

import numpy as np
import scipy.linalg

from rmtkit.esd import combine_slices, oriented_slices

__all__ = ["GRAM_FLOOR", "SVD_BELOW", "host_esd", "host_slices"]

#: slices with at most this many columns use ``scipy.linalg.svd`` values (faster than eigh there)
SVD_BELOW = 8
#: a Gram spectrum with min/max below this is recomputed by SVD (rank-deficient slices)
GRAM_FLOOR = 1e-9


def host_slices(w: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`rmtkit.esd.slices`: ``(rf, N, M)`` oriented slices (views)."""
    return oriented_slices(w, np)


def _slice_evals(a: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of ``a.T @ a`` (float64) for one ``N x M`` slice, ``N >= M``."""
    a = np.asarray(a, dtype=np.float64)
    if a.shape[1] > SVD_BELOW:
        gram = a.T @ a
        evals = scipy.linalg.eigh(gram, eigvals_only=True, driver="evd", check_finite=False,
                                  overwrite_a=True)
        if evals[0] >= GRAM_FLOOR * evals[-1]:
            return evals
    s = scipy.linalg.svd(a, compute_uv=False, check_finite=False)
    return np.sort(s * s)


def host_esd(
    w: np.ndarray, *, normalize: bool = False, pool: bool = True, conv_norm: float = 0.5
) -> np.ndarray:
    """Eigenvalues of one layer, float64, with the conventions of :func:`rmtkit.esd`.

    Returns shape ``(M,)`` for a 2-D ``w``, ``(rf*M,)`` pooled, ``(rf, M)`` unpooled; ascending.
    ``w`` must be finite (the caller checks).
    """
    w = np.asarray(w)
    stack = host_slices(w)
    _, n_rows, _ = stack.shape
    evals = np.stack([_slice_evals(a) for a in stack])  # (rf, M)
    return combine_slices(evals, ndim=w.ndim, n_rows=n_rows, normalize=normalize, pool=pool,
                          conv_norm=conv_norm, xp=np)
