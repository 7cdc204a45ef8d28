r"""numpy builders of random matrices with planted structure (plain numpy, explicit RNG).

The strategies in :mod:`rmtkit.testing.strategies` draw their parameters and a seed, then call
these; they are public so that the same constructions serve scripts, notebooks and tests that
bring their own randomness. Every function takes an explicit ``numpy.random.Generator``.
"""

import numpy as np


def haar_orthonormal(n: int, k: int, *, rng: np.random.Generator) -> np.ndarray:
    r"""An :math:`n \times k` matrix with orthonormal columns, Haar (uniformly) distributed.

    QR of an :math:`n \times k` standard Gaussian matrix, with column :math:`j` of :math:`Q`
    multiplied by :math:`\mathrm{sign}(R_{jj})` so that the factorisation is unique and the law
    exactly Haar (Mezzadri, Notices AMS 54 (2007) 592; without the sign fix LAPACK's
    convention biases it). :math:`Q^\top Q = I` to round-off (:math:`\sim 10^{-15}`).
    """
    if k > n:
        raise ValueError(f"need k <= n for orthonormal columns; got n={n}, k={k}.")
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def with_spectrum(evals, n_rows: int, *, rng: np.random.Generator) -> np.ndarray:
    r"""A matrix :math:`W = U \operatorname{diag}(s) V^\top` with :math:`W^\top W` of eigenvalues
    ``evals``.

    :math:`s = \sqrt{\lambda}`, :math:`U` (``n_rows`` × M) and :math:`V` (M × M) Haar
    (:func:`haar_orthonormal`), so :math:`W^\top W = V \operatorname{diag}(\lambda) V^\top`
    exactly in exact arithmetic; in float64 the eigenvalues are reproduced to round-off
    (:math:`\sim 10^{-15}\lambda_{\max}` absolute).

    Parameters
    ----------
    evals : array, shape (M,)
        Non-negative eigenvalues (raw units), any order.
    n_rows : int, >= M
    """
    evals = np.asarray(evals, dtype=np.float64)
    if evals.ndim != 1 or np.any(evals < 0) or not np.all(np.isfinite(evals)):
        raise ValueError("`evals` must be a 1-D array of finite non-negative values.")
    m = evals.size
    if n_rows < m:
        raise ValueError(f"`n_rows` must be >= len(evals) = {m}; got {n_rows}.")
    u = haar_orthonormal(n_rows, m, rng=rng)
    v = haar_orthonormal(m, m, rng=rng)
    return (u * np.sqrt(evals)) @ v.T


def add_spikes(w, thetas, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    r"""Add a rank-k signal of strengths :math:`\theta_k` to a noise matrix of entry sd σ.

    .. math:: W' = W + \sigma\sqrt N \sum_k \theta_k\, u_k v_k^\top

    with Haar orthonormal :math:`u_k \in \mathbb R^N`, :math:`v_k \in \mathbb R^M`, so that
    :math:`W'/(\sigma\sqrt N) = Z + \sum_k \theta_k u_k v_k^\top` with
    :math:`\mathrm{Var}\,Z_{ij} = 1/N`: the normalisation of
    :func:`rmtkit.testing.theory.bbp_outlier`. ``w`` must be oriented ``N >= M``.
    """
    w = np.asarray(w, dtype=np.float64)
    n, m = w.shape
    thetas = np.asarray(thetas, dtype=np.float64).reshape(-1)
    u = haar_orthonormal(n, thetas.size, rng=rng)
    v = haar_orthonormal(m, thetas.size, rng=rng)
    return w + sigma * np.sqrt(n) * (u * thetas) @ v.T


def pareto_entries(shape, mu: float, *, rng: np.random.Generator) -> np.ndarray:
    r"""Symmetric Pareto entries: :math:`P(|x| > t) = t^{-\mu}` for :math:`t \ge 1`, random sign.

    Drawn by inversion, :math:`|x| = U^{-1/\mu}` with :math:`U` uniform on (0, 1]. For
    :math:`\mu < 2` the variance is infinite; for :math:`\mu \le 1` even the mean of
    :math:`|x|` is.
    """
    u = 1.0 - rng.random(shape)  # in (0, 1]
    return u ** (-1.0 / mu) * rng.choice(np.array([-1.0, 1.0]), size=shape)


def plant_traps(w, magnitudes, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""Overwrite a few entries of ``w`` with large values, in distinct rows and columns.

    Entry :math:`k` gets :math:`\pm a_k` (random sign) at a position drawn uniformly with no
    row or column shared with another planted entry.

    Returns
    -------
    (w, index) : arrays
        The new matrix (a copy) and the ``(k, 2)`` integer positions, in the order of
        ``magnitudes``.
    """
    w = np.array(w, dtype=np.float64)
    mags = np.asarray(magnitudes, dtype=np.float64).reshape(-1)
    k = mags.size
    rows = rng.choice(w.shape[0], size=k, replace=False)
    cols = rng.choice(w.shape[1], size=k, replace=False)
    w[rows, cols] = mags * rng.choice(np.array([-1.0, 1.0]), size=k)
    return w, np.stack([rows, cols], axis=1).astype(np.int64)
