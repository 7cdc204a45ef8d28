r"""numpy samplers of tails and spectra with known laws (plain numpy, explicit RNG).

Where :mod:`rmtkit.testing.matrices` builds matrices, these draw what the estimators of
:mod:`rmtkit` fit directly: power-law and truncated-power-law tails (``fit_pl``, ``fit_tpl``)
and Wishart spectra (``mp_fit``). Every function takes an explicit ``numpy.random.Generator``;
the same generator state gives the same draws.
"""

import numpy as np
import scipy.linalg


def pareto_draws(shape, alpha: float, xmin: float = 1.0, *, rng: np.random.Generator):
    r"""I.i.d. Pareto draws of exponent :math:`\alpha > 1` above :math:`x_{\min}`.

    Density :math:`(\alpha-1)\,x_{\min}^{\alpha-1} x^{-\alpha}` on :math:`x \ge x_{\min}`
    (docs/math.md §2), drawn by inversion: :math:`x = x_{\min} U^{-1/(\alpha-1)}`, :math:`U`
    uniform on (0, 1].

    Truth (exact at every size): :math:`x \ge x_{\min}` and, for :math:`n` draws,
    :math:`(\alpha - 1)\sum_i \ln(x_i/x_{\min}) \sim \mathrm{Gamma}(n, 1)`.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the draws (the last axis is one sample, for a batch).
    alpha : float, > 1
    xmin : float, > 0, default 1.0
    rng : numpy.random.Generator

    Examples
    --------
    >>> x = pareto_draws(1000, 2.5, 3.0, rng=np.random.default_rng(0))
    >>> bool(x.min() >= 3.0)
    True
    """
    return xmin * (1.0 - rng.random(shape)) ** (-1.0 / (alpha - 1.0))


def tpl_draws(n: int, alpha: float, lam: float, xmin: float = 1.0, *, rng: np.random.Generator):
    r"""I.i.d. draws of the truncated power law of docs/math.md §3, for :math:`\alpha > 1`.

    .. math:: p(x) = \frac{\Lambda^{1-\alpha}}{\Gamma(1-\alpha, \Lambda x_{\min})}\,
              x^{-\alpha} e^{-\Lambda x}, \qquad x \ge x_{\min},

    by rejection: Pareto(:math:`\alpha`, :math:`x_{\min}`) proposals (:func:`pareto_draws`),
    each kept with probability :math:`e^{-\Lambda (x - x_{\min})}`, in rounds of :math:`4n`
    proposals until :math:`n` are kept.

    Truth: the law above exactly, so its CDF is :math:`1 - \Gamma(1-\alpha, \Lambda x) /
    \Gamma(1-\alpha, \Lambda x_{\min})` and ``rmtkit.fit_tpl(x, xmin=xmin)`` is the maximum
    likelihood estimate of :math:`(\alpha, \Lambda)`, within a few standard errors of them.

    Parameters
    ----------
    n : int
    alpha : float, > 1
    lam : float, >= 0
        :math:`\Lambda`, in 1/(units of x).
    xmin : float, > 0, default 1.0
    rng : numpy.random.Generator

    Returns
    -------
    numpy array, shape (n,)
    """
    out = np.empty(0)
    while out.size < n:
        x = pareto_draws(4 * n, alpha, xmin, rng=rng)
        out = np.concatenate([out, x[rng.random(4 * n) < np.exp(-lam * (x - xmin))]])
    return out[:n]


def wishart_eigenvalues(n_rows: int, n_cols: int, reps: int, *, rng: np.random.Generator):
    r"""Eigenvalues of :math:`W^\top W` for ``reps`` draws of an :math:`N \times M` matrix ``W``
    of i.i.d. :math:`N(0, 1)` entries (:math:`N \ge M`), without drawing ``W``.

    Dumitriu & Edelman (J. Math. Phys. 43 (2002) 5830, Thm 3.4): they have exactly the law of
    the eigenvalues of :math:`BB^\top`, :math:`B` lower bidiagonal with diagonal
    :math:`\chi_N, \chi_{N-1}, \dots, \chi_{N-M+1}` and subdiagonal
    :math:`\chi_{M-1}, \dots, \chi_1`: an :math:`O(M^2)` tridiagonal eigenproblem per draw
    instead of an :math:`N \times M` matrix.

    Truth (exact): the Wishart law :math:`W_M(N, I)`, raw units; in particular the trace
    :math:`\sum_i \lambda_i \sim \chi^2_{NM}`, and the ESD tends to Marchenko–Pastur with
    :math:`q = N/M` and :math:`\sigma = 1` (edges :math:`N(1 \mp q^{-1/2})^2`).

    Returns
    -------
    numpy array, shape (reps, n_cols)
        One ascending spectrum per row.
    """
    out = np.empty((reps, n_cols))
    for r in range(reps):
        d = np.sqrt(rng.chisquare(n_rows - np.arange(n_cols)))
        s = np.sqrt(rng.chisquare(n_cols - 1 - np.arange(n_cols - 1)))
        diag = d**2
        diag[1:] += s**2
        out[r] = scipy.linalg.eigvalsh_tridiagonal(diag, d[:-1] * s)
    return out
